"""A linear-chain CRF head over word positions, in plain torch (runs on torch 2.4, the Cerebras venv, too).

The softmax head labels every word on its own, so it can emit ``O I-Chemical`` or ``B-Disease I-Chemical``,
which no IOB2 reading turns into the entity it meant. A CRF adds learned start, transition and end scores
and decodes the best *sequence* (Viterbi); transitions the label scheme forbids are fixed at
``CONSTRAINED`` (a buffer mask, not learned), so they are never decoded and never get gradient.

The chain runs over words, not subwords: a word's label sits on its first piece and the other positions
carry -100 (``dataset.py``), so the transition that matters is word -> next word. ``compact`` gathers the
word positions of a (B, T, ...) tensor into a left-aligned (B, W, ...) one, ``expand`` puts word tags back.
``nll`` and ``decode`` accept any boolean mask (gaps too: a masked position is skipped, as if absent), so
running them on compacted words or straight on subword positions gives the same numbers; compacting only
makes the scan shorter (W < T).

All numerics are fp32 whatever the input dtype: the forward algorithm sums scores over the whole sentence
and takes logsumexp of them, where bf16's 8 bits of mantissa would lose the differences that matter.

Conventions: ``transitions[i, j]`` scores tag ``i`` followed by tag ``j``. Shapes in comments: B batch,
T positions, W words, C classes (tags).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tc.tasks.token_cls.labels import IGNORE_INDEX, _parse_label

__all__ = ["CONSTRAINED", "LinearChainCRF", "allowed_transitions", "compact", "expand"]

CONSTRAINED = -10000.0
"""Score of a forbidden start/transition/end. Finite, so logsumexp and its gradient stay NaN-free even
where every path is forbidden (an inf - inf there would be NaN); exp(-1e4) is exactly 0 in fp32, so a
forbidden path adds nothing to the partition function unless emissions differ by ~1e4, which logits don't."""


# --------------------------------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------------------------------


def allowed_transitions(labels: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Boolean (start (C,), transition (C, C), end (C,)) masks of what the label scheme allows.

    IOB2 (no label with an E-/S- prefix): ``I-X`` may only follow ``B-X`` or ``I-X`` and may not start a
    sentence; everything else is allowed. Untyped labels (``B``, ``I``) are one type.

    IOBES (some label is E-/S-): after ``B-X``/``I-X`` only ``I-X``/``E-X``; after ``O``/``E-*``/``S-*``
    only ``O``/``B-*``/``S-*``; a sentence starts with ``O``/``B-*``/``S-*`` and ends with ``O``/``E-*``/``S-*``.

    Special labels (anything else: the seed scheme's ``[PAD]``, ``X``, ``[CLS]``, ``[SEP]``) are forbidden
    everywhere. They label subword continuations, special tokens and padding, never a word, and the CRF
    runs over words only; a first-order chain could not skip them anyway (``B X I`` is valid but
    ``O X I`` is not, which needs memory of the tag before ``X``). The seed scheme thus decodes B/I/O.
    """
    parsed = [_parse_label(label) for label in labels]
    iobes = any(p is not None and p[0] in "ES" for p in parsed)
    c = len(labels)
    start = torch.zeros(c, dtype=torch.bool)
    end = torch.zeros(c, dtype=torch.bool)
    trans = torch.zeros(c, c, dtype=torch.bool)
    for j, pj in enumerate(parsed):
        if pj is None:
            continue  # special: row, column, start and end all stay False
        start[j] = pj[0] in ("O", "B", "S")
        end[j] = pj[0] in ("O", "E", "S") if iobes else True
        for i, pi in enumerate(parsed):
            if pi is None:
                continue
            inside = pi[0] in ("B", "I")  # the entity of tag i is still open
            if iobes:
                trans[i, j] = (pj[0] in ("I", "E") and pj[1] == pi[1]) if inside else pj[0] in ("O", "B", "S")
            else:
                trans[i, j] = pj[0] != "I" or (inside and pj[1] == pi[1])
    return start, trans, end


# --------------------------------------------------------------------------------------------------
# Subword <-> word positions
# --------------------------------------------------------------------------------------------------


def _positions(labels_or_word_mask: Tensor) -> Tensor:
    """(B, T) bool word positions: a bool tensor as is, else ``labels != IGNORE_INDEX``.

    The label form only holds for the typed scheme with gold labels; at predict time (no labels) and in
    the seed scheme (every real position labelled) pass the word mask itself.
    """
    if labels_or_word_mask.dtype == torch.bool:
        return labels_or_word_mask
    return labels_or_word_mask.ne(IGNORE_INDEX)


def compact(values: Tensor, labels_or_word_mask: Tensor, width: int | None = None) -> tuple[Tensor, Tensor]:
    """Gather the word positions of ``values`` (B, T, ...) into (B, W, ...), left-aligned, and the (B, W) mask.

    Works for emissions (B, T, C) and for labels (B, T) alike, so the gold word tags are
    ``compact(labels, labels)[0]``. ``W`` is the most words of any row (a host sync), or ``width`` when
    given, for static shapes in a compiled graph (it must be >= every row's word count). Slots past a row's
    words hold position 0's values and are masked out. Differentiable (a gather).
    """
    words = _positions(labels_or_word_mask)  # (B, T)
    b, t = words.shape
    counts = words.sum(1)  # (B,)
    w = int(counts.max()) if width is None and b > 0 and t > 0 else (width or 0)
    rank = words.long().cumsum(1) - 1  # (B, T): slot of each word position
    dest = torch.where(words, rank, torch.full_like(rank, w))  # non-words go to a spare slot w
    source = torch.zeros(b, w + 1, dtype=torch.long, device=values.device)
    source.scatter_(1, dest, torch.arange(t, device=values.device).expand(b, t))  # (B, W + 1): position of slot
    source = source[:, :w]  # (B, W)
    index = source.reshape(b, w, *([1] * (values.dim() - 2))).expand(b, w, *values.shape[2:])
    word_mask = torch.arange(w, device=values.device) < counts[:, None]  # (B, W)
    return values.gather(1, index), word_mask


def expand(word_tags: Tensor, word_mask: Tensor, like: Tensor, fill: int | Tensor = IGNORE_INDEX) -> Tensor:
    """Put (B, W) word tags back on the word positions of ``like`` (B, T): the labels or word mask that
    ``compact`` was given. Other positions get ``fill``: an int, or a (B, T) tensor such as
    ``logits.argmax(-1)`` so that non-word positions keep the softmax prediction (the seed scheme scores
    X/[CLS]/[SEP] positions too). Word slots where ``word_mask`` is False are not written.
    """
    words = _positions(like)  # (B, T)
    dtype = word_tags.dtype
    base = fill.to(dtype) if isinstance(fill, Tensor) else torch.full_like(words, fill, dtype=dtype)  # (B, T)
    if word_tags.shape[1] == 0:
        return base.clone()
    rank = (words.long().cumsum(1) - 1).clamp(0, word_tags.shape[1] - 1)  # (B, T): the slot of each word
    placed = word_tags.gather(1, rank)  # (B, T)
    valid = words & word_mask.gather(1, rank)  # (B, T)
    return torch.where(valid, placed, base)


# --------------------------------------------------------------------------------------------------
# CRF
# --------------------------------------------------------------------------------------------------


class LinearChainCRF(nn.Module):
    """Learned start (C,), transition (C, C) and end (C,) scores over per-position emissions (B, T, C).

    ``nll`` is the per-sequence negative log-likelihood (forward algorithm, one scan over T), ``decode``
    the Viterbi path (one scan forward, one backtrack). The masks ``start_mask``, ``transition_mask`` and
    ``end_mask`` are persistent buffers, so a checkpoint decodes with the constraints it was trained with;
    being bool, they survive ``model.to(torch.bfloat16)`` unchanged. Scores start at zero: an untrained CRF
    decodes the best path of emissions alone under the constraints.
    """

    start_mask: Tensor
    transition_mask: Tensor
    end_mask: Tensor

    def __init__(self, num_tags: int, constraints: tuple[Tensor, Tensor, Tensor] | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags={num_tags} must be >= 1")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        if constraints is None:
            ones = torch.ones(num_tags, dtype=torch.bool)
            constraints = (ones, torch.ones(num_tags, num_tags, dtype=torch.bool), ones.clone())
        start_mask, transition_mask, end_mask = (m.to(torch.bool) for m in constraints)
        shapes = (tuple(start_mask.shape), tuple(transition_mask.shape), tuple(end_mask.shape))
        if shapes != ((num_tags,), (num_tags, num_tags), (num_tags,)):
            raise ValueError(f"constraint masks must be ({num_tags},), ({num_tags}, {num_tags}), ({num_tags},)")
        self.register_buffer("start_mask", start_mask.clone())
        self.register_buffer("transition_mask", transition_mask.clone())
        self.register_buffer("end_mask", end_mask.clone())

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> LinearChainCRF:
        """A CRF constrained by ``allowed_transitions(labels)`` (class ``i`` is ``labels[i]``)."""
        return cls(len(labels), allowed_transitions(labels))

    @torch.no_grad()
    def constrain(self, labels: Sequence[str]) -> None:
        """Set the masks to ``allowed_transitions(labels)`` in place (a model built from its architecture alone,
        which knows the number of tags but not their names, gets its constraints here from the label map)."""
        if len(labels) != self.num_tags:
            raise ValueError(f"{len(labels)} labels for a CRF of {self.num_tags} tags")
        for mask, allowed in zip((self.start_mask, self.transition_mask, self.end_mask), allowed_transitions(labels),
                                 strict=True):
            mask.copy_(allowed)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, forbidden={int((~self.transition_mask).sum())} transitions"

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """fp32 (start (C,), transitions (C, C), end (C,)) with forbidden entries at ``CONSTRAINED``.

        ``where`` rather than in-place writes, so forbidden entries get exactly zero gradient."""
        return (torch.where(self.start_mask, self.start.float(), CONSTRAINED),
                torch.where(self.transition_mask, self.transitions.float(), CONSTRAINED),
                torch.where(self.end_mask, self.end.float(), CONSTRAINED))

    def _check(self, emissions: Tensor, mask: Tensor) -> None:
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """(B,) log of the sum over all tag sequences of exp(score); 0 for a row with no position."""
        self._check(emissions, mask)
        start, trans, end = self.scores()
        emissions, mask = emissions.float(), mask.bool()
        b, t, c = emissions.shape
        into = trans.t()  # (C, C): into[j, i] scores i -> j, so the scan reduces the last, contiguous dim
        alpha = emissions.new_zeros(b, c)  # (B, C): log-sum of paths ending in each tag at the last position
        started = mask.new_zeros(b)  # (B,): the row has had a position
        for i in range(t):
            em = emissions[:, i]  # (B, C)
            moved = torch.logsumexp(alpha[:, None, :] + into, dim=2) + em  # (B, C, C) -> (B, C)
            step = torch.where(started[:, None], moved, start + em)
            alpha = torch.where(mask[:, i, None], step, alpha)  # a masked position leaves alpha as it was
            started = started | mask[:, i]
        return torch.where(started, torch.logsumexp(alpha + end, dim=1), 0.0)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """(B,) score of the given tag sequences: start + emissions + transitions + end, at masked positions.

        Tags at masked positions are ignored (they may be -100). No loop: the transition at a position links
        it to the previous unmasked one, found with a cumulative max over positions."""
        self._check(emissions, mask)
        start, trans, end = self.scores()
        emissions, mask = emissions.float(), mask.bool()
        b, t, _ = emissions.shape
        if t == 0:
            return emissions.new_zeros(b)
        tags = torch.where(mask, tags.long(), 0)  # (B, T)
        emitted = emissions.gather(2, tags[:, :, None])[:, :, 0]  # (B, T)
        positions = torch.arange(t, device=mask.device).expand(b, t)
        last_seen = torch.where(mask, positions, -1).cummax(1).values  # (B, T): last unmasked position <= i
        prev = torch.cat([last_seen.new_full((b, 1), -1), last_seen[:, :-1]], dim=1)  # (B, T): before i
        prev_tag = tags.gather(1, prev.clamp(min=0))  # (B, T)
        linked = torch.where(prev >= 0, trans[prev_tag, tags], start[tags])  # (B, T)
        total = torch.where(mask, emitted + linked, 0.0).sum(1)  # (B,)
        last = last_seen[:, -1]  # (B,)
        final = end[tags.gather(1, last.clamp(min=0)[:, None])[:, 0]]  # (B,)
        return total + torch.where(last >= 0, final, 0.0)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """(B,) negative log-likelihood of ``tags`` (>= 0; 0 for an empty row). Reduce it as the loss wants:
        mean over rows, or sum over the batch divided by its word count for a per-word scale like softmax's."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    def decode(self, emissions: Tensor, mask: Tensor, pad: int = 0) -> Tensor:
        """(B, T) int64 Viterbi path: the best-scoring tag sequence over the masked positions; ``pad`` elsewhere.

        One scan keeps, per row and tag, the best score of a path ending there and its backpointer (B, C)
        (argmax over the last dim, then gather: on CPU that beats ``max(dim)``'s parallel path on tiny C);
        a masked position passes the scores through and points every tag to itself, so the backtrack, one
        gather per position from the best final tag, carries the tag across it unchanged."""
        self._check(emissions, mask)
        start, trans, end = self.scores()
        emissions, mask = emissions.float(), mask.bool()
        b, t, c = emissions.shape
        into = trans.t()  # (C, C): into[j, i] scores i -> j
        same = torch.arange(c, device=emissions.device).expand(b, c)  # (B, C) identity backpointers
        best = emissions.new_zeros(b, c)  # (B, C)
        started = mask.new_zeros(b)
        pointers: list[Tensor] = []
        for i in range(t):
            em = emissions[:, i]  # (B, C)
            cand = best[:, None, :] + into  # (B, C, C): [b, j, i] = best path ending in i, then i -> j
            arg = cand.argmax(dim=2)  # (B, C): best previous tag per tag
            top = cand.gather(2, arg[:, :, None])[:, :, 0]  # (B, C)
            step = torch.where(started[:, None], top + em, start + em)
            on = mask[:, i, None]  # (B, 1)
            best = torch.where(on, step, best)
            pointers.append(torch.where(on & started[:, None], arg, same))
            started = started | mask[:, i]
        tag = (best + end).argmax(dim=1, keepdim=True)  # (B, 1) best final tag
        path: list[Tensor] = []
        for i in range(t - 1, -1, -1):
            path.append(tag)
            tag = pointers[i].gather(1, tag)  # (B, 1) tag at the previous unmasked position
        tags = torch.cat(path[::-1], dim=1) if path else mask.new_zeros(b, 0, dtype=torch.long)  # (B, T)
        return torch.where(mask, tags, pad)
