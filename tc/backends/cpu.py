"""The ``cpu`` backend: eager PyTorch on the host, length-bucketed dynamic padding, optional bf16."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tc.core.config import Section
from tc.core.hardware import resolve_precision, set_host_threads
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
    """The ``cpu:`` section. Threads are ``runconfig.num_threads`` (``cpu.num_threads`` is its deprecated
    alias, moved there when the config loads)."""

    fused_optimizer: bool = True
    compile: bool = False


class CpuBackend(Backend):
    name = "cpu"
    description = "PyTorch on the host CPU: bucketed dynamic padding, optional bf16 autocast"
    config_model = CpuConfig

    def device_description(self) -> str:
        import torch

        precision = resolve_precision(self.cfg, self.name).name
        slow = precision == "bf16" and not native_bf16()
        note = "; this CPU has no bf16 instructions, expect bf16 to be far slower than fp32" if slow else ""
        return f"cpu ({torch.get_num_threads()} threads, {precision}{note})"

    def setup(self) -> None:
        set_host_threads(self.cfg, default_all_cores=True)

    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        import torch

        from tc.backends.eager import EagerRunner

        precision = resolve_precision(self.cfg, self.name, supported=("bf16", "fp32"))
        return EagerRunner(model, spec, torch.device("cpu"), precision.autocast_dtype,
                           fused=self.cfg.cpu.fused_optimizer, compile_model=self.cfg.cpu.compile)


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(CpuBackend)
