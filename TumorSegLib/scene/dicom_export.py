"""DICOM SEG, SR and uncertainty map of the result in the scene (edits included), without QuantitativeReporting:
the source series comes from Slicer's DICOM database through the reference volume's instance UIDs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..labels import VOLUME_KEYS, VOLUME_MEMBERS, region_volumes_ml
from ..support import still_not_assessed
from .nodes import volume_from_node
from .results import ai_not_assessed
from .segments import VOLUME_INTERVALS_ATTRIBUTE, edited_labels, labels_from_segmentation

__all__ = ["NOT_FROM_DICOM", "export_dicom_results"]

NOT_FROM_DICOM = ("The result's reference volume was not loaded from DICOM, so there is no source series for a DICOM "
                  "SEG to refer to. Load the study with the DICOM module and segment it again, or use 'Save label "
                  "map...' for NIfTI/NRRD.")


def _source_files(reference_node, file_for_instance: Callable[[str], str] | None) -> list[str]:
    uids = (reference_node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        raise ValueError(NOT_FROM_DICOM)
    if file_for_instance is None:
        import slicer

        file_for_instance = slicer.dicomDatabase.fileForInstance
    files = [file_for_instance(uid) for uid in uids]
    missing = [uid for uid, path in zip(uids, files) if not path or not Path(path).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(uids)} source images are not in the DICOM database any more "
                         f"(e.g. {missing[0]}); import the study again")
    return files


def _summary(segmentation_node, labels, edited: set[str]) -> dict:
    """The SR's facts from the scene: model, the volumes of the segments as they are now, and the AI's
    intervals only for regions no edit touched (an edited volume has no model interval)."""
    from ..models import get_model

    model = get_model(segmentation_node.GetAttribute("TumorSeg.Model") or None)
    not_assessed = still_not_assessed(ai_not_assessed(segmentation_node), edited)
    intervals = json.loads(segmentation_node.GetAttribute(VOLUME_INTERVALS_ATTRIBUTE) or "{}")
    untouched = {key for key in VOLUME_KEYS if not {m.name for m in VOLUME_MEMBERS[key]} & edited}
    volumes = {key: (None if key in not_assessed else value) for key, value in region_volumes_ml(labels).items()}
    return {"model": model.id, "model_sha256": [w.sha256 for w in model.weights], "volumes_ml": volumes,
            "not_assessed": not_assessed,
            "uncertainty": {"volumes_ml": {key: {"interval": bounds} for key, bounds in intervals.items()
                                           if key in untouched and bounds}}}


def export_dicom_results(segmentation_node, reference_node, uncertainty_node, folder,
                         file_for_instance: Callable[[str], str] | None = None) -> dict[str, str]:
    """Write ``segmentation.seg.dcm``, ``measurements.sr.dcm`` and (with an uncertainty volume)
    ``uncertainty.pm.dcm`` into ``folder``; segments edited by hand are marked semi-automatic.

    Args:
        file_for_instance: SOP Instance UID → file (default: Slicer's DICOM database).

    Returns:
        ``{kind: path}``.

    Raises:
        ValueError: saying what to do, when the reference was not loaded from DICOM or its files are gone.
    """
    from ..longitudinal import measure_labels
    from ..outputs import write_dicom_outputs

    files = _source_files(reference_node, file_for_instance)
    labels = labels_from_segmentation(segmentation_node, reference_node, world=False)
    edited = edited_labels(segmentation_node, labels)
    summary = _summary(segmentation_node, labels, edited)
    lesions = [] if "ET" in summary["not_assessed"] else [
        lesion.to_dict() for lesion in measure_labels(labels).lesions]
    uncertainty = volume_from_node(uncertainty_node, world=False) if uncertainty_node is not None else None
    Path(folder).mkdir(parents=True, exist_ok=True)
    written = write_dicom_outputs(folder, summary, labels, uncertainty, files, lesions, None, edited=edited)
    return {kind: path for kind, (path, _) in written.items()}
