"""The model directory and the disk: an unwritable or read-only model directory is refused up front, and a
disk that fills while checkpointing leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import SMALL, TC, TINY, Case, case_test, error_line, run_tc, tiny_run, write

from tc.core.checkpoint import load_file

CASES: dict[str, Case] = {
    "model-dir-not-writable": Case(tiny_run(lambda e: ["--model-dir", str(write(e.tmp / "file", "") / "run")]),
                                   lambda e: f"runconfig.model_dir: {e.tmp / 'file' / 'run'} is not writable "
                                             "(Not a directory)"),
}
DOCUMENTED = {*CASES, "model-dir-read-only", "disk-full-while-checkpointing"}
"""docs/errors.md rows tested here (section Model directory and disk)."""


test_bad_input_gives_one_clear_line = case_test(CASES)


@pytest.mark.cli
def test_model_dir_read_only(tmp_path: Path) -> None:
    """A real read-only directory (``chattr +i``; file modes do not stop root) is refused up front."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        proc = run_tc("run", "--config", str(TINY), "--model-dir", str(locked / "run"), *SMALL)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert proc.returncode == 2
    assert error_line(proc) == f"runconfig.model_dir: {locked / 'run'} is not writable (Operation not permitted)"


@pytest.mark.cli
def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(trained: Path, tmp_path: Path) -> None:
    """Resume from step 2 under a 2 MB file-size limit: writing checkpoint_4.pt fails with EFBIG
    (Python ignores SIGXFSZ), tc says so in one line, and checkpoint_2.pt still loads."""
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    before = (model_dir / "checkpoint_2.pt").read_bytes()

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([TC, "run", "--config", str(TINY), "--model-dir", str(model_dir), "--mode", "train", *SMALL,
                           "--set", "runconfig.max_steps=4"], capture_output=True, text=True, env=env,
                          preexec_fn=limit_file_size, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc) == (f"{model_dir / 'checkpoint_4.pt'}: could not write checkpoint (File too large); "
                                "earlier checkpoints are untouched")
    assert sorted(p.name for p in model_dir.glob("checkpoint_*")) == ["checkpoint_2.pt"]
    assert not [p for p in model_dir.iterdir() if p.name.endswith(".tmp")]
    assert (model_dir / "checkpoint_2.pt").read_bytes() == before
    assert load_file(model_dir / "checkpoint_2.pt")["global_step"] == 2
