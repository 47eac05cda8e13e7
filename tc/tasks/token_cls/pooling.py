"""Subword pooling (``model.subword_pooling``): which hidden states feed a word's prediction.

A word's label is read (and trained, by default) on its first WordPiece. ``first`` classifies that piece's
own hidden state, as BERT's NER recipe does; ``mean`` classifies the mean of all the word's pieces' hidden
states and ``last`` the hidden state of its last piece, both written into the first piece's position, so the
rest of tc (labels, loss, the word mapping) is unchanged. Other positions keep their own hidden state.

The model learns where words are from the batch key ``word_ids`` (B, T) int: each piece's word index within
its row, -1 for [CLS], [SEP], context and padding (``TokenClsDataset(word_ids=True)`` collates it). A word's
pieces are consecutive, so its first piece is where the index changes. This module imports only torch (it
runs in the Cerebras venv too) and uses no data-dependent control flow (it traces and compiles).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tc.core.errors import ConfigError, TcError

POOLINGS = ("first", "mean", "last")
WORD_IDS = "word_ids"
"""The batch key of each position's word index within its row (-1: no word)."""


def check_pooling(mode: str) -> None:
    if mode not in POOLINGS:
        raise ConfigError(f"model.subword_pooling: {mode!r} is not one of {', '.join(POOLINGS)}")


def refuse_graph_export(config: object, what: str) -> None:
    """A pooling model has no Hugging Face ``BertForTokenClassification`` or ONNX graph (both classify every
    piece on its own, which would silently predict differently): ``what`` (the flag) is refused."""
    mode = getattr(config, "subword_pooling", "first")
    if mode != "first":
        raise TcError(f"{what}: this model pools subwords (model.subword_pooling={mode}), which the exported "
                      "graph cannot; tc predict --precision fp32 runs it")


def pool_subwords(h: Tensor, word_ids: Tensor | None, mode: str) -> Tensor:
    """``h`` (B, T, H) with each word's first-piece vector replaced by its pieces' mean or last one."""
    if mode == "first":
        return h
    if word_ids is None:
        raise ConfigError(f"model.subword_pooling={mode} needs the batch key {WORD_IDS!r} "
                          "(TokenClsDataset(word_ids=True) collates it)")
    ids = word_ids.long()
    same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] >= 0)  # (B, T, T): p and q in one word
    previous = F.pad(ids[:, :-1], (1, 0), value=-1)
    first = (ids >= 0) & (ids != previous)  # (B, T): a word's first piece
    if mode == "mean":
        weights = same.to(h.dtype)
        pooled = torch.matmul(weights, h) / weights.sum(-1, keepdim=True).clamp(min=1)  # (B, T, H)
    else:
        positions = torch.arange(ids.shape[1], device=ids.device)
        last = torch.where(same, positions, -1).amax(-1)  # (B, T): each position's word's last piece
        pooled = torch.gather(h, 1, last.clamp(min=0)[:, :, None].expand_as(h))
    return torch.where(first[:, :, None], pooled, h)
