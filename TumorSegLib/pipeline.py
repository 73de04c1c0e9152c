"""Four MRI volumes in, a tumour label map on the reference sequence's own grid out.

:func:`segment` chains the steps — input QA, co-registration onto the reference sequence, brain extraction
and N4 bias correction (default), preprocessing, inference, mapping back to the reference grid, post-processing —
and times each. It accepts any subset of the model's sequences that holds T1c or FLAIR: missing sequences
enter the model as zeros, which the default model was trained to expect (random sequence drop-out).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from .clinical import (
    BrainExtraction,
    CoRegistration,
    check_tissue_contrast,
    coregister,
    extract_brain,
    is_skull_stripped,
    n4_bias_correction_all,
    refine_with_tumour,
    stripped_sequences,
)
from .enhancement import EnhancementCheck, check_enhancement
from .inference import Predictor, flip_sets, predictor_for
from .intensity import foreground_mask
from .labels import region_volumes_ml
from .models import ModelSpec, get_model
from .options import ClinicalOptions, Mode, UncertaintyOptions
from .postprocessing import PostProcessing, postprocess
from .preprocessing import PreparedInput, check_same_grid, prepare_input, to_reference_grid
from .qa import Finding, QAReport, Severity, check_sequences, result_findings, run_qa
from .sequences import DISPLAY_NAMES, REFERENCE_ORDER, REQUIRED_ANY
from .support import NOT_ASSESSED_WITHOUT_T2_FLAIR, not_assessed, without_unseen_oedema
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
        uncertainty: the uncertainty sampling on the reference grid, when sampling was asked for.
        spread: otherwise, for an ensemble, its members' disagreement on the model grid (the members are
            samples at no extra cost): region scores, review flags and volume intervals for every run.
        enhancement: the enhancement check (without T1c: enhancing tumour and necrosis not assessed).
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
    enhancement: EnhancementCheck | None = None
    spread: object = None  # uncertainty.UncertaintyResult of the ensemble members, on the model grid
    to_reference: Callable[[Volume, int], Volume] | None = None  # model grid → reference grid (order 0/1)
    fallbacks: list[str] = field(default_factory=list)  # what had to change while running (CUDA out of memory)
    precision: str = "float32"  # the networks' number format (inference.inference_precision)

    @property
    def not_assessed(self) -> tuple[str, ...]:
        """Volume keys the images cannot support (without T1c NCR and ET, without T2/FLAIR ED and WT)."""
        return tuple(not_assessed(self.sequences_used))

    def volumes_ml(self) -> dict[str, float | None]:
        """mL per volume key; ``None`` for what was not assessed."""
        return {key: None if key in self.not_assessed else value
                for key, value in region_volumes_ml(self.labels).items()}

    def summary(self) -> dict:
        """JSON-ready record: volumes, model id and checksums, device, sequences and timings."""
        return {
            "model": self.model.id,
            "model_sha256": [w.sha256 for w in self.model.weights],
            "device": self.device,
            "precision": self.precision,
            "device_fallbacks": list(self.fallbacks),
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
            "enhancement": self.enhancement.as_dict() if self.enhancement is not None else None,
            "not_assessed": list(self.not_assessed),
            "not_assessed_why": not_assessed(self.sequences_used),
            **({"uncertainty": self._uncertainty_summary()} if self.uncertainty or self.spread else {}),
        }

    def _uncertainty_summary(self) -> dict:
        source = self.uncertainty or self.spread
        summary = {**source.summary(), "source": "requested sampling" if self.uncertainty else "ensemble members"}
        for key in self.not_assessed:  # nothing is said about what the images cannot show
            summary["volumes_ml"].pop(key, None)
            summary["regions"].pop(key, None)
        summary["flagged"] = [key for key in summary["flagged"] if key not in self.not_assessed]
        return summary

    def uncertainty_map(self, kind: str = "entropy") -> Volume:
        """One voxel uncertainty map (0-1) on the reference grid: ``kind`` (entropy or mutual_information) of the
        sampling or of the ensemble members; without either, the label entropy of the mean probabilities."""
        if self.uncertainty is not None:
            return getattr(self.uncertainty, kind)
        if self.spread is not None and self.to_reference is not None:
            return self.to_reference(getattr(self.spread, kind), 1)
        from .uncertainty import class_probabilities, normalised_entropy

        return self.labels.with_array(normalised_entropy(class_probabilities(self.probabilities.array)))


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


def _check_inputs(images: Mapping[str, Volume], present: list[str], clinical: ClinicalOptions, report: Progress,
                  force: bool) -> tuple[QAReport, str]:
    """QA (errors stop here, before any work; warnings travel with the result) and the reference sequence."""
    report(0.0, "quality checks")
    qa_report = run_qa({key: images[key] for key in present})
    qa_report.raise_for_errors(force)
    if not {"t2", "flair"} & set(present):
        qa_report.findings.append(Finding(
            Severity.WARNING, "no_t2_or_flair", NOT_ASSESSED_WITHOUT_T2_FLAIR + "; the core is also less accurate "
            "(cross-validated core Dice from T1c alone is about two thirds of that from all four sequences: the "
            "model card's missing-sequence table); add FLAIR"))
    reference = clinical.reference or next(key for key in REFERENCE_ORDER if key in present)
    if reference not in present:
        raise ValueError(f"the reference sequence {DISPLAY_NAMES.get(reference, reference)} was not given")
    if clinical.register is Mode.OFF:
        others = [k for k in present if k != reference]
        check_same_grid([images[reference]] + [images[k] for k in others],
                        [DISPLAY_NAMES[reference]] + [DISPLAY_NAMES[k] for k in others])
    return qa_report, reference


def _align(images: Mapping[str, Volume], present: list[str], reference: str, clinical: ClinicalOptions,
           qa_report: QAReport, force: bool, report: Progress) -> tuple[dict[str, Volume], list[CoRegistration]]:
    """Every sequence on the reference grid, then the checks that need one grid; errors stop here, before brain
    extraction and inference: nothing heavy runs for a wrong study."""
    report(0.01, "co-registration")
    aligned, registrations = coregister({key: images[key] for key in present}, reference, clinical.register,
                                        clinical.registration_kind, lambda f, m: report(0.01 + 0.03 * f, m))
    qa_report.add(check_sequences(aligned) + _registration_findings(registrations))
    qa_report.raise_for_errors(force)
    return aligned, registrations


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
    """(probabilities on the model grid, requested uncertainty on the reference grid or ``None``, the ensemble
    members' spread on the model grid or ``None``)."""
    progress = lambda fraction, message: report(0.1 + 0.8 * fraction, message)  # noqa: E731
    if uncertainty is None and len(predictor.networks) == 1:
        probabilities = predictor(model_input, flip_sets(flips), progress=progress)
        return probabilities.with_array(probabilities.array * prepared.brain_mask), None, None
    from .uncertainty import estimate_uncertainty

    if uncertainty is None:  # an ensemble: each member's pass is a sample, at no extra cost
        spread = estimate_uncertainty(predictor, model_input, "ensemble" if flips == 1 else "ensemble,flips",
                                      samples=len(predictor.networks) * flips, brain_mask=prepared.brain_mask,
                                      postprocessing=settings, progress=progress)
        return spread.probabilities, None, spread
    sampled = estimate_uncertainty(predictor, model_input, uncertainty.methods, samples=uncertainty.samples,
                                   time_budget_s=uncertainty.time_budget_s, brain_mask=prepared.brain_mask,
                                   postprocessing=settings, progress=progress)
    return (sampled.probabilities, sampled.mapped(lambda volume, order: to_reference_grid(volume, prepared, order)),
            None)


def segment(images: Mapping[str, Volume | None], model: ModelSpec | str | None = None, device: str = "auto",
            flips: int = 1, progress: Progress | None = None, predictor: Predictor | None = None,
            postprocessing: PostProcessing | None = None,
            clinical: ClinicalOptions = ClinicalOptions(),
            uncertainty: UncertaintyOptions | None = None, force: bool = False,
            on_findings: Callable[[list[dict]], None] | None = None) -> SegmentationResult:
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
        force: go on despite the QA errors that may be overridden (recorded as forced).
        on_findings: called with the input findings once they are known, before the heavy steps (a command
            line prints them then, not after minutes of work).

    Raises:
        ValueError: for missing, unusable or inconsistent input, with what to fix (nothing is written).
    """
    report = progress or (lambda fraction, message: None)
    timings = _Timings()
    spec = predictor.spec if predictor else (model if isinstance(model, ModelSpec) else get_model(model))
    settings = postprocessing or PostProcessing.from_dict(spec.postprocessing)
    present = _present_sequences(images, spec)
    qa_report, reference = _check_inputs(images, present, clinical, report, force)
    with timings.step("coregister"):
        aligned, registrations = _align(images, present, reference, clinical, qa_report, force, report)
    aligned, brain, stripping = _clean_images(aligned, reference, clinical, timings, report, qa_report)
    (on_findings or (lambda findings: None))(qa_report.as_list())
    with timings.step("preprocess"):
        report(0.07, "preprocessing")
        prepared, model_input = _model_input(aligned, present, spec, brain)
    with timings.step("load_model"):
        report(0.08, "loading model")
        predictor = predictor or predictor_for(spec, device)
    with timings.step("inference"):
        probabilities, sampled, spread = _predict(predictor, model_input, prepared, flips, uncertainty, settings,
                                                  report)
    with timings.step("postprocess"):
        report(0.92, "post-processing")
        probabilities = to_reference_grid(probabilities, prepared, order=1)
        labels, enhancement = _labels(probabilities, settings, brain, aligned)
        sampled, spread = (_enhancement_moved(u, labels, enhancement, spec) for u in (sampled, spread))
        brain_ml = float(prepared.brain_mask.sum()) * prepared.image.voxel_volume_ml
        qa_report.findings += result_findings(enhancement, brain_ml, labels, stripping)
    report(1.0, "done")
    return SegmentationResult(labels, probabilities, spec, predictor.device, tuple(present), dict(timings),
                              qa_report.as_list(), reference, [r.as_dict() for r in registrations], brain, clinical.n4,
                              sampled, enhancement, spread, lambda volume, order: to_reference_grid(volume, prepared, order),
                              predictor.fallbacks, predictor.precision)


def _clean_images(aligned: dict[str, Volume], reference: str, clinical: ClinicalOptions, timings: _Timings,
                  report: Progress, qa_report: QAReport
                  ) -> tuple[dict[str, Volume], BrainExtraction | None, tuple[list[str], list[str]] | None]:
    """Brain extraction, the check that each sequence's tissue contrast is its own (on the brain, so it needs
    the extraction, and on the images as given, as its thresholds were measured) and bias-field correction of
    the aligned sequences (each step timed). N4 comes last:
    the atlas registration of brain extraction was tuned on uncorrected heads (on a corrected one its mask
    lost Dice), and N4 then fits inside the brain rather than across scalp and skull."""
    with timings.step("brain_extraction"):
        brain = _extract_brain(aligned, reference, clinical.skull_strip, report)
        aligned, stripping = _strip_alike(aligned, brain)
    with timings.step("contrast_check"):
        qa_report.add(check_tissue_contrast(aligned, brain))
    with timings.step("n4"):
        if clinical.n4:
            report(0.04, "bias-field correction (N4)")
            inside = brain.mask.array.astype(bool) if brain is not None else None  # else Otsu's foreground
            aligned = n4_bias_correction_all(aligned, mask=inside)
    return aligned, brain, stripping


def _labels(probabilities: Volume, settings: PostProcessing, brain: BrainExtraction | None,
            aligned: Mapping[str, Volume]) -> tuple[Volume, EnhancementCheck]:
    """Post-processed labels on the reference grid, kept inside the final brain mask, with enhancing tumour only
    where the images show enhancement (none without T1c), and no oedema without T2 or FLAIR."""
    labels = postprocess(probabilities, settings)
    if brain is not None:
        # Final brain mask: the atlas brain plus the predicted tumour touching it; nothing outside is kept.
        brain.mask = refine_with_tumour(brain.mask, labels.array > 0)
        labels = labels.with_array(np.where(brain.mask.array, labels.array, 0).astype(np.uint8))
    brain_mask = brain.mask.array if brain is not None else foreground_mask(
        np.stack([volume.array for volume in aligned.values()]))
    labels, check = check_enhancement(labels, aligned, brain_mask, settings.enhancement_rules)
    return without_unseen_oedema(labels, aligned), check


def _enhancement_moved(sampled, labels: Volume, check: EnhancementCheck, spec: ModelSpec):
    """The uncertainty result (or ``None``) with volume intervals that agree with the final labels after the
    enhancement check."""
    if sampled is None or not check.assessed or check.relabelled_ml <= 0:
        return sampled
    from .uncertainty import IntervalCalibration, move_enhancing_to_core

    volumes = move_enhancing_to_core(sampled.volumes, region_volumes_ml(labels), check.relabelled_ml,
                                     IntervalCalibration.from_dict(spec.volume_intervals))
    return replace(sampled, volumes=volumes)


def _registration_findings(registrations: list[CoRegistration]) -> list[Finding]:
    """A registration that found no shared structure is an error (different heads or studies?) that ``force``
    may override; other notes (a large move) are warnings."""
    findings = []
    for record in registrations:
        for warning in record.warnings:
            failed = record.failed and "is poor" in warning
            findings.append(Finding(Severity.ERROR if failed else Severity.WARNING,
                                    "registration_failed" if failed else "registration", warning
                                    + ("; the sequences may come from different heads or studies" if failed else ""),
                                    record.sequence, forceable=failed))
    return findings


def _strip_alike(aligned: dict[str, Volume], brain: BrainExtraction | None
                 ) -> tuple[dict[str, Volume], tuple[list[str], list[str]] | None]:
    """Never mix: when some sequences are skull-stripped and others not (and no brain was extracted), the others
    are restricted to the stripped ones' brain. Returns the volumes and (stripped, not stripped) keys."""
    if brain is not None:
        return aligned, None
    stripped, unstripped = stripped_sequences(aligned)
    if not stripped or not unstripped:
        return aligned, None
    inside = foreground_mask(np.stack([aligned[key].array for key in stripped]))
    restricted = {key: volume if key in stripped else volume.with_array(np.where(inside, volume.array, 0)
                                                                         .astype(np.float32))
                  for key, volume in aligned.items()}
    return restricted, (stripped, unstripped)
