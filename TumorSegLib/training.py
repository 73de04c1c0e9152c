"""Training on BraTS-format folders: case discovery, a preprocessed cache, k-fold splits, the loop.

The cache holds each case already reoriented, resampled to the model spacing, cropped to the brain and
z-scored, quantised to uint8 (1/16 SD steps, plus uniform de-quantisation noise while training) so a
whole data set fits in memory — and in one transfer to a lent GPU. Patches are sampled and augmented
with MONAI transforms directly on the training device.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .inference import resolve_device
from .labels import REGIONS, Label, to_internal_labels
from .sequences import FILE_SUFFIXES, SEQUENCES

__all__ = [
    "find_cases",
    "cache_case",
    "prepare_cache",
    "load_cached_case",
    "make_folds",
    "TrainConfig",
    "train",
]

LABEL_SUFFIXES = ("seg",)
QUANT_OFFSET = 64.0
QUANT_SCALE = 16.0  # levels per standard deviation


def _find_file(folder: Path, case: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
            path = folder / f"{case}_{suffix}{ext}"
            if path.exists():
                return path
            path = folder / f"{case}-{suffix}{ext}"  # BraTS 2023 names, e.g. BraTS-GLI-00000-000-t1c.nii.gz
            if path.exists():
                return path
    return None


def find_cases(data_dir: Path, sequences: Sequence[str] = SEQUENCES,
               need_labels: bool = True) -> dict[str, dict[str, Path]]:
    """Cases of a BraTS-format folder (one sub-folder per case), by case name.

    Returns ``{case: {"t1": path, ..., "label": path}}``.

    Raises:
        ValueError: if no folder holds a complete case, naming what was missing.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir}")
    cases, problems = {}, []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        files = {key: _find_file(folder, folder.name, FILE_SUFFIXES[key]) for key in sequences}
        if need_labels:
            files["label"] = _find_file(folder, folder.name, LABEL_SUFFIXES)
        missing = [key for key, path in files.items() if path is None]
        if missing:
            problems.append(f"{folder.name}: no {', '.join(missing)}")
            continue
        cases[folder.name] = files
    if not cases:
        raise ValueError(f"no complete BraTS case in {data_dir} (expect <case>/<case>_t1.nii.gz, _t1ce, _t2, _flair"
                         + (", _seg" if need_labels else "") + "). " + "; ".join(problems[:5]))
    return cases


def cache_case(files: dict[str, Path], sequences: Sequence[str], spacing: Sequence[float],
               out_path: Path) -> dict:
    """Preprocess one case into ``out_path`` (.npz holding ``image`` (C,I,J,K) uint8 and ``label`` uint8)."""
    from .preprocessing import check_same_grid, crop, prepare_input, reorient, resample_to_grid
    from .qa import run_qa
    from .volume import read_volume

    volumes = [read_volume(files[key]) for key in sequences]
    run_qa(dict(zip(sequences, volumes))).raise_for_errors()
    check_same_grid(volumes, list(sequences))
    prepared = prepare_input(volumes, spacing, margin=2)
    label = read_volume(files["label"])
    label = label.with_array(to_internal_labels(label.array))
    label = resample_to_grid(reorient(label), prepared.model_grid, order=0)
    label = crop(label, prepared.box)
    image = np.clip(np.round(prepared.image.array * QUANT_SCALE + QUANT_OFFSET), 0, 255).astype(np.uint8)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial.npz")
    np.savez(tmp, image=image, label=label.array.astype(np.uint8), brain=prepared.brain_mask)
    os.replace(tmp, out_path)
    return {"shape": list(image.shape[1:]), "voxels": {k.name: int((label.array == k).sum()) for k in Label}}


def prepare_cache(data_dir: Path, cache_dir: Path, sequences: Sequence[str] = SEQUENCES,
                  spacing: Sequence[float] = (1.0, 1.0, 1.0), log: Callable[[str], None] = print) -> list[str]:
    """Preprocess every case of ``data_dir`` into ``cache_dir`` (skips cases already cached). Returns names."""
    cases = find_cases(Path(data_dir), sequences)
    cache_dir = Path(cache_dir)
    for index, (case, files) in enumerate(cases.items(), 1):
        target = cache_dir / f"{case}.npz"
        if target.exists():
            continue
        info = cache_case(files, sequences, spacing, target)
        log(f"[prepare {index}/{len(cases)}] {case} {info['shape']}")
    return list(cases)


def load_cached_case(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32 z-scores (C,I,J,K), label uint8 (I,J,K), brain bool) of a cached case."""
    with np.load(path) as data:
        image = (data["image"].astype(np.float32) - QUANT_OFFSET) / QUANT_SCALE
        return image, data["label"], data["brain"]


def make_folds(cases: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Split ``cases`` into ``k`` folds: sorted, shuffled with ``seed``, dealt round-robin."""
    if not 2 <= k <= len(cases):
        raise ValueError(f"cannot make {k} folds of {len(cases)} cases")
    order = sorted(cases)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


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
    sequences: tuple[str, ...] = SEQUENCES
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def network_parameters(self) -> dict:
        """Arguments of ``monai.networks.nets.SegResNet`` for this recipe."""
        return {"spatial_dims": 3, "in_channels": len(self.sequences), "out_channels": len(REGIONS),
                "init_filters": self.init_filters, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1],
                "dropout_prob": self.dropout}


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


class _PatchSampler:
    """Draws augmented training batches from cases held on the training device."""

    def __init__(self, cases: list[tuple], config: TrainConfig, device: str):
        import torch
        from monai.transforms import RandCropByPosNegLabeld

        self.torch = torch
        self.config = config
        self.device = device
        self.cases = []
        for image, label, brain in cases:
            image, label, brain = self._pad(image, label, brain, config.patch_size)
            foreground = np.flatnonzero(label > 0)
            background = np.flatnonzero(brain & (label == 0))
            self.cases.append({
                "image": torch.from_numpy(image).to(device=device, dtype=torch.float16),
                "label": torch.from_numpy(label[None]).to(device),
                "fg": foreground if foreground.size else background,
                "bg": background,
            })
        pos = config.tumour_fraction
        self.crop = RandCropByPosNegLabeld(["image", "label"], "label", config.patch_size, pos=pos, neg=1 - pos,
                                           num_samples=1, fg_indices_key="fg", bg_indices_key="bg")
        self.augment = _augmentations(config, device)
        self.rng = np.random.RandomState(config.seed)
        self.crop.set_random_state(config.seed)
        self.augment.set_random_state(config.seed + 1)

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
            sample = self.crop(case)[0]
            sample["image"] = sample["image"].float()
            sample = self.augment(sample)
            image = torch.as_tensor(sample["image"])
            # De-quantisation noise: the cache stores 1/16 SD steps, inference sees continuous values.
            image = image + (torch.rand_like(image) - 0.5) / QUANT_SCALE
            images.append(image)
            targets.append(region_channels(torch.as_tensor(sample["label"]).round().to(torch.uint8)))
        return torch.stack(images), torch.stack(targets)


def _lr_factor(progress: float, step: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _save_atomic(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_weights(state_dict: dict, path: Path) -> None:
    """Save inference weights as a float16 state dict (half the size; loaded back as float32)."""
    _save_atomic({k: (v.half() if v.is_floating_point() else v) for k, v in state_dict.items()}, path)


def train(cache_dir: Path, out_dir: Path, config: TrainConfig, train_cases: Sequence[str],
          val_cases: Sequence[str] = (), resume: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train one model on cached cases; returns the path of the exported weights.

    Writes ``checkpoint.pt`` (resumable, every ``checkpoint_every_s``), ``model.pt`` (float16 weights),
    ``config.json`` and ``history.json`` into ``out_dir``.
    """
    from monai.data import get_track_meta, set_track_meta

    # Plain tensors while training (metadata tracking costs time per step); restored afterwards because
    # the setting is process-wide and other code (e.g. uncertainty's affine jitter) needs MetaTensors.
    tracking = get_track_meta()
    set_track_meta(False)
    try:
        return _train(cache_dir, out_dir, config, train_cases, val_cases, resume, log)
    finally:
        set_track_meta(tracking)


def _train(cache_dir: Path, out_dir: Path, config: TrainConfig, train_cases: Sequence[str],
           val_cases: Sequence[str], resume: bool, log: Callable[[str], None]) -> Path:
    import torch
    from monai.losses import DiceLoss
    from monai.networks.nets import SegResNet

    device = resolve_device(config.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True

    (out_dir / "config.json").write_text(json.dumps(
        {**asdict(config), "train_cases": list(train_cases), "val_cases": list(val_cases)}, indent=2))
    log(f"loading {len(train_cases)} training cases onto {device}")
    sampler = _PatchSampler([load_cached_case(Path(cache_dir) / f"{c}.npz") for c in train_cases], config, device)

    network = SegResNet(**config.network_parameters()).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
    bce = torch.nn.BCEWithLogitsLoss()
    step, elapsed_before, history = 0, 0.0, []
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before, history = state["step"], state["elapsed_s"], state["history"]
        sampler.rng.set_state(state["sampler_rng"])
        log(f"resumed from step {step}")

    def save_checkpoint():
        _save_atomic({"network": network.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                      "elapsed_s": elapsed, "history": history, "sampler_rng": sampler.rng.get_state()},
                     checkpoint_path)

    start = time.monotonic() - elapsed_before
    last_checkpoint = time.monotonic()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    network.train()
    running = []
    elapsed = elapsed_before
    while True:
        elapsed = time.monotonic() - start
        progress = step / config.max_steps
        if config.time_limit_s:
            progress = max(progress, elapsed / config.time_limit_s)
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * _lr_factor(progress, step, config.warmup_steps)
        images, targets = sampler.batch()
        with autocast:
            logits = network(images)
        logits = logits.float()
        loss = dice(logits, targets) + bce(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12.0)
        optimizer.step()
        step += 1
        running.append(float(loss.detach()))
        if step % config.log_every == 0:
            mean_loss = float(np.mean(running))
            running = []
            history.append({"step": step, "loss": mean_loss, "elapsed_s": round(elapsed, 1)})
            log(f"[train] step {step} loss {mean_loss:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                f"{step / max(elapsed, 1e-6):.2f} it/s progress {100 * progress:.1f}%")
        if time.monotonic() - last_checkpoint > config.checkpoint_every_s:
            save_checkpoint()
            export_weights(network.state_dict(), out_dir / "model.pt")
            last_checkpoint = time.monotonic()
    save_checkpoint()
    export_weights(network.state_dict(), out_dir / "model.pt")
    summary = {"steps": step, "elapsed_s": round(elapsed, 1), "device": device,
               "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    if val_cases:
        summary["validation"] = validate(network, cache_dir, val_cases, config, device, log)
    (out_dir / "history.json").write_text(json.dumps({"summary": summary, "history": history}, indent=2))
    log(f"[train] done: {json.dumps(summary)}")
    return out_dir / "model.pt"


def validate(network, cache_dir: Path, cases: Sequence[str], config: TrainConfig, device: str,
             log: Callable[[str], None] = print) -> dict:
    """Dice per region on cached held-out cases (quick check; the model card uses the full pipeline)."""
    import torch
    from monai.inferers import sliding_window_inference

    from .labels import region_masks
    from .metrics import dice as dice_score

    network.eval()
    scores = {}
    for case in cases:
        image, label, _ = load_cached_case(Path(cache_dir) / f"{case}.npz")
        with torch.inference_mode(), (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                                      else torch.autocast("cpu", enabled=False)):
            logits = sliding_window_inference(torch.from_numpy(image)[None].to(device), config.patch_size, 4,
                                              network, overlap=0.25, mode="gaussian")
        predicted = (torch.sigmoid(logits.float())[0] > 0.5).cpu().numpy()
        truth = region_masks(label)
        scores[case] = {region.value: round(dice_score(predicted[i], truth[region]), 4)
                        for i, region in enumerate(truth)}
        log(f"[validate] {case} {scores[case]}")
    network.train()
    return scores
