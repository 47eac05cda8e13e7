"""``tc predict`` over a corpus: kill -9 then rerun, two processes, resume refusals, bounded memory.

Everything runs the real ``tc`` console script on a tiny model trained once for the module (~20 s); the
corpus is the shipped BC5CDR test abstracts as JSONL. The reference is an uninterrupted one-process run;
every other way of tagging the same input must write the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import ONE_THREAD, ROOT, TC, refused, run_tc

CHUNK = ("--chunk-size", "8")
PUBTATOR = ROOT / "data" / "BC5CDR-PubTator" / "test.pubtator"
TEST_TSV = ROOT / "data" / "BC5CDR-chem-IOB" / "test.tsv"
DOCUMENTED = {"predict-output-exists", "predict-resume-other-input", "predict-resume-other-model",
              "predict-resume-other-settings", "predict-resume-other-processes", "predict-processes-need-files"}
"""The rows of docs/errors.md's "Tagging a corpus" section, each asserted below."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 500 test abstracts, one JSON object per line (a few seconds to tag with the tiny model)."""
    path = tmp_path_factory.mktemp("corpus_in") / "abstracts.jsonl"
    lines = []
    for line in PUBTATOR.read_text(encoding="utf-8").splitlines():
        match = re.match(r"(\d+)\|a\|(.*)", line)
        if match:
            lines.append(json.dumps({"id": match.group(1), "text": match.group(2)}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def predict(model_dir: Path, source: Path, out: Path, *extra: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), *CHUNK, *ONE_THREAD,
                  *extra, env=env)


@pytest.fixture(scope="module")
def reference(model_dir: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "tagged.jsonl"
    proc = predict(model_dir, corpus, out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert not (out.parent / "tagged.jsonl.partial").exists()
    return out


def state_of(out: Path) -> dict:
    path = out.with_name(out.name + ".partial") / "shard-0-of-1.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def interrupt(model_dir: Path, source: Path, out: Path) -> dict:
    """Start ``tc predict``, SIGKILL it once at least one chunk is durable; returns the state it left."""
    proc = subprocess.Popen([TC, "predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out),
                             *CHUNK, *ONE_THREAD, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and state_of(out).get("chunks", 0) < 1:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"finished before the kill: {stderr.decode()}"
    state = state_of(out)
    assert not out.exists() and state["chunks"] >= 1 and not state["complete"]
    return state


@pytest.mark.cli
def test_kill_9_then_rerun_equals_an_uninterrupted_run(model_dir: Path, corpus: Path, reference: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "tagged.jsonl"
    state = interrupt(model_dir, corpus, out)
    data = out.with_name("tagged.jsonl.partial") / "shard-0-of-1.out"
    with open(data, "ab") as handle:  # what a kill in the middle of a write leaves: half a record
        handle.write(b'{"id": "half a rec')
    proc = predict(model_dir, corpus, out)
    assert proc.returncode == 0, proc.stderr
    assert f"resuming {out}.partial: {state['units_read']:,} documents were done" in proc.stderr
    assert f"({state['units_read']:,} documents were tagged by the interrupted run)" in proc.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert not out.with_name("tagged.jsonl.partial").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tagged.jsonl"]


@pytest.mark.cli
def test_two_processes_write_what_one_does(model_dir: Path, corpus: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "two.jsonl"
    proc = predict(model_dir, corpus, out, "--num-processes", "2")
    assert proc.returncode == 0, proc.stderr
    assert "on 2 processes in" in proc.stderr
    assert proc.stderr.count("predicting with") == 1  # only rank 0 talks
    assert out.read_bytes() == reference.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["two.jsonl"]


@pytest.mark.cli
def test_conll_on_two_processes_and_stdout_agree(model_dir: Path, tmp_path: Path) -> None:
    """CoNLL blocks (sentences and the blank lines between them) shard and stream the same way."""
    source = tmp_path / "test.tsv"
    source.write_text("".join(TEST_TSV.read_text(encoding="utf-8").splitlines(keepends=True)[:3000]),
                      encoding="utf-8")
    one, two = tmp_path / "one.tsv", tmp_path / "two.tsv"
    for out, extra in ((one, ()), (two, ("--num-processes", "2"))):
        proc = predict(model_dir, source, out, "-q", *extra)
        assert proc.returncode == 0, proc.stderr
    piped = run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), *CHUNK, *ONE_THREAD, "-q")
    assert piped.returncode == 0, piped.stderr
    assert one.read_text(encoding="utf-8") == two.read_text(encoding="utf-8") == piped.stdout
    assert len(one.read_text(encoding="utf-8").splitlines()) == 3000


def test_conll_documents_are_counted_at_docstart_lines() -> None:
    """``tc predict`` on CoNLL gives each sentence the document its -DOCSTART- lines make (as ``tc run``
    reads the file), so a context model sees the same neighbours; without the lines, one document."""
    from tc.tasks.token_cls.corpus.readers import read_conll_blocks
    from tc.tasks.token_cls.corpus.tagging import _documents

    blocks = list(read_conll_blocks(str(TEST_TSV)))
    keys = _documents(blocks[:400])
    assert keys[0] == 1 and keys == sorted(keys) and len(set(keys)) > 3
    from tc.tasks.token_cls.readers import read_conll

    assert keys == [s.doc_index for s in read_conll(TEST_TSV)[: len(keys)]]
    assert set(_documents([b for b in blocks[:400] if b.is_sentence or not b.lines[0].startswith("-DOC")])) == {0}


@pytest.mark.cli
def test_stdout_and_a_file_get_the_same_bytes(model_dir: Path, corpus: Path, reference: Path) -> None:
    piped = run_tc("predict", "--model-dir", str(model_dir), "-i", str(corpus), *CHUNK, *ONE_THREAD, "-q")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == reference.read_text(encoding="utf-8")


# -- refusals: one line, exit 2, nothing touched ---------------------------------------------------
@pytest.fixture(scope="module")
def interrupted(model_dir: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A partial folder left by a kill -9, kept aside for the refusal tests to copy."""
    out = tmp_path_factory.mktemp("interrupted") / "tagged.jsonl"
    interrupt(model_dir, corpus, out)
    return out.with_name("tagged.jsonl.partial")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.cli
def test_an_existing_output_is_replaced_only_with_overwrite(model_dir: Path, corpus: Path, reference: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "mine.jsonl"
    out.write_text("my own notes\n")
    assert refused(predict(model_dir, corpus, out)) == (
        f"--output {out}: exists; pass --overwrite to replace it, or choose another output file")
    assert out.read_text() == "my own notes\n"
    proc = predict(model_dir, corpus, out, "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.cli
def test_a_rerun_that_differs_is_refused_with_what_differs(model_dir: Path, corpus: Path, interrupted: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "tagged.jsonl"
    partial = out.with_name("tagged.jsonl.partial")
    shutil.copytree(interrupted, partial)
    before = tree(partial)
    source = json.loads((partial / "shard-0-of-1.json").read_text())["run"]["input"]

    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(corpus.read_bytes() + b'{"text": "one more"}\n')
    line = refused(predict(model_dir, changed, out))
    assert line.startswith(f"--output {out}: {partial} holds an interrupted run over another input "
                           f"({source['path']}, {source['size']:,} bytes, modified ")
    assert line.endswith(f") than --input {changed} ({changed.stat().st_size:,} bytes); rerun with that input, "
                         "or pass --overwrite to start over")

    other_model = tmp_path / "model_copy"
    shutil.copytree(model_dir, other_model)
    assert refused(predict(other_model, corpus, out)) == (
        f"--output {out}: {partial} holds an interrupted run with another model ({model_dir.resolve()}); "
        "rerun with that model, or pass --overwrite to start over")

    assert refused(predict(model_dir, corpus, out, "--chunk-size", "16")) == (
        f"--output {out}: {partial} holds an interrupted run with --chunk-size 8, not 16; rerun with "
        "--chunk-size 8, or pass --overwrite to start over")

    assert refused(predict(model_dir, corpus, out, "--num-processes", "2")) == (
        f"--output {out}: {partial} holds an interrupted run with --num-processes 1, not 2; rerun with "
        "--num-processes 1, or pass --overwrite to start over")
    assert tree(partial) == before and not out.exists()


@pytest.mark.cli
def test_overwrite_starts_an_interrupted_run_over(model_dir: Path, corpus: Path, interrupted: Path,
                                                  reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "tagged.jsonl"
    shutil.copytree(interrupted, out.with_name("tagged.jsonl.partial"))
    proc = predict(model_dir, corpus, out, "--overwrite", "--chunk-size", "32")
    assert proc.returncode == 0, proc.stderr
    assert "resuming" not in proc.stderr and "interrupted run" not in proc.stderr
    assert out.read_bytes() == reference.read_bytes()  # chunking changes no byte (here at least)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tagged.jsonl"]


@pytest.mark.cli
def test_processes_need_a_file_in_and_out(model_dir: Path, corpus: Path) -> None:
    proc = run_tc("predict", "--model-dir", str(model_dir), "-i", str(corpus), "--num-processes", "2")
    assert refused(proc) == ("--num-processes 2: needs --input FILE and --output FILE (every rank reads the "
                             "input and writes its shard beside the output)")


@pytest.mark.cli
def test_progress_line_has_a_share_and_an_eta(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    proc = predict(model_dir, corpus, tmp_path / "p.jsonl", env={"TC_PROGRESS_SECONDS": "0"})
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^tagged [\d,]+ documents, \d+% of [\d.]+ [kM]B, \d+ s, ETA \d+ s$", proc.stderr, re.M), \
        proc.stderr


# -- memory is bounded by the chunk, not the input -------------------------------------------------
def _peak_bytes(model_dir: Path, source: Path, out: Path) -> int:
    from tc.tasks.token_cls.corpus.run import PredictJob, predict_command

    job = PredictJob(model_dir=model_dir, input_path=str(source), fmt="text", output_path=str(out),
                     overrides=("runconfig.num_threads=1",), quiet=True, chunk_size=32)
    tracemalloc.start()
    try:
        predict_command(job, [])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_input(model_dir: Path, tmp_path: Path) -> None:
    """Python-heap peak (tracemalloc) for 600 and 6,000 short documents: the same, within noise."""
    line = "Naloxone reverses the antihypertensive effect of clonidine in 12 rats .\n"
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text(line * 600)
    big.write_text(line * 6000)
    _peak_bytes(model_dir, small, tmp_path / "warm.jsonl")  # imports and caches, once
    peak_small = _peak_bytes(model_dir, small, tmp_path / "small.jsonl")
    peak_big = _peak_bytes(model_dir, big, tmp_path / "big.jsonl")
    assert len((tmp_path / "big.jsonl").read_text().splitlines()) == 6000
    # holding the output (or the input) would grow the peak by at least its size
    written = os.path.getsize(tmp_path / "big.jsonl") - os.path.getsize(tmp_path / "small.jsonl")
    assert peak_big - peak_small < written / 4, (peak_small, peak_big, written)
