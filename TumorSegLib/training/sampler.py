"""Training batches: patches drawn and augmented with MONAI transforms directly on the training device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..labels import REGIONS
from .config import TrainConfig
from .data import QUANT_SCALE

__all__ = ["region_channels", "device_cases", "PatchSampler"]


def region_channels(label):
    """(3, ...) float tensor of WT, TC, ET masks from an internal label tensor (1, ...)."""
    import torch

    return torch.cat([torch.isin(label, torch.tensor([int(x) for x in members], device=label.device))
                      for members in REGIONS.values()]).float()


def _sequence_dropout_transform(config: TrainConfig):
    from monai.transforms import MapTransform, RandomizableTransform

    class RandDropSequenced(RandomizableTransform, MapTransform):
        """Zero a random non-empty subset of input sequences, always keeping one of ``keep_one_of``.

        Zero is the z-scored mean, so a dropped sequence looks like a missing one at inference.
        """

        def __init__(self, keys, prob: float, keep_one_of: Sequence[int]):
            RandomizableTransform.__init__(self, prob)
            MapTransform.__init__(self, keys)
            self.keep_one_of = tuple(keep_one_of)

        def __call__(self, data):
            d = dict(data)
            self.randomize(None)
            if not self._do_transform:
                return d
            for key in self.keys:
                channels = d[key].shape[0]
                keep = {int(self.R.choice(self.keep_one_of))}
                keep |= {c for c in range(channels) if self.R.rand() < 0.5}
                drop = [c for c in range(channels) if c not in keep]
                if drop:
                    d[key] = d[key].clone()
                    d[key][drop] = 0
            return d

    return RandDropSequenced(["image"], config.sequence_dropout, config.keep_one_of)


def _augmentations(config: TrainConfig, device: str):
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    return Compose([
        RandFlipd(["image", "label"], prob=0.5, spatial_axis=0),
        RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
        RandFlipd(["image", "label"], prob=0.5, spatial_axis=2),
        RandAffined(["image", "label"], prob=0.3, rotate_range=(0.26, 0.26, 0.26), scale_range=(0.15, 0.15, 0.15),
                    mode=("bilinear", "nearest"), padding_mode="zeros", device=device),
        RandScaleIntensityd("image", factors=0.1, prob=1.0, channel_wise=True),
        RandShiftIntensityd("image", offsets=0.1, prob=1.0, channel_wise=True),
        _sequence_dropout_transform(config),
    ])


def device_cases(cases: list[tuple], config: TrainConfig, device: str) -> list[dict]:
    """Cached cases (image, label, brain) on the training device, padded to a patch, with the indices the
    crop draws from; with ``config.remove_enhancement`` also each case with its enhancement taken away
    (:func:`~TumorSegLib.enhancement.remove_enhancement` on the z-scored T1c against T1, ET → NCR).
    Samplers of several runs can share them (one copy of the data on the device)."""
    import torch

    from ..enhancement import remove_enhancement

    t1, t1c = config.sequences.index("t1"), config.sequences.index("t1c")
    out = []
    for image, label, brain in cases:
        image, label, brain = PatchSampler._pad(image, label, brain, config.patch_size)
        foreground, background = np.flatnonzero(label > 0), np.flatnonzero(brain & (label == 0))
        case = {"image": torch.from_numpy(image).to(device=device, dtype=torch.float16),
                "label": torch.from_numpy(label[None]).to(device),
                "fg": foreground if foreground.size else background, "bg": background}
        if config.remove_enhancement > 0 and (label == 3).any():
            plain_t1c, plain_label = remove_enhancement(image[t1c], image[t1], label, brain)
            plain = image.copy()
            plain[t1c] = np.where(brain, plain_t1c, image[t1c])
            case["plain"] = {"image": torch.from_numpy(plain).to(device=device, dtype=torch.float16),
                             "label": torch.from_numpy(plain_label[None]).to(device)}
        out.append(case)
    return out


class PatchSampler:
    """Draws augmented training batches from cases held on the training device.

    Args:
        cases: from :func:`device_cases`.
        config: the recipe (patch size, batch size, tumour fraction, augmentation, enhancement removal).
        device: the training device.
        seed: of the patch and augmentation draws (default: the recipe's).
    """

    def __init__(self, cases: list[dict], config: TrainConfig, device: str, seed: int | None = None):
        import torch
        from monai.transforms import RandCropByPosNegLabeld

        seed = config.seed if seed is None else seed
        self.torch = torch
        self.config = config
        self.device = device
        self.cases = cases
        pos = config.tumour_fraction
        self.crop = RandCropByPosNegLabeld(["image", "label"], "label", config.patch_size, pos=pos, neg=1 - pos,
                                           num_samples=1, fg_indices_key="fg", bg_indices_key="bg")
        self.augment = _augmentations(config, device)
        self.rng = np.random.RandomState(seed)
        self.crop.set_random_state(seed)
        self.augment.set_random_state(seed + 1)

    @staticmethod
    def _pad(image, label, brain, size):
        pad = [max(0, s - n) for s, n in zip(size, label.shape)]
        if not any(pad):
            return image, label, brain
        widths = [(p // 2, p - p // 2) for p in pad]
        return (np.pad(image, [(0, 0)] + widths), np.pad(label, widths), np.pad(brain, widths))

    def batch(self):
        torch = self.torch
        images, targets = [], []
        for _ in range(self.config.batch_size):
            case = self.cases[self.rng.randint(len(self.cases))]
            if self.config.remove_enhancement > 0 and "plain" in case and self.rng.rand() < self.config.remove_enhancement:
                case = {**case, **case["plain"]}  # this time a non-enhancing tumour
            sample = self.crop(case)[0]
            sample["image"] = sample["image"].float()
            sample = self.augment(sample)
            image = torch.as_tensor(sample["image"])
            # De-quantisation noise: the cache stores 1/16 SD steps, inference sees continuous values.
            image = image + (torch.rand_like(image) - 0.5) / QUANT_SCALE
            images.append(image)
            targets.append(region_channels(torch.as_tensor(sample["label"]).round().to(torch.uint8)))
        return torch.stack(images), torch.stack(targets)
