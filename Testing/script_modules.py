"""Load a project script or benchmark (files outside any package) as a module, so tests can call its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The module in ``ROOT / relative_path`` (e.g. ``scripts/blend_weights.py``), executed fresh each call."""
    path = ROOT / relative_path
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
