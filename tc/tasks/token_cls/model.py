"""BERT for token classification, in one file.

A post-LayerNorm BERT encoder with a linear head on every token, numerically equal to Hugging Face
``BertForTokenClassification`` on the same weights. Query, key and value share one fused projection
(one wide GEMM instead of three, which matters on CPU); the Hugging Face mapping concatenates them on
load and splits them on export. The file imports only torch, the standard library and tc's errors
(safetensors lazily), so it also runs in the Cerebras venv on torch 2.4.

Layout of the state dict (tc's own names)::

    embeddings.{word,position,token_type}.weight, embeddings.norm.{weight,bias}
    encoder.layers.{i}.attn.qkv  .attn.proj  .attn_norm  .ffn.up  .ffn.down  .ffn_norm
    classifier.{weight,bias}

Shapes in comments: B batch, T sequence, H hidden, N heads, D head size (H / N), F filter, C classes.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tc.core.errors import CheckpointError, ConfigError

IGNORE_INDEX = -100
"""Label of positions that carry no loss (special tokens, word continuations, padding)."""

MASK_VALUE = -10000.0
"""Additive attention bias on padded keys. Finite, so that it survives a cast to fp16/bf16 and a row
with no real token gives uniform attention instead of NaN; exp(-1e4) is exactly 0 in fp32, so results
equal those of Hugging Face's ``finfo.min`` bias."""

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact erf form, Hugging Face "gelu"
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


@dataclass
class BertConfig:
    """Model hyper-parameters; the names are the Cerebras Model Zoo BERT yaml keys."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_heads: int = 12
    filter_size: int = 3072
    encoder_nonlinearity: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout_rate: float = 0.1
    embedding_dropout_rate: float | None = None
    attention_dropout_rate: float = 0.1
    encoder_output_dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-12
    num_classes: int = 7
    loss_weight: float = 1.0
    include_padding_in_loss: bool = False
    initializer_range: float = 0.02
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.encoder_nonlinearity not in ACTIVATIONS:
            raise ConfigError(
                f"model.encoder_nonlinearity: {self.encoder_nonlinearity!r} "
                f"is not one of {sorted(ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size {self.hidden_size} is not divisible by model.num_heads {self.num_heads}"
            )

    @property
    def embedding_dropout(self) -> float:
        return self.dropout_rate if self.embedding_dropout_rate is None else self.embedding_dropout_rate


PRESETS: dict[str, dict[str, Any]] = {
    "bert_base": {"hidden_size": 768, "num_hidden_layers": 12, "num_heads": 12, "filter_size": 3072},
    "bert_large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_heads": 16, "filter_size": 4096},
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_heads": 12, "filter_size": 1536},
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_heads": 2,
        "filter_size": 128,
        "max_position_embeddings": 128,
    },
}
"""Architecture shapes by name; combine with ``BertConfig(**PRESETS[name], num_classes=...)``."""


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout. On CPU the keep mask comes from ``rand_like(x) >= p``: cheaper than the
    ``bernoulli_`` draw F.dropout makes there, and autograd keeps a 1-byte bool mask instead of a
    4-byte float one. Elsewhere (CUDA's fused kernel, compiled or traced graphs) F.dropout as usual."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training=True)
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """``nn.Dropout`` with :func:`dropout` (no parameters: state dicts are unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, h)
        self.token_type = nn.Embedding(config.type_vocab_size, h)
        self.norm = nn.LayerNorm(h, eps=config.layer_norm_epsilon)
        self.dropout = Dropout(config.embedding_dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        t = input_ids.shape[1]
        if t > self.position.num_embeddings:
            raise ConfigError(
                f"sequence length {t} exceeds model.max_position_embeddings {self.position.num_embeddings}"
            )
        x = self.word(input_ids)  # (B, T, H)
        types = self.token_type.weight[0] if token_type_ids is None else self.token_type(token_type_ids)
        x = x + types  # (B, T, H) or (H,)
        x = x + self.position.weight[:t]  # positions are 0..T-1: a slice, no lookup needed
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # rows: [query; key; value]
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_dropout_rate

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        b, t, h = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.num_heads, h // self.num_heads)  # (B, T, 3, N, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, N, T, D), views
        if bias is not None and bias.dtype != q.dtype:  # autocast: q is bf16/fp16, bias fp32
            bias = bias.to(q.dtype)
        if self.training and self.dropout > 0 and x.device.type == "cpu" and not torch.compiler.is_compiling():
            y = self._explicit(q, k, v, bias)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
            )  # (B, N, T, D)
        return self.proj(y.transpose(1, 2).reshape(b, t, h))  # (B, T, H)

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        """Attention with dropout, written out for CPU training: there SDPA has no fused kernel with
        dropout and takes its math path anyway, which adds a NaN-safe softmax pass (isneginf, all,
        where) and a separate scaling of q and k. The bias is finite, so no row can be all -inf."""
        scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))  # (B, N, T, T)
        if bias is not None:
            scores = scores + bias
        probs = dropout(scores.softmax(dim=-1), self.dropout, True)
        return torch.matmul(probs, v)  # (B, N, T, D)


class FeedForward(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.filter_size)
        self.act = ACTIVATIONS[config.encoder_nonlinearity]
        self.down = nn.Linear(config.filter_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))  # (B, T, H) -> (B, T, F) -> (B, T, H)


class Layer(nn.Module):
    """One post-LN transformer block, as in the original BERT."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(config)
        self.attn_dropout = Dropout(config.dropout_rate)
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.ffn = FeedForward(config)
        self.ffn_dropout = Dropout(config.dropout_rate)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        x = self.attn_norm(x + self.attn_dropout(self.attn(x, bias)))
        return self.ffn_norm(x + self.ffn_dropout(self.ffn(x)))


class Encoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x, bias)
        return x


def attention_bias(attention_mask: Tensor | None) -> Tensor | None:
    """Additive (B, 1, 1, T) fp32 key bias from a (B, T) 0/1 mask, or None when nothing is padded.

    None lets SDPA skip the mask entirely. Checking for that reads the mask's values, which is free on
    CPU but would synchronise a GPU or break a traced/compiled graph, so only eager CPU takes the
    shortcut.
    """
    if attention_mask is None:
        return None
    if (
        attention_mask.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and bool(attention_mask.all())
    ):
        return None
    return attention_mask[:, None, None, :].eq(0).float() * MASK_VALUE


class BertForTokenClassification(nn.Module):
    """BERT encoder plus a per-token linear classifier; ``forward(batch) -> (logits, loss)``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.dropout = Dropout(config.encoder_output_dropout_rate)
        self.classifier = nn.Linear(config.hidden_size, config.num_classes)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Hugging Face's BERT initialisation, so a fresh head trains like theirs."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, C) and the mean token loss (None without ``labels``); other keys are ignored."""
        attention_mask = batch.get("attention_mask")
        h = self.embeddings(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, H)
        h = self.encoder(h, attention_bias(attention_mask))  # (B, T, H)
        logits = self.classifier(self.dropout(h))  # (B, T, C)
        labels = batch.get("labels")
        loss = None if labels is None else self.token_loss(logits, labels, attention_mask)
        return logits, loss

    def token_loss(self, logits: Tensor, labels: Tensor, attention_mask: Tensor | None) -> Tensor:
        """fp32 cross-entropy averaged over counted positions, times ``loss_weight``.

        A position counts when its label is not -100 and (unless ``include_padding_in_loss``) it is a
        real token. Uses ``ignore_index`` rather than boolean indexing so shapes stay static; with no
        counted position the sum is 0 and the count is clamped to 1, giving a 0 loss that still has a
        grad_fn (the backward pass then adds nothing).
        """
        targets = labels.long()
        if attention_mask is not None and not self.config.include_padding_in_loss:
            targets = targets.masked_fill(attention_mask == 0, IGNORE_INDEX)
        total = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        count = targets.ne(IGNORE_INDEX).sum().clamp(min=1)
        return total / count * self.config.loss_weight


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
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


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


__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "BertConfig",
    "BertForTokenClassification",
    "Dropout",
    "attention_bias",
    "bert_config_to_hf",
    "from_hf_state_dict",
    "hf_config_to_bert_config",
    "load_hf_checkpoint",
    "to_hf_state_dict",
]
