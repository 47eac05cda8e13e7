"""Checkpoint files on disk: names, the atomic write, the safe read, listing and retention.

Files are written through ``tc.core.fs.atomic_writer`` (temporary file, fsync, rename), so a crash or a
full disk never leaves a half-written checkpoint under a real name, and read with ``weights_only=True``,
so a pickle payload is refused instead of executed.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from tc.core.errors import CheckpointError, first_line
from tc.core.fs import atomic_writer

FORMAT = "tc-checkpoint"
NAME = re.compile(r"^checkpoint_(\d+)(\.[A-Za-z0-9]+)$")


def checkpoint_name(step: int, suffix: str = ".pt") -> str:
    return f"checkpoint_{step}{suffix}"


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """torch.save ``obj`` to ``path`` so that ``path`` is either the old file or the complete new one.

    A failed write (disk full, file size limit) is a CheckpointError; earlier checkpoints are untouched."""
    path = Path(path)
    try:
        with atomic_writer(path, "wb") as handle:
            torch.save(obj, handle)
    except (OSError, RuntimeError) as exc:
        cause = _os_error(exc)
        if cause is None:  # a RuntimeError that is not an I/O failure: a bug, keep its traceback
            raise
        raise CheckpointError(f"{path}: could not write checkpoint ({cause.strerror or cause}); "
                              "earlier checkpoints are untouched") from None


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: torch's zip writer reports a failed write (disk full, file size
    limit) as a RuntimeError raised while handling the OSError, so look along the context chain."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        if isinstance(current, OSError):
            return current
        chain.append(current)
        current = current.__cause__ or current.__context__
    return None


def load_file(path: Path) -> dict[str, Any]:
    """Load a tc checkpoint file safely; corrupt, truncated or unsafe files raise CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a tc checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        with warnings.catch_warnings():  # a plain or damaged pickle warns about its protocol before failing
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_unpickling_message(path, exc)) from None
    except Exception as exc:  # damaged bytes surface as almost any exception type inside torch.load
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({first_line(exc, sentence=True)})") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path}: not a tc checkpoint (no 'model' state)")
    return obj


def _unpickling_message(path: Path, exc: pickle.UnpicklingError) -> str:
    """Tell a file that pickles code (refused, never run) from one that is no torch file at all."""
    text = str(exc)
    culprit = re.search(r"GLOBAL ([\w.]+)", text)
    if culprit or "add_safe_globals" in text:
        named = f" (it references {culprit.group(1)})" if culprit else ""
        return f"{path}: refusing to load: the file contains pickled code, not just tensors{named}"
    detail = re.search(r"Unsupported operand \d+", text)
    reason = detail.group(0) if detail else first_line(exc, sentence=True)
    return f"{path}: not a torch checkpoint file (the weights-only reader stopped: {reason})"


def list_checkpoints(model_dir: Path, suffixes: Iterable[str] = (".pt",)) -> list[tuple[int, Path]]:
    """Checkpoints in ``model_dir`` with one of ``suffixes``, oldest first."""
    found = []
    wanted = set(suffixes)
    if not Path(model_dir).is_dir():
        return []
    for entry in Path(model_dir).iterdir():
        m = NAME.match(entry.name)
        if m and m.group(2) in wanted:
            found.append((int(m.group(1)), entry))
    return sorted(found)


def prune(model_dir: Path, keep: int, suffixes: Iterable[str]) -> None:
    """Delete all but the newest ``keep`` steps' checkpoints (every file or backend folder of a step)."""
    found = list_checkpoints(model_dir, suffixes)
    kept = sorted({step for step, _ in found})[-keep:]
    for step, path in found:
        if step in kept:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
