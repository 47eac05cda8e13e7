"""Checkpoint state between cstorch's layout and tc's plain torch layout (pure functions: also used where
no runner exists). cstorch's optimizers keep Adam's bias-correction powers instead of a step count and
Adam's L2 decay under another name; tc's checkpoints hold what ``torch.optim`` loads, so every backend
resumes a cerebras run and the other way round."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tc.core.errors import CheckpointError
from tc.core.interfaces import OptimSpec


def materialize(obj: Any) -> Any:
    """Plain, in-memory tensors for everything ``cstorch.load`` returned as file-backed deferred ones."""
    import torch

    if isinstance(obj, torch.Tensor):
        return torch.empty(tuple(obj.shape), dtype=obj.dtype).copy_(obj)
    if isinstance(obj, dict):
        return {k: materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(materialize(v) for v in obj)
    if isinstance(obj, set):
        return sorted(obj, key=str)
    return obj


def number(value: Any) -> float:
    return float(value.item()) if hasattr(value, "item") else float(value)


def optimizer_to_torch(native: dict[str, Any], kind: str, steps: int) -> dict[str, Any]:
    """A cstorch Adam/AdamW/SGD state dict in the layout of the matching ``torch.optim`` class.

    cstorch's Adam keeps ``beta1_power``/``beta2_power`` instead of a step count and stores Adam's L2
    weight decay as ``l2_regularization_rate``; torch wants ``step`` and ``weight_decay``. The powers
    stay beside ``step`` (torch ignores them) so a cerebras resume is exact."""
    import torch

    state = {}
    for idx, s in native["state"].items():
        if kind == "sgd":
            state[idx] = {k: v for k, v in s.items() if k == "momentum_buffer"}
        else:
            state[idx] = {"step": torch.tensor(float(steps)), **s}
    groups = []
    for g in native["param_groups"]:
        group = {k: v for k, v in g.items() if k not in ("correct_bias", "l2_regularization_rate")}
        group["lr"] = number(g["lr"])
        if kind == "adam":
            group["weight_decay"] = float(g.get("l2_regularization_rate", 0.0))
        groups.append(group)
    return {"state": state, "param_groups": groups}


def optimizer_from_torch(saved: dict[str, Any], live: dict[str, Any], kind: str) -> dict[str, Any]:
    """The inverse of ``optimizer_to_torch``, shaped like ``live`` (the cstorch optimizer's state dict).

    Reads torch's own Adam/AdamW/SGD states too (another backend's checkpoint). cstorch's bias
    correction after t steps is beta^(t+1) (it starts at beta for step 1); saved powers are kept only
    while they still agree with ``step`` (another backend may have stepped on without updating them)."""
    if len(saved["param_groups"]) != len(live["param_groups"]):
        raise CheckpointError(
            f"optimizer state has {len(saved['param_groups'])} parameter groups, the model has "
            f"{len(live['param_groups'])}"
        )
    groups, betas = [], {}
    for sg, lg in zip(saved["param_groups"], live["param_groups"], strict=True):
        group = dict(lg)
        for key in ("lr", "betas", "eps", "momentum", "dampening", "nesterov", "amsgrad"):
            if key in sg and key in lg:
                group[key] = tuple(sg[key]) if key == "betas" else sg[key]
        weight_decay = float(sg.get("weight_decay", 0.0))
        if kind == "adam":
            group["l2_regularization_rate"], group["weight_decay"] = weight_decay, 0.0
        else:
            group["weight_decay"] = weight_decay
        groups.append(group)
        for idx in lg["params"]:
            betas[idx] = group.get("betas")
    state = {}
    for idx, s in saved["state"].items():
        state[idx] = {k: v for k, v in s.items() if k != "step"}
        if kind != "sgd" and "step" in s:
            state[idx].update(bias_powers(s, betas[idx], number(s["step"])))
    return {"state": state, "param_groups": groups}


def bias_powers(s: dict[str, Any], betas: tuple[float, float], steps: float) -> dict[str, Any]:
    """cstorch's ``beta1_power``/``beta2_power`` after ``steps`` steps: the saved ones when they match."""
    import torch

    b1, b2 = betas
    expected = b1 ** (steps + 1)
    saved = s.get("beta1_power")
    if saved is not None and math.isclose(number(saved), expected, rel_tol=1e-4):
        return {"beta1_power": s["beta1_power"], "beta2_power": s["beta2_power"]}
    return {"beta1_power": torch.tensor(expected, dtype=torch.float32),
            "beta2_power": torch.tensor(b2 ** (steps + 1), dtype=torch.float32)}


def schedule_state(spec: OptimSpec, steps: int, groups: int, scales: Sequence[float] | None = None) -> dict[str, Any]:
    """The schedule's position in the layout of ``torch.optim.lr_scheduler.LambdaLR`` (what the eager
    backends keep), so any backend resumes the same schedule. ``scales``: each group's ``lr_scale`` (layer-wise
    lr decay; None: 1.0 each), which the eager schedule keeps in its lambdas, not in ``base_lrs``."""
    lr = spec.learning_rate * spec.lr_factor(steps)
    scales = [1.0] * groups if scales is None else list(scales)
    return {"base_lrs": [spec.learning_rate] * groups, "last_epoch": steps, "_step_count": steps + 1,
            "_last_lr": [lr * s for s in scales], "lr_lambdas": [None] * groups, "verbose": False,
            "_get_lr_called_within_step": False}


def native_to_tc(native: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint read from a ``.mdl`` in tc's plain form (torch-layout optimizer)."""
    state = dict(native)
    kind = state.pop("optimizer_type", None)
    if "optimizer" in state and kind is not None:
        steps = int(state.get("lr_scheduler", {}).get("last_epoch", state.get("global_step", 0)))
        state["optimizer"] = optimizer_to_torch(state["optimizer"], kind, steps)
    return state


SCHEDULE_POSITION = ("last_epoch", "_last_value", "_step_count", "_get_called_within_step")


def schedule_shape(state: Any) -> Any:
    """A cstorch scheduler state without its position: equal for equal schedules."""
    if isinstance(state, dict):
        return {k: schedule_shape(v) for k, v in state.items() if k not in SCHEDULE_POSITION}
    if isinstance(state, (list, tuple)):
        return [schedule_shape(v) for v in state]
    return state

