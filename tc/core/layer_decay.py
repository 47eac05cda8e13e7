"""Layer-wise learning-rate decay (``optimizer.layer_decay``): one parameter group per depth of the model.

The ELECTRA/BEiT recipe: with decay d and L encoder layers the head trains at the peak lr, encoder layer i
(0-based) at lr * d**(L - i) and the embeddings at lr * d**(L + 1), so the layers nearest the input, which
hold the most general pretrained features, move least. The core does not know any model's layout: a model
that supports the recipe says how deep each parameter is, by two members (duck-typed, no base class):

* ``num_layers: int``: L;
* ``layer_id(name) -> int``: 0 for the embeddings, i + 1 for encoder layer i, L + 1 for the head (and for
  anything above the encoder, e.g. a CRF's transitions).

A parameter of depth k gets ``lr_scale = d**(L + 1 - k)``. Every backend's schedule multiplies its lr at each
step by its group's ``lr_scale`` (``tc.backends.eager.build_scheduler``, cerebras's ``ScalePerParamLR``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tc.core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

LR_SCALE = "lr_scale"
"""The param-group key holding a group's factor on the scheduled lr (absent: 1.0)."""


class GroupLayoutError(CheckpointError):
    """Saved optimizer or schedule state laid out for other parameter groups (the checkpoint loader puts the
    file's name in front of the message)."""


def check_group_layout(state: dict[str, Any], part: str, groups: list[dict[str, Any]]) -> None:
    """``state`` (an optimizer's or LambdaLR's state dict) must have one entry per group of this run: torch
    refuses an optimizer with a traceback and truncates a schedule silently (the later groups keep their lr)."""
    saved = len(state.get("param_groups" if part == "optimizer" else "base_lrs", ()))
    if saved != len(groups):
        raise GroupLayoutError(f"its {part} state has {saved} parameter groups, this run has {len(groups)} "
                               "(optimizer.layer_decay differs from the run that wrote it); keep that layer_decay, "
                               "or load the weights only (--load-checkpoint-states model)")


def lr_scales(groups: list[dict[str, Any]]) -> list[float]:
    """Each group's ``lr_scale`` (1.0 where a group has none: every group without layer decay)."""
    return [float(g.get(LR_SCALE, 1.0)) for g in groups]


def layer_groups(model: torch.nn.Module, decay: float, weight_decay: float,
                 no_decay: tuple[str, ...]) -> list[dict[str, Any]]:
    """Parameter groups of ``model`` by depth, head first, then layer L-1 ... 0, then the embeddings; at each
    depth the weight-decayed matrices, then the rest. The layout depends only on the model's parameter
    names, so a checkpoint's optimizer state fits the same model again (exact resume)."""
    depth_of, layers = getattr(model, "layer_id", None), getattr(model, "num_layers", None)
    if not callable(depth_of) or not isinstance(layers, int):
        raise ConfigError(f"optimizer.layer_decay={decay}: the model ({type(model).__name__}) does not say how deep "
                          "its parameters are (num_layers and layer_id); use optimizer.layer_decay=1.0")
    buckets: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        depth = depth_of(name)
        if not 0 <= depth <= layers + 1:
            raise ValueError(f"{type(model).__name__}.layer_id({name!r}) = {depth}, outside 0..{layers + 1}")
        plain = p.ndim < 2 or name.endswith(no_decay)
        buckets.setdefault((depth, plain), []).append(p)
    groups = []
    for depth in range(layers + 1, -1, -1):
        scale = decay ** (layers + 1 - depth)
        for plain in (False, True):
            params = buckets.get((depth, plain))
            if params:
                groups.append({"params": params, "weight_decay": 0.0 if plain else weight_decay, LR_SCALE: scale})
    return groups
