"""DeepSpeed's precision flags: ``deepspeed.bf16`` / ``deepspeed.fp16`` when set, else the run's precision
from the core resolver (``tc.core.hardware.resolve_precision``), as the JSON config's two switches."""

from __future__ import annotations

from typing import Any

from tc.core.hardware import resolve_precision


def precision_flags(cfg: Any) -> tuple[bool, bool]:
    """(bf16, fp16): explicit deepspeed keys win, else runconfig.precision decides."""
    ds, precision = cfg.deepspeed, resolve_precision(cfg, "deepspeed").name
    bf16 = ds.bf16 if ds.bf16 is not None else precision == "bf16"
    fp16 = ds.fp16 if ds.fp16 is not None else precision == "fp16"
    return bf16, fp16


def precision_name(cfg: Any) -> str:
    """The flags as one name, for the device line (``bf16``, ``fp16`` or ``fp32``)."""
    bf16, fp16 = precision_flags(cfg)
    return "bf16" if bf16 else "fp16" if fp16 else "fp32"
