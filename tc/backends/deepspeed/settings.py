"""The ``deepspeed:`` YAML section (pydantic): ZeRO stage, offload, precision flags, launcher, DeepSpeed JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tc.core.config import Section


class DeepSpeedSettings(Section):
    """The ``deepspeed:`` YAML section. tc fills batch sizes, accumulation and clipping itself."""

    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_param: Literal["none", "cpu"] = "none"
    """Parameter offload needs ZeRO stage 3."""
    bf16: bool | None = None
    """None: follow runconfig.precision."""
    fp16: bool | None = None
    """None: follow runconfig.precision (fp16 needs CUDA)."""
    num_processes: int | None = Field(None, gt=0)
    """Ranks to launch on this machine (per node with a hostfile); ``--num-processes`` sets it."""
    hostfile: Path | None = None
    """DeepSpeed hostfile (``host slots=N`` lines) for multi-node runs; implies launcher=deepspeed."""
    launcher: Literal["torchrun", "deepspeed"] | None = None
    """None: torchrun on one machine, the deepspeed launcher with a hostfile."""
    master_port: int | None = Field(None, gt=0, lt=65536)
    """None: a free port."""
    dist_backend: str | None = None
    """torch.distributed backend; None: nccl with CUDA, gloo on CPU."""
    cpu_shm_comm: bool = False
    """Use DeepSpeed's shared-memory CPU allreduce (JIT-compiled once, ~2 minutes); gloo otherwise."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Merged into the generated DeepSpeed JSON config for anything tc does not set."""

