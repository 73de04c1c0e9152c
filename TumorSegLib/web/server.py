"""Starting the browser app: 127.0.0.1 by default; any other interface only with a token, which the browser then
gives in the address (``http://HOST:PORT/?secret=TOKEN``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..network import is_loopback
from ..volume import PathLike

__all__ = ["WebOptionsError", "check_host", "create_app", "serve"]

TOKEN_VARIABLE = "TUMORSEG_WEB_TOKEN"


class WebOptionsError(ValueError):
    """Options that would expose the app unsafely; the message says what to give."""


def check_host(host: str, token: str | None) -> None:
    """Refuse to serve patient images on a non-loopback interface without a token (of at least 16 characters).

    Raises:
        WebOptionsError: naming the option to give.
    """
    if not is_loopback(host) and (not token or len(token) < 16):
        raise WebOptionsError(f"--host {host} makes the app reachable from other machines: give a token of at least "
                              f"16 characters with --token-file FILE or the {TOKEN_VARIABLE} environment variable "
                              "(the browser then opens http://HOST:PORT/?secret=TOKEN), or serve on 127.0.0.1")


def _headless_rendering() -> None:
    """Render off-screen with EGL when there is no display (servers, CI); set before VTK makes a window."""
    if not os.environ.get("DISPLAY") and "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ:
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"


def create_app(output_folder: PathLike, server=None, python: str | None = None, serve_exports: bool = True,
               model: str | None = None, device: str | None = None):
    """A ready :class:`~TumorSegLib.web.ui.TumorSegApp` on a new trame server and Slicer scene (``model`` and
    ``device``: the choices the page starts with)."""
    _headless_rendering()
    from trame.app import get_server
    from trame_slicer import module as trame_slicer_module
    from trame_slicer.core import SlicerApp

    from .session import WebSession
    from .ui import TumorSegApp

    server = server or get_server(client_type="vue3")
    server.enable_module(trame_slicer_module)  # its views' client code and styles
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    exports_url = None
    if serve_exports:
        server.serve["exports"] = str(output_folder)
        exports_url = "exports"
    web = WebSession(SlicerApp(), output_folder, python)
    if model:
        from ..models import get_model

        web.parameters.modelId = get_model(model).id  # an unknown id stops here, naming it
    if device:
        web.parameters.device = device
    return TumorSegApp(server, web, exports_url)


def serve(host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          output_folder: PathLike = "tumorseg_web_output", python: str | None = None, model: str | None = None,
          device: str | None = None) -> None:
    """Serve the app until interrupted (blocking).

    Exported files are downloadable from the page only on a loopback interface (a download link would not
    carry the token); elsewhere they stay in ``output_folder`` on the server.
    """
    check_host(host, token)
    app = create_app(output_folder, python=python, serve_exports=is_loopback(host), model=model, device=device)
    # trame reads its options from the command line: give it exactly these (host, port, key, no browser).
    sys.argv = [sys.argv[0], "--host", host, "--port", str(port), "--server"] + (
        ["--authKey", token] if token else [])
    app.server.start(host=host, port=port, open_browser=False, show_connection_info=True)
