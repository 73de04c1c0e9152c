"""``tumorseg web``: the browser app (trame-slicer) on this machine."""

from __future__ import annotations

import argparse

from .common import CommandError, read_secret

__all__ = ["add_command"]


def _token(args: argparse.Namespace) -> str | None:
    from ..web.server import TOKEN_VARIABLE

    return read_secret(args.token_file, "--token-file", TOKEN_VARIABLE)


def _run(args: argparse.Namespace) -> int:
    from ..web.server import WebOptionsError, check_host, serve

    token = _token(args)
    try:
        check_host(args.host, token)
    except WebOptionsError as error:
        raise CommandError(str(error)) from None
    serve(args.host, args.port, token, args.output, model=args.model, device=args.device)
    return 0


def add_command(commands) -> None:
    from ..options import Device, choices

    p = commands.add_parser("web", help="the browser app: load a case, run, review, correct, export, follow up")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token-file", help="file holding the access token (needed for any host but 127.0.0.1; or set "
                   "TUMORSEG_WEB_TOKEN); the browser opens http://HOST:PORT/?secret=TOKEN")
    p.add_argument("-o", "--output", default="tumorseg_web_output", help="folder for exported files")
    p.add_argument("--model", help="model the page starts with (default: the registry's default)")
    p.add_argument("--device", choices=choices(Device), help="device the page starts with (default auto)")
    p.set_defaults(func=_run)
