"""Shared fixtures: the shared BraTS cases (skipped with a reason when absent) and synthetic data."""

from __future__ import annotations

import locale
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TUMORSEG_SHARED_DATA", ROOT.parent / "shared" / "data" / "brats2018"))


def pytest_configure(config):
    import torch

    # pytest-xdist runs the test files on several worker processes (pyproject's addopts): each takes its share of
    # the cores, since torch's OpenMP threads slow everything down when there are more than cores.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    # Template-derived arrays (and the command-line runs the tests start) use a cache inside the project, not the
    # user's home; tests of the cache itself point it at their own folder.
    os.environ.setdefault("TUMORSEG_ATLAS_CACHE", str(ROOT / ".pytest_cache" / "tumorseg-atlas"))


@pytest.fixture(autouse=True)
def _process_locale_kept():
    """Writing DICOM through SimpleITK (GDCM) sets the whole process's character locale to "C", after which text
    read from other programs (pdftotext) decodes as ASCII: a later test on the same worker failed by the order it
    ran in. Each test gets the locale it started with back."""
    before = locale.setlocale(locale.LC_CTYPE)
    yield
    locale.setlocale(locale.LC_CTYPE, before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared BraTS 2018 cases; tests using it skip, saying why, where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data test: shared BraTS cases not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def held_out_cases(shared_data):
    """{case: fold} for the cross-validation split of the embedded model."""
    import json

    from TumorSegLib.models import MODELS_DIR

    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    return {case: k for k, cases in enumerate(folds) for case in cases}


@pytest.fixture(scope="session")
def synthetic_case_files(tmp_path_factory) -> dict[str, Path]:
    """The synthetic sample case written as BraTS-layout NIfTI files (made once per session)."""
    from TumorSegLib.synthetic import write_synthetic_case

    return write_synthetic_case(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def synthetic_case():
    from TumorSegLib.synthetic import make_synthetic_case

    return make_synthetic_case()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def brain_phantom(shape=(64, 72, 60), spacing=(1.0, 1.0, 1.0), seed: int = 0):
    """Four small 'sequences' of an ellipsoid brain with a spherical lesion, and the lesion's labels."""
    from TumorSegLib.volume import Volume

    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape) / 2
    brain = sum(((g - c) / (0.42 * n)) ** 2 for g, c, n in zip(grid, centre, shape)) < 1
    lesion = sum((g - c - 6) ** 2 for g, c in zip(grid, centre)) < 8**2
    core = sum((g - c - 6) ** 2 for g, c in zip(grid, centre)) < 4**2
    labels = np.zeros(shape, np.uint8)
    labels[lesion & brain] = 2
    labels[core & brain] = 3
    images = {}
    for index, key in enumerate(("t1", "t1c", "t2", "flair")):
        image = (100 + 10 * index) * brain + 40 * lesion * brain + rng.normal(0, 2, shape) * brain
        images[key] = Volume(image.astype(np.float32), spacing)
    return images, Volume(labels, spacing)


class SlicerApplicationStub:
    """The parts of Slicer's application that MRML logics need, built from the slicer-core wheel.

    Like Slicer's application, it creates an application logic with a data I/O and cache manager,
    and registers the Colors, Volumes, Segmentations, Tables and Subject hierarchy module logics on
    the scene, so that MRML behaves as it does inside Slicer (no Qt, no views).
    """

    def __init__(self, cache_dir):
        import slicer

        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkMRMLApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.cache = slicer.vtkCacheManager()
        self.cache.SetRemoteCacheDirectory(str(cache_dir))
        self.io = slicer.vtkDataIOManager()
        self.io.SetCacheManager(self.cache)
        self.scene.SetDataIOManager(self.io)
        self.scene.SetCacheManager(self.cache)
        self.logics = {}
        for name, logic_class in (("Colors", slicer.vtkSlicerColorLogic), ("Volumes", slicer.vtkSlicerVolumesLogic),
                                  ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                                  ("Tables", slicer.vtkSlicerTablesLogic),
                                  ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
            logic = logic_class()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        self.app_logic.SetColorLogic(self.logics["Colors"])

    def modules(self):
        """``slicer.modules`` as the application exposes it (``slicer.modules.volumes.logic()``)."""
        from types import SimpleNamespace

        return SimpleNamespace(**{name.lower(): SimpleNamespace(logic=lambda logic=logic: logic)
                                  for name, logic in self.logics.items()})


@pytest.fixture
def slicer_app(tmp_path):
    """A real MRML scene with Slicer's module logics registered (slicer.mrmlScene points at it)."""
    import slicer

    app = SlicerApplicationStub(tmp_path / "cache")
    previous = getattr(slicer, "mrmlScene", None), getattr(slicer, "modules", None)
    slicer.mrmlScene, slicer.modules = app.scene, app.modules()
    yield app
    slicer.mrmlScene, slicer.modules = previous
    app.scene.Clear(True)
