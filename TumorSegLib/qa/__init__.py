"""Input quality checks before a segmentation runs, each with a code and a message that says what to do.

Errors stop the run before any heavy step; warnings are reported with the result. :mod:`.image`: 2D or
tiny volumes, NaN/infinite or constant images, broken orientation metadata, extreme anisotropy, images that
are not brain MRI (CT numbers, field of view, a label map, noise). :mod:`.sequences`: one image given twice,
swapped T2/FLAIR or T1/T1c. :mod:`.weighting` (inside the brain): a volume whose tissue contrast is another
sequence's (a T2 given as the T1c), a T1c or T2 unlike the T1, a FLAIR exchanged with the T1 or T1c.
:mod:`.brain`: mixed skull stripping, implausible brain or tumour volume. :mod:`.result`, after inference:
enhancement not confirmed, brain and tumour volumes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..volume import Volume
from .brain import check_brain_and_tumour
from .image import check_volume
from .report import Finding, QAError, QAReport, Severity, display_name
from .result import result_findings
from .sequences import check_sequences
from .weighting import check_weighting

__all__ = ["Severity", "Finding", "QAReport", "QAError", "display_name", "check_volume", "check_sequences",
           "check_weighting", "check_brain_and_tumour", "result_findings", "run_qa"]


def run_qa(volumes: Mapping[str, Volume]) -> QAReport:
    """All single-image checks, then the cross-sequence checks when the images pass."""
    report = QAReport()
    for key, volume in volumes.items():
        report.findings += check_volume(volume, key)
    if not report.errors:
        report.findings += check_sequences(volumes)
    return report
