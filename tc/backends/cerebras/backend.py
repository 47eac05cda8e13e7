"""The ``cerebras`` Backend: the process's cstorch backend (CSX or cstorch's CPU backend), the runner for
a model, batches through DataExecutors, and checkpoints as ``.mdl`` plus a tc ``.pt`` twin.

Modules that import torch (``tc.core.checkpoint``, ``mdl``, ``runner``) are imported inside the methods
that need them: this module is imported whenever plugins load (``tc --help``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.backends.cerebras import data, precision
from tc.backends.cerebras.modes import COMPILE_MODES, run_compile_mode
from tc.backends.cerebras.settings import CerebrasConfig
from tc.core.errors import ConfigError, first_line
from tc.core.hardware import set_host_threads
from tc.core.interfaces import Availability, Backend, Batch, OptimSpec, Runner

if TYPE_CHECKING:
    import torch

    from tc.core.sampling import BatchPlan

INSTALL_HINT = "pip install 'tc[cerebras]' in a Python 3.11 venv; it pins torch 2.4"


class CerebrasBackend(Backend):
    name = "cerebras"
    aliases = ("cerebras-appliance",)
    description = "Cerebras CS-X through cerebras.pytorch 2.10 (backend_type CSX), or cstorch's CPU backend"
    config_model = CerebrasConfig
    static_shapes = True
    modes = ("train", "eval", "train_and_eval", *COMPILE_MODES)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._feeds: list[data.Feed] = []
        self.mode_flags: dict[str, bool] = {}
        """``{mode: True}`` for a compile mode: passed to ``cstorch.backend`` when it is created."""
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
            return Availability(False, f"cerebras.pytorch does not import ({first_line(exc)}); {INSTALL_HINT}")
        return Availability(True)

    def device_description(self) -> str:
        import cerebras.pytorch as cstorch

        where = f"CS-X x{self.settings.num_csx}" if self.is_csx else "cstorch CPU backend"
        half = precision.half_dtype(self.cfg) or "none"
        return f"cerebras {where} (cerebras.pytorch {cstorch.__version__}, half dtype {half})"

    def setup(self) -> None:
        self.require_available()
        precision.check_precision(self.cfg)
        if not self.is_csx:
            set_host_threads(self.cfg, default_all_cores=False)

    def teardown(self) -> None:
        from tc.backends.cerebras import mdl

        while self._feeds:
            self._feeds.pop().close()
        mdl.prune_orphans(Path(self.cfg.runconfig.model_dir))

    # -- the cstorch backend (one per process) -----------------------------------------------------
    def cs_backend(self) -> Any:
        """The process's cstorch backend, made on first use from this config (and compile/validate flags)."""
        if self._cs is not None:
            return self._cs
        import cerebras.pytorch as cstorch

        current = cstorch.current_backend(raise_exception=False, raise_warning=False)
        if current is not None and self.mode_flags:
            raise ConfigError(f"--mode {next(iter(self.mode_flags))}: this process already has a cstorch "
                              "backend created without it (run the mode in a fresh tc process)")
        if current is not None:
            self._cs = current
            return current
        kwargs: dict[str, Any] = {"artifact_dir": str(self.artifact_dir()), **self.mode_flags}
        if self.is_csx:
            from tc.backends.cerebras.cluster import csx_arguments, set_csx_flags

            kwargs.update(csx_arguments(self.cfg))
            set_csx_flags(self.cfg)
        try:
            self._cs = cstorch.backend(self.settings.backend_type, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(self._describe_refusal(exc)) from None
        return self._cs

    def artifact_dir(self) -> Path:
        return self.settings.artifact_dir or Path(self.cfg.runconfig.model_dir) / "cerebras_logs"

    def _describe_refusal(self, exc: Exception) -> str:
        """cstorch's own words when it refuses the backend arguments (compile/validate flags on CPU)."""
        message = f"{type(exc).__name__}: {first_line(exc)}"
        if self.mode_flags:
            mode = next(iter(self.mode_flags))
            return (f"--mode {mode}: cstorch refuses it on backend_type {self.settings.backend_type}: "
                    f"{message} ({mode} needs backend_type CSX and a Wafer-Scale Cluster)")
        return f"cerebras: cstorch.backend({self.settings.backend_type!r}) failed: {message}"

    def to_host(self, state: dict[str, Any]) -> dict[str, Any]:
        """Host copies of a state dict's tensors (``mdl.to_host``)."""
        from tc.backends.cerebras import mdl

        return mdl.to_host(state, self.is_csx)

    # -- running ----------------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        from tc.backends.cerebras.runner import CerebrasRunner

        return CerebrasRunner(self, model, spec)

    def current_feed(self) -> data.Feed:
        if not self._feeds:
            raise ConfigError("cerebras: steps must run on batches from CerebrasBackend.batches() "
                              "(a cstorch DataExecutor drives the execution)")
        return self._feeds[-1]

    def batches(self, plan: BatchPlan) -> Iterator[list[Batch]]:
        """One global batch per step, through cstorch DataLoaders + DataExecutors.

        Training runs one executor per stretch between the steps where the loop evaluates or saves (the
        plan's ``Cadence``), so an evaluation never runs inside a live training executor and the weights
        are retrievable at each executor's last step on CSX."""
        for part in self.segments(plan) if plan.train else [plan]:
            yield from data.execute(part, self._feeds, self.settings.activation_steps, ready=self.cs_backend)

    def segments(self, plan: BatchPlan) -> list[BatchPlan]:
        """``plan`` cut after every step the loop evaluates or checkpoints at (``data.segments``)."""
        return data.segments(plan, self.cfg.runconfig)

    # -- checkpoints -----------------------------------------------------------------------------------
    def save_checkpoint(self, runner: Runner, path: Path, extra: dict[str, Any]) -> None:
        """``cstorch.save`` to ``<name>.mdl``, then the same state read back with ``cstorch.load`` as tc's
        ``<name>.pt`` (torch-layout optimizer) that every backend loads."""
        from tc.backends.cerebras import mdl
        from tc.backends.cerebras.runner import CerebrasRunner
        from tc.backends.cerebras.state import native_to_tc
        from tc.core import checkpoint

        assert isinstance(runner, CerebrasRunner)
        path = Path(path)
        target = path.with_suffix(".mdl")
        mdl.write_mdl({**runner.native_state(), **extra}, target)
        state = native_to_tc(mdl.read_mdl(target))
        checkpoint.atomic_save({**state, **extra}, path)
        mdl.prune_orphans(path.parent)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        from tc.backends.cerebras import mdl
        from tc.backends.cerebras.state import native_to_tc
        from tc.core import checkpoint

        path = Path(path)
        if path.suffix == ".mdl":
            return native_to_tc(mdl.read_mdl(path))
        return checkpoint.load_file(path)

    def run_mode(self, mode: str, job: Any) -> None:
        """``--mode compile_only|validate_only`` (``modes.run_compile_mode``)."""
        run_compile_mode(self, mode, job)
