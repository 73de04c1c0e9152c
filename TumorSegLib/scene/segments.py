"""Segmentation nodes: tumour labels as editable segments with SNOMED CT terminology, and back.

Each segment remembers (as a tag) a checksum of the AI result, so edits are recognised even after a scene
is saved and loaded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from ..export import write_label_map
from ..geometry import reorient
from ..labels import LABELS, LabelConvention, LabelInfo
from ..volume import Volume
from .nodes import _slicer, ijk_to_ras, volume_from_node

__all__ = ["TERMINOLOGY_CONTEXT", "AI_HASH_TAG", "VOLUME_INTERVALS_ATTRIBUTE", "terminology_entry", "revert_segment", "observe_segment_edits",
           "create_segmentation_node", "result_reference_volume", "labels_from_segmentation", "edited_labels",
           "segment_tag", "export_segmentation"]

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
AI_HASH_TAG = "TumorSeg.AIResultSHA1"  # segment tag: SHA-1 of the mask as the model produced it
VOLUME_INTERVALS_ATTRIBUTE = "TumorSeg.VolumeIntervalsML"  # JSON {region: [p5, p95]} of the AI result


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
    image.SetImageToWorldMatrix(ijk_to_ras(volume))
    return image


def segment_tag(segment, name: str) -> str | None:
    """A segment tag's value, or ``None`` when the segment has no such tag."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def _mask_sha1(mask: Volume) -> str:
    """Checksum of a mask in LPS index order, so a grid stored with axes flipped (as saving a left-handed
    volume may do) gives the same value."""
    canonical = reorient(mask.with_array(mask.array.astype(np.uint8)))
    return hashlib.sha1(np.packbits(canonical.array.astype(bool)).tobytes()).hexdigest()


def create_segmentation_node(scene, labels: Volume, reference_node, name: str, show_3d: bool = True):
    """A new segmentation node with one segment per tumour label, on ``reference_node``'s geometry.

    Segments are named and coloured from :data:`~TumorSegLib.labels.LABELS`, carry SNOMED CT terminology,
    and remember (as a tag) a checksum of the AI result so later edits can be recognised. A label the
    model did not find still gets its (empty) segment, ready to be painted.
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    for info in LABELS:
        _set_to_ai(node, labels, info)
    if show_3d:
        node.CreateClosedSurfaceRepresentation()
    return node


def revert_segment(segmentation_node, labels: Volume, key: str) -> None:
    """Put one segment (NCR, ED or ET) back to the AI result ``labels`` (internal codes, on the grid the
    segmentation was made on); its edited mark goes with it."""
    info = next((info for info in LABELS if info.key == key), None)
    if info is None:
        raise ValueError(f"no tumour region '{key}'; use one of {[i.key for i in LABELS]}")
    _set_to_ai(segmentation_node, labels, info)


def _set_to_ai(segmentation_node, labels: Volume, info: LabelInfo) -> None:
    """One segment as the AI drew it: made (named, coloured, SNOMED CT terminology) when it is not there, its
    mask replaced by the AI's, and the AI checksum tag that later edits are recognised by."""
    slicer = _slicer()
    segmentation = segmentation_node.GetSegmentation()
    made = segmentation.GetSegment(info.key) is None
    if made:  # a new node, or a segment the user deleted
        segmentation.AddEmptySegment(info.key, info.name, list(info.color))
        segmentation.GetSegment(info.key).SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(),
                                                 terminology_entry(info))
    mask = labels.array == info.label
    if mask.any() or not made:  # a new segment is empty already; an existing one is replaced, also by nothing
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            _oriented_mask(mask, labels), segmentation_node, info.key,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    segmentation.GetSegment(info.key).SetTag(AI_HASH_TAG, _mask_sha1(labels.with_array(mask)))


def observe_segment_edits(segmentation_node, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback()`` whenever a segment's content changes (an edit); returns a function that stops it.

    Effects report ``SegmentModified``; undo/redo stacks restore a whole saved copy into the segmentation
    (a deep copy that reports only ``ModifiedEvent`` on it), so both are observed.
    """
    slicer = _slicer()
    import vtk

    segmentation = segmentation_node.GetSegmentation()
    edit_tag = segmentation_node.AddObserver(slicer.vtkSegmentation.SegmentModified, lambda *_: callback())
    restore_tag = segmentation.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda *_: callback())

    def stop() -> None:
        segmentation_node.RemoveObserver(edit_tag)
        segmentation.RemoveObserver(restore_tag)

    return stop


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


def export_segmentation(segmentation_node, reference_node, path,
                        convention: LabelConvention | str = LabelConvention.BRATS2018, world: bool = True):
    """Write the (possibly edited) tumour segments as a label map file (NIfTI/NRRD by extension);
    ``world=False`` on the reference's native grid (a visit shown aligned keeps its own space)."""
    return write_label_map(labels_from_segmentation(segmentation_node, reference_node, world), path, convention)
