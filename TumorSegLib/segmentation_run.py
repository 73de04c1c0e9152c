"""One segmentation of scene volumes in the background: export → child process → results in the scene.

The scene is only touched once the child process has succeeded: a failed or cancelled run leaves it
exactly as it was. Temporary files live in one folder that is removed whatever happens. Results are
always new nodes (unique names): an earlier segmentation, edited or not, is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import mrml
from .process import ProcessRunner, ProcessState
from .sequences import REQUIRED_ANY, SEQUENCES
from .volume import read_volume, write_volume

__all__ = ["RunResult", "SegmentationRun", "case_name", "run_segmentation"]

_SEQUENCE_SUFFIX = re.compile(r"[\W_]*(t1ce|t1c|t1gd|t1n|t1|t2w|t2f|t2|flair)$", re.I)
LIBRARY_PARENT = Path(__file__).resolve().parent.parent  # folder holding TumorSegLib (for the child's path)


def case_name(names: list[str]) -> str:
    """A case name from volume names: their common prefix without a trailing separator, e.g.
    ``Brats18_CBICA_AQT_1_t1ce``, ``…_flair`` → ``Brats18_CBICA_AQT_1``."""
    if not names:
        return "Case"
    stems = [_SEQUENCE_SUFFIX.sub("", name) for name in names]
    prefix = re.sub(r"[\W_]+$", "", os.path.commonprefix(stems))
    return prefix or "Case"


@dataclass
class RunResult:
    """Nodes a successful run added to the scene, and the command line's summary."""

    segmentation: object
    uncertainty: object
    table: object
    watcher: mrml.ResultsWatcher
    summary: dict
    labels: object  # the label map Volume the process wrote (internal codes)


class SegmentationRun:
    """Segment scene volumes with ``tumorseg segment`` in a child process.

    Args:
        scene: the MRML scene.
        volume_nodes: scalar volume nodes by sequence key (t1, t1c, t2, flair); ``None`` for missing ones.
        model_id: registry id (default model when ``None``); device: auto, cpu or cuda.
        python: interpreter for the child (in Slicer: ``PythonSlicer``); default: this interpreter.
        runner_factory: builds the process runner (tests may inject their own).
        clinical: ``reference`` (sequence key), ``register`` / ``skull_strip`` (auto, on, off), ``n4`` (bool):
            the command line's clinical-scan options.
        uncertainty: ``methods`` (e.g. "ensemble,flips"), ``samples``, ``time_budget_s``, ``map`` (entropy or
            mutual_information): sample the model; ``None`` shows the entropy of the mean probabilities.
    """

    def __init__(self, scene, volume_nodes: Mapping[str, object], model_id: str | None = None,
                 device: str = "auto", python: str | None = None,
                 runner_factory: Callable[..., ProcessRunner] = ProcessRunner,
                 clinical: Mapping[str, object] | None = None, uncertainty: Mapping[str, object] | None = None):
        given = {key: node for key, node in volume_nodes.items() if node is not None}
        unknown = set(given) - set(SEQUENCES)
        if unknown:
            raise ValueError(f"unknown sequence keys {sorted(unknown)}; use {list(SEQUENCES)}")
        if not set(given) & set(REQUIRED_ANY):
            raise ValueError("select at least a T1c or a FLAIR volume")
        self.scene = scene
        self.volume_nodes = given
        self.model_id = model_id
        self.device = device
        self.python = python or sys.executable
        self.runner_factory = runner_factory
        self.clinical = dict(clinical or {})
        self.uncertainty = dict(uncertainty or {})
        self.runner: ProcessRunner | None = None
        self.work_dir: Path | None = None
        reference_key = self.clinical.get("reference") or next(key for key in ("t1c", "flair", "t2", "t1")
                                                                if key in given)
        if reference_key not in given:
            raise ValueError(f"the reference sequence '{reference_key}' has no volume selected")
        self.reference_key = reference_key
        self.reference_node = given[reference_key]
        self.case = case_name([given[key].GetName() for key in SEQUENCES if key in given])

    @property
    def output_path(self) -> Path:
        # NRRD: Slicer reads it without nibabel, which its GUI process may lack.
        return self.work_dir / "labels.nrrd"  # type: ignore[operator]

    def start(self) -> None:
        """Write the input volumes to a temporary folder and start the child process."""
        self.work_dir = Path(tempfile.mkdtemp(prefix="TumorSeg-"))
        try:
            arguments = []
            for key, node in self.volume_nodes.items():
                path = write_volume(mrml.volume_from_node(node), self.work_dir / f"{key}.nrrd")
                arguments += [f"--{key}", str(path)]
            arguments += ["-o", str(self.output_path), "--uncertainty-map", str(self.work_dir / "uncertainty.nrrd"),
                          "--device", self.device, "--label-convention", "brats2023"]
            if self.model_id:
                arguments += ["--model", self.model_id]
            arguments += ["--reference", self.reference_key]
            for option in ("register", "registration_kind", "skull_strip"):
                if self.clinical.get(option):
                    arguments += [f"--{option.replace('_', '-')}", str(self.clinical[option])]
            if self.clinical.get("n4"):
                arguments.append("--n4")
            if self.uncertainty.get("methods"):
                arguments += ["--uncertainty", str(self.work_dir / "uncertainty"),
                              "--uncertainty-methods", str(self.uncertainty["methods"]),
                              "--uncertainty-map-kind", str(self.uncertainty.get("map", "entropy"))]
                if self.uncertainty.get("samples"):
                    arguments += ["--uncertainty-samples", str(int(self.uncertainty["samples"]))]
                if self.uncertainty.get("time_budget_s"):
                    arguments += ["--time-budget", str(float(self.uncertainty["time_budget_s"]))]
            python_path = os.pathsep.join(filter(None, [str(LIBRARY_PARENT), os.environ.get("PYTHONPATH")]))
            self.runner = self.runner_factory(ProcessRunner.python_command(["segment", *arguments], self.python),
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
        from .labels import to_internal_labels

        if self.work_dir is None:
            raise RuntimeError("no results to import: the run was not started, or was cancelled or imported")
        added = []
        try:  # the temporary folder goes whatever happens, reading the files included
            summary = json.loads(self.output_path.with_name("labels.json").read_text())
            labels = read_volume(self.output_path)
            labels = labels.with_array(to_internal_labels(labels.array, summary.get("label_convention")))
            uncertainty = read_volume(self.work_dir / "uncertainty.nrrd")
            segmentation = mrml.create_segmentation_node(self.scene, labels, self.reference_node,
                                                         f"{self.case} TumorSeg")
            added.append(segmentation)
            uncertainty_node = mrml.add_uncertainty_node(self.scene, uncertainty, f"{self.case} uncertainty")
            added.append(uncertainty_node)
            table = mrml.create_results_table(self.scene, f"{self.case} volumes")
            added.append(table)
            for node in added:
                node.SetAttribute("TumorSeg.Model", summary.get("model", ""))
            watcher = mrml.ResultsWatcher(segmentation, self.reference_node, table, uncertainty_node)
            watcher.update()
            if "uncertainty" in summary:
                mrml.set_uncertainty_columns(table, summary["uncertainty"])
                intervals = {key: [v["p5"], v["p95"]] for key, v in summary["uncertainty"]["volumes_ml"].items()}
                segmentation.SetAttribute(mrml.VOLUME_INTERVALS_ATTRIBUTE, json.dumps(intervals))
            watcher.start()
        except BaseException:
            for node in added:
                self.scene.RemoveNode(node)
            raise
        finally:
            self.cleanup()
        return RunResult(segmentation, uncertainty_node, table, watcher, summary, labels)


def run_segmentation(scene, volume_nodes: Mapping[str, object], model_id: str | None = None,
                     device: str = "auto", python: str | None = None, timeout_s: float | None = None,
                     progress: Callable[[float, str], None] | None = None,
                     clinical: Mapping[str, object] | None = None,
                     uncertainty: Mapping[str, object] | None = None) -> RunResult:
    """Run a segmentation to the end (blocking; the GUI polls :class:`SegmentationRun` instead).

    Raises:
        RuntimeError: with the command's error text if the process fails or times out.
    """
    run = SegmentationRun(scene, volume_nodes, model_id, device, python, clinical=clinical, uncertainty=uncertainty)
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
