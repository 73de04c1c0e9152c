"""Arrays derived from the MNI template are derived once, then read back from the cache folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from TumorSegLib.atlas import derived_cache_dir, derived_from_template


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "atlas-cache"
    monkeypatch.setenv("TUMORSEG_ATLAS_CACHE", str(folder))
    assert derived_cache_dir() == folder
    return folder


def _counting(arrays: dict[str, np.ndarray]):
    calls = []

    def derive():
        calls.append(1)
        return arrays

    return derive, calls


def test_derived_once_then_read_back(cache):
    arrays = {"values": np.arange(12, dtype=np.float32).reshape(3, 4), "codes": np.array([1, 2, 3], np.uint8)}
    derive, calls = _counting(arrays)
    first = derived_from_template("example", "rule 1", derive)
    [written] = cache.iterdir()
    assert written.name.startswith("example-") and written.suffix == ".npz"
    second = derived_from_template("example", "rule 1", derive)
    assert len(calls) == 1
    for key, value in arrays.items():
        assert np.array_equal(first[key], value) and np.array_equal(second[key], value)
        assert second[key].dtype == value.dtype
    # another recipe is another derivation, in its own file
    derived_from_template("example", "rule 2", derive)
    assert len(calls) == 2 and len(list(cache.iterdir())) == 2


def test_damaged_file_is_derived_again_and_replaced(cache):
    arrays = {"values": np.ones(5)}
    derive, calls = _counting(arrays)
    derived_from_template("example", "rule", derive)
    [written] = cache.iterdir()
    written.write_bytes(written.read_bytes()[:40])  # cut short, as by a full disk
    again = derived_from_template("example", "rule", derive)
    assert len(calls) == 2 and np.array_equal(again["values"], arrays["values"])
    assert [p.name for p in cache.iterdir()] == [written.name]  # replaced, no temporary file left
    with np.load(written) as stored:
        assert np.array_equal(stored["values"], arrays["values"])


def test_full_disk_leaves_no_partial_file(cache, monkeypatch):
    def full_disk(path, **arrays):
        Path(path).write_bytes(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    derive, calls = _counting({"values": np.zeros(3)})
    assert np.array_equal(derived_from_template("example", "rule", derive)["values"], np.zeros(3))
    assert list(cache.iterdir()) == []


def test_folder_that_is_a_file_costs_only_time(cache):
    cache.write_text("not a folder")
    derive, calls = _counting({"values": np.zeros(3)})
    assert np.array_equal(derived_from_template("example", "rule", derive)["values"], np.zeros(3))
    assert cache.read_text() == "not a folder"


def test_tissue_regions_from_the_cache_equal_a_fresh_derivation(cache):
    from TumorSegLib.clinical import tissues

    tissues._template_regions.cache_clear()
    try:
        brain, codes = tissues._template_regions()  # derived and written
        tissues._template_regions.cache_clear()
        cached_brain, cached_codes = tissues._template_regions()  # read back
    finally:
        tissues._template_regions.cache_clear()
    assert len(list(cache.iterdir())) == 1
    for fresh, cached in ((brain, cached_brain), (codes, cached_codes)):
        assert np.array_equal(fresh.array, cached.array) and fresh.array.dtype == cached.array.dtype
        assert fresh.spacing == cached.spacing and fresh.origin == cached.origin
        assert np.array_equal(fresh.direction, cached.direction)
    assert set(np.unique(cached_codes.array)) == {0, 1, 2, 3}  # white, grey, fluid and the rest
