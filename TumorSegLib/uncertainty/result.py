"""The result of uncertainty sampling: maps, region scores, volume intervals, and their JSON summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..labels import Region
from ..volume import Volume
from .intervals import RegionUncertainty, VolumeInterval
from .maps import CLASS_NAMES
from .methods import Draw, Method

__all__ = ["UncertaintyResult"]

_MAPS = ("probabilities", "class_probabilities", "entropy", "expected_entropy", "mutual_information", "variance")


@dataclass(frozen=True)
class UncertaintyResult:
    """What :func:`estimate_uncertainty` returns; every map keeps the input's geometry.

    Attributes:
        probabilities: (3, I, J, K) mean WT/TC/ET probability over samples.
        class_probabilities: (4, I, J, K) mean BG/NCR/ED/ET probability.
        entropy: (I, J, K) predictive entropy of the mean class distribution / log 4 (total uncertainty).
        expected_entropy: (I, J, K) mean per-sample entropy / log 4 (aleatoric part).
        mutual_information: (I, J, K) entropy − expected entropy (epistemic part), ≥ 0.
        variance: (3, I, J, K) variance over samples of each region's probability.
        labels: (I, J, K) uint8 label map of the mean probability, post-processed as the model's segmentation.
        volumes: point estimate and interval per label and region (NCR, ED, ET, TC, WT).
        regions: per-region score and flag (WT, TC, ET).
        methods, draws: how the samples were made; planned: samples wanted before the time budget.
        budget_limited: the time budget stopped sampling early. seconds: sampling time. device: where it ran.
    """

    probabilities: Volume
    class_probabilities: Volume
    entropy: Volume
    expected_entropy: Volume
    mutual_information: Volume
    variance: Volume
    labels: Volume
    volumes: dict[str, VolumeInterval]
    regions: dict[Region, RegionUncertainty]
    methods: tuple[Method, ...]
    draws: tuple[Draw, ...]
    planned: int
    budget_limited: bool
    seconds: float
    device: str
    time_budget_s: float | None = None
    settings: dict = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return len(self.draws)

    def maps(self) -> dict[str, Volume]:
        """3D maps by file stem: one per channel of the channel maps (e.g. ``probability_WT``)."""
        out: dict[str, Volume] = {}
        for name, channels in (("probability", [r.value for r in Region]), ("class_probability", CLASS_NAMES),
                               ("variance", [r.value for r in Region])):
            source = {"probability": self.probabilities, "class_probability": self.class_probabilities,
                      "variance": self.variance}[name]
            for index, channel in enumerate(channels):
                out[f"{name}_{channel}"] = source.with_array(source.array[index])
        for name in ("entropy", "expected_entropy", "mutual_information"):
            out[name] = getattr(self, name)
        return out

    def mapped(self, transform: Callable[[Volume, int], Volume]) -> "UncertaintyResult":
        """The same result with every map passed through ``transform(volume, order)``.

        ``order`` is the interpolation order to use (0 for the label map, 1 otherwise), e.g.
        ``result.mapped(lambda v, order: to_reference_grid(v, prepared, order))`` for the input's grid.
        """
        changes = {name: transform(getattr(self, name), 1) for name in _MAPS}
        return replace(self, labels=transform(self.labels, 0), **changes)

    def flagged(self) -> list[Region]:
        """Regions to review first, most uncertain first."""
        return sorted((r for r, u in self.regions.items() if u.flagged), key=lambda r: -self.regions[r].score)

    def summary(self) -> dict:
        """JSON-ready record of the method, sample count, timing, region scores/flags and volume intervals."""
        return {
            "methods": [m.value for m in self.methods],
            "samples": self.samples,
            "samples_planned": self.planned,
            "budget_limited": self.budget_limited,
            "time_budget_s": self.time_budget_s,
            "seconds": round(self.seconds, 2),
            "device": self.device,
            "draws": [d.describe() for d in self.draws],
            "regions": {r.value: u.as_dict() for r, u in self.regions.items()},
            "flagged": [r.value for r in self.flagged()],
            "estimate_outside_interval": [k for k, v in self.volumes.items() if not v.contains_estimate],
            "volumes_ml": {k: {key: (round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v])
                               for key, v in interval.as_dict().items()} for k, interval in self.volumes.items()},
            "settings": self.settings,
        }
