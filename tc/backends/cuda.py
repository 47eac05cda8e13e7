"""The ``cuda`` backend: one NVIDIA GPU, bf16 autocast (fp16 + GradScaler optional), TF32 matmuls,
fused AdamW, pinned host memory with non-blocking copies, optional ``torch.compile``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from tc.core.config import Section
from tc.core.hardware import Precision, resolve_precision
from tc.core.interfaces import Availability, Backend, Batch, OptimSpec, Runner
from tc.plugins import hookimpl

if TYPE_CHECKING:
    import torch

    from tc.core.sampling import BatchPlan


class CudaConfig(Section):
    device: int | None = None
    """GPU index; default: LOCAL_RANK or 0."""
    precision: Literal["bf16", "fp16", "fp32"] | None = None
    """None: runconfig.precision if it is not fp32, else bf16 where the GPU supports it."""
    tf32: bool = True
    fused_optimizer: bool = True
    compile: bool = False
    pin_memory: bool = True


class CudaBackend(Backend):
    name = "cuda"
    description = "One NVIDIA GPU: bf16 autocast, TF32, fused AdamW, pinned memory, optional torch.compile"
    config_model = CudaConfig

    @classmethod
    def is_available(cls) -> Availability:
        import torch

        if torch.cuda.is_available():
            return Availability(True)
        if torch.version.cuda is None:
            return Availability(False, f"no CUDA device (torch {torch.__version__} is a CPU-only build)")
        return Availability(False, "no CUDA device")

    @property
    def device(self) -> torch.device:
        """The GPU this process uses: ``cuda.device``, else LOCAL_RANK, else 0. Known from the config
        alone, so ``--dry-run`` (which never calls ``setup``) can describe it."""
        import torch

        index = self.cfg.cuda.device
        if index is None:
            index = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", index)

    def setup(self) -> None:
        import torch

        torch.cuda.set_device(self.device)
        torch.backends.cuda.matmul.allow_tf32 = self.cfg.cuda.tf32
        torch.backends.cudnn.allow_tf32 = self.cfg.cuda.tf32

    def precision(self) -> Precision:
        """``cuda.precision``, else ``runconfig.precision``, whose fp32 default becomes bf16 on a GPU with bf16."""
        import torch

        def bf16_if_supported() -> str | None:
            return "bf16" if torch.cuda.is_bf16_supported() else None

        return resolve_precision(self.cfg, self.name, override=self.cfg.cuda.precision,
                                 override_key="cuda.precision", instead_of_fp32=bf16_if_supported)

    def device_description(self) -> str:
        import torch

        return f"{torch.cuda.get_device_name(self.device)} ({self.precision().name})"

    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        from tc.backends.eager import EagerRunner

        return EagerRunner(model, spec, self.device, self.precision().autocast_dtype,
                           fused=self.cfg.cuda.fused_optimizer, compile_model=self.cfg.cuda.compile)

    def batches(self, plan: BatchPlan) -> Iterator[list[Batch]]:
        """Batches in pinned memory, so the runner's non_blocking copies overlap with compute."""
        for micro_batches in super().batches(plan):
            if self.cfg.cuda.pin_memory:
                micro_batches = [{k: v.pin_memory() for k, v in b.items()} for b in micro_batches]
            yield micro_batches


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(CudaBackend)
