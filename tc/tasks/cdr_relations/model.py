"""BERT for document-level relations, in one file: encoder, mention and concept pooling, pair classifier.

The encoder is tc's BERT (``tc.tasks.token_cls.model``: same weights, same state-dict names, so a
Hugging Face checkpoint loads as for token classification). A document longer than the encoder's
``window`` (its position table, 512) is read as overlapping windows of ``window`` tokens, each starting
with the document's ``[CLS]``; a token's hidden state is the mean over the windows that hold it (ATLOP's
long-input reading, generalised to any number of windows on a fixed grid, so that a document's states do not
depend on how far its batch is padded). Each mention is its opening marker's
hidden state, each concept the logsumexp of its mentions, and each (head, tail) concept pair is scored by
a grouped bilinear layer over ``tanh`` projections of the two (ATLOP without the attention context).

Shapes in comments: B batch, T tokens, H hidden, M mentions, C concepts, P pairs, E pair size, K group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tc.tasks.token_cls.model import BertConfig, Dropout, Embeddings, Encoder, attention_bias

PAD = -1
"""Padding of the mention, concept and pair index arrays."""
MASKED = -1.0e4
"""What a mention of another concept contributes to a concept's logsumexp (finite: no NaN for padding)."""


@dataclass
class RelationConfig:
    """The encoder's BertConfig fields (``encoder``), the pair classifier's sizes and the window."""

    encoder: dict[str, Any] = field(default_factory=dict)
    pair_size: int = 384
    group_size: int = 32
    window: int = 512
    cls_id: int = 101
    num_classes: int = 2
    pair_features: int = 0
    """Distinct pair features (``features.PAIR_FEATURES``: sentence distance, title) embedded into both
    projections; 0: none."""

    @property
    def bert(self) -> BertConfig:
        return BertConfig(**self.encoder)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BertForRelations(nn.Module):
    """``forward(batch) -> (logits (B, P, 2), loss)``; ``decode`` gives each pair's relation probability."""

    def __init__(self, config: RelationConfig) -> None:
        super().__init__()
        if config.pair_size % config.group_size:
            raise ValueError(f"model.pair_size={config.pair_size} must divide by model.group_size={config.group_size}")
        self.config = config
        bert = config.bert
        hidden = bert.hidden_size
        self.embeddings = Embeddings(bert)
        self.encoder = Encoder(bert)
        self.dropout = Dropout(bert.encoder_output_dropout_rate)
        self.head_proj = nn.Linear(hidden, config.pair_size)
        self.tail_proj = nn.Linear(hidden, config.pair_size)
        self.bilinear = nn.Linear(config.pair_size * config.group_size, config.num_classes)
        self.pair_embedding = nn.Embedding(config.pair_features, 2 * config.pair_size) if config.pair_features else None
        if self.pair_embedding is not None:
            nn.init.normal_(self.pair_embedding.weight, std=bert.initializer_range)
        for module in (self.head_proj, self.tail_proj, self.bilinear):
            nn.init.normal_(module.weight, std=bert.initializer_range)
            nn.init.zeros_(module.bias)

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    def layer_id(self, name: str) -> int:
        """Depth for layer-wise lr decay: 0 embeddings, i + 1 encoder layer i, L + 1 the pair classifier."""
        if name.startswith("embeddings."):
            return 0
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) + 1
        return self.num_layers + 1

    def _encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h = self.embeddings(input_ids, None)  # (b, t, H)
        return self.encoder(h, attention_bias(attention_mask))

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Hidden states (B, T, H) of documents of any length T, in windows when T > ``window``."""
        B, T = input_ids.shape
        W = self.config.window
        if T <= W:
            return self._encode(input_ids, attention_mask)
        span = W - 1
        stride = span // 2
        n = -(-(T - 1 - span) // stride) + 1  # windows on a fixed grid: a document reads the same at any padding
        width = (n - 1) * stride + span
        body = F.pad(input_ids[:, 1:], (0, width - (T - 1)))  # (B, width): all but [CLS], padded to the grid
        body_mask = F.pad(attention_mask[:, 1:], (0, width - (T - 1)))
        starts = [k * stride for k in range(n)]
        cls = input_ids[:, :1]
        windows = torch.cat([torch.cat([cls, body[:, s : s + span]], 1) for s in starts])  # (n*B, W)
        masks = torch.cat([torch.cat([attention_mask[:, :1], body_mask[:, s : s + span]], 1) for s in starts])
        out = self._encode(windows, masks).view(n, B, W, -1)  # (n, B, W, H)
        # a row reads only the windows its own length needs (the others hold its padding alone)
        body_length = (attention_mask.sum(1) - 1).clamp(min=0)  # (B,)
        needed = torch.div((body_length - span).clamp(min=0) + stride - 1, stride, rounding_mode="floor") + 1
        use = (torch.arange(n, device=input_ids.device)[:, None] < needed[None, :]).to(out.dtype)  # (n, B)
        total = out.new_zeros(B, 1 + width, out.shape[-1])
        count = out.new_zeros(B, 1 + width, 1)
        for k, s in enumerate(starts):
            total[:, 1 + s : 1 + s + span] += out[k, :, 1:] * use[k, :, None, None]
            count[:, 1 + s : 1 + s + span] += use[k, :, None, None]
        total[:, 0] = (out[:, :, 0] * use[..., None]).sum(0)
        count[:, 0] = use.sum(0)[:, None]
        count = count.clamp(min=1)  # positions past a row's last window: its padding, read by none
        total, count = total[:, :T], count[:, :T]
        return total / count

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        h = self.encode(batch["input_ids"], batch["attention_mask"])  # (B, T, H)
        mention_pos = batch["mention_pos"].long().clamp(min=0)  # (B, M)
        mention_concept = batch["mention_concept"].long()  # (B, M), PAD where no mention
        H = h.shape[-1]
        mentions = h.gather(1, mention_pos[..., None].expand(-1, -1, H))  # (B, M, H)
        C = batch["concept_mask"].shape[1]
        member = mention_concept[:, None, :] == torch.arange(C, device=h.device)[None, :, None]  # (B, C, M)
        pooled = mentions[:, None].masked_fill(~member[..., None], MASKED)  # (B, C, M, H)
        concepts = pooled.float().logsumexp(2).to(h.dtype)  # (B, C, H)
        heads = concepts.gather(1, batch["pair_head"].long().clamp(min=0)[..., None].expand(-1, -1, H))  # (B, P, H)
        tails = concepts.gather(1, batch["pair_tail"].long().clamp(min=0)[..., None].expand(-1, -1, H))
        zh = self.head_proj(self.dropout(heads))  # (B, P, E)
        zt = self.tail_proj(self.dropout(tails))
        if self.pair_embedding is not None:
            extra_h, extra_t = self.pair_embedding(batch["pair_feature"].long().clamp(min=0)).chunk(2, -1)
            zh, zt = zh + extra_h, zt + extra_t
        zh, zt = torch.tanh(zh), torch.tanh(zt)
        K = self.config.group_size
        groups = self.config.pair_size // K
        zh = zh.view(*zh.shape[:2], groups, K, 1)
        zt = zt.view(*zt.shape[:2], groups, 1, K)
        logits = self.bilinear((zh * zt).flatten(2))  # (B, P, 2)
        labels = batch.get("labels")
        if labels is None:
            return logits, None
        targets = labels.long().masked_fill(batch["pair_head"] < 0, -100)  # (B, P)
        total = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
        return logits, total / targets.ne(-100).sum().clamp(min=1)

    def decode(self, logits: Tensor, batch: Mapping[str, Tensor], scores: bool = False) -> tuple[Tensor, Tensor | None]:
        """Each pair's probability of the relation (B, P): what the task thresholds (so that evaluation can
        also say which threshold would have been best), and, with ``scores``, the same as its score."""
        probability = logits.float().softmax(-1)[..., 1]
        return probability, probability if scores else None

    def describe(self) -> str:
        return (f"relation head: concept logsumexp, grouped bilinear {self.config.pair_size}x{self.config.group_size}, "
                f"windows of {self.config.window}")


__all__ = ["BertForRelations", "RelationConfig"]
