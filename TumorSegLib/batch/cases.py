"""The cases of a cohort: a folder (one sub-folder per case: four image files, or a DICOM study) or a CSV manifest
(case id, four paths, optional visit date). Problems with one case are kept with it (the batch records it as
failed and goes on); problems with the whole input stop before any work."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..sequences import IMAGE_SUFFIXES, SEQUENCES, sequence_files

__all__ = ["BatchCase", "discover_cases", "MANIFEST_COLUMNS"]

# Manifest columns: a case id, the four sequences (empty = missing), or a DICOM study folder instead of them.
MANIFEST_COLUMNS = ("case_id", *SEQUENCES, "study", "visit_date")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class BatchCase:
    """One case to segment: its image files by sequence, or a DICOM study folder; ``problem`` says why it
    cannot run (it is then recorded as failed with that message, without running)."""

    case_id: str
    files: dict[str, str] = field(default_factory=dict)
    study: str | None = None
    visit_date: str | None = None
    problem: str | None = None

    def request(self) -> dict:
        """What this case's result depends on, besides the options (the journal compares it on a rerun)."""
        return {"files": dict(sorted(self.files.items())), "study": self.study}


def discover_cases(source: Path) -> list[BatchCase]:
    """The cases of a folder or a ``.csv`` manifest, in a stable order.

    Raises:
        ValueError: the input cannot be read as a cohort at all (no cases, a manifest without its columns,
            duplicate case ids), saying what to fix.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: not found; give a folder of cases or a CSV manifest")
    cases = _from_manifest(source) if source.is_file() else _from_folder(source)
    if not cases:
        raise ValueError(f"{source}: no cases found (expect one folder per case with its four images, e.g. "
                         f"CASE/CASE_t1.nii.gz … CASE_flair.nii.gz, a DICOM study per folder, or a CSV manifest)")
    seen: dict[str, int] = {}
    for case in cases:
        seen[case.case_id] = seen.get(case.case_id, 0) + 1
    duplicates = sorted(key for key, count in seen.items() if count > 1)
    if duplicates:
        raise ValueError(f"{source}: case ids appear more than once: {', '.join(duplicates)}; make them unique")
    return cases


def _from_folder(folder: Path) -> list[BatchCase]:
    cases = []
    for case_folder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        case_id = _case_id(case_folder.name)
        names = [p.name for p in case_folder.iterdir() if p.is_file()]
        if any(name.lower().endswith(IMAGE_SUFFIXES) for name in names):
            try:
                cases.append(BatchCase(case_id, sequence_files(case_folder)))
            except ValueError as error:
                cases.append(BatchCase(case_id, problem=str(error)))
        elif any(p.is_file() for p in case_folder.rglob("*")):
            cases.append(BatchCase(case_id, study=str(case_folder)))  # DICOM: classified when it runs
        else:
            cases.append(BatchCase(case_id, problem=f"{case_folder}: empty folder"))
    return cases


def _from_manifest(manifest: Path) -> list[BatchCase]:
    if manifest.suffix.lower() != ".csv":
        raise ValueError(f"{manifest}: a manifest must be a .csv file (columns {', '.join(MANIFEST_COLUMNS)})")
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        if "case_id" not in columns or not (columns & {*SEQUENCES, "study"}):
            raise ValueError(f"{manifest}: the manifest needs a case_id column and the image columns "
                             f"({', '.join(SEQUENCES)}) or a study column; it has {', '.join(sorted(columns)) or 'none'}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    return [_manifest_case(row, manifest, number) for number, row in enumerate(rows, start=2)]


def _manifest_case(row: dict, manifest: Path, line: int) -> BatchCase:
    if not row.get("case_id"):
        raise ValueError(f"{manifest} line {line}: no case_id; give every row one")
    case_id = _case_id(row["case_id"], where=f"{manifest} line {line}")
    base = manifest.parent

    def resolve(value: str) -> str:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)

    files = {key: resolve(row[key]) for key in SEQUENCES if row.get(key)}
    study = resolve(row["study"]) if row.get("study") else None
    visit_date, problem = row.get("visit_date") or None, None
    if visit_date:
        try:
            date.fromisoformat(visit_date)
        except ValueError:
            problem = f"{manifest} line {line}: visit_date {visit_date!r} is not YYYY-MM-DD"
    missing = [f"{key} {path}" for key, path in [*files.items(), *([("study", study)] if study else [])]
               if not Path(path).exists()]
    if missing:
        problem = f"{manifest} line {line}: not found: {'; '.join(missing)}"
    elif study and files:
        problem = f"{manifest} line {line}: give the image files or a study, not both"
    elif not study and not (files.keys() & {"t1c", "flair"}):
        problem = f"{manifest} line {line}: needs at least a t1c or a flair image"
    return BatchCase(case_id, files, study, visit_date, problem)


def _case_id(name: str, where: str = "") -> str:
    """Case ids name output folders: letters, digits, '.', '_' and '-' only (others become '_')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()).lstrip("._-")
    if not cleaned or not _SAFE_ID.match(cleaned):
        raise ValueError(f"{where or name}: case id {name!r} has no usable characters")
    return cleaned
