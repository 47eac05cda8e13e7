"""Mixed precision on cstorch: the half dtype (``cerebras.half_dtype``, else the run's precision from
the core resolver), loss scaling, and what cstorch's CPU backend refuses, checked before anything runs."""

from __future__ import annotations

from typing import Any

from tc.core.errors import ConfigError
from tc.core.hardware import resolve_precision

CSTORCH_HALF = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
"""tc precision -> cstorch half dtype (None: no mixed precision)."""
CPU_HALF_DTYPES = (None, "bfloat16")


def is_csx(cfg: Any) -> bool:
    return cfg.cerebras.backend_type == "CSX"


def half_dtype(cfg: Any) -> str | None:
    """``cerebras.half_dtype`` when set, else runconfig.precision as a cstorch dtype name."""
    return cfg.cerebras.half_dtype or CSTORCH_HALF[resolve_precision(cfg, "cerebras").name]


def loss_scaling(cfg: Any) -> float | str | None:
    factor = cfg.cerebras.loss_scaling_factor
    if factor is None:
        return "dynamic" if half_dtype(cfg) in ("float16", "cbfloat16") else None
    return None if factor == 1.0 else factor


def check_precision(cfg: Any) -> None:
    """Refuse, before anything runs, what cstorch 2.10's CPU backend cannot do."""
    if is_csx(cfg):
        return
    half = half_dtype(cfg)
    if half not in CPU_HALF_DTYPES:
        key = "cerebras.half_dtype" if cfg.cerebras.half_dtype else "runconfig.precision"
        raise ConfigError(f"{key}: cstorch's CPU backend runs mixed precision in bfloat16 only, "
                          f"not {half} (use bf16, or backend_type CSX)")
    if cfg.cerebras.loss_scaling_factor not in (None, 1.0):
        raise ConfigError("cerebras.loss_scaling_factor: loss scaling needs backend_type CSX "
                          "(cstorch 2.10's GradScaler does not run on its CPU backend)")


def grad_scaler(cfg: Any) -> Any:
    """A ``cstorch.amp.GradScaler`` on CSX when loss scaling is on, else None."""
    scaling = loss_scaling(cfg)
    if scaling is None or not is_csx(cfg):
        return None
    import cerebras.pytorch as cstorch

    s = cfg.cerebras
    return cstorch.amp.GradScaler(
        loss_scale=scaling, init_scale=s.initial_loss_scale, steps_per_increase=s.steps_per_increase,
        min_loss_scale=s.min_loss_scale, max_loss_scale=s.max_loss_scale,
    )
