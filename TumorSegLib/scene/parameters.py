"""The session's parameters as a plain object, for front ends without a Slicer parameter node (the browser app,
scripts, tests): the same fields and defaults as the module's ``TumorSegParameterNode`` (a test keeps the two
alike), defaults taken from :mod:`TumorSegLib.options` and the model registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import default_model_id
from ..options import NO_UNCERTAINTY, ClinicalOptions, SegmentOptions
from ..sequences import REFERENCE_ORDER

__all__ = ["SessionParameters", "UNKNOWN"]

UNKNOWN = "unknown"  # choice shown for a clinical input that was not recorded
_DEFAULTS, _CLINICAL = SegmentOptions(), ClinicalOptions()


@dataclass
class SessionParameters:
    """Inputs, options, clinical inputs of the next visit, and the result nodes (``None`` until there are any)."""

    t1Volume: Any = None
    t1cVolume: Any = None
    t2Volume: Any = None
    flairVolume: Any = None
    modelId: str = field(default_factory=default_model_id)
    device: str = _DEFAULTS.device.value
    referenceSequence: str = REFERENCE_ORDER[0]
    registration: str = _CLINICAL.register.value
    skullStrip: str = _CLINICAL.skull_strip.value
    registrationKind: str = _CLINICAL.registration_kind.value
    biasCorrection: bool = _CLINICAL.n4
    uncertaintyMethods: str = NO_UNCERTAINTY
    uncertaintyTimeBudget: float = 120.0
    uncertaintyMap: str = _DEFAULTS.uncertainty_map_kind.value
    showUncertainty: bool = True
    patientId: str = ""
    visitDate: str = ""
    steroidDose: str = UNKNOWN
    clinicalStatus: str = UNKNOWN
    outputSegmentation: Any = None
    uncertaintyVolume: Any = None
    resultsTable: Any = None
    parameterNode: Any = None  # no MRML parameter node behind these
