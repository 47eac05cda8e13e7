"""Document rules through the commands: ``tc predict`` output changes only where a rule says, the flag and
the model dir's setting decide which rules run, and ``tc run`` scores with and without them.

The real ``tc predict`` tags six real CDR test abstracts (they define abbreviations: "... (PTU)") with the
session's tiny model, once with the rules and once with ``--document-rules none``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ONE_THREAD, ROOT, read_jsonl, refused, run_tc

from tc.tasks.token_cls.documents.abbreviations import find_abbreviations

CDR_TEST = ROOT / "data" / "BC5CDR-PubTator" / "test.pubtator"
pytestmark = pytest.mark.cli
DOCUMENTED = {"document-rules-unknown-flag", "document-rules-model-dir"}


@pytest.fixture(scope="module")
def abstracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blocks = CDR_TEST.read_text(encoding="utf-8").split("\n\n")[:12]
    path = tmp_path_factory.mktemp("rules_in") / "twelve.pubtator"
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return path


def tagged(model_dir: Path, source: Path, out: Path, *args: str) -> list[dict]:
    proc = run_tc("predict", "--model-dir", str(model_dir), "-q", *ONE_THREAD, "-i", str(source), "-o", str(out),
                  *args)
    assert proc.returncode == 0, proc.stderr
    return read_jsonl(out)


def test_output_changes_only_where_a_rule_says(model_dir: Path, abstracts: Path, tmp_path: Path) -> None:
    plain = tagged(model_dir, abstracts, tmp_path / "none.jsonl", "--document-rules", "none")
    ruled = tagged(model_dir, abstracts, tmp_path / "rules.jsonl", "--document-rules",
                   "abbreviation,no_long_form,long_form,consistency")
    made = 0
    for before, after in zip(plain, ruled, strict=True):
        assert before["text"] == after["text"] and all("rule" not in e for e in before["entities"])
        text = after["text"]
        shorts = {a.short for a in find_abbreviations(text)}
        old = {(e["start"], e["end"], e["type"]) for e in before["entities"]}
        for e in after["entities"]:
            span = (e["start"], e["end"], e["type"])
            assert e["text"] == text[e["start"] : e["end"]]
            if "rule" not in e:
                assert span in old  # the model's own mentions are kept as they were
                continue
            made += 1
            assert span not in old
            if e["rule"] == "abbreviation":
                assert e["text"] in shorts  # a short form the document defines
            else:
                assert e["rule"] in ("long_form", "consistency")
        kept = {(e["start"], e["end"]) for e in after["entities"]}
        for s, e_, _ in old - {(e["start"], e["end"], e["type"]) for e in after["entities"]}:
            # a mention of the model that is gone was retyped on its span, lies inside a long form, or is
            # a defined short form whose long form the model left untagged (no_long_form)
            assert (s, e_) in kept or text[s:e_] in shorts or any(
                a["rule"] == "long_form" and a["start"] <= s and e_ <= a["end"]
                for a in after["entities"] if "rule" in a)
    assert made > 0  # the abstracts define abbreviations the tiny model tags the long forms of


def test_the_model_dir_decides_unless_the_flag_does(model_copy: Path, abstracts: Path, tmp_path: Path) -> None:
    info_path = model_copy / "tc_task.json"
    info = json.loads(info_path.read_text())
    info["document_rules"] = []
    info_path.write_text(json.dumps(info))
    off = tagged(model_copy, abstracts, tmp_path / "off.jsonl")
    assert not any("rule" in e for r in off for e in r["entities"])
    on = tagged(model_copy, abstracts, tmp_path / "on.jsonl", "--document-rules", "abbreviation,consistency")
    assert any("rule" in e for r in on for e in r["entities"])
    info["document_rules"] = ["abbrev"]
    info_path.write_text(json.dumps(info))
    proc = run_tc("predict", "--model-dir", str(model_copy), "-q", "-i", str(abstracts), "-o",
                  str(tmp_path / "x.jsonl"))
    assert refused(proc) == (f"{info_path}: document_rules: unknown document rule 'abbrev' (valid: abbreviation, "
                             "no_long_form, long_form, consistency, or none)")


def test_an_unknown_rule_is_one_line_naming_the_flag(model_dir: Path, abstracts: Path, tmp_path: Path) -> None:
    proc = run_tc("predict", "--model-dir", str(model_dir), "-q", "-i", str(abstracts), "-o", str(tmp_path / "x.jsonl"),
                  "--document-rules", "abbreviation,typo")
    assert refused(proc) == ("--document-rules abbreviation,typo: unknown document rule 'typo' (valid: "
                             "abbreviation, no_long_form, long_form, consistency, or none)")
    assert not (tmp_path / "x.jsonl").exists()


def test_eval_results_hold_scores_with_and_without_the_rules(tiny_model: Path) -> None:
    results = json.loads((tiny_model / "eval_results.json").read_text())
    assert results["document_rules"] == ["abbreviation", "no_long_form"]  # BC5CDR-chem's TSV marks its abstracts
    without = results["without_rules"]
    assert without.get("same") or {"f1", "per_type"} <= set(without)
