"""Scores on the documents themselves: predicted mentions against gold ones, as character spans.

* ``exact``-offset P/R/F1 (the headline figure, what BioCreative scripts report): a predicted mention
  counts when a gold mention of the same document has the same start, end and type; micro over all
  mentions and per type. Duplicates count as many times as they occur on both sides (multisets).
* ``nervaluate``'s four modes, computed by the ``nervaluate`` package: ``strict`` (span and type),
  ``exact`` (span only), ``partial`` (overlap counts half) and ``type`` (overlap and type; its
  ``ent_type``). nervaluate's ends are inclusive; tc's exclusive ends are converted.
* ``errors``: what went wrong, each predicted and gold mention used once, preferring in this order:
  same span, other type (``wrong_type``); overlapping, same type (``wrong_boundary``); overlapping,
  other type (``wrong_type_and_boundary``); what remains is ``missed`` (gold) or ``spurious`` (predicted).

A discontinuous mention is scored as its whole span, the rule it was trained with. All figures are
percentages rounded to 4 places, like ``metrics.entity_scores``; the result is JSON-serialisable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from rich.table import Table

from tc.tasks.token_cls.documents.model import Document

__all__ = ["ERROR_KINDS", "mention_scores", "mention_table"]

Span = tuple[int, int, str]
ERROR_KINDS = ("missed", "spurious", "wrong_type", "wrong_boundary", "wrong_type_and_boundary")
NERVALUATE_MODES = {"strict": "strict", "exact": "exact", "partial": "partial", "type": "ent_type"}


def _prf(correct: float, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(100 * precision, 4), "recall": round(100 * recall, 4), "f1": round(100 * f1, 4)}


def _pairs(gold: Sequence[Document], pred: Sequence[Document],
           types: Collection[str] | None) -> tuple[list[list[Span]], list[list[Span]], int]:
    """Gold and predicted spans per gold document (matched by id); predictions for a document that is
    not in gold are a programming error."""
    by_id = {d.id: d for d in pred}
    unknown = sorted(set(by_id) - {d.id for d in gold})
    if unknown:
        raise ValueError(f"predictions for documents not in the gold data: {', '.join(unknown[:5])}")

    def spans(doc: Document | None) -> list[Span]:
        return [] if doc is None else [m.span for m in doc.mentions if types is None or m.type in types]

    missing = sum(1 for d in gold if d.id not in by_id)
    return [spans(d) for d in gold], [spans(by_id.get(d.id)) for d in gold], missing


def _exact(gold: list[list[Span]], pred: list[list[Span]]) -> dict[str, Any]:
    correct: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        for span, n in (Counter(g) & Counter(p)).items():
            correct[span[2]] += n
        n_gold.update(s[2] for s in g)
        n_pred.update(s[2] for s in p)
    per_type = {t: {**_prf(correct[t], n_pred[t], n_gold[t]), "support": n_gold[t], "predicted": n_pred[t],
                    "correct": correct[t]} for t in sorted(n_gold.keys() | n_pred.keys())}
    total_c, total_p, total_g = sum(correct.values()), sum(n_pred.values()), sum(n_gold.values())
    return {**_prf(total_c, total_p, total_g), "correct": total_c, "predicted": total_p, "mentions": total_g,
            "per_type": per_type}


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _errors(gold: list[list[Span]], pred: list[list[Span]]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    per_type: dict[str, Counter[str]] = {}

    def count(kind: str, span: Span) -> None:
        total[kind] += 1
        per_type.setdefault(span[2], Counter())[kind] += 1

    tests = (("wrong_type", lambda g, p: g[:2] == p[:2]),
             ("wrong_boundary", lambda g, p: g[2] == p[2] and _overlap(g, p)),
             ("wrong_type_and_boundary", _overlap))
    for g_doc, p_doc in zip(gold, pred, strict=True):
        matched = Counter(g_doc) & Counter(p_doc)
        g_left = sorted((Counter(g_doc) - matched).elements())
        p_left = sorted((Counter(p_doc) - matched).elements())
        for kind, test in tests:
            for p in list(p_left):
                g = next((g for g in g_left if test(g, p)), None)
                if g is not None:
                    g_left.remove(g)
                    p_left.remove(p)
                    count(kind, g)
        for g in g_left:
            count("missed", g)
        for p in p_left:
            count("spurious", p)
    return {**{k: total[k] for k in ERROR_KINDS},
            "per_type": {t: {k: c[k] for k in ERROR_KINDS} for t, c in sorted(per_type.items())}}


def _mode(result: Any) -> dict[str, Any]:
    return {"correct": result.correct, "incorrect": result.incorrect, "partial": result.partial,
            "missed": result.missed, "spurious": result.spurious, "possible": result.possible,
            "actual": result.actual, "precision": round(100 * result.precision, 4),
            "recall": round(100 * result.recall, 4), "f1": round(100 * result.f1, 4)}


def _nervaluate(gold: list[list[Span]], pred: list[list[Span]]) -> dict[str, Any]:
    from nervaluate import Evaluator

    tags = sorted({s[2] for doc in (*gold, *pred) for s in doc})
    if not gold or not tags:
        return {"overall": {}, "per_type": {}}

    def dicts(docs: list[list[Span]]) -> list[list[dict[str, Any]]]:
        return [[{"label": t, "start": s, "end": e - 1} for s, e, t in doc] for doc in docs]

    results = Evaluator(dicts(gold), dicts(pred), tags=tags, loader="dict").evaluate()
    overall = {name: _mode(results["overall"][key]) for name, key in NERVALUATE_MODES.items()}
    per_type = {tag: {name: _mode(results["entities"][tag][key]) for name, key in NERVALUATE_MODES.items()}
                for tag in sorted(results["entities"])}
    return {"overall": overall, "per_type": per_type}


def mention_scores(gold: Sequence[Document], pred: Sequence[Document],
                   types: Collection[str] | None = None) -> dict[str, Any]:
    """Mention-level scores of ``pred`` against ``gold`` (documents matched by id; a gold document
    without predictions predicts nothing). ``types`` restricts both sides to those types."""
    g, p, missing = _pairs(gold, pred, types)
    return {**_exact(g, p), "documents": len(gold), "documents_without_predictions": missing,
            "nervaluate": _nervaluate(g, p), "errors": _errors(g, p)}


def mention_table(scores: dict[str, Any], split: str = "eval") -> Table:
    """The terminal view: exact-offset P/R/F1 per type and micro, nervaluate's modes and the errors."""
    table = Table(title=f"{split} mention-level scores (exact character offsets)", title_justify="left")
    for column in ("type", "precision", "recall", "F1", "gold", "predicted"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for name, v in scores["per_type"].items():
        table.add_row(name, f"{v['precision']:.2f}", f"{v['recall']:.2f}", f"{v['f1']:.2f}", str(v["support"]),
                      str(v["predicted"]))
    table.add_row("[bold]micro avg", f"[bold]{scores['precision']:.2f}", f"[bold]{scores['recall']:.2f}",
                  f"[bold]{scores['f1']:.2f}", f"[bold]{scores['mentions']}", f"[bold]{scores['predicted']}")
    modes = scores["nervaluate"]["overall"]
    errors = scores["errors"]
    table.caption = ("nervaluate F1: " + ", ".join(f"{m} {v['f1']:.2f}" for m, v in modes.items())
                     + "  |  errors: " + ", ".join(f"{k.replace('_', ' ')} {errors[k]}" for k in ERROR_KINDS))
    return table
