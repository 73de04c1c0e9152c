"""One segmentation of scene volumes in the background: export → child process → results in the scene.

The scene is only touched once the child process has succeeded: a failed or cancelled run leaves it
exactly as it was. Temporary files live in one folder that is removed whatever happens. Results are
always new nodes (unique names): an earlier segmentation, edited or not, is never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..export import json_path, pid_alive
from ..labels import LabelConvention, to_internal_labels
from ..options import SegmentOptions
from ..sequences import REFERENCE_ORDER, REQUIRED_ANY, SEQUENCES, case_name
from ..support import recorded_too_little_ml
from ..volume import Volume, read_volume, write_volume
from .nodes import add_uncertainty_node, volume_from_node
from .process import ProcessRunner, ProcessState
from .results import (
    NOT_ASSESSED_ATTRIBUTE,
    UNREPORTED_ENHANCEMENT_ATTRIBUTE,
    ResultsWatcher,
    create_results_table,
    set_uncertainty_columns,
)
from .segments import VOLUME_INTERVALS_ATTRIBUTE, create_segmentation_node

__all__ = ["RunResult", "SegmentationRun", "run_segmentation", "remove_stale_work_dirs"]

LIBRARY_PARENT = Path(__file__).resolve().parents[2]  # folder holding TumorSegLib (for the child's path)
WORK_PREFIX = "TumorSeg-"
OWNER_FILE = "owner.pid"


def remove_stale_work_dirs(root: Path | None = None) -> list[Path]:
    """Remove the temporary folders (patient images!) of runs whose Slicer process died before cleaning up."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        owner = folder / OWNER_FILE
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@dataclass
class RunResult:
    """Nodes a successful run added to the scene, and the command line's summary."""

    segmentation: object
    uncertainty: object
    table: object
    watcher: ResultsWatcher
    summary: dict
    labels: Volume  # the label map the process wrote (internal codes)


class SegmentationRun:
    """Segment scene volumes with ``tumorseg segment`` in a child process.

    Args:
        scene: the MRML scene.
        volume_nodes: scalar volume nodes by sequence key (t1, t1c, t2, flair); ``None`` for missing ones.
        options: the segmentation options (:class:`~TumorSegLib.options.SegmentOptions`); the child gets them
            as its command line (:meth:`~TumorSegLib.options.SegmentOptions.to_argv`).
        python: interpreter for the child (in Slicer: ``PythonSlicer``); default: this interpreter.
        runner_factory: builds the process runner (tests may inject their own).
    """

    def __init__(self, scene, volume_nodes: Mapping[str, object], options: SegmentOptions = SegmentOptions(),
                 python: str | None = None, runner_factory: Callable[..., ProcessRunner] = ProcessRunner):
        given = {key: node for key, node in volume_nodes.items() if node is not None}
        unknown = set(given) - set(SEQUENCES)
        if unknown:
            raise ValueError(f"unknown sequence keys {sorted(unknown)}; use {list(SEQUENCES)}")
        if not set(given) & set(REQUIRED_ANY):
            raise ValueError("select at least a T1c or a FLAIR volume")
        reference_key = options.clinical.reference or next(key for key in REFERENCE_ORDER if key in given)
        if reference_key not in given:
            raise ValueError(f"the reference sequence '{reference_key}' has no volume selected")
        # The scene reads internal codes back; the reference is named so the result's grid is known here.
        self.options = replace(options, label_convention=LabelConvention.BRATS2023,
                               clinical=replace(options.clinical, reference=reference_key))
        self.scene = scene
        self.volume_nodes = given
        self.python = python or sys.executable
        self.runner_factory = runner_factory
        self.runner: ProcessRunner | None = None
        self.work_dir: Path | None = None
        self.reference_key = reference_key
        self.reference_node = given[reference_key]
        self.case = case_name([given[key].GetName() for key in SEQUENCES if key in given])

    @property
    def output_path(self) -> Path:
        # NRRD: Slicer reads it without nibabel, which its GUI process may lack.
        return self.work_dir / "labels.nrrd"  # type: ignore[operator]

    def _argv(self) -> list[str]:
        """Inputs written to the work folder, outputs there, then the options."""
        arguments = []
        for key, node in self.volume_nodes.items():
            path = write_volume(volume_from_node(node), self.work_dir / f"{key}.nrrd")
            arguments += [f"--{key}", str(path)]
        arguments += ["-o", str(self.output_path), "--uncertainty-map", str(self.work_dir / "uncertainty.nrrd")]
        if self.options.uncertainty is not None:
            arguments += ["--uncertainty", str(self.work_dir / "uncertainty")]
        return ["segment", *arguments, *self.options.to_argv()]

    def start(self) -> None:
        """Write the input volumes to a private temporary folder (0700) and start the child process."""
        remove_stale_work_dirs()
        self.work_dir = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))  # mkdtemp: readable by this user only
        try:
            (self.work_dir / OWNER_FILE).write_text(str(os.getpid()))
            python_path = os.pathsep.join(filter(None, [str(LIBRARY_PARENT), os.environ.get("PYTHONPATH")]))
            self.runner = self.runner_factory(ProcessRunner.python_command(self._argv(), self.python),
                                              env={"PYTHONPATH": python_path})
            self.runner.start()
        except BaseException:
            self.cleanup()
            raise

    def poll(self) -> ProcessState:
        """Progress and new output lines since the last call (never blocks)."""
        if self.runner is None:
            raise RuntimeError("start() the run first")
        return self.runner.poll()

    def error_message(self) -> str:
        """What went wrong, for the user: the command's own error line(s)."""
        text = self.runner.error_text() if self.runner else ""
        return text or "the segmentation process stopped without saying why"

    def cancel(self) -> None:
        """Stop the child process tree and remove temporary files; the scene is left untouched."""
        if self.runner is not None:
            self.runner.cancel()
        self.cleanup()

    def cleanup(self) -> None:
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def import_results(self) -> RunResult:
        """After a successful process: add the segmentation, uncertainty volume and results table.

        Everything is read and checked before the first node is added, so a failure here also
        leaves the scene unchanged.
        """
        if self.work_dir is None:
            raise RuntimeError("no results to import: the run was not started, or was cancelled or imported")
        added = []
        try:  # the temporary folder goes whatever happens, reading the files included
            summary = json.loads(json_path(self.output_path).read_text())
            labels = read_volume(self.output_path)
            labels = labels.with_array(to_internal_labels(labels.array, summary.get("label_convention")))
            uncertainty = read_volume(self.work_dir / "uncertainty.nrrd")
            segmentation = create_segmentation_node(self.scene, labels, self.reference_node, f"{self.case} TumorSeg")
            added.append(segmentation)
            uncertainty_node = add_uncertainty_node(self.scene, uncertainty, f"{self.case} uncertainty")
            added.append(uncertainty_node)
            table = create_results_table(self.scene, f"{self.case} volumes")
            added.append(table)
            for node in added:
                node.SetAttribute("TumorSeg.Model", summary.get("model", ""))
            segmentation.SetAttribute(NOT_ASSESSED_ATTRIBUTE, ",".join(summary.get("not_assessed", [])))
            unreported_ml = recorded_too_little_ml(summary)
            if unreported_ml > 0:
                segmentation.SetAttribute(UNREPORTED_ENHANCEMENT_ATTRIBUTE, f"{unreported_ml:g}")
            watcher = ResultsWatcher(segmentation, self.reference_node, table, uncertainty_node)
            watcher.update()
            if "uncertainty" in summary:
                set_uncertainty_columns(table, summary["uncertainty"])
                intervals = {key: v.get("interval") or [v["p5"], v["p95"]]
                             for key, v in summary["uncertainty"]["volumes_ml"].items()}
                segmentation.SetAttribute(VOLUME_INTERVALS_ATTRIBUTE, json.dumps(intervals))
            watcher.start()
        except BaseException:
            for node in added:
                self.scene.RemoveNode(node)
            raise
        finally:
            self.cleanup()
        return RunResult(segmentation, uncertainty_node, table, watcher, summary, labels)


def run_segmentation(scene, volume_nodes: Mapping[str, object], options: SegmentOptions = SegmentOptions(),
                     python: str | None = None, timeout_s: float | None = None,
                     progress: Callable[[float, str], None] | None = None) -> RunResult:
    """Run a segmentation to the end (blocking; the GUI polls :class:`SegmentationRun` instead).

    Raises:
        RuntimeError: with the command's error text if the process fails or times out.
    """
    run = SegmentationRun(scene, volume_nodes, options, python)
    run.start()
    try:
        state = run.runner.wait(timeout_s)  # type: ignore[union-attr]
        if progress:
            progress(state.progress, state.step)
        if state.running:
            run.cancel()
            raise RuntimeError(f"segmentation did not finish within {timeout_s} s and was cancelled")
        if state.return_code != 0:
            raise RuntimeError(f"segmentation failed: {run.error_message()}")
        return run.import_results()
    finally:
        run.cleanup()
