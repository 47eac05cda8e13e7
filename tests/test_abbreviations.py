"""The Schwartz & Hearst abbreviation detector (documents/abbreviations.py): the paper's examples and the
hard cases, with offsets that index the text as given."""

from __future__ import annotations

import pytest

from tc.tasks.token_cls.documents.abbreviations import find_abbreviations, occurrences


def pairs(text: str) -> list[tuple[str, str]]:
    found = find_abbreviations(text)
    for a in found:  # every offset indexes the text itself
        assert text[a.short_start : a.short_end] == a.short
        assert text[a.long_start : a.long_end] == a.long
    return [(a.short, a.long) for a in found]


@pytest.mark.parametrize(("text", "expected"), [
    # Schwartz & Hearst 2003, section 2 and table 1
    ("Heat shock transcription factor (HSF) binds.", [("HSF", "Heat shock transcription factor")]),
    ("a complex of the gene product of the RAD23 gene and the 3' untranslated region (3'UTR) of it",
     [("3'UTR", "3' untranslated region")]),
    ("the hepatocyte growth factor (HGF) receptor", [("HGF", "hepatocyte growth factor")]),
    ("The protein kinase C (PKC) pathway", [("PKC", "protein kinase C")]),
    # CDR abstracts
    ("Patients with scleroderma renal crisis (SRC) were studied.", [("SRC", "scleroderma renal crisis")]),
    ("Rats were given indomethacin (IDM) daily.", [("IDM", "indomethacin")]),
    ("the serum alanine aminotransferase (ALT) levels rose", [("ALT", "alanine aminotransferase")]),
])
def test_the_papers_examples_and_cdr_definitions(text: str, expected: list[tuple[str, str]]) -> None:
    assert pairs(text) == expected


def test_short_forms_with_digits_and_hyphens() -> None:
    assert pairs("treated with 5-fluorouracil (5-FU) weekly") == [("5-FU", "5-fluorouracil")]
    assert pairs("levels of interleukin-2 (IL-2) fell") == [("IL-2", "interleukin-2")]
    assert pairs("by beta-galactosidase (beta-gal) assay") == [("beta-gal", "beta-galactosidase")]


def test_e_g_and_i_e_are_not_abbreviations() -> None:
    assert pairs("some analgesics (e.g. aspirin) and others") == []
    assert pairs("a single dose (i.e. 5 mg) was given") == []
    assert pairs("as before (see Table 1) we found") == []


def test_nested_parentheses_end_the_short_form_at_the_inner_one() -> None:
    assert pairs("the level of interleukin 6 (IL-6 (ref. 3)) was high") == [("IL-6", "interleukin 6")]
    text = "calcium (Ca(2+)) entry"  # balanced, but Ca(2+)'s digits are not in "calcium": no definition
    assert pairs(text) == []


def test_a_semicolon_or_comma_ends_the_short_form() -> None:
    assert pairs("2,3,7,8-tetrachlorodibenzo-p-dioxin (TCDD; 1 ug/kg) was given") == [
        ("TCDD", "2,3,7,8-tetrachlorodibenzo-p-dioxin")]


def test_the_long_form_in_parentheses_and_the_short_form_before() -> None:
    assert pairs("patients received TNF (tumour necrosis factor) antagonists") == [("TNF", "tumour necrosis factor")]
    assert pairs("patients received drug (a new kind of compound) daily") == []  # no capital: not a short form


def test_what_the_paper_rejects() -> None:
    assert pairs("the dose (10 mg) was") == []  # no letter in the short form... "mg" is no definition of "dose"
    assert pairs("a drug (X) was") == []  # one character
    assert pairs("given aspirin (an analgesic drug often used) daily") == []
    assert pairs("unbalanced (ABC and more") == []
    assert pairs("closing first) then (DEF") == []


def test_a_short_form_at_the_end_of_a_sentence_is_found_as_an_occurrence() -> None:
    text = "Rats were given indomethacin (IDM). Pain fell after IDM. IDM-treated rats, IDMs, xIDM and IDM"
    assert [text[s:e] for s, e in occurrences(text, "IDM")] == ["IDM", "IDM", "IDM", "IDM"]
    assert [s for s, _ in occurrences(text, "IDM")] == [30, 52, 57, len(text) - 3]


def test_occurrences_are_case_sensitive_whole_tokens() -> None:
    assert list(occurrences("AS and as, AST, AS.", "AS")) == [(0, 2), (16, 18)]


def test_offsets_hold_on_crlf_bom_and_non_ascii_text() -> None:
    text = "\ufeffTitle line\r\nEffects of α-tocopherol (α-TOC) in µg doses\r\nthe α-TOC group"
    [a] = find_abbreviations(text)
    assert (a.short, a.long) == ("α-TOC", "α-tocopherol")
    assert text[a.long_start : a.long_end] == "α-tocopherol"
    assert [text[s:e] for s, e in occurrences(text, a.short)] == ["α-TOC", "α-TOC"]


def test_sentences_bound_the_search() -> None:
    text = "Heat shock transcription factor is here. (HSF) binds."
    assert [a.short for a in find_abbreviations(text)] == ["HSF"]  # one text: the long form reaches back
    assert find_abbreviations(text, [(0, 40), (41, len(text))]) == []  # it would be in another sentence
