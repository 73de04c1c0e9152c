"""Running the segmentation command line in a child process, with progress and cancel.

Slicer keeps its GUI responsive by running inference in a separate ``PythonSlicer`` process on
temporary files; this module is that runner, free of Slicer and Qt so plain Python tests drive it.
The child starts in its own process group so that cancel stops it and every process it started.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["PROGRESS_PATTERN", "parse_progress", "ProcessState", "ProcessRunner"]

# The command line prints "[progress NN%] step" lines (see TumorSegLib.cli).
PROGRESS_PATTERN = re.compile(r"^\[progress\s+(\d{1,3})%\]\s*(.*)$")


def parse_progress(line: str) -> tuple[float, str] | None:
    """(fraction 0–1, step) of a progress line, or ``None`` for any other line."""
    match = PROGRESS_PATTERN.match(line.strip())
    if not match:
        return None
    return min(int(match.group(1)), 100) / 100.0, match.group(2)


@dataclass
class ProcessState:
    """What :meth:`ProcessRunner.poll` reports."""

    running: bool
    progress: float
    step: str
    return_code: int | None
    new_lines: list[str]


class ProcessRunner:
    """Start a command, read its output without blocking, report progress, cancel the whole tree.

    Args:
        command: program and arguments.
        env: extra environment variables for the child only (the parent's environment is not changed).
        cwd: working folder of the child.
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None):
        self.command = list(command)
        self.env = dict(env or {})
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.progress = 0.0
        self.step = ""
        self.output: deque[str] = deque(maxlen=2000)
        self.errors: deque[str] = deque(maxlen=200)
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._readers: list[threading.Thread] = []
        self.cancelled = False

    def start(self) -> None:
        """Start the child process (in a new process group/session)."""
        if self.process is not None:
            raise RuntimeError("this runner was already started; make a new one for another run")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        options: dict = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        bufsize=1, env=env, cwd=self.cwd, **options)
        for name, stream in (("out", self.process.stdout), ("err", self.process.stderr)):
            reader = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, name: str, stream) -> None:
        for line in iter(stream.readline, ""):
            self._lines.put((name, line.rstrip("\n")))
        stream.close()

    def poll(self) -> ProcessState:
        """Collect output printed since the last call; never blocks."""
        if self.process is None:
            raise RuntimeError("start() the runner before polling it")
        new_lines = []
        return_code = self.process.poll()
        if return_code is not None:
            for reader in self._readers:  # the process is gone: its pipes end soon
                reader.join(timeout=5)
        while True:
            try:
                name, line = self._lines.get_nowait()
            except queue.Empty:
                break
            if name == "err":
                self.errors.append(line)
                continue
            self.output.append(line)
            new_lines.append(line)
            progress = parse_progress(line)
            if progress:
                self.progress, self.step = progress
        return ProcessState(return_code is None, self.progress, self.step, return_code, new_lines)

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> ProcessState:
        """Poll until the process ends (or ``timeout`` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self.poll()
        while state.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(interval)
            state = self.poll()
        return state

    def error_text(self, lines: int = 20) -> str:
        """The last lines the child wrote to standard error (what to show the user on failure)."""
        messages = [line for line in self.errors if line.strip()]
        errors = [line for line in messages if "error" in line.lower()]
        return "\n".join((errors or messages)[-lines:])

    def cancel(self, grace_s: float = 3.0) -> None:
        """Stop the child and everything it started: terminate, then kill after ``grace_s`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.cancelled = True
        if os.name == "posix":
            group = os.getpgid(self.process.pid)
            os.killpg(group, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            try:  # children may outlive the leader; the group is killed either way
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True, check=False)
        self.process.wait(timeout=grace_s)

    @staticmethod
    def python_command(module_args: Sequence[str], python: str | None = None) -> list[str]:
        """``python -m TumorSegLib <args>`` with the given interpreter (default: this one)."""
        return [python or sys.executable, "-m", "TumorSegLib", *module_args]
