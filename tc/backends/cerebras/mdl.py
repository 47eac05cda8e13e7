"""cstorch's own checkpoint files (``.mdl``, HDF5 that only cstorch reads): written atomically, read
safely, and pruned with their ``.pt`` twins.

Every ``.mdl`` gets a weights-only tc ``.pt`` beside it (written by the backend through the core's
``atomic_save``), so other backends and environments (no cstorch, newer torch) load the very weights
cstorch wrote, and tc reads that twin instead of unpickling the ``.mdl``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tc.backends.cerebras.state import materialize
from tc.core import checkpoint
from tc.core.errors import CheckpointError, first_line
from tc.core.fs import fsync_dir

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def write_mdl(state: dict[str, Any], path: Path) -> None:
    """``cstorch.save`` to a fresh temporary name beside ``path``, then rename, so ``path`` is never half
    written. (``tc.core.fs.atomic_writer`` hands out an open file, but cstorch writes only to a path
    that does not exist yet; this is the same temporary-name-then-rename, for such a writer.)"""
    import cerebras.pytorch as cstorch

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        cstorch.save(state, str(staging / path.name))
        os.replace(staging / path.name, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise CheckpointError(f"{path}: could not write checkpoint ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_mdl(path: Path) -> dict[str, Any]:
    """A checkpoint cstorch wrote: its tc ``.pt`` twin when there is one, else the HDF5 file itself."""
    import cerebras.pytorch as cstorch

    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    beside = path.with_suffix(".pt")
    if beside.exists():  # tc writes a weights-only twin of every .mdl: read that, never unpickle
        return checkpoint.load_file(beside)
    with path.open("rb") as f:
        if f.read(8) != HDF5_SIGNATURE:  # cstorch.load falls back to an unsafe torch.load otherwise
            raise CheckpointError(f"{path}: refusing to load: not an HDF5 cstorch checkpoint")
    try:
        state = materialize(cstorch.load(str(path)))
    except Exception as exc:  # cstorch raises ValueError, OSError or RuntimeError for bad files
        raise CheckpointError(f"{path}: not a readable cstorch checkpoint ({first_line(exc)})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a tc checkpoint (no 'model' state)")
    return state


def to_host(state: dict[str, Any], csx: bool) -> dict[str, Any]:
    """Host copies of a state dict's tensors; on CSX fetched by a cstorch.save/load round trip."""
    import torch

    if not csx:
        return torch.utils._pytree.tree_map_only(torch.Tensor, lambda t: t.detach().cpu().clone(), state)
    import cerebras.pytorch as cstorch

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "state.mdl")
        cstorch.save(state, path)
        return materialize(cstorch.load(path))


def prune_orphans(model_dir: Path) -> None:
    """Delete ``.mdl`` files whose ``.pt`` twin the loop's retention policy already removed."""
    for _, mdl in checkpoint.list_checkpoints(model_dir, (".mdl",)):
        if not mdl.with_suffix(".pt").exists():
            with contextlib.suppress(OSError):
                mdl.unlink()
