"""The ``cerebras`` backend: the real cerebras.pytorch 2.10 (cstorch) API, on a CS-X appliance
(``backend_type: CSX``) or on cstorch's own CPU backend (``backend_type: CPU``) for checks without one.

cstorch owns the hardware-facing pieces: ``cstorch.compile`` places the model, ``@cstorch.trace`` wraps
the train and eval steps, data flows through ``cstorch.utils.data.DataLoader`` + ``DataExecutor``, values
come back to the host only in ``@cstorch.step_closure``, and checkpoints are written with ``cstorch.save``.

Three things shape the code:

* A DataExecutor runs a step's execution and step closures only when its iterator is asked for the next
  batch. The shared loop needs the loss as soon as ``train_step`` returns, so the runner advances the
  executor itself after each traced call (``_Feed``); the next batch is prefetched then.
* On CSX a traced step is traced once and replayed, and the real data is produced by ``input_fn`` on
  the appliance's worker nodes. So every per-step value (``loss_share``) is batch data, batches have a
  fixed number of rows (eval tails are filled with copies whose logits are dropped), and gradient
  accumulation is the compiler's micro-batching: the step's micro-batches are concatenated into one
  global batch, which gives the same token-mean loss.
* ``cstorch.save`` writes HDF5 (``.mdl``) that only cstorch reads. Every checkpoint is written there
  first, read back with ``cstorch.load`` and stored again as an ordinary tc ``.pt`` beside it, so other
  backends and environments (no cstorch, newer torch) load the very weights cstorch wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from tc.core.config import Section
from tc.core.errors import BackendUnavailable, CheckpointError, ConfigError
from tc.core.interfaces import Availability, Backend, Batch, OptimSpec, RankInfo, Runner, StepResult
from tc.plugins import hookimpl

if TYPE_CHECKING:
    import torch

    from tc.core.sampling import BatchPlan, StepRows

INSTALL_HINT = "pip install 'tc[cerebras]' in a Python 3.11 venv; it pins torch 2.4"
COMPILE_MODES = ("compile_only", "validate_only")
CORE_KEYS = ("index", "loss_share", "step_weight")
"""Keys the core adds to a batch; everything else is a model input."""
CPU_HALF_DTYPES = (None, "bfloat16")
ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


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


# -- checkpoint state conversion (pure functions: also used where no runner exists) ---------------
def materialize(obj: Any) -> Any:
    """Plain, in-memory tensors for everything ``cstorch.load`` returned as file-backed deferred ones."""
    import torch

    if isinstance(obj, torch.Tensor):
        return torch.empty(tuple(obj.shape), dtype=obj.dtype).copy_(obj)
    if isinstance(obj, dict):
        return {k: materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(materialize(v) for v in obj)
    if isinstance(obj, set):
        return sorted(obj, key=str)
    return obj


def _number(value: Any) -> float:
    return float(value.item()) if hasattr(value, "item") else float(value)


def optimizer_to_torch(native: dict[str, Any], kind: str, steps: int) -> dict[str, Any]:
    """A cstorch Adam/AdamW/SGD state dict in the layout of the matching ``torch.optim`` class.

    cstorch's Adam keeps ``beta1_power``/``beta2_power`` instead of a step count and stores Adam's L2
    weight decay as ``l2_regularization_rate``; torch wants ``step`` and ``weight_decay``. The powers
    stay beside ``step`` (torch ignores them) so a cerebras resume is exact."""
    import torch

    state = {}
    for idx, s in native["state"].items():
        if kind == "sgd":
            state[idx] = {k: v for k, v in s.items() if k == "momentum_buffer"}
        else:
            state[idx] = {"step": torch.tensor(float(steps)), **s}
    groups = []
    for g in native["param_groups"]:
        group = {k: v for k, v in g.items() if k not in ("correct_bias", "l2_regularization_rate")}
        group["lr"] = _number(g["lr"])
        if kind == "adam":
            group["weight_decay"] = float(g.get("l2_regularization_rate", 0.0))
        groups.append(group)
    return {"state": state, "param_groups": groups}


def optimizer_from_torch(saved: dict[str, Any], live: dict[str, Any], kind: str) -> dict[str, Any]:
    """The inverse of ``optimizer_to_torch``, shaped like ``live`` (the cstorch optimizer's state dict).

    Reads torch's own Adam/AdamW/SGD states too (another backend's checkpoint). cstorch's bias
    correction after t steps is beta^(t+1) (it starts at beta for step 1); saved powers are kept only
    while they still agree with ``step`` (another backend may have stepped on without updating them)."""
    if len(saved["param_groups"]) != len(live["param_groups"]):
        raise CheckpointError(
            f"optimizer state has {len(saved['param_groups'])} parameter groups, the model has "
            f"{len(live['param_groups'])}"
        )
    groups, betas = [], {}
    for sg, lg in zip(saved["param_groups"], live["param_groups"], strict=True):
        group = dict(lg)
        for key in ("lr", "betas", "eps", "momentum", "dampening", "nesterov", "amsgrad"):
            if key in sg and key in lg:
                group[key] = tuple(sg[key]) if key == "betas" else sg[key]
        weight_decay = float(sg.get("weight_decay", 0.0))
        if kind == "adam":
            group["l2_regularization_rate"], group["weight_decay"] = weight_decay, 0.0
        else:
            group["weight_decay"] = weight_decay
        groups.append(group)
        for idx in lg["params"]:
            betas[idx] = group.get("betas")
    state = {}
    for idx, s in saved["state"].items():
        state[idx] = {k: v for k, v in s.items() if k != "step"}
        if kind != "sgd" and "step" in s:
            state[idx].update(bias_powers(s, betas[idx], _number(s["step"])))
    return {"state": state, "param_groups": groups}


def bias_powers(s: dict[str, Any], betas: tuple[float, float], steps: float) -> dict[str, Any]:
    """cstorch's ``beta1_power``/``beta2_power`` after ``steps`` steps: the saved ones when they match."""
    import torch

    b1, b2 = betas
    expected = b1 ** (steps + 1)
    saved = s.get("beta1_power")
    if saved is not None and math.isclose(_number(saved), expected, rel_tol=1e-4):
        return {"beta1_power": s["beta1_power"], "beta2_power": s["beta2_power"]}
    return {"beta1_power": torch.tensor(expected, dtype=torch.float32),
            "beta2_power": torch.tensor(b2 ** (steps + 1), dtype=torch.float32)}


def schedule_state(spec: OptimSpec, steps: int, groups: int) -> dict[str, Any]:
    """The schedule's position in the layout of ``torch.optim.lr_scheduler.LambdaLR`` (what the eager
    backends keep), so any backend resumes the same schedule."""
    lr = spec.learning_rate * spec.lr_factor(steps)
    return {"base_lrs": [spec.learning_rate] * groups, "last_epoch": steps, "_step_count": steps + 1,
            "_last_lr": [lr] * groups, "lr_lambdas": [None] * groups, "verbose": False,
            "_get_lr_called_within_step": False}


def native_to_tc(native: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint read from a ``.mdl`` in tc's plain form (torch-layout optimizer)."""
    state = dict(native)
    kind = state.pop("optimizer_type", None)
    if "optimizer" in state and kind is not None:
        steps = int(state.get("lr_scheduler", {}).get("last_epoch", state.get("global_step", 0)))
        state["optimizer"] = optimizer_to_torch(state["optimizer"], kind, steps)
    return state


SCHEDULE_POSITION = ("last_epoch", "_last_value", "_step_count", "_get_called_within_step")


def schedule_shape(state: Any) -> Any:
    """A cstorch scheduler state without its position: equal for equal schedules."""
    if isinstance(state, dict):
        return {k: schedule_shape(v) for k, v in state.items() if k not in SCHEDULE_POSITION}
    if isinstance(state, (list, tuple)):
        return [schedule_shape(v) for v in state]
    return state


# -- data -------------------------------------------------------------------------------------------
def step_rows(step: StepRows) -> tuple[np.ndarray, float]:
    """All rows of a global step in micro-batch order, and their summed loss share (1.0 on one rank)."""
    parts = step.for_rank(RankInfo())
    return np.concatenate([rows for rows, _ in parts]), float(sum(share for _, share in parts))


class PlanStream:
    """What the cstorch DataLoader's ``input_fn`` returns: ``plan``'s steps as fixed-size batches.

    On CSX this object is deep-copied to the appliance workers and iterated there, so it holds only the
    dataset and the plan (no cstorch, no open files)."""

    def __init__(self, plan: BatchPlan, rows: int) -> None:
        self.plan = plan
        self.rows = rows

    def __len__(self) -> int:
        return sum(1 for _ in self.plan)

    def __iter__(self) -> Iterator[Batch]:
        for step in self.plan:
            yield self.collate(step)

    def collate(self, step: StepRows) -> Batch:
        import torch

        rows, share = step_rows(step)
        if len(rows) < self.rows:  # eval tail: copies of the last row, their logits are dropped
            rows = np.concatenate([rows, np.repeat(rows[-1:], self.rows - len(rows))])
        batch = self.plan.dataset.collate(rows, self.plan.pad_to)
        batch["index"] = batch["index"].to(torch.int32)
        batch["loss_share"] = torch.full((self.rows,), share, dtype=torch.float32)
        batch["step_weight"] = torch.full((self.rows,), step.weight, dtype=torch.float32)
        return batch


def plan_stream(plan: BatchPlan, rows: int) -> PlanStream:
    """The ``input_fn`` handed to ``cstorch.utils.data.DataLoader``."""
    return PlanStream(plan, rows)


class _Feed:
    """A running DataExecutor, advanced by the runner: ``end_step`` asks the executor for the next batch,
    which is when cstorch executes the step and runs its step closures."""

    _UNSET = object()

    def __init__(self, executor: Any) -> None:
        self._it = iter(executor)
        self._next: Any = self._UNSET
        self.done = False
        self.stepped = True

    def take(self) -> Batch:
        if self._next is self._UNSET:
            self._next = next(self._it)
        batch, self._next = self._next, None
        self.stepped = False
        return batch

    def end_step(self) -> None:
        self.stepped = True
        try:
            self._next = next(self._it)
        except StopIteration:
            self.done = True

    def close(self) -> None:
        self._it.close()


# -- the runner ---------------------------------------------------------------------------------------
class CerebrasRunner(Runner):
    """A compiled model with its cstorch optimizer, LR schedule and traced train/eval steps."""

    def __init__(self, backend: CerebrasBackend, model: torch.nn.Module, spec: OptimSpec | None) -> None:
        import cerebras.pytorch as cstorch

        self.backend = backend
        self.model = model
        self.spec = spec
        self.cs = backend.cs_backend()
        self.half_dtype = backend.half_dtype()
        if self.half_dtype is not None:
            cstorch.amp.set_half_dtype(self.half_dtype)
        self.compiled = cstorch.compile(model, self.cs)
        self.steps = 0
        self.optimizer = build_optimizer(spec, model) if spec else None
        self.scheduler = build_scheduler(spec, self.optimizer, 0) if spec else None
        self.scaler = backend.grad_scaler() if spec else None
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
            _, loss = self.compiled({k: v for k, v in batch.items() if k not in CORE_KEYS})
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
            logits, _ = self.compiled({k: v for k, v in batch.items() if k not in (*CORE_KEYS, "labels")})
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
            state["lr_scheduler"] = schedule_state(self.spec, self.steps, len(self.optimizer.param_groups))
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
            return _number(self.values["lr"])
        return self.spec.learning_rate * self.spec.lr_factor(self.steps) if self.spec else 0.0


def build_optimizer(spec: OptimSpec, model: torch.nn.Module) -> Any:
    """The cstorch optimizer for ``spec``, weight decay on matrices only (``OptimSpec.param_groups``).

    cstorch's Adam turns ``weight_decay`` into ``l2_regularization_rate`` but only where a group does not
    set it, so each group sets its own (otherwise the no-decay group would get the default)."""
    import cerebras.pytorch as cstorch

    groups = spec.param_groups(model)
    kind = spec.optimizer_type
    if kind == "adamw":
        return cstorch.optim.AdamW(groups, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps)
    if kind == "adam":
        groups = [{"params": g["params"], "l2_regularization_rate": g["weight_decay"]} for g in groups]
        return cstorch.optim.Adam(groups, lr=spec.learning_rate, betas=spec.betas, eps=spec.eps)
    if kind == "sgd":
        return cstorch.optim.SGD(groups, lr=spec.learning_rate, momentum=spec.momentum)
    raise ConfigError(f"optimizer.optimizer_type: unknown optimizer {kind!r} (valid: adamw, adam, sgd)")


def build_scheduler(spec: OptimSpec, optimizer: Any, start: int) -> Any:
    """cstorch LR schedulers equal to ``OptimSpec.lr_factor`` from step ``start`` on.

    Warmup is a ``LinearLR`` up to the peak, then ``LinearLR`` down to 0 (or ``ConstantLR``), joined by
    ``SequentialLR``. Resuming builds the schedule at its position instead of replaying steps, which
    works the same on CSX, where schedulers are traced once."""
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


# -- the backend --------------------------------------------------------------------------------------
class CerebrasBackend(Backend):
    name = "cerebras"
    aliases = ("cerebras-appliance",)
    description = "Cerebras CS-X through cerebras.pytorch 2.10 (backend_type CSX), or cstorch's CPU backend"
    config_model = CerebrasConfig
    static_shapes = True
    modes = ("train", "eval", "train_and_eval", *COMPILE_MODES)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._feeds: list[_Feed] = []
        self._mode_flags: dict[str, bool] = {}
        self._cs: Any = None

    @property
    def settings(self) -> CerebrasConfig:
        return self.cfg.cerebras

    @property
    def is_csx(self) -> bool:
        return self.settings.backend_type == "CSX"

    @classmethod
    def is_available(cls) -> Availability:
        if importlib.util.find_spec("cerebras") is None or not importlib.util.find_spec("cerebras.pytorch"):
            return Availability(False, f"cerebras.pytorch not installed ({INSTALL_HINT})")
        try:
            import cerebras.pytorch  # noqa: F401
        except Exception as exc:  # a broken install raises anything from ImportError to RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Availability(False, f"cerebras.pytorch does not import ({first}); {INSTALL_HINT}")
        return Availability(True)

    def device_description(self) -> str:
        import cerebras.pytorch as cstorch

        where = f"CS-X x{self.settings.num_csx}" if self.is_csx else "cstorch CPU backend"
        half = self.half_dtype() or "none"
        return f"cerebras {where} (cerebras.pytorch {cstorch.__version__}, half dtype {half})"

    def setup(self) -> None:
        available = self.is_available()
        if not available.ok:
            raise BackendUnavailable(f"backend 'cerebras' is not available here: {available.reason}")
        self.check_precision()
        threads = self.cfg.runconfig.num_threads
        if threads and not self.is_csx:
            import torch

            torch.set_num_threads(threads)

    def teardown(self) -> None:
        while self._feeds:
            self._feeds.pop().close()
        prune_orphans(Path(self.cfg.runconfig.model_dir))

    # precision
    def half_dtype(self) -> str | None:
        explicit = self.settings.half_dtype
        return explicit or {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}[self.cfg.runconfig.precision]

    def loss_scaling(self) -> float | str | None:
        factor = self.settings.loss_scaling_factor
        if factor is None:
            return "dynamic" if self.half_dtype() in ("float16", "cbfloat16") else None
        return None if factor == 1.0 else factor

    def check_precision(self) -> None:
        """Refuse, before anything runs, what cstorch 2.10's CPU backend cannot do."""
        if self.is_csx:
            return
        half = self.half_dtype()
        if half not in CPU_HALF_DTYPES:
            key = "cerebras.half_dtype" if self.settings.half_dtype else "runconfig.precision"
            raise ConfigError(f"{key}: cstorch's CPU backend runs mixed precision in bfloat16 only, "
                              f"not {half} (use bf16, or backend_type CSX)")
        if self.settings.loss_scaling_factor not in (None, 1.0):
            raise ConfigError("cerebras.loss_scaling_factor: loss scaling needs backend_type CSX "
                              "(cstorch 2.10's GradScaler does not run on its CPU backend)")

    def grad_scaler(self) -> Any:
        scaling = self.loss_scaling()
        if scaling is None or not self.is_csx:
            return None
        import cerebras.pytorch as cstorch

        s = self.settings
        return cstorch.amp.GradScaler(
            loss_scale=scaling, init_scale=s.initial_loss_scale, steps_per_increase=s.steps_per_increase,
            min_loss_scale=s.min_loss_scale, max_loss_scale=s.max_loss_scale,
        )

    # the cstorch backend (one per process)
    def cs_backend(self) -> Any:
        """The process's cstorch backend, made on first use from this config (and compile/validate flags)."""
        if self._cs is not None:
            return self._cs
        import cerebras.pytorch as cstorch

        current = cstorch.current_backend(raise_exception=False, raise_warning=False)
        if current is not None and self._mode_flags:
            raise ConfigError(f"--mode {next(iter(self._mode_flags))}: this process already has a cstorch "
                              "backend created without it (run the mode in a fresh tc process)")
        if current is not None:
            self._cs = current
            return current
        kwargs: dict[str, Any] = {"artifact_dir": str(self.artifact_dir()), **self._mode_flags}
        if self.is_csx:
            kwargs.update(self.csx_arguments())
            self.set_csx_flags()
        try:
            self._cs = cstorch.backend(self.settings.backend_type, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(self._describe_refusal(exc)) from None
        return self._cs

    def artifact_dir(self) -> Path:
        return self.settings.artifact_dir or Path(self.cfg.runconfig.model_dir) / "cerebras_logs"

    def _describe_refusal(self, exc: Exception) -> str:
        """cstorch's own words when it refuses the backend arguments (compile/validate flags on CPU)."""
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        if self._mode_flags:
            mode = next(iter(self._mode_flags))
            return (f"--mode {mode}: cstorch refuses it on backend_type {self.settings.backend_type}: "
                    f"{message} ({mode} needs backend_type CSX and a Wafer-Scale Cluster)")
        return f"cerebras: cstorch.backend({self.settings.backend_type!r}) failed: {message}"

    def csx_arguments(self) -> dict[str, Any]:
        import cerebras.pytorch as cstorch

        s = self.settings
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

    def set_csx_flags(self) -> None:
        import cerebras.pytorch as cstorch

        s = self.settings
        if s.precision_opt_level is not None:
            cstorch.backends.csx.precision.optimization_level = s.precision_opt_level
        mbs: Any = s.micro_batch_size
        accum = self.cfg.runconfig.grad_accum_steps
        if mbs == "auto" and accum > 1:
            mbs = self.cfg.train_input.batch_size // accum
        cstorch.backends.csx.performance.micro_batch_size = mbs

    def to_host(self, state: dict[str, Any]) -> dict[str, Any]:
        """Host copies of a state dict's tensors; on CSX fetched by a cstorch.save/load round trip."""
        import torch

        if not self.is_csx:
            return torch.utils._pytree.tree_map_only(torch.Tensor, lambda t: t.detach().cpu().clone(), state)
        import tempfile

        import cerebras.pytorch as cstorch

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "state.mdl")
            cstorch.save(state, path)
            return materialize(cstorch.load(path))

    # running
    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        return CerebrasRunner(self, model, spec)

    def current_feed(self) -> _Feed:
        if not self._feeds:
            raise ConfigError("cerebras: steps must run on batches from CerebrasBackend.batches() "
                              "(a cstorch DataExecutor drives the execution)")
        return self._feeds[-1]

    def batches(self, plan: BatchPlan) -> Iterator[list[Batch]]:
        """One global batch per step, through cstorch DataLoaders + DataExecutors.

        Training runs one executor per stretch between the steps where the loop evaluates or saves (as
        the Model Zoo trainer does), so an evaluation never runs inside a live training executor and the
        weights are retrievable at each executor's last step on CSX."""
        for part in self.segments(plan) if plan.train else [plan]:
            yield from self._execute(part)

    def segments(self, plan: BatchPlan) -> list[BatchPlan]:
        """``plan`` cut after every step the loop evaluates (selection split) or checkpoints at."""
        per_epoch = plan.steps_per_epoch()
        if per_epoch == 0:
            return [plan]
        first = plan.start_epoch * per_epoch + plan.start_position
        last = first + (plan.max_steps if plan.max_steps is not None else per_epoch - plan.start_position)
        rc = self.cfg.runconfig
        every = [k for k in (rc.checkpoint_steps, (rc.eval_frequency or per_epoch) if rc.selection_split else None)
                 if k]
        cuts = sorted({g for k in every for g in range(first + 1, last) if g % k == 0} | {last})
        parts, start = [], first
        for end in cuts:
            parts.append(dataclasses.replace(plan, start_epoch=start // per_epoch, start_position=start % per_epoch,
                                             max_steps=end - start))
            start = end
        return parts

    def _execute(self, plan: BatchPlan) -> Iterator[list[Batch]]:
        """One DataExecutor over ``plan``. The model inputs are the executor's (device) tensors; ``index``
        holds the step's real rows, from the same plan on the host (CSX hosts never see worker batches)."""
        import cerebras.pytorch as cstorch
        import torch

        num_steps = sum(1 for _ in plan)
        if num_steps == 0:
            return
        self.cs_backend()
        loader = cstorch.utils.data.DataLoader(plan_stream, plan, plan.batch_size)
        executor = cstorch.utils.data.DataExecutor(loader, num_steps=num_steps, **self._executor_args(plan))
        feed = _Feed(executor)
        self._feeds.append(feed)
        try:
            for step in plan:
                if feed.done:
                    return
                rows, _ = step_rows(step)
                batch = feed.take()
                yield [{**batch, "index": torch.from_numpy(rows.astype(np.int64))}]
                if not feed.stepped:  # the caller took the batch without running a step on it
                    feed.end_step()
        finally:
            if feed in self._feeds:
                self._feeds.remove(feed)
            feed.close()

    def _executor_args(self, plan: BatchPlan) -> dict[str, Any]:
        if not plan.train:
            return {"activation_steps": 1}
        args: dict[str, Any] = {"checkpoint_steps": plan.max_steps}
        if self.settings.activation_steps is not None:
            args["activation_steps"] = self.settings.activation_steps
        return args

    # checkpoints
    def save_checkpoint(self, runner: Runner, path: Path, extra: dict[str, Any]) -> None:
        """``cstorch.save`` to ``<name>.mdl``, then the same state read back with ``cstorch.load`` as tc's
        ``<name>.pt`` (torch-layout optimizer) that every backend loads."""
        from tc.core import checkpoint

        assert isinstance(runner, CerebrasRunner)
        path = Path(path)
        mdl = path.with_suffix(".mdl")
        write_mdl({**runner.native_state(), **extra}, mdl)
        state = native_to_tc(read_mdl(mdl))
        checkpoint.atomic_save({**state, **extra}, path)
        prune_orphans(path.parent)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        from tc.core import checkpoint

        path = Path(path)
        if path.suffix == ".mdl":
            return native_to_tc(read_mdl(path))
        return checkpoint.load_file(path)

    # compile_only / validate_only
    def run_mode(self, mode: str, job: Any) -> None:
        """``--mode compile_only|validate_only``: build the model and run one traced training step through
        a cstorch backend created with that flag. cstorch accepts the flags on CSX only; on backend_type
        CPU its refusal is reported as a ConfigError quoting cstorch's message."""
        if mode not in COMPILE_MODES:
            raise ConfigError(f"--mode {mode}: not a cerebras compile mode ({', '.join(COMPILE_MODES)})")
        from tc.core.sampling import BatchPlan
        from tc.core.trainer import optim_spec

        self._mode_flags = {mode: True}
        self.cs_backend()
        cfg = job.cfg
        plan = BatchPlan(job.task.dataset("train"), cfg.train_input.batch_size, train=True,
                         seed=cfg.runconfig.seed, bucket=False, drop_last=True,
                         pad_to=cfg.train_input.max_sequence_length, accum=cfg.runconfig.grad_accum_steps,
                         max_steps=1)
        runner = self.prepare(job.task.build_model(), optim_spec(cfg, cfg.runconfig.max_steps or 1))
        try:
            for micro_batches in self.batches(plan):
                runner.train_step(micro_batches)
        except RuntimeError as exc:  # e.g. "torch-to-cirh lowering failed" without the Cerebras compiler tools
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailable(f"--mode {mode}: cstorch could not compile the model: {first} "
                                     "(--debug shows cstorch's full report)") from exc
        job.reporter.info(f"{mode}: traced one training step on {self.device_description()}; "
                          f"artifacts in {self.artifact_dir()}")


def write_mdl(state: dict[str, Any], path: Path) -> None:
    """``cstorch.save`` to a temporary name, then rename, so ``path`` is never half written."""
    import cerebras.pytorch as cstorch

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        cstorch.save(state, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CheckpointError(f"{path}: could not write checkpoint ({exc.strerror or exc})") from None


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_mdl(path: Path) -> dict[str, Any]:
    import cerebras.pytorch as cstorch

    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    beside = path.with_suffix(".pt")
    if beside.exists():  # tc writes a weights-only twin of every .mdl: read that, never unpickle
        from tc.core.checkpoint import load_file

        return load_file(beside)
    with path.open("rb") as f:
        if f.read(8) != HDF5_SIGNATURE:  # cstorch.load falls back to an unsafe torch.load otherwise
            raise CheckpointError(f"{path}: refusing to load: not an HDF5 cstorch checkpoint")
    try:
        state = materialize(cstorch.load(str(path)))
    except Exception as exc:  # cstorch raises ValueError, OSError or RuntimeError for bad files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable cstorch checkpoint ({first})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a tc checkpoint (no 'model' state)")
    return state


def prune_orphans(model_dir: Path) -> None:
    """Delete ``.mdl`` files whose ``.pt`` twin the loop's retention policy already removed."""
    from tc.core import checkpoint

    for _, mdl in checkpoint.list_checkpoints(model_dir, (".mdl",)):
        if not mdl.with_suffix(".pt").exists():
            with contextlib.suppress(OSError):
                mdl.unlink()


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(CerebrasBackend)

