import hashlib
import http.server
import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from Testing.script_modules import load_script
from TumorSegLib.models import (
    MODELS_DIR,
    WeightFile,
    WeightsError,
    build_network,
    download,
    get_model,
    load_networks,
    load_registry,
    sha256_of,
    weights_paths,
)


def test_registry_entries_are_complete_and_the_default_exists():
    registry = load_registry()
    assert get_model().id in registry
    for spec in registry.values():
        assert spec.sequences == ("t1", "t1c", "t2", "flair")
        assert spec.channels == ("WT", "TC", "ET")
        assert spec.weights and spec.license and spec.citation and spec.spacing and spec.patch_size
        assert (MODELS_DIR / spec.card).exists(), f"model card of {spec.id} is missing"


def test_every_shipped_weight_file_matches_its_checksum_and_size():
    for spec in load_registry().values():
        for weight, path in zip(spec.weights, weights_paths(spec)):
            assert path.stat().st_size == weight.size
            assert sha256_of(path) == weight.sha256


def test_shipped_weights_stay_under_20_mb():
    files = {w.path for spec in load_registry().values() for w in spec.weights if w.path}
    assert sum((MODELS_DIR / f).stat().st_size for f in files) <= 20 * 1024 * 1024


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="brats18-segresnet8"):
        get_model("no-such-model")


def test_network_matches_the_weights():
    spec = get_model("brats18-segresnet8")
    networks = load_networks(spec)
    assert len(networks) == 1 and not networks[0].training
    output = networks[0](torch.zeros(1, 4, 32, 32, 32))
    assert output.shape == (1, 3, 32, 32, 32)


def copy_models_dir(tmp_path: Path) -> Path:
    target = tmp_path / "Models"
    target.mkdir()
    shutil.copy(MODELS_DIR / "models.json", target)
    spec = get_model("brats18-segresnet8")
    shutil.copy(MODELS_DIR / spec.weights[0].path, target)
    return target


def test_damaged_weights_are_refused_before_loading(tmp_path):
    models_dir = copy_models_dir(tmp_path)
    spec = get_model("brats18-segresnet8", models_dir)
    path = models_dir / spec.weights[0].path
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_networks(spec, models_dir=models_dir)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_and_renames_into_place(http_server, tmp_path):
    root, url = http_server
    payload = b"weights" * 1000
    (root / "w.pt").write_bytes(payload)
    reported = []
    target = download(f"{url}/w.pt", tmp_path / "cache" / "w.pt", hashlib.sha256(payload).hexdigest(), len(payload),
                      progress=lambda done, total: reported.append((done, total)))
    assert target.read_bytes() == payload
    assert reported[-1] == (len(payload), len(payload))
    assert not list(target.parent.glob("*.partial"))


def test_a_download_with_the_wrong_checksum_leaves_nothing_behind(http_server, tmp_path):
    root, url = http_server
    (root / "w.pt").write_bytes(b"tampered")
    target = tmp_path / "cache" / "w.pt"
    with pytest.raises(WeightsError, match="SHA-256"):
        download(f"{url}/w.pt", target, "0" * 64)
    assert not target.exists() and not list(target.parent.iterdir())


def test_two_downloads_of_one_file_at_once_do_not_mix_and_leave_one_verified_file(http_server, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    root, url = http_server
    payload = b"weights" * 200000
    (root / "w.pt").write_bytes(payload)
    target = tmp_path / "cache" / "w.pt"
    digest = hashlib.sha256(payload).hexdigest()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: download(f"{url}/w.pt", target, digest, len(payload)), range(2)))
    assert results == [target, target] and target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["w.pt"]  # no partial or lock file left


@pytest.mark.parametrize("address", ["http://example.org/w.pt", "ftp://example.org/w.pt"])
def test_weights_are_only_fetched_over_https(tmp_path, address):
    with pytest.raises(WeightsError, match="only https"):
        download(address, tmp_path / "w.pt", "0" * 64)
    assert not list(tmp_path.iterdir())


def test_a_failed_download_says_what_to_do(http_server, tmp_path):
    _, url = http_server
    target = tmp_path / "cache" / "w.pt"
    with pytest.raises(WeightsError, match="cannot download .* place the file"):
        download(f"{url}/missing.pt", target, "0" * 64)
    assert not target.exists() and not list(target.parent.iterdir())


def test_a_registry_entry_with_a_url_downloads_once_into_the_cache(http_server, tmp_path):
    root, url = http_server
    spec = get_model("brats18-segresnet8")
    source = MODELS_DIR / spec.weights[0].path
    shutil.copy(source, root / "remote.pt")
    remote = replace(spec, id="remote-model", weights=(WeightFile(spec.weights[0].sha256, spec.weights[0].size,
                                                                  url=f"{url}/remote.pt"),))
    cache = tmp_path / "cache"
    first = weights_paths(remote, cache_dir=cache)
    (root / "remote.pt").unlink()  # a second call must not need the network
    second = weights_paths(remote, cache_dir=cache)
    assert first == second and first[0].read_bytes() == source.read_bytes()


def test_unknown_architecture_is_a_clear_error():
    spec = replace(get_model("brats18-segresnet8"), architecture="NoSuchNet")
    with pytest.raises(ValueError, match="NoSuchNet"):
        build_network(spec)


def test_registry_file_is_valid_json_with_a_default():
    document = json.loads((MODELS_DIR / "models.json").read_text())
    assert document["default"] in {m["id"] for m in document["models"]}


def test_the_registry_states_temperature_one_for_every_channel_of_every_model():
    # The model card: temperature scaling was evaluated and T = 1 kept; the registry says so explicitly.
    document = json.loads((MODELS_DIR / "models.json").read_text())
    for entry in document["models"]:
        assert entry["temperature"] == [1.0, 1.0, 1.0], entry["id"]
    for spec in load_registry().values():
        assert spec.temperature == (1.0, 1.0, 1.0)


def test_temperature_accepts_one_number_or_one_per_channel_and_defaults_to_one():
    entry = json.loads((MODELS_DIR / "models.json").read_text())["models"][1]
    from TumorSegLib.models import ModelSpec

    assert ModelSpec.from_dict({**entry, "temperature": 1.5}).temperature == (1.5, 1.5, 1.5)
    assert ModelSpec.from_dict({**entry, "temperature": [1, 2, 0.5]}).temperature == (1.0, 2.0, 0.5)
    without = {key: value for key, value in entry.items() if key != "temperature"}
    assert ModelSpec.from_dict(without).temperature == (1.0, 1.0, 1.0)  # an older registry: no scaling


@pytest.mark.parametrize("temperature, message", [(0.0, "positive"), (-1.0, "positive"), (float("nan"), "finite"),
                                                  ("2", "positive"), ([1.0, 1.0], "one per channel")])
def test_a_temperature_that_is_not_positive_or_has_the_wrong_length_is_refused(temperature, message):
    spec = get_model("brats18-segresnet8")
    with pytest.raises(ValueError, match=message):
        replace(spec, temperature=temperature)


def test_cases_outside_the_split_are_tested_only_by_members_that_never_trained_on_them():
    cross_validation = load_script("Testing/Benchmarks/cross_validation.py")
    spec = get_model()
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    run_of = {weight.file_name: run for run, weight in spec.member_runs.items()}
    for k, fold in enumerate(folds):  # a split case: only its own fold's member never trained on it
        assert cross_validation.members_unseen_by(spec, fold[0], folds) == [k + 1]
    late_case = "Brats18_TCIA05_396_1"  # shared after the first training; later runs trained on it or held it out
    members = cross_validation.members_unseen_by(spec, late_case, folds)
    for index, weight in enumerate(spec.weights):
        config = MODELS_DIR / "training" / f"config_{run_of[weight.file_name]}.json"
        trained = config.is_file() and late_case in json.loads(config.read_text())["train_cases"]
        assert (index in members) != trained, weight.file_name


def test_compare_fold_judges_each_run_against_its_own_member_on_cases_it_never_trained_on(tmp_path):
    compare_fold = load_script("Testing/Benchmarks/compare_fold.py")
    spec = get_model()
    names = [weight.name for weight in spec.weights]
    chosen = [names[spec.member_index(run)] for run in ("foldall", "fold0", "fold4")]
    assert chosen == ["all cases", "fold 0", "fold 4"]
    with pytest.raises(ValueError, match="no member made by run 'fold9'"):
        spec.member_index("fold9")
    folds = [["A", "B"], ["C"]]
    cases = {"A": {}, "B": {}, "C": {}, "Late": {}}  # "Late": shared after the split was made
    runs = {}
    for run, trained in (("all28", ["A", "B", "C"]), ("all29", ["A", "B", "C", "Late"])):
        (tmp_path / run).mkdir()
        (tmp_path / run / "config.json").write_text(json.dumps({"train_cases": trained, "val_cases": []}))
        runs[run] = (run, tmp_path / run / "model.pt")
    assert compare_fold.also_held_out([runs["all28"]], folds, cases) == ["Late"]
    assert compare_fold.also_held_out([runs["all28"], runs["all29"]], folds, cases) == []
    assert compare_fold.also_held_out([("bare", tmp_path / "model.pt")], folds, cases) == []  # no config: none
