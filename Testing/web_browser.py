"""Driving `tumorseg web` from a real Chromium (Playwright) for the browser tests and the web benchmark:
a server on a free loopback port, the app's state read from the page, and the clicks a person makes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MODEL = "brats18-segresnet8"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(output: Path, *extra: str, model: str = MODEL) -> tuple[subprocess.Popen, str]:
    """`tumorseg web` on a free port (CPU, ``model``); returns the process and its URL once it accepts."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "TumorSegLib", "web", "--port", str(port), "-o", str(output),
                                "--model", model, "--device", "cpu", *extra], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}/"
        if process.poll() is not None:
            raise RuntimeError(f"tumorseg web stopped: {process.stdout.read()[-2000:]}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("tumorseg web did not start within 90 s")


def state(page, key):
    return page.evaluate(f"() => window.trame.state.get({json.dumps(key)})")


def wait_state(page, expression: str, timeout_s: float = 60):
    page.wait_for_function(f"() => {{ const s = window.trame.state; return {expression}; }}", timeout=timeout_s * 1000)


def edited(page) -> dict:
    return {row["Region"]: row["Edited"] for row in state(page, "ts_results")}


def retried(page, action, expression: str, attempts: int = 3) -> None:
    """Do a UI action until the app's state shows it took effect (a click that lands while the page is still
    re-laying out after an update is lost; a person would click again)."""
    for _ in range(attempts):
        action()
        try:
            wait_state(page, expression, timeout_s=5)
            return
        except Exception:  # noqa: BLE001 - Playwright's timeout: try again
            continue
    wait_state(page, expression, timeout_s=5)


def click_icon(page, icon: str) -> None:
    """Click the toolbar button showing ``icon`` (with the mouse: tooltips sit over Playwright's checks)."""
    box = page.locator(f"i.{icon}:visible").last.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def select_segment(page, name: str) -> None:
    """Click a segment's row in the editor's list, beside its name (the name is an editable field and the colour
    dot opens the colour dialog)."""
    page.wait_for_function(f"() => [...document.querySelectorAll('input')].some(i => i.value === {json.dumps(name)})",
                           timeout=30000)
    field = page.evaluate_handle(f"() => [...document.querySelectorAll('input')].find(i => i.value === "
                                 f"{json.dumps(name)})").as_element()
    box = field.bounding_box()
    page.mouse.click(box["x"] + box["width"] + 12, box["y"] + box["height"] / 2)


def paint_stroke(page) -> None:
    """Drag the brush across normal brain on the axial (red) view."""
    view = page.locator(".layout-grid-item img.image-display-area").first
    box = view.bounding_box()
    x, y = box["x"] + 0.62 * box["width"], box["y"] + 0.42 * box["height"]
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(12):
        page.mouse.move(x + 4 * step, y + 2 * step)
        page.wait_for_timeout(40)
    page.mouse.up()


def load_and_run(page, folder: Path, timeout_s: float = 600) -> None:
    """Load a case folder from the server's disk, press Run and wait for the result (or an error)."""
    page.wait_for_selector("[data-testid=tumorseg-panel]", timeout=60000)
    page.get_by_test_id("folder").locator("input").fill(str(folder))
    page.get_by_test_id("load").click()
    wait_state(page, "s.get('ts_t1c') && s.get('ts_flair')")
    page.get_by_test_id("run").click()
    wait_state(page, "s.get('ts_has_result') || s.get('ts_error')", timeout_s=timeout_s)
