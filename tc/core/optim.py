"""What the core resolves from the ``optimizer`` section and hands every backend: the optimizer, its
parameter groups and the learning-rate schedule (each backend builds its own optimizer objects from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class OptimSpec:
    """Optimizer and schedule, resolved by the core from the config (backends build their own objects)."""

    optimizer_type: str
    learning_rate: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    momentum: float
    warmup_steps: int
    total_steps: int
    schedule: str
    max_gradient_norm: float | None
    no_decay: tuple[str, ...] = ("bias", "LayerNorm.weight", "norm.weight", "ln.weight")
    layer_decay: float = 1.0
    """Layer-wise lr decay (``tc.core.layer_decay``); 1.0: off, the two groups below."""

    def param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Weight decay on matrices only, as BERT fine-tuning recipes do; with ``layer_decay`` < 1 one such
        pair per depth of the model, each with its ``lr_scale``."""
        if self.layer_decay != 1.0:
            from tc.core.layer_decay import layer_groups

            return layer_groups(model, self.layer_decay, self.weight_decay, self.no_decay)
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or name.endswith(self.no_decay) else decay).append(p)
        return [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def lr_factor(self, step: int) -> float:
        """Multiplier on the peak lr at ``step``: linear warmup, then linear decay or constant."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        remaining = self.total_steps - step
        return max(0.0, remaining / max(1, self.total_steps - self.warmup_steps))
