"""The options of a segmentation: one contract for the library, the command line and the Slicer module.

Every option is a dataclass field here, with its command-line flag, help text and, where the Slicer
module shows it, its parameter-node name. The ``tumorseg segment`` arguments (:func:`add_arguments`), the
argv the module passes to its background process (:meth:`SegmentOptions.to_argv`), the parsed command line
(:meth:`SegmentOptions.from_args`), the module's parameter node (:meth:`SegmentOptions.from_parameters`)
and the parameter node's ``Choice`` lists (:func:`choices`) are all derived from these fields, so an
option is added or changed in this file only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from enum import Enum
from typing import Any

from .labels import LabelConvention
from .sequences import SEQUENCES

__all__ = [
    "Device",
    "Mode",
    "TransformKind",
    "UncertaintyMap",
    "UNCERTAINTY_PRESETS",
    "NO_UNCERTAINTY",
    "MAX_FLIPS",
    "choices",
    "ClinicalOptions",
    "UncertaintyOptions",
    "SegmentOptions",
    "add_arguments",
]


class _Choice(str, Enum):
    """An option value: compares equal to, and prints as, its text (``f"{Mode.AUTO}"`` is ``auto``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Device(_Choice):
    """Where inference runs."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Mode(_Choice):
    """auto: decide from the data; on: always; off: never."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class TransformKind(_Choice):
    """Co-registration transform: rigid (same head, other position) or affine (also scaling and shear)."""

    RIGID = "rigid"
    AFFINE = "affine"


class UncertaintyMap(_Choice):
    """The voxel map shown as "uncertainty" when the model was sampled."""

    ENTROPY = "entropy"
    MUTUAL_INFORMATION = "mutual_information"


NO_UNCERTAINTY = "none"
# Uncertainty method sets offered in the module (the command line takes any comma-separated combination).
UNCERTAINTY_PRESETS = (NO_UNCERTAINTY, "ensemble,flips", "ensemble", "flips", "dropout", "flips,intensity,affine")
MAX_FLIPS = 8  # every combination of mirroring the three axes


def choices(kind: type[Enum]) -> list[str]:
    """The values of an option enum, e.g. for argparse ``choices`` or a parameter node's ``Choice``."""
    return [member.value for member in kind]


def _option(default: Any, flag: str, help: str, *, kind: Any = str, parameter: str | None = None):
    """A dataclass field that knows its command-line flag, value type/choices and parameter-node name."""
    return field(default=default, metadata={"flag": flag, "help": help, "kind": kind, "parameter": parameter})


def _checked(kind: Any, value: Any, flag: str) -> Any:
    """``value`` as the option's enum (or from its choices), or a ValueError naming the option and its choices."""
    if value is None:
        return None
    allowed = choices(kind) if isinstance(kind, type) and issubclass(kind, Enum) else kind
    if isinstance(allowed, (list, tuple)) and value not in allowed:
        raise ValueError(f"{flag} {value!r} is not one of {', '.join(map(str, allowed))}")
    return kind(value) if isinstance(kind, type) and issubclass(kind, Enum) else value


@dataclass(frozen=True)
class ClinicalOptions:
    """How clinical scans are prepared (see :mod:`TumorSegLib.clinical`)."""

    reference: str | None = _option(None, "--reference", "sequence whose grid the result is written on "
                                    "(default: T1c, else FLAIR, T2, T1)", kind=SEQUENCES, parameter="referenceSequence")
    register: Mode = _option(Mode.AUTO, "--register", "co-register sequences onto the reference: auto = when on "
                             "another grid or not aligned", kind=Mode, parameter="registration")
    skull_strip: Mode = _option(Mode.AUTO, "--skull-strip", "brain extraction (MNI template): auto = when the "
                                "reference is not skull-stripped", kind=Mode, parameter="skullStrip")
    # On by default: cross-validation with N4 raised mean Dice (WT 0.825 -> 0.836, TC 0.712 -> 0.726; model card).
    n4: bool = _option(True, "--n4", "N4 bias-field correction of every sequence (default; --no-n4 skips it)",
                       kind=bool, parameter="biasCorrection")
    registration_kind: TransformKind = _option(TransformKind.RIGID, "--registration-kind", "rigid (default) or "
                                               "affine (adds scaling and shear, e.g. scans from another scanner)",
                                               kind=TransformKind, parameter="registrationKind")

    def __post_init__(self) -> None:
        _normalise(self)  # a wrong value stops here, before QA and resampling


@dataclass(frozen=True)
class UncertaintyOptions:
    """Uncertainty sampling (see :func:`TumorSegLib.uncertainty.estimate_uncertainty`)."""

    methods: str = _option("ensemble,flips", "--uncertainty-methods", "comma-separated sources of variation "
                           "(TumorSegLib.uncertainty.methods: ensemble, flips, intensity, affine, dropout; an unknown "
                           "one is refused with the list); default ensemble,flips")
    samples: int | None = _option(None, "--uncertainty-samples", "number of samples (default 12)", kind=int)
    time_budget_s: float | None = _option(None, "--time-budget", "seconds for uncertainty sampling, on any "
                                          "device: sampling stops when the next sample would not fit (at least 2 "
                                          "samples always run)", kind=float, parameter="uncertaintyTimeBudget")

    def __post_init__(self) -> None:
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"--uncertainty-samples {self.samples}: give at least 1")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"--time-budget {self.time_budget_s}: give a positive number of seconds")


@dataclass(frozen=True)
class SegmentOptions:
    """Everything that decides how one case is segmented (inputs and output paths are not options).

    ``uncertainty`` is ``None`` when the model is not sampled; ``label_convention`` ``None`` writes the model's.
    """

    model: str | None = _option(None, "--model", "registry id (default: the registry's default model)",
                                parameter="modelId")
    device: Device = _option(Device.AUTO, "--device", "where inference runs", kind=Device, parameter="device")
    flips: int = _option(1, "--flips", f"test-time flip passes per model, 1-{MAX_FLIPS} (default 1)", kind=int)
    label_convention: LabelConvention | None = _option(None, "--label-convention", "codes of the written label "
                                                       "map (default: brats2023 = 1/2/3 when the input files are named the BraTS 2023 way, "
                                                       "e.g. -t2f, else the model's; brats2018 = 1/2/4)",
                                                       kind=LabelConvention)
    uncertainty_map_kind: UncertaintyMap = _option(UncertaintyMap.ENTROPY, "--uncertainty-map-kind",
                                                   "which map --uncertainty-map writes when sampling",
                                                   kind=UncertaintyMap, parameter="uncertaintyMap")
    force: bool = _option(False, "--force", "go on despite the input errors that may be overridden (unusual, not "
                          "unusable input: e.g. sequences that do not register); they are recorded as forced",
                          kind=bool)
    clinical: ClinicalOptions = field(default_factory=ClinicalOptions)
    uncertainty: UncertaintyOptions | None = None

    def __post_init__(self) -> None:
        _normalise(self)
        if not 1 <= self.flips <= MAX_FLIPS:
            raise ValueError(f"--flips {self.flips}: flip test-time augmentation takes 1 to {MAX_FLIPS} passes")

    def to_argv(self) -> list[str]:
        """``tumorseg segment`` flags giving these options (defaults left out). Sampling also needs the
        command's ``--uncertainty DIR`` output, which the caller adds with the other paths."""
        argv: list[str] = []
        for owner, item in _leaves(self):
            value = getattr(owner, item.name)
            if value is None or value == item.default:
                continue
            if item.metadata["kind"] is bool:  # a flag on by default is turned off with --no-...
                argv.append(item.metadata["flag"] if value else "--no-" + item.metadata["flag"][2:])
            else:
                argv += [item.metadata["flag"], str(value.value if isinstance(value, Enum) else value)]
        return argv

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SegmentOptions:
        """The options of a parsed ``tumorseg segment`` command line (:func:`add_arguments`); sampling is on
        when ``--uncertainty DIR`` was given."""
        def values(kind: type) -> dict[str, Any]:
            return {item.name: getattr(args, _dest(item)) for item in fields(kind) if "flag" in item.metadata}

        sampling = UncertaintyOptions(**values(UncertaintyOptions))  # checked even when not used: a typo is a typo
        uncertainty = sampling if getattr(args, "uncertainty", None) else None
        return cls(**values(cls), clinical=ClinicalOptions(**values(ClinicalOptions)), uncertainty=uncertainty)

    @classmethod
    def from_parameters(cls, get: Callable[[str], Any], given: Callable[[str], bool] = lambda key: True
                        ) -> SegmentOptions:
        """Options from the Slicer module's parameter node: ``get(name)`` reads a parameter; ``given(sequence)``
        says whether that sequence has a volume (an absent reference falls back to the default order)."""
        def values(kind: type) -> dict[str, Any]:
            return {item.name: get(item.metadata["parameter"]) for item in fields(kind) if item.metadata.get("parameter")}

        clinical = ClinicalOptions(**values(ClinicalOptions))
        if clinical.reference and not given(clinical.reference):
            clinical = replace(clinical, reference=None)
        methods = get("uncertaintyMethods")
        uncertainty = None if methods in (None, "", NO_UNCERTAINTY) else UncertaintyOptions(
            methods=methods, time_budget_s=float(get("uncertaintyTimeBudget") or 0) or None)
        options = values(cls)
        return cls(**{**options, "model": options.get("model") or None}, clinical=clinical, uncertainty=uncertainty)


def _leaves(options: Any) -> Iterator[tuple[Any, Any]]:
    """(owner, field) of every option with a flag, nested option groups included (absent groups skipped)."""
    for item in fields(options):
        value = getattr(options, item.name)
        if "flag" in item.metadata:
            yield options, item
        elif is_dataclass(value):
            yield from _leaves(value)


def _normalise(options: Any) -> None:
    for item in fields(options):
        if "flag" in item.metadata:
            value = _checked(item.metadata["kind"], getattr(options, item.name), item.metadata["flag"])
            object.__setattr__(options, item.name, value)


def _dest(item) -> str:
    return item.metadata["flag"].lstrip("-").replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every segmentation option to ``parser`` (``tumorseg segment``), choices and defaults from here."""
    for kind in (SegmentOptions, ClinicalOptions, UncertaintyOptions):
        for item in fields(kind):
            if "flag" not in item.metadata:
                continue
            meta = item.metadata
            default = item.default if item.default is not MISSING else None
            default = default.value if isinstance(default, Enum) else default
            if meta["kind"] is bool:
                action = argparse.BooleanOptionalAction if default else "store_true"
                parser.add_argument(meta["flag"], action=action, default=bool(default), help=meta["help"])
                continue
            kind_ = meta["kind"]
            options: dict[str, Any] = {"default": default, "help": meta["help"]}
            if isinstance(kind_, type) and issubclass(kind_, Enum):
                options["choices"] = choices(kind_)
            elif isinstance(kind_, (list, tuple)):
                options["choices"] = list(kind_)
            elif kind_ in (int, float):
                options["type"] = kind_
            parser.add_argument(meta["flag"], **options)
