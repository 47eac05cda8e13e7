"""NER scores: seqeval entity-level P/R/F1 on words (micro and per type), plus the Cerebras seed's
token-level macro F1 over labelled positions, and for splits read from documents or several corpora
(``split_scores``) mention-level scores on the documents and per-corpus scores. All scores are
percentages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.table import Table


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """Entity-level scores in seqeval's default (conlleval) mode, as Hugging Face's run_ner reports."""
    from seqeval.metrics import classification_report

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        name: _percent(values)
        for name, values in report.items()
        if name not in ("micro avg", "macro avg", "weighted avg")
    }
    return {
        "precision": round(100 * float(micro["precision"]), 4),
        "recall": round(100 * float(micro["recall"]), 4),
        "f1": round(100 * float(micro["f1-score"]), 4),
        "entities": int(micro["support"]),
        "per_type": per_type,
    }


def _percent(values: dict[str, float]) -> dict[str, float]:
    return {
        "precision": round(100 * float(values["precision"]), 4),
        "recall": round(100 * float(values["recall"]), 4),
        "f1": round(100 * float(values["f1-score"]), 4),
        "support": int(values["support"]),
    }


def token_macro_f1(gold_ids: np.ndarray, pred_ids: np.ndarray, num_classes: int) -> float:
    """Unweighted mean F1 over the classes present in gold or predictions (the seed's FBetaScore)."""
    gold_ids = np.asarray(gold_ids, dtype=np.int64)
    pred_ids = np.asarray(pred_ids, dtype=np.int64)
    if gold_ids.size == 0:
        return 0.0
    confusion = np.bincount(gold_ids * num_classes + pred_ids, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    tp = np.diag(confusion).astype(np.float64)
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    present = (tp + fp + fn) > 0
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    return round(100 * float(f1[present].mean()), 4) if present.any() else 0.0


def metrics_table(metrics: dict[str, Any]) -> Table:
    """The terminal view of an evaluation: one row per entity type and the micro average."""
    split = metrics.get("split", "eval")
    table = Table(title=f"{split} entity-level scores (seqeval)", title_justify="left")
    for column in ("type", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for name, values in sorted(metrics.get("per_type", {}).items()):
        table.add_row(name, f"{values['precision']:.2f}", f"{values['recall']:.2f}", f"{values['f1']:.2f}",
                      str(values["support"]))
    table.add_row("[bold]micro avg", f"[bold]{metrics['precision']:.2f}", f"[bold]{metrics['recall']:.2f}",
                  f"[bold]{metrics['f1']:.2f}", f"[bold]{metrics.get('entities', '')}")
    if "token_macro_f1" in metrics:
        table.caption = (f"token-level macro F1 {metrics['token_macro_f1']:.2f}  |  "
                         f"{metrics.get('examples_per_s', 0):.0f} windows/s")
    without = metrics.get("without_rules", {})
    if "f1" in without:
        line = f"document rules {', '.join(metrics['document_rules'])}: F1 without them {without['f1']:.2f}"
        table.caption = f"{table.caption}\n{line}" if table.caption else line
    return table


def _only(sequence: list[str], types: tuple[str, ...] | None) -> list[str]:
    """Labels of types outside ``types`` read as O (a corpus is scored only on the types it annotates)."""
    if types is None:
        return sequence
    return [x if x == "O" or x[2:] in types else "O" for x in sequence]


def predicted_documents(part: Any, words: list[list[str]], rules: Sequence[str] = ()) -> list[Any]:
    """A document part's documents carrying the predicted mentions, revised by the document ``rules``."""
    from tc.tasks.token_cls.documents.rules import apply_rules

    return [apply_rules(d, rules) for d in part.corpus.to_documents(words[part.start : part.stop])]


def _documents(part: Any, words: list[list[str]], types: tuple[str, ...] | None, prefix: str = "",
               rules: Sequence[str] = ()) -> tuple[list[Any], list[Any], list[Any]]:
    """(gold, predicted, predicted revised by ``rules``) documents of a document part, restricted to
    ``types``, ids prefixed; the predictions are laid out once and the rules revise that one copy."""
    import dataclasses

    from tc.tasks.token_cls.documents.model import with_mentions
    from tc.tasks.token_cls.documents.rules import apply_rules

    def keep(doc: Any) -> Any:
        kept = with_mentions(doc, [m for m in doc.mentions if types is None or m.type in types])
        return dataclasses.replace(kept, id=prefix + doc.id) if prefix else kept

    raw = part.corpus.to_documents(words[part.start : part.stop])
    revised = [apply_rules(d, rules) for d in raw] if rules else raw
    return [keep(d) for d in part.corpus.documents], [keep(d) for d in raw], [keep(d) for d in revised]


def _word_rules(data: Any, pred: list[list[str]], rules: Sequence[str]) -> list[list[str]]:
    """``pred`` revised by the document rules in the parts read from TSV/CoNLL files that mark documents
    (``-DOCSTART-``; ``word_rules``); document parts are revised on their documents instead."""
    from tc.tasks.token_cls.word_rules import revise_labels

    out = list(pred)
    for part in data.parts:
        sentences = data.sentences[part.start : part.stop]
        if part.corpus is None and any(s.doc_index is not None for s in sentences):
            out[part.start : part.stop] = revise_labels([s.words for s in sentences], pred[part.start : part.stop],
                                                        [s.doc_index for s in sentences], rules)
    return out


def _brief(scores: dict[str, Any]) -> dict[str, Any]:
    keep = ("precision", "recall", "f1", "entities", "mentions", "correct", "predicted", "per_type", "errors")
    return {k: v for k, v in scores.items() if k in keep}


def split_scores(data: Any, gold: list[list[str]], pred: list[list[str]],
                 types: list[tuple[str, ...] | None], rules: Sequence[str] = ()) -> dict[str, Any]:
    """Scores of a split read by ``tc.tasks.token_cls.sources`` (``SplitData``; ``types[i]`` what part
    ``i`` annotates, None for all): seqeval entity scores overall (top-level, ``f1``), per corpus when
    there are several (``corpora``), and mention-level scores on the documents (``mentions``,
    ``mention_f1``: micro over every document part; each corpus's own under ``corpora``).

    With document ``rules``, every figure is of the predictions the rules revised (TSV/CoNLL parts that
    mark documents, and document parts' mentions), and ``without_rules`` holds the same scores of the
    model's own predictions, so a rule's effect reads off one file."""
    from tc.tasks.token_cls.documents import mention_scores

    parts = data.parts
    own = list(pred)
    for part, kinds in zip(parts, types, strict=True):
        own[part.start : part.stop] = [_only(s, kinds) for s in pred[part.start : part.stop]]
    shown = _word_rules(data, own, rules) if rules else own
    metrics = entity_scores(gold, shown)
    without: dict[str, Any] = {}
    if rules:
        without = _brief(entity_scores(gold, own)) if shown != own else {"same": True}
    several = len(parts) > 1
    if several:
        metrics["corpora"] = {
            part.source.name: {**entity_scores(gold[part.start : part.stop], shown[part.start : part.stop]),
                               "types": None if kinds is None else list(kinds)}
            for part, kinds in zip(parts, types, strict=True)}
    all_gold: list[Any] = []
    all_pred: list[Any] = []
    raw_pred: list[Any] = []
    alignment = {}
    for part, kinds in zip(parts, types, strict=True):
        if part.corpus is None:
            continue
        g, raw, p = _documents(part, pred, kinds, f"{part.source.name}/" if several else "", rules)
        all_gold.extend(g)
        all_pred.extend(p)
        raw_pred.extend(raw)
        alignment[part.source.name] = part.corpus.report.to_dict()
        if several:
            scores = mention_scores(g, p)
            metrics["corpora"][part.source.name].update(mentions=scores, mention_f1=scores["f1"])
    if all_gold:
        metrics["mentions"] = mention_scores(all_gold, all_pred)
        metrics["mention_f1"] = metrics["mentions"]["f1"]
        metrics["alignment"] = alignment if several else next(iter(alignment.values()))
        if rules:
            without["mentions"] = _brief(mention_scores(all_gold, raw_pred))
    if rules:
        metrics["document_rules"] = list(rules)
        metrics["without_rules"] = without
    return metrics


def corpora_table(metrics: dict[str, Any]) -> Table:
    """One row per corpus: its types, entity F1 and (documents) mention F1."""
    split = metrics.get("split", "eval")
    table = Table(title=f"{split} per corpus", title_justify="left")
    for column in ("corpus", "types", "entity F1", "mention F1", "entities"):
        table.add_column(column, justify="left" if column in ("corpus", "types") else "right")
    for name, v in metrics["corpora"].items():
        mention = f"{v['mention_f1']:.2f}" if "mention_f1" in v else "-"
        table.add_row(name, ", ".join(v.get("types") or ["all"]), f"{v['f1']:.2f}", mention, str(v["entities"]))
    return table


def render(metrics: dict[str, Any]) -> Any:
    """The entity table, then the mention table (documents) and the per-corpus table (several corpora)."""
    from rich.console import Group

    from tc.tasks.token_cls.documents.mention_eval import mention_table

    parts: list[Any] = [metrics_table(metrics)]
    if "mentions" in metrics:
        parts.append(mention_table(metrics["mentions"], metrics.get("split", "eval")))
    if "corpora" in metrics:
        parts.append(corpora_table(metrics))
    return parts[0] if len(parts) == 1 else Group(*parts)
