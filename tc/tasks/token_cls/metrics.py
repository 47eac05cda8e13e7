"""NER scores: seqeval entity-level P/R/F1 on words (micro and per type), plus the Cerebras seed's
token-level macro F1 over labelled positions. All scores are percentages."""

from __future__ import annotations

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
    return table
