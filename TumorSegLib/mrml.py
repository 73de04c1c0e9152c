"""MRML glue: volume nodes ↔ :class:`~TumorSegLib.volume.Volume`, result segmentations, uncertainty
volumes and results tables, and the observer that keeps the table right while the user edits.

Imports ``slicer`` lazily so the rest of the library never needs it. Runs in Slicer and, for tests,
on a scene from the ``slicer-core`` wheel (Slicer's own MRML, segmentation and table classes).
Slicer works in RAS; :class:`Volume` is LPS: the conversion flips x and y.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import numpy as np

from .labels import LABELS, REGIONS, Label, LabelInfo, Region
from .volume import Volume

__all__ = [
    "TERMINOLOGY_CONTEXT",
    "AI_HASH_TAG",
    "TABLE_COLUMNS",
    "volume_from_node",
    "add_volume_node",
    "update_volume_node",
    "terminology_entry",
    "create_segmentation_node",
    "labels_from_segmentation",
    "edited_labels",
    "segment_tag",
    "add_uncertainty_node",
    "create_results_table",
    "update_results_table",
    "ResultsWatcher",
    "set_uncertainty_overlay",
    "set_uncertainty_columns",
    "review_first",
    "assign_volume_nodes",
    "export_segmentation",
    "transform_node_from_sitk",
    "sitk_from_transform_node",
    "result_reference_volume",
    "LongitudinalTracker",
]

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
AI_HASH_TAG = "TumorSeg.AIResultSHA1"
VOLUME_INTERVALS_ATTRIBUTE = "TumorSeg.VolumeIntervalsML"  # JSON {region: [p5, p95]} of the AI result  # segment tag: SHA-1 of the mask as the model produced it
TABLE_COLUMNS = ("Region", "Volume (mL)", "Voxels", "Mean uncertainty", "Edited", "AI volume 5-95% (mL)",
                 "Uncertainty score", "Review first")
REGION_ROWS = ("NCR", "ED", "ET", "TC", "WT")


def _slicer():
    import slicer

    return slicer


def _matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def volume_from_node(node, world: bool = True) -> Volume:
    """The voxels and LPS geometry of a scalar volume node, parent linear transforms applied.

    Args:
        node: a scalar volume node.
        world: apply the node's parent transforms (where it shows); ``False`` gives its own (native) grid,
            e.g. for a follow-up visit shown aligned on the baseline.

    Raises:
        ValueError: if the node has no image data or sits under a non-linear transform.
    """
    slicer = _slicer()
    if node is None or node.GetImageData() is None:
        raise ValueError(f"volume '{node.GetName() if node else None}' holds no image data")
    import vtk

    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = _matrix_to_numpy(ijk_to_ras)
    transform_node = node.GetParentTransformNode() if world else None
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            raise ValueError(f"volume '{node.GetName()}' is under a non-linear transform: harden it first "
                             "(Data module, right-click → Harden transform)")
        to_world = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(to_world)
        matrix = _matrix_to_numpy(to_world) @ matrix
    lps = _LPS_RAS @ matrix
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    array = slicer.util.arrayFromVolume(node)  # [k, j, i]
    return Volume(np.ascontiguousarray(array.transpose(2, 1, 0)), tuple(spacing), tuple(lps[:3, 3]),
                  lps[:3, :3] / spacing)


def _ijk_to_ras(volume: Volume):
    return _numpy_to_matrix(_LPS_RAS @ volume.affine)


def update_volume_node(node, volume: Volume) -> None:
    """Put a 3D volume's voxels and geometry into an existing volume node."""
    slicer = _slicer()
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    node.SetIJKToRASMatrix(_ijk_to_ras(volume))


def add_volume_node(scene, volume: Volume, name: str, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node (unique name derived from ``name``) holding ``volume``, with display nodes."""
    node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name))
    update_volume_node(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def terminology_entry(info: LabelInfo) -> str:
    """Slicer terminology string (SNOMED CT category and type) of a tumour label."""
    slicer = _slicer()
    entry = slicer.vtkSlicerTerminologyEntry()
    entry.SetTerminologyContextName(TERMINOLOGY_CONTEXT)
    for coded, (code, meaning) in ((entry.GetCategoryObject(), info.category), (entry.GetTypeObject(), info.type)):
        coded.SetCodingSchemeDesignator("SCT")
        coded.SetCodeValue(code)
        coded.SetCodeMeaning(meaning)
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)


def _oriented_mask(mask: np.ndarray, volume: Volume):
    """A binary ``vtkOrientedImageData`` of ``mask`` ([i, j, k]) on ``volume``'s grid."""
    slicer = _slicer()
    import vtk
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*mask.shape)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    scalars[:] = np.ascontiguousarray(mask.transpose(2, 1, 0), dtype=np.uint8).ravel()
    image.SetImageToWorldMatrix(_ijk_to_ras(volume))
    return image


def segment_tag(segment, name: str) -> str | None:
    """A segment tag's value, or ``None`` when the segment has no such tag."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def _mask_sha1(mask: Volume) -> str:
    """Checksum of a mask in LPS index order, so a grid stored with axes flipped (as saving a left-handed
    volume may do) gives the same value."""
    from .preprocessing import reorient

    canonical = reorient(mask.with_array(mask.array.astype(np.uint8)))
    return hashlib.sha1(np.packbits(canonical.array.astype(bool)).tobytes()).hexdigest()


def create_segmentation_node(scene, labels: Volume, reference_node, name: str, show_3d: bool = True):
    """A new segmentation node with one segment per tumour label, on ``reference_node``'s geometry.

    Segments are named and coloured from :data:`~TumorSegLib.labels.LABELS`, carry SNOMED CT terminology,
    and remember (as a tag) a checksum of the AI result so later edits can be recognised. A label the
    model did not find still gets its (empty) segment, ready to be painted.
    """
    slicer = _slicer()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    segmentation = node.GetSegmentation()
    tag = slicer.vtkSegment.GetTerminologyEntryTagName()
    for info in LABELS:
        mask = labels.array == info.label
        segmentation.AddEmptySegment(info.key, info.name, list(info.color))
        segment = segmentation.GetSegment(info.key)
        segment.SetTag(tag, terminology_entry(info))
        segment.SetTag(AI_HASH_TAG, _mask_sha1(labels.with_array(mask)))
        if mask.any():
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                _oriented_mask(mask, labels), node, info.key,
                slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    if show_3d:
        node.CreateClosedSurfaceRepresentation()
    return node


def result_reference_volume(segmentation_node):
    """The volume whose grid a segmentation was made on (its reference image geometry node), or ``None``.

    Derived from the node itself, so it stays right whichever sequence was the reference and after a
    scene is saved and loaded again.
    """
    if segmentation_node is None:
        return None
    return segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole())


def labels_from_segmentation(segmentation_node, reference_node, world: bool = True) -> Volume:
    """Internal label map (NCR 1, ED 2, ET 3) of the tumour segments, on ``reference_node``'s grid.

    ``world=False`` gives the reference's native geometry (parent transforms left out; the voxels are the
    same when segmentation and reference share their transform, as :meth:`LongitudinalTracker.align` does).
    """
    slicer = _slicer()
    import vtk

    scene = segmentation_node.GetScene()
    ids = vtk.vtkStringArray()
    present = [info for info in LABELS if segmentation_node.GetSegmentation().GetSegment(info.key)]
    for info in present:
        ids.InsertNextValue(info.key)
    reference = volume_from_node(reference_node, world)
    if not present:
        return reference.with_array(np.zeros(reference.shape, np.uint8))
    temporary = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__TumorSeg_export__")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, temporary, reference_node):
            raise RuntimeError(f"could not export the segments of '{segmentation_node.GetName()}'")
        exported = volume_from_node(temporary).array  # 1..n in the order of `present`
    finally:
        scene.RemoveNode(temporary)
    out = np.zeros(reference.shape, np.uint8)
    for index, info in enumerate(present, start=1):
        out[exported == index] = info.label
    return reference.with_array(out)


def edited_labels(segmentation_node, labels: Volume) -> set[str]:
    """Keys (NCR, ED, ET) of segments whose mask differs from the AI result they were created with."""
    segmentation = segmentation_node.GetSegmentation()
    edited = set()
    for info in LABELS:
        segment = segmentation.GetSegment(info.key)
        if segment is None:
            edited.add(info.key)  # deleted by the user
            continue
        if segment_tag(segment, AI_HASH_TAG) != _mask_sha1(labels.with_array(labels.array == info.label)):
            edited.add(info.key)
    return edited


def add_uncertainty_node(scene, uncertainty: Volume, name: str):
    """A scalar volume (0–1) with a perceptual colour map, windowed to the full 0–1 range."""
    node = add_volume_node(scene, uncertainty.with_array(uncertainty.array.astype(np.float32)), name)
    display = node.GetDisplayNode()
    for color_id in ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeInferno",
                     "vtkMRMLColorTableNodeIron"):
        if scene.GetNodeByID(color_id):
            display.SetAndObserveColorNodeID(color_id)
            break
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    node.SetAttribute("TumorSeg.Role", "uncertainty")
    return node


def _region_labels(row: str) -> frozenset[Label]:
    return REGIONS[Region(row)] if row in ("TC", "WT") else frozenset({Label[row]})


def create_results_table(scene, name: str):
    """A table node with the results columns (one row per region: NCR, ED, ET, TC, WT)."""
    import vtk

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    for column, array_class in zip(TABLE_COLUMNS, (vtk.vtkStringArray, vtk.vtkDoubleArray, vtk.vtkIntArray,
                                                   vtk.vtkDoubleArray, vtk.vtkStringArray, vtk.vtkStringArray,
                                                   vtk.vtkDoubleArray, vtk.vtkStringArray)):
        array = array_class()
        array.SetName(column)
        table.AddColumn(array)
    table.SetColumnUnitLabel("Volume (mL)", "mL")
    table.SetColumnDescription("Mean uncertainty", "mean of the uncertainty volume (0-1) inside the region: "
                               "normalised entropy, or mutual information when that map was chosen")
    table.SetColumnDescription("Edited", "the region's segments differ from the AI result")
    table.SetColumnDescription("AI volume 5-95% (mL)", "spread of the AI volume over uncertainty samples "
                               "(model variability, not a confidence interval for the true volume)")
    table.SetColumnDescription("Uncertainty score", "share of the region where the model is in doubt (0-1)")
    table.SetColumnDescription("Review first", "the region's uncertainty is high: review it before the others")
    for _ in REGION_ROWS:
        table.AddEmptyRow()
    table.SetAttribute("TumorSeg.Role", "results")
    return table


def set_uncertainty_columns(table, record: dict) -> None:
    """Fill the interval, score and review columns from a ``tumorseg segment`` uncertainty record."""
    vtk_table = table.GetTable()
    flagged = set(record.get("flagged", []))
    for row, key in enumerate(REGION_ROWS):
        interval = record.get("volumes_ml", {}).get(key)
        score = record.get("regions", {}).get(key, {}).get("score")
        vtk_table.GetColumnByName("AI volume 5-95% (mL)").SetValue(
            row, f"{interval['p5']:.2f} - {interval['p95']:.2f}" if interval else "")
        vtk_table.GetColumnByName("Uncertainty score").SetValue(row, float("nan") if score is None else round(score, 3))
        vtk_table.GetColumnByName("Review first").SetValue(row, "REVIEW" if key in flagged else "")
    vtk_table.Modified()
    table.Modified()


def review_first(record: dict) -> str:
    """One line naming the regions an uncertainty record flags, most uncertain first ('' when none), for
    the module's status line: the table's "Review first" column is easy to miss."""
    regions = record.get("regions", {})
    flagged = sorted(record.get("flagged", []), key=lambda key: -regions.get(key, {}).get("score", 0.0))
    if not flagged:
        return ""
    return "Review first: " + ", ".join(f"{key} (score {regions[key]['score']:.2f})" if key in regions else key
                                        for key in flagged) + "."


def update_results_table(table, labels: Volume, uncertainty: Volume | None, edited: Iterable[str]) -> None:
    """Fill the results table from an internal label map (and uncertainty map on the same grid)."""
    edited = set(edited)
    vtk_table = table.GetTable()
    for row, key in enumerate(REGION_ROWS):
        members = _region_labels(key)
        mask = np.isin(labels.array, [int(m) for m in members])
        voxels = int(mask.sum())
        mean_uncertainty = float(uncertainty.array[mask].mean()) if uncertainty is not None and voxels else float("nan")
        is_edited = any(m.name in edited for m in members)
        vtk_table.GetColumnByName("Region").SetValue(row, key)
        vtk_table.GetColumnByName("Volume (mL)").SetValue(row, round(voxels * labels.voxel_volume_ml, 3))
        vtk_table.GetColumnByName("Voxels").SetValue(row, voxels)
        vtk_table.GetColumnByName("Mean uncertainty").SetValue(row, round(mean_uncertainty, 4))
        vtk_table.GetColumnByName("Edited").SetValue(row, "yes" if is_edited else "no")
    vtk_table.Modified()
    table.Modified()


class ResultsWatcher:
    """Keeps a results table in step with a segmentation the user edits.

    Observes the segmentation node's segment events; on each change it re-exports the label map,
    recomputes volumes, marks edited regions and calls ``on_update(labels, edited)``.
    """

    def __init__(self, segmentation_node, reference_node, table_node, uncertainty_node=None,
                 on_update: Callable[[Volume, set[str]], None] | None = None):
        self.segmentation_node = segmentation_node
        self.reference_node = reference_node
        self.table_node = table_node
        self.uncertainty_node = uncertainty_node
        self.on_update = on_update
        self._observers: list[int] = []
        self._uncertainty: Volume | None = None

    def start(self) -> "ResultsWatcher":
        slicer = _slicer()
        for event in (slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.SegmentAdded,
                      slicer.vtkSegmentation.SegmentRemoved):
            self._observers.append(self.segmentation_node.AddObserver(event, self._on_segments_changed))
        return self

    def stop(self) -> None:
        for tag in self._observers:
            self.segmentation_node.RemoveObserver(tag)
        self._observers.clear()

    def _on_segments_changed(self, caller=None, event=None) -> None:
        self.update()

    def update(self) -> tuple[Volume, set[str]]:
        """Recompute the table now; returns (labels, edited keys)."""
        labels = labels_from_segmentation(self.segmentation_node, self.reference_node)
        if self.uncertainty_node is not None and self._uncertainty is None:
            self._uncertainty = volume_from_node(self.uncertainty_node)
        uncertainty = self._uncertainty if self._uncertainty is not None and \
            self._uncertainty.shape == labels.shape else None
        edited = edited_labels(self.segmentation_node, labels)
        update_results_table(self.table_node, labels, uncertainty, edited)
        if self.on_update:
            self.on_update(labels, edited)
        return labels, edited


def set_uncertainty_overlay(scene, uncertainty_node, background_node=None, visible: bool = True,
                            opacity: float = 0.4) -> int:
    """Show (or hide) the uncertainty map as the foreground layer of every slice view; returns views set."""
    count = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if background_node is not None:
            composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(uncertainty_node.GetID() if visible and uncertainty_node else None)
        composite.SetForegroundOpacity(opacity if visible else 0.0)
        count += 1
    return count


def assign_volume_nodes(scene, series_description: Callable[[object], str | None] | None = None) -> dict[str, object]:
    """Guess which scalar volume node is which sequence from node names and DICOM series descriptions.

    Label maps and TumorSeg's own outputs are skipped; each node is used at most once, the first
    match in scene order wins. ``series_description(node)`` may return the DICOM (0008,103E) text.
    """
    from .sequences import guess_sequence

    assigned: dict[str, object] = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute("TumorSeg.Role"):
            continue
        texts = [series_description(node) if series_description else None, node.GetName()]
        for text in filter(None, texts):
            key = guess_sequence(text)
            if key:
                if key not in assigned:
                    assigned[key] = node
                break
    return assigned


def export_segmentation(segmentation_node, reference_node, path, convention: str = "brats2018"):
    """Write the (possibly edited) tumour segments as a label map file (NIfTI/NRRD by extension)."""
    from .labels import from_internal_labels
    from .volume import write_volume

    labels = labels_from_segmentation(segmentation_node, reference_node)
    return write_volume(labels.with_array(from_internal_labels(labels.array, convention)), path)


# --- Longitudinal tracking in the scene -------------------------------------------------------------

TIMELINE_COLUMNS = (
    ("Timepoint", "timepoint"), ("Date", "date"), ("Days", "days_from_baseline"), ("ET (mL)", "ET_ml"),
    ("TC (mL)", "TC_ml"), ("WT (mL)", "WT_ml"), ("ET 5-95% (mL)", "ET_interval_ml"),
    ("WT 5-95% (mL)", "WT_interval_ml"), ("ET vs baseline (%)", "ET_change_vs_baseline_pct"),
    ("ET vs nadir (%)", "ET_change_vs_nadir_pct"), ("SPD (mm2)", "spd_mm2"),
    ("SPD vs baseline (%)", "spd_change_vs_baseline_pct"), ("New lesions", "new_lesions"),
    ("Category (imaging only)", "category"), ("Steroids", "steroids"), ("Clinical status", "clinical_status"),
    ("Edited", "corrected"),
)
# Text, so that "not assessed" shows blank (new lesions before alignment) rather than as nan.
_TEXT_COLUMNS = frozenset({"timepoint", "date", "category", "corrected", "steroids", "clinical_status",
                           "new_lesions"})
PLOTTED_REGIONS = ("ET", "TC", "WT")
ALIGNMENT_ATTRIBUTE = "TumorSeg.AlignmentMethod"  # on transform nodes made by LongitudinalTracker.align
ALIGNED_TO_ATTRIBUTE = "TumorSeg.AlignedTo"  # ... and the baseline visit id they align on


def transform_node_from_sitk(scene, transform, name: str):
    """A linear transform node that shows a moving image aligned on the fixed one.

    ``transform`` maps fixed points to moving points (LPS, as registration returns); Slicer's
    transform-to-parent of the moving node is its inverse, in RAS.
    """
    probes = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], float)
    mapped = np.array([transform.TransformPoint([float(c) for c in p]) for p in probes])
    fixed_to_moving = np.eye(4)
    fixed_to_moving[:3, :3] = (mapped[1:] - mapped[0]).T / 100.0
    fixed_to_moving[:3, 3] = mapped[0]
    ras = _LPS_RAS @ np.linalg.inv(fixed_to_moving) @ _LPS_RAS
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", scene.GenerateUniqueName(name))
    node.SetMatrixTransformToParent(_numpy_to_matrix(ras))
    return node


def sitk_from_transform_node(node):
    """The inverse of :func:`transform_node_from_sitk`: a SimpleITK affine transform mapping fixed (parent)
    points to moving points, in LPS, from the node's own transform-to-parent."""
    import SimpleITK as sitk
    import vtk

    to_parent = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToParent(to_parent)
    fixed_to_moving = np.linalg.inv(_LPS_RAS @ _matrix_to_numpy(to_parent) @ _LPS_RAS)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in fixed_to_moving[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in fixed_to_moving[:3, 3]])
    return transform


class LongitudinalTracker:
    """One patient's visits in the scene: a :class:`~TumorSegLib.longitudinal.Timeline`, its table node and
    chart, grouped in the subject hierarchy (patient → one study per visit), kept current while segments
    are edited. Measurements are always made in each visit's own space.

    Once follow-ups are aligned on the baseline (:meth:`align`), their enhancing lesions are matched
    against every earlier aligned visit as ``tumorseg track`` does (:func:`~TumorSegLib.longitudinal.track_lesions`),
    so a new lesion shows in the table and drives the category (a new measurable one is PD).
    """

    def __init__(self, scene, patient_id: str, primary: str = "bidimensional", tolerance_mm: float = 5.0, *,
                 table=None, chart=None):
        from .longitudinal import Timeline

        self.scene = scene
        self.timeline = Timeline(patient_id=patient_id)
        self.primary = primary
        self.tolerance_mm = tolerance_mm
        self.nodes: dict[str, tuple[object, object]] = {}  # visit id → (segmentation, reference volume)
        self.alignments: dict = {}  # follow-up id → Alignment on the baseline (native spaces)
        self._labels: dict[str, Volume] = {}  # visit id → native label map, for the new-lesion check
        self._observers: list[tuple[object, int]] = []
        self.rows: list[dict] = []
        if table is None:
            table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{patient_id} timeline"))
            table.SetAttribute("TumorSeg.Role", "timeline")
        self.table = table
        self.chart = chart

    def add_timepoint(self, timepoint_id: str, date, segmentation_node, reference_node, steroids: str | None = None,
                      clinical_status: str | None = None):
        """Add a visit from its segmentation (AI or corrected); returns the timeline's Timepoint.

        ``steroids`` (increased, stable, decreased) and ``clinical_status`` (worse, stable, better) are the
        values of :class:`~TumorSegLib.longitudinal.SteroidChange` / ``ClinicalStatus``; ``None`` = unknown.
        """
        import json

        from .longitudinal import ClinicalStatus, SteroidChange, Timepoint, parse_date
        from .measurements import measure_labels

        labels = labels_from_segmentation(segmentation_node, reference_node, world=False)
        intervals = json.loads(segmentation_node.GetAttribute(VOLUME_INTERVALS_ATTRIBUTE) or "{}")
        baseline_before = self.timeline.baseline.id if self.timeline.timepoints else None
        timepoint = Timepoint(timepoint_id, parse_date(date), measurements=measure_labels(labels),
                              corrected=bool(edited_labels(segmentation_node, labels)),
                              volume_intervals={key: tuple(value) for key, value in intervals.items()},
                              steroids=SteroidChange(steroids) if steroids else None,
                              clinical_status=ClinicalStatus(clinical_status) if clinical_status else None)
        self.timeline.add(timepoint)
        if baseline_before is not None and self.timeline.baseline.id != baseline_before:
            self.alignments.clear()  # an earlier visit became the baseline: the alignments refer to the old one
        self.nodes[timepoint_id] = (segmentation_node, reference_node)
        self._labels[timepoint_id] = labels
        self._group_in_hierarchy(timepoint_id, timepoint.date, (segmentation_node, reference_node))
        self._watch(timepoint_id, segmentation_node)
        self.update()
        return timepoint

    def _watch(self, timepoint_id: str, segmentation_node) -> None:
        import slicer

        tag = segmentation_node.AddObserver(slicer.vtkSegmentation.SegmentModified,
                                            lambda caller, event, tid=timepoint_id: self.remeasure(tid))
        self._observers.append((segmentation_node, tag))

    def _group_in_hierarchy(self, timepoint_id: str, date, nodes) -> None:
        import slicer

        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if hierarchy is None:
            return
        patient = hierarchy.GetItemChildWithName(hierarchy.GetSceneItemID(), self.timeline.patient_id)
        if not patient:
            patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), self.timeline.patient_id)
        study = hierarchy.CreateStudyItem(patient, f"{timepoint_id} ({date.isoformat()})")
        hierarchy.SetItemAttribute(study, "DICOM.StudyDate", date.strftime("%Y%m%d"))
        for node in nodes:
            item = hierarchy.GetItemByDataNode(node)
            if item:
                hierarchy.SetItemParent(item, study)
            else:  # Slicer's GUI adds items for new nodes; without it (slicer-core) create them here
                hierarchy.CreateItem(study, node)

    def remeasure(self, timepoint_id: str) -> None:
        """Measure a visit again from its current segments (called when they are edited)."""
        from .measurements import measure_labels

        segmentation, reference = self.nodes[timepoint_id]
        labels = labels_from_segmentation(segmentation, reference, world=False)
        self._labels[timepoint_id] = labels
        timepoint = self.timeline.get(timepoint_id)
        timepoint.measurements = measure_labels(labels)
        timepoint.corrected = bool(edited_labels(segmentation, labels))
        self.update()

    def new_lesions(self) -> dict | None:
        """New-or-not status of each aligned follow-up's enhancing lesions (``{visit id: (LesionStatus, ...)}``),
        judged against every earlier aligned visit; ``None`` while no visit is aligned (not assessed)."""
        from .longitudinal import align_to_baseline, track_lesions

        if not self.alignments or not self.timeline.timepoints:
            return None
        baseline = self.timeline.baseline
        alignments = {baseline.id: align_to_baseline(baseline, baseline), **self.alignments}  # identity
        return track_lesions(self.timeline, self._labels, alignments, self.tolerance_mm)

    def update(self) -> list[dict]:
        """Recompute rows (change, nadir, new lesions, categories) and refresh the table and chart."""
        from .longitudinal import timeline_rows

        self.rows = timeline_rows(self.timeline, self.new_lesions(), self.alignments or None, primary=self.primary)
        self._fill_table()
        self._update_chart()
        return self.rows

    def _fill_table(self) -> None:
        import vtk

        table = self.table.GetTable()
        modifying = self.table.StartModify()
        self.table.RemoveAllColumns()
        for title, key in TIMELINE_COLUMNS:
            numeric = key not in _TEXT_COLUMNS and not key.endswith("_interval_ml")
            array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
            array.SetName(title)
            array.SetNumberOfTuples(len(self.rows))
            for index, row in enumerate(self.rows):
                value = row.get(key)
                if numeric:
                    array.SetValue(index, float("nan") if value is None else float(value))
                else:
                    array.SetValue(index, "yes" if value is True else "no" if value is False else
                                   "" if value is None else str(value))
            table.AddColumn(array)
        self.table.SetColumnDescription("Category (imaging only)",
                                        "RANO 2.0 imaging-only category: needs clinical confirmation")
        self.table.SetColumnDescription("New lesions", "enhancing lesions farther than "
                                        f"{self.tolerance_mm:g} mm from earlier enhancing tumour; "
                                        "assessed once the visits are aligned")
        self.table.Modified()
        self.table.EndModify(modifying)

    def _update_chart(self) -> None:
        if self.chart is None:
            self.chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode",
                                                      self.scene.GenerateUniqueName(f"{self.timeline.patient_id} volumes"))
            self.chart.SetTitle(f"{self.timeline.patient_id}: tumour volumes (imaging only)")
            self.chart.SetXAxisTitle("Days from baseline")
            self.chart.SetYAxisTitle("Volume (mL)")
            colours = {"ET": (1.0, 0.85, 0.0), "TC": (0.9, 0.1, 0.1), "WT": (0.1, 0.7, 0.1)}
            for region in PLOTTED_REGIONS:
                series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{self.timeline.patient_id} {region}")
                series.SetAndObserveTableNodeID(self.table.GetID())
                series.SetXColumnName("Days")
                series.SetYColumnName(f"{region} (mL)")
                series.SetPlotType(series.PlotTypeScatter)
                series.SetMarkerStyle(series.MarkerStyleCircle)
                series.SetColor(*colours[region])
                self.chart.AddAndObservePlotSeriesNodeID(series.GetID())
        self.chart.Modified()

    def align(self, timepoint_id: str):
        """Rigidly register a visit's reference volume to the baseline's and parent the visit's nodes to
        the resulting transform, so the visits show aligned; measurements stay native, and the visit's
        lesions are then checked for new ones. Returns the transform node."""
        from .longitudinal import Alignment
        from .registration import register

        baseline_id = self.timeline.baseline.id
        _, fixed = self.nodes[baseline_id]
        segmentation, moving = self.nodes[timepoint_id]
        # Native grids: a visit aligned before must not be registered through its earlier transform.
        result = register(volume_from_node(fixed, world=False), volume_from_node(moving, world=False), kind="rigid",
                          working_spacing_mm=2.0, samples_per_level=10000)
        method = f"rigid, MI {result.metric_value:.3f}"
        node = transform_node_from_sitk(self.scene, result.transform, f"{timepoint_id} to {baseline_id}")
        node.SetAttribute(ALIGNMENT_ATTRIBUTE, method)
        node.SetAttribute(ALIGNED_TO_ATTRIBUTE, baseline_id)
        if fixed.GetTransformNodeID():  # the baseline is shown moved: follow it
            node.SetAndObserveTransformNodeID(fixed.GetTransformNodeID())
        previous = moving.GetParentTransformNode()
        for data_node in (segmentation, moving):
            data_node.SetAndObserveTransformNodeID(node.GetID())
        if previous is not None and previous.GetAttribute(ALIGNMENT_ATTRIBUTE):
            self.scene.RemoveNode(previous)  # this visit's earlier alignment
        self.alignments[timepoint_id] = Alignment(result.transform, method)
        self.update()
        return node

    def export(self, csv_path, png_path) -> tuple:
        """The table as CSV and the volume plot as PNG (same content as ``tumorseg track``)."""
        from .longitudinal import plot_volumes, write_table_csv

        return write_table_csv(self.rows, csv_path), plot_volumes(self.rows, png_path, self.timeline.patient_id)

    def save(self, path):
        """The timeline as its versioned JSON file (segmentations exported beside it as NRRD label maps)."""
        from pathlib import Path

        folder = Path(path).parent
        for timepoint in self.timeline.timepoints:
            if timepoint.id not in self.nodes:  # its nodes were deleted from the scene
                continue
            segmentation, reference = self.nodes[timepoint.id]
            timepoint.segmentation = export_segmentation(segmentation, reference, folder / f"{timepoint.id}_seg.nrrd")
            timepoint.label_convention = "brats2018"
        return self.timeline.save(path)

    def store(self, parameter_node) -> None:
        """Keep the tracker in a scripted module node (saved with the scene): timeline JSON and node
        references ``TumorSeg.visit.<id>.segmentation`` / ``.reference``, plus table and chart."""
        import json

        parameter_node.SetParameter("TumorSeg.timeline", json.dumps(
            {**self.timeline.to_dict(include_measurements=False), "primary": self.primary}))
        for timepoint_id, (segmentation, reference) in self.nodes.items():
            parameter_node.SetNodeReferenceID(f"TumorSeg.visit.{timepoint_id}.segmentation", segmentation.GetID())
            parameter_node.SetNodeReferenceID(f"TumorSeg.visit.{timepoint_id}.reference", reference.GetID())
        parameter_node.SetNodeReferenceID("TumorSeg.timelineTable", self.table.GetID())
        if self.chart is not None:
            parameter_node.SetNodeReferenceID("TumorSeg.timelineChart", self.chart.GetID())

    def is_stored_in(self, parameter_node) -> bool:
        """Whether this tracker is the one ``parameter_node`` keeps (same table node, still in the scene):
        after a scene is closed and loaded again, the table is a new node even where its ID is reused."""
        table = parameter_node.GetNodeReference("TumorSeg.timelineTable") if parameter_node else None
        return table is not None and table is self.table and self.table.GetScene() is not None

    @classmethod
    def restore(cls, parameter_node) -> "LongitudinalTracker | None":
        """The tracker :meth:`store` kept (e.g. after loading a scene), re-measured, re-aligned from its
        transform nodes and watching edits again. Visits whose nodes were deleted are not evaluable."""
        import json

        from .longitudinal import Alignment, Timeline
        from .measurements import measure_labels

        text = parameter_node.GetParameter("TumorSeg.timeline")
        if not text:
            return None
        data = json.loads(text)
        primary = data.pop("primary", "bidimensional")
        tracker = cls(parameter_node.GetScene(), data.get("patient_id") or "Patient", primary,
                      table=parameter_node.GetNodeReference("TumorSeg.timelineTable"),
                      chart=parameter_node.GetNodeReference("TumorSeg.timelineChart"))
        tracker.timeline = Timeline.from_dict(data)
        baseline_id = tracker.timeline.baseline.id if tracker.timeline.timepoints else None
        for timepoint in tracker.timeline.timepoints:
            segmentation = parameter_node.GetNodeReference(f"TumorSeg.visit.{timepoint.id}.segmentation")
            reference = parameter_node.GetNodeReference(f"TumorSeg.visit.{timepoint.id}.reference")
            if segmentation is None or reference is None:
                timepoint.measurements = None
                continue
            tracker.nodes[timepoint.id] = (segmentation, reference)
            labels = labels_from_segmentation(segmentation, reference, world=False)
            tracker._labels[timepoint.id] = labels
            timepoint.measurements = measure_labels(labels)
            timepoint.corrected = bool(edited_labels(segmentation, labels))  # edits made after store()
            transform = reference.GetParentTransformNode()
            if (timepoint.id != baseline_id and transform is not None and transform.GetAttribute(ALIGNMENT_ATTRIBUTE)
                    and transform.GetAttribute(ALIGNED_TO_ATTRIBUTE) == baseline_id):
                tracker.alignments[timepoint.id] = Alignment(sitk_from_transform_node(transform),
                                                             transform.GetAttribute(ALIGNMENT_ATTRIBUTE))
            tracker._watch(timepoint.id, segmentation)
        if parameter_node.GetNodeReference("TumorSeg.timelineTable") is None:  # deleted: __init__ made a new one
            parameter_node.SetNodeReferenceID("TumorSeg.timelineTable", tracker.table.GetID())
        tracker.update()
        return tracker

    def stop(self) -> None:
        """Stop following edits (before the scene closes, or when the tracker is replaced)."""
        for node, tag in self._observers:
            node.RemoveObserver(tag)
        self._observers.clear()
