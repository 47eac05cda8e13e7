"""cstorch's optimizer and LR schedule built from the same ``OptimSpec`` as every other backend's, so the
learning rate of each step equals ``OptimSpec.lr_factor`` (also when resumed mid-schedule), times each
group's ``lr_scale`` under layer-wise lr decay (cstorch's ``ScalePerParamLR`` and its
``adjust_learning_rate`` group key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tc.core.errors import ConfigError
from tc.core.interfaces import OptimSpec
from tc.core.layer_decay import LR_SCALE

if TYPE_CHECKING:
    import torch

ADJUST = "adjust_learning_rate"
"""cstorch's param-group key for a factor on the scheduled lr (read by ``ScalePerParamLR``)."""


def build_optimizer(spec: OptimSpec, model: torch.nn.Module) -> Any:
    """The cstorch optimizer for ``spec``, weight decay on matrices only (``OptimSpec.param_groups``).

    cstorch's Adam turns ``weight_decay`` into ``l2_regularization_rate`` but only where a group does not
    set it, so each group sets its own (otherwise the no-decay group would get the default)."""
    import cerebras.pytorch as cstorch

    groups = [_native_group(g) for g in spec.param_groups(model)]
    kind = spec.optimizer_type
    if kind == "adamw":
        return cstorch.optim.AdamW(groups, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps)
    if kind == "adam":
        groups = [{**{k: v for k, v in g.items() if k != "weight_decay"}, "l2_regularization_rate": g["weight_decay"]}
                  for g in groups]
        return cstorch.optim.Adam(groups, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps)
    if kind == "sgd":
        return cstorch.optim.SGD(groups, lr=spec.learning_rate, momentum=spec.momentum)
    raise ConfigError(f"optimizer.optimizer_type: unknown optimizer {kind!r} (valid: adamw, adam, sgd)")


def _native_group(group: dict[str, Any]) -> dict[str, Any]:
    """A tc param group for cstorch: its ``lr_scale`` also as the ``adjust_learning_rate`` cstorch reads."""
    if LR_SCALE not in group:
        return group
    return {**group, ADJUST: group[LR_SCALE]}


def build_scheduler(spec: OptimSpec, optimizer: Any, start: int) -> Any:
    """cstorch LR schedulers equal to ``OptimSpec.lr_factor`` from step ``start`` on, each group's lr
    times its ``lr_scale`` (a ``ScalePerParamLR`` around the schedule, only when some scale is not 1).

    Warmup is a ``LinearLR`` up to the peak, then ``LinearLR`` down to 0 (or ``ConstantLR``), joined by
    ``SequentialLR``. Resuming builds the schedule at its position instead of replaying steps, which
    works the same on CSX, where schedulers are traced once."""
    import cerebras.pytorch as cstorch

    schedule = _schedule(spec, optimizer, start)
    if any(g.get(ADJUST, 1.0) != 1.0 for g in optimizer.param_groups):
        return cstorch.optim.lr_scheduler.ScalePerParamLR(optimizer, schedule)
    return schedule


def _schedule(spec: OptimSpec, optimizer: Any, start: int) -> Any:
    import cerebras.pytorch as cstorch

    sched = cstorch.optim.lr_scheduler
    lr, warmup = spec.learning_rate, spec.warmup_steps

    def after_warmup(step: int) -> Any:
        if spec.schedule == "constant":
            return sched.ConstantLR(optimizer, learning_rate=lr)
        return sched.LinearLR(optimizer, initial_learning_rate=lr * spec.lr_factor(step),
                              end_learning_rate=0.0, total_iters=max(1, spec.total_steps - step))

    if start >= warmup:
        return after_warmup(start)
    left = warmup - start  # warmup steps still to run, the first at lr * (start + 1) / warmup
    first = lr * spec.lr_factor(start)
    if left == 1:
        ramp = sched.ConstantLR(optimizer, learning_rate=first)
    else:
        ramp = sched.LinearLR(optimizer, initial_learning_rate=first, end_learning_rate=lr,
                              total_iters=left - 1)
    return sched.SequentialLR(optimizer, [ramp, after_warmup(warmup)], milestones=[left])

