"""The child-process runner, with plain Python programs: progress, errors, cancel of a process tree."""

import os
import sys
import time

import pytest

from TumorSegLib.scene.process import ProcessRunner, parse_progress


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("line, expected", [
    ("[progress  42%] inference pass 2/6", (0.42, "inference pass 2/6")),
    ("[progress 100%] done", (1.0, "done")),
    ("[progress   0%] reading images", (0.0, "reading images")),
    ("loading 22 training cases", None),
    ("progress 42%", None),
])
def test_progress_lines_are_parsed(line, expected):
    assert parse_progress(line) == expected


def test_progress_streams_while_the_process_runs():
    runner = ProcessRunner(python(
        "import time\nfor p in (10, 50, 90):\n    print(f'[progress {p:3d}%] step {p}', flush=True)\n    time.sleep(0.3)"))
    runner.start()
    seen = []
    state = runner.poll()
    while state.running:
        time.sleep(0.05)
        state = runner.poll()
        if state.new_lines:
            seen.append(state.progress)
    state = runner.poll()
    assert state.return_code == 0 and state.progress == 0.9 and state.step == "step 90"
    assert seen[0] < 0.9  # progress arrived before the end, not all at once


def test_a_failing_command_surfaces_its_error_text():
    runner = ProcessRunner(python("import sys\nprint('working')\nprint('tumorseg segment: error: T2 is not on the same "
                                  "voxel grid', file=sys.stderr)\nsys.exit(2)"))
    runner.start()
    state = runner.wait(timeout=30)
    assert state.return_code == 2
    assert "T2 is not on the same voxel grid" in runner.error_text()


def test_cancel_kills_the_process_and_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n")
    runner = ProcessRunner(python(parent_code))
    runner.start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child process did not start"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    runner.cancel(grace_s=2)
    assert runner.poll().return_code is not None
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the grandchild survived the cancel"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = open(f"/proc/{pid}/status").read() if os.path.exists(f"/proc/{pid}/status") else ""
    return "State:\tZ" not in status  # a zombie has exited and only waits to be reaped


def test_a_runner_starts_only_once():
    runner = ProcessRunner(python("pass"))
    runner.start()
    runner.wait(timeout=30)
    with pytest.raises(RuntimeError, match="already started"):
        runner.start()


def test_environment_goes_to_the_child_only():
    runner = ProcessRunner(python("import os; print(os.environ['TUMORSEG_TEST_FLAG'])"),
                           env={"TUMORSEG_TEST_FLAG": "child-only"})
    runner.start()
    runner.wait(timeout=30)
    assert list(runner.output) == ["child-only"]
    assert "TUMORSEG_TEST_FLAG" not in os.environ
