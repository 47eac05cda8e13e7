"""The DeepSpeed runner: one engine's forward, backward and step per micro-batch, and its state (full
fp32 weights out, weights / optimizer / schedule back in, through the engine where ZeRO partitions them)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.backends.deepspeed.checkpoint_io import DS_DIR_KEY
from tc.backends.deepspeed.env import fp32, import_deepspeed, quiet
from tc.core.errors import CheckpointError, first_line
from tc.core.interfaces import Batch, Runner, StepResult, model_inputs
from tc.core.layer_decay import check_group_layout

if TYPE_CHECKING:
    import torch


class DeepSpeedRunner(Runner):
    """One DeepSpeed engine. Each micro-batch's loss is weighted by its ``loss_share`` times the world
    size (DeepSpeed averages gradients over ranks) and not divided by the accumulation steps, so the
    accumulated gradient is exactly that of the single-process mean loss over the global batch."""

    def __init__(self, engine: Any, optimizer: torch.optim.Optimizer | None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, world_size: int) -> None:
        self.engine = engine
        self.model = engine.module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.world_size = world_size
        self.stage = int(engine.zero_optimization_stage())
        self._weights: tuple[int, dict[str, torch.Tensor]] | None = None

    # -- steps ---------------------------------------------------------------------------------------
    def _inputs(self, batch: Batch, with_labels: bool = True) -> Batch:
        return {k: v.to(self.engine.device) for k, v in model_inputs(batch, with_labels).items()}

    def train_step(self, micro_batches: list[Batch]) -> StepResult:
        import torch
        import torch.distributed as dist

        assert self.optimizer is not None, "runner prepared without an optimizer"
        accum = self.engine.gradient_accumulation_steps()
        if len(micro_batches) != accum:  # DeepSpeed steps the optimizer every `accum` micro-batches
            raise RuntimeError(f"got {len(micro_batches)} micro-batches, gradient_accumulation_steps={accum}")
        self.engine.train()
        total = torch.zeros((), dtype=torch.float32, device=self.engine.device)
        for batch in micro_batches:
            _, loss = self.engine(self._inputs(batch))
            weight = float(batch["loss_share"]) * float(batch["step_weight"]) * self.world_size
            self.engine.backward(loss.float() * weight, scale_wrt_gas=False)
            self.engine.step()
            total += loss.detach().float() * float(batch["loss_share"])
        if self.world_size > 1:
            dist.all_reduce(total)
        norm = self.engine.get_global_grad_norm()
        return StepResult(loss=float(total), grad_norm=None if norm is None else float(norm),
                          skipped=not self.engine.was_step_applied())

    def eval_step(self, batch: Batch) -> torch.Tensor:
        import torch

        self.engine.eval()
        with torch.no_grad():
            logits, _ = self.engine(self._inputs(batch, with_labels=False))
        return logits.float().cpu()

    # -- state -------------------------------------------------------------------------------------------
    def remember_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Keep the consolidated weights of the checkpoint just saved: ``state_dict`` on rank 0 alone
        (the loop's best-model copy) then needs no collective, even under ZeRO-3."""
        self._weights = (int(self.engine.global_steps), weights)

    def scheduler_state(self) -> dict[str, Any]:
        return {"lr_scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}

    def state_dict(self) -> dict[str, Any]:
        """Full fp32 weights and the schedule. ZeRO's optimizer state stays in the DeepSpeed directory
        (partitioned per rank); under ZeRO-3, without a fresh checkpoint, call this on every rank."""
        if self._weights is not None and self._weights[0] == int(self.engine.global_steps):
            weights = self._weights[1]
        elif self.stage == 3:
            weights = {k: fp32(v) for k, v in self.engine._zero3_consolidated_16bit_state_dict().items()}
        else:
            weights = {k: fp32(v) for k, v in self.model.state_dict().items()}
        return {"model": weights, **self.scheduler_state()}

    def load_state_dict(self, state: dict[str, Any], parts: set[str]) -> None:
        source = state.get(DS_DIR_KEY)
        if source and self.optimizer is not None and parts & {"optimizer", "lr_scheduler"}:
            self._load_engine_checkpoint(Path(source["path"]), parts, source)
        else:
            if "optimizer" in parts and state.get("optimizer") is not None:
                self._load_plain_optimizer(state["optimizer"])
            if "lr_scheduler" in parts and state.get("lr_scheduler") is not None:
                self._load_scheduler(state["lr_scheduler"])
        if "model" in parts and "model" in state:
            self._load_weights(state["model"])

    def _load_engine_checkpoint(self, tag_dir: Path, parts: set[str], written_by: dict[str, Any]) -> None:
        """Optimizer moments and fp32 master weights are partitioned per rank: the engine reads them back
        (weights too: under ZeRO the master copy *is* the model), only into the layout that wrote them."""
        optimizer = "optimizer" in parts
        ranks, stage = written_by.get("ranks"), written_by.get("stage")
        if optimizer and ((ranks and self.stage > 0 and ranks != self.world_size)
                          or (stage is not None and int(stage) != self.stage)):
            raise CheckpointError(
                f"{tag_dir}: its optimizer state is ZeRO-{stage} over {ranks or 1} ranks, this run is "
                f"ZeRO-{self.stage} over {self.world_size}; use --checkpoint-path {tag_dir.with_suffix('.pt')} "
                "(same weights and step, fresh optimizer moments)"
            )
        try:
            with quiet():
                loaded, _ = self.engine.load_checkpoint(
                    str(tag_dir.parent), tag=tag_dir.name, load_optimizer_states=optimizer,
                    load_lr_scheduler_states="lr_scheduler" in parts,
                )
        except (RuntimeError, ValueError, KeyError, AssertionError, OSError) as exc:
            raise CheckpointError(f"{tag_dir}: DeepSpeed cannot restore it ({first_line(exc)})") from None
        if loaded is None:
            raise CheckpointError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
        self._weights = None

    def _load_plain_optimizer(self, state: dict[str, Any]) -> None:
        """A torch optimizer state (cpu/cuda backends) fits only when DeepSpeed did not wrap the optimizer."""
        if self.engine.optimizer is self.optimizer and self.optimizer is not None:
            check_group_layout(state, "optimizer", self.optimizer.param_groups)
            self.optimizer.load_state_dict(state)
            return
        if self.engine.global_rank == 0:
            print(f"warning: optimizer state from a single-process checkpoint does not fit ZeRO stage "
                  f"{self.stage}; optimizer moments start fresh", file=sys.stderr)

    def _load_scheduler(self, state: dict[str, Any]) -> None:
        if self.scheduler is None or self.optimizer is None:
            return
        check_group_layout(state, "lr_scheduler", self.optimizer.param_groups)
        self.scheduler.load_state_dict(state)
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=False):
            group["lr"] = lr  # LambdaLR.load_state_dict alone leaves the optimizer at the initial lr

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Full weights into a prepared engine; the optimizer's fp32 masters follow them."""
        deepspeed = import_deepspeed()
        params = list(self.model.parameters())
        gather = (deepspeed.zero.GatheredParameters(params, modifier_rank=0) if self.stage == 3
                  else contextlib.nullcontext())
        with gather:
            if self.stage < 3 or self.engine.global_rank == 0:
                self.model.load_state_dict(weights)
        refresh = getattr(self.engine.optimizer, "refresh_fp32_params", None)
        if self.optimizer is not None and refresh is not None:
            refresh()
        self._weights = None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else 0.0

