"""The ``deepspeed`` backend: data parallelism over several processes with DeepSpeed ZeRO (stages 0-3).

``tc run --backend deepspeed --num-processes N`` relaunches itself under torchrun (or DeepSpeed's own
launcher for multi-node hostfiles). Every rank runs the shared loop on its slice of each global batch;
losses are scaled so that a step's loss and gradients equal the single-process step over the same global
batch. Checkpoints are DeepSpeed directories (``checkpoint_<step>.ds/``, resumable with optimizer state)
plus a consolidated single-file tc checkpoint beside each one that the cpu and cuda backends load.

Nothing here imports deepspeed or torch at module import: ``tc --help`` loads this plugin and must stay
fast. DeepSpeed picks its accelerator when first imported, so ``DS_ACCELERATOR=cpu`` is set before that
on machines without CUDA.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tc.core.config import Section
from tc.core.errors import CheckpointError, ConfigError
from tc.core.interfaces import Availability, Backend, Batch, OptimSpec, RankInfo, Runner, StepResult
from tc.plugins import hookimpl

if TYPE_CHECKING:
    import torch

INSTALL_HINT = "deepspeed not installed (pip install 'tc[deepspeed]')"
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
"""Set by torchrun and the deepspeed launcher: a process that has them is a rank and never relaunches."""
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")
CLIENT_KEY = "tc"
"""Namespace of tc's state inside DeepSpeed's model-states file (its own keys sit at the top level)."""
DS_DIR_KEY = "deepspeed_checkpoint"
"""Marks a state read from a DeepSpeed directory: the runner then restores optimizer state from it."""
RNG_FILE = "tc_rng_rank{rank}.pt"
DS_PICKLED_CLASSES = frozenset({
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
})
"""The only classes DeepSpeed's own checkpoint files pickle; anything else is refused before loading,
because DeepSpeed reads its files with ``weights_only=False``."""


class DeepSpeedSettings(Section):
    """The ``deepspeed:`` YAML section. tc fills batch sizes, accumulation and clipping itself."""

    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_param: Literal["none", "cpu"] = "none"
    """Parameter offload needs ZeRO stage 3."""
    bf16: bool | None = None
    """None: follow runconfig.precision."""
    fp16: bool | None = None
    """None: follow runconfig.precision (fp16 needs CUDA)."""
    num_processes: int | None = Field(None, gt=0)
    """Ranks to launch on this machine (per node with a hostfile); ``--num-processes`` sets it."""
    hostfile: Path | None = None
    """DeepSpeed hostfile (``host slots=N`` lines) for multi-node runs; implies launcher=deepspeed."""
    launcher: Literal["torchrun", "deepspeed"] | None = None
    """None: torchrun on one machine, the deepspeed launcher with a hostfile."""
    master_port: int | None = Field(None, gt=0, lt=65536)
    """None: a free port."""
    dist_backend: str | None = None
    """torch.distributed backend; None: nccl with CUDA, gloo on CPU."""
    cpu_shm_comm: bool = False
    """Use DeepSpeed's shared-memory CPU allreduce (JIT-compiled once, ~2 minutes); gloo otherwise."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Merged into the generated DeepSpeed JSON config for anything tc does not set."""


# -- environment ---------------------------------------------------------------------------------
def under_launcher() -> bool:
    return any(key in os.environ for key in LAUNCHER_ENV)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def import_deepspeed() -> Any:
    """Import deepspeed with its accelerator chosen first (it detects one once, at import)."""
    if "deepspeed" not in sys.modules and "DS_ACCELERATOR" not in os.environ and not cuda_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed

    return deepspeed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hostfile_slots(path: Path) -> list[int]:
    """Slots per host of a DeepSpeed hostfile (``worker-1 slots=4``), so the world size is known early."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"deepspeed.hostfile: cannot read {path} ({exc.strerror or exc})") from None
    slots = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        found = [w.split("=", 1)[1] for w in words[1:] if w.startswith("slots=")]
        if len(found) != 1 or not found[0].isdigit() or int(found[0]) < 1:
            raise ConfigError(f"{path}:{number}: expected 'HOST slots=N', got {line.strip()!r}")
        slots.append(int(found[0]))
    if not slots:
        raise ConfigError(f"deepspeed.hostfile: {path} lists no hosts")
    return slots


def planned_world_size(settings: DeepSpeedSettings) -> int:
    """Ranks a launch will start: hosts x per-node processes with a hostfile, else num_processes."""
    if settings.hostfile is None:
        return settings.num_processes or 1
    slots = hostfile_slots(settings.hostfile)
    return len(slots) * settings.num_processes if settings.num_processes else sum(slots)


# -- DeepSpeed JSON config -----------------------------------------------------------------------
OWNED_KEYS = {
    ("train_batch_size",): "train_input.batch_size",
    ("train_micro_batch_size_per_gpu",): "train_input.batch_size / (ranks x runconfig.grad_accum_steps)",
    ("gradient_accumulation_steps",): "runconfig.grad_accum_steps",
    ("gradient_clipping",): "optimizer.max_gradient_norm",
    ("zero_optimization", "stage"): "deepspeed.zero_stage",
    ("zero_optimization", "offload_optimizer", "device"): "deepspeed.offload_optimizer",
    ("zero_optimization", "offload_param", "device"): "deepspeed.offload_param",
    ("bf16", "enabled"): "deepspeed.bf16",
    ("fp16", "enabled"): "deepspeed.fp16",
}
"""DeepSpeed keys tc derives from its own config: ``deepspeed.config`` may repeat them, not contradict."""


def precision_flags(cfg: Any) -> tuple[bool, bool]:
    """(bf16, fp16): explicit deepspeed keys win, else runconfig.precision decides."""
    ds, precision = cfg.deepspeed, cfg.runconfig.precision
    bf16 = ds.bf16 if ds.bf16 is not None else precision == "bf16"
    fp16 = ds.fp16 if ds.fp16 is not None else precision == "fp16"
    return bf16, fp16


def check_settings(cfg: Any, world: int, cuda: bool) -> None:
    """Refuse combinations DeepSpeed would reject only after every rank started (or would hang on)."""
    ds, batch, accum = cfg.deepspeed, cfg.train_input.batch_size, cfg.runconfig.grad_accum_steps
    if batch % (world * accum):
        raise ConfigError(
            f"train_input.batch_size={batch} must divide by deepspeed.num_processes ({world} ranks) x "
            f"runconfig.grad_accum_steps={accum}"
        )
    bf16, fp16 = precision_flags(cfg)
    if bf16 and fp16:
        raise ConfigError("deepspeed.bf16 and deepspeed.fp16 are both on (runconfig.precision sets one); "
                          "pick one")
    if fp16 and not cuda:
        raise ConfigError("deepspeed.fp16 / runconfig.precision=fp16: DeepSpeed supports fp16 only on CUDA; "
                          "use bf16 or fp32 on CPU")
    if ds.offload_param != "none" and ds.zero_stage != 3:
        raise ConfigError(f"deepspeed.offload_param={ds.offload_param} needs deepspeed.zero_stage=3 "
                          f"(got {ds.zero_stage})")
    if ds.offload_optimizer != "none" and ds.zero_stage == 0:
        raise ConfigError(f"deepspeed.offload_optimizer={ds.offload_optimizer} needs "
                          "deepspeed.zero_stage >= 1 (got 0)")
    if ds.hostfile is not None and ds.launcher == "torchrun":
        raise ConfigError("deepspeed.hostfile needs deepspeed.launcher=deepspeed "
                          "(torchrun here starts one node)")
    if ds.dist_backend == "nccl" and not cuda:
        raise ConfigError("deepspeed.dist_backend=nccl needs CUDA; use gloo on CPU")
    for key in ("optimizer", "scheduler"):
        if key in ds.config:
            raise ConfigError(f"deepspeed.config.{key}: tc builds the {key} from the 'optimizer' section; "
                              "remove it")


def deepspeed_config(cfg: Any, world: int) -> dict[str, Any]:
    """The DeepSpeed JSON config for ``world`` ranks: tc's values, then ``deepspeed.config`` merged in."""
    ds, batch, accum = cfg.deepspeed, cfg.train_input.batch_size, cfg.runconfig.grad_accum_steps
    bf16, fp16 = precision_flags(cfg)
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": ds.offload_optimizer}
    if ds.offload_param != "none":
        zero["offload_param"] = {"device": ds.offload_param}
    generated: dict[str, Any] = {
        "train_batch_size": batch,
        "train_micro_batch_size_per_gpu": batch // (world * accum),
        "gradient_accumulation_steps": accum,
        "gradient_clipping": float(cfg.optimizer.max_gradient_norm or 0.0),
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": fp16},
        "zero_allow_untested_optimizer": True,  # tc passes torch optimizers (SGD is "untested")
        "zero_force_ds_cpu_optimizer": False,  # offload with a torch optimizer, no JIT-built CPU Adam
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return merge_user_config(generated, ds.config)


def merge_user_config(generated: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    for path, tc_key in OWNED_KEYS.items():
        theirs, ours = _lookup(user, path), _lookup(generated, path)
        if theirs is not _MISSING and ours is not _MISSING and theirs != ours:
            raise ConfigError(f"deepspeed.config.{'.'.join(path)}={theirs!r} conflicts with {tc_key} "
                              f"(= {ours!r}); set {tc_key} instead")
    return _deep_merge(generated, user)


_MISSING = object()


def _lookup(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _deep_merge(out[key], value) if both_dicts else value
    return out


def inference_config(config: dict[str, Any]) -> dict[str, Any]:
    """Evaluation without an optimizer: ZeRO-1/2 partition only optimizer state and gradients (and
    DeepSpeed refuses them without an optimizer), so they become stage 0; ZeRO-3 still shards weights."""
    zero = dict(config.get("zero_optimization", {}))
    if zero.get("stage", 0) in (1, 2):
        zero["stage"] = 0
        zero.pop("offload_optimizer", None)
    return {**config, "zero_optimization": zero}


def validate_with_deepspeed(config: dict[str, Any]) -> None:
    """Let DeepSpeed's own schema check ``config`` in this process, before any rank starts.

    Checked as a one-rank config (micro batch x accumulation) because no process group exists yet."""
    deepspeed = import_deepspeed()
    from deepspeed.runtime.config import DeepSpeedConfig

    single = {k: v for k, v in config.items() if k != "train_batch_size"}
    try:
        with _quiet():
            DeepSpeedConfig(single)
    except Exception as exc:  # DeepSpeed raises assertions, ValueErrors and pydantic errors alike
        raise ConfigError(f"deepspeed.config: DeepSpeed rejects the config: {_first_line(exc)}") from None
    del deepspeed


# -- checkpoints on disk ---------------------------------------------------------------------------
def model_states_file(tag_dir: Path) -> Path:
    """Rank 0's model-states file: ``mp_rank_00_...`` (stages 0-2) or ``zero_pp_rank_0_...`` (stage 3)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (tag_dir / name).is_file():
            return tag_dir / name
    raise CheckpointError(f"{tag_dir}: not a DeepSpeed checkpoint (no mp_rank_00_model_states.pt)")


def optimizer_files(tag_dir: Path) -> list[Path]:
    return sorted(tag_dir.glob("*_optim_states.pt"))


def refuse_pickled_code(tag_dir: Path) -> None:
    """DeepSpeed loads its files with weights_only=False: refuse any file that pickles other classes."""
    import torch

    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is None:  # torch < 2.5: nothing to scan with; DeepSpeed 0.19 needs newer torch anyway
        return
    for path in sorted(tag_dir.glob("*.pt")):
        try:
            unsafe = set(scan(str(path)))
        except Exception as exc:
            raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({_first_line(exc)})") from None
        if unsafe - DS_PICKLED_CLASSES:
            raise CheckpointError(f"{path}: refusing to load: the file pickles code "
                                  f"({sorted(unsafe - DS_PICKLED_CLASSES)[0]}), not just tensors")


def read_model_states(tag_dir: Path) -> dict[str, Any]:
    import torch

    path = model_states_file(tag_dir)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt DeepSpeed checkpoint ({_first_line(exc)})") from None


def consolidated_weights(tag_dir: Path, states: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Full fp32 model weights under the module's own keys, read from a DeepSpeed directory.

    ZeRO stages keep the exact fp32 master weights partitioned in the optimizer files; DeepSpeed's
    zero_to_fp32 stitches them back together without a process group. Stage 0 keeps the whole module
    in the model-states file."""
    if not optimizer_files(tag_dir):
        return {k: _fp32(v) for k, v in states["module"].items()}
    import_deepspeed()
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        with _quiet():
            state = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    except Exception as exc:
        raise CheckpointError(f"{tag_dir}: cannot consolidate ZeRO weights ({_first_line(exc)})") from None
    order = [k for k in states.get("module", {}) if k in state]  # the module's own key order
    return {k: _fp32(state[k]).clone() for k in [*order, *(k for k in state if k not in set(order))]}


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.is_floating_point() else tensor


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow DeepSpeed's prints and progress bars (stdout may carry ``--json`` output)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# -- backend -----------------------------------------------------------------------------------------
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
            return Availability(False, f"deepspeed failed to import: {_first_line(exc)}")
        return Availability(True)

    @property
    def settings(self) -> DeepSpeedSettings:
        return self.cfg.deepspeed

    def device_description(self) -> str:
        bf16, fp16 = precision_flags(self.cfg)
        precision = "bf16" if bf16 else "fp16" if fp16 else "fp32"
        device = "cuda" if cuda_available() else "cpu"
        world = self.ranks.world_size
        if world == 1 and not under_launcher():  # before launching (e.g. --dry-run): the planned ranks
            with contextlib.suppress(ConfigError):
                world = planned_world_size(self.settings)
        return f"deepspeed ZeRO-{self.settings.zero_stage}, {world} x {device} ({precision})"

    # -- launching -------------------------------------------------------------------------------
    def relaunch_command(self, argv: list[str]) -> list[str] | None:
        if under_launcher():
            return None
        s = self.settings
        world = planned_world_size(s)
        if world <= 1 and s.hostfile is None:
            return None
        check_settings(self.cfg, world, cuda_available())
        validate_with_deepspeed(deepspeed_config(self.cfg, world))
        port = str(s.master_port or free_port())
        if (s.launcher or ("deepspeed" if s.hostfile else "torchrun")) == "torchrun":
            return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
                    str(world), "--master_addr", "127.0.0.1", "--master_port", port, "-m", "tc.cli", *argv]
        command = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", port,
                   "--no_local_rank"]
        if s.hostfile is not None:
            command += ["--hostfile", str(s.hostfile)]
        if s.num_processes:
            command += ["--num_gpus", str(s.num_processes)]
        return [*command, "--module", "tc.cli", *argv]

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self) -> None:
        cuda = cuda_available()
        if not under_launcher():  # one process: a process group of one, on a private port
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(self.settings.master_port or free_port()))
        world = int(os.environ["WORLD_SIZE"])
        check_settings(self.cfg, world, cuda)
        self.ds_config = deepspeed_config(self.cfg, world)
        validate_with_deepspeed(self.ds_config)  # a clean ConfigError, not a traceback per rank
        deepspeed = import_deepspeed()
        _silence_deepspeed()
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
        if self.cfg.runconfig.num_threads:
            torch.set_num_threads(self.cfg.runconfig.num_threads)

    def teardown(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    def prepare(self, model: torch.nn.Module, spec: OptimSpec | None) -> Runner:
        import torch

        from tc.backends.eager import build_optimizer

        deepspeed = import_deepspeed()
        config = self.ds_config or deepspeed_config(self.cfg, self.ranks.world_size)
        if spec is None:
            config = inference_config(config)
        optimizer = build_optimizer(spec, model) if spec else None
        scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, spec.lr_factor)
                     if spec and optimizer is not None else None)
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
        """``path`` (a ``.ds`` directory) from ``engine.save_checkpoint``, then ``path.with_suffix('.pt')``.

        DeepSpeed writes into a staging folder that rank 0 renames into place once every rank finished,
        so a crash never leaves a half-written checkpoint under a real name. Every rank stores its own RNG
        state; the consolidated file (fp32 weights read back from the directory) is written by rank 0."""
        from tc.core import checkpoint

        assert isinstance(runner, DeepSpeedRunner), "save_checkpoint needs a runner prepared by this backend"
        path = Path(path)
        staging = path.parent / f".{path.name}.staging"
        if self.ranks.is_main:
            shutil.rmtree(staging, ignore_errors=True)  # leftovers of a crash mid-save
        self.barrier()
        state = {k: v for k, v in extra.items() if k != "rng"}
        with _quiet():
            runner.engine.save_checkpoint(str(staging), tag=path.name, client_state={CLIENT_KEY: state},
                                          save_latest=False)
        rng_file = staging / path.name / RNG_FILE.format(rank=self.ranks.rank)
        checkpoint.atomic_save({"rng": extra.get("rng")}, rng_file)
        self.barrier()
        if self.ranks.is_main:
            tag_dir = staging / path.name
            weights = consolidated_weights(tag_dir, read_model_states(tag_dir))
            shutil.rmtree(path, ignore_errors=True)  # same step saved again (e.g. after a resume)
            os.replace(tag_dir, path)
            shutil.rmtree(staging, ignore_errors=True)
            runner.remember_weights(weights)
            single = {"model": weights, **runner.scheduler_state(), **extra}
            checkpoint.atomic_save(single, path.with_suffix(".pt"))
        self.barrier()

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """A DeepSpeed directory (weights consolidated, tc state, this rank's RNG, and a marker that lets
        the runner restore optimizer state through the engine), or any tc checkpoint file."""
        from tc.core import checkpoint

        path = Path(path)
        if not path.is_dir():
            return checkpoint.load_file(path)
        refuse_pickled_code(path)
        states = read_model_states(path)
        client = states.get(CLIENT_KEY) or {}
        written_by = {"path": str(path), "ranks": len(optimizer_files(path)) or None,
                      "stage": _lookup(states.get("ds_config") or {}, ("zero_optimization", "stage"))}
        state = {**client, "model": consolidated_weights(path, states), DS_DIR_KEY: written_by}
        rng_file = path / RNG_FILE.format(rank=self.ranks.rank)
        if rng_file.is_file():
            import torch

            state["rng"] = torch.load(rng_file, map_location="cpu", weights_only=True)["rng"]
        if "lr_scheduler" in states and states["lr_scheduler"] is not None:
            state["lr_scheduler"] = states["lr_scheduler"]
        return state


def _silence_deepspeed() -> None:
    """DeepSpeed's per-rank deprecation warnings from torch say nothing a tc user can act on."""
    import logging

    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.*deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*reduce_scatter_tensor.*deprecated", category=FutureWarning)
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)


# -- runner ------------------------------------------------------------------------------------------
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
        keys = MODEL_INPUTS if with_labels else MODEL_INPUTS[:3]
        return {k: batch[k].to(self.engine.device) for k in keys if k in batch}

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
            weights = {k: _fp32(v) for k, v in self.engine._zero3_consolidated_16bit_state_dict().items()}
        else:
            weights = {k: _fp32(v) for k, v in self.model.state_dict().items()}
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
            with _quiet():
                loaded, _ = self.engine.load_checkpoint(
                    str(tag_dir.parent), tag=tag_dir.name, load_optimizer_states=optimizer,
                    load_lr_scheduler_states="lr_scheduler" in parts,
                )
        except (RuntimeError, ValueError, KeyError, AssertionError, OSError) as exc:
            raise CheckpointError(f"{tag_dir}: DeepSpeed cannot restore it ({_first_line(exc)})") from None
        if loaded is None:
            raise CheckpointError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
        self._weights = None

    def _load_plain_optimizer(self, state: dict[str, Any]) -> None:
        """A torch optimizer state (cpu/cuda backends) fits only when DeepSpeed did not wrap the optimizer."""
        if self.engine.optimizer is self.optimizer and self.optimizer is not None:
            self.optimizer.load_state_dict(state)
            return
        if self.engine.global_rank == 0:
            print(f"warning: optimizer state from a single-process checkpoint does not fit ZeRO stage "
                  f"{self.stage}; optimizer moments start fresh", file=sys.stderr)

    def _load_scheduler(self, state: dict[str, Any]) -> None:
        if self.scheduler is None or self.optimizer is None:
            return
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


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(DeepSpeedBackend)
