"""``tc prepare token_cls``: the seed's write_csv_ner.py step, done losslessly.

The seed wrote pre-tokenized, truncated subword CSVs. tc writes one CSV row per *sentence* with the
original words and their IOB2 labels (so nothing is lost and any vocab can be used later), and
records what tokenization with the given vocab and length would do in ``meta.json``: sentences,
words, windows, split sentences and label counts per split. ``load_split`` reads the folder back.

**Stale splits**: ``meta.json`` is also the manifest of what a prepare wrote (its ``splits``). A
prepare ``--overwrite`` into the folder of an earlier one removes the split CSVs that the earlier
prepare wrote and the new data lacks (``devel.csv`` of a train/devel/test prepare, redone from
train/test only), which would otherwise be read as the new data's split. Removed rather than refused:
the user asked to replace that prepare, and the file is tc's own (named in tc's manifest, a CSV with
tc's header). Nothing else is touched: a file the manifest does not name stays.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from tc.core.errors import ConfigError, DataError
from tc.core.fs import atomic_write_text, check_output, check_replace, ensure_writable_dir, write_errors
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
    there, an earlier prepare) is replaced only with ``overwrite``, checked before anything is written;
    an earlier prepare's split the new data lacks is then removed (``_stale_splits``, module docstring),
    before the new ``meta.json`` stops naming it. Returns the meta dict.
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
    stale = _stale_splits(output_dir, splits) if overwrite else []
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
    for path in stale:
        with write_errors(path):
            os.unlink(path)
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


PREPARED_HEADERS = ("tokens", "tokens,labels", "tokens,document", "tokens,labels,document")
"""The first line of every CSV ``write_prepared_csv`` writes."""


def _stale_splits(output_dir: Path, splits: dict[str, tuple[Path, list[Sentence]]]) -> list[Path]:
    """The ``<split>.csv`` files an earlier prepare wrote in ``output_dir`` for splits the new data lacks:
    named in its ``meta.json`` (the manifest) and still a regular file with a prepared CSV's header. No
    readable manifest of tc's shape names none; a user's own files are never among them."""
    try:
        meta = json.loads((output_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    written = meta.get("splits") if isinstance(meta, dict) else None
    if not isinstance(written, dict):
        return []
    stale = []
    for split in SPLITS:
        path = output_dir / f"{split}.csv"
        if split in written and split not in splits and not path.is_symlink() and path.is_file():
            try:
                with path.open(encoding="utf-8", newline="") as handle:
                    header = handle.readline().rstrip("\r\n")
            except (OSError, ValueError):
                continue
            if header in PREPARED_HEADERS:
                stale.append(path)
    return stale


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
