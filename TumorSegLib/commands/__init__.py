"""The ``tumorseg`` subcommands, one module each; each has ``add_command(subparsers)`` and does its work by
calling the library. :mod:`TumorSegLib.cli` only dispatches."""

from . import batch, demo, evaluate, pacs, segment, track, train, web

# In the order ``tumorseg --help`` lists them.
COMMANDS = (segment, batch, pacs, track, evaluate, web, demo, train)

__all__ = ["COMMANDS"]
