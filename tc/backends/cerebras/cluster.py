"""The CS-X side of the ``cerebras:`` section: ``cstorch.distributed.ClusterConfig`` and
``cstorch.backend("CSX", ...)`` arguments, and the appliance's precision / micro-batch flags."""

from __future__ import annotations

from typing import Any

from tc.core.errors import ConfigError


def csx_arguments(cfg: Any) -> dict[str, Any]:
    """Keyword arguments of ``cstorch.backend("CSX", ...)`` from the ``cerebras:`` section."""
    import cerebras.pytorch as cstorch

    s = cfg.cerebras
    cluster: dict[str, Any] = {
        "mgmt_address": s.mgmt_address, "mgmt_namespace": s.mgmt_namespace, "num_csx": s.num_csx,
        "num_workers_per_csx": s.num_workers_per_csx, "mount_dirs": list(s.mount_dirs),
        "python_paths": list(s.python_paths), "job_labels": list(s.job_labels),
        "job_time_sec": s.job_time_sec, "disable_version_check": s.disable_version_check,
    }
    if s.credentials_path is not None:
        cluster["credentials_path"] = str(s.credentials_path)
    if s.job_priority is not None:
        cluster["job_priority"] = s.job_priority
    try:
        config = cstorch.distributed.ClusterConfig(**cluster)
    except ValueError as exc:
        raise ConfigError(f"cerebras: {exc}") from None
    args: dict[str, Any] = {"cluster_config": config}
    if s.compile_dir:
        args["compile_dir"] = s.compile_dir
    return args


def set_csx_flags(cfg: Any) -> None:
    """cstorch's process-wide CSX flags: precision optimisation level and micro-batch size (``auto`` with
    gradient accumulation: the global batch over ``runconfig.grad_accum_steps``)."""
    import cerebras.pytorch as cstorch

    s = cfg.cerebras
    if s.precision_opt_level is not None:
        cstorch.backends.csx.precision.optimization_level = s.precision_opt_level
    mbs: Any = s.micro_batch_size
    accum = cfg.runconfig.grad_accum_steps
    if mbs == "auto" and accum > 1:
        mbs = cfg.train_input.batch_size // accum
    cstorch.backends.csx.performance.micro_batch_size = mbs
