"""The training recipe."""

from __future__ import annotations

from dataclasses import dataclass

from ..labels import REGIONS
from ..sequences import SEQUENCES

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Training recipe. Defaults are the recipe of the embedded model (see its model card)."""

    init_filters: int = 8
    dropout: float = 0.1
    patch_size: tuple[int, int, int] = (128, 128, 128)
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    max_steps: int = 4000
    time_limit_s: float = 0.0  # 0 = none; else the schedule runs on max(step fraction, time fraction)
    tumour_fraction: float = 2 / 3  # share of patches centred on tumour
    sequence_dropout: float = 0.3  # chance that a patch loses a random subset of sequences
    keep_one_of: tuple[int, ...] = (1, 3)  # at least one of these channels (T1c, FLAIR) is always kept
    seed: int = 20260
    device: str = "auto"
    checkpoint_every_s: float = 60.0
    log_every: int = 25
    remove_enhancement: float = 0.0  # chance that a drawn case has its enhancement taken away (ET → NCR)
    region_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # loss weight of WT, TC, ET
    scanner_shift: float = 0.0  # chance of each simulated scanner/protocol change (bias field, gamma, thick slices...)
    sequences: tuple[str, ...] = SEQUENCES
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def network_parameters(self) -> dict:
        """Arguments of ``monai.networks.nets.SegResNet`` for this recipe."""
        return {"spatial_dims": 3, "in_channels": len(self.sequences), "out_channels": len(REGIONS),
                "init_filters": self.init_filters, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1],
                "dropout_prob": self.dropout}
