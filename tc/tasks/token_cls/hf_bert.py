"""Hugging Face BERT <-> tc's BERT: config keys, weight names, and reading HF weight files.

tc's module fuses query, key and value into one projection (model.py); this mapping concatenates
them on load and splits them on export, and drops pre-training heads and the pooler. Like model.py
it imports only torch, the standard library and tc's errors (safetensors lazily), so it also runs in
the Cerebras venv on torch 2.4.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tc.core.errors import CheckpointError, ConfigError, first_line
from tc.tasks.token_cls.model import BertConfig

# --------------------------------------------------------------------------------------------------
# Hugging Face configs
# --------------------------------------------------------------------------------------------------

_HF_FIELDS = {  # HF config.json key -> BertConfig field (same meaning, same value)
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "filter_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "hidden_dropout_prob": "dropout_rate",
    "attention_probs_dropout_prob": "attention_dropout_rate",
    "layer_norm_eps": "layer_norm_epsilon",
    "initializer_range": "initializer_range",
    "pad_token_id": "pad_token_id",
}
_HF_ACT_TO_TC = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
_TC_ACT_TO_HF = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}


def hf_config_to_bert_config(hf: Mapping[str, Any], **overrides: Any) -> BertConfig:
    """A BertConfig from a Hugging Face BERT ``config.json`` dict; ``overrides`` (BertConfig fields) win.

    ``num_classes`` comes from ``id2label``/``num_labels`` when the file has them (a token-classification
    export); a plain encoder's config leaves it at the default, for the caller to override.
    """
    if hf.get("model_type", "bert") != "bert":
        raise CheckpointError(f"config.json: model_type {hf['model_type']!r} is not supported (only 'bert')")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"config.json: position_embedding_type {hf['position_embedding_type']!r} is not supported"
        )
    act = hf.get("hidden_act", "gelu")
    if act not in _HF_ACT_TO_TC:
        raise CheckpointError(f"config.json: hidden_act {act!r} is not one of {sorted(_HF_ACT_TO_TC)}")
    values: dict[str, Any] = {
        ours: hf[theirs] for theirs, ours in _HF_FIELDS.items() if hf.get(theirs) is not None
    }
    values["encoder_nonlinearity"] = _HF_ACT_TO_TC[act]
    if hf.get("classifier_dropout") is not None:
        values["encoder_output_dropout_rate"] = hf["classifier_dropout"]
    elif "hidden_dropout_prob" in hf:  # HF's classifier falls back to the hidden dropout
        values["encoder_output_dropout_rate"] = hf["hidden_dropout_prob"]
    if hf.get("id2label"):
        values["num_classes"] = len(hf["id2label"])
    elif hf.get("num_labels"):
        values["num_classes"] = hf["num_labels"]
    known = {f.name for f in fields(BertConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"model: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return replace(BertConfig(**values), **overrides)


def bert_config_to_hf(config: BertConfig, id2label: Mapping[int, str]) -> dict[str, Any]:
    """``config.json`` for exporting as Hugging Face ``BertForTokenClassification``."""
    if len(id2label) != config.num_classes:
        raise ConfigError(f"model.num_classes is {config.num_classes} but there are {len(id2label)} labels")
    c = asdict(config)
    hf: dict[str, Any] = {"architectures": ["BertForTokenClassification"], "model_type": "bert"}
    hf |= {theirs: c[ours] for theirs, ours in _HF_FIELDS.items()}
    hf["hidden_act"] = _TC_ACT_TO_HF[config.encoder_nonlinearity]
    hf["classifier_dropout"] = config.encoder_output_dropout_rate
    hf["position_embedding_type"] = "absolute"
    hf["id2label"] = {str(i): label for i, label in sorted(id2label.items())}
    hf["label2id"] = {label: i for i, label in sorted(id2label.items())}
    return hf


# --------------------------------------------------------------------------------------------------
# Hugging Face weights
# --------------------------------------------------------------------------------------------------

_MODULES = {  # tc module -> HF BertModel module; "{i}" is the layer index
    "embeddings.word": "embeddings.word_embeddings",
    "embeddings.position": "embeddings.position_embeddings",
    "embeddings.token_type": "embeddings.token_type_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
    "encoder.layers.{i}.attn.proj": "encoder.layer.{i}.attention.output.dense",
    "encoder.layers.{i}.attn_norm": "encoder.layer.{i}.attention.output.LayerNorm",
    "encoder.layers.{i}.ffn.up": "encoder.layer.{i}.intermediate.dense",
    "encoder.layers.{i}.ffn.down": "encoder.layer.{i}.output.dense",
    "encoder.layers.{i}.ffn_norm": "encoder.layer.{i}.output.LayerNorm",
    "classifier": "classifier",
}
_HF_TO_TC_MODULES = {hf: tc for tc, hf in _MODULES.items()}
_QKV_TC = "encoder.layers.{i}.attn.qkv"
_QKV_HF = ("query", "key", "value")
_QKV_HF_MODULE = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)")
_DROPPED = re.compile(r"^(cls\.|pooler\.)|(^|\.)(position_ids|token_type_ids)$")
"""Pre-training heads, the pooler (unused by token classification) and HF's index buffers."""


def _template(module: str) -> tuple[str, str | None]:
    """``a.layer.3.b`` -> (``a.layer.{i}.b``, ``"3"``)."""
    match = re.search(r"\.(\d+)\.", module)
    if match is None:
        return module, None
    return module[: match.start()] + ".{i}." + module[match.end() :], match.group(1)


def _hf_name(key: str) -> str:
    """Strip the task-model prefix and rename TF-era LayerNorm ``gamma``/``beta``."""
    key = key.removeprefix("bert.")
    if key.endswith(".gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith(".beta"):
        key = key[: -len("beta")] + "bias"
    return key


def from_hf_state_dict(hf_state: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """Hugging Face BERT keys -> tc keys, fusing query/key/value; ``source`` names the file in errors."""
    state: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for raw_key, tensor in hf_state.items():
        key = _hf_name(raw_key)
        if _DROPPED.search(key):
            continue
        module, _, param = key.rpartition(".")
        if match := _QKV_HF_MODULE.fullmatch(module):
            qkv.setdefault((match.group(1), param), {})[match.group(2)] = tensor
            continue
        template, index = _template(module)
        if template not in _HF_TO_TC_MODULES or param not in ("weight", "bias"):
            raise CheckpointError(f"{source}: unexpected weight {raw_key!r}; is this a BERT checkpoint?")
        state[f"{_HF_TO_TC_MODULES[template].format(i=index)}.{param}"] = tensor
    for (index, param), parts in sorted(qkv.items()):
        missing = [name for name in _QKV_HF if name not in parts]
        if missing:
            raise CheckpointError(f"{source}: layer {index} has no attention.self.{missing[0]}.{param}")
        state[f"{_QKV_TC.format(i=index)}.{param}"] = torch.cat([parts[name] for name in _QKV_HF])
    return state


def to_hf_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """tc keys -> Hugging Face ``BertForTokenClassification`` keys (query/key/value split again).

    Split tensors are cloned: safetensors refuses tensors that share storage.
    """
    hf: dict[str, Tensor] = {}
    for key, tensor in state.items():
        module, _, param = key.rpartition(".")
        template, index = _template(module)
        if template == _QKV_TC:
            for name, part in zip(_QKV_HF, tensor.chunk(3), strict=True):
                hf[f"bert.encoder.layer.{index}.attention.self.{name}.{param}"] = part.clone()
            continue
        if template not in _MODULES:
            raise CheckpointError(f"cannot export weight {key!r}: it has no Hugging Face name")
        name = _MODULES[template].format(i=index)
        hf[f"{name}.{param}" if name == "classifier" else f"bert.{name}.{param}"] = tensor
    return hf


def _weights_file(directory: Path) -> Path:
    for name in (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ):
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin in this directory")


def _one_line(err: Exception) -> str:
    """``Type: first line`` of a reader's error (the type says which library refused the file)."""
    return f"{type(err).__name__}: {first_line(err, limit=10_000)}" if str(err).strip() else type(err).__name__


def _read_torch_file(path: Path) -> dict[str, Tensor]:
    """``torch.load`` restricted to tensors: a file that needs pickled code is refused, never run."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        culprit = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        reason = f"it references {culprit.group(1)}" if culprit else "it holds more than tensors"
        raise CheckpointError(
            f"{path}: refused to load: {reason} and loading it could run code; "
            "re-save it as safetensors where you trust it"
        ) from err
    except Exception as err:  # corrupt zip, truncated file...: the user's file, not a tc bug
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({_one_line(err)})") from err
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors (a Hugging Face weights file)")
    return dict(obj)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as err:  # the Cerebras venv ships without it
        raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package") from err
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # SafetensorError and friends on a bad header or truncated data
        raise CheckpointError(f"{path}: cannot read as safetensors ({_one_line(err)})") from err


def _read_weights(path: Path) -> dict[str, Tensor]:
    if path.name.endswith(".index.json"):  # sharded: {"weight_map": {key: shard file}}
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{path}: not a valid shard index ({_one_line(err)})") from err
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(_read_weights(path.parent / shard))
        return state
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch_file(path)


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({_one_line(err)})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


def load_hf_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Weights in tc's key names plus the HF ``config.json`` (None when there is none).

    ``path`` is a Hugging Face model directory or one ``.safetensors``/``.bin`` file (whose directory's
    ``config.json`` is read when present). BertModel, BertForPreTraining/MaskedLM and
    BertForTokenClassification layouts all load; pre-training heads and the pooler are dropped.
    """
    path = Path(path)
    if path.is_dir():
        weights = _weights_file(path)
    elif path.is_file():
        weights = path
    else:
        raise CheckpointError(f"{path}: no such checkpoint file or directory")
    state = from_hf_state_dict(_read_weights(weights), source=str(weights))
    if not state:
        raise CheckpointError(f"{weights}: contains no BERT weights")
    return state, _read_config(weights.parent / "config.json")


def load_pretrained_encoder(module: torch.nn.Module, pretrained: str) -> None:
    """Load ``model.pretrained`` (a package or a Hugging Face directory) into the BERT encoder of ``module``
    (tc's state-dict names: ``embeddings.*``, ``encoder.*``); its head keeps its fresh weights, and a shape
    that does not fit is one ConfigError naming the key."""
    from tc.core.checkpoint import match_state
    from tc.core.errors import ConfigError
    from tc.tasks.token_cls.settings import pretrained_dir

    state, _ = load_hf_checkpoint(pretrained_dir(pretrained))
    fitting, report = match_state(module, state)
    if report.mismatched:
        key, theirs, ours = report.mismatched[0]
        raise ConfigError(f"model: {key} is {list(ours)} but the pretrained checkpoint has {list(theirs)}")
    module.load_state_dict(fitting, strict=False)
