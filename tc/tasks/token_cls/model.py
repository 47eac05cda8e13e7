"""BERT for token classification, in one file.

A post-LayerNorm BERT encoder with a linear head on every token, numerically equal to Hugging Face
``BertForTokenClassification`` on the same weights. Query, key and value share one fused projection
(one wide GEMM instead of three, which matters on CPU); the Hugging Face mapping (hf_bert.py)
concatenates them on load and splits them on export. The file imports only torch, the standard library, tc's errors
and the label constants (safetensors lazily), so it also runs in the Cerebras venv on torch 2.4.

Layout of the state dict (tc's own names)::

    embeddings.{word,position,token_type}.weight, embeddings.norm.{weight,bias}
    encoder.layers.{i}.attn.qkv  .attn.proj  .attn_norm  .ffn.up  .ffn.down  .ffn_norm
    classifier.{weight,bias}
    crf.{start,transitions,end,start_mask,transition_mask,end_mask}   (head crf only)

The head (``head``): ``softmax`` trains each token on its own label; ``crf`` reads the classifier's logits as
the emissions of a linear-chain CRF over words, trained by its likelihood and decoded by Viterbi
(``crf_head.py``). Decoding (``decoding``): the softmax head reads its words by the best label sequence the
label scheme allows (``constrained``: no ``I-X`` after ``O``) or by each word's own argmax (``argmax``).

Shapes in comments: B batch, T sequence, H hidden, N heads, D head size (H / N), F filter, C classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tc.core.errors import ConfigError
from tc.tasks.token_cls.crf import LinearChainCRF
from tc.tasks.token_cls.crf_head import HEADS, WORD_MASK, crf_loss, decode_batch
from tc.tasks.token_cls.decoding import ConstrainedDecoder, check_decoding
from tc.tasks.token_cls.labels import IGNORE_INDEX  # -100: positions that carry no loss
from tc.tasks.token_cls.pooling import WORD_IDS, check_pooling, pool_subwords

CLASS_MASK_VALUE = -1.0e9
"""Logit given to the classes a row's corpus does not annotate, in the training loss: exp of it is 0."""

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
    subword_pooling: str = "first"
    """``first``, ``mean`` or ``last``: what feeds each word's prediction (``pooling.py``)."""
    head: str = "softmax"
    """``softmax`` or ``crf`` (``model.head``)."""
    decoding: str = "constrained"
    """``constrained`` or ``argmax`` (``model.decoding``, ``decoding.py``): how the softmax head reads words."""

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"model.head: {self.head!r} is not one of {', '.join(HEADS)}")
        check_pooling(self.subword_pooling)
        check_decoding(self.decoding, self.head)
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

    @property
    def uses_word_ids(self) -> bool:
        """Whether batches must carry the ``word_ids`` key (subword pooling other than ``first``)."""
        return self.subword_pooling != "first"

    @property
    def uses_word_mask(self) -> bool:
        """Whether batches must carry the ``word_mask`` key (the CRF, and constrained decoding, chain words)."""
        return self.head == "crf" or self.decoding == "constrained"


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
        # unconstrained until crf_head.prepare_head (training) or a checkpoint (inference) sets its masks
        self.crf = LinearChainCRF(config.num_classes) if config.head == "crf" else None
        # softmax + constrained decoding: set with the label names (decoding.attach_word_decoder); a plain
        # object, not a submodule, so it is in no state dict and no export
        self.word_decoder: ConstrainedDecoder | None = None
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

    @property
    def num_layers(self) -> int:
        """Encoder layers L, for layer-wise lr decay (``tc.core.layer_decay``)."""
        return len(self.encoder.layers)

    def layer_id(self, name: str) -> int:
        """Depth of parameter ``name`` for layer-wise lr decay: 0 embeddings, i + 1 encoder layer i, L + 1 the
        head (classifier, CRF, anything else)."""
        if name.startswith("embeddings."):
            return 0
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) + 1
        return self.num_layers + 1

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, C) and the mean token loss (None without ``labels``); other keys are ignored."""
        attention_mask = batch.get("attention_mask")
        h = self.embeddings(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, H)
        h = self.encoder(h, attention_bias(attention_mask))  # (B, T, H)
        h = pool_subwords(h, batch.get(WORD_IDS), self.config.subword_pooling)  # (B, T, H)
        logits = self.classifier(self.dropout(h))  # (B, T, C)
        labels = batch.get("labels")
        if labels is not None and self.crf is not None:
            loss = crf_loss(self.crf, logits, labels, batch.get(WORD_MASK), batch.get("class_mask"))
            return logits, loss * self.config.loss_weight
        loss = None if labels is None else self.token_loss(logits, labels, attention_mask, batch.get("class_mask"))
        return logits, loss

    def describe(self) -> str:
        """The head, how it reads words and, where not the first piece, whose hidden states feed a word
        (``tc run --dry-run`` shows it: each is a setting a trained model keeps)."""
        if self.crf is not None:
            head = "CRF head, Viterbi decoding"
        else:
            head = f"softmax head, {'constrained' if self.word_decoder is not None else 'argmax'} decoding"
        pooling = self.config.subword_pooling
        return head if pooling == "first" else f"{head}, words pooled from the {pooling} of their pieces"

    def decode(self, logits: Tensor, batch: Mapping[str, Tensor], scores: bool = False) -> tuple[Tensor, Tensor | None]:
        """Class ids (B, T) from host logits, and with ``scores`` their probabilities: the hook through which
        ``tc.core.evaluation.run_rows`` reads every evaluation and prediction. crf: Viterbi over the batch's
        words (``crf_head.decode_batch``); softmax: the same under the scheme's constraints alone once the
        label names are known (``word_decoder``), else the core's argmax."""
        if self.crf is not None:
            return decode_batch(self.crf, logits, batch, scores)
        if self.word_decoder is not None:
            return self.word_decoder.decode(logits, batch, scores)
        from tc.core.evaluation import argmax_decode

        return argmax_decode(logits, batch, scores)

    def token_loss(self, logits: Tensor, labels: Tensor, attention_mask: Tensor | None,
                   class_mask: Tensor | None = None) -> Tensor:
        """fp32 cross-entropy averaged over counted positions, times ``loss_weight``.

        A position counts when its label is not -100 and (unless ``include_padding_in_loss``) it is a
        real token. Uses ``ignore_index`` rather than boolean indexing so shapes stay static; with no
        counted position the sum is 0 and the count is clamped to 1, giving a 0 loss that still has a
        grad_fn (the backward pass then adds nothing).

        ``class_mask`` (B, C) bool, from training on several corpora: the classes each row's corpus
        annotates. The others leave that row's softmax (their logits become ``CLASS_MASK_VALUE`` before the
        cross-entropy), so a corpus that does not annotate a type never teaches its tokens are not of it:
        those classes get exactly zero gradient from its rows. Training loss only; predictions see every class.
        """
        targets = labels.long()
        if attention_mask is not None and not self.config.include_padding_in_loss:
            targets = targets.masked_fill(attention_mask == 0, IGNORE_INDEX)
        logits = logits.float()
        if class_mask is not None:
            logits = logits.masked_fill(~class_mask.bool()[:, None, :], CLASS_MASK_VALUE)  # (B, T, C)
        total = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        count = targets.ne(IGNORE_INDEX).sum().clamp(min=1)
        return total / count * self.config.loss_weight


__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "BertConfig",
    "BertForTokenClassification",
    "Dropout",
    "attention_bias",
]
