"""The ``tumorseg`` command line: segment (files or a DICOM study), batch, pacs, track, evaluate, web, demo, train.

The segmentation options come from :mod:`.options` (one contract with the Slicer module); each subcommand lives
in :mod:`.commands`; this file builds the parser and maps errors to exit status 2 (one line) and interruptions
to 130.
"""

from __future__ import annotations

import argparse
import sys
import threading

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``tumorseg`` parser with every subcommand."""
    from .commands import COMMANDS

    parser = argparse.ArgumentParser(prog="tumorseg", description="Brain tumour segmentation from T1, T1c, T2, FLAIR.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(commands)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a cancel) cleans up as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line and give 2, an interruption (Ctrl-C, SIGTERM) 130."""
    import signal

    from .commands.common import run_parsed

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what was asked, for the provenance record (sys.argv is another program's in a batch worker)
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return run_parsed(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
