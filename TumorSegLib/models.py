"""The model registry: what each model is, where its weights live, and loading them safely.

The registry is data (``Resources/Models/models.json``); this module gives it types, builds the network
an entry describes, and fetches weights — from the repository or an https URL — verifying every file's SHA-256
before it is loaded. Downloads go to a cache through a temporary file of the downloading process, under a lock,
renamed into place only once the checksum matches, so an interrupted, corrupted or concurrent download never
looks like a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .labels import Region
from .network import is_loopback
from .provenance import file_sha256 as sha256_of  # one file hash for the project; the name others import

__all__ = [
    "MODELS_DIR",
    "WeightFile",
    "ModelSpec",
    "load_registry",
    "get_model",
    "build_network",
    "sha256_of",
    "download",
    "weights_paths",
    "load_networks",
    "WeightsError",
]

# Model files ship beside the library: <root>/Resources/Models in the repository and in the Slicer extension.
MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
REGISTRY_FILE = "models.json"
REGION_OUTPUT = "regions"  # the model outputs one sigmoid channel per tumour region


class WeightsError(RuntimeError):
    """Weights that are missing, damaged or cannot be fetched."""


@dataclass(frozen=True)
class WeightFile:
    """One weight file: a path relative to the models folder, or a URL, with its checksum and size."""

    sha256: str
    size: int
    path: str | None = None
    url: str | None = None
    name: str = ""

    @property
    def file_name(self) -> str:
        return Path(self.path).name if self.path else self.url.rsplit("/", 1)[-1]  # type: ignore[union-attr]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    Attributes:
        id: stable identifier used on the command line.
        architecture: MONAI network class name in ``monai.networks.nets``; ``parameters`` are its arguments.
        sequences: input sequence keys in channel order (subset of t1, t1c, t2, flair).
        output: ``"regions"`` — sigmoid channels for the regions in ``channels`` order.
        spacing: voxel spacing (mm) the model works at; patch_size: sliding-window ROI.
        weights: one file per ensemble member; all are averaged at inference.
        postprocessing: parameters of :mod:`TumorSegLib.postprocessing`.
        temperature: logit temperature per output channel, in ``channels`` order: inference uses
            ``sigmoid(logit / T)``. The registry gives a list (one per channel) or one number for every
            channel; absent or empty means 1 (no scaling). Each must be a finite positive number.
        volume_intervals: the calibration of volume intervals
            (:class:`~TumorSegLib.uncertainty.intervals.IntervalCalibration`), fitted on held-out predictions.
    """

    id: str
    title: str
    architecture: str
    parameters: dict[str, Any]
    sequences: tuple[str, ...]
    output: str
    channels: tuple[str, ...]
    label_convention: str
    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    weights: tuple[WeightFile, ...]
    license: str
    citation: str
    card: str = ""
    postprocessing: dict[str, Any] = field(default_factory=dict)
    temperature: tuple[float, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)
    volume_intervals: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, not only in from_dict, so dataclasses.replace(spec, temperature=...) is checked too.
        if self.output != REGION_OUTPUT or sorted(self.channels) != sorted(r.value for r in Region):
            raise ValueError(f"model '{self.id}': output {self.output!r} with channels {list(self.channels)} is not "
                             f"supported; TumorSeg runs '{REGION_OUTPUT}' models with one sigmoid channel per "
                             "region WT, TC, ET (in any order)")
        object.__setattr__(self, "temperature", _channel_temperatures(self.temperature, self.channels, self.id))

    @property
    def member_runs(self) -> dict[str, WeightFile]:
        """The ``tumorseg train`` run that made each member file in the repository: ``fold0`` … for ``…-fold0.pt``
        …, ``foldall`` for ``…-all.pt`` (the scripts that resume, blend and install members go by it)."""
        runs = {}
        for weight in self.weights:
            if weight.path:
                suffix = Path(weight.path).stem.rsplit("-", 1)[-1]  # brats18-segresnet8-fold0 -> fold0
                runs["foldall" if suffix == "all" else suffix] = weight
        return runs

    def member_index(self, run: str) -> int:
        """Position in ``weights`` (what ``Predictor(members=...)`` takes) of the member made by ``run``: ``fold0``
        ... or ``foldall``, as :attr:`member_runs` names them."""
        runs = self.member_runs
        if run not in runs:
            raise ValueError(f"model '{self.id}' has no member made by run {run!r} "
                             f"(it has {', '.join(runs) or 'none'})")
        return list(self.weights).index(runs[run])

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> "ModelSpec":
        data = dict(entry)
        data["weights"] = tuple(WeightFile(**w) for w in data["weights"])
        for key in ("sequences", "channels", "spacing", "patch_size"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _channel_temperatures(value: Any, channels: Sequence[str], model_id: str) -> tuple[float, ...]:
    """One positive temperature per channel from a number, a list, or nothing (= 1 each).

    Raises:
        ValueError: for a count other than the channels', or a value that is not a finite positive number.
    """
    if isinstance(value, (numbers.Real, str)):  # a string is refused below as not a number
        values = [value] * len(channels)
    else:
        values = [] if value is None else list(value)  # also a NumPy array, e.g. from fit_temperature
        if not values:
            return (1.0,) * len(channels)
    if len(values) != len(channels):
        raise ValueError(f"model '{model_id}': 'temperature' has {len(values)} values, expected one number or "
                         f"one per channel ({', '.join(channels)})")
    out = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, numbers.Real) or not math.isfinite(item) or item <= 0:
            raise ValueError(f"model '{model_id}': temperature {item!r} must be a finite positive number "
                             "(logits are divided by it; 1 leaves them as they are)")
        out.append(float(item))
    return tuple(out)


def load_registry(models_dir: Path | None = None) -> dict[str, ModelSpec]:
    """All models of the registry file in ``models_dir`` (default :data:`MODELS_DIR`), by id."""
    path = Path(models_dir or MODELS_DIR) / REGISTRY_FILE
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    return {entry["id"]: ModelSpec.from_dict(entry) for entry in document["models"]}


def default_model_id(models_dir: Path | None = None) -> str:
    """The id the registry marks as default."""
    with open(Path(models_dir or MODELS_DIR) / REGISTRY_FILE, encoding="utf-8") as f:
        return json.load(f)["default"]


def get_model(model_id: str | None = None, models_dir: Path | None = None) -> ModelSpec:
    """The registry entry ``model_id`` (default: the registry's default).

    Raises:
        KeyError: naming the known ids, if ``model_id`` is unknown.
    """
    registry = load_registry(models_dir)
    model_id = model_id or default_model_id(models_dir)
    if model_id not in registry:
        raise KeyError(f"unknown model '{model_id}'; known models: {', '.join(sorted(registry))}")
    return registry[model_id]


def build_network(spec: ModelSpec):
    """The untrained MONAI network that ``spec`` describes."""
    from monai.networks import nets

    try:
        network_class = getattr(nets, spec.architecture)
    except AttributeError as error:
        raise ValueError(f"model '{spec.id}' names architecture '{spec.architecture}', "
                         "which monai.networks.nets does not have") from error
    return network_class(**spec.parameters)


def default_cache_dir() -> Path:
    """Where downloaded weights are kept: ``$TUMORSEG_CACHE`` or ``~/.cache/tumorseg/models``."""
    return Path(os.environ.get("TUMORSEG_CACHE", Path.home() / ".cache" / "tumorseg" / "models"))


ProgressCallback = Callable[[int, int], None]


def _check_url(url: str) -> None:
    """Only https (or a local file, or a server on this machine, as tests use): weights that run in a clinic
    never travel over plain http."""
    parsed = urllib.parse.urlparse(url)
    local = parsed.scheme == "http" and is_loopback(parsed.hostname)
    if parsed.scheme not in ("https", "file") and not local:
        raise WeightsError(f"refusing to download {url}: only https:// addresses (or file:// and this machine's "
                           "own server) are allowed; fix the model registry")


def download(url: str, destination: Path, sha256: str, size: int | None = None,
             progress: ProgressCallback | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination``, verifying its SHA-256.

    Bytes go to a temporary file of this process only, under a lock that one download of a file holds at a time
    (a second process waits, then finds the file there); the file is renamed into place only once verified,
    and the temporary file is removed on any failure.

    Raises:
        WeightsError: on a refused address, network errors or a checksum or size mismatch.
    """
    _check_url(url)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with _lock(destination.with_name(destination.name + ".lock")):
        if destination.exists() and sha256_of(destination) == sha256:
            return destination  # another process got it while this one waited
        partial = destination.with_name(f".{os.getpid()}.partial.{destination.name}")
        try:
            received, digest = _fetch(url, partial, size, progress, timeout)
            if size is not None and received != size:
                raise WeightsError(f"download of {url} gave {received} bytes, expected {size}; try again")
            if digest != sha256:
                raise WeightsError(f"download of {url} has SHA-256 {digest}, expected {sha256}: the file is damaged "
                                   "or not the registered one; it was discarded")
            os.replace(partial, destination)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            raise WeightsError(f"cannot download {url}: {error}. Check the network connection, "
                               f"or place the file at {destination} by hand") from error
        finally:
            partial.unlink(missing_ok=True)
    return destination


def _fetch(url: str, target: Path, size: int | None, progress: ProgressCallback | None,
           timeout: float) -> tuple[int, str]:
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or size or 0)
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress:
                progress(received, total)
    return received, digest.hexdigest()


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on ``path`` (POSIX advisory lock; on other systems a no-op)."""
    try:
        import fcntl
    except ImportError:  # Windows: per-process temporary names still keep downloads apart
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # a waiter holds the old file and goes on; the result is verified anyway
            fcntl.flock(handle, fcntl.LOCK_UN)


def _verified(path: Path, weight: WeightFile) -> Path:
    actual = sha256_of(path)
    if actual != weight.sha256:
        raise WeightsError(f"weights {path} have SHA-256 {actual}, expected {weight.sha256}: the file is damaged "
                           "or was replaced; restore it (git checkout, or delete it to download again)")
    return path


def weights_paths(spec: ModelSpec, models_dir: Path | None = None, cache_dir: Path | None = None,
                  progress: ProgressCallback | None = None) -> list[Path]:
    """Local, verified paths of every weight file of ``spec``, downloading what is missing."""
    paths = []
    for weight in spec.weights:
        if weight.path:
            local = Path(models_dir or MODELS_DIR) / weight.path
            if not local.exists():
                raise WeightsError(f"weights of model '{spec.id}' are missing: {local}")
        else:
            local = Path(cache_dir or default_cache_dir()) / spec.id / weight.file_name
            if not local.exists():
                download(weight.url, local, weight.sha256, weight.size, progress)  # type: ignore[arg-type]
        paths.append(_verified(local, weight))
    return paths


def load_networks(spec: ModelSpec, device: str = "cpu", models_dir: Path | None = None,
                  members: Sequence[int] | None = None, cache_dir: Path | None = None) -> list:
    """Build and load every ensemble member of ``spec`` (or those in ``members``), in eval mode."""
    import torch

    paths = weights_paths(spec, models_dir, cache_dir)
    chosen = range(len(paths)) if members is None else members
    networks = []
    for index in chosen:
        network = build_network(spec)
        state = torch.load(paths[index], map_location="cpu", weights_only=True)
        network.load_state_dict({k: v.float() for k, v in state.items()})
        networks.append(network.to(device).eval())
    return networks
