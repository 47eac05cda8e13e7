"""``tc predict`` on document formats: PubTator, BioC XML/JSON, BRAT and JSONL spans, in and out.

Which inputs are documents (``plan``): PubTator, BioC and BRAT always (by ``--format`` or suffix; a
folder or a ``.txt`` with a ``.ann`` beside it is BRAT); JSONL when it is converted, i.e. with
``--output-format`` or an output whose suffix names another document format (``.pubtator``, ``.xml``,
``.bioc.json``, ``.ann``). JSONL into JSONL stays the plain path it always was (each text tagged whole,
``entities`` added), so existing pipelines see no change. The output's format is ``--output-format``,
else its suffix, else (stdout) the input's.

**Pre-annotation** (``brat_text``): the output decides, always. A ``.txt`` input with no ``.ann`` beside it
is one BRAT document without mentions (its id is the file stem) when the output is BRAT: a ``.ann``, a
folder (an existing one, or a path ending in ``/``) or ``--output-format brat``; into anything else it
stays raw text, one document per line, as before. Any other plain input (stdin, CoNLL, ``--format
text``) into a ``.ann`` is refused, naming ``--output``. ``-i doc.txt -o doc.ann`` writes only
``doc.ann`` beside its text, which is left as it is.

Two ways to run, chosen by the formats:

* **Streamed** (PubTator or JSONL in, PubTator or JSONL out): documents are read lazily and tagged
  ``--chunk-size`` at a time through ``corpus.run``'s chunk loop, so resuming (``OUT.partial/``),
  ``--num-processes`` and stdin/stdout work as for plain JSONL. Each chunk renders to exactly the bytes
  the format's writer gives for those documents: a PubTator file read and tagged keeps its text lines,
  blank lines, relation lines, CRLF and byte-order mark byte for byte, only the mention lines change.
* **Whole** (BioC or BRAT on either side): one BioC collection or one BRAT folder is read whole, tagged
  in chunks, and written atomically at the end through ``write_documents``; no resume and no sharding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tc.core.errors import DataError, TcError
from tc.core.fs import check_output, check_replace
from tc.tasks.token_cls.corpus.readers import Cursor, decoded_lines
from tc.tasks.token_cls.corpus.tagging import Tally
from tc.tasks.token_cls.documents import Document, brat, detect_format
from tc.tasks.token_cls.documents.formats import FORMATS as DOC_FORMATS
from tc.tasks.token_cls.textio import BOM, join_lines

STREAMED = ("pubtator", "jsonl")
CONVERTING_SUFFIXES = (".pubtator", ".pubtator.txt", ".bioc.xml", ".xml", ".bioc.json", ".ann")
"""Output suffixes that turn a JSONL input into documents (``.json``/``.txt`` keep meaning plain JSONL)."""


@dataclass(frozen=True)
class DocPlan:
    """Documents in ``source`` format tagged into ``target`` format."""

    source: str
    target: str

    @property
    def streamed(self) -> bool:
        return self.source in STREAMED and self.target in STREAMED

    def settings(self) -> dict[str, str]:
        return {"--output-format": self.target}


def format_name(value: str, flag: str) -> str:
    """A document format name as typed (``bioc`` is BioC XML); unknown ones name the flag."""
    key = value.lower().replace("-", "_")
    key = {"bioc": "bioc_xml"}.get(key, key)
    if key not in DOC_FORMATS:
        raise DataError(f"{flag} {value}: unknown document format (valid: {', '.join(DOC_FORMATS)})")
    return key


def _source(input_path: str, fmt: str | None) -> str | None:
    if fmt is not None:
        return None if fmt in ("text", "conll") else format_name(fmt, "--format")
    if input_path == "-":
        return None
    path = Path(input_path).expanduser()
    if path.is_dir():
        return "brat"
    try:
        return detect_format(path).name
    except DataError:  # not a document suffix: raw text or CoNLL, as before
        return None


def _brat_output(output_path: str, target: str | None) -> bool:
    """Whether a ``.txt`` input's output is BRAT: ``--output-format brat``, a ``.ann``, or a new folder
    typed with a final ``/``. An existing folder is not taken for one (``-o .`` or ``-o MODEL_DIR`` would
    write a pair into it: refused as a directory, as ever)."""
    if target is not None or output_path == "-":
        return target == "brat"
    if output_path.lower().endswith(".ann"):
        return True
    return output_path.endswith(("/", os.sep)) and not Path(output_path).expanduser().exists()


def brat_text(input_path: str, fmt: str | None) -> bool:
    """A ``.txt`` input that is not PubTator: BRAT text (with or without its ``.ann``) for a BRAT output."""
    name = Path(input_path).name.lower()
    return fmt is None and input_path != "-" and name.endswith(".txt") and not name.endswith(".pubtator.txt")


def plan(input_path: str, fmt: str | None, output_path: str, output_format: str | None) -> DocPlan | None:
    """How ``tc predict`` treats this input: as documents (a plan) or as plain text/JSONL/CoNLL (None)."""
    target = format_name(output_format, "--output-format") if output_format is not None else None
    source = _source(input_path, fmt)
    if source is None and _brat_output(output_path, target):
        if brat_text(input_path, fmt):
            return DocPlan("brat", "brat")
        if target is None and output_path.lower().endswith(".ann"):
            what = f"--format {fmt}" if fmt else f"--input {input_path}"
            raise DataError(f"--output {output_path}: BRAT output needs a .txt file, a folder of them or document "
                            f"input (PubTator, BioC, BRAT or JSONL; name it with --format), not {what}")
    if source is None and brat_text(input_path, fmt) and output_path != "-":
        if target is None and Path(output_path).name.lower().endswith(CONVERTING_SUFFIXES):
            target = detect_format(Path(output_path), writing=True).name
        if target is not None:  # the output decides: a .txt is one document (BRAT text) in any document format
            return DocPlan("brat", target)
    if source is None:
        if target is not None:
            what = f"--format {fmt}" if fmt else f"--input {input_path}"
            raise DataError(f"--output-format {output_format}: needs document input (PubTator, BioC, BRAT or "
                            f"JSONL; name it with --format), not {what}")
        return None
    if target is None:
        if output_path == "-":
            target = source
        else:
            name = Path(output_path).name.lower()
            if source == "jsonl" and not name.endswith(CONVERTING_SUFFIXES):
                return None
            try:
                target = detect_format(Path(output_path), writing=True).name
            except DataError:
                suffixes = ", ".join(s for f in DOC_FORMATS.values() for s in f.suffixes)
                raise DataError(f"--output {output_path}: not a document format suffix for {source} input "
                                f"(known: {suffixes}, or a folder for BRAT); name one with --output-format") from None
    if source == "jsonl" and target == "jsonl" and output_format is None:
        return None
    return DocPlan(source, target)


# ---------------------------------------------------------------------------------------------
# Streamed: lazy PubTator and JSONL documents, and their exact output text per chunk
# ---------------------------------------------------------------------------------------------


@dataclass
class DocUnit:
    """One document read lazily, with what surrounds it in the file (written back when the format stays)."""

    doc: Document
    head: str = ""
    """Text before the document's own lines: the byte-order mark, blank lines before it."""
    final_newline: bool = True
    first: bool = False


def _raw_lines(path: str, cursor: Cursor | None) -> Iterator[tuple[int, str, bool]]:
    """``(number, line without its \\n, whether a \\n ended it)``; a leading BOM is kept on line 1."""
    for number, text in decoded_lines(path, cursor, keep_bom=True):
        newline = text.endswith("\n")
        yield number, text[:-1] if newline else text, newline


def pubtator_units(path: str, cursor: Cursor | None = None) -> Iterator[DocUnit]:
    """PubTator documents one at a time, parsed by the PubTator reader's own line rules; the first unit
    carries what precedes the first title (byte-order mark, blank lines), the last the final newline."""
    from tc.tasks.token_cls.documents.pubtator import _TEXT_LINE, _Builder

    source = Path("<stdin>" if path == "-" else path)
    seen: dict[str, int] = {}
    current: _Builder | None = None
    lead: list[str] = []
    head = ""
    first = True
    newline = True
    for number, raw, newline in _raw_lines(path, cursor):  # noqa: B007  (the last one is read after)
        if number == 1 and raw.startswith(BOM):
            raw = raw[1:]
            lead.append(BOM)
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _TEXT_LINE.match(line)
        if match and match.group(2) == "t":
            pmid = match.group(1)
            if pmid in seen:
                raise DataError(f"{source}:{number}: document {pmid} appears twice (first at line {seen[pmid]})")
            seen[pmid] = number
            if current is not None:
                yield DocUnit(current.build(), head, True, first)
                first, head = False, ""
            else:
                head = "".join(lead)
            current = _Builder(source, pmid, match.group(3), number, "\r" if raw.endswith("\r") else "")
        elif current is not None:
            current.add(number, raw)
        elif line.strip():
            raise DataError(f"{source}:{number}: expected a title line PMID|t|title before {line[:60]!r}")
        else:
            lead.append(raw + "\n")
    if current is None:
        raise DataError(f"{source}: no PubTator documents (no PMID|t|title line)")
    yield DocUnit(current.build(), head, newline, first)


def jsonl_units(path: str, cursor: Cursor | None = None) -> Iterator[DocUnit]:
    """JSONL records one at a time as documents (the JSONL reader's rules); blank lines go with the
    record after them."""
    from tc.tasks.token_cls.documents.jsonl import _document

    source = Path("<stdin>" if path == "-" else path)
    head: list[str] = []
    previous: DocUnit | None = None
    newline = True
    for number, raw, newline in _raw_lines(path, cursor):  # noqa: B007  (the last one is read after)
        if number == 1 and raw.startswith(BOM):
            raw = raw[1:]
            head.append(BOM)
        if not raw.strip():
            head.append(raw + "\n")
            continue
        unit = DocUnit(_document(source, number, raw), "".join(head), True, previous is None)
        head = []
        if previous is not None:
            yield previous
        previous = unit
    if previous is None:
        raise DataError(f"{source}: no JSONL records")
    previous.final_newline = newline
    yield previous


def read_units(plan: DocPlan, path: str, cursor: Cursor | None = None) -> Iterator[DocUnit]:
    return pubtator_units(path, cursor) if plan.source == "pubtator" else jsonl_units(path, cursor)


def _unit_text(plan: DocPlan, unit: DocUnit, doc: Document) -> str:
    """The exact text of one tagged document in the output (what the format's writer would give it)."""
    from tc.tasks.token_cls.documents.jsonl import record_line
    from tc.tasks.token_cls.documents.pubtator import document_lines

    same = plan.source == plan.target
    if plan.target == "pubtator":
        lines = document_lines(doc)[0]
        if same:
            return unit.head + join_lines(lines, unit.final_newline)
        return ("" if unit.first else "\n") + join_lines(lines)
    line = record_line(doc)
    if same:
        return unit.head + line + ("\n" if unit.final_newline else "")
    return line + "\n"


def render_chunk(predictor: Any, plan: DocPlan, chunk: Sequence[DocUnit], min_score: float) -> tuple[str, Tally]:
    """The output text of one chunk of documents, predicted mentions in place of their own."""
    from tc.tasks.token_cls.documents.tagging import tag_documents

    tagged = tag_documents(predictor.predict, [u.doc for u in chunk], min_score,
                           predictor.document_rules)
    text = "".join(_unit_text(plan, unit, doc) for unit, doc in zip(chunk, tagged, strict=True))
    return text, Tally(units=len(chunk), entities=sum(len(d.mentions) for d in tagged))


# ---------------------------------------------------------------------------------------------
# Whole: BioC collections and BRAT folders
# ---------------------------------------------------------------------------------------------


def _input_files(plan: DocPlan, input_path: Path) -> list[Path]:
    """Every file the input consists of (a BRAT input is its .txt and .ann files; a .txt alone has no .ann)."""
    if plan.source != "brat":
        return [input_path]
    if input_path.is_dir():
        return sorted(p for p in input_path.iterdir() if p.suffix in (".txt", ".ann"))
    ann = input_path.with_suffix(".ann")
    return [input_path.with_suffix(".txt"), *([ann] if os.path.lexists(ann) else [])]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def output_files(plan: DocPlan, output: Path, docs: Sequence[Document], source: Path | None = None) -> list[Path]:
    """The files writing ``docs`` to ``output`` creates or replaces. A single BRAT pair written beside its
    own input text (``-i doc.txt -o doc.ann``) leaves that text as it is, so it is not one of them; a text
    the writer would change (a byte-order mark is not written back) is, and is refused as the input."""
    if plan.target != "brat":
        return [output]
    files = [file for pair in brat.pair_paths(output, docs, flag="--output") for file in pair]
    if source is not None and plan.source == "brat" and not source.is_dir() and len(docs) == 1:
        txt = source.with_suffix(".txt")
        if _same_file(files[0], txt) and txt.read_bytes() == docs[0].text.encode("utf-8"):
            files = files[1:]
    return files


def predict_whole(job: Any, plan: DocPlan) -> None:
    """Read the input whole, check every file the output will write, tag, write atomically."""
    from tc.tasks.token_cls.corpus.progress import ProgressLine, note, throughput
    from tc.tasks.token_cls.documents import read_documents, write_documents
    from tc.tasks.token_cls.documents.tagging import render_documents, tag_documents
    from tc.tasks.token_cls.onnx_export import load_predictor
    from tc.tasks.token_cls.predict import iter_chunks

    whole = next(f for f in (plan.source, plan.target) if f not in STREAMED)
    if job.num_processes is not None or job.hostfile is not None:
        flag = f"--num-processes {job.num_processes}" if job.num_processes else f"--hostfile {job.hostfile}"
        raise TcError(f"{flag}: {whole} documents are read and written whole, on one process (sharding "
                      "needs PubTator or JSONL in and out)")
    if job.input_path == "-":
        raise DataError(f"--input -: {plan.source} is read from a file, not stdin")
    if job.output_path == "-" and plan.target == "brat":
        raise DataError("--output -: BRAT output is a folder (or a .ann file); give --output")
    source = Path(job.input_path).expanduser()
    docs = read_documents(source, plan.source)
    output = None if job.output_path == "-" else Path(job.output_path).expanduser()
    if output is not None:
        named = {"--input": source, "--checkpoint": job.checkpoint}
        for target in output_files(plan, output, docs, source):
            check_output(target, inputs=named, protected_dirs={"--model-dir": job.model_dir}, flag="--output")
            check_output(target, inputs=_input_files(plan, source), flag="--output")
            if target.is_dir():
                raise DataError(f"--output {target}: is a directory, expected a {plan.target} file")
            check_replace(target, job.overwrite, choose="choose another output")
    talk = not job.quiet
    with load_predictor(job.model_dir, job.precision, job.backend, job.checkpoint, job.batch_size,
                        list(job.overrides), document_rules=job.document_rules) as predictor:
        if talk:
            note(f"predicting with {predictor.trained.weights_path} ({len(predictor.labels)} labels) on "
                 f"{predictor.backend.device_description()}")
        progress = ProgressLine(enabled=talk, note=note)
        predictor.progress = progress.long_document
        start = time.perf_counter()
        tagged: list[Document] = []
        for chunk in iter_chunks(iter(docs), job.chunk_size):
            tagged.extend(tag_documents(predictor.predict, chunk, job.min_score, predictor.document_rules))
            progress.documents(len(tagged), predictor.stats.words)
        found = sum(len(d.mentions) for d in tagged)
        if output is None:
            import sys

            sys.stdout.write(render_documents(tagged, plan.target))
            sys.stdout.flush()
        else:
            write_documents(output, tagged, plan.target)
        if talk:
            line = throughput(len(tagged), predictor.stats.words, found, time.perf_counter() - start, "documents")
            note(line + ("" if output is None else f"; wrote {output} ({plan.target})"))
