"""What ``tc run`` shows while it trains (``tc/core/reporting.py``): a live progress bar on a terminal, and
on a pipe plain ``step N/M ... eta`` lines (never a bar's control codes into a log file).

The terminal is a real pseudo-terminal (``pty``), the program the real ``tc`` console script.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from helpers import ONE_THREAD, SMALL, TC, TINY, run_tc

STEPS = ("--set", "runconfig.max_steps=3", "--set", "runconfig.log_steps=1")


def read_until_exit(proc: subprocess.Popen[bytes], fd: int, timeout: float = 300) -> str:
    """Everything ``proc`` writes to the pseudo-terminal ``fd`` until it exits (bounded by ``timeout``)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.cli
def test_a_terminal_gets_a_progress_bar_and_a_pipe_plain_step_lines(tmp_path: Path) -> None:
    args = ("run", "--config", str(TINY), *SMALL, *STEPS, *ONE_THREAD)
    piped = run_tc(*args, "--model-dir", str(tmp_path / "piped"), check=True)
    shown = piped.stdout + piped.stderr
    assert re.search(r"step 3/3 epoch \d+\.\d\d loss \d+\.\d{4} lr \S+ \d+ sent/s eta \d+s", shown), shown
    assert "\x1b[" not in shown  # no terminal control codes in a pipe

    leader, follower = pty.openpty()
    proc = subprocess.Popen([TC, *args, "--model-dir", str(tmp_path / "tty")], stdin=follower, stdout=follower,
                            stderr=follower, env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(follower)
    try:
        screen = read_until_exit(proc, leader)
    finally:
        os.close(leader)
    assert proc.returncode == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"train\s.*3/3\s+epoch \d+\.\d\d loss \d+\.\d{4}", plain), plain  # the bar, at its end
    assert "step 3/3" not in plain  # the bar replaces the plain lines
    assert (tmp_path / "tty" / "checkpoint_3.pt").is_file()
