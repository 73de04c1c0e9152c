"""TumorSeg.py's logic class on a real MRML scene, with Slicer's Python-only GUI layers stubbed.

The Qt widget cannot run here. The module file is imported with small stand-ins for ``qt``,
``slicer.ScriptedLoadableModule`` and ``slicer.parameterNodeWrapper`` (storing values the way the real
wrapper does: strings as parameters, nodes as references named after the field), so every logic
method the widget calls runs against real MRML.
"""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from TumorSegLib import mrml

MODULE_FILE = Path(__file__).resolve().parents[2] / "TumorSeg" / "TumorSeg.py"


def _parameter_node_wrapper(cls):
    import slicer

    fields = dict(cls.__annotations__)
    defaults = {name: getattr(cls, name) for name in fields if hasattr(cls, name)}

    class Wrapped:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            for name, value in defaults.items():
                if not node.HasParameter(name):
                    setattr(self, name, value)

        def __getattr__(self, name):
            node = self.parameterNode
            kind = fields[name]
            kind = getattr(kind, "__origin__", kind)
            if isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode):
                return node.GetNodeReference(name)
            value = node.GetParameter(name)
            return value == "True" if kind is bool else value

        def __setattr__(self, name, value):
            node = self.parameterNode
            if isinstance(value, slicer.vtkMRMLNode) or value is None:
                node.SetParameter(name, "")
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                node.SetParameter(name, str(value))

    return Wrapped


@pytest.fixture
def module(slicer_app, monkeypatch):
    import slicer

    class Logic:
        def __init__(self):
            pass

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode("TumorSeg", "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
                node.SetSingletonTag("TumorSeg")
            return node

    class Base:
        def __init__(self, *args):
            pass

    stubs = {
        "qt": types.SimpleNamespace(QTimer=object),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=Base, ScriptedLoadableModuleWidget=Base,
            ScriptedLoadableModuleLogic=Logic, ScriptedLoadableModuleTest=Base),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            parameterNodeWrapper=_parameter_node_wrapper, Choice=lambda choices: ("Choice", tuple(choices))),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    spec = importlib.util.spec_from_file_location("TumorSeg", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_module_file_declares_title_category_and_citations(module):
    assert "Menze" in module.CITATIONS and "Bakas" in module.CITATIONS
    assert "brats18-segresnet8" in module._model_ids()


def test_logic_assigns_runs_shows_and_exports(module, slicer_app, synthetic_case, tmp_path):
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    assert parameters.modelId == "brats18-segresnet8-ensemble" and parameters.device == "auto"
    nodes = {key: mrml.add_volume_node(slicer_app.scene, volume, f"Patient7_{name}") for (key, volume), name in
             zip(synthetic_case.images.items(), ("T1_MPRAGE", "T1_POST_GD", "T2_TSE", "FLAIR_3D"))}
    logic.autoAssign(parameters, overwrite=False)
    assert [getattr(parameters, f"{k}Volume").GetID() for k in nodes] == [n.GetID() for n in nodes.values()]

    parameters.modelId = "brats18-segresnet8"
    parameters.device = "cpu"
    parameters.skullStrip = "off"  # the synthetic sample is skull-stripped; "auto" would decide the same
    run = logic.startRun(parameters)
    state = run.runner.wait(timeout=600)
    assert state.return_code == 0, run.error_message()
    summary = logic.finishRun(run, parameters)
    assert summary["model"] == "brats18-segresnet8"
    assert parameters.outputSegmentation.GetSegmentation().GetNumberOfSegments() == 3
    assert parameters.resultsTable.GetNumberOfRows() == 5

    composite = slicer_app.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    parameters.showUncertainty = True
    logic.showResults(parameters)
    assert composite.GetForegroundVolumeID() == parameters.uncertaintyVolume.GetID()

    parameters.patientId = "Patient 7"
    parameters.visitDate = "2024-03-01"
    chart = logic.addTimepoint(parameters)
    assert chart.GetNumberOfPlotSeriesNodes() == 3 and logic.tracker.table.GetNumberOfRows() == 1
    csv, png = logic.exportTimeline(str(tmp_path))
    assert csv.exists() and png.exists()

    written = logic.exportLabelmap(parameters, tmp_path / "edited.nii.gz")
    assert written.exists()
    # A reloaded scene has no watcher yet: restoreResults attaches one (once).
    logic._watchers.clear()
    logic.restoreResults(parameters)
    logic.restoreResults(parameters)
    assert list(logic._watchers) == [parameters.outputSegmentation.GetID()]
