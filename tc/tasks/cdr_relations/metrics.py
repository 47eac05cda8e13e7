"""The BioCreative V CDR measure: precision, recall and F1 over ``(document, head, tail)`` concept triples.

Every gold relation counts, also one whose concepts have no candidate pair (a concept cut off past
``max_sequence_length``, or missing from predicted mentions end to end): it is a missed relation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Triple = tuple[str, str, str]

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""The thresholds ``best_threshold`` looks at (what devel would choose; never applied by itself)."""


def prf(gold: set[Triple], predicted: set[Triple]) -> dict[str, Any]:
    """Percent precision, recall and F1 (0 where undefined) and the counts behind them."""
    tp = len(gold & predicted)
    precision = 100.0 * tp / len(predicted) if predicted else 0.0
    recall = 100.0 * tp / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 2), "recall": round(recall, 2), "f1": round(f1, 2),
            "true_positives": tp, "predicted": len(predicted), "gold": len(gold)}


def predicted_triples(doc_ids: Sequence[str], pairs: Sequence[Sequence[tuple[str, str]]],
                      probabilities: Sequence[np.ndarray], threshold: float) -> set[Triple]:
    """The triples whose probability reaches ``threshold``."""
    out = set()
    for doc_id, doc_pairs, probs in zip(doc_ids, pairs, probabilities, strict=True):
        out.update((doc_id, h, t) for (h, t), p in zip(doc_pairs, probs.tolist(), strict=True) if p >= threshold)
    return out


def found_triples(doc_ids: Sequence[str], found: Sequence[Sequence[Any]], threshold: float) -> set[Triple]:
    """The triples of predicted relations (``predictor.Relation``: head, tail, score) reaching ``threshold``."""
    return {(d, r.head, r.tail) for d, rels in zip(doc_ids, found, strict=True) for r in rels if r.score >= threshold}


def best_threshold(f1_at: dict[float, float], near: float = 0.5) -> float:
    """The threshold with the best F1 in ``f1_at``; on a tie, the one nearest ``near``."""
    return max(f1_at, key=lambda t: (f1_at[t], -abs(t - near)))


def relation_scores(doc_ids: Sequence[str], gold_pairs: Sequence[set[tuple[str, str]]],
                    pairs: Sequence[Sequence[tuple[str, str]]], probabilities: Sequence[np.ndarray],
                    threshold: float) -> dict[str, Any]:
    """Scores at ``threshold`` (top-level ``f1``) and, under ``best_threshold``, the threshold of this split
    that would have scored best with its F1 (read on devel to choose one, never on test)."""
    gold = {(d, h, t) for d, rels in zip(doc_ids, gold_pairs, strict=True) for h, t in rels}
    metrics = prf(gold, predicted_triples(doc_ids, pairs, probabilities, threshold))
    metrics["threshold"] = threshold
    sweep = {t: prf(gold, predicted_triples(doc_ids, pairs, probabilities, t))["f1"] for t in THRESHOLDS}
    best = best_threshold(sweep)
    metrics["best_threshold"] = {"threshold": best, "f1": sweep[best]}
    return metrics


def render(metrics: dict[str, Any]) -> Any:
    """A rich table of the relation scores."""
    from rich.table import Table

    table = Table(title=f"relation scores ({metrics.get('split', 'eval')})")
    for column in ("precision", "recall", "f1", "predicted", "gold"):
        table.add_column(column, justify="right")
    table.add_row(*(str(metrics.get(c, "")) for c in ("precision", "recall", "f1", "predicted", "gold")))
    best = metrics.get("best_threshold")
    if best:
        table.caption = f"threshold {metrics.get('threshold')}; best on this split {best['threshold']}: F1 {best['f1']}"
    return table
