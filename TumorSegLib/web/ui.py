"""The page: trame-slicer's viewer (slice views + 3D, segment editor with undo/redo) and the TumorSeg panel
(inputs, model, Run/Cancel, results, overlay, revert, export, follow-up), bound to a :class:`WebSession`.

State names start with ``ts_``; buttons carry ``data-testid`` attributes for the browser tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from tempfile import TemporaryDirectory

from ..models import load_registry
from ..options import UNCERTAINTY_PRESETS, Device, choices
from ..sequences import DISPLAY_NAMES, SEQUENCES
from .session import WebSession, region_names

__all__ = ["TumorSegApp"]

_PANEL = "TumorSegPanel"
_EDITOR = "SegmentEditorUI"
_POLL_S = 0.5
_RESULT_HEADERS = [{"title": t, "key": k} for t, k in (
    ("Region", "Region"), ("Volume (mL)", "Volume (mL)"), ("Interval (mL)", "AI volume interval (mL)"),
    ("Uncertainty", "Mean uncertainty"), ("Edited", "Edited"), ("Review", "Review first"))]
_TIMELINE_HEADERS = [{"title": t, "key": k} for t, k in (
    ("Visit", "timepoint"), ("Date", "date"), ("ET (mL)", "ET_ml"), ("WT (mL)", "WT_ml"),
    ("Not assessed", "not_assessed"), ("SPD (mm²)", "spd_mm2"), ("New lesions", "new_lesions"), ("Category", "category"), ("Confirmation", "confirmation"))]


class TumorSegApp:
    """The trame application around one :class:`WebSession` (one scene per server process).

    Buttons that act on a field (folder, region, patient and visit date) send its value with the click: the
    field's own state update may reach the server after the click, which would then act on the old value."""

    def __init__(self, server, web: WebSession, exports_url: str | None = None):
        from trame_slicer.app.logic import LayoutButtonLogic, SegmentEditorLogic
        from trame_slicer.rca_view import register_rca_factories

        self.server, self.web, self.exports_url = server, web, exports_url
        self.state, self.ctrl = server.state, server.controller
        register_rca_factories(web.app.view_manager, server)
        # Views first: the editor's effects make their per-view pipelines when they start, and a pipeline made
        # before its view exists never gets it (painting then fails).
        self.layout_logic = LayoutButtonLogic(server, web.app)
        self.editor_logic = SegmentEditorLogic(server, web.app)
        self._stop_watching: list = []
        self._init_state()
        self.layout = self._build_ui()
        self.editor_logic.set_ui(self.editor_ui)
        self.layout_logic.set_ui(self.layout_button)

    # --- state and actions -----------------------------------------------------------------------------------

    def _init_state(self) -> None:
        state = self.state
        state.trame__title = "TumorSeg"
        state.ts_models = list(load_registry())
        state.ts_model = self.web.parameters.modelId
        state.ts_devices = choices(Device)
        state.ts_device = self.web.parameters.device
        state.ts_uncertainty_presets = list(UNCERTAINTY_PRESETS)
        state.ts_uncertainty = self.web.parameters.uncertaintyMethods
        state.ts_folder = ""
        state.ts_upload = None
        state.ts_regions = list(region_names())
        state.ts_revert = "ET"
        state.update({"ts_opacity": self.web.opacity, "ts_threshold": self.web.threshold, "ts_visit_date": "",
                      "ts_patient": "", "ts_exported": [], "ts_error": "", "ts_chart": "",
                      "ts_result_headers": _RESULT_HEADERS, "ts_timeline_headers": _TIMELINE_HEADERS})
        self._refresh()
        state.change("ts_model", "ts_device", "ts_uncertainty")(self._on_options)
        state.change("ts_opacity", "ts_threshold")(self._on_overlay)
        state.change(*(f"ts_{key}" for key in SEQUENCES))(self._on_inputs)
        state.change("ts_upload")(self._on_upload)

    def _refresh(self) -> None:
        """Push the session's facts to the page."""
        web, state = self.web, self.state
        state.ts_volumes = [{"title": v["name"], "value": v["id"]} for v in web.volumes()]
        for key, node_id in web.inputs().items():
            state[f"ts_{key}"] = node_id
        state.ts_running = web.running
        state.ts_progress = round(100 * web.status.progress)
        state.ts_status = web.status.message
        state.ts_results = web.results_rows()
        state.ts_flags = web.review_flags()
        state.ts_has_result = web.parameters.outputSegmentation is not None
        state.ts_timeline = web.timeline_rows()
        state.ts_chart = web.timeline_chart()
        state.is_volume_loaded = bool(state.ts_volumes)  # enables trame-slicer's tool buttons

    def _attempt(self, action, *args) -> None:
        """Run an action; its error goes to the page (never a traceback), the state is refreshed either way."""
        self.state.ts_error = ""
        try:
            action(*args)
        except (ValueError, OSError, RuntimeError, KeyError) as error:
            self.state.ts_error = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
        self._refresh()

    def _on_options(self, ts_model, ts_device, ts_uncertainty, **_):
        parameters = self.web.parameters
        parameters.modelId, parameters.device, parameters.uncertaintyMethods = ts_model, ts_device, ts_uncertainty

    def _on_overlay(self, ts_opacity, ts_threshold, **_):
        self._attempt(self.web.set_overlay, float(ts_opacity), float(ts_threshold))

    def _on_inputs(self, **values):
        for key in SEQUENCES:
            if self.web.inputs().get(key) != values.get(f"ts_{key}"):
                self.web.set_input(key, values.get(f"ts_{key}"))

    def _on_upload(self, ts_upload, **_):
        if not ts_upload:
            return
        from trame_slicer.utils import write_client_files_to_dir

        files = ts_upload if isinstance(ts_upload, list) else [ts_upload]
        with TemporaryDirectory() as folder:  # read completely into nodes, then the copies go
            self._attempt(lambda: self.web.load_files(write_client_files_to_dir(files, folder)))
        self.state.ts_upload = None

    def load_folder(self, folder: str) -> None:
        self._attempt(self.web.load_folder, folder)

    def auto_assign(self) -> None:
        self._attempt(self.web.auto_assign)

    def run_or_cancel(self) -> None:
        if self.web.running:
            self._attempt(self.web.cancel)
            return
        self._attempt(self.web.start)
        if self.web.running:
            asyncio.get_event_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self.web.running:
            await asyncio.sleep(_POLL_S)
            with self.state:
                self._attempt(self.web.poll)
                if not self.web.running and self.web.parameters.outputSegmentation is not None:
                    self._watch_edits(self.web.parameters.outputSegmentation)
                    self.editor_logic.on_volume_changed(self.web.session.result_reference(self.web.parameters))

    def _watch_edits(self, segmentation) -> None:
        """Edits made in the browser's editor refresh the volume table at once."""
        from ..scene import observe_segment_edits

        def changed():
            with self.state:
                self.state.ts_results = self.web.results_rows()

        self._stop_watching.append(observe_segment_edits(segmentation, changed))

    def revert(self, region: str) -> None:
        self._attempt(self.web.revert, region)

    def export_labelmap(self) -> None:
        self._attempt(lambda: self._exported([self.web.export_labelmap()]))

    def export_dicom(self) -> None:
        self._attempt(lambda: self._exported([Path(p) for p in self.web.export_dicom().values()]))

    def _exported(self, paths) -> None:
        self.state.ts_exported = [{"path": str(p), "url": f"{self.exports_url}/{Path(p).relative_to(self.web.output_folder)}"
                                   if self.exports_url else ""} for p in paths]

    def add_visit(self, patient: str, visit_date: str) -> None:
        self.web.parameters.patientId = patient or "Patient"
        self._attempt(self.web.add_visit, visit_date)

    # --- layout ----------------------------------------------------------------------------------------------

    def _build_ui(self):
        from trame.widgets import html
        from trame.widgets import vuetify3 as v
        from trame_slicer.app.ui import LayoutButton, ViewerLayout
        from trame_slicer.app.ui.control_button import ControlButton
        from trame_slicer.app.ui.segmentation import SegmentEditorToolbarUI, SegmentEditorUI, SegmentEditorUndoRedoUI

        with ViewerLayout(self.server, title="TumorSeg", is_drawer_visible=True) as layout:
            layout.typed_state.data.active_tool = _PANEL
            active = layout.typed_state.name.active_tool
            with layout.drawer:
                with html.Div(v_if=(f"{active} === '{_PANEL}'",), classes="pa-2", raw_attrs=['data-testid="tumorseg-panel"']):
                    self._inputs_card(v)
                    self._run_card(v)
                    self._results_card(v, html)
                    self._followup_card(v, html)
                self.editor_ui = SegmentEditorUI(v_if=(f"{active} === '{_EDITOR}'",))
            with layout.toolbar:
                for name, icon, tool in (("TumorSeg", "mdi-brain", _PANEL), ("segment editor", "mdi-pencil-ruler", _EDITOR)):
                    ControlButton(name=name, icon=icon, classes="mt-1", active=(f"{active} === '{tool}'",),
                                  click=f"{active} = '{tool}'; is_drawer_visible = true",
                                  raw_attrs=[f'data-testid="tool-{tool}"'])
                self.layout_button = LayoutButton(classes="mt-1")
                SegmentEditorToolbarUI(editor_ui=self.editor_ui, v_if=(f"{active} === '{_EDITOR}'",))
            with layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=self.editor_ui)
            with layout.content:
                self.layout_logic.layout_manager.initialize_layout_grid(layout)
            with v.VSnackbar(model_value=("!!ts_error",), color="error", timeout=-1, raw_attrs=['data-testid="error"']):
                html.Span("{{ ts_error }}")
        return layout

    def _inputs_card(self, v) -> None:
        with v.VCard(title="Case", classes="mb-2", density="compact"):
            with v.VCardText():
                v.VFileInput(v_model=("ts_upload", None), label="Upload the sequences (NIfTI, NRRD)", multiple=True,
                             density="compact", raw_attrs=['data-testid="upload"'])
                with v.VRow(dense=True, no_gutters=True):
                    v.VTextField(v_model=("ts_folder",), label="or a folder on the server", density="compact",
                                 hide_details=True, raw_attrs=['data-testid="folder"'])
                    v.VBtn("Load", click=(self.load_folder, "[ts_folder]"), size="small", classes="ml-1 mt-1",
                          raw_attrs=['data-testid="load"'])
                for key in SEQUENCES:
                    v.VSelect(v_model=(f"ts_{key}",), items=("ts_volumes",), label=DISPLAY_NAMES[key], clearable=True,
                              density="compact", hide_details=True, classes="mt-1", raw_attrs=[f'data-testid="input-{key}"'])
                v.VBtn("Assign from names", click=self.auto_assign, size="small", variant="tonal", classes="mt-2",
                       raw_attrs=['data-testid="auto-assign"'])

    def _run_card(self, v) -> None:
        with v.VCard(title="Model", classes="mb-2", density="compact"):
            with v.VCardText():
                v.VSelect(v_model=("ts_model",), items=("ts_models",), label="Model", density="compact",
                          hide_details=True)
                v.VSelect(v_model=("ts_device",), items=("ts_devices",), label="Device", density="compact",
                          hide_details=True, classes="mt-1")
                v.VSelect(v_model=("ts_uncertainty",), items=("ts_uncertainty_presets",), label="Uncertainty sampling",
                          density="compact", hide_details=True, classes="mt-1", raw_attrs=['data-testid="uncertainty"'])
                v.VBtn("{{ ts_running ? 'Cancel' : 'Run' }}", click=self.run_or_cancel, block=True, classes="mt-2",
                       color=("ts_running ? 'warning' : 'primary'",), disabled=("!ts_t1c && !ts_flair",),
                       raw_attrs=['data-testid="run"'])
                v.VProgressLinear(model_value=("ts_progress",), height=6, classes="mt-2", v_show="ts_running")
                v.VCardSubtitle("{{ ts_status }}", classes="px-0 text-wrap", raw_attrs=['data-testid="status"'])

    def _results_card(self, v, html) -> None:
        with v.VCard(title="Results", classes="mb-2", density="compact", v_if="ts_has_result"):
            with v.VCardText():
                v.VDataTable(items=("ts_results",), headers=("ts_result_headers",), density="compact",
                             hide_default_footer=True, raw_attrs=['data-testid="results"'])
                with html.Ul(v_if="ts_flags.length", classes="text-caption text-warning"):
                    html.Li("{{ flag }}", v_for="flag in ts_flags")
                v.VSlider(v_model=("ts_opacity",), min=0, max=1, step=0.05, label="Uncertainty overlay",
                          density="compact", hide_details=True, raw_attrs=['data-testid="opacity"'])
                v.VSlider(v_model=("ts_threshold",), min=0, max=1, step=0.05, label="Hide below",
                          density="compact", hide_details=True, raw_attrs=['data-testid="threshold"'])
                with v.VRow(dense=True, no_gutters=True, classes="mt-1"):
                    v.VSelect(v_model=("ts_revert",), items=("ts_regions",), label="Region", density="compact",
                              hide_details=True)
                    v.VBtn("Revert to AI", click=(self.revert, "[ts_revert]"), size="small", classes="ml-1 mt-1",
                          raw_attrs=['data-testid="revert"'])
                v.VBtn("Save label map", click=self.export_labelmap, size="small", classes="mt-2 mr-1",
                       raw_attrs=['data-testid="export-labels"'])
                v.VBtn("DICOM SEG + SR", click=self.export_dicom, size="small", classes="mt-2", raw_attrs=['data-testid="export-dicom"'])
                with html.Div(v_for="item in ts_exported", classes="text-caption"):
                    html.A("{{ item.path }}", href=("item.url",), v_if="item.url", download=True)
                    html.Span("{{ item.path }}", v_if="!item.url")

    def _followup_card(self, v, html) -> None:
        with v.VCard(title="Follow-up", classes="mb-2", density="compact", v_if="ts_has_result"):
            with v.VCardText():
                v.VTextField(v_model=("ts_patient",), label="Patient", density="compact", hide_details=True)
                v.VTextField(v_model=("ts_visit_date",), label="Visit date (YYYY-MM-DD)", density="compact",
                             hide_details=True, classes="mt-1", raw_attrs=['data-testid="visit-date"'])
                v.VBtn("Add visit", click=(self.add_visit, "[ts_patient, ts_visit_date]"), size="small", classes="mt-2",
                      raw_attrs=['data-testid="add-visit"'])
                v.VDataTable(items=("ts_timeline",), headers=("ts_timeline_headers",), density="compact",
                             hide_default_footer=True, v_if="ts_timeline.length", raw_attrs=['data-testid="timeline"'])
                html.Img(src=("ts_chart",), v_if="ts_chart", style="width: 100%")
                html.Div("Categories: RANO 2.0, imaging only, needs clinical confirmation.", classes="text-caption")
