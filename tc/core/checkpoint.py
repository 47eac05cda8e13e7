"""Checkpoint files and the policies for loading them, shared by every backend.

Files are written atomically (temporary file, fsync, rename) so a crash or a full disk never leaves a
half-written checkpoint under a real name, and read with ``weights_only=True`` so a pickle payload is
refused instead of executed. The policies (which parts of a checkpoint to apply, how strictly) are
applied here once, whatever backend wrote or reads the state.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tc.core.errors import CheckpointError

FORMAT = "tc-checkpoint"
PARTS = ("model", "optimizer", "lr_scheduler", "global_step", "rng", "dataloader")
NAME = re.compile(r"^checkpoint_(\d+)(\.[A-Za-z0-9]+)$")


def checkpoint_name(step: int, suffix: str = ".pt") -> str:
    return f"checkpoint_{step}{suffix}"


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """torch.save ``obj`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (OSError, RuntimeError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        cause = _os_error(exc)
        if cause is None:  # a RuntimeError that is not an I/O failure: a bug, keep its traceback
            raise
        raise CheckpointError(f"{path}: could not write checkpoint ({cause.strerror or cause}); "
                              "earlier checkpoints are untouched") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_first_line(exc)})") from None
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
    reason = detail.group(0) if detail else _first_line(exc)
    return f"{path}: not a torch checkpoint file (the weights-only reader stopped: {reason})"


def _first_line(exc: BaseException) -> str:
    """The first sentence of ``exc``'s message: torch appends paragraphs of advice to its errors."""
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", str(exc).strip()).splitlines()
    if not text or not text[0].strip():
        return type(exc).__name__
    return text[0].split(". ")[0].strip().rstrip(".")[:200]


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


def parse_parts(spec: str) -> set[str]:
    """``"model,optimizer"`` or ``"all"`` -> the set of parts; unknown names are a clear error."""
    names = {p.strip() for p in spec.split(",") if p.strip()}
    if not names or names == {"all"}:
        return set(PARTS)
    unknown = sorted(names - set(PARTS))
    if unknown:
        raise CheckpointError(
            f"load_checkpoint_states: unknown part {unknown[0]!r} (valid: {', '.join(PARTS)}, all)"
        )
    return names


@dataclass
class LoadReport:
    """How a model state dict matched the model: what was skipped or left freshly initialised."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def match_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict, LoadReport]:
    """Split ``state`` into what fits ``model`` and a report of what does not."""
    own = model.state_dict()
    report = LoadReport()
    fitting = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            fitting[key] = value
    report.missing = [k for k in own if k not in state]
    return fitting, report


def apply_model_state(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    strict: bool,
    source: Path,
    labels: tuple[list[str] | None, list[str] | None] = (None, None),
) -> LoadReport:
    """Load ``state`` into ``model``; strict mode refuses any missing, unexpected or misshapen key."""
    fitting, report = match_state(model, state)
    if strict and not report.clean:
        raise CheckpointError(f"{source}: {describe_mismatch(report, labels)}; "
                              "use --disable-strict-checkpoint-loading to load what fits")
    if not fitting:
        raise CheckpointError(f"{source}: no tensor in the checkpoint fits this model (another architecture?)")
    model.load_state_dict(fitting, strict=False)
    return report


def describe_mismatch(report: LoadReport, labels: tuple[list[str] | None, list[str] | None]) -> str:
    bits = []
    if report.mismatched:
        key, theirs, ours = report.mismatched[0]
        bits.append(f"shape mismatch for {key}: checkpoint {list(theirs)} vs model {list(ours)}")
        ckpt_labels, model_labels = labels
        if ckpt_labels is not None and model_labels is not None and len(ckpt_labels) != len(model_labels):
            bits[-1] += f" (checkpoint has {len(ckpt_labels)} labels, model has {len(model_labels)})"
        if len(report.mismatched) > 1:
            bits[-1] += f" and {len(report.mismatched) - 1} more"
    if report.missing:
        bits.append(f"missing keys: {_few(report.missing)}")
    if report.unexpected:
        bits.append(f"unexpected keys: {_few(report.unexpected)}")
    return "; ".join(bits)


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
