"""Which Python packages the segmentation process needs, which are missing, and how to install them.

Slicer's own Python runs the segmentation child process, so on first use the module installs what
is missing there — PyTorch through the PyTorch Utils extension when it is installed (it picks the
right CUDA build), everything else with pip, at the versions in ``Resources/Python/requirements.txt``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REQUIREMENTS_FILE", "Requirement", "requirements", "missing_requirements", "InstallPlan", "install_plan"]

REQUIREMENTS_FILE = Path(__file__).resolve().parents[2] / "Resources" / "Python" / "requirements.txt"
# Distribution name → import name, where they differ.
_IMPORT_NAMES = {"SimpleITK": "SimpleITK", "scikit-learn": "sklearn"}


@dataclass(frozen=True)
class Requirement:
    """One pinned requirement, e.g. ``monai==1.6.1``."""

    name: str
    spec: str

    @property
    def import_name(self) -> str:
        return _IMPORT_NAMES.get(self.name, self.name.replace("-", "_").lower())

    def __str__(self) -> str:
        return f"{self.name}{self.spec}"


def requirements(path: Path = REQUIREMENTS_FILE) -> list[Requirement]:
    """The pinned requirements listed in ``path`` (comments and blank lines skipped)."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
            out.append(Requirement(match.group(1), match.group(2).replace(" ", "")))
    return out


def missing_requirements(find_spec: Callable[[str], object] = importlib.util.find_spec,
                         path: Path = REQUIREMENTS_FILE) -> list[Requirement]:
    """Requirements whose package cannot be imported in this interpreter."""
    return [r for r in requirements(path) if find_spec(r.import_name) is None]


@dataclass(frozen=True)
class InstallPlan:
    """How to install missing packages: PyTorch through PyTorch Utils or pip, the rest through pip."""

    torch_with_pytorch_utils: Requirement | None
    pip: tuple[str, ...]

    def describe(self) -> str:
        lines = []
        if self.torch_with_pytorch_utils:
            lines.append(f"PyTorch ({self.torch_with_pytorch_utils}) through the PyTorch Utils extension")
        if self.pip:
            lines.append("with pip: " + " ".join(self.pip))
        return "\n".join(lines)


def install_plan(missing: list[Requirement], pytorch_utils_available: bool) -> InstallPlan:
    """Plan the installation of ``missing``: torch first (it constrains the others), then the rest."""
    torch = next((r for r in missing if r.name == "torch"), None)
    others = tuple(str(r) for r in missing if r.name != "torch")
    if torch is not None and not pytorch_utils_available:
        return InstallPlan(None, (str(torch), *others))
    return InstallPlan(torch, others)
