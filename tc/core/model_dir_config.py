"""A trained model directory's own ``config.yaml`` as a config layer.

Every run writes its resolved config there. Evaluating or resuming that directory must build the model it
holds (architecture, labels, vocabulary), not the defaults: without ``--config`` the file is the base layer
under the command line's overrides; with ``--config``, the two files must agree on each section's
``identity_keys`` (a disagreement is an error naming both files and the key).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tc.core.config import (
    CORE_SECTIONS,
    MODEL_DIR_CONFIG,
    PER_INVOCATION,
    Override,
    RunSettings,
    pinpoint,
    resolve_paths,
    validate,
)
from tc.core.errors import ConfigError
from tc.core.readers import read_yaml, yaml_line


def model_dir_config(data: dict[str, Any]) -> Path | None:
    """``<runconfig.model_dir>/config.yaml`` when the run's model directory holds one (a trained model)."""
    rc = data.get("runconfig")
    model_dir = rc.get("model_dir") if isinstance(rc, dict) else None
    model_dir = RunSettings.model_fields["model_dir"].default if model_dir is None else model_dir
    if not isinstance(model_dir, str | Path) or not str(model_dir).strip():
        return None
    candidate = Path(model_dir).expanduser() / MODEL_DIR_CONFIG
    return candidate if candidate.is_file() else None


def base_layer(base: Path, sets: Sequence[Override], sections: dict[str, Any]) -> dict[str, Any]:
    """The model directory's config.yaml as the lowest layer: sections of backends not installed here are
    dropped, per-invocation keys are not inherited, the model directory is where it is now, and a run
    length typed on the command line replaces the one the model was trained with."""
    data = resolve_paths(read_yaml(base), base.resolve().parent)
    data = {k: _known(v, sections.get(k)) for k, v in data.items() if k in CORE_SECTIONS or k in sections}
    rc = data.setdefault("runconfig", {})
    if not isinstance(rc, dict):
        return data
    for key in PER_INVOCATION:
        rc.pop(key, None)
    rc["model_dir"] = str(base.parent)
    typed = {o.key for o in sets} | {f"runconfig.{k}" for o in sets if o.key == "runconfig"
                                     and isinstance(o.value, dict) for k in o.value}
    if "runconfig.max_steps" in typed:
        rc.pop("num_epochs", None)
    elif "runconfig.num_epochs" in typed:
        rc.pop("max_steps", None)
    elif rc.get("max_steps") is not None:
        rc.pop("num_epochs", None)  # an older tc wrote both; max_steps is the one its run used
    return data


def _known(section: Any, schema: type[BaseModel] | None) -> Any:
    """``section`` without keys its schema no longer has: tc wrote this file, maybe an older tc, and a key
    it has since renamed or dropped is not the user's mistake."""
    if not isinstance(section, dict) or schema is None:
        return section
    return {k: v for k, v in section.items() if k in schema.model_fields}


def check_agrees(schema: type[BaseModel], cfg: Any, path: Path, base: Path, sets: Sequence[Override],
                 sections: dict[str, Any], source: str) -> None:
    """A ``--config`` file must not contradict the trained model's config.yaml on what the model is
    (each section's ``identity_keys``). A ``--set`` or flag is an explicit override and wins."""
    base_data = base_layer(base, (), sections)
    name = (base_data.get("model") or {}).get("name") if isinstance(base_data.get("model"), dict) else None
    if name is not None and name != cfg.model.name:
        _disagree(path, base, ["model", "name"], cfg.model.name, name, sets, source)
    trained = validate(schema, base_data, str(base), base)
    for section in ("train_input", "eval_input", "model"):
        ours, theirs = getattr(cfg, section).model_dump(mode="json"), getattr(trained, section).model_dump(mode="json")
        for key in getattr(type(getattr(cfg, section)), "identity_keys", ()):
            if ours.get(key) != theirs.get(key):
                _disagree(path, base, [section, key], ours.get(key), theirs.get(key), sets, source)


def _disagree(path: Path, base: Path, loc: list[str], ours: Any, theirs: Any, sets: Sequence[Override],
              source: str) -> None:
    if pinpoint(source, path, sets, loc).startswith("--"):
        return  # typed on the command line: an explicit override
    line, base_line = yaml_line(path, loc, exact=True), yaml_line(base, loc, exact=True)
    ours_at = f"{path}:{line}" if line is not None else str(path)
    base_at = f"{base}:{base_line}" if base_line is not None else str(base)
    key, unset = ".".join(loc), " (not set)" if line is None else ""
    raise ConfigError(f"{ours_at}: {key} is {_shown(ours)}{unset} but the model directory's {base_at} has "
                      f"{_shown(theirs)}; "
                      "the trained model decides it (leave out --config to use the model's own, or use another "
                      "--model-dir)")


def _shown(value: Any) -> str:
    """A value as YAML spells it (``null``, ``true``), strings quoted."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
