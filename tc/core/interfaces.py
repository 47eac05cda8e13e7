"""The three contracts tc is built on: Task, Dataset and Backend (with the Runner it prepares).

The shared loop in ``tc.core.trainer`` talks only to these. A task knows its data, model and metrics;
a backend knows its hardware: how to place the model, run one optimizer step, feed batches and read or
write checkpoint state. Neither knows the other's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    import torch

    from tc.core.config import RunConfig
    from tc.core.launching import ProcessLauncher
    from tc.core.sampling import BatchPlan

from tc.core.optim import OptimSpec  # re-exported: part of the Backend contract (``prepare``)

Batch = dict[str, "torch.Tensor"]
"""A collated batch. Model inputs plus three keys the core adds and models ignore:
``index`` (int64, the dataset row of each example), ``loss_share`` (float32 scalar, this
micro-batch's fraction of the whole global step's loss tokens) and ``step_weight`` (float32 scalar,
the factor the step's gradient, but not its reported loss, is multiplied by: ``StepRows.weight``)."""
CORE_KEYS = ("index", "loss_share", "step_weight")
"""The keys the core adds to a Batch; every other key is the model's (its inputs and its targets)."""
TARGETS = "labels"
"""The key of the model's targets: left out of evaluation batches, so no loss is computed there."""


def model_inputs(batch: Batch, with_targets: bool = True) -> Batch:
    """What a runner hands the model: ``batch`` without the core's keys (and without the targets for
    evaluation). One rule for every backend, so no backend names a model's inputs."""
    dropped = CORE_KEYS if with_targets else (*CORE_KEYS, TARGETS)
    return {k: v for k, v in batch.items() if k not in dropped}


class Dataset(ABC):
    """Features of one split, each a dict of 1-D int32 arrays of the example's own length.

    ``lengths`` drives length bucketing; ``loss_tokens`` (positions that carry loss per row) lets the
    core weight micro-batches so that a step's loss equals the single-process mean over the global batch.
    """

    lengths: np.ndarray
    loss_tokens: np.ndarray

    @abstractmethod
    def __len__(self) -> int: ...

    def describe(self) -> str:
        """One line for the run log (counts worth knowing, e.g. split sentences)."""
        return f"{len(self)} rows"

    @abstractmethod
    def collate(self, indices: Sequence[int], pad_to: int | None = None) -> Batch:
        """Stack rows ``indices`` into a Batch that includes ``index`` (the rows, int64).

        Pads to ``pad_to`` when given (static shapes), else to the longest row."""


def per_position(dataset: Dataset, batch: Batch, outputs: torch.Tensor) -> list[np.ndarray]:
    """Each example's first ``dataset.lengths[i]`` positions of a ``(B, T, ...)`` batch output, the padding
    cut off: how a model predicting per position of its (1-D) row is read. Tasks choose it, the core does not."""
    return [outputs[row, : int(dataset.lengths[index])].numpy() for row, index in enumerate(batch["index"].tolist())]


class Task(ABC):
    """A learning problem: its datasets, its model, its metrics.

    Tasks are registered through the ``register_tasks`` hook and constructed with the validated config.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    default_model: ClassVar[str] = ""
    """Name of the registered model used when the config's ``model.name`` is not set."""
    input_config: ClassVar[type[BaseModel]]
    """Schema of ``train_input`` / ``eval_input``; must have ``batch_size`` and ``max_sequence_length``."""
    selection_metric: ClassVar[str] = "f1"
    """The key of ``evaluate``'s metrics that picks the best checkpoint and drives early stopping: what
    "better" means is the task's to know; the core only compares numbers."""
    selection_mode: ClassVar[Literal["max", "min"]] = "max"
    """Whether a higher (``max``: F1, accuracy) or a lower (``min``: a loss, an error rate) score is better."""
    metric_label: ClassVar[str] = "F1"
    """How log lines and ``tc report`` name ``selection_metric`` to a person (e.g. ``entity-level F1``)."""
    model_commands: ClassVar[dict[str, str]] = {"predict": "tc.core.predicting:predict",
                                                "serve": "tc.core.predicting:serve"}
    """The commands that use a model directory this task trained, ``verb -> "module:attribute"`` of a click
    command (imported only when run): ``tc predict --model-dir D`` runs the ``predict`` of the task that
    trained D (``tc.core.dispatch``). Default: the task-generic JSONL ``predict`` and ``serve``, which need
    only a ``load`` whose predictor has ``predict_records`` (``tc.core.predicting``)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def dataset(self, split: str) -> Dataset:
        """Load one split ("train", "devel", "test" or a file path) as features."""

    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """A fresh model whose ``forward(batch)`` returns ``(logits, loss)``."""

    @abstractmethod
    def convert_foreign_state(self, path: Path) -> dict[str, torch.Tensor] | None:
        """Map a checkpoint tc did not write (e.g. a Hugging Face directory) to model keys, or None."""

    @abstractmethod
    def evaluate(self, dataset: Dataset, predictions: dict[int, np.ndarray]) -> dict[str, Any]:
        """Metrics from per-row predictions (``predictions_from_outputs``); ``selection_metric`` a number among them."""

    def predictions_from_outputs(self, dataset: Dataset, batch: Batch, outputs: torch.Tensor) -> list[np.ndarray]:
        """Each example's prediction, in batch order, out of a decoded batch output (class ids or their
        probabilities: ``(B, T)`` per position, ``(B,)`` for one label per example): its shape is the task's
        to know. Default ``per_position``; a one-label-per-example task returns ``list(outputs.numpy())``."""
        return per_position(dataset, batch, outputs)

    def selection_score(self, metrics: dict[str, Any]) -> float:
        """``metrics[selection_metric]`` as a float; one line naming the task and the key when the task's
        ``evaluate`` did not return it as a number (a task bug a traceback would only obscure)."""
        from tc.core.errors import PluginError

        value = metrics.get(self.selection_metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        got = f"{type(value).__name__} {value!r:.40}" if self.selection_metric in metrics else "missing"
        shown = ", ".join(sorted(map(str, metrics))[:8]) + (", ..." if len(metrics) > 8 else "") or "none"
        raise PluginError(f"the {self.name} task's metrics have no number under {self.selection_metric!r}, its "
                          f"selection_metric ({got}; its keys: {shown})")

    def meta(self) -> dict[str, Any]:
        """Stored in every checkpoint so a model directory is self-describing (labels, model config).
        A ``labels`` list there lets checkpoint errors name label counts."""
        return {}

    def write_assets(self, model_dir: Path) -> None:
        """Write what inference needs beside the weights (vocab, label map). Default: nothing."""

    def render_metrics(self, metrics: dict[str, Any]) -> Any:
        """A rich renderable of ``metrics`` for the terminal; default shows nothing task-specific."""
        return None

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "cpu", **options: Any) -> Any:
        """A ready predictor for a model directory this task trained (what ``tc.load`` returns for it)."""
        from tc.core.errors import CheckpointError

        raise CheckpointError(f"{model_dir}: the {cls.name} task has no predictor, so tc.load cannot open it")


class Model(ABC):
    """A registered model (``register_models``): the schema of the ``model`` section and the module it
    builds. A task builds whatever model ``model.name`` names; what the module's ``forward(batch)`` gets
    and returns is the task's contract (token_cls: ``(logits, loss)`` from its features).

    ``architecture`` is what the model is (a dataclass: sizes, number of classes), saved with a trained
    model so that inference can rebuild the module without the training config."""

    name: ClassVar[str] = ""
    config_model: ClassVar[type[BaseModel]]
    """Schema of the ``model`` section when ``model.name`` names this model."""
    architecture: ClassVar[type]
    """A dataclass whose fields are the section's keys (less ``name``) and ``num_classes``: what the default
    ``configure`` and ``restore`` build (a model whose architecture is derived otherwise overrides them)."""

    @classmethod
    def configure(cls, settings: BaseModel, num_classes: int) -> Any:
        """The architecture for the validated ``model`` section and ``num_classes`` output classes."""
        fields = {k: v for k, v in settings.model_dump().items() if k != "name"}
        return cls.architecture(**fields, num_classes=num_classes)

    @classmethod
    def restore(cls, saved: dict[str, Any]) -> Any:
        """The architecture a model directory saved (``dataclasses.asdict`` of ``configure``'s); a
        TypeError says it does not fit this version of the model."""
        return cls.architecture(**saved)

    @classmethod
    @abstractmethod
    def build(cls, config: Any, settings: BaseModel | None = None) -> torch.nn.Module:
        """A fresh module for ``config`` (an ``architecture``). With ``settings`` (a training run) it may
        start from pretrained weights they name; without (a model directory) weights are applied after."""


@dataclass
class StepResult:
    """What one optimizer step reports back to the loop (host floats, already reduced over ranks)."""

    loss: float
    grad_norm: float | None = None
    skipped: bool = False


class Runner(ABC):
    """A model made ready by a backend: the loop trains and evaluates only through this.

    ``train_step`` owns forward, backward, clipping, optimizer and scheduler steps for one global
    step, given this rank's micro-batches (gradient accumulation = more than one).
    """

    model: torch.nn.Module
    """The plain, unwrapped module (for state dicts and export)."""

    @abstractmethod
    def train_step(self, micro_batches: list[Batch]) -> StepResult: ...

    @abstractmethod
    def eval_step(self, batch: Batch) -> torch.Tensor:
        """Logits on the host (CPU) for one batch, computed without gradients."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """``{"model": ..., "optimizer": ..., "lr_scheduler": ...}`` in plain torch form."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], parts: set[str]) -> None:
        """Apply the ``parts`` (subset of model/optimizer/lr_scheduler) of ``state``."""

    @property
    @abstractmethod
    def lr(self) -> float: ...


@dataclass
class Availability:
    ok: bool
    reason: str = ""


@dataclass
class RankInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Backend(ABC):
    """One kind of hardware. Registered through ``register_backends``.

    Lifecycle used by the loop: ``setup()`` once, ``prepare(model, spec)`` -> Runner, then
    ``batches(plan)`` for data, ``save_checkpoint``/``load_checkpoint`` for state IO,
    ``gather`` to collect eval predictions from all ranks, ``teardown()`` at the end.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    config_model: ClassVar[type[BaseModel] | None] = None
    """Schema of this backend's optional YAML section (named after the backend)."""
    static_shapes: ClassVar[bool] = False
    """True when every batch must be padded to max_sequence_length (compiled graphs)."""
    checkpoint_suffix: ClassVar[str] = ".pt"
    modes: ClassVar[tuple[str, ...]] = ("train", "eval", "train_and_eval")
    """``--mode`` values this backend runs, and the only ones ``tc run --backend NAME`` accepts; modes
    beyond train/eval (e.g. cerebras's compile_only) go to ``run_mode``."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.ranks = RankInfo()

    @classmethod
    def is_available(cls) -> Availability:
        return Availability(True)

    @classmethod
    def require_available(cls) -> None:
        """Raise BackendUnavailable (saying why) unless ``is_available``: the one check before a backend
        runs anything, wherever it is started from (``tc run``, ``tc predict``, a backend's setup)."""
        available = cls.is_available()
        if not available.ok:
            from tc.core.errors import BackendUnavailable

            raise BackendUnavailable(f"backend {cls.name!r} is not available here: {available.reason}")

    def device_description(self) -> str:
        return "cpu"

    def run_mode(self, mode: str, job: Any) -> None:
        """Run a backend-specific ``--mode`` (one listed in ``modes`` beyond train/eval), e.g. the
        cerebras backend's compile_only and validate_only. ``job`` is a ``tc.core.trainer.Job``."""
        from tc.core.errors import ConfigError

        raise ConfigError(f"--mode {mode}: the {self.name} backend has no such mode")

    def relaunch_command(self, argv: list[str]) -> list[str] | None:
        """A command that runs this same ``tc`` invocation on several processes (a launcher such as
        torchrun), or None to run in this process. ``argv`` is the original ``tc`` argument list."""
        return None

    @classmethod
    def process_launcher(cls) -> ProcessLauncher | None:
        """The launcher for commands that run on several processes without this backend's setup (``tc
        predict --num-processes``); None: this backend cannot run several processes."""
        return None

    def setup(self) -> None:
        """Devices, process groups, seeds, threads."""

    def teardown(self) -> None:
        """Release what setup took (process groups)."""

    @abstractmethod
    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        """Wrap ``model`` for this hardware; ``spec`` is None for evaluation-only runs."""

    def batches(self, plan: BatchPlan) -> Iterator[list[Batch]]:
        """One list of this rank's micro-batches per global step of ``plan``, on the device."""
        import torch

        for step in plan:
            weight = torch.tensor(step.weight)
            yield [
                plan.dataset.collate(rows, plan.pad_to) | {"loss_share": torch.tensor(share), "step_weight": weight}
                for rows, share in step.for_rank(self.ranks)
            ]

    def gather(self, obj: Any) -> list[Any]:
        """Collect one picklable object per rank on every rank (identity on one process)."""
        return [obj]

    def barrier(self) -> None:
        """Wait for all ranks (no-op on one process)."""

    def agree(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (stop decisions must be collective)."""
        return flag

    def save_checkpoint(self, runner: Runner, path: Path, extra: dict[str, Any]) -> None:
        """Write runner state plus ``extra`` (global_step, rng, dataloader...) atomically to ``path``."""
        from tc.core import checkpoint

        if self.ranks.is_main:
            checkpoint.atomic_save({**runner.state_dict(), **extra}, path)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Read a checkpoint this or another backend wrote, as a plain state dict."""
        from tc.core import checkpoint

        return checkpoint.load_file(path)


@dataclass
class Registry:
    """What the plugins registered, by name. Filled by ``tc.plugins.manager``."""

    backends: dict[str, type[Backend]] = field(default_factory=dict)
    tasks: dict[str, type[Task]] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    providers: dict[tuple[str, str], str] = field(default_factory=dict)
    """(kind, name) -> plugin name that registered it."""
