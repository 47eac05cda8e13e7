"""The ``cpu`` backend: eager PyTorch on the host, length-bucketed dynamic padding, optional bf16."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from tc.core.config import Section
from tc.core.errors import ConfigError
from tc.core.interfaces import Backend, OptimSpec, Runner
from tc.plugins import hookimpl

if TYPE_CHECKING:
    import torch


def native_bf16() -> bool:
    """Whether the CPU has bf16 dot-product instructions (AVX512_BF16 or AMX). Without them oneDNN
    emulates bf16 GEMMs: 1.3 GFLOP/s against 72 for fp32 on an AVX2-only EPYC core. Not Linux: unknown,
    assume yes."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


class CpuConfig(Section):
    num_threads: int | None = Field(None, gt=0)
    """Intra-op threads; default: every core this process may use."""
    fused_optimizer: bool = True
    compile: bool = False


class CpuBackend(Backend):
    name = "cpu"
    description = "PyTorch on the host CPU: bucketed dynamic padding, optional bf16 autocast"
    config_model = CpuConfig

    def device_description(self) -> str:
        import torch

        precision = self.cfg.runconfig.precision
        slow = precision == "bf16" and not native_bf16()
        note = "; this CPU has no bf16 instructions, expect bf16 to be far slower than fp32" if slow else ""
        return f"cpu ({torch.get_num_threads()} threads, {precision}{note})"

    def setup(self) -> None:
        import torch

        threads = self.cfg.cpu.num_threads or self.cfg.runconfig.num_threads or len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)

    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        import torch

        from tc.backends.eager import EagerRunner

        precision = self.cfg.runconfig.precision
        if precision == "fp16":
            raise ConfigError("runconfig.precision: fp16 is not supported on the cpu backend (use bf16 or fp32)")
        dtype = torch.bfloat16 if precision == "bf16" else None
        return EagerRunner(model, spec, torch.device("cpu"), dtype, fused=self.cfg.cpu.fused_optimizer,
                           compile_model=self.cfg.cpu.compile)


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(CpuBackend)
