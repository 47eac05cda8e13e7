"""The eager PyTorch runner shared by the cpu and cuda backends (one process, one device)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from tc.core.errors import ConfigError
from tc.core.interfaces import Batch, OptimSpec, Runner, StepResult, model_inputs
from tc.core.layer_decay import check_group_layout, lr_scales


def build_optimizer(spec: OptimSpec, model: torch.nn.Module, fused: bool = False) -> torch.optim.Optimizer:
    """The torch optimizer ``spec`` names, over ``OptimSpec.param_groups`` (eager and deepspeed)."""
    groups = spec.param_groups(model)
    kind = spec.optimizer_type
    if kind in ("adamw", "adam"):
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        extra = {"fused": True} if fused else {}
        return cls(groups, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps, **extra)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=spec.learning_rate, momentum=spec.momentum)
    raise ConfigError(f"optimizer.optimizer_type: unknown optimizer {kind!r} (valid: adamw, adam, sgd)")


def build_scheduler(spec: OptimSpec, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """``OptimSpec.lr_factor`` as a torch LambdaLR: the one LR schedule of every torch-optimizer backend
    (eager and deepspeed), and the layout the cerebras backend converts its schedule position to.

    One lambda per group, times the group's ``lr_scale`` (layer-wise lr decay; 1.0 without it). The scale
    lives in the lambda, not in the group's initial lr, so ``base_lrs`` stays the peak lr of every group: the
    same schedule state any backend writes."""

    def scaled(scale: float) -> Any:
        return lambda step: scale * spec.lr_factor(step)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [scaled(s) for s in lr_scales(optimizer.param_groups)])


class EagerRunner(Runner):
    """Forward, backward, clip and step in plain PyTorch on ``device``.

    ``autocast`` (bf16/fp16) wraps forward passes; fp16 adds a GradScaler. Only model inputs (the batch
    without the core's keys, ``interfaces.model_inputs``) are moved to the device, with ``non_blocking``
    copies from pinned host memory when the backend pins it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        spec: OptimSpec | None,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        fused: bool = False,
        compile_model: bool = False,
    ) -> None:
        self.model = model.to(device)
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.spec = spec
        self.forward = torch.compile(self.model, dynamic=True) if compile_model else self.model
        self.optimizer = build_optimizer(spec, self.model, fused) if spec else None
        self.scheduler = build_scheduler(spec, self.optimizer) if spec else None
        use_scaler = autocast_dtype == torch.float16 and spec is not None
        self.scaler = torch.amp.GradScaler(device.type) if use_scaler else None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _inputs(self, batch: Batch, with_labels: bool = True) -> Batch:
        return {k: v.to(self.device, non_blocking=True) for k, v in model_inputs(batch, with_labels).items()}

    def train_step(self, micro_batches: list[Batch]) -> StepResult:
        assert self.optimizer is not None and self.spec is not None, "runner prepared without an optimizer"
        self.model.train()
        total = torch.zeros((), device=self.device)
        for batch in micro_batches:
            with self._autocast():
                _, loss = self.forward(self._inputs(batch))
            scaled = loss.float() * float(batch["loss_share"])
            grad_loss = scaled * float(batch["step_weight"])
            (self.scaler.scale(grad_loss) if self.scaler else grad_loss).backward()
            total += scaled.detach()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if self.spec.max_gradient_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.max_gradient_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss=float(total), grad_norm=None if norm is None else float(norm))

    def eval_step(self, batch: Batch) -> torch.Tensor:
        self.model.eval()
        with torch.inference_mode(), self._autocast():
            logits, _ = self.forward(self._inputs(batch, with_labels=False))
        return logits.float().cpu()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
            state["lr_scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], parts: set[str]) -> None:
        if "model" in parts and "model" in state:
            self.model.load_state_dict(state["model"])
        if "optimizer" in parts and self.optimizer is not None and "optimizer" in state:
            check_group_layout(state["optimizer"], "optimizer", self.optimizer.param_groups)
            self.optimizer.load_state_dict(state["optimizer"])
        if "lr_scheduler" in parts and self.scheduler is not None and "lr_scheduler" in state:
            check_group_layout(state["lr_scheduler"], "lr_scheduler", self.optimizer.param_groups)
            self.scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler is not None and "grad_scaler" in state and "optimizer" in parts:
            self.scaler.load_state_dict(state["grad_scaler"])

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else 0.0
