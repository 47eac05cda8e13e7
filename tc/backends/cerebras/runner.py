"""The cerebras runner: a ``cstorch.compile``d model with its cstorch optimizer, LR schedule and grad
scaler, and the train and eval steps under ``@cstorch.trace`` (run once per step on cstorch's CPU
backend, traced once and replayed on CSX). Values come back to the host only through a step closure.

On CSX every per-step value (``loss_share``, ``step_weight``) is batch data, batches have a fixed number
of rows, and gradient accumulation is the compiler's micro-batching: the step's micro-batches arrive
concatenated as one global batch, which gives the same token-mean loss.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tc.backends.cerebras import precision
from tc.backends.cerebras.optim import build_optimizer, build_scheduler
from tc.backends.cerebras.state import native_to_tc, number, optimizer_from_torch, schedule_shape, schedule_state
from tc.core.errors import ConfigError
from tc.core.interfaces import Batch, OptimSpec, Runner, StepResult, model_inputs
from tc.core.layer_decay import lr_scales

if TYPE_CHECKING:
    import torch

    from tc.backends.cerebras.backend import CerebrasBackend


class CerebrasRunner(Runner):
    """A compiled model with its cstorch optimizer, LR schedule and traced train/eval steps."""

    def __init__(self, backend: CerebrasBackend, model: torch.nn.Module, spec: OptimSpec | None) -> None:
        import cerebras.pytorch as cstorch

        self.backend = backend
        self.model = model
        self.spec = spec
        self.cs = backend.cs_backend()
        self.half_dtype = precision.half_dtype(backend.cfg)
        if self.half_dtype is not None:
            cstorch.amp.set_half_dtype(self.half_dtype)
        self.compiled = cstorch.compile(model, self.cs)
        self.steps = 0
        self.optimizer = build_optimizer(spec, model) if spec else None
        self.scheduler = build_scheduler(spec, self.optimizer, 0) if spec else None
        self.scaler = precision.grad_scaler(backend.cfg) if spec else None
        self.values: dict[str, Any] = {}
        self._record = cstorch.step_closure(self._store)
        self._train = cstorch.trace(self._train_body)
        self._eval = cstorch.trace(self._eval_body)

    # traced bodies: run once per step on CPU, traced once and replayed on CSX
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import cerebras.pytorch as cstorch

        return cstorch.amp.autocast() if self.half_dtype is not None else contextlib.nullcontext()

    def _train_body(self, batch: Batch) -> None:
        import torch

        assert self.optimizer is not None and self.spec is not None
        with self._autocast():
            _, loss = self.compiled(model_inputs(batch))
        loss = loss.float() * batch["loss_share"][0]
        grad_loss = loss * batch["step_weight"][0]
        (self.scaler.scale(grad_loss) if self.scaler else grad_loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if self.spec.max_gradient_norm:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.spec.max_gradient_norm)
        finite = None
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            finite = self.scaler.isfinite if isinstance(self.scaler.isfinite, torch.Tensor) else None
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        lr = self.optimizer.param_groups[0]["lr"]
        self._record(loss=loss.detach(), norm=norm, lr=lr, finite=finite)

    def _eval_body(self, batch: Batch) -> None:
        import torch

        with torch.no_grad(), self._autocast():
            logits, _ = self.compiled(model_inputs(batch, with_targets=False))
        self._record(logits=logits.float())

    def _store(self, **values: Any) -> None:
        """Step closure: values arrive here as host tensors after the step ran."""
        self.values.update(values)

    # the Runner contract
    def train_step(self, micro_batches: list[Batch]) -> StepResult:
        if self.optimizer is None:
            raise ConfigError("cerebras: this runner was prepared for evaluation only (no optimizer)")
        if len(micro_batches) != 1:
            raise ConfigError("cerebras: train_step takes the one global batch CerebrasBackend.batches yields")
        self.model.train()
        self._run(self._train, micro_batches[0])
        self.steps += 1
        if "loss" not in self.values:  # CSX: not an activation step, nothing was sent back
            return StepResult(loss=self.values.get("last_loss", 0.0))
        loss = float(self.values.pop("loss"))
        norm = self.values.pop("norm", None)
        finite = self.values.pop("finite", None)
        self.values["last_loss"] = loss
        return StepResult(loss=loss, grad_norm=None if norm is None else float(norm),
                          skipped=finite is not None and not bool(finite))

    def eval_step(self, batch: Batch) -> torch.Tensor:
        self.model.eval()
        self._run(self._eval, batch)
        logits = self.values.pop("logits", None)
        if logits is None:
            raise ConfigError("cerebras: no logits came back from the eval step (see cerebras.activation_steps)")
        return logits[: len(batch["index"])].cpu()

    def _run(self, traced: Any, batch: Batch) -> None:
        feed = self.backend.current_feed()
        traced(batch)
        feed.end_step()

    def native_state(self) -> dict[str, Any]:
        """Runner state as cstorch holds it (device tensors on CSX): what ``cstorch.save`` writes."""
        state: dict[str, Any] = {"model": self.model.state_dict()}
        if self.optimizer is not None and self.spec is not None:
            state["optimizer"] = self.optimizer.state_dict()
            state["optimizer_type"] = self.spec.optimizer_type
            groups = self.optimizer.param_groups
            state["lr_scheduler"] = schedule_state(self.spec, self.steps, len(groups), lr_scales(groups))
            state["cerebras_lr_scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            state["cerebras_grad_scaler"] = self.scaler.state_dict()
        return state

    def state_dict(self) -> dict[str, Any]:
        return native_to_tc(self.backend.to_host(self.native_state()))

    def load_state_dict(self, state: dict[str, Any], parts: set[str]) -> None:
        if "model" in parts and "model" in state:
            self.model.load_state_dict(state["model"])
        if self.optimizer is None or self.spec is None:
            return
        if "optimizer" in parts and "optimizer" in state:
            native = optimizer_from_torch(state["optimizer"], self.optimizer.state_dict(), self.spec.optimizer_type)
            self.optimizer.load_state_dict(native)
            if self.scaler is not None and "cerebras_grad_scaler" in state:
                self.scaler.load_state_dict(state["cerebras_grad_scaler"])
        if "lr_scheduler" in parts and "lr_scheduler" in state:
            self.steps = int(state["lr_scheduler"].get("last_epoch", 0))
            self.scheduler = self._resumed_schedule(state.get("cerebras_lr_scheduler"))

    def _resumed_schedule(self, native: dict[str, Any] | None) -> Any:
        """cstorch's own scheduler state when it describes this same schedule (bit-exact resume), else
        the schedule rebuilt at the saved position (another backend's checkpoint, or a changed config)."""
        assert self.spec is not None
        fresh = build_scheduler(self.spec, self.optimizer, 0)
        if native is not None and schedule_shape(native) == schedule_shape(fresh.state_dict()):
            fresh.load_state_dict(native)
            fresh.update_last_value()
            return fresh
        return build_scheduler(self.spec, self.optimizer, self.steps)

    @property
    def lr(self) -> float:
        if "lr" in self.values:
            return number(self.values["lr"])
        return self.spec.learning_rate * self.spec.lr_factor(self.steps) if self.spec else 0.0
