"""Document rules (documents/rules.py, word_rules.py): each rule changes a document's predicted mentions only
where it says, says so in ``Mention.rule``, and leaves everything else as predicted."""

from __future__ import annotations

import pytest

from tc.tasks.token_cls.documents.model import Document, Mention
from tc.tasks.token_cls.documents.rules import RULES, apply_rules, rules_flag
from tc.tasks.token_cls.documents.tagging import attach, revise_entities, sentence_pieces
from tc.tasks.token_cls.word_rules import label_spans, revise_labels

TEXT = ("Rats were given indomethacin (IDM) daily. IDM reduced the pain of the rats. "
        "Later IDM was stopped and aspirin given; aspirin helped.")


def at(text: str, needle: str, nth: int = 0, type: str = "Chemical", score: float | None = 0.9) -> Mention:
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    return Mention(start, start + len(needle), type, needle, score=score)


def spans(doc: Document) -> list[tuple[str, str, str | None]]:
    return [(doc.text[m.start : m.end], m.type, m.rule) for m in doc.mentions]


def test_a_short_form_takes_its_long_forms_type_everywhere() -> None:
    doc = Document.from_text("d", TEXT, [at(TEXT, "indomethacin"), at(TEXT, "IDM", 1, "Disease")])
    out = apply_rules(doc, ["abbreviation"])
    assert spans(out) == [("indomethacin", "Chemical", None), ("IDM", "Chemical", "abbreviation"),
                          ("IDM", "Chemical", "abbreviation"), ("IDM", "Chemical", "abbreviation")]
    assert all(m.score == 0.9 for m in out.mentions)  # the long form's score


def test_a_short_form_whose_long_form_is_no_entity_is_not_forced() -> None:
    text = "We measured blood pressure (BP) daily. BP rose after cocaine."
    doc = Document.from_text("d", text, [at(text, "BP", 1), at(text, "cocaine")])
    assert apply_rules(doc, ["abbreviation"]) is doc  # nothing changed: the very same document


def test_a_short_form_whose_long_form_is_untagged_is_dropped() -> None:
    text = "We measured blood pressure (BP) daily. BP rose after cocaine (COC). COC was stopped."
    doc = Document.from_text("d", text, [at(text, "BP", 1), at(text, "cocaine"), at(text, "COC", 1)])
    assert spans(apply_rules(doc, ["no_long_form"])) == [("cocaine", "Chemical", None), ("COC", "Chemical", None)]
    assert spans(apply_rules(doc, ["abbreviation", "no_long_form"])) == [
        ("cocaine", "Chemical", None), ("COC", "Chemical", "abbreviation"), ("COC", "Chemical", None)]
    touched = Document.from_text("d", text, [Mention(12, 17, "Disease", "blood"), at(text, "BP", 1)])
    assert apply_rules(touched, ["no_long_form"]) is touched  # something the model tagged touches the long form


def test_the_long_form_is_tagged_where_only_its_short_form_was() -> None:
    text = "Patients with scleroderma renal crisis (SRC) were seen. SRC was treated."
    doc = Document.from_text("d", text, [at(text, "SRC", 1, "Disease")])
    assert spans(apply_rules(doc, ["long_form"])) == [("scleroderma renal crisis", "Disease", "long_form"),
                                                      ("SRC", "Disease", None)]
    both = apply_rules(doc, ["abbreviation", "long_form"])
    assert spans(both) == [("scleroderma renal crisis", "Disease", "long_form"), ("SRC", "Disease", "abbreviation"),
                           ("SRC", "Disease", None)]
    assert spans(apply_rules(doc, ["no_long_form", "long_form"])) == []  # (d) decides first
    inner = Document.from_text("d", text, [at(text, "renal crisis", type="Disease")])  # ends where the long form
    assert spans(apply_rules(inner, ["abbreviation"])) == [("renal crisis", "Disease", None),  # ends: its type
                                                           ("SRC", "Disease", "abbreviation"),
                                                           ("SRC", "Disease", "abbreviation")]


def test_a_mention_crossing_the_long_forms_edge_keeps_it_untouched() -> None:
    text = "in acute scleroderma renal crisis (SRC). SRC again."
    crossing = Mention(3, 20, "Disease", text[3:20])  # "acute scleroderma": crosses the long form's start
    doc = Document.from_text("d", text, [crossing, at(text, "SRC", 1, "Disease")])
    assert apply_rules(doc, ["long_form"]) is doc


def test_an_occurrence_partly_covered_by_another_mention_is_left_alone() -> None:
    text = "indomethacin (IDM) was given. IDM-X1 is other."
    other = Mention(text.index("IDM-X1"), text.index("IDM-X1") + 6, "Chemical", "IDM-X1")
    doc = Document.from_text("d", text, [at(text, "indomethacin"), other])
    assert spans(apply_rules(doc, ["abbreviation"])) == [("indomethacin", "Chemical", None),
                                                         ("IDM", "Chemical", "abbreviation"),
                                                         ("IDM-X1", "Chemical", None)]


def test_consistency_tags_a_repeated_string_with_its_majority_type() -> None:
    doc = Document.from_text("d", TEXT, [at(TEXT, "aspirin")])
    assert spans(apply_rules(doc, ["consistency"])) == [("aspirin", "Chemical", None),
                                                        ("aspirin", "Chemical", "consistency")]
    assert apply_rules(doc, ["abbreviation", "long_form"]) is doc  # consistency is its own rule


def test_no_rules_or_no_mentions_give_the_document_back() -> None:
    doc = Document.from_text("d", TEXT, [at(TEXT, "indomethacin")])
    assert apply_rules(doc, []) is doc
    empty = Document.from_text("d", TEXT)
    assert apply_rules(empty, RULES) is empty


def test_rules_flag() -> None:
    from tc.core.errors import TcError

    assert rules_flag(None) is None
    assert rules_flag("none") == ()
    assert rules_flag("long_form,abbreviation") == ("abbreviation", "long_form")
    with pytest.raises(TcError, match=r"^--document-rules abbrev: unknown document rule 'abbrev'"):
        rules_flag("abbrev")


def test_attach_applies_rules_before_min_score_and_to_plain_texts() -> None:
    doc = Document.from_text("d", TEXT)
    pieces = sentence_pieces([doc])
    assert len(pieces) == 3
    first = pieces[0][2]
    results = [[{"start": first.index("indomethacin"), "end": first.index("indomethacin") + 12,
                 "type": "Chemical", "text": "indomethacin", "score": 0.95}], [], []]
    [own] = attach([doc], pieces, results)
    assert spans(own) == [("indomethacin", "Chemical", None)]
    [revised] = attach([doc], pieces, results, 0.5, ["abbreviation"])
    assert [m.rule for m in revised.mentions] == [None, "abbreviation", "abbreviation", "abbreviation"]
    assert attach([doc], pieces, results, 0.99, ["abbreviation"])[0].mentions == []
    entities = [{"start": 16, "end": 28, "type": "Chemical", "text": "indomethacin", "score": 0.95}]
    found = revise_entities(TEXT, entities, ["abbreviation"])
    assert [(e["text"], e.get("rule")) for e in found] == [("indomethacin", None)] + [("IDM", "abbreviation")] * 3


def test_word_rules_revise_labels_within_marked_documents_only() -> None:
    words = [["Rats", "got", "indomethacin", "(", "IDM", ")", "."], ["IDM", "helped", "."], ["IDM", "again"]]
    labels = [["O", "O", "B-Chemical", "O", "O", "O", "O"], ["O", "O", "O"], ["B-Disease", "O"]]
    revised = revise_labels(words, labels, [0, 0, 1], ["abbreviation"])
    assert revised == [["O", "O", "B-Chemical", "O", "B-Chemical", "O", "O"], ["B-Chemical", "O", "O"],
                       ["B-Disease", "O"]]  # the third sentence is another document
    assert revise_labels(words, labels, [None, None, None], RULES) == labels  # unmarked: no documents
    assert revise_labels(words, labels, [0, 0, 1], []) == labels
    assert label_spans(["I-X", "I-X", "O", "B-Y", "I-Y", "I-X"]) == [(0, 2, "X"), (3, 5, "Y"), (5, 6, "X")]


def test_word_rules_take_only_mentions_on_word_edges() -> None:
    words = [["indomethacin", "(", "IDM", ")"], ["IDM-treated", "rats"]]  # one token: no label can say "IDM"
    labels = [["B-Chemical", "O", "O", "O"], ["O", "O"]]
    assert revise_labels(words, labels, [0, 0], ["abbreviation"]) == [["B-Chemical", "O", "B-Chemical", "O"],
                                                                     ["O", "O"]]
