"""Findings of the input checks: each has a code for programs and a message for people that says what to fix.

Errors stop the run before any heavy step; warnings travel with the result. Some errors may be overridden
with ``--force`` (the input is unusual, not unusable: e.g. an implausible brain volume, sequences that do
not register); those stay in the record as forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from ..sequences import DISPLAY_NAMES

__all__ = ["Severity", "Finding", "QAReport", "QAError", "display_name"]


class Severity(str, Enum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One QA result: how serious, a stable code for programs, and a message for people.

    ``forceable``: an error ``--force`` may override (then recorded with ``forced``).
    """

    severity: Severity
    code: str
    message: str
    sequence: str | None = None
    forceable: bool = False
    forced: bool = False

    def as_dict(self) -> dict:
        out = {"severity": self.severity.value, "code": self.code, "sequence": self.sequence, "message": self.message}
        return {**out, "forced": True} if self.forced else out


class QAError(ValueError):
    """Input that must be fixed before segmenting; ``findings`` lists every error."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        forceable = all(f.forceable for f in findings)
        hint = " (if you have checked the images and want the result anyway, run again with --force)" if forceable \
            else ""
        super().__init__("; ".join(f.message for f in findings) + hint)


@dataclass
class QAReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    def add(self, findings: list[Finding]) -> None:
        """Add findings not already reported (same code, same sequence): the cross-sequence checks run on the
        inputs and again on the co-registered images, which are the very same images when the inputs shared a
        grid."""
        known = {(f.code, f.sequence) for f in self.findings}
        self.findings += [f for f in findings if (f.code, f.sequence) not in known]

    def raise_for_errors(self, force: bool = False) -> None:
        """Stop on errors; with ``force``, forceable errors become warnings marked as forced."""
        if force:
            self.findings = [replace(f, severity=Severity.WARNING, forced=True)
                             if f.severity is Severity.ERROR and f.forceable else f for f in self.findings]
        if self.errors:
            raise QAError(self.errors)

    def as_list(self) -> list[dict]:
        return [f.as_dict() for f in self.findings]


def display_name(key: str) -> str:
    return DISPLAY_NAMES.get(key, key)
