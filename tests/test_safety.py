"""Nothing a user types loses data, and predict/export behave on big, interactive and exported use.

* Every command that writes (``tc predict``, ``tc export``, ``tc prepare``, ``tc report``, ``tc run``),
  pointed at any of its inputs, the model directory, a parent of them, or an alias of one (symlink, hard
  link, ``..`` path), refuses with exit 2 and leaves every byte of the tree as it was (hashed).
* The rows of docs/errors.md's "Outputs and inputs" section, run through the real ``tc`` script.
* ``--overwrite`` replaces an earlier export only; exports get the user's umask.
* A truncated best_model.pt is named on stderr with the file used instead.
* A multi-megabyte single-line document is tagged in bounded memory with progress, and equals the
  whole-text result; stdin on a terminal says how to end; ``repr(tc.load(...))`` is one line;
  ``python -m tc`` works; transformers' pipeline on an export gives ``tc predict``'s entities.

One tiny model is trained for the module (real CLI run, about 10 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import ONE_THREAD, ROOT, TC, TINY, copy_model, error_line, refused, run_tc
from hypothesis import given, settings
from hypothesis import strategies as st

import tc
from tc.tasks.token_cls.longdoc import segments
from tc.tasks.token_cls.predict import Predictor, entities, split_words

DATA = ROOT / "data" / "BC5CDR-chem-IOB"
DOCS = ROOT / "docs" / "errors.md"


@pytest.fixture(scope="module")
def tree(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/model (the trained tiny model), root/docs.txt, root/data/{train,devel,test}.tsv and aliases of them."""
    root = tmp_path_factory.mktemp("safety")
    model = copy_model(tiny_model, root / "model")
    (root / "docs.txt").write_text("Naloxone reverses the antihypertensive effect of clonidine.\n\nAspirin.\n")
    (root / "data").mkdir()
    for split in ("train", "devel", "test"):
        lines = (DATA / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:300]
        (root / "data" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "link.txt").symlink_to(root / "docs.txt")
    os.link(root / "docs.txt", root / "hard.txt")
    os.link(model / "best_model.pt", root / "hard_best.pt")
    (root / "model_link").symlink_to(model)
    (root / "data_link").symlink_to(root / "data")
    (root / "plot.png").symlink_to(model / "metrics.jsonl")
    os.link(model / "metrics.jsonl", model / "old_plot.png")
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (symlinks as their target path), to prove nothing changed."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def tc_in_process(args: list[str], capsys: pytest.CaptureFixture[str], cwd: Path) -> tuple[int, str]:
    """``tc ARGS`` through the real entry point, in this process (saves a torch import per case)."""
    from tc.cli import main

    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = ["tc", *args]
    os.chdir(cwd)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, capsys.readouterr().err


# -- every writing command, every target that would lose data ------------------------------------
Command = Callable[[str], list[str]]
COMMANDS: dict[str, Command] = {
    "predict": lambda t: ["predict", "--model-dir", "model", "-i", "docs.txt", "-o", t, *ONE_THREAD],
    "predict-conll": lambda t: ["predict", "--model-dir", "model", "-i", "data/test.tsv", "-o", t, *ONE_THREAD],
    "export": lambda t: ["export", "--model-dir", "model", t],
    "export-overwrite": lambda t: ["export", "--model-dir", "model", "--overwrite", t],
    "prepare": lambda t: ["prepare", "token_cls", "--data-dir", "data", "--vocab-file", "model/vocab.txt",
                          "--output-dir", t],
    "report": lambda t: ["report", "model", "-o", t],
    "run": lambda t: ["run", "--config", str(TINY), "--set", "train_input.data_dir=data", "--model-dir", t,
                      "--set", "runconfig.max_steps=1", *ONE_THREAD],
}
TARGETS: dict[str, list[str]] = {
    "predict": ["docs.txt", "./data/../docs.txt", "link.txt", "hard.txt", "model/best_model.pt",
                "model/checkpoint_150.pt", "model/metrics.jsonl", "model/label2id.json", "hard_best.pt",
                "model_link/vocab.txt", "model", "."],
    "predict-conll": ["data/test.tsv", "data_link/test.tsv", "model/eval_results.json", "data", "."],
    "export": ["model", ".", "model/..", "model_link", "data"],
    "export-overwrite": ["model", ".", "model/..", "model_link", "data", "model_link/.."],
    "prepare": ["data", "data_link", ".", "model"],
    "report": ["model/metrics.jsonl", "model/eval_results.json", "model/best_model.pt", "model/config.yaml",
               "model_link/tc_task.json", "hard_best.pt", "plot.png", "model/old_plot.png", "model", "."],
    "run": ["data", "data_link", "."],
}
PAIRS = [(command, target) for command, targets in TARGETS.items() for target in targets]


@pytest.mark.parametrize(("command", "target"), PAIRS, ids=[f"{c}:{t}" for c, t in PAIRS])
def test_writing_commands_never_overwrite_their_inputs(command: str, target: str, tree: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_hashes(tree)
    code, stderr = tc_in_process(COMMANDS[command](target), capsys, cwd=tree)
    assert code == 2, stderr
    assert error_line(stderr)
    assert tree_hashes(tree) == before
    assert not [p for p in tree.rglob(".*") if p.name not in (".", "..")], "a staging file was left behind"


@pytest.mark.cli
def test_outputs_beside_the_inputs_still_work(tree: Path, tmp_path: Path) -> None:
    """The guard refuses what would lose data, nothing more: a new file in the model dir is fine."""
    out = tree / "model" / "tagged.jsonl"
    try:
        run_tc("predict", "--model-dir", str(tree / "model"), "-i", str(tree / "docs.txt"), "-o", str(out),
               *ONE_THREAD, "-q", check=True)
        assert len(out.read_text().splitlines()) == 3
    finally:
        out.unlink(missing_ok=True)
    report = tmp_path / "r" / "report.png"
    run_tc("report", str(tree / "model"), "-o", str(report), check=True)
    assert "pass --overwrite" in refused(run_tc("report", str(tree / "model"), "-o", str(report)))
    run_tc("report", str(tree / "model"), "-o", str(report), "--overwrite", check=True)
    assert report.stat().st_size > 0


# -- the documented rows -------------------------------------------------------------------------
def _export_with_extra(tree: Path, tmp: Path) -> Path:
    out = tmp / "hf"
    run_tc("export", "--model-dir", str(tree / "model"), str(out), check=True)
    (out / "notes.txt").write_text("mine")
    return out


def _foreign(tmp: Path) -> Path:
    (tmp / "other").mkdir()
    (tmp / "other" / "notes.txt").write_text("mine")
    return tmp / "other"


Row = tuple[Callable[[Path, Path], list[str]], Callable[[Path, Path], str]]
DOC_ROWS: dict[str, Row] = {
    "predict-output-is-input": (
        lambda t, d: ["predict", "--model-dir", str(t / "model"), "-i", str(t / "docs.txt"), "-o", str(t / "docs.txt")],
        lambda t, d: f"--output: {t / 'docs.txt'} is the --input file {t / 'docs.txt'}; choose another output file"),
    "predict-output-hard-link": (
        lambda t, d: ["predict", "--model-dir", str(t / "model"), "-i", str(t / "docs.txt"), "-o", str(t / "hard.txt")],
        lambda t, d: f"--output: {t / 'hard.txt'} is the --input file {t / 'docs.txt'}; choose another output file"),
    "predict-output-in-model-dir": (
        lambda t, d: ["predict", "--model-dir", str(t / "model"), "-i", str(t / "docs.txt"),
                      "-o", str(t / "model" / "best_model.pt")],
        lambda t, d: f"--output: {t / 'model' / 'best_model.pt'} is a file of the --model-dir {t / 'model'}; "
                     "choose another output file"),
    "export-into-model-dir": (
        lambda t, d: ["export", "--model-dir", str(t / "model"), "--overwrite", str(t / "model")],
        lambda t, d: f"OUT: {t / 'model'} is the --model-dir {t / 'model'}; choose a new folder"),
    "export-into-parent": (
        lambda t, d: ["export", "--model-dir", str(t / "model"), "--overwrite", str(t)],
        lambda t, d: f"OUT: {t} contains the --model-dir {t / 'model'}; choose a new folder"),
    "export-overwrite-foreign": (
        lambda t, d: ["export", "--model-dir", str(t / "model"), "--overwrite", str(_foreign(d))],
        lambda t, d: f"--overwrite: {d / 'other'} was not written by tc export (no tc_export.json); tc replaces "
                     "only its own exports, choose a new folder"),
    "export-overwrite-extra-files": (
        lambda t, d: ["export", "--model-dir", str(t / "model"), "--overwrite", str(_export_with_extra(t, d))],
        lambda t, d: f"--overwrite: {d / 'hf'} also holds files tc export did not write (notes.txt); move them "
                     "or choose a new folder"),
    "prepare-output-is-data-dir": (
        lambda t, d: ["prepare", "token_cls", "--data-dir", str(t / "data"), "--output-dir", str(t / "data")],
        lambda t, d: f"--output-dir: {t / 'data'} is the --data-dir {t / 'data'}; choose a new folder"),
    "report-output-links-into-model-dir": (
        lambda t, d: ["report", str(t / "model"), "-o", str(t / "plot.png")],
        lambda t, d: f"--output: {t / 'plot.png'} is a link to {t / 'model' / 'metrics.jsonl'}, a file of the model "
                     f"directory {t / 'model'}; choose another output file"),
    "run-model-dir-is-data-dir": (
        lambda t, d: ["run", "--config", str(TINY), "--set", f"train_input.data_dir={t / 'data'}",
                      "--model-dir", str(t / "data")],
        lambda t, d: f"runconfig.model_dir: {t / 'data'} is the train_input.data_dir {t / 'data'}; "
                     "choose a new folder"),
}


@pytest.mark.cli
@pytest.mark.parametrize("name", list(DOC_ROWS))
def test_documented_refusals(name: str, tree: Path, tmp_path: Path) -> None:
    args, message = DOC_ROWS[name]
    argv = args(tree, tmp_path)
    before = tree_hashes(tree)
    proc = run_tc(*argv)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc.stderr) == message(tree, tmp_path)
    assert tree_hashes(tree) == before
    documented = message(tree, tmp_path).replace(str(tree), "DIR").replace(str(tmp_path), "NEW")
    assert f"| `{name}` |" in DOCS.read_text(encoding="utf-8")
    assert f"| `{documented}` | 2 |" in DOCS.read_text(encoding="utf-8"), documented


NOTE_ROWS = ("best-model-truncated", "stdin-terminal", "long-document")
"""docs/errors.md rows that are notes, not errors (each is asserted by a test below)."""
DOCUMENTED = {*DOC_ROWS, *NOTE_ROWS}
"""Every row id this module adds to docs/errors.md (tests/test_errors.py checks the table against it)."""


def test_note_rows_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert all(f"| `{name}` |" in text for name in NOTE_ROWS)


# -- export: --overwrite and permissions ---------------------------------------------------------
@pytest.mark.cli
def test_overwrite_replaces_an_earlier_export_with_the_users_umask(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"

    def export(*extra: str) -> None:
        proc = subprocess.run([TC, "export", "--model-dir", str(tree / "model"), *extra, str(out)],
                              capture_output=True, text=True, preexec_fn=lambda: os.umask(0o027), timeout=300)
        assert proc.returncode == 0, proc.stderr

    export()
    assert json.loads((out / "tc_export.json").read_text())["source"] == str(tree / "model" / "best_model.pt")
    (out / "config.json").write_text("{}")  # an export may be edited; it is still replaceable
    export("--overwrite")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # not mkdtemp's 0700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == dict.fromkeys(
        ["config.json", "model.safetensors", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json",
         "README.md", "tc_export.json"], 0o640)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- the model directory -------------------------------------------------------------------------
@pytest.mark.cli
def test_truncated_best_model_is_named_with_the_file_used(tree: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tree / "model", model)
    data = (model / "best_model.pt").read_bytes()
    (model / "best_model.pt").write_bytes(data[: len(data) // 2])
    proc = run_tc("predict", "--model-dir", str(model), "-i", str(tree / "docs.txt"), *ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {model / 'best_model.pt'} is unusable (corrupt or truncated checkpoint "
                     "(PytorchStreamReader failed reading zip archive: failed finding central directory)); "
                     f"using {model / 'checkpoint_150.pt'} instead"], proc.stderr
    assert f"predicting with {model / 'checkpoint_150.pt'}" in proc.stderr


def test_repr_of_a_loaded_model_is_one_line(tree: Path) -> None:
    tagger = tc.load(str(tree / "model"))
    try:
        text = repr(tagger)
        assert "\n" not in text and "tensor" not in text and len(text) < 300, text
        assert text.startswith("Predictor(") and "best_model.pt" in text and "B-Chemical" in text
        assert "\n" not in repr(tagger.trained) and "tensor" not in repr(tagger.trained)
    finally:
        tagger.close()


# -- scale ---------------------------------------------------------------------------------------
@pytest.mark.cli
def test_long_single_line_document_streams_in_bounded_memory(tree: Path, tmp_path: Path) -> None:
    """A 3 MB one-line document: memory grows by well under what tagging it whole took (+275 MB at
    3 MB, 1.2 GB at 10 MB), progress lines appear, and every entity is an exact substring."""
    words = [line.split("\t")[0] for line in (DATA / "test.tsv").read_text().splitlines()
             if line.strip() and not line.startswith("-DOCSTART-")]
    text = " ".join(words)
    text = (text + " ") * (3_000_000 // len(text) + 1)
    (tmp_path / "big.txt").write_text(text[:3_000_000] + "\n", encoding="utf-8")
    (tmp_path / "small.txt").write_text(words[0] + "\n", encoding="utf-8")
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(p.stderr); print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")

    def peak_mb(name: str) -> tuple[float, str]:
        proc = subprocess.run([sys.executable, "-c", probe, TC, "predict", "--model-dir", str(tree / "model"),
                               "-i", str(tmp_path / name), "-o", str(tmp_path / f"{name}.jsonl"), *ONE_THREAD],
                              capture_output=True, text=True, env={**os.environ, "TC_PROGRESS_SECONDS": "0"},
                              timeout=600)
        code, kb = proc.stdout.split()
        assert code == "0", proc.stderr
        return int(kb) / 1024, proc.stderr

    base, _ = peak_mb("small.txt")
    peak, stderr = peak_mb("big.txt")
    assert peak - base < 200, f"peak RSS {peak:.0f} MB vs {base:.0f} MB for one word"
    assert re.search(r"long document: [\d,]+ of 3,000,000 characters \(\d+%\), [\d,]+ words, \d+ s, ETA \d+ s",
                     stderr), stderr
    assert "long document: 3,000,000 of 3,000,000 characters (100%)" in stderr
    [record] = [json.loads(line) for line in (tmp_path / "big.txt.jsonl").read_text().splitlines()]
    assert len(record["entities"]) > 1000
    assert all(record["text"][e["start"] : e["end"]] == e["text"] for e in record["entities"])
    assert record["entities"][-1]["start"] > 2_900_000  # the end of the document is tagged too


def test_streamed_long_document_equals_tagging_it_whole(tree: Path) -> None:
    words = [line.split("\t")[0] for line in (DATA / "test.tsv").read_text().splitlines()[:4000]
             if line.strip() and not line.startswith("-DOCSTART-")]
    text = "\n".join(" ".join(words[i : i + 25]) for i in range(0, len(words), 25)) * 8
    assert len(text) > 150_000
    with Predictor.from_model_dir(tree / "model", overrides=["runconfig.num_threads=1"]) as predictor:
        streamed = predictor.predict([text, "Aspirin."])
        whole_words = split_words(text)
        tagged = predictor.tag([[w for w, _, _ in whole_words]])[0]
        whole = entities(text, whole_words, tagged.labels, tagged.scores)
    key = [(e["start"], e["end"], e["type"]) for e in whole]
    assert [(e["start"], e["end"], e["type"]) for e in streamed[0]] == key and len(key) > 100
    assert [e["score"] for e in streamed[0]] == pytest.approx([e["score"] for e in whole], abs=2e-4)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab -.\t\n\r\x1c\u3000北é\u200b")), max_size=200),
       st.integers(min_value=1, max_value=40))
def test_segments_never_split_a_word(text: str, size: int) -> None:
    spans = list(segments(text, size))
    assert "".join(text[a:b] for a, b in spans) == text
    pieces = [(w, s + a, e + a) for a, b in spans for w, s, e in split_words(text[a:b])]
    assert pieces == split_words(text)


# -- manners -------------------------------------------------------------------------------------
@pytest.mark.cli
def test_stdin_on_a_terminal_says_how_to_end(tree: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([TC, "predict", "--model-dir", str(tree / "model"), *ONE_THREAD, "-q"], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    try:
        deadline = time.monotonic() + 120
        seen = b""
        while b"Ctrl-D" not in seen and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 1)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        os.write(master, b"Aspirin and naloxone.\n\x04")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    message = (seen.decode() + err).strip().splitlines()[0]
    assert message == ("reading text from stdin (the terminal): type or paste, then press Ctrl-D on a new line to "
                       "end (Ctrl-C aborts)")
    assert proc.returncode == 0
    assert json.loads(out.splitlines()[0])["text"] == "Aspirin and naloxone."


@pytest.mark.cli
def test_python_dash_m_tc_is_the_same_program() -> None:
    proc = subprocess.run([sys.executable, "-m", "tc", "backends", "list", "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cpu" in {b["name"] for b in json.loads(proc.stdout)["backends"]}
    proc = subprocess.run([sys.executable, "-m", "tc", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and tc.__version__ in proc.stdout
    assert "python -m tc" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.cli
def test_transformers_pipeline_on_an_export_gives_tc_predict_entities(tree: Path, tmp_path: Path) -> None:
    """With the setting the model card names, the real pipeline returns ``tc predict``'s word-level
    entities on real text (same offsets, types, and scores to 1e-3) for a model that reads words by argmax,
    as the pipeline does (``model.decoding: argmax``, here set in a copy of the model directory's
    ``tc_task.json``, which is what training with ``--set model.decoding=argmax`` writes). A model with the
    default constrained decoding exports a card that says where the pipeline differs."""
    transformers = pytest.importorskip("transformers")
    run_tc("export", "--model-dir", str(tree / "model"), str(tmp_path / "constrained"), check=True)
    assert "## Decoding" in (tmp_path / "constrained" / "README.md").read_text()
    model = copy_model(tree / "model", tmp_path / "argmax_model")
    info = json.loads((model / "tc_task.json").read_text())
    info["model_config"]["decoding"] = "argmax"
    (model / "tc_task.json").write_text(json.dumps(info))
    out = tmp_path / "hf"
    run_tc("export", "--model-dir", str(model), str(out), check=True)
    card = (out / "README.md").read_text()
    assert 'aggregation_strategy="first"' in card and "## Decoding" not in card
    sentences, current = [], []
    for line in (DATA / "test.tsv").read_text(encoding="utf-8").splitlines()[:3000]:
        if line.startswith("-DOCSTART-"):
            continue
        if line.strip():
            current.append(line.split("\t")[0])
        elif current:
            sentences.append(" ".join(current))
            current = []
    texts = [s for s in sentences if len(s.split()) <= 25][:60]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    tagged = tmp_path / "out.jsonl"
    run_tc("predict", "--model-dir", str(model), "-i", str(source), "-o", str(tagged), *ONE_THREAD, check=True)
    ours = [json.loads(line)["entities"] for line in tagged.read_text(encoding="utf-8").splitlines()]
    ner = transformers.pipeline("token-classification", model=str(out), aggregation_strategy="first", device="cpu")
    theirs = ner(texts)
    assert sum(map(len, ours)) > 20
    for text, mine, hf in zip(texts, ours, theirs, strict=True):
        assert [(e["start"], e["end"], e["type"]) for e in mine] == [
            (e["start"], e["end"], e["entity_group"]) for e in hf], text
        assert [e["score"] for e in mine] == pytest.approx([float(e["score"]) for e in hf], abs=1e-3)
    fragments = ner.__class__(model=ner.model, tokenizer=ner.tokenizer)(texts[0])  # the default: no aggregation
    assert all("entity_group" not in e for e in fragments)
