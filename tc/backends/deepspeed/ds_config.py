"""The DeepSpeed JSON config: what tc derives from its own config (batch sizes, accumulation, clipping,
ZeRO, precision), the user's ``deepspeed.config`` merged in without contradicting it, and the checks
that refuse a bad combination before any rank starts."""

from __future__ import annotations

from typing import Any

from tc.backends.deepspeed.env import import_deepspeed, quiet
from tc.backends.deepspeed.precision import precision_flags
from tc.core.errors import ConfigError, first_line
from tc.core.sampling import check_divisible

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


def check_settings(cfg: Any, world: int, cuda: bool) -> None:
    """Refuse combinations DeepSpeed would reject only after every rank started (or would hang on)."""
    ds, batch, accum = cfg.deepspeed, cfg.train_input.batch_size, cfg.runconfig.grad_accum_steps
    check_divisible(batch, world, accum, ranks="deepspeed.num_processes")
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
        with quiet():
            DeepSpeedConfig(single)
    except Exception as exc:  # DeepSpeed raises assertions, ValueErrors and pydantic errors alike
        raise ConfigError(f"deepspeed.config: DeepSpeed rejects the config: {first_line(exc)}") from None
    del deepspeed

