"""How a softmax model reads its words (``model.decoding``): the best sequence the label scheme allows, or argmax.

A softmax head scores each word on its own, and the words' argmax can spell sequences no annotation has:
``O I-X`` (an entity that starts inside) or ``B-X I-Y``. The scorer reads such a stray ``I-X`` as an entity
of its own (conlleval's rule), mostly a false positive with a wrong boundary. ``constrained`` (the default)
decodes the words' logits with Viterbi under the CRF's constraints (``crf.allowed_transitions``) and no
learned scores: allowed moves cost nothing, forbidden ones are impossible. So where the argmax already is a
valid sequence it is the answer, and elsewhere the valid sequence with the largest sum of the words' logits,
which is the largest sum of their log-probabilities (a position's softmax normaliser is the same on every
path). A temperature (``tc calibrate``) scales every path's score alike and so changes no label.

It costs no training (same weights), and little at inference: ``ConstrainedDecoder`` takes the argmax, checks
each row's word sequence against the constraints (one vectorised lookup), and runs the Viterbi scan only on
the rows that break them (a few in a hundred for a trained model). ``tc predict`` on ONNX/int8 sessions decodes
the same (``word_decoder``).
Chosen on devel (BENCHMARKS.md, "Quality levers": every seed of both shipped corpora gained).

The seed label scheme keeps argmax (its labels include ``X``, ``[CLS]``, ``[SEP]``, which the chain forbids on
words, and it is the Model Zoo's recipe, reproduced exactly), and the CRF head decodes with its own learned
transitions, so ``argmax`` with it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tc.core.errors import ConfigError
from tc.tasks.token_cls.crf import LinearChainCRF, compact, expand
from tc.tasks.token_cls.crf_head import batch_words

DECODINGS = ("constrained", "argmax")
"""Values of ``model.decoding``."""


def check_decoding(decoding: str, head: str) -> None:
    if decoding not in DECODINGS:
        raise ConfigError(f"model.decoding: {decoding!r} is not one of {', '.join(DECODINGS)}")
    if head == "crf" and decoding == "argmax":
        raise ConfigError("model.decoding: argmax does not apply to model.head=crf, which decodes with Viterbi over "
                          "its learned transitions; use the softmax head to read words by argmax")


def word_chain(config: Any, labels: Sequence[str], scheme: str = "typed") -> LinearChainCRF | None:
    """The zero-score constrained chain a softmax model with ``decoding: constrained`` reads its words with;
    None where words are read otherwise (``argmax``, the seed scheme, or a CRF head, which has its own)."""
    if getattr(config, "head", "softmax") != "softmax" or getattr(config, "decoding", "argmax") != "constrained":
        return None
    if scheme != "typed":
        return None
    return LinearChainCRF.from_labels(list(labels))


class ConstrainedDecoder:
    """``decode`` (the hook ``tc.core.evaluation.run_rows`` reads) for constrained decoding: the argmax, and
    the zero-score chain's best path on the rows whose argmax it forbids. Where a row's argmax is allowed it is
    already the best path (every word at its maximum, every move free), so only the others are searched, by a
    numpy Viterbi (a handful of classes: numpy's per-step cost is a tenth of torch's on such tiny arrays)."""

    def __init__(self, chain: LinearChainCRF) -> None:
        self.start = chain.start_mask.detach().cpu().numpy()  # (C,) bool
        self.moves = chain.transition_mask.detach().cpu().numpy()  # (C, C) bool: i -> j allowed
        self.end = chain.end_mask.detach().cpu().numpy()  # (C,) bool

    def decode(self, logits: Tensor, batch: Mapping[str, Tensor], scores: bool = False) -> tuple[Tensor, Tensor | None]:
        from tc.core.evaluation import argmax_decode

        ids, best = argmax_decode(logits, batch, scores)  # (B, T), (B, T) or None
        words = batch_words(logits, batch)  # (B, T)
        tags, mask = compact(ids, words)  # (B, W): each row's words' argmax, left-aligned
        if tags.shape[1] == 0:
            return ids, best
        t, m = tags.numpy(), mask.numpy()
        rejected = (m[:, 0] & ~self.start[t[:, 0]]) | (m[:, 1:] & ~self.moves[t[:, :-1], t[:, 1:]]).any(1)
        rows = np.flatnonzero(rejected)  # (R,) rows the constraints reject
        if not len(rows):
            return ids, best
        index = torch.from_numpy(rows)
        emissions, word_mask = compact(logits[index].float(), words[index])  # (R, W', C), (R, W')
        path = torch.from_numpy(self.viterbi(emissions.numpy(), word_mask.numpy()))  # (R, W')
        ids[index] = expand(path, word_mask, words[index], fill=ids[index])
        if best is not None:
            best[index] = logits[index].float().softmax(-1).gather(-1, ids[index][..., None])[..., 0]
        return ids, best

    def viterbi(self, emissions: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(R, W) best allowed tag path of (R, W, C) emissions over (R, W) left-aligned word masks."""
        r, w, c = emissions.shape
        moves = np.where(self.moves, 0.0, -np.inf)  # (C, C)
        score = np.where(self.start, emissions[:, 0], -np.inf)  # (R, C)
        back = np.broadcast_to(np.arange(c), (r, w, c)).copy()  # (R, W, C): identity past a row's words
        for step in range(1, w):
            options = score[:, :, None] + moves  # (R, C from, C to)
            previous = options.argmax(1)  # (R, C)
            advanced = options.max(1) + emissions[:, step]
            live = mask[:, step, None]
            score = np.where(live, advanced, score)
            back[:, step] = np.where(live, previous, back[:, step])
        tag = np.where(self.end, score, -np.inf).argmax(1)  # (R,)
        path = np.empty((r, w), dtype=np.int64)
        path[:, -1] = tag
        for step in range(w - 1, 0, -1):
            tag = back[np.arange(r), step, tag]
            path[:, step - 1] = tag
        return path


def word_decoder(config: Any, labels: Sequence[str], scheme: str = "typed") -> ConstrainedDecoder | None:
    """The decoder of a softmax model with ``decoding: constrained`` (None: argmax, or a CRF's own)."""
    chain = word_chain(config, labels, scheme)
    return None if chain is None else ConstrainedDecoder(chain)


def attach_word_decoder(module: Any, labels: Sequence[str], scheme: str = "typed") -> Any:
    """``module`` with its ``word_decoder`` set when it decodes constrained (a model built from its architecture
    knows how many classes it has, not their names; whoever holds the label map calls this)."""
    decoder = word_decoder(getattr(module, "config", None), labels, scheme)
    if decoder is not None and hasattr(module, "word_decoder"):
        module.word_decoder = decoder
    return module
