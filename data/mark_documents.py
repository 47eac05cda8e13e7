"""Mark the abstracts of BC5CDR-chem's IOB files with ``-DOCSTART-`` lines, from the CDR PubTator corpus.

The BLURB IOB files keep each split's 500 abstracts as runs of sentences with no marker between them,
so document context (``train_input.context_tokens``) would read across two abstracts. Every IOB
sentence is a piece of exactly one PubTator document: with whitespace removed, a document's text is
its sentences' words joined in order. This script walks each split, finds the document every new run
of sentences starts (a unique whitespace-free prefix match), checks that the following sentences
continue it to its end, and writes the split with a ``-DOCSTART-<TAB>O`` line and a blank line before
each document's first sentence. Every other line is copied unchanged.

    python data/mark_documents.py --out /tmp/marked        # write marked copies there
    python data/mark_documents.py --check                  # the shipped files are marked and aligned

It never writes into an existing file (``--out`` must not hold the splits already).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tc.core.fs import atomic_write_text  # noqa: E402
from tc.tasks.token_cls.documents.formats import read_documents  # noqa: E402
from tc.tasks.token_cls.readers import DOCSTART, read_conll  # noqa: E402

SPLITS = ("train", "devel", "test")
IOB = HERE / "BC5CDR-chem-IOB"
PUBTATOR = HERE / "BC5CDR-PubTator"
MARK = f"{DOCSTART}\tO"


def document_starts(split: str) -> tuple[list[int], list[str]]:
    """(1-based first line of each document's first sentence, the documents' PMIDs) of one IOB split."""
    docs = read_documents(PUBTATOR / f"{split}.pubtator")
    texts = [re.sub(r"\s+", "", doc.text) for doc in docs]
    by_prefix: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        by_prefix.setdefault(text[:12], []).append(index)
    starts: list[int] = []
    pmids: list[str] = []
    current, pos = -1, 0
    for sentence in read_conll(IOB / f"{split}.tsv"):
        chunk = "".join(sentence.words)
        if current >= 0 and texts[current].startswith(chunk, pos):
            pos += len(chunk)
            continue
        if current >= 0 and pos < len(texts[current]):
            sys.exit(f"{sentence.where()}: sentence does not continue document {docs[current].id}")
        pool = by_prefix.get(chunk[:12], []) if len(chunk) >= 12 else range(len(texts))
        found = [i for i in pool if texts[i].startswith(chunk) and docs[i].id not in pmids]
        if len(found) != 1:
            sys.exit(f"{sentence.where()}: {len(found)} documents start with this sentence (expected one)")
        current, pos = found[0], len(chunk)
        starts.append(sentence.line)
        pmids.append(docs[current].id)
    if (current >= 0 and pos < len(texts[current])) or len(pmids) != len(docs):
        sys.exit(f"{IOB / split}.tsv: {len(pmids)} of {len(docs)} documents found whole")
    return starts, pmids


def marked_text(split: str) -> str:
    """The split's text with a ``-DOCSTART-`` line before every document (any old markers dropped)."""
    lines = (IOB / f"{split}.tsv").read_text(encoding="utf-8").split("\n")
    starts = set(document_starts(split)[0])
    out: list[str] = []
    for number, line in enumerate(lines, start=1):
        if number in starts:
            while out and not out[-1].strip():
                out.pop()
            out.extend([""] if out else [])
            out.extend([MARK, ""])
        if line.split("\t")[0].strip() != DOCSTART:
            out.append(line)
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="folder to write the marked train/devel/test.tsv into")
    mode.add_argument("--check", action="store_true", help="exit 0 when the shipped files are marked")
    args = parser.parse_args()
    texts = {split: marked_text(split) for split in SPLITS}  # all aligned before anything is written
    taken = [args.out / f"{split}.tsv" for split in SPLITS if args.out and (args.out / f"{split}.tsv").exists()]
    if taken:
        print(f"{taken[0]}: exists; refusing to overwrite it", file=sys.stderr)
        return 1
    for split, text in texts.items():
        shipped = (IOB / f"{split}.tsv").read_text(encoding="utf-8")
        if args.check:
            if text != shipped:
                print(f"{IOB / split}.tsv: not marked as this script marks it", file=sys.stderr)
                return 1
            print(f"{split}: {text.count(MARK)} documents marked and aligned")
            continue
        target = args.out / f"{split}.tsv"
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        print(f"{target}: {text.count(MARK)} documents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
