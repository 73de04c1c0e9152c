"""The browser app's cost on this machine, driven from a real Chromium as a user would:

1. server start: seconds from launching `tumorseg web` to the port accepting, and to the TumorSeg panel shown;
2. memory: the server's resident memory idle, with the four volumes loaded, and with the result (segments,
   uncertainty volume, table) in the scene;
3. Run → segments shown: seconds from pressing Run to the volume table in the page, against `tumorseg segment`
   on the same case and model in a separate process (the ratio is what the app adds: scene import, display).

    python Testing/Benchmarks/web_benchmark.py [--case DIR] [--model ID] [--json OUT.json]

The case defaults to a shared BraTS case when present, else the synthetic sample; the model to the default
(the ensemble, whose members' disagreement gives the uncertainty volume).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from Testing.web_browser import CHROMIUM, load_and_run, start_server, state, wait_state  # noqa: E402
from TumorSegLib.models import default_model_id  # noqa: E402

SHARED_CASE = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_CBICA_AQT_1"


def resident_mb(pid: int) -> float:
    """Resident memory of one process (MB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def case_folder(case: Path | None) -> Path:
    if case is not None:
        return case
    if SHARED_CASE.is_dir():
        return SHARED_CASE
    from TumorSegLib.synthetic import write_synthetic_case

    folder = Path(tempfile.mkdtemp()) / "case"
    folder.mkdir()
    for key, path in write_synthetic_case(folder.parent / "written").items():
        if key != "label":
            Path(path).rename(folder / Path(path).name)
    return folder


def cli_seconds(folder: Path, model: str, output: Path) -> float:
    """Wall seconds of `tumorseg segment` on the case's four files."""
    from TumorSegLib.sequences import sequence_files

    files = sequence_files(folder)
    command = [sys.executable, "-m", "TumorSegLib", "segment", *sum(([f"--{k}", str(p)] for k, p in files.items()), []),
               "-o", str(output), "--model", model, "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(folder: Path, model: str, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    figures: dict = {"case": folder.name, "model": model}
    start = time.perf_counter()
    server, url = start_server(work / "web_out", model=model)
    figures["port_open_s"] = time.perf_counter() - start
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("[data-testid=tumorseg-panel]", timeout=120000)
            figures["panel_shown_s"] = time.perf_counter() - start
            figures["idle_mb"] = resident_mb(server.pid)
            page.get_by_test_id("folder").locator("input").fill(str(folder))
            page.get_by_test_id("load").click()
            wait_state(page, "s.get('ts_t1c') && s.get('ts_flair')")
            figures["four_volumes_mb"] = resident_mb(server.pid)
            run_start = time.perf_counter()
            load_and_run(page, folder)
            figures["run_to_segments_s"] = time.perf_counter() - run_start
            if state(page, "ts_error"):
                raise RuntimeError(state(page, "ts_error"))
            figures["with_result_mb"] = resident_mb(server.pid)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    figures["cli_segment_s"] = cli_seconds(folder, model, work / "cli.nii.gz")
    figures["run_to_segments_vs_cli"] = figures["run_to_segments_s"] / figures["cli_segment_s"]
    figures["with_result_vs_idle_memory"] = figures["with_result_mb"] / figures["idle_mb"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a case folder with the four sequences (default: a shared case)")
    parser.add_argument("--model", default=default_model_id())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        figures = measure(case_folder(args.case), args.model, Path(work))
    print(f"case {figures['case']}, model {figures['model']}, CPU")
    print(f"server start: port open {figures['port_open_s']:.1f} s, panel shown {figures['panel_shown_s']:.1f} s")
    print(f"server memory: idle {figures['idle_mb']:.0f} MB, four volumes {figures['four_volumes_mb']:.0f} MB, "
          f"with result + uncertainty {figures['with_result_mb']:.0f} MB "
          f"({figures['with_result_vs_idle_memory']:.2f}x idle)")
    print(f"Run -> segments shown {figures['run_to_segments_s']:.1f} s; tumorseg segment {figures['cli_segment_s']:.1f} s "
          f"({figures['run_to_segments_vs_cli']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
