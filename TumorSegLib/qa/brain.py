"""Checks of the brain and the result: mixed skull stripping, implausible brain volume, implausible tumour."""

from __future__ import annotations

from .report import Finding, Severity, display_name

__all__ = ["BRAIN_ML", "MAX_TUMOUR_SHARE", "check_brain_and_tumour"]

BRAIN_ML = (700.0, 2200.0)  # plausible adult brain volume (mL)
MAX_TUMOUR_SHARE = 0.5  # a whole tumour over half the brain is more likely a wrong input than a glioma


def check_brain_and_tumour(brain_ml: float, tumour_ml: float, mixed: tuple[list[str], list[str]] | None = None
                           ) -> list[Finding]:
    """Warnings about the brain the model saw and the tumour it found; ``mixed`` = (stripped, not stripped)
    when the sequences disagreed about skull stripping."""
    findings = []
    if mixed is not None and mixed[0] and mixed[1]:
        names = ", ".join(display_name(k) for k in mixed[1])
        findings.append(Finding(Severity.WARNING, "mixed_skull_stripping", f"{', '.join(display_name(k) for k in mixed[0])} "
                                f"{'was' if len(mixed[0]) == 1 else 'were'} skull-stripped but {names} not: {names} "
                                "was restricted to the stripped sequences' brain, as if stripped too"))
    low, high = BRAIN_ML
    if not low <= brain_ml <= high:
        findings.append(Finding(Severity.WARNING, "brain_volume", f"the brain the model saw measures {brain_ml:.0f} mL, "
                                f"outside the adult range {low:.0f}-{high:.0f} mL: check the brain mask (wrong series, a "
                                "child, or a background that is not one constant) before trusting the volumes"))
    if brain_ml > 0 and tumour_ml > MAX_TUMOUR_SHARE * brain_ml:
        findings.append(Finding(Severity.WARNING, "tumour_too_large", f"the whole tumour measures {tumour_ml:.0f} mL, "
                                f"{100 * tumour_ml / brain_ml:.0f} % of the brain: more likely a wrong input (a sequence "
                                "from another study, intensity-normalised exports, a wrong assignment) than a glioma"))
    return findings
