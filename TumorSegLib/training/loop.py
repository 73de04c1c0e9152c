"""The training loop: AdamW with warm-up and cosine decay, Dice + BCE on region channels, resumable
checkpoints, float16 inference weights, and a quick validation."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..inference import resolve_device
from .config import TrainConfig
from .data import load_cached_case
from .sampler import PatchSampler

__all__ = ["train", "validate", "export_weights"]


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


def _rng_state(rng: np.random.RandomState) -> dict:
    """A NumPy generator's state as plain values and a tensor, so a checkpoint loads with ``weights_only``."""
    import torch

    name, keys, position, has_gauss, cached = rng.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_rng_state(rng: np.random.RandomState, state: dict) -> None:
    rng.set_state((state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                   state["cached_gaussian"]))


class _Trainer:
    """One network, its optimiser and losses, and the state a checkpoint keeps (step, time, history)."""

    def __init__(self, config: TrainConfig, sampler: PatchSampler, device: str):
        import torch
        from monai.losses import DiceLoss
        from monai.networks.nets import SegResNet

        self.config, self.sampler, self.device = config, sampler, device
        self.network = SegResNet(**config.network_parameters()).to(device)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda"
                         else torch.autocast("cpu", enabled=False))
        self.step, self.elapsed_s, self.history = 0, 0.0, []

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint (tensors and plain values only: nothing in it can run code)."""
        import torch

        state = torch.load(path, map_location=self.device, weights_only=True)
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed_s, self.history = state["step"], state["elapsed_s"], state["history"]
        _set_rng_state(self.sampler.rng, state["sampler_rng"])

    def save(self, out_dir: Path) -> None:
        """The resumable checkpoint and the float16 inference weights."""
        _save_atomic({"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                      "step": self.step, "elapsed_s": self.elapsed_s, "history": self.history,
                      "sampler_rng": _rng_state(self.sampler.rng)}, out_dir / "checkpoint.pt")
        export_weights(self.network.state_dict(), out_dir / "model.pt")

    def optimise(self, progress: float) -> float:
        """One optimisation step at ``progress`` (0-1) of the schedule; returns the loss."""
        import torch

        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * _lr_factor(progress, self.step, self.config.warmup_steps)
        images, targets = self.sampler.batch()
        with self.autocast:
            logits = self.network(images)
        logits = logits.float()
        loss = self.dice(logits, targets) + self.bce(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12.0)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def run(self, out_dir: Path, log: Callable[[str], None]) -> None:
        """Optimise until the step or time limit, logging every ``log_every`` steps and checkpointing."""
        config = self.config
        start = time.monotonic() - self.elapsed_s
        last_checkpoint = time.monotonic()
        self.network.train()
        running: list[float] = []
        while True:
            self.elapsed_s = time.monotonic() - start
            progress = self.step / config.max_steps
            if config.time_limit_s:
                progress = max(progress, self.elapsed_s / config.time_limit_s)
            if progress >= 1.0:
                break
            running.append(self.optimise(progress))
            if self.step % config.log_every == 0:
                mean_loss, running = float(np.mean(running)), []
                self.history.append({"step": self.step, "loss": mean_loss, "elapsed_s": round(self.elapsed_s, 1)})
                log(f"[train] step {self.step} loss {mean_loss:.4f} lr {self.optimizer.param_groups[0]['lr']:.2e} "
                    f"{self.step / max(self.elapsed_s, 1e-6):.2f} it/s progress {100 * progress:.1f}%")
            if time.monotonic() - last_checkpoint > config.checkpoint_every_s:
                self.save(out_dir)
                last_checkpoint = time.monotonic()
        self.save(out_dir)


def _train(cache_dir: Path, out_dir: Path, config: TrainConfig, train_cases: Sequence[str],
           val_cases: Sequence[str], resume: bool, log: Callable[[str], None]) -> Path:
    import torch

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
    sampler = PatchSampler([load_cached_case(Path(cache_dir) / f"{c}.npz") for c in train_cases], config, device)
    trainer = _Trainer(config, sampler, device)
    if resume and (out_dir / "checkpoint.pt").exists():
        trainer.resume(out_dir / "checkpoint.pt")
        log(f"resumed from step {trainer.step}")
    trainer.run(out_dir, log)
    summary = {"steps": trainer.step, "elapsed_s": round(trainer.elapsed_s, 1), "device": device,
               "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    if val_cases:
        summary["validation"] = validate(trainer.network, cache_dir, val_cases, config, device, log)
    (out_dir / "history.json").write_text(json.dumps({"summary": summary, "history": trainer.history}, indent=2))
    log(f"[train] done: {json.dumps(summary)}")
    return out_dir / "model.pt"


def validate(network, cache_dir: Path, cases: Sequence[str], config: TrainConfig, device: str,
             log: Callable[[str], None] = print) -> dict:
    """Dice per region on cached held-out cases (quick check; the model card uses the full pipeline)."""
    import torch
    from monai.inferers import sliding_window_inference

    from ..labels import region_masks
    from ..metrics import dice as dice_score

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
