"""The cdr_relations task through the real CLI: trained by ``tc run`` on the shared loop, evaluated with the
BioCreative V measure, resumed exactly, predicted (``tc predict``, every document format), served (a real
``tc serve`` process and client), chained after NER (``tc pipeline``), and equal through ``tc.load``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from helpers import ROOT, TC, error_line, run_tc, weights

import tc
from tc.tasks.cdr_relations.corpus import read_relation_docs
from tc.tasks.token_cls.documents import read_documents

pytestmark = pytest.mark.cli

CONFIG = ROOT / "configs" / "tiny_cdr_relations.yaml"
DEVEL = ROOT / "data" / "BC5CDR-PubTator" / "devel.pubtator"
THREADS = ("--set", "runconfig.num_threads=1")
DOCUMENTED = {"command-not-offered", "relations-entity-past-text"}
ONE = {"OMP_NUM_THREADS": "1"}


def train(model_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_tc("run", "--task", "cdr_relations", "--backend", "cpu", "--config", str(CONFIG), "--model-dir",
                  str(model_dir), *THREADS, *extra, check=True)


@pytest.fixture(scope="module")
def relations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("relations") / "model"
    train(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def abstracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 devel abstracts, gold mentions and CID lines as shipped."""
    path = tmp_path_factory.mktemp("abstracts") / "devel12.pubtator"
    path.write_text("\n\n".join(DEVEL.read_text().split("\n\n")[:12]) + "\n\n")
    return path


def cid_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if "\tCID\t" in line]


def other_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if "\tCID\t" not in line]


def test_training_reports_the_cid_measure(relations: Path) -> None:
    metrics = json.loads((relations / "eval_results.json").read_text())
    assert metrics["selection"] == {"metric": "f1", "label": "CID F1", "mode": "max"}
    assert metrics["documents"] == 20 and metrics["gold"] == sum(
        len(d.relations) for d in read_relation_docs(DEVEL, "Chemical", "Disease", "CID")[:20])
    assert 0 <= metrics["precision"] <= 100 and 0 < metrics["recall"] <= 100 and "best_threshold" in metrics
    assert json.loads((relations / "tc_task.json").read_text())["task"] == "cdr_relations"


def test_resume_from_a_checkpoint_is_exact(tmp_path: Path) -> None:
    """Six steps at once, and the same run resumed from its checkpoint_3.pt (weights, optimizer, schedule,
    data position) in another model dir: the very same weights at step 6."""
    steps = ["--set", "runconfig.max_steps=6", "--set", "runconfig.checkpoint_steps=3", "--mode", "train",
             "--set", "runconfig.selection_split=null", "--set", "runconfig.keep_last_n=5"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(whole, *steps)
    again = train(resumed, *steps, "--checkpoint-path", str(whole / "checkpoint_3.pt"))
    assert "resuming from" in again.stderr or "checkpoint_3.pt" in again.stderr
    a, b = weights(whole / "checkpoint_6.pt"), weights(resumed / "checkpoint_6.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_writes_cid_lines_and_keeps_every_other_line(relations: Path, abstracts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.pubtator"
    run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(out), "--threshold", "0.3",
           env=ONE, check=True)
    assert other_lines(out) == other_lines(abstracts)
    predicted = cid_lines(out)
    assert predicted, "the tiny model should relate some pairs at 0.3"
    # the API (tc.load) predicts the very same relations
    with tc.load(relations, threshold=0.3) as model:
        found = model.relations(read_documents(abstracts))
    docs = read_documents(abstracts)
    assert sorted(predicted) == sorted(f"{d.id}\tCID\t{r.head}\t{r.tail}" for d, rels in zip(docs, found, strict=True)
                                       for r in rels)


def test_predict_into_jsonl_and_bioc(relations: Path, abstracts: Path, tmp_path: Path) -> None:
    run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(tmp_path / "a.pubtator"),
           "--threshold", "0.3", env=ONE, check=True)
    expected = {tuple(line.split("\t")[i] for i in (0, 2, 3)) for line in cid_lines(tmp_path / "a.pubtator")}
    run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(tmp_path / "b.jsonl"),
           "--threshold", "0.3", env=ONE, check=True)
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert {(r["id"], x["Chemical"], x["Disease"]) for r in records for x in r["relations"]} == expected
    run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(tmp_path / "c.bioc.xml"),
           "--threshold", "0.3", env=ONE, check=True)
    back = read_relation_docs(tmp_path / "c.bioc.xml", "Chemical", "Disease", "CID")
    assert {(d.id, h, t) for d in back for h, t in d.relations} == expected


def test_predict_refuses_what_would_lose_data(relations: Path, abstracts: Path, tmp_path: Path) -> None:
    same = run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(abstracts))
    assert same.returncode != 0 and "is the --input file" in error_line(same)
    existing = tmp_path / "taken.pubtator"
    existing.write_text("mine\n")
    taken = run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(existing))
    assert taken.returncode != 0 and "--overwrite" in error_line(taken) and existing.read_text() == "mine\n"
    wrong = run_tc("export", "--model-dir", str(relations), str(tmp_path / "exported"))
    assert wrong.returncode == 2 and error_line(wrong) == (
        f"--model-dir {relations}: it was trained for the cdr_relations task, which has no `tc export` (tasks that "
        "have one: token_cls)")


@pytest.fixture
def server(relations: Path, tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([TC, "serve", "--model-dir", str(relations), "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=sink, env={**os.environ, **ONE})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                try:
                    if httpx.get(found.group(1) + "/health", timeout=2).status_code == 200:
                        yield found.group(1)
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"tc serve did not start: {log.read_text()}")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_serve_answers_relations_as_the_api(server: str, relations: Path, abstracts: Path) -> None:
    """The task-generic ``tc serve`` (``tc.core.predicting``) over the relation predictor's ``predict_records``."""
    docs = read_documents(abstracts)
    body = {"records": [{"id": d.id, "text": d.text, "entities": [
        {"start": m.start, "end": m.end, "type": m.type, "id": m.infons.get("identifier")} for m in d.mentions]}
        for d in docs]}
    answer = httpx.post(server + "/predict", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    from tc.tasks.cdr_relations.predictor import records_to_documents

    with tc.load(relations) as model:  # a record is one passage: no title, as the server reads it
        expected = [[r.as_dict() for r in rels] for rels in model.relations(records_to_documents(body["records"]))]
    got = [d["relations"] for d in answer.json()["results"]]
    assert any(got) and [[(r["Chemical"], r["Disease"]) for r in x] for x in got] == [
        [(r["Chemical"], r["Disease"]) for r in x] for x in expected]
    assert httpx.get(server + "/info").json()["task"] == "cdr_relations"
    bad = httpx.post(server + "/predict", json={"records": [{"text": "ab", "entities": [
        {"start": 0, "end": 9, "type": "Chemical"}]}]})
    assert bad.status_code == 422 and "records[0].entities[0]: mention 0-9 ends past" in bad.json()["detail"]
    assert httpx.post(server + "/predict", content=b"{").status_code == 400


def test_pipeline_is_ner_then_relations(relations: Path, abstracts: Path, tmp_path: Path) -> None:
    """``tc pipeline`` equals ``tc predict`` with the NER model followed by ``tc predict`` with the relation
    model on its output: the same mention lines, the same CID lines."""
    ner = tmp_path / "ner"
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--config", str(ROOT / "configs" / "tiny_token_cls.yaml"),
           "--model-dir", str(ner), "--set", f"train_input.data_dir={ROOT / 'data' / 'BC5CDR-PubTator'}",
           "--set", "train_input.max_sentences=600", "--set", "eval_input.max_sentences=50", "--set",
           "runconfig.max_steps=80", "--set", "runconfig.selection_split=null", *THREADS, "-q", check=True)
    raw = tmp_path / "raw.pubtator"
    raw.write_text("".join(line + "\n" for line in abstracts.read_text().splitlines() if "|t|" in line or "|a|" in line
                           or not line.strip()))
    run_tc("pipeline", "--ner-model-dir", str(ner), "--relation-model-dir", str(relations), "-i", str(raw),
           "-o", str(tmp_path / "both.pubtator"), "--threshold", "0.2", env=ONE, check=True)
    run_tc("predict", "--model-dir", str(ner), "-i", str(raw), "-o", str(tmp_path / "ner.pubtator"), "-q",
           *THREADS, check=True)
    run_tc("predict", "--model-dir", str(relations), "-i", str(tmp_path / "ner.pubtator"), "-o",
           str(tmp_path / "rel.pubtator"), "--threshold", "0.2", env=ONE, check=True)
    both, chained = tmp_path / "both.pubtator", tmp_path / "rel.pubtator"
    assert other_lines(both) == other_lines(chained) and cid_lines(both) == cid_lines(chained)
    mentions = [line for line in other_lines(both) if line.count("\t") >= 4]
    assert {line.split("\t")[4] for line in mentions} == {"Chemical", "Disease"}


def test_calibrate_saves_the_devel_threshold_that_predict_then_uses(relations: Path, abstracts: Path,
                                                                     tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(relations, model)
    run_tc("calibrate", "--model-dir", str(model), "--split", str(abstracts), env=ONE, check=True)
    info = json.loads((model / "tc_task.json").read_text())
    chosen = info["threshold"]
    assert info["threshold_chosen_on"]["split"] == str(abstracts) and 0 < chosen < 1
    with tc.load(model, threshold=0.0) as everything:
        found = everything.relations(read_documents(abstracts))
    docs = read_documents(abstracts)
    gold = {(d.id, h, t) for d in read_relation_docs(abstracts, "Chemical", "Disease", "CID") for h, t in d.relations}
    from tc.tasks.cdr_relations.metrics import THRESHOLDS, prf

    def f1(threshold: float) -> float:
        return prf(gold, {(d.id, r.head, r.tail) for d, rels in zip(docs, found, strict=True) for r in rels
                          if r.score >= threshold})["f1"]

    assert f1(chosen) == max(f1(t) for t in THRESHOLDS) == info["threshold_chosen_on"]["f1"]
    run_tc("predict", "--model-dir", str(model), "-i", str(abstracts), "-o", str(tmp_path / "a.pubtator"), env=ONE,
           check=True)
    run_tc("predict", "--model-dir", str(relations), "-i", str(abstracts), "-o", str(tmp_path / "b.pubtator"),
           "--threshold", str(chosen), env=ONE, check=True)
    assert cid_lines(tmp_path / "a.pubtator") == cid_lines(tmp_path / "b.pubtator")
