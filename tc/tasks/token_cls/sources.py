"""Where a split's sentences come from: TSV/CoNLL/CSV files or documents, from one corpus or several.

A split is read from one or more *sources* (``train_input.data_dir``, or each entry of
``train_input.corpora``). In a source folder a TSV/CoNLL/CSV split file wins, as it always did; without
one, a document file (PubTator, BioC XML/JSON, BRAT folder, JSONL spans) named after the split is read,
its format told by its suffix; ``format:`` names the format and reads documents only.

Documents become sentences that stay in document order (``DocSentence``), so a model may see their
neighbours as context. The training split is aligned with ``split_at_mentions=True`` (words are cut at
mention edges, so every gold mention is trainable); evaluation splits with ``split_at_mentions=False``:
their words are exactly what prediction sees, and gold mentions are scored in characters, so a
mention whose edge falls inside a word (``5-HT`` glued to a letter) can never be predicted exactly,
an honest miss that the alignment line counts. ``max_sentences`` on documents keeps whole documents,
the first ones holding at least that many sentences.

A source that annotates only some types (``corpora[i].types``) reads labels of other types as ``O``
(documents: those mentions are ignored and counted), and its rows carry a class mask so that the loss
never treats its tokens as negatives for types it does not annotate.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tc.core.errors import ConfigError, DataError
from tc.tasks.token_cls.readers import SPLIT_ALIASES, find_split_file, load_split
from tc.tasks.token_cls.sentence import Sentence

__all__ = ["Part", "Source", "SplitData", "load_sources", "log"]


@dataclass(frozen=True)
class Source:
    """One corpus a split is read from: its folder (or file), the types it annotates, its format."""

    data_dir: Path
    types: tuple[str, ...] | None = None
    fmt: str | None = None
    name: str = ""
    index: int = 0
    key: str = "train_input.data_dir"
    """The config key that gave it, for error messages."""


@dataclass
class Part:
    """Sentences ``start:stop`` of a split, read from one source (and, for documents, one file)."""

    source: Source
    start: int
    stop: int
    path: Path | None = None
    corpus: Any = None
    """The ``AlignedCorpus`` when the part came from documents (its ``documents`` are the gold)."""
    fmt: str | None = None
    relabelled: Counter[str] = field(default_factory=Counter)
    """IOB labels of types the source does not annotate, read as O, by type."""

    @property
    def types(self) -> tuple[str, ...] | None:
        return self.source.types


@dataclass
class SplitData:
    """A split's sentences (all sources back to back) and where each run of them came from."""

    split: str
    sentences: list[Sentence]
    parts: list[Part]
    lines: list[str] = field(default_factory=list)
    """What loading reported (one alignment line per document part)."""

    @property
    def documents(self) -> bool:
        return any(p.corpus is not None for p in self.parts)


def log(message: str) -> None:
    """A load-time line on stderr (the main rank's only: every rank reads the data)."""
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)


def _is_document_file(path: Path) -> bool:
    from tc.tasks.token_cls.documents import detect_format

    if not path.is_file() or path.suffix.lower() in (".tsv", ".conll", ".csv"):
        return False
    try:
        detect_format(path)
    except DataError:
        return False
    return True


def _document_path(source: Source, split: str) -> Path | None:
    """The document file (or BRAT folder) of ``split`` in ``source``, or None when it holds TSV/CoNLL."""
    from tc.tasks.token_cls.documents import find_document_split

    folder = Path(source.data_dir).expanduser()
    if split not in SPLIT_ALIASES:
        for candidate in (Path(split).expanduser(), folder / split):
            if (source.fmt and candidate.exists()) or _is_document_file(candidate):
                return candidate
        return None if not folder.is_dir() or source.fmt is None else find_document_split(folder, [split], source.fmt)
    if folder.is_file():
        return folder if source.fmt or _is_document_file(folder) else None
    if not folder.is_dir():
        return None
    if source.fmt is None and find_split_file(folder, split) is not None:
        return None  # TSV/CoNLL/CSV first, as before documents existed
    found = find_document_split(folder, SPLIT_ALIASES[split], source.fmt)
    if found is None and source.fmt:
        raise DataError(f"{folder}: no {split} split in format {source.fmt} ({source.key})")
    return found


def _check_format(source: Source) -> None:
    from tc.tasks.token_cls.documents import FORMATS

    if source.fmt is None:
        return
    key = source.fmt.lower().replace("-", "_")
    if key not in FORMATS and key not in ("bioc", "json", "spans"):
        raise ConfigError(f"{source.key.rsplit('.', 1)[0]}.format: unknown document format {source.fmt!r} "
                          f"(valid: {', '.join(FORMATS)})")


def _first_documents(corpus: Any, limit: int | None, align: Any) -> Any:
    """Whole documents, the first ones holding at least ``limit`` sentences (all without a limit)."""
    if not limit or len(corpus.sentences) <= limit:
        return corpus
    keep = corpus.sentences[limit - 1].doc_index + 1
    return align(corpus.documents[:keep])


def _read_documents(source: Source, split: str, path: Path, limit: int | None) -> tuple[list[Sentence], Part]:
    from tc.tasks.token_cls.documents import documents_to_sentences, read_documents
    from tc.tasks.token_cls.documents.formats import detect_format

    fmt = detect_format(path, source.fmt).name
    docs = read_documents(path, fmt)

    def align(d: Sequence[Any]) -> Any:
        return documents_to_sentences(d, types=source.types, split_at_mentions=split == "train")

    corpus = _first_documents(align(docs), limit, align)
    if not corpus.sentences:
        raise DataError(f"{path}: no text to read sentences from ({len(docs)} documents)")
    return list(corpus.sentences), Part(source, 0, len(corpus.sentences), path, corpus, fmt)


def _keep_types(sentences: list[Sentence], types: tuple[str, ...]) -> tuple[list[Sentence], Counter[str]]:
    """Labels of types outside ``types`` become O (counted by type)."""
    dropped: Counter[str] = Counter()
    out = []
    for s in sentences:
        labels = s.labels or ()
        if all(x == "O" or x[2:] in types for x in labels):
            out.append(s)
            continue
        new = []
        for x in labels:
            if x != "O" and x[2:] not in types:
                dropped[x[2:]] += x.startswith("B-")
                x = "O"
            new.append(x)
        out.append(dataclasses.replace(s, labels=tuple(new)))
    return out, dropped


def _read_source(source: Source, split: str, limit: int | None) -> tuple[list[Sentence], Part]:
    _check_format(source)
    path = _document_path(source, split)
    if path is not None:
        return _read_documents(source, split, path, limit)
    sentences = load_split(source.data_dir, split)
    sentences = sentences[:limit] if limit else sentences
    relabelled: Counter[str] = Counter()
    if source.types is not None:
        sentences, relabelled = _keep_types(sentences, source.types)
    part = Part(source, 0, len(sentences), Path(sentences[0].source) if sentences else None, relabelled=relabelled)
    return sentences, part


def _check_types(part: Part, sentences: Sequence[Sentence]) -> None:
    """A declared type that no train label of its corpus has is a typo, or the wrong folder."""
    if part.types is None:
        return
    if part.corpus is not None:
        there = {m.type for d in part.corpus.documents for m in d.mentions}
    else:
        there = {x[2:] for s in sentences for x in s.labels or () if x != "O"} | set(part.relabelled)
    missing = [t for t in part.types if t not in there]
    if missing:
        raise ConfigError(f"{part.source.key.rsplit('.', 1)[0]}.types: type {missing[0]!r} occurs in no train label "
                          f"of {part.source.data_dir} (types there: {', '.join(sorted(there)) or 'none'})")


def load_sources(sources: Sequence[Source], split: str, limit: int | None) -> SplitData:
    """The sentences of ``split`` from every source, back to back, with the parts and report lines."""
    sentences: list[Sentence] = []
    parts: list[Part] = []
    lines: list[str] = []
    for source in sources:
        found, part = _read_source(source, split, limit)
        if split == "train":
            _check_types(part, found)
        part.start, part.stop = len(sentences), len(sentences) + len(found)
        sentences.extend(found)
        parts.append(part)
        label = split if len(sources) == 1 else f"{split} [{source.name}]"
        if part.corpus is not None:
            lines.append(part.corpus.report.describe(label))
        if part.relabelled:
            kinds = ", ".join(f"{n} {t}" for t, n in sorted(part.relabelled.items()))
            lines.append(f"{label}: entities of types not annotated by this corpus read as O: {kinds}")
    for line in lines:
        log(line)
    return SplitData(split, sentences, parts, lines)
