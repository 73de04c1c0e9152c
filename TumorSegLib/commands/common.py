"""What the subcommands share: user errors, progress on a terminal or a pipe, input findings printed once,
checks that take seconds, and the label map with its summary record."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["CommandError", "run_parsed", "read_secret", "log", "ProgressReport", "FindingsPrinter", "check_model_and_device",
           "labels_summary", "secondary_outputs"]


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def read_secret(path: str | None, option: str, variable: str | None) -> str | None:
    """A password or token from the file given with ``option``, else from the environment ``variable``: never
    from the command line, where other users of the machine can read it."""
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{option} {file}: file not found")
        return file.read_text().strip()
    return os.environ.get(variable) or None if variable else None


def run_parsed(args) -> int:
    """Run a parsed subcommand: a user error prints one line and gives 2, an interruption 130."""
    from ..models import WeightsError

    try:
        return args.func(args)
    except (CommandError, ValueError, KeyError, OSError, WeightsError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tumorseg {args.command}: error: {message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"tumorseg {args.command}: interrupted; nothing partial was left behind", file=sys.stderr, flush=True)
        return 130


def log(message: str) -> None:
    print(message, flush=True)


class ProgressReport:
    """Progress of a long command: a live bar with the time left on a terminal (tqdm), plain
    ``[progress NN%] step`` lines when the output is piped (the Slicer module parses them), one per change."""

    def __init__(self) -> None:
        self.last: tuple[int, str] | None = None
        self.bar = None
        if sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, unit="%", bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        percent = round(100 * fraction)
        if (percent, message) == self.last:
            return
        self.last = (percent, message)
        if self.bar is None:
            print(f"[progress {percent:3d}%] {message}", flush=True)
            return
        self.bar.n = percent
        self.bar.set_postfix_str(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class FindingsPrinter:
    """Prints each input finding once, as soon as it is known (before the heavy steps, not after them)."""

    def __init__(self) -> None:
        self.printed: list[dict] = []

    def __call__(self, findings: list[dict]) -> None:
        for finding in findings[len(self.printed):]:
            print(f"[warning] {finding['message']}", flush=True)
        self.printed[:] = findings


def check_model_and_device(options) -> None:
    """Unknown model id, missing or altered weights, an absent device, a number format not understood: found
    now, not after the work."""
    from ..inference import inference_precision, resolve_device
    from ..models import get_model, weights_paths

    weights_paths(get_model(options.model))
    inference_precision(resolve_device(options.device))


def labels_summary(result, output: Path, written_to: Path, convention, inputs=()) -> dict:
    """Write the label map (to ``written_to``, staged for ``output``) with ``convention``'s codes; returns its
    summary record. Default codes: BraTS 2023's when the ``inputs`` files are named the BraTS 2023 way (that
    user's reference labels code ET 3), else the model's."""
    from ..export import write_label_map
    from ..labels import LabelConvention
    from ..sequences import brats2023_named

    why = "chosen" if convention else "the model's"
    if not convention and brats2023_named(inputs):
        convention, why = LabelConvention.BRATS2023, "the input files are named the BraTS 2023 way"
        log("[note] label codes of BraTS 2023 (1 NCR, 2 ED, 3 ET), as the input files are named that way; "
            "--label-convention brats2018 writes ET as 4")
    convention = convention or result.model.label_convention
    write_label_map(result.labels, written_to, convention)
    convention = getattr(convention, "value", convention)
    return {"output": str(output), "label_convention": convention, "label_convention_why": why, **result.summary()}


def secondary_outputs(result, args, options, staged: dict[str, Path]) -> dict:
    """Brain mask, uncertainty maps and the single uncertainty map, as asked; their entries for the summary."""
    from ..export import write_map, write_uncertainty_maps

    entries: dict = {}
    if args.brain_mask and result.brain is not None:
        write_map(result.brain.mask, staged["brain_mask"], dtype="uint8")
        entries["brain_mask"] = str(args.brain_mask)
    if args.uncertainty:
        entries["uncertainty"] = write_uncertainty_maps(result.uncertainty, staged["uncertainty"])
    if args.uncertainty_map:
        write_map(result.uncertainty_map(options.uncertainty_map_kind.value), staged["uncertainty_map"])
        entries["uncertainty_map"] = str(args.uncertainty_map)
    return entries
