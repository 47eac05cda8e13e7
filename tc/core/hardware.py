"""The run-wide hardware knobs every backend reads the same way: numeric precision and host threads.

``runconfig.precision`` is the one portable choice; a backend section may override it (``cuda.precision``,
``deepspeed.bf16``/``fp16``, ``cerebras.half_dtype``), and a backend may support only some precisions.
:func:`resolve_precision` applies that rule once, so every backend names the key that chose a precision
in the same words. :func:`set_host_threads` is the one place ``runconfig.num_threads`` takes effect
(``cpu.num_threads`` is its deprecated alias, moved there by :func:`move_deprecated_keys` when a config
loads).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tc.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision and the config key that chose it (for error messages)."""

    name: str
    """``fp32``, ``bf16`` or ``fp16``."""
    key: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype eager forward passes autocast to; None runs fp32 as is."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)


def resolve_precision(cfg: Any, backend: str, override: str | None = None, override_key: str = "",
                      supported: Sequence[str] = PRECISIONS,
                      instead_of_fp32: Callable[[], str | None] | None = None) -> Precision:
    """The precision ``backend`` runs: ``override`` (a backend section's own key) when set, else
    ``runconfig.precision``; ``instead_of_fp32`` may name a faster default for the fp32 default (bf16 on a
    GPU that has it). A precision outside ``supported`` is a ConfigError naming the key that chose it."""
    if override is not None:
        name, key = override, override_key
    else:
        name, key = cfg.runconfig.precision, "runconfig.precision"
        if name == "fp32" and instead_of_fp32 is not None:
            name = instead_of_fp32() or name
    if name not in supported:
        raise ConfigError(f"{key}: {name} is not supported on the {backend} backend "
                          f"(use {' or '.join(supported)})")
    return Precision(name, key)


def set_host_threads(cfg: Any, default_all_cores: bool) -> None:
    """Apply ``runconfig.num_threads`` to torch's intra-op pool. Unset, a one-process backend takes every
    core this process may use (``default_all_cores``); multi-process or device backends leave torch's
    default, which shares the cores between ranks."""
    threads = cfg.runconfig.num_threads
    if threads is None and default_all_cores:
        threads = len(os.sched_getaffinity(0))
    if threads:
        import torch

        torch.set_num_threads(threads)


DEPRECATED_KEYS = {("cpu", "num_threads"): ("runconfig", "num_threads")}
"""Old key -> the key that replaced it (same meaning)."""


class DeprecatedKey(FutureWarning):
    """A config key that still works but has a new name; shown by default, unlike DeprecationWarning."""


def move_deprecated_keys(data: dict[str, Any]) -> None:
    """Rewrite deprecated keys of a raw config (YAML + ``--set``) to their new names, with a warning.
    Both spellings with different values are a ConfigError rather than a silent pick."""
    for (old_section, old_key), (new_section, new_key) in DEPRECATED_KEYS.items():
        section = data.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        value = section.pop(old_key)
        if not section:
            data.pop(old_section)
        old, new = f"{old_section}.{old_key}", f"{new_section}.{new_key}"
        target = data.setdefault(new_section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{new_section}: expected a mapping")
        if new_key in target and target[new_key] != value:
            raise ConfigError(f"{old}={value!r} conflicts with {new}={target[new_key]!r}; "
                              f"{old} is a deprecated alias of {new}: set only {new}")
        target[new_key] = value
        warnings.warn(f"{old} is deprecated: use {new} (same meaning)", DeprecatedKey, stacklevel=2)
