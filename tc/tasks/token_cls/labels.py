"""Labels: IOB1/IOB2/IOBES (typed or untyped) normalised to IOB2, the two label schemes, the label map.

Two label schemes: ``typed`` (the IOB2 labels seen in train, ``B-Chemical``...) and ``seed`` (the
Cerebras seed's fixed vocabulary ``[PAD] B I O X [CLS] [SEP]``); ``TokenClsDataset`` documents how each
labels positions. ``IGNORE_INDEX`` is the label of positions that carry no loss, here once for the
dataset and the model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tc.core.errors import DataError
from tc.core.fs import atomic_write_text
from tc.core.readers import parse_json
from tc.tasks.token_cls.sentence import Sentence, read_text

__all__ = ["IGNORE_INDEX", "SCHEMES", "SEED_LABELS", "LabelMap", "check_label_map", "check_scheme", "normalise",
           "strip_type"]

IGNORE_INDEX = -100
"""Label of positions that carry no loss (special tokens, word continuations, padding, context)."""
SCHEMES = ("typed", "seed")
SEED_LABELS: tuple[str, ...] = ("[PAD]", "B", "I", "O", "X", "[CLS]", "[SEP]")
"""The Cerebras seed's label vocabulary, ids 0..6 in this order."""
_LABEL_RE = re.compile(r"(?:([BIES])(?:-(.+))?|O)\Z")


@functools.lru_cache(maxsize=4096)
def _parse_label(label: str) -> tuple[str, str | None] | None:
    """(prefix, type or None) of a valid label, ``("O", None)`` for outside, None when invalid."""
    match = _LABEL_RE.match(label)
    if match is None:
        return None
    return (match.group(1) or "O", match.group(2))


def _join(prefix: str, kind: str | None) -> str:
    return prefix if kind is None else f"{prefix}-{kind}"


class _Normaliser:
    """Checks one file's labels and rewrites them to IOB2, naming the first bad ``file:line``."""

    def __init__(self, sentences: Sequence[Sentence]) -> None:
        self.sentences = sentences
        self.unique = set().union(*(s.labels or () for s in sentences))

    def _first(self, predicate: Callable[[str], bool]) -> tuple[Sentence, int, str]:
        for s in self.sentences:
            for i, label in enumerate(s.labels or ()):
                if predicate(label):
                    return s, i, label
        raise AssertionError("label not found")  # pragma: no cover - only called for labels present

    def check(self) -> bool:
        """Validate every label; True when the file uses IOBES."""
        bad = [label for label in self.unique if _parse_label(label) is None]
        if bad:
            s, i, label = self._first(lambda x: _parse_label(x) is None)
            raise DataError(f"{s.where(i)}: invalid label {label!r} (expected O, B-TYPE, I-TYPE, E-TYPE, "
                            "S-TYPE or untyped B/I/E/S)")
        parsed = {label: _parse_label(label) for label in self.unique}
        typed = {label for label, p in parsed.items() if p is not None and p[0] != "O" and p[1] is not None}
        untyped = {label for label, p in parsed.items() if p is not None and p[0] != "O" and p[1] is None}
        if typed and untyped:
            s0, i0, first = self._first(lambda x: x in typed or x in untyped)
            other = untyped if first in typed else typed
            s, i, label = self._first(lambda x: x in other)
            raise DataError(f"{s.where(i)}: inconsistent label scheme: label {label!r} is "
                            f"{'untyped' if label in untyped else 'typed'} but {s0.where(i0)} has {first!r}")
        return any(p is not None and p[0] in "ES" for p in parsed.values())

    @staticmethod
    def iob(labels: Sequence[str]) -> tuple[str, ...]:
        """IOB1 or IOB2 -> IOB2: an I- that does not continue an entity of its type begins one."""
        out: list[str] = []
        open_kind: str | None = None
        inside = False
        for label in labels:
            prefix, kind = _parse_label(label)  # type: ignore[misc]
            if prefix == "O":
                out.append(label)
                inside = False
                continue
            starts = prefix == "B" or not inside or kind != open_kind
            out.append(_join("B", kind) if starts and prefix != "B" else label)
            inside, open_kind = True, kind
        return tuple(out)

    @staticmethod
    def iobes(s: Sentence) -> tuple[str, ...]:
        """IOBES -> IOB2, rejecting sequences that break IOBES (the file mixes schemes)."""
        out: list[str] = []
        open_kind: str | None = None
        inside = False
        labels = s.labels or ()
        for i, label in enumerate(labels):
            prefix, kind = _parse_label(label)  # type: ignore[misc]
            continues = prefix in "IE" and inside and kind == open_kind
            if inside and not continues:
                _iobes_error(s, i, f"expected I-/E- continuing {labels[i - 1]!r}")
            if prefix in "IE" and not inside:
                _iobes_error(s, i, "an entity must start with B- or S-")
            out.append(_join("B" if prefix in "BS" else "I", kind) if prefix != "O" else label)
            inside, open_kind = prefix in "BI", kind
        if inside:
            _iobes_error(s, len(labels) - 1, "the entity is not closed by E-")
        return tuple(out)


def _iobes_error(s: Sentence, i: int, reason: str) -> None:
    label = (s.labels or ())[i]
    raise DataError(f"{s.where(i)}: inconsistent label scheme: label {label!r} breaks IOBES, which this file "
                    f"uses (E-/S- labels seen): {reason}")


def normalise(raw: list[Sentence]) -> list[Sentence]:
    """One file's sentences with labels checked and rewritten to IOB2 (unlabeled ones as they are)."""
    if not raw or raw[0].labels is None:
        return raw
    normaliser = _Normaliser(raw)
    if normaliser.check():
        return [dataclasses.replace(s, labels=_Normaliser.iobes(s)) for s in raw]
    return [dataclasses.replace(s, labels=_Normaliser.iob(s.labels or ())) for s in raw]


def strip_type(label: str) -> str:
    """IOB2 ``B-Chemical`` -> ``B`` (the seed scheme's untyped labels)."""
    return label[0]


class LabelMap:
    """The label vocabulary: model class ``i`` is ``labels[i]``. Saved as ``label2id.json``."""

    def __init__(self, labels: Iterable[str], source: str | None = None) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        self.source = source
        if not self.labels:
            raise DataError(f"{source or 'label map'}: no labels")
        if len(set(self.labels)) != len(self.labels):
            raise DataError(f"{source or 'label map'}: duplicate labels in {list(self.labels)}")
        self.label2id: dict[str, int] = {label: i for i, label in enumerate(self.labels)}
        self.id2label: dict[int, str] = dict(enumerate(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other.labels == self.labels

    def __hash__(self) -> int:
        return hash(self.labels)

    def __repr__(self) -> str:
        return f"LabelMap({list(self.labels)})"

    @property
    def is_seed(self) -> bool:
        return self.labels == SEED_LABELS

    @classmethod
    def seed(cls) -> LabelMap:
        return cls(SEED_LABELS)

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sentence], scheme: str = "typed") -> LabelMap:
        """``typed``: sorted labels seen (always with ``O``); ``seed``: the seed's fixed vocabulary."""
        check_scheme(scheme)
        if scheme == "seed":
            return cls.seed()
        unlabeled = next((s for s in sentences if s.labels is None), None)
        if unlabeled is not None or not sentences:
            where = unlabeled.source if unlabeled else "no sentences"
            raise DataError(f"{where}: cannot build a label map from unlabeled data")
        seen = set().union(*(s.labels or () for s in sentences))
        return cls(sorted(seen | {"O"}))

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.label2id, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> LabelMap:
        """Read ``{"label": id}`` (ids 0..n-1) or a JSON list of labels in id order."""
        path = Path(path)
        data = parse_json(read_text(path), path, DataError)  # a duplicate key names its line
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return cls(data, source=str(path))
        if not isinstance(data, dict) or not all(type(v) is int for v in data.values()):  # true is no id
            raise DataError(f"{path}: expected a JSON object {{label: id}} or a list of labels")
        if sorted(data.values()) != list(range(len(data))):
            raise DataError(f"{path}: label ids must be 0..{len(data) - 1}, got {sorted(data.values())}")
        return cls(sorted(data, key=data.__getitem__), source=str(path))


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r} (valid: {', '.join(SCHEMES)})")


def check_label_map(label_map: LabelMap, scheme: str) -> None:
    where = label_map.source or "label map"
    if scheme == "seed" and not label_map.is_seed:
        raise DataError(f"{where}: label_scheme 'seed' needs the labels {list(SEED_LABELS)}, "
                        f"this map has {list(label_map.labels)}")
    if scheme == "typed":
        bad = [x for x in label_map.labels if (_parse_label(x) or ("?",))[0] not in "BIO"]
        if bad:
            raise DataError(f"{where}: label {bad[0]!r} is not an IOB2 label; label_scheme 'typed' needs "
                            "labels like B-TYPE, I-TYPE, O (use label_scheme: seed for the seed's map)")
