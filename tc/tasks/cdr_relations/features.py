"""One document as model input: WordPiece ids with ``*`` around every mention, and its candidate pairs.

ATLOP's recipe (Zhou et al., 2021): a marker token before and after each mention, the hidden state of
the opening marker stands for the mention. Words are split at mention edges first, so a mention that
starts or ends inside a word (``naloxone-induced``) still gets its own markers. Candidate pairs are every
(head-type concept, tail-type concept) of the document; a concept all of whose mentions fall past
``max_tokens`` has no representation and its pairs are left out (predicted false, and counted as missed
when gold has them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tc.tasks.cdr_relations.corpus import RelationDoc
from tc.tasks.token_cls.documents.align import cut_words

MARKER = "*"
DISTANCES = (0, 1, 2, 4)
"""Sentence-distance buckets of a pair (the closest mentions' sentences): 0, 1, 2, 3-4, 5 or more."""
PAIR_FEATURES = (len(DISTANCES) + 1) * 4
"""Distinct ``pair_feature`` values: distance bucket x head in the title x tail in the title."""


@dataclass
class Encoded:
    """Model input of one document (int32 arrays) and the concept pairs its rows of ``labels`` stand for."""

    input_ids: np.ndarray
    mention_pos: np.ndarray
    """Position of each mention's opening marker."""
    mention_concept: np.ndarray
    """Index (into the document's concepts) of the concept each mention belongs to."""
    pair_head: np.ndarray
    pair_tail: np.ndarray
    labels: np.ndarray
    """1 where the pair is a gold relation (0 when the document has none to say)."""
    pair_feature: np.ndarray
    """Per pair: its sentence-distance bucket and whether each concept is named in the title (``pair_features``)."""
    pairs: list[tuple[str, str]]
    truncated: bool = False


def encode_document(doc: RelationDoc, encoder: object, head_type: str, tail_type: str,
                    max_tokens: int) -> Encoded:
    """``doc`` as ids ``[CLS] ... [SEP]`` of at most ``max_tokens`` pieces, markers in, and its pairs."""
    spans = sorted({span for concept in doc.concepts for span in concept.spans})
    starts = {s for s, _ in spans}
    ends = {e for _, e in spans}
    words = cut_words(doc.text, (0, len(doc.text)), sorted(starts | ends))
    texts: list[str] = []
    opening: dict[int, int] = {}  # mention start offset -> index in texts of its opening marker
    for word, start, end in words:
        if start in starts:
            opening[start] = len(texts)
            texts.append(MARKER)
        texts.append(word)
        if end in ends:
            texts.append(MARKER)
    pieces, counts = encoder.encode_words(texts)  # type: ignore[attr-defined]
    first_piece = np.concatenate([[0], np.cumsum(counts)[:-1]]) + 1  # +1 for [CLS]
    budget = max_tokens - 2
    truncated = len(pieces) > budget
    ids = np.concatenate([[encoder.cls_id], pieces[:budget], [encoder.sep_id]]).astype(np.int32)  # type: ignore[attr-defined]
    word_starts = [w[1] for w in words]
    mention_pos, mention_concept = [], []
    for index, concept in enumerate(doc.concepts):
        for start, _ in concept.spans:
            marker = opening.get(start)
            if marker is None:  # a mention starting inside whitespace: the word that follows
                after = next((i for i, s in enumerate(word_starts) if s >= start), None)
                if after is None:
                    continue
                marker = opening.get(word_starts[after])
                if marker is None:
                    continue
            position = int(first_piece[marker])
            if position <= budget:
                mention_pos.append(position)
                mention_concept.append(index)
    present = set(mention_concept)
    heads = [i for i, c in enumerate(doc.concepts) if c.type == head_type and i in present]
    tails = [i for i, c in enumerate(doc.concepts) if c.type == tail_type and i in present]
    pair_head = [h for h in heads for _ in tails]
    pair_tail = [t for _ in heads for t in tails]
    pairs = [(doc.concepts[h].id, doc.concepts[t].id) for h, t in zip(pair_head, pair_tail, strict=True)]
    labels = [int(p in doc.relations) for p in pairs]
    features = pair_features(doc, pair_head, pair_tail)
    return Encoded(ids, _i32(mention_pos), _i32(mention_concept), _i32(pair_head), _i32(pair_tail),
                   _i32(labels), _i32(features), pairs, truncated)


def pair_features(doc: RelationDoc, heads: Sequence[int], tails: Sequence[int]) -> list[int]:
    """Each pair's ``(distance bucket * 2 + head in title) * 2 + tail in title``: how close the two concepts
    come (sentences between their nearest mentions) and whether the title names them, what a reader of
    an abstract weighs first."""
    import bisect

    starts = [s for s, _ in doc.sentences]
    sentence = [[bisect.bisect_right(starts, s) - 1 for s, _ in c.spans] for c in doc.concepts]
    in_title = [int(any(e <= doc.title_end for _, e in c.spans)) for c in doc.concepts]
    out = []
    for h, t in zip(heads, tails, strict=True):
        distance = min(abs(a - b) for a in sentence[h] for b in sentence[t])
        bucket = bisect.bisect_left(DISTANCES, distance) if distance <= DISTANCES[-1] else len(DISTANCES)
        out.append((bucket * 2 + in_title[h]) * 2 + in_title[t])
    return out


def _i32(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)
