"""The ``cerebras:`` YAML section (pydantic): cluster, compile, precision and loss-scaling knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tc.core.config import Section


class CerebrasConfig(Section):
    """The ``cerebras:`` section. Cluster keys are ``cstorch.distributed.ClusterConfig`` fields and the
    backend keys are arguments of ``cstorch.backend("CSX", ...)``; they are ignored on backend_type CPU."""

    backend_type: Literal["CSX", "CPU"] = "CSX"
    artifact_dir: Path | None = None
    """cstorch's artifact_dir (executor logs); default: <model_dir>/cerebras_logs."""
    compile_dir: str | None = None
    """CSX compile cache directory on the appliance (cstorch default: cached_compile)."""
    mgmt_address: str | None = None
    """Cluster management address, "<host>:<port>"; None uses the cluster's default config."""
    mgmt_namespace: str | None = None
    credentials_path: Path | None = None
    num_csx: int = Field(1, ge=1)
    num_workers_per_csx: int = Field(1, ge=0)
    mount_dirs: list[str] = Field(default_factory=list)
    python_paths: list[str] = Field(default_factory=list)
    job_labels: list[str] = Field(default_factory=list)
    """["key=value", ...] applied to the appliance jobs."""
    job_priority: Literal["p1", "p2", "p3"] | None = None
    job_time_sec: int | None = Field(None, gt=0)
    disable_version_check: bool = False
    half_dtype: Literal["bfloat16", "float16", "cbfloat16"] | None = None
    """Mixed precision dtype (cstorch.amp.set_half_dtype); None follows runconfig.precision
    (bf16 -> bfloat16, fp16 -> float16, fp32 -> no mixed precision). CPU runs bfloat16 only."""
    precision_opt_level: int | None = Field(None, ge=0, le=2)
    """cstorch.backends.csx.precision.optimization_level (POL); None keeps cstorch's default."""
    loss_scaling_factor: float | Literal["dynamic"] | None = None
    """cstorch.amp.GradScaler(loss_scale=...); None: "dynamic" for float16/cbfloat16, else off. CSX only."""
    initial_loss_scale: float | None = Field(None, gt=0)
    steps_per_increase: int | None = Field(None, gt=0)
    min_loss_scale: float | None = Field(None, gt=0)
    max_loss_scale: float | None = Field(None, gt=0)
    micro_batch_size: int | Literal["auto", "explore"] | None = "auto"
    """cstorch.backends.csx.performance.micro_batch_size; with runconfig.grad_accum_steps > 1 and "auto",
    batch_size / grad_accum_steps is used."""
    activation_steps: int | None = Field(None, gt=0)
    """DataExecutor activation_steps: how often CSX sends step values (loss) back; None: every step."""

