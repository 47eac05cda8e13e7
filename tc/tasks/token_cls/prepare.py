"""``tc prepare token_cls``: the seed's write_csv_ner.py step, done losslessly.

The seed wrote pre-tokenized, truncated subword CSVs. tc writes one CSV row per *sentence* with the
original words and their IOB2 labels (so nothing is lost and any vocab can be used later), and
records what tokenization with the given vocab and length would do in ``meta.json``: sentences,
words, windows, split sentences and label counts per split. ``load_split`` reads the folder back.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tc.core.errors import ConfigError, DataError
from tc.core.fs import atomic_write_text, check_output, check_replace, ensure_writable_dir
from tc.tasks.token_cls.dataset import TokenClsDataset
from tc.tasks.token_cls.labels import SCHEMES, LabelMap
from tc.tasks.token_cls.readers import find_split_file, load_split, write_prepared_csv
from tc.tasks.token_cls.sentence import Sentence
from tc.tasks.token_cls.wordpiece import WordPieceEncoder

SPLITS = ("train", "devel", "test")
LABEL_FILE = "label2id.json"
META_FILE = "meta.json"
PARAMS_FILE = "params.json"


def prepare(data_dir: Path, vocab_file: Path, output_dir: Path, do_lower_case: bool, max_seq_length: int,
            label_scheme: str = "typed", overwrite: bool = False) -> dict[str, Any]:
    """Write ``{train,devel,test}.csv``, ``label2id.json``, ``meta.json`` and ``params.json``.

    ``train`` is required (the label map comes from it); ``devel`` and ``test`` are written when
    present. Every split is tokenized once so that label or vocab problems surface here, not in
    the middle of a run. A file of those names already in ``output_dir`` (a label map the user keeps
    there, an earlier prepare) is replaced only with ``overwrite``, checked before anything is written.
    Returns the meta dict.
    """
    data_dir, vocab_file, output_dir = Path(data_dir), Path(vocab_file), Path(output_dir)
    if label_scheme not in SCHEMES:
        raise ConfigError(f"label_scheme: {label_scheme!r} is not one of {', '.join(SCHEMES)}")
    if max_seq_length < 3:
        raise ConfigError(f"max_seq_length: {max_seq_length} leaves no room for [CLS], a word and [SEP]")
    check_output(output_dir, inputs={"--data-dir": data_dir, "--vocab-file": vocab_file}, kind="dir",
                 flag="--output-dir")
    splits = _read_splits(data_dir)
    for name in (*(f"{split}.csv" for split in splits), LABEL_FILE, META_FILE, PARAMS_FILE):
        check_replace(output_dir / name, overwrite, flag="--output-dir", choose="choose a new folder")
    encoder = WordPieceEncoder(vocab_file, do_lower_case=do_lower_case)
    label_map = LabelMap.from_sentences(splits["train"][1], scheme=label_scheme)
    summaries = {}
    for split, (source, sentences) in splits.items():
        dataset = TokenClsDataset(sentences, encoder, label_map, max_seq_length, scheme=label_scheme)
        summaries[split] = _summary(source, dataset)
    ensure_writable_dir(output_dir, "--output-dir")
    for split, (_, sentences) in splits.items():
        write_prepared_csv(output_dir / f"{split}.csv", sentences)
    label_map.save(output_dir / LABEL_FILE)
    meta = {
        "label_scheme": label_scheme,
        "max_seq_length": max_seq_length,
        "labels": list(label_map.labels),
        "num_split_sentences": sum(s["split_sentences"] for s in summaries.values()),
        "splits": summaries,
    }
    params = {
        "data_dir": str(data_dir.resolve()),
        "vocab_file": str(vocab_file.resolve()),
        "output_dir": str(output_dir.resolve()),
        "do_lower_case": do_lower_case,
        "max_seq_length": max_seq_length,
        "label_scheme": label_scheme,
    }
    _write_json(output_dir / META_FILE, meta)
    _write_json(output_dir / PARAMS_FILE, params)
    return meta


def _read_splits(data_dir: Path) -> dict[str, tuple[Path, list[Sentence]]]:
    """All splits present in ``data_dir``, read before anything is written."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    found = {split: find_split_file(data_dir, split) for split in SPLITS}
    if found["train"] is None:
        load_split(data_dir, "train")  # raises the DataError that names what was looked for
    return {split: (path, load_split(data_dir, split)) for split, path in found.items() if path is not None}


def _summary(source: Path, dataset: TokenClsDataset) -> dict[str, Any]:
    """The counts of one split worth knowing before training on it."""
    counts = Counter(label for s in dataset.sentences for label in s.labels or ())
    return {
        "source": str(source),
        "sentences": len(dataset.sentences),
        "words": dataset.num_words,
        "subwords": dataset.num_subwords,
        "windows": len(dataset),
        "split_sentences": dataset.num_split_sentences,
        "truncated_words": dataset.num_truncated_words,
        "longest_window": int(dataset.lengths.max()),
        "labeled": dataset.labeled,
        "label_counts": dict(sorted(counts.items())),
    }


def _write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")
