"""``tc predict`` and ``tc.load(...).predict``: offsets, windowing, formats, stdin, errors, API == CLI.

One tiny model is trained once for the module (real CLI run, ~30 s on one thread); it is trained to the
tiny config's 150 steps because a 60-step model tags nothing, which would let offset checks pass vacuously.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DOCS, ONE_THREAD, ROOT, TC, read_jsonl, run_tc

import tc
from tc.core.errors import CheckpointError
from tc.tasks.token_cls.predict import Predictor, split_words, word_spans

TEST_TSV = ROOT / "data" / "BC5CDR-chem-IOB" / "test.tsv"
SENTENCE = "Naloxone reverses the effect of clonidine and cocaine in rats ."


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Iterator[Predictor]:
    with Predictor.from_model_dir(model_dir, overrides=["runconfig.num_threads=1"]) as p:
        yield p


def predict_cli(model_dir: Path, *args: str, stdin: str | None = None) -> tuple[list[dict], str]:
    """``tc predict`` fed through a real pipe (conftest's run_tc has no stdin)."""
    proc = subprocess.run([TC, "predict", "--model-dir", str(model_dir), *ONE_THREAD, *args], input=stdin,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


@pytest.mark.cli
def test_raw_text_spans_are_exact_substrings(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = run_tc("predict", "--model-dir", str(model_dir), "--input", str(source), "--output", str(out),
                  *ONE_THREAD, check=True)
    records = read_jsonl(out)
    assert [r["text"] for r in records] == DOCS  # one line per input line, blank lines included
    spans = [e for r in records for e in r["entities"]]
    assert len(spans) >= 3, "the tiny model should find the chemicals it was trained on"
    for record in records:
        starts = {s for _, s, _ in split_words(record["text"])}
        ends = {e for _, _, e in split_words(record["text"])}
        for e in record["entities"]:
            assert record["text"][e["start"] : e["end"]] == e["text"]
            assert e["start"] in starts and e["end"] in ends  # spans cover whole words
            assert e["type"] == "Chemical"
            assert 0.0 < e["score"] <= 1.0
    assert records[1]["entities"] == []
    assert "docs/s" in proc.stderr and "words/s" in proc.stderr


@pytest.mark.cli
def test_stdin_output_equals_python_api(model_dir: Path) -> None:
    records, _ = predict_cli(model_dir, stdin="\n".join(DOCS) + "\n")
    api = tc.load(str(model_dir)).predict(DOCS)
    assert len(records) == len(api) == len(DOCS)
    for record, spans in zip(records, api, strict=True):
        assert [(e["start"], e["end"], e["type"], e["text"]) for e in record["entities"]] == [
            (e["start"], e["end"], e["type"], e["text"]) for e in spans]
        assert [e["score"] for e in record["entities"]] == pytest.approx([e["score"] for e in spans], abs=1e-3)


def test_long_document_is_windowed_without_loss(predictor: Predictor) -> None:
    words = (SENTENCE.split() * 91)[:1000]
    before = predictor.stats.windows
    labels = predictor.predict_tokens([words])[0]
    assert len(labels) == 1000
    assert predictor.stats.windows - before > 10  # 1000 words do not fit one 64-subword window
    assert set(labels) <= set(predictor.labels)

    text = " ".join([SENTENCE] * 100)
    spans = predictor.predict([text])[0]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in spans)
    last_quarter = [e for e in spans if e["start"] > 0.75 * len(text)]
    assert last_quarter, "entities at the end of a long document must not be dropped"


@pytest.mark.cli
def test_conll_in_conll_out(model_dir: Path, predictor: Predictor, tmp_path: Path) -> None:
    lines = TEST_TSV.read_text(encoding="utf-8").splitlines()[:400]
    source = tmp_path / "part.tsv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "tagged.tsv"
    run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), *ONE_THREAD, check=True)
    tagged = out.read_text(encoding="utf-8").splitlines()
    assert len(tagged) == len(lines)
    sentences: list[list[str]] = [[]]
    predicted: list[list[str]] = [[]]
    assert any(line.startswith("-DOCSTART-") for line in lines)  # the shipped file marks its abstracts
    for original, line in zip(lines, tagged, strict=True):
        if not original.strip() or original.startswith("-DOCSTART-"):
            assert line == original  # separators are kept verbatim, no label column added
            sentences.append([])
            predicted.append([])
            continue
        assert line.startswith(original.rstrip() + "\t")
        sentences[-1].append(original.split("\t")[0])
        predicted[-1].append(line.split("\t")[-1])
    pairs = [(s, p) for s, p in zip(sentences, predicted, strict=True) if s]
    assert [p for _, p in pairs] == predictor.predict_tokens([s for s, _ in pairs])
    assert any(label != "O" for _, p in pairs for label in p)


@pytest.mark.cli
def test_conll_long_sentence_from_stdin(model_dir: Path, predictor: Predictor) -> None:
    words = (SENTENCE.split() * 91)[:1000]
    proc = subprocess.run([TC, "predict", "--model-dir", str(model_dir), "--format", "conll", "-q", *ONE_THREAD],
                          input="\n".join(words) + "\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(" ") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == words
    assert [r[1] for r in rows] == predictor.predict_tokens([words])[0]
    assert proc.stderr == ""  # --quiet


@pytest.mark.cli
def test_jsonl_keeps_fields_and_skips_blank_lines(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": 1, "text": DOCS[0]}) + "\n\n"
                      + json.dumps({"id": "b", "text": DOCS[2], "meta": {"x": [1]}}) + "\n", encoding="utf-8")
    records, stderr = predict_cli(model_dir, "--input", str(source))
    assert [r["id"] for r in records] == [1, "b"]
    assert records[1]["meta"] == {"x": [1]}
    assert all(r["text"][e["start"] : e["end"]] == e["text"] for r in records for e in r["entities"])
    assert "2 documents" in stderr


@pytest.mark.cli
def test_bad_jsonl_line_is_named(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"text": "fine"}) + "\n{not json\n", encoding="utf-8")
    proc = run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), *ONE_THREAD)
    assert proc.returncode == 2
    assert f"{source}:2: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr

    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    proc = run_tc("predict", "--model-dir", str(model_dir), "-i", str(no_text), *ONE_THREAD)
    assert proc.returncode == 2 and f'{no_text}:1: expected an object with a string "text"' in proc.stderr

    twice = tmp_path / "twice.jsonl"  # json.loads would keep the second "text" and tag it without a word
    twice.write_text(json.dumps({"text": "fine"}) + '\n{"text": "first", "text": "second"}\n', encoding="utf-8")
    proc = run_tc("predict", "--model-dir", str(model_dir), "-i", str(twice), *ONE_THREAD)
    assert proc.returncode == 2
    assert f"{twice}:2: duplicate key 'text' (first at line 2); a key may appear once per mapping" in proc.stderr


@pytest.mark.cli
def test_user_errors_name_the_path(model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = run_tc("predict", "--model-dir", str(missing), "-i", str(TEST_TSV))
    assert proc.returncode == 2 and f"{missing}: model directory not found" in proc.stderr

    proc = run_tc("predict", "--model-dir", str(model_dir), "-i", str(tmp_path / "absent.txt"))
    assert proc.returncode == 2 and f"{tmp_path / 'absent.txt'}: input file not found" in proc.stderr

    no_weights = tmp_path / "assets_only"
    no_weights.mkdir()
    for name in ("label2id.json", "vocab.txt", "tc_task.json"):
        shutil.copy(model_dir / name, no_weights / name)
    proc = run_tc("predict", "--model-dir", str(no_weights), "-i", str(TEST_TSV))
    assert proc.returncode == 2 and f"{no_weights}: no best_model.pt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(CheckpointError, match="assets_only"):
        tc.load(str(no_weights))

    bad_utf8 = tmp_path / "latin1.txt"
    bad_utf8.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    proc = run_tc("predict", "--model-dir", str(model_dir), "-i", str(bad_utf8), *ONE_THREAD)
    assert proc.returncode == 2 and f"{bad_utf8}:2: not valid UTF-8" in proc.stderr


def test_load_dispatches_on_the_task_the_model_dir_records(model_copy: Path) -> None:
    """``tc.load`` asks the task named in tc_task.json for the predictor: token_cls gives a Predictor, a
    task that is not installed is named in one line."""
    info = json.loads((model_copy / "tc_task.json").read_text(encoding="utf-8"))
    assert info["task"] == "token_cls"
    with tc.load(str(model_copy), batch_size=4) as predictor:
        assert isinstance(predictor, Predictor) and predictor.batch_size == 4
    (model_copy / "tc_task.json").write_text(json.dumps({**info, "task": "no_such_task"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"tc_task.json: task 'no_such_task' is not installed here "
                                              r"\(installed: cdr_relations, token_cls\)"):
        tc.load(str(model_copy))


def test_weights_fall_back_to_newest_readable_checkpoint(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    (copy / "best_model.pt").unlink()
    checkpoints = sorted(copy.glob("checkpoint_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    assert len(checkpoints) >= 2
    with Predictor.from_model_dir(copy, overrides=["runconfig.num_threads=1"]) as p:
        assert p.trained.weights_path == checkpoints[-1]
    data = checkpoints[-1].read_bytes()
    checkpoints[-1].write_bytes(data[: len(data) // 2])  # a write cut short
    with Predictor.from_model_dir(copy, overrides=["runconfig.num_threads=1"]) as p:
        assert p.trained.weights_path == checkpoints[-2]
        assert len(p.predict_tokens([["aspirin", "and", "naloxone"]])[0]) == 3


def test_api_refuses_a_bare_string(predictor: Predictor) -> None:
    with pytest.raises(TypeError, match=r"wrap one item as \[item\]"):
        predictor.predict("aspirin")
    assert predictor.predict([]) == []
    assert predictor.predict_tokens([[], ["aspirin"]])[0] == []


def test_split_words_keeps_offsets() -> None:
    """Punctuation and CJK characters split; format/control characters vanish but stay inside the span."""
    text = "Lidocaine-induced (5mg/kg)  北京\tcafé\u200bx\x07y."
    assert split_words(text) == [
        ("Lidocaine", 0, 9), ("-", 9, 10), ("induced", 10, 17), ("(", 18, 19), ("5mg", 19, 22), ("/", 22, 23),
        ("kg", 23, 25), (")", 25, 26), ("北", 28, 29), ("京", 29, 30), ("caféxy", 31, 39), (".", 39, 40),
    ]
    assert split_words("") == [] and split_words(" \t ") == []


def test_word_spans_reads_iob2_like_seqeval() -> None:
    labels = ["B-Chem", "I-Chem", "O", "I-Chem", "I-Dis", "B-Dis", "I-Dis", "B"]
    assert word_spans(labels) == [(0, 2, "Chem"), (3, 4, "Chem"), (4, 5, "Dis"), (5, 7, "Dis"), (7, 8, "ENTITY")]


@pytest.mark.cli
def test_the_token_predictor_is_on_the_generic_protocol(model_dir: Path, tmp_path: Path) -> None:
    """token_cls keeps its own ``tc predict``, and its predictor also speaks tc's one protocol
    (``predict_records``), so the task-generic JSONL predict (``tc.core.predicting``) gives what ``tc predict``
    writes for the same JSONL records."""
    from click.testing import CliRunner

    from tc.core.predicting import predict as generic_predict

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(DOCS)))
    result = CliRunner().invoke(generic_predict, ["--model-dir", str(model_dir), "-i", str(source), "-o",
                                                  str(tmp_path / "generic.jsonl")])
    assert result.exit_code == 0, result.output
    run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(tmp_path / "own.jsonl"), "-q",
           *ONE_THREAD, check=True)
    generic, own = read_jsonl(tmp_path / "generic.jsonl"), read_jsonl(tmp_path / "own.jsonl")
    assert sum(len(r["entities"]) for r in own) >= 3
    assert [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in generic] == [
        [(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in own]
