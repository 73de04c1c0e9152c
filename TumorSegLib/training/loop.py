"""The training loop: AdamW with warm-up and cosine decay, region-weighted Dice + BCE, resumable checkpoints,
float16 inference weights, and a quick validation.

:func:`train_runs` trains several runs (e.g. the cross-validation folds and the all-cases model) in one
process: the cases go to the device once and are shared, each run has its own CUDA stream, and steps are
issued round-robin without waiting for the device (the loss is read back only when it is logged), so small
networks keep a large GPU busy together. A run can start from the weights of an earlier one
(``resume_from``), so training on lent GPUs adds up across sessions.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..export import atomic_write
from ..inference import inference_precision, precision_autocast, resolve_device
from ..memory import keep_freed_memory
from .config import TrainConfig
from .data import cached_with_n4, load_cached_case
from .sampler import PatchSampler, device_cases

__all__ = ["train", "train_runs", "validate", "export_weights"]

Log = Callable[[str], None]


def _lr_factor(progress: float, step: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _save_atomic(obj, path: Path) -> None:
    import torch

    atomic_write(path, lambda partial: torch.save(obj, partial))


def export_weights(state_dict: dict, path: Path) -> None:
    """Save inference weights as a float16 state dict (half the size; loaded back as float32)."""
    _save_atomic({k: (v.half() if v.is_floating_point() else v) for k, v in state_dict.items()}, path)


def _rng_state(rng: np.random.RandomState) -> dict:
    """A NumPy generator's state as plain values and a tensor, so a checkpoint loads with ``weights_only``."""
    import torch

    name, keys, position, has_gauss, cached = rng.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_rng_state(rng: np.random.RandomState, state: dict) -> None:
    rng.set_state((state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                   state["cached_gaussian"]))


def _load_safely(path: Path, device: str) -> dict:
    """``torch.load`` of tensors and plain values only; anything else (a pickle that could run code, a damaged
    file) is refused naming the file."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a checkpoint TumorSeg can load safely (damaged, or holding objects that "
                         "could run code; nothing in it was run): delete it, or start afresh with --no-resume"
                         ) from error


def _memory(device: str) -> str:
    import torch

    return f" mem {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""


class _Trainer:
    """One network, its optimiser and losses, its CUDA stream, and what a checkpoint keeps."""

    def __init__(self, name: str, out_dir: Path, config: TrainConfig, sampler: PatchSampler, device: str):
        import torch
        from monai.losses import DiceLoss
        from monai.networks.nets import SegResNet

        self.name, self.out_dir, self.config, self.sampler, self.device = name, out_dir, config, sampler, device
        self.network = SegResNet(**config.network_parameters()).to(device)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5, reduction="none")
        self.weights = torch.tensor(config.region_weights, dtype=torch.float32, device=device)
        # bfloat16 where inference runs in it: on a 2-core CPU with native bfloat16 a step of batch 2 at 128^3
        # takes 4.7 s against 6.5 s in float32.
        self.autocast = precision_autocast(device)
        self.stream = torch.cuda.Stream() if device == "cuda" else None
        self.step, self.first_step, self.elapsed_s, self.history = 0, 0, 0.0, []
        self.losses: list = []  # device tensors, read back at the next log line

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint (tensors and plain values only: nothing in it can run code)."""

        state = _load_safely(path, self.device)
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed_s, self.history = state["step"], state["elapsed_s"], state["history"]
        _set_rng_state(self.sampler.rng, state["sampler_rng"])

    def start_from(self, folder: Path) -> None:
        """Start from an earlier run's weights (``model.pt``) and history, with a fresh optimiser (warm-up again):
        how training on separate lent GPUs adds up when only the weights came back."""

        state = _load_safely(folder / "model.pt", self.device)
        self.network.load_state_dict({k: v.float() for k, v in state.items()})
        history_file = folder / "history.json"
        if history_file.exists():
            earlier = json.loads(history_file.read_text())
            self.history, self.first_step = earlier["history"], int(earlier["summary"]["steps"])

    def save(self) -> None:
        """The resumable checkpoint and the float16 inference weights."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _save_atomic({"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                      "step": self.step, "elapsed_s": self.elapsed_s, "history": self.history,
                      "sampler_rng": _rng_state(self.sampler.rng)}, self.out_dir / "checkpoint.pt")
        export_weights(self.network.state_dict(), self.out_dir / "model.pt")

    def optimise(self, progress: float) -> None:
        """Queue one optimisation step at ``progress`` (0-1) of the schedule, on the run's own stream."""
        import torch

        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * _lr_factor(progress, self.step, self.config.warmup_steps)
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            images, targets = self.sampler.batch()
            with self.autocast:
                logits = self.network(images)
            logits = logits.float()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            per_region = self.dice(logits, targets).flatten() + bce.mean(dim=(0, 2, 3, 4))
            loss = (per_region * self.weights).sum() / self.weights.sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12.0)
            self.optimizer.step()
            self.losses.append(loss.detach())
        self.step += 1

    def log_line(self, progress: float, elapsed_s: float) -> str:
        """Read the queued losses back (the only wait for the device) and record their mean."""
        import torch

        mean_loss = float(torch.stack(self.losses).mean()) if self.losses else float("nan")
        self.losses = []
        total = self.first_step + self.step
        self.history.append({"step": total, "loss": mean_loss, "elapsed_s": round(elapsed_s, 1)})
        return (f"[train] {self.name} step {total} loss {mean_loss:.4f} lr {self.optimizer.param_groups[0]['lr']:.2e} "
                f"{self.step / max(elapsed_s, 1e-6):.2f} it/s progress {100 * progress:.1f}%{_memory(self.device)}")


def _run_trainers(trainers: list[_Trainer], config: TrainConfig, log: Log) -> None:
    """Optimise every trainer round-robin until the step or time limit, logging and checkpointing as it goes."""
    start = time.monotonic() - max(t.elapsed_s for t in trainers)
    last_checkpoint = time.monotonic()
    for trainer in trainers:
        trainer.network.train()
    while True:
        elapsed = time.monotonic() - start
        progress = min(t.step for t in trainers) / config.max_steps
        if config.time_limit_s:
            progress = max(progress, elapsed / config.time_limit_s)
        if progress >= 1.0:
            break
        for trainer in trainers:
            trainer.elapsed_s = elapsed
            trainer.optimise(progress)
            if trainer.step % config.log_every == 0:
                log(trainer.log_line(progress, elapsed))
        if time.monotonic() - last_checkpoint > config.checkpoint_every_s:
            for trainer in trainers:
                trainer.save()
            last_checkpoint = time.monotonic()
    for trainer in trainers:
        trainer.save()


def _seed(config: TrainConfig, device: str) -> None:
    import torch

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True


def train_runs(cache_dir: Path, out_dir: Path, config: TrainConfig, runs: Mapping[str, tuple[Sequence[str], Sequence[str]]],
               resume: bool = True, resume_from: Path | None = None, log: Log = print) -> dict[str, Path]:
    """Train several runs together in one process; returns each run's exported weights.

    Args:
        cache_dir: the preprocessed cases (``<case>.npz``).
        out_dir: each run writes ``<out_dir>/<run>/`` (``checkpoint.pt``, ``model.pt``, ``config.json``,
            ``history.json``).
        config: the recipe, shared by the runs (each run's patches are drawn with its own seed).
        runs: ``{name: (training cases, validation cases)}``, e.g. ``{"fold0": (...), "foldall": (...)}``.
        resume: continue a run from its own ``checkpoint.pt`` when there is one.
        resume_from: a folder of earlier runs (``<run>/model.pt``, ``history.json``) to start the others from.
    """
    from monai.data import get_track_meta, set_track_meta

    # Plain tensors while training (metadata tracking costs time per step); restored afterwards because
    # the setting is process-wide and other code (e.g. uncertainty's affine jitter) needs MetaTensors.
    tracking = get_track_meta()
    set_track_meta(False)
    try:
        return _train_runs(Path(cache_dir), Path(out_dir), config, runs, resume, resume_from, log)
    finally:
        set_track_meta(tracking)


def _train_runs(cache_dir: Path, out_dir: Path, config: TrainConfig, runs: Mapping[str, tuple], resume: bool,
                resume_from: Path | None, log: Log) -> dict[str, Path]:
    import torch

    device = resolve_device(config.device)
    if device == "cpu":
        keep_freed_memory()  # a CPU step (batch 2, 128^3) 6.7 s -> 4.0 s: no re-faulting of freed activations
    _seed(config, device)
    names = sorted({case for train_cases, _ in runs.values() for case in train_cases})
    log(f"loading {len(names)} training cases onto {device}")
    shared = dict(zip(names, device_cases([load_cached_case(cache_dir / f"{c}.npz") for c in names], config, device)))
    n4_flags = {cached_with_n4(cache_dir / f"{c}.npz") for c in names}  # how the images were prepared
    n4_cache = n4_flags.pop() if len(n4_flags) == 1 else "mixed"
    trainers = []
    for offset, (name, (train_cases, val_cases)) in enumerate(runs.items()):
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(
            {**asdict(config), "n4_cache": n4_cache, "train_cases": list(train_cases),
             "val_cases": list(val_cases)}, indent=2))
        sampler = PatchSampler([shared[c] for c in train_cases], config, device, seed=config.seed + 101 * offset)
        trainer = _Trainer(name, folder, config, sampler, device)
        if resume and (folder / "checkpoint.pt").exists():
            trainer.resume(folder / "checkpoint.pt")
            log(f"resumed from step {trainer.step}: {name}")
        elif resume_from is not None and (Path(resume_from) / name / "model.pt").exists():
            trainer.start_from(Path(resume_from) / name)
            log(f"started {name} from {Path(resume_from) / name} (step {trainer.first_step})")
        trainers.append(trainer)
    _run_trainers(trainers, config, log)
    for trainer, (_, val_cases) in zip(trainers, runs.values()):
        summary = {"steps": trainer.first_step + trainer.step, "steps_this_run": trainer.step,
                   "elapsed_s": round(trainer.elapsed_s, 1), "device": device, "runs_together": len(trainers),
                   "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                   "precision": inference_precision(device)}
        if val_cases:
            summary["validation"] = validate(trainer.network, cache_dir, val_cases, config, device, log)
        (trainer.out_dir / "history.json").write_text(json.dumps({"summary": summary, "history": trainer.history},
                                                                 indent=2))
        log(f"[train] {trainer.name} done: {json.dumps(summary)}")
    return {trainer.name: trainer.out_dir / "model.pt" for trainer in trainers}


def train(cache_dir: Path, out_dir: Path, config: TrainConfig, train_cases: Sequence[str],
          val_cases: Sequence[str] = (), resume: bool = True, log: Log = print) -> Path:
    """Train one model on cached cases into ``out_dir`` (see :func:`train_runs`); returns its weights."""
    out_dir = Path(out_dir)
    weights = train_runs(cache_dir, out_dir.parent, config, {out_dir.name: (train_cases, val_cases)}, resume, log=log)
    return weights[out_dir.name]


def validate(network, cache_dir: Path, cases: Sequence[str], config: TrainConfig, device: str,
             log: Log = print) -> dict:
    """Dice per region on cached held-out cases (quick check; the model card uses the full pipeline)."""
    import torch
    from monai.inferers import sliding_window_inference

    from ..labels import region_masks
    from ..metrics import dice as dice_score

    network.eval()
    scores = {}
    for case in cases:
        image, label, _ = load_cached_case(Path(cache_dir) / f"{case}.npz")
        with torch.inference_mode(), precision_autocast(device):
            logits = sliding_window_inference(torch.from_numpy(image)[None].to(device), config.patch_size, 4,
                                              network, overlap=0.25, mode="gaussian")
        predicted = (torch.sigmoid(logits.float())[0] > 0.5).cpu().numpy()
        truth = region_masks(label)
        scores[case] = {region.value: round(dice_score(predicted[i], truth[region]), 4)
                        for i, region in enumerate(truth)}
        log(f"[validate] {case} {scores[case]}")
    network.train()
    return scores
