"""Warnings about a result, after inference: enhancement not assessed or not confirmed, brain and tumour volumes."""

from __future__ import annotations

from ..enhancement import EnhancementCheck
from ..volume import Volume
from .brain import check_brain_and_tumour
from .report import Finding, Severity

__all__ = ["result_findings"]


def result_findings(check: EnhancementCheck, brain_ml: float, labels: Volume,
                    stripping: tuple[list[str], list[str]] | None) -> list[Finding]:
    """Warnings about the result: enhancement not assessed or not confirmed (``check``), the brain the model saw
    (``brain_ml``) and the tumour in ``labels``; ``stripping`` = (stripped, not stripped) when the sequences
    disagreed about skull stripping."""
    findings = check_brain_and_tumour(brain_ml, float((labels.array > 0).sum()) * labels.voxel_volume_ml, stripping)
    if not check.assessed:
        findings.append(Finding(Severity.WARNING, "enhancement_not_assessed", check.reason, "t1c"))
        return findings
    not_enhancing_ml = check.relabelled_ml - check.too_little_ml
    if not_enhancing_ml >= 1.0:
        findings.append(Finding(Severity.WARNING, "enhancement_not_confirmed", f"{not_enhancing_ml:.1f} mL the "
                                f"model drew as enhancing tumour does not enhance on T1c against {check.reference}: "
                                "reported as non-enhancing core; if enhancement is expected, check that the T1c is "
                                "post-contrast and the right series", "t1c"))
    if check.too_little_ml > 0:
        findings.append(Finding(Severity.WARNING, "enhancement_too_little", f"{check.too_little_ml:.1f} mL enhancing "
                                f"on T1c, under the {check.rule.min_total_ml:g} mL in all this model reports (smaller "
                                "totals were mostly false on non-enhancing gliomas): reported as non-enhancing core; "
                                "review the T1c for a small enhancing focus", "t1c"))
    return findings
