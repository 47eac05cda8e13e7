"""The ``--set`` keys that ``tc predict``, ``tc serve`` and ``tc calibrate`` honour, and one line for the rest.

These commands run a trained model directory: its architecture, tokenization, window length, label
scheme and decoding are what it was trained with (``tc_task.json``), and nothing is trained. Their
``--set`` still goes through the full run-config schema (that is how the backend is configured), so
``--set model.hidden_size=999`` or ``--set train_input.max_sequence_length=64`` used to validate and then
be ignored: output that silently is not what was asked for. A key these commands cannot honour is
refused instead, naming the flag that does it where the command has one (read from the click command
itself, so the advice never names a flag the command lacks).

Honoured: ``runconfig.num_threads``, ``runconfig.precision`` (the torch model's autocast, so
``--precision fp32`` only) and the keys of the chosen backend's own section (``cpu.*`` with ``--backend
cpu``; ``cpu.num_threads`` is the deprecated spelling of ``runconfig.num_threads``). Unknown sections
and keys are left to the config schema, whose message names them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tc.core.errors import ConfigError

HONOURED = ("runconfig.num_threads", "runconfig.precision")
WHY = {
    "model": "the model is the one trained in {model_dir}, as its tc_task.json says",
    "train_input": "it configures training data; tokenization and window length are fixed by {model_dir}/tc_task.json",
    "eval_input": "it configures evaluation data; tokenization and window length are fixed by "
                  "{model_dir}/tc_task.json",
    "optimizer": "nothing is trained",
    "runconfig": "it is a training setting",
}
"""Per section whose keys these commands never read: why."""
INSTEAD = {
    "train_input.batch_size": "--batch-size", "eval_input.batch_size": "--batch-size",
    "train_input.data_dir": "--data-dir", "eval_input.data_dir": "--data-dir",
    "runconfig.model_dir": "--model-dir", "runconfig.checkpoint_path": "--checkpoint",
}
"""A key -> the flag that does what it would, in the commands that have that flag."""
ADVICE = {
    "model.decoding": "tc run --mode eval --model-dir {model_dir} --set model.decoding=... scores the model "
                      "decoded the other way",
    "train_input.max_sequence_length": "longer texts are cut into windows of the trained length, never truncated",
}
"""A key -> what to do instead, where no flag of these commands does it."""


def check_inference_sets(overrides: Sequence[Any], model_dir: Path | str, backend: str = "cpu",
                         precision: str = "fp32") -> None:
    """Refuse, in one ConfigError naming the ``--set`` and the key, every override that a command running
    ``model_dir`` on ``backend`` at ``precision`` would accept and ignore (see the module docstring)."""
    from tc.core.config import RunSettings, parse_override
    from tc.core.hardware import DEPRECATED_KEYS
    from tc.plugins.manager import load_plugins

    backends = set(load_plugins().registry.backends)
    deprecated = {f"{section}.{key}" for section, key in DEPRECATED_KEYS}
    for override in map(parse_override, overrides):
        for key in _leaf_keys(override.key, override.value):
            section, _, name = key.partition(".")
            if key in HONOURED or key in deprecated:
                if key == "runconfig.precision" and precision != "fp32":
                    raise ConfigError(f"{override.typed}: --precision {precision} runs onnxruntime, which "
                                      "runconfig.precision does not change (it sets --precision fp32's autocast)")
                continue
            if section in backends and section != backend:
                raise ConfigError(f"{override.typed}: --backend {backend} does not read the {section} section; "
                                  f"use --backend {section} (or drop this --set)")
            unknown = section == "runconfig" and name not in RunSettings.model_fields
            if section in WHY and not unknown:  # unknown sections and keys: the schema's message
                raise ConfigError(_refusal(override.typed, key, str(model_dir), backend))


def _leaf_keys(key: str, value: Any) -> Iterator[str]:
    """``section.key`` of an override; a whole section given as a mapping, each of its keys."""
    if "." not in key and isinstance(value, dict) and value:
        yield from (f"{key}.{name}" for name in value)
    else:
        yield ".".join(key.split(".")[:2])


def _refusal(typed: str, key: str, model_dir: str, backend: str) -> str:
    import click

    context = click.get_current_context(silent=True)
    command = context.command_path if context is not None else "inference"
    flags = {opt for param in context.command.params for opt in param.opts} if context is not None else set()
    section = key.split(".")[0]
    why = WHY[section].format(model_dir=model_dir)
    flag = INSTEAD.get(key)
    if flag in flags:
        return f"{typed}: {command} does not use {key}; use {flag}"
    instead = ADVICE[key].format(model_dir=model_dir) if key in ADVICE else (
        f"--set here takes {', '.join(HONOURED)} and {backend}.*")
    return f"{typed}: {command} does not use {key} ({why}); {instead}"
