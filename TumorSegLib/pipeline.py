"""Four MRI volumes in, a tumour label map on the reference sequence's own grid out.

:func:`segment` chains the steps — input QA, co-registration onto the reference sequence, optional N4
and brain extraction, preprocessing, inference, mapping back to the reference grid, post-processing —
and times each. It accepts any subset of the model's sequences that holds T1c or FLAIR: missing sequences
enter the model as zeros, which the default model was trained to expect (random sequence drop-out).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .clinical import (
    BrainExtraction,
    CoRegistration,
    coregister,
    extract_brain,
    is_skull_stripped,
    n4_bias_correction,
    refine_with_tumour,
)
from .inference import Predictor, flip_sets
from .labels import region_volumes_ml
from .models import ModelSpec, get_model
from .options import ClinicalOptions, Mode, UncertaintyOptions
from .postprocessing import PostProcessing, postprocess
from .preprocessing import PreparedInput, check_same_grid, prepare_input, to_reference_grid
from .qa import Finding, QAReport, Severity, check_sequences, run_qa
from .sequences import DISPLAY_NAMES, REFERENCE_ORDER, REQUIRED_ANY
from .volume import Volume

__all__ = ["SegmentationResult", "segment"]

Progress = Callable[[float, str], None]
# Brain extraction runs on the first of these the study has (T1 shows the anatomy best).
ANATOMY_ORDER = ("t1", "t1c", "t2", "flair")


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
        reference: the sequence whose grid the results are on; registrations: how each sequence got there.
        brain: the brain extraction, when one was made; n4: whether bias-field correction ran.
        uncertainty: the uncertainty sampling on the reference grid, when sampled.
    """

    labels: Volume
    probabilities: Volume
    model: ModelSpec
    device: str
    sequences_used: tuple[str, ...]
    timings_s: dict[str, float] = field(default_factory=dict)
    qa: list[dict] = field(default_factory=list)
    reference: str = ""
    registrations: list[dict] = field(default_factory=list)
    brain: BrainExtraction | None = None
    n4: bool = False
    uncertainty: object = None  # uncertainty.UncertaintyResult on the reference grid, when sampled

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
            "reference": self.reference,
            "registration": self.registrations,
            "brain_extraction": self.brain.as_dict() if self.brain is not None else None,
            "n4_bias_correction": self.n4,
            **({"uncertainty": self.uncertainty.summary()} if self.uncertainty is not None else {}),
        }


class _Timings(dict):
    """Seconds per step, filled by ``with timings.step(name): ...``."""

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = time.perf_counter() - start


def _present_sequences(images: Mapping[str, Volume | None], spec: ModelSpec) -> list[str]:
    unknown = [key for key in images if key not in spec.sequences]
    if unknown:
        raise ValueError(f"unknown sequence(s) {unknown}; model '{spec.id}' takes {list(spec.sequences)}")
    present = [key for key in spec.sequences if images.get(key) is not None]
    if not set(present) & set(REQUIRED_ANY):
        raise ValueError("a segmentation needs at least a T1c or a FLAIR volume; given: "
                         + (", ".join(DISPLAY_NAMES[k] for k in present) or "none"))
    return present


def _check_inputs(images: Mapping[str, Volume], present: list[str], clinical: ClinicalOptions
                  ) -> tuple[QAReport, str]:
    """QA (errors stop here, before any work; warnings travel with the result) and the reference sequence."""
    qa_report = run_qa({key: images[key] for key in present})
    qa_report.raise_for_errors()
    if not {"t2", "flair"} & set(present):
        qa_report.findings.append(Finding(
            Severity.WARNING, "no_t2_or_flair", "without T2 or FLAIR, oedema is invisible: the whole-tumour and "
            "oedema contours are unreliable (cross-validated whole-tumour Dice 0.30 with T1c alone); add FLAIR"))
    reference = clinical.reference or next(key for key in REFERENCE_ORDER if key in present)
    if reference not in present:
        raise ValueError(f"the reference sequence {DISPLAY_NAMES.get(reference, reference)} was not given")
    if clinical.register is Mode.OFF:
        others = [k for k in present if k != reference]
        check_same_grid([images[reference]] + [images[k] for k in others],
                        [DISPLAY_NAMES[reference]] + [DISPLAY_NAMES[k] for k in others])
    return qa_report, reference


def _extract_brain(aligned: Mapping[str, Volume], reference: str, mode: Mode, report: Progress
                   ) -> BrainExtraction | None:
    """The brain when the reference is not skull-stripped (or extraction is forced), else ``None``."""
    if mode is Mode.ON or (mode is Mode.AUTO and not is_skull_stripped(aligned[reference])):
        report(0.05, "brain extraction")
        return extract_brain(aligned[next(key for key in ANATOMY_ORDER if key in aligned)])
    return None


def _model_input(aligned: Mapping[str, Volume], present: list[str], spec: ModelSpec,
                 brain: BrainExtraction | None) -> tuple[PreparedInput, Volume]:
    """Cropped, normalised input with one channel per model sequence (missing ones zero), and its geometry."""
    volumes = [aligned[key] for key in present]
    # The model sees a little beyond the atlas brain so tumour at its edge is not cut before inference.
    model_mask = None if brain is None else brain.mask.with_array(
        ndimage.binary_dilation(brain.mask.array, np.ones((3, 3, 3), bool), iterations=3))
    if model_mask is not None:
        volumes = [v.with_array(np.where(model_mask.array, v.array, 0).astype(np.float32)) for v in volumes]
    prepared = prepare_input(volumes, spec.spacing, margin=4, brain_mask=model_mask)
    channels = np.zeros((len(spec.sequences), *prepared.image.shape), np.float32)
    for index, key in enumerate(present):
        channels[spec.sequences.index(key)] = prepared.image.array[index]
    return prepared, prepared.image.with_array(channels)


def _predict(predictor: Predictor, model_input: Volume, prepared: PreparedInput, flips: int,
             uncertainty: UncertaintyOptions | None, settings: PostProcessing, report: Progress):
    """(probabilities on the model grid, uncertainty on the reference grid or ``None``)."""
    progress = lambda fraction, message: report(0.1 + 0.8 * fraction, message)  # noqa: E731
    if uncertainty is None:
        probabilities = predictor(model_input, flip_sets(flips), progress=progress)
        return probabilities.with_array(probabilities.array * prepared.brain_mask), None
    from .uncertainty import estimate_uncertainty

    sampled = estimate_uncertainty(predictor, model_input, uncertainty.methods, samples=uncertainty.samples,
                                   time_budget_s=uncertainty.time_budget_s, brain_mask=prepared.brain_mask,
                                   postprocessing=settings, progress=progress)
    return sampled.probabilities, sampled.mapped(lambda volume, order: to_reference_grid(volume, prepared, order))


def segment(images: Mapping[str, Volume | None], model: ModelSpec | str | None = None, device: str = "auto",
            flips: int = 1, progress: Progress | None = None, predictor: Predictor | None = None,
            postprocessing: PostProcessing | None = None,
            clinical: ClinicalOptions = ClinicalOptions(),
            uncertainty: UncertaintyOptions | None = None) -> SegmentationResult:
    """Segment a glioma from the MRI sequences of one visit.

    Args:
        images: volumes by sequence key (``t1``, ``t1c``, ``t2``, ``flair``); missing keys or ``None`` are
            missing sequences. They may lie on different grids (they are co-registered onto the reference
            sequence unless ``clinical.register`` is ``off``).
        model: registry entry or id (default: the registry's default).
        device: ``auto``, ``cpu`` or ``cuda``.
        flips: test-time flip passes per ensemble member (1 = none, up to 8).
        progress: called with (fraction done, step description).
        predictor: a ready :class:`Predictor` (reuses loaded networks).
        postprocessing: overrides the model's post-processing settings.
        clinical: co-registration, brain extraction and bias-correction settings.
        uncertainty: when given, probabilities are the mean over uncertainty samples, and the result
            carries the uncertainty maps, region scores and volume intervals on the reference grid.

    Raises:
        ValueError: for missing, unusable or inconsistent input, with what to fix (nothing is written).
    """
    report = progress or (lambda fraction, message: None)
    timings = _Timings()
    spec = predictor.spec if predictor else (model if isinstance(model, ModelSpec) else get_model(model))
    present = _present_sequences(images, spec)
    report(0.0, "quality checks")
    qa_report, reference = _check_inputs(images, present, clinical)
    with timings.step("coregister"):
        report(0.01, "co-registration")
        aligned, registrations = coregister({key: images[key] for key in present}, reference, clinical.register,
                                            kind=clinical.registration_kind,
                                            progress=lambda f, m: report(0.01 + 0.03 * f, m))
        qa_report.findings += check_sequences(aligned)
    with timings.step("n4"):
        if clinical.n4:
            report(0.04, "bias-field correction (N4)")
            aligned = {key: n4_bias_correction(volume) for key, volume in aligned.items()}
    with timings.step("brain_extraction"):
        brain = _extract_brain(aligned, reference, clinical.skull_strip, report)
    with timings.step("preprocess"):
        report(0.07, "preprocessing")
        prepared, model_input = _model_input(aligned, present, spec, brain)
    with timings.step("load_model"):
        report(0.08, "loading model")
        predictor = predictor or Predictor(spec, device)
    settings = postprocessing or PostProcessing.from_dict(spec.postprocessing)
    with timings.step("inference"):
        probabilities, sampled = _predict(predictor, model_input, prepared, flips, uncertainty, settings, report)
    with timings.step("postprocess"):
        report(0.92, "post-processing")
        probabilities = to_reference_grid(probabilities, prepared, order=1)
        labels = _labels(probabilities, settings, brain)
    report(1.0, "done")
    return SegmentationResult(labels, probabilities, spec, predictor.device, tuple(present), dict(timings),
                              qa_report.as_list() + _registration_findings(registrations), reference,
                              [r.as_dict() for r in registrations], brain, clinical.n4, sampled)


def _labels(probabilities: Volume, settings: PostProcessing, brain: BrainExtraction | None) -> Volume:
    """Post-processed labels on the reference grid, kept inside the final brain mask."""
    labels = postprocess(probabilities, settings)
    if brain is not None:
        # Final brain mask: the atlas brain plus the predicted tumour touching it; nothing outside is kept.
        brain.mask = refine_with_tumour(brain.mask, labels.array > 0)
        labels = labels.with_array(np.where(brain.mask.array, labels.array, 0).astype(np.uint8))
    return labels


def _registration_findings(registrations: list[CoRegistration]) -> list[dict]:
    return [{"severity": "warning", "code": "registration", "sequence": record.sequence, "message": warning}
            for record in registrations for warning in record.warnings]
