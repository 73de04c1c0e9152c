"""The library's shape, checked: small files and functions, data flowing one way, Slicer only in scene/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "TumorSegLib"
MAX_FILE_LINES = 400
MAX_MODULE_FILE_LINES = 250
MAX_FUNCTION_LINES = 60
# Each part of the library by layer: a part may import only parts of its own layer or below (never upward),
# so data flows one way: volumes → arrays with geometry → probabilities → labels → measurements → nodes/files.
LAYERS = {
    "labels": 0, "sequences": 0, "volume": 0, "options": 0, "version": 0, "network": 0, "memory": 0,
    "geometry": 1, "atlas": 1, "qa": 1, "models": 1, "metrics": 1, "enhancement": 1, "intensity": 1, "provenance": 1,
    "support": 1,
    "registration": 2, "preprocessing": 2, "export": 2, "dicom": 2, "inference": 2, "postprocessing": 2,
    "clinical": 3, "uncertainty": 3, "calibration": 3, "synthetic": 3,
    "pipeline": 4, "training": 4, "longitudinal": 4,
    "evaluation": 5, "scene": 5, "outputs": 5, "report": 5,
    "cli": 6, "commands": 6, "web": 6, "batch": 6, "__main__": 6, "__init__": 6,
}
GUI_MODULES = {"slicer", "vtk", "qt", "ctk", "DICOMLib", "PyTorchUtils"}


def library_files():
    return sorted(LIBRARY.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (annotations only: not a dependency)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            inside |= {id(child) for child in ast.walk(node)}
    return inside


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(absolute module imported, at module level?) of every import in ``path``, TYPE_CHECKING ones left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    top_level = {id(node) for node in tree.body}
    package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
            found += [(name, id(node) in top_level) for name in names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
    return found


def part(module: str) -> str | None:
    """The library part (top-level module or sub-package) a module belongs to, or None outside the library."""
    pieces = module.split(".")
    return pieces[1] if pieces[0] == "TumorSegLib" and len(pieces) > 1 else ("__init__" if module == "TumorSegLib"
                                                                               else None)


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_file_is_over_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_FILE_LINES


def test_the_module_file_stays_thin():
    assert len((ROOT / "TumorSeg" / "TumorSeg.py").read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_FILE_LINES


def test_no_function_is_over_60_lines():
    long = []
    for path in [*library_files(), ROOT / "TumorSeg" / "TumorSeg.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long


def test_every_part_of_the_library_has_a_layer():
    parts = {part(module_name(path)) for path in library_files()}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in LAYERS"


def test_no_part_imports_a_part_above_it():
    upward = []
    for path in library_files():
        here = part(module_name(path))
        for imported, _ in imports_of(path):
            there = part(imported)
            if there is not None and there != here and LAYERS[there] > LAYERS[here]:
                upward.append(f"{module_name(path)} -> {imported}")
    assert not upward, upward


def test_there_is_no_import_cycle():
    modules = {module_name(path): path for path in library_files()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported, _ in imports_of(path):
            # "from .pkg import name" may name a sub-module or an attribute: keep the longest known module.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)  # a package's own __init__ re-exporting its modules is not a cycle
        graph[name] = targets

    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_only_the_scene_package_imports_slicer_vtk_or_qt_and_never_at_import_time():
    wrong = []
    for path in library_files():
        for imported, at_module_level in imports_of(path):
            if imported.split(".")[0] in GUI_MODULES:
                if part(module_name(path)) != "scene" or at_module_level:
                    wrong.append(f"{module_name(path)} imports {imported}")
    assert not wrong, wrong


_TYPE_NAMES = {"str", "int", "float", "bool", "bytes", "list", "dict", "tuple", "set", "type", "object"}


def _looks_like_type(node) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):
        return node.id in _TYPE_NAMES or node.id[:1].isupper()
    if isinstance(node, ast.Attribute):
        return node.attr[:1].isupper() or node.attr == "PathLike"
    if isinstance(node, ast.Subscript):
        return _looks_like_type(node.value)
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and _looks_like_type(node.left)


def _runtime_type_unions(tree) -> list[int]:
    """Lines where ``X | Y`` of types is evaluated when the module loads (Python 3.10+ only): module-level and
    class-level statements and default values, annotations excepted (postponed by the future import)."""
    lines, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ClassDef):
            pending += node.body
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            values = [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
        elif isinstance(node, ast.AnnAssign):
            values = [node.value] if node.value is not None else []
        else:
            values = [node]
        for value in values:
            for item in ast.walk(value):
                if isinstance(item, ast.BinOp) and isinstance(item.op, ast.BitOr) and _looks_like_type(item.left) \
                        and _looks_like_type(item.right):
                    lines.append(item.lineno)
    return lines


def _annotation_unions(tree) -> bool:
    annotations = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations += [a.annotation for a in [*node.args.args, *node.args.kwonlyargs] if a.annotation]
            annotations += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
    return any(isinstance(item, ast.BinOp) and isinstance(item.op, ast.BitOr)
               for annotation in annotations for item in ast.walk(annotation))


def test_the_library_loads_in_slicer_58s_python_39():
    # Slicer 5.8 runs Python 3.9 (5.10: 3.12); its GUI process imports the module file and most of the library.
    wrong = []
    for path in [*library_files(), ROOT / "TumorSeg" / "TumorSeg.py"]:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, feature_version=(3, 9))  # 3.10+ syntax (match, parenthesised with) fails here
        if "from __future__ import annotations" not in text and _annotation_unions(tree):
            wrong.append(f"{path.relative_to(ROOT)}: 'X | Y' annotations need 'from __future__ import annotations'")
        wrong += [f"{path.relative_to(ROOT)}:{line}: a type union evaluated at import" for line in _runtime_type_unions(tree)]
    assert not wrong, wrong


def test_the_plain_session_parameters_match_the_modules_parameter_node():
    """The browser app and scripts use SessionParameters; the Slicer module its parameter node: same fields,
    same literal defaults (the computed ones come from the same options in both)."""
    from dataclasses import MISSING, fields

    from TumorSegLib.scene.parameters import SessionParameters

    tree = ast.parse((ROOT / "TumorSeg" / "TumorSeg.py").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "TumorSegParameterNode")
    module_fields = {item.target.id: item.value for item in node.body if isinstance(item, ast.AnnAssign)}
    plain = {f.name: f for f in fields(SessionParameters) if f.name != "parameterNode"}
    assert list(module_fields) == list(plain)
    for name, value in module_fields.items():
        if isinstance(value, ast.Constant):
            assert plain[name].default is not MISSING and plain[name].default == value.value, name
