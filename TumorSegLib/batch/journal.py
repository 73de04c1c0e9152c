"""The batch journal: one JSON line per finished case (done with its outputs' SHA-256, or failed with why),
appended and synced by the client as each case ends. A case counts as done only while its outputs still match
their checksums and it was made from the same inputs and options, so a rerun skips exactly the finished work."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..provenance import file_sha256

__all__ = ["JOURNAL_FILE", "Journal", "checksums"]

JOURNAL_FILE = "batch_journal.jsonl"


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by path relative to it."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


class Journal:
    """The journal of the batch writing into ``output`` (its latest entry per case)."""

    def __init__(self, output: Path):
        self.output = Path(output)
        self.path = self.output / JOURNAL_FILE
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short when the client was killed while writing it
                self.entries[entry["case_id"]] = entry

    def record(self, entry: dict) -> None:
        """Append one case's entry (flushed to disk before returning)."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries[entry["case_id"]] = entry

    def status(self, case_id: str, request: dict) -> str:
        """``done`` (verified), ``failed`` (last attempt failed, same request) or ``todo``."""
        entry = self.entries.get(case_id)
        if entry is None or entry.get("request") != request:
            return "todo"
        if entry["status"] == "failed":
            return "failed"
        folder = self.output / case_id
        for name, digest in entry.get("outputs", {}).items():
            path = folder / name
            if not path.is_file() or file_sha256(path) != digest:
                return "todo"  # changed or removed since: made again
        return "done"
