"""The cerebras backend's own ``--mode`` values: ``compile_only`` and ``validate_only`` (the seed's
compile step), one traced training step through a cstorch backend created with that flag."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tc.core.errors import BackendUnavailable, ConfigError, first_line

if TYPE_CHECKING:
    from tc.backends.cerebras.backend import CerebrasBackend

COMPILE_MODES = ("compile_only", "validate_only")


def run_compile_mode(backend: CerebrasBackend, mode: str, job: Any) -> None:
    """Build the model and run one traced training step (the loop's own training plan, cut to one step).
    cstorch accepts the flags on CSX only; on backend_type CPU its refusal is reported as a ConfigError
    quoting cstorch's message."""
    if mode not in COMPILE_MODES:
        raise ConfigError(f"--mode {mode}: not a cerebras compile mode ({', '.join(COMPILE_MODES)})")
    from tc.core.trainer import optim_spec, train_plan

    backend.mode_flags = {mode: True}
    backend.cs_backend()
    cfg = job.cfg
    plan = train_plan(job, job.task.dataset("train"))
    plan.max_steps = 1
    runner = backend.prepare(job.task.build_model(), optim_spec(cfg, cfg.runconfig.max_steps or 1))
    try:
        for micro_batches in backend.batches(plan):
            runner.train_step(micro_batches)
    except RuntimeError as exc:  # e.g. "torch-to-cirh lowering failed" without the Cerebras compiler tools
        raise BackendUnavailable(f"--mode {mode}: cstorch could not compile the model: {first_line(exc)} "
                                 "(--debug shows cstorch's full report)") from exc
    job.reporter.info(f"{mode}: traced one training step on {backend.device_description()}; "
                      f"artifacts in {backend.artifact_dir()}")
