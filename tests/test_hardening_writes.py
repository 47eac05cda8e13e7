"""Writes the system refuses (issue #33, round three): a read-only folder, a full disk, with the real ``tc``.

Every command that writes goes through ``tc.core.fs.atomic_writer`` (or ``write_errors``), which turns the
refusal into one line, ``<path>: cannot write (<reason>)``, exit 2, and leaves no staging file. A read-only
folder is ``chattr +i`` (file modes do not stop root); a full disk is a file-size limit (``RLIMIT_FSIZE``:
writes fail with EFBIG, as they fail with ENOSPC on a full disk; Python ignores SIGXFSZ).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import TC, refused, write

pytestmark = pytest.mark.cli

DOCUMENTED = {"write-read-only-folder", "write-disk-full"}
"""docs/errors.md rows tested here (section Outputs and writes, round three)."""

LIMIT = 100
"""Bytes a file may grow to under the simulated full disk: less than any output below."""
READ_ONLY, FULL = "Operation not permitted", "File too large"
TRAIN = "Naloxone\tB-Chemical\nreverses\tO\nclonidine\tB-Chemical\n.\tO\n\n" * 8
TEXTS = [{"id": "a", "text": "Aspirin."}, {"id": "b", "text": "Naloxone reverses clonidine. " * 12}]
"""Two documents: ``a`` fits under LIMIT as a BRAT pair, ``b`` does not (so a BRAT folder fails part way)."""

Build = Callable[[Path, Path, Path], tuple[list[str], Path, Callable[[str], str]]]
"""``(model_dir, tmp_path, folder) -> (tc argv, the folder to make unwritable, the message for a reason)``."""


def documents(tmp: Path) -> str:
    return str(write(tmp / "in.jsonl", "".join(json.dumps(r) + "\n" for r in TEXTS)))


def predict_into(name: str, *extra: str, named: str | dict[str, str] | None = None) -> Build:
    """``tc predict -i in.jsonl -o FOLDER/name``; the message names ``FOLDER/named`` (default: ``name``;
    a dict: by reason)."""
    def build(model: Path, tmp: Path, folder: Path) -> tuple[list[str], Path, Callable[[str], str]]:
        argv = ["predict", "--model-dir", str(model), "-i", documents(tmp), "-o", str(folder / name), "-q", *extra]

        def message(reason: str) -> str:
            path = named.get(reason, name) if isinstance(named, dict) else named or name
            return f"{folder / path}: cannot write ({reason})"
        return argv, folder, message
    return build


def prepare(model: Path, tmp: Path, folder: Path) -> tuple[list[str], Path, Callable[[str], str]]:
    raw, out = write(tmp / "raw" / "train.tsv", TRAIN).parent, folder / "p"
    def message(reason: str) -> str:  # a read-only folder is caught by the up-front probe
        return (f"--output-dir: {out} is not writable ({reason})" if reason == READ_ONLY else
                f"{out / 'train.csv'}: cannot write ({reason})")
    return ["prepare", "token_cls", "--data-dir", str(raw), "--output-dir", str(out)], folder, message


WRITERS: dict[str, Build] = {
    "predict-jsonl": predict_into("o.jsonl", named="o.jsonl.partial"),
    "predict-pubtator": predict_into("o.pubtator", named="o.pubtator.partial"),
    "predict-bioc-xml": predict_into("o.xml"),
    "predict-bioc-json": predict_into("o.bioc.json"),
    "predict-brat": predict_into("b", "--output-format", "brat",  # the folder cannot be made; b does not fit
                                 named={READ_ONLY: "b/a.txt", FULL: "b/b.txt"}),
    "report": lambda m, t, f: (["report", str(m), "-o", str(f / "r.png")], f,
                               lambda reason: f"{f / 'r.png'}: cannot write ({reason})"),
    "prepare": prepare,
    "export": lambda m, t, f: (["export", "--model-dir", str(m), str(f / "e")], f,
                               lambda reason: f"{f / 'e'}: could not write the export ({reason})"),
    "calibrate": lambda m, t, f: (["calibrate", "--model-dir", str(m)], m,
                                  lambda reason: f"{m / 'calibration.json'}: cannot write ({reason})"),
}


def run(argv: list[str], cwd: Path, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``tc`` (as ``helpers.run_tc``), optionally under a ``preexec_fn`` (the file-size limit)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([TC, *argv], capture_output=True, text=True, env=env, cwd=cwd, preexec_fn=preexec,
                          timeout=600)


@contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """``folder`` read-only even for root (``chattr +i``), restored afterwards; skips where not permitted."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def full_disk() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` and its bytes, hidden ones included (a staging file would show)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_read_only_folder_is_one_line(writer: str, model_copy: Path, tmp_path: Path) -> None:
    """An output folder (the model directory for ``tc calibrate``) that refuses writes: one line, exit 2."""
    folder = tmp_path / "out"
    folder.mkdir()
    argv, locked, message = WRITERS[writer](model_copy, tmp_path, folder)
    before = snapshot(locked)
    with immutable(locked):
        proc = run(argv, tmp_path)
    assert refused(proc) == message(READ_ONLY)
    assert snapshot(locked) == before


@pytest.mark.parametrize("writer", list(WRITERS))
def test_full_disk_is_one_line_and_leaves_nothing_behind(writer: str, model_copy: Path, tmp_path: Path) -> None:
    """A write that fails part way (EFBIG, as ENOSPC): one line, exit 2, and the folder as it was: no
    staging file, no half output, no empty ``.partial``; a BRAT folder loses the pair it had written."""
    folder = tmp_path / "out"
    folder.mkdir()
    argv, target, message = WRITERS[writer](model_copy, tmp_path, folder)
    before = snapshot(target)
    assert refused(run(argv, tmp_path, full_disk)) == message(FULL)
    assert snapshot(target) == before
    assert not [p for p in target.rglob("*") if p.name.startswith(".") or p.name.endswith((".tmp", ".partial"))]
