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


# Z-scores sit around 0; raw MR intensities inside the brain are a few SDs above 0. A bias field multiplies raw
# intensities, so it is applied to the z-scores shifted by this much (not to values centred on 0).
RAW_OFFSET_SD = 3.0


def _scanner_parts(prob: float, device: str) -> tuple:
    """The MONAI transforms of one simulated scanner change each: bias field, gamma, resolution, blur, noise."""
    from monai.transforms import (
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandSimulateLowResolution,
    )

    return (RandBiasField(degree=3, coeff_range=(0.0, 0.3), prob=prob),
            RandAdjustContrast(prob=prob, gamma=(0.7, 1.5), retain_stats=True),
            RandSimulateLowResolution(prob=prob, zoom_range=(0.5, 1.0), device=device),
            RandGaussianSmooth(sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=prob),
            RandGaussianNoise(prob=prob, std=0.1))


def _thick_slices(channel, rng: np.random.RandomState, prob: float):
    """``channel`` (1, I, J, K) with slices 2-5 times thicker along one axis (a 2D protocol), brought back to its
    grid; unchanged with chance 1 - ``prob``."""
    import torch

    if rng.rand() >= prob:
        return channel
    axis = int(rng.randint(3))
    size = list(channel.shape[1:])
    thick = list(size)
    thick[axis] = max(1, round(size[axis] / rng.uniform(2.0, 5.0)))
    coarse = torch.nn.functional.interpolate(channel[None], size=thick, mode="area")
    return torch.nn.functional.interpolate(coarse, size=size, mode="trilinear", align_corners=False)[0]


def _scanner_shift_transform(config: TrainConfig, device: str):
    import torch
    from monai.transforms import MapTransform, RandomizableTransform

    class RandScannerShiftd(RandomizableTransform, MapTransform):
        """What another scanner or protocol does to each sequence, independently and inside the brain only: bias
        field, gamma, thick slices along a random axis, lower resolution, blur, noise (each with ``prob``).

        Outside the brain stays 0, as inference writes it, and each sequence keeps its mean and SD inside the
        patch's brain, as inference's normalisation would restore them: what is left is what normalisation
        cannot undo.
        """

        def __init__(self, keys, brain_key: str, prob: float):
            RandomizableTransform.__init__(self, prob)
            MapTransform.__init__(self, keys)
            self.brain_key = brain_key
            self.parts = _scanner_parts(prob, device)

        def set_random_state(self, seed=None, state=None):
            super().set_random_state(seed, state)
            for part in self.parts:
                part.set_random_state(int(self.R.randint(2**31)))
            return self

        def __call__(self, data):
            d = dict(data)
            brain = torch.as_tensor(d[self.brain_key]).bool()
            bias, gamma, *resolution_blur_noise = self.parts
            for key in self.keys:
                image = torch.as_tensor(d[key]).float()
                out = image.clone()
                for c in range(image.shape[0]):
                    inside = image[c][brain[0]]
                    if inside.numel() < 2 or not inside.any():
                        continue
                    channel = torch.as_tensor(bias(image[c:c + 1] + RAW_OFFSET_SD)) - RAW_OFFSET_SD
                    channel = torch.as_tensor(gamma(channel.where(brain, 0.0)))
                    channel = _thick_slices(channel.where(brain, 0.0), self.R, self.prob)
                    for part in resolution_blur_noise:
                        channel = torch.as_tensor(part(channel))
                    shifted = channel[0][brain[0]]
                    shifted = (shifted - shifted.mean()) / shifted.std().clamp_min(1e-6)
                    out[c][brain[0]] = shifted * inside.std() + inside.mean()
                d[key] = out
            return d

    return RandScannerShiftd(["image"], "brain", config.scanner_shift)


def _augmentations(config: TrainConfig, device: str):
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    spatial = ["image", "label", "brain"]
    steps = [
        RandFlipd(spatial, prob=0.5, spatial_axis=0),
        RandFlipd(spatial, prob=0.5, spatial_axis=1),
        RandFlipd(spatial, prob=0.5, spatial_axis=2),
        RandAffined(spatial, prob=0.3, rotate_range=(0.26, 0.26, 0.26), scale_range=(0.15, 0.15, 0.15),
                    mode=("bilinear", "nearest", "nearest"), padding_mode="zeros", device=device),
    ]
    if config.scanner_shift > 0:
        steps.append(_scanner_shift_transform(config, device))
    return Compose(steps + [
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
                "brain": torch.from_numpy(brain[None].astype(np.uint8)).to(device),
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
        self.crop = RandCropByPosNegLabeld(["image", "label", "brain"], "label", config.patch_size, pos=pos, neg=1 - pos,
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
