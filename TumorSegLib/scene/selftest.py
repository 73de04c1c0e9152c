"""The module's self-test scenarios, run by *Reload and Test* in Slicer and by pytest on a slicer-core scene.

Each scenario raises ``AssertionError`` with what went wrong; the Slicer test class only clears the scene
and calls them, so the same checks run inside and outside Slicer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import numpy as np

from ..labels import Label
from ..options import ClinicalOptions, SegmentOptions
from ..synthetic import make_synthetic_case
from .nodes import add_volume_node
from .run import SegmentationRun, run_segmentation

__all__ = ["FAST_OPTIONS", "load_synthetic_case", "scene_snapshot", "segments_match_the_label_map_and_table_follows_edits",
           "cancel_leaves_the_scene_unchanged"]

# One network and no bias-field correction: the quickest real run (what the scenarios check does not depend on N4,
# which has its own tests and is measured by cross-validation).
FAST_OPTIONS = SegmentOptions(model="brats18-segresnet8", device="cpu", clinical=ClinicalOptions(n4=False))


def load_synthetic_case(scene) -> dict:
    """The synthetic sample's four sequences as volume nodes, by sequence key."""
    case = make_synthetic_case()
    return {key: add_volume_node(scene, volume, f"Synthetic_{key}") for key, volume in case.images.items()}


def scene_snapshot(scene) -> list[tuple[str, str, str]]:
    """Node IDs, names and a checksum of every volume's voxels: what 'the scene as it was' means."""
    import slicer

    snapshot = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        digest = ""
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
            digest = hashlib.sha1(slicer.util.arrayFromVolume(node).tobytes()).hexdigest()
        snapshot.append((node.GetID(), node.GetName(), digest))
    return snapshot


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def segments_match_the_label_map_and_table_follows_edits(scene, python: str | None = None) -> None:
    """Segment the synthetic sample: segments equal the label map the process wrote, the table counts them,
    and an edit of a segment is counted and marked in the table."""
    import slicer

    nodes = load_synthetic_case(scene)
    result = run_segmentation(scene, nodes, FAST_OPTIONS, python=python)
    _check(result.segmentation.GetSegmentation().GetNumberOfSegments() == 3, "expected three segments")
    produced = result.labels.array  # the file the child wrote, not the segments themselves
    for label in (Label.NCR, Label.ED, Label.ET):
        segment = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, label.name, nodes["t1c"])
        _check(int(segment.sum()) == int((produced == label).sum()), f"segment {label.name} differs from the labels")
    whole = int((produced > 0).sum())
    _check(whole > 1000, f"whole tumour of {whole} voxels: the sample was not segmented")
    table = result.table
    _check(table.GetCellText(4, 0) == "WT" and int(table.GetCellText(4, 2)) == whole, "table row WT is wrong")
    et = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, "ET", nodes["t1c"])
    et[:5, :5, :5] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, result.segmentation, "ET", nodes["t1c"])
    _check(table.GetCellText(2, 4) == "yes", "the edited ET is not marked as edited")
    _check(int(table.GetCellText(2, 2)) == int(et.sum()), "the table does not count the edited ET")
    _check(bool(np.isfinite(float(table.GetCellText(4, 3)))), "no mean uncertainty for WT")
    result.watcher.stop()


def cancel_leaves_the_scene_unchanged(scene, python: str | None = None,
                                      process_events: Callable[[], None] = lambda: None) -> None:
    """Cancel a run once it is working: the process is gone, the scene and the temporary files as before."""
    nodes = load_synthetic_case(scene)
    before = scene_snapshot(scene)
    run = SegmentationRun(scene, nodes, FAST_OPTIONS, python=python)
    run.start()
    work_dir = run.work_dir
    deadline = time.monotonic() + 60
    state = run.poll()
    while state.running and state.progress == 0 and time.monotonic() < deadline:  # until it really works
        process_events()
        time.sleep(0.1)
        state = run.poll()
    _check(state.running, "the run ended before it could be cancelled")
    run.cancel()
    _check(run.runner.poll().return_code is not None, "the process still runs after cancel")
    _check(scene_snapshot(scene) == before, "cancel changed the scene")
    _check(not work_dir.exists(), f"cancel left {work_dir} behind")
