"""The ``deepspeed`` Backend: launching (or being one of) the ranks, setting up the process group, the
engine for a model, collectives for evaluation and stop decisions, and checkpoint folders.

Every rank runs the shared loop on its slice of each global batch; losses are scaled so that a step's
loss and gradients equal the single-process step over the same global batch. Modules that import torch
(``checkpoint_io``, ``runner``, ``tc.core.checkpoint``) are imported inside the methods that need them:
this module is imported whenever plugins load (``tc --help``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tc.backends.deepspeed import launcher
from tc.backends.deepspeed.ds_config import check_settings, deepspeed_config, inference_config, validate_with_deepspeed
from tc.backends.deepspeed.env import INSTALL_HINT, cuda_available, import_deepspeed, silence_deepspeed, under_launcher
from tc.backends.deepspeed.precision import precision_name
from tc.backends.deepspeed.settings import DeepSpeedSettings
from tc.core.errors import ConfigError, first_line
from tc.core.hardware import set_host_threads
from tc.core.interfaces import Availability, Backend, OptimSpec, RankInfo, Runner
from tc.core.launching import ProcessLauncher

if TYPE_CHECKING:
    import torch


class DeepSpeedBackend(Backend):
    name = "deepspeed"
    description = "DeepSpeed ZeRO data parallelism over N processes (torchrun / deepspeed launcher)"
    config_model = DeepSpeedSettings
    checkpoint_suffix = ".ds"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.ds_config: dict[str, Any] | None = None

    @classmethod
    def is_available(cls) -> Availability:
        try:
            import_deepspeed()
        except ImportError:
            return Availability(False, INSTALL_HINT)
        except Exception as exc:  # a broken install (e.g. mismatched torch) should say why, not crash
            return Availability(False, f"deepspeed failed to import: {first_line(exc)}")
        return Availability(True)

    @property
    def settings(self) -> DeepSpeedSettings:
        return self.cfg.deepspeed

    def device_description(self) -> str:
        device = "cuda" if cuda_available() else "cpu"
        world = self.ranks.world_size
        if world == 1 and not under_launcher():  # before launching (e.g. --dry-run): the planned ranks
            with contextlib.suppress(ConfigError):
                world = launcher.planned_world_size(self.settings)
        return f"deepspeed ZeRO-{self.settings.zero_stage}, {world} x {device} ({precision_name(self.cfg)})"

    # -- launching -------------------------------------------------------------------------------
    def relaunch_command(self, argv: list[str]) -> list[str] | None:
        if under_launcher():
            return None
        world = launcher.planned_world_size(self.settings)
        if world <= 1 and self.settings.hostfile is None:
            return None
        check_settings(self.cfg, world, cuda_available())
        validate_with_deepspeed(deepspeed_config(self.cfg, world))
        return launcher.launch_command(self.settings, world, argv)

    @classmethod
    def process_launcher(cls) -> ProcessLauncher:
        """torchrun (a hostfile: DeepSpeed's launcher) from the flags alone: ``tc predict --num-processes``
        ranks run their own backend and never set this one up, so neither deepspeed nor its section is needed."""
        return launcher.FlagLauncher()

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self) -> None:
        cuda = cuda_available()
        if not under_launcher():  # one process: a process group of one, on a private port
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(self.settings.master_port or launcher.free_port()))
        world = int(os.environ["WORLD_SIZE"])
        check_settings(self.cfg, world, cuda)
        self.ds_config = deepspeed_config(self.cfg, world)
        validate_with_deepspeed(self.ds_config)  # a clean ConfigError, not a traceback per rank
        deepspeed = import_deepspeed()
        silence_deepspeed()
        if not cuda and not self.settings.cpu_shm_comm:
            import deepspeed.ops

            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # skip a 2-minute JIT build
        deepspeed.init_distributed(dist_backend=self.settings.dist_backend or ("nccl" if cuda else "gloo"),
                                   auto_mpi_discovery=False)
        import torch
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.ranks = RankInfo(dist.get_rank(), dist.get_world_size(), local_rank)
        if cuda:
            torch.cuda.set_device(local_rank)
        set_host_threads(self.cfg, default_all_cores=False)

    def teardown(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        from tc.backends.deepspeed.runner import DeepSpeedRunner
        from tc.backends.eager import build_optimizer, build_scheduler

        deepspeed = import_deepspeed()
        config = self.ds_config or deepspeed_config(self.cfg, self.ranks.world_size)
        if spec is None:
            config = inference_config(config)
        optimizer = build_optimizer(spec, model) if spec else None
        scheduler = build_scheduler(spec, optimizer) if spec and optimizer is not None else None
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                          config=config)
        return DeepSpeedRunner(engine, optimizer, scheduler, self.ranks.world_size)

    # -- collectives ---------------------------------------------------------------------------
    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        if self.ranks.world_size == 1:
            return [obj]
        collected: list[Any] = [None] * self.ranks.world_size
        dist.all_gather_object(collected, obj)
        return collected

    def agree(self, flag: bool) -> bool:
        """True on every rank when any rank's ``flag`` is set: a stop signal reaches ranks at different
        moments, and a rank that stops (and checkpoints) alone leaves the others in a collective."""
        import torch
        import torch.distributed as dist

        if self.ranks.world_size == 1:
            return flag
        device = torch.device("cuda", self.ranks.local_rank) if cuda_available() else torch.device("cpu")
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, runner: Runner, path: Path, extra: dict[str, Any]) -> None:
        """A ``.ds`` engine folder plus its consolidated ``.pt`` twin (``checkpoint_io.save_dir``)."""
        from tc.backends.deepspeed import checkpoint_io
        from tc.backends.deepspeed.runner import DeepSpeedRunner

        assert isinstance(runner, DeepSpeedRunner), "save_checkpoint needs a runner prepared by this backend"
        checkpoint_io.save_dir(self, runner, path, extra)

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """A DeepSpeed directory (``checkpoint_io.load_dir``), or any tc checkpoint file."""
        from tc.backends.deepspeed import checkpoint_io
        from tc.core import checkpoint

        path = Path(path)
        if not path.is_dir():
            return checkpoint.load_file(path)
        return checkpoint_io.load_dir(path, self.ranks.rank)
