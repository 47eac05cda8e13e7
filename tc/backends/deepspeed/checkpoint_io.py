"""DeepSpeed checkpoint folders: ``checkpoint_<step>.ds/`` written by the engine (staged, then renamed
into place), each with a consolidated single-file tc checkpoint beside it that the other backends load,
and read back safely (DeepSpeed unpickles its own files, so anything pickling other classes is refused
first). Every rank keeps its own RNG state in the folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.backends.deepspeed.env import fp32, import_deepspeed, quiet
from tc.core import checkpoint
from tc.core.errors import CheckpointError, first_line

if TYPE_CHECKING:
    import torch

    from tc.backends.deepspeed.backend import DeepSpeedBackend
    from tc.backends.deepspeed.runner import DeepSpeedRunner

CLIENT_KEY = "tc"
"""Namespace of tc's state inside DeepSpeed's model-states file (its own keys sit at the top level)."""
DS_DIR_KEY = "deepspeed_checkpoint"
"""Marks a state read from a DeepSpeed directory: the runner then restores optimizer state from it."""
RNG_FILE = "tc_rng_rank{rank}.pt"
DS_PICKLED_CLASSES = frozenset({
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
})
"""The only classes DeepSpeed's own checkpoint files pickle; anything else is refused before loading,
because DeepSpeed reads its files with ``weights_only=False``."""


def model_states_file(tag_dir: Path) -> Path:
    """Rank 0's model-states file: ``mp_rank_00_...`` (stages 0-2) or ``zero_pp_rank_0_...`` (stage 3)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (tag_dir / name).is_file():
            return tag_dir / name
    raise CheckpointError(f"{tag_dir}: not a DeepSpeed checkpoint (no mp_rank_00_model_states.pt)")


def optimizer_files(tag_dir: Path) -> list[Path]:
    return sorted(tag_dir.glob("*_optim_states.pt"))


def refuse_pickled_code(tag_dir: Path) -> None:
    """DeepSpeed loads its files with weights_only=False: refuse any file that pickles other classes."""
    import torch

    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is None:  # torch < 2.5: nothing to scan with; DeepSpeed 0.19 needs newer torch anyway
        return
    for path in sorted(tag_dir.glob("*.pt")):
        try:
            unsafe = set(scan(str(path)))
        except Exception as exc:
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({first_line(exc)})") from None
        if unsafe - DS_PICKLED_CLASSES:
            raise CheckpointError(f"{path}: refusing to load: the file pickles code "
                                  f"({sorted(unsafe - DS_PICKLED_CLASSES)[0]}), not just tensors")


def read_model_states(tag_dir: Path) -> dict[str, Any]:
    import torch

    path = model_states_file(tag_dir)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt DeepSpeed checkpoint ({first_line(exc)})") from None


def consolidated_weights(tag_dir: Path, states: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Full fp32 model weights under the module's own keys, read from a DeepSpeed directory.

    ZeRO stages keep the exact fp32 master weights partitioned in the optimizer files; DeepSpeed's
    zero_to_fp32 stitches them back together without a process group. Stage 0 keeps the whole module
    in the model-states file."""
    if not optimizer_files(tag_dir):
        return {k: fp32(v) for k, v in states["module"].items()}
    import_deepspeed()
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        with quiet():
            state = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    except Exception as exc:
        raise CheckpointError(f"{tag_dir}: cannot consolidate ZeRO weights ({first_line(exc)})") from None
    order = [k for k in states.get("module", {}) if k in state]  # the module's own key order
    return {k: fp32(state[k]).clone() for k in [*order, *(k for k in state if k not in set(order))]}


def save_dir(backend: DeepSpeedBackend, runner: DeepSpeedRunner, path: Path, extra: dict[str, Any]) -> None:
    """``path`` (a ``.ds`` directory) from ``engine.save_checkpoint``, then ``path.with_suffix('.pt')``.

    DeepSpeed writes into a staging folder that rank 0 renames into place once every rank finished,
    so a crash never leaves a half-written checkpoint under a real name. Every rank stores its own RNG
    state; the consolidated file (fp32 weights read back from the directory) is written by rank 0."""
    path = Path(path)
    staging = path.parent / f".{path.name}.staging"
    if backend.ranks.is_main:
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a crash mid-save
    backend.barrier()
    state = {k: v for k, v in extra.items() if k != "rng"}
    with quiet():
        runner.engine.save_checkpoint(str(staging), tag=path.name, client_state={CLIENT_KEY: state},
                                      save_latest=False)
    rng_file = staging / path.name / RNG_FILE.format(rank=backend.ranks.rank)
    checkpoint.atomic_save({"rng": extra.get("rng")}, rng_file)
    backend.barrier()
    if backend.ranks.is_main:
        tag_dir = staging / path.name
        weights = consolidated_weights(tag_dir, read_model_states(tag_dir))
        shutil.rmtree(path, ignore_errors=True)  # same step saved again (e.g. after a resume)
        os.replace(tag_dir, path)
        shutil.rmtree(staging, ignore_errors=True)
        runner.remember_weights(weights)
        single = {"model": weights, **runner.scheduler_state(), **extra}
        checkpoint.atomic_save(single, path.with_suffix(".pt"))
    backend.barrier()


def load_dir(path: Path, rank: int) -> dict[str, Any]:
    """A DeepSpeed directory: weights consolidated, tc state, rank ``rank``'s RNG, and a marker
    (``DS_DIR_KEY``) that lets the runner restore optimizer state through the engine."""
    refuse_pickled_code(path)
    states = read_model_states(path)
    client = states.get(CLIENT_KEY) or {}
    written_by = {"path": str(path), "ranks": len(optimizer_files(path)) or None,
                  "stage": (states.get("ds_config") or {}).get("zero_optimization", {}).get("stage")}
    state = {**client, "model": consolidated_weights(path, states), DS_DIR_KEY: written_by}
    rng_file = path / RNG_FILE.format(rank=rank)
    if rng_file.is_file():
        import torch

        state["rng"] = torch.load(rng_file, map_location="cpu", weights_only=True)["rng"]
    if "lr_scheduler" in states and states["lr_scheduler"] is not None:
        state["lr_scheduler"] = states["lr_scheduler"]
    return state
