"""Four MRI volumes in, a tumour label map on the input's own grid out.

:func:`segment` chains the steps — input checks, preprocessing, inference, mapping back to the
reference grid, post-processing — and times each. It accepts any subset of the model's sequences that
holds T1c or FLAIR: missing sequences enter the model as zeros, which the default model was trained
to expect (random sequence drop-out).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .inference import Predictor, flip_sets
from .labels import Label, Region, region_masks
from .models import ModelSpec, get_model
from .postprocessing import PostProcessing, postprocess
from .preprocessing import check_same_grid, prepare_input, to_reference_grid
from .qa import run_qa
from .sequences import DISPLAY_NAMES, REQUIRED_ANY
from .volume import Volume

__all__ = ["SegmentationResult", "segment", "region_volumes_ml"]

Progress = Callable[[float, str], None]


def region_volumes_ml(labels: Volume) -> dict[str, float]:
    """Volume in mL of each label (NCR, ED, ET) and region (TC, WT) of an internal label map."""
    voxel_ml = labels.voxel_volume_ml
    volumes = {label.name: float((labels.array == label).sum()) * voxel_ml for label in Label if label}
    for region, mask in region_masks(labels.array).items():
        volumes[region.value] = float(mask.sum()) * voxel_ml
    volumes.pop(Region.ET.value, None)  # ET the region is ET the label: listed once
    volumes["ET"] = float((labels.array == Label.ET).sum()) * voxel_ml
    return {key: round(volumes[key], 3) for key in ("NCR", "ED", "ET", "TC", "WT")}


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes:
        labels: internal label map (uint8) on the reference grid.
        probabilities: (3, I, J, K) WT/TC/ET probabilities on the reference grid.
        model: the registry entry used; device: where inference ran.
        sequences_used: the sequences that were given (others entered the model as zeros).
        timings_s: seconds per step.
        qa: input-quality findings (warnings; errors stop :func:`segment` before it starts).
    """

    labels: Volume
    probabilities: Volume
    model: ModelSpec
    device: str
    sequences_used: tuple[str, ...]
    timings_s: dict[str, float] = field(default_factory=dict)
    qa: list[dict] = field(default_factory=list)

    def volumes_ml(self) -> dict[str, float]:
        return region_volumes_ml(self.labels)

    def summary(self) -> dict:
        """JSON-ready record: volumes, model id and checksums, device, sequences and timings."""
        return {
            "model": self.model.id,
            "model_sha256": [w.sha256 for w in self.model.weights],
            "device": self.device,
            "sequences_used": list(self.sequences_used),
            "sequences_missing": [s for s in self.model.sequences if s not in self.sequences_used],
            "volumes_ml": self.volumes_ml(),
            "grid": {"shape": list(self.labels.shape), "spacing_mm": list(self.labels.spacing)},
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
            "qa": self.qa,
        }


def _check_sequences(images: Mapping[str, Volume | None], spec: ModelSpec) -> list[str]:
    unknown = [key for key in images if key not in spec.sequences]
    if unknown:
        raise ValueError(f"unknown sequence(s) {unknown}; model '{spec.id}' takes {list(spec.sequences)}")
    present = [key for key in spec.sequences if images.get(key) is not None]
    if not set(present) & set(REQUIRED_ANY):
        raise ValueError("a segmentation needs at least a T1c or a FLAIR volume; given: "
                         + (", ".join(DISPLAY_NAMES[k] for k in present) or "none"))
    return present


def segment(images: Mapping[str, Volume | None], model: ModelSpec | str | None = None, device: str = "auto",
            flips: int = 1, progress: Progress | None = None, predictor: Predictor | None = None,
            postprocessing: PostProcessing | None = None) -> SegmentationResult:
    """Segment a glioma from co-registered MRI sequences.

    Args:
        images: volumes by sequence key (``t1``, ``t1c``, ``t2``, ``flair``); missing keys or ``None`` are
            treated as missing sequences. All given volumes must share one grid.
        model: registry entry or id (default: the registry's default).
        device: ``auto``, ``cpu`` or ``cuda``.
        flips: test-time flip passes per ensemble member (1 = none, up to 8).
        progress: called with (fraction done, step description).
        predictor: a ready :class:`Predictor` (reuses loaded networks).
        postprocessing: overrides the model's post-processing settings.

    Raises:
        ValueError: for missing or inconsistent input, with what to fix.
    """
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    spec = predictor.spec if predictor else (model if isinstance(model, ModelSpec) else get_model(model))
    present = _check_sequences(images, spec)
    volumes = [images[key] for key in present]
    qa_report = run_qa({key: images[key] for key in present})
    qa_report.raise_for_errors()  # errors stop here, before any work; warnings travel with the result
    check_same_grid(volumes, [DISPLAY_NAMES[k] for k in present])

    start = time.perf_counter()
    report(0.02, "preprocessing")
    prepared = prepare_input(volumes, spec.spacing, margin=4)
    channels = np.zeros((len(spec.sequences), *prepared.image.shape), np.float32)
    for index, key in enumerate(present):
        channels[spec.sequences.index(key)] = prepared.image.array[index]
    model_input = prepared.image.with_array(channels)
    timings["preprocess"] = time.perf_counter() - start

    start = time.perf_counter()
    report(0.08, "loading model")
    predictor = predictor or Predictor(spec, device)
    timings["load_model"] = time.perf_counter() - start

    start = time.perf_counter()
    probabilities = predictor(model_input, flip_sets(flips),
                              progress=lambda fraction, message: report(0.1 + 0.8 * fraction, message))
    probabilities = probabilities.with_array(probabilities.array * prepared.brain_mask)
    timings["inference"] = time.perf_counter() - start

    start = time.perf_counter()
    report(0.92, "post-processing")
    probabilities = to_reference_grid(probabilities, prepared, order=1)
    labels = postprocess(probabilities, postprocessing or PostProcessing.from_dict(spec.postprocessing))
    timings["postprocess"] = time.perf_counter() - start
    report(1.0, "done")
    return SegmentationResult(labels, probabilities, spec, predictor.device, tuple(present), timings,
                              qa_report.as_list())
