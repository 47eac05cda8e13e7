"""Mention-level scores on documents against figures computed by hand (exact offsets, nervaluate's
four modes through the real ``nervaluate`` package, and the error breakdown)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from tc.tasks.token_cls.documents import Document, Mention, mention_scores
from tc.tasks.token_cls.documents.mention_eval import mention_table

TEXT = "x" * 70


def doc(doc_id: str, *spans: tuple[int, int, str]) -> Document:
    return Document.from_text(doc_id, TEXT, [Mention(s, e, t) for s, e, t in spans])


GOLD = [
    doc("d1", (0, 5, "Chem"), (10, 15, "Chem"), (20, 25, "Dis"), (30, 35, "Chem"), (40, 45, "Dis"),
        (50, 55, "Chem")),
    doc("d2", (0, 3, "Dis")),
]
PRED = [
    doc("d1",
        (0, 5, "Chem"),    # correct
        (10, 15, "Dis"),   # same span, wrong type
        (20, 27, "Dis"),   # same type, wrong boundary
        (31, 35, "Dis"),   # wrong type and boundary
        (60, 65, "Chem"),  # spurious
        (50, 55, "Chem")), # correct; (40, 45) and all of d2 are missed
]


def test_exact_offset_scores_by_hand() -> None:
    scores = mention_scores(GOLD, PRED)
    # 2 correct of 6 predicted and 7 gold: P 1/3, R 2/7, F1 4/13.
    assert (scores["correct"], scores["predicted"], scores["mentions"]) == (2, 6, 7)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (33.3333, 28.5714, 30.7692)
    assert scores["per_type"] == {
        "Chem": {"precision": 66.6667, "recall": 50.0, "f1": 57.1429, "support": 4, "predicted": 3, "correct": 2},
        "Dis": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3, "predicted": 3, "correct": 0},
    }
    assert (scores["documents"], scores["documents_without_predictions"]) == (2, 1)
    assert json.loads(json.dumps(scores)) == scores


def test_error_breakdown_by_hand() -> None:
    errors = mention_scores(GOLD, PRED)["errors"]
    assert {k: v for k, v in errors.items() if k != "per_type"} == {
        "missed": 2, "spurious": 1, "wrong_type": 1, "wrong_boundary": 1, "wrong_type_and_boundary": 1}
    assert errors["per_type"] == {
        "Chem": {"missed": 0, "spurious": 1, "wrong_type": 1, "wrong_boundary": 0, "wrong_type_and_boundary": 1},
        "Dis": {"missed": 2, "spurious": 0, "wrong_type": 0, "wrong_boundary": 1, "wrong_type_and_boundary": 0},
    }


def test_nervaluate_modes_by_hand() -> None:
    modes = mention_scores(GOLD, PRED)["nervaluate"]["overall"]
    counts = {m: (v["correct"], v["incorrect"], v["partial"], v["missed"], v["spurious"]) for m, v in modes.items()}
    assert counts == {"strict": (2, 3, 0, 2, 1), "exact": (3, 2, 0, 2, 1), "partial": (3, 0, 2, 2, 1),
                      "type": (3, 2, 0, 2, 1)}
    assert (modes["strict"]["precision"], modes["strict"]["recall"], modes["strict"]["f1"]) == (33.3333, 28.5714,
                                                                                                 30.7692)
    assert (modes["exact"]["precision"], modes["exact"]["recall"], modes["exact"]["f1"]) == (50.0, 42.8571, 46.1538)
    # partial: (3 + 0.5 * 2) / 6 and / 7.
    assert (modes["partial"]["precision"], modes["partial"]["recall"], modes["partial"]["f1"]) == (66.6667, 57.1429,
                                                                                                    61.5385)
    assert (modes["type"]["actual"], modes["type"]["possible"]) == (6, 7)
    chem = mention_scores(GOLD, PRED)["nervaluate"]["per_type"]["Chem"]["strict"]
    assert (chem["correct"], chem["missed"], chem["spurious"]) == (2, 2, 1)


def test_duplicates_types_filter_and_perfect_match() -> None:
    gold = [doc("a", (0, 2, "A"), (0, 2, "A"), (3, 5, "B"))]
    pred = [doc("a", (0, 2, "A"), (3, 5, "B"), (3, 5, "B"))]
    scores = mention_scores(gold, pred)
    assert (scores["correct"], scores["errors"]["missed"], scores["errors"]["spurious"]) == (2, 1, 1)
    only_b = mention_scores(gold, pred, types={"B"})
    assert (only_b["correct"], only_b["predicted"], only_b["mentions"]) == (1, 2, 1)
    perfect = mention_scores(GOLD, GOLD)
    assert perfect["f1"] == 100.0 and all(m["f1"] == 100.0 for m in perfect["nervaluate"]["overall"].values())
    empty = mention_scores([doc("e")], [doc("e")])
    assert (empty["f1"], empty["nervaluate"]["overall"]) == (0.0, {})


def test_predictions_for_unknown_documents_are_refused() -> None:
    with pytest.raises(ValueError, match="predictions for documents not in the gold data: zz"):
        mention_scores(GOLD, [doc("zz", (0, 1, "A"))])


def test_table_shows_types_modes_and_errors() -> None:
    console = Console(width=200, record=True)
    console.print(mention_table(mention_scores(GOLD, PRED), "test"))
    out = console.export_text()
    assert "test mention-level scores (exact character offsets)" in out
    assert "Chem" in out and "57.14" in out and "30.77" in out
    assert "strict 30.77" in out and "partial 61.54" in out and "wrong type and boundary 1" in out
