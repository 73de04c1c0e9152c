"""The browser app end to end in a real Chromium (Playwright): a shared case loaded from a server folder, Run,
the segments and the table, a paint stroke in the axial view that marks its region edited, Undo, Revert to AI,
export, and the exported label map against `tumorseg segment`'s. Screenshots go to runs/artifacts/web/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from Testing.web_browser import (
    CHROMIUM,
    MODEL,
    click_icon,
    edited,
    load_and_run,
    paint_stroke,
    retried,
    select_segment,
    start_server,
    state,
    wait_state,
)
from TumorSegLib.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TUMORSEG_ARTIFACTS", ROOT / "runs" / "artifacts")) / "web"
CASE = "Brats18_CBICA_AQT_1"


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (Debian package chromium); .ci/run installs it")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.mark.realdata
def test_load_run_paint_undo_revert_and_export_in_chromium(browser, shared_data, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server, url = start_server(tmp_path / "web_out")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        load_and_run(page, shared_data / CASE)
        assert not state(page, "ts_error")
        rows = {row["Region"]: row for row in state(page, "ts_results")}
        assert rows["WT"]["Volume (mL)"] > 50 and set(edited(page).values()) == {"no"}
        page.wait_for_timeout(2000)
        page.screenshot(path=str(ARTIFACTS / "result.png"))

        page.get_by_test_id("tool-SegmentEditorUI").click()
        retried(page, lambda: click_icon(page, "mdi-brush"),
                "(s.get('SegmentEditorState__active_effect_name') || '').endsWith('Paint')")
        retried(page, lambda: select_segment(page, "Peritumoral edema"),
                "s.get('SegmentEditorState__segment_list__SegmentListState__active_segment_id') === 'ED'")
        paint_stroke(page)
        wait_state(page, "s.get('ts_results').find(r => r.Region === 'ED').Edited === 'yes'")
        assert edited(page) == {"NCR": "no", "ED": "yes", "ET": "no", "TC": "no", "WT": "yes"}
        page.screenshot(path=str(ARTIFACTS / "painted.png"))
        click_icon(page, "mdi-undo")
        wait_state(page, "s.get('ts_results').find(r => r.Region === 'ED').Edited === 'no'")

        paint_stroke(page)
        wait_state(page, "s.get('ts_results').find(r => r.Region === 'ED').Edited === 'yes'")
        page.get_by_test_id("tool-TumorSegPanel").click()
        page.evaluate("() => window.trame.state.set('ts_revert', 'ED')")
        page.get_by_test_id("revert").click()
        wait_state(page, "s.get('ts_results').find(r => r.Region === 'ED').Edited === 'no'")
        page.get_by_test_id("export-labels").click()
        wait_state(page, "s.get('ts_exported').length > 0")
        exported = Path(state(page, "ts_exported")[0]["path"])
        table = {row["Region"]: row["Volume (mL)"] for row in state(page, "ts_results")}
        page.screenshot(path=str(ARTIFACTS / "exported.png"))
    finally:
        server.terminate()
        server.wait(timeout=30)

    from TumorSegLib.cli import main

    files = {key: shared_data / CASE / f"{CASE}_{suffix}.nii.gz"
             for key, suffix in (("t1", "t1"), ("t1c", "t1ce"), ("t2", "t2"), ("flair", "flair"))}
    assert main(["segment", *sum(([f"--{k}", str(p)] for k, p in files.items()), []), "-o",
                 str(tmp_path / "cli.nii.gz"), "--model", MODEL, "--device", "cpu"]) == 0
    assert np.array_equal(read_volume(exported).array, read_volume(tmp_path / "cli.nii.gz").array)
    cli_volumes = json.loads((tmp_path / "cli.json").read_text())["volumes_ml"]
    assert table == pytest.approx(cli_volumes, abs=2e-3)


def test_a_token_is_required_when_one_is_set_and_the_synthetic_case_runs(browser, synthetic_case_files, tmp_path):
    """Also makes the README's screenshot (Resources/Docs/web_app.png is copied from it): the synthetic case,
    since nothing cut from the shared cases may be committed."""
    token = "a-long-enough-test-token"
    (tmp_path / "token").write_text(token)
    case = tmp_path / "case"
    case.mkdir()
    for key, path in synthetic_case_files.items():
        if key != "label":
            shutil.copy(path, case / Path(path).name)
    server, url = start_server(tmp_path / "out", "--token-file", str(tmp_path / "token"))
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_timeout(6000)
        assert page.locator("[data-testid=tumorseg-panel]").count() == 0  # refused without the token
        page.goto(url + f"?secret={token}")
        load_and_run(page, case)
        assert not state(page, "ts_error")
        assert {row["Region"] for row in state(page, "ts_results")} == {"NCR", "ED", "ET", "TC", "WT"}
        page.wait_for_timeout(2000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "synthetic_case.png"))
    finally:
        server.terminate()
        server.wait(timeout=30)
