"""``tc predict`` and ``tc export``: use a trained token_cls model directory from the command line.

Added to the ``tc`` group by the task plugin's ``register_commands`` hook. Input is streamed in chunks
so a file of any size is tagged in bounded memory; output goes to stdout or is written to a temporary
file renamed into place at the end, so a failed run never leaves half a result under the real name.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console

from tc.core.errors import DataError

FORMATS = ("jsonl", "conll", "text")
CONLL_SUFFIXES = (".tsv", ".conll", ".iob", ".iob2", ".bio", ".tags")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
DOCSTART = "-DOCSTART-"
err = Console(stderr=True)


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


def input_format(path: str, chosen: str | None) -> str:
    """``--format`` when given, else from the file suffix; stdin defaults to raw text."""
    if chosen is not None:
        return chosen
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CONLL_SUFFIXES:
        return "conll"
    return "text"


def check_input(path: str) -> None:
    """Fail on a missing input before minutes go into loading a model."""
    if path == "-":
        return
    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    if source.is_dir():
        raise DataError(f"{source}: is a directory, expected a file to tag")


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number, text without line ending)``; each line decoded alone so a bad byte names its line."""
    name = "<stdin>" if path == "-" else path
    check_input(path)
    try:
        handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{name}: cannot read ({exc.strerror or exc})") from None
    with contextlib.closing(handle) if path != "-" else contextlib.nullcontext(handle):
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{name}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None
            yield number, text.rstrip("\r\n")


@dataclass
class Document:
    """One text to tag and the record it came from (JSONL keeps its other fields)."""

    text: str
    record: dict[str, Any]


def read_documents(path: str, fmt: str) -> Iterator[Document]:
    """Raw text: every line is a document (blank lines too, so output lines match input lines).
    JSONL: every non-blank line is an object with a string ``text``."""
    name = "<stdin>" if path == "-" else path
    for number, line in read_lines(path):
        if fmt == "text":
            yield Document(line, {"text": line})
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f'{name}:{number}: expected an object with a string "text" field')
        yield Document(record["text"], record)


@dataclass
class Block:
    """A CoNLL sentence (its lines and their tokens) or a separator line kept verbatim."""

    lines: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def is_sentence(self) -> bool:
        return bool(self.tokens)


def read_conll_blocks(path: str) -> Iterator[Block]:
    """Sentences (one token per line, first column) and the blank/-DOCSTART- lines between them."""
    sentence = Block()
    for _, line in read_lines(path):
        parts = line.split("\t") if "\t" in line else line.split(" ")
        token = next((p.strip(" ") for p in parts if p.strip(" ")), "")
        if not token or token == DOCSTART:
            if sentence.is_sentence:
                yield sentence
                sentence = Block()
            yield Block([line])
            continue
        sentence.lines.append(line)
        sentence.tokens.append(token)
    if sentence.is_sentence:
        yield sentence


def conll_line(line: str, label: str) -> str:
    """The input line plus a label column, separated as the line's own columns are."""
    body = line.rstrip(" \t")
    return f"{body}{chr(9) if chr(9) in body else ' '}{label}"


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """stdout for ``-``; otherwise a temporary file beside ``path`` renamed onto it on success."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise DataError(f"{target}: is a directory, expected an output file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        handle = tmp.open("w", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        with handle:
            yield handle
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def tag_documents(predictor: Any, docs: Iterator[Document], out: IO[str]) -> tuple[int, int]:
    """Write one JSON line per document; returns (documents, entities)."""
    from tc.tasks.token_cls.predict import CHUNK_DOCUMENTS, iter_chunks

    count = found = 0
    for chunk in iter_chunks(docs, CHUNK_DOCUMENTS):
        for doc, spans in zip(chunk, predictor.predict([d.text for d in chunk]), strict=True):
            out.write(json.dumps({**doc.record, "entities": spans}, ensure_ascii=False) + "\n")
            count, found = count + 1, found + len(spans)
    return count, found


def tag_conll(predictor: Any, blocks: Iterator[Block], out: IO[str]) -> tuple[int, int]:
    """Write every input line back with a predicted label column; returns (sentences, entity starts)."""
    from tc.tasks.token_cls.predict import CHUNK_DOCUMENTS, word_spans

    count = found = 0
    pending: list[Block] = []

    def flush() -> None:
        nonlocal count, found
        sentences = [b for b in pending if b.is_sentence]
        labels = iter(predictor.predict_tokens([b.tokens for b in sentences]))
        for block in pending:
            if not block.is_sentence:
                out.write(block.lines[0] + "\n")
                continue
            predicted = next(labels)
            found += len(word_spans(predicted))
            out.writelines(conll_line(line, label) + "\n" for line, label in zip(block.lines, predicted, strict=True))
        count += len(sentences)
        pending.clear()

    sentences_pending = 0
    for block in blocks:
        pending.append(block)
        sentences_pending += block.is_sentence
        if sentences_pending == CHUNK_DOCUMENTS:
            flush()
            sentences_pending = 0
    flush()
    return count, found


@click.command("predict")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--input", "-i", "input_path", default="-", show_default=True,
              help="File to tag; - reads stdin.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Input format (default: from the suffix: .jsonl -> jsonl, .tsv/.conll -> conll, else text). "
                   "text: one document per line; jsonl: objects with a \"text\" field; conll: one token per "
                   "line, blank lines between sentences (output: the same lines plus a label column).")
@click.option("--output", "-o", "output_path", default="-", show_default=True, help="Where to write; - is stdout.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Windows per batch.")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Use this checkpoint file instead of best_model.pt / the newest checkpoint.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Backend setting, e.g. --set cpu.num_threads=2 or --set runconfig.precision=bf16.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def predict(model_dir: Path, input_path: str, fmt: str | None, output_path: str, batch_size: int, backend_name: str,
            checkpoint: Path | None, overrides: tuple[str, ...], quiet: bool) -> None:
    """Tag raw text, JSONL or CoNLL with a trained model; entities come with character offsets."""
    from tc.tasks.token_cls.predict import Predictor

    fmt = input_format(input_path, fmt)
    check_input(input_path)
    with Predictor.from_model_dir(model_dir, backend=backend_name, checkpoint=checkpoint,
                                  batch_size=batch_size, overrides=overrides) as predictor:
        if not quiet:
            note(f"predicting with {predictor.trained.weights_path} ({len(predictor.labels)} labels) on "
                 f"{predictor.backend.device_description()}")
        start = time.perf_counter()
        with open_output(output_path) as out:
            if fmt == "conll":
                units, found = tag_conll(predictor, read_conll_blocks(input_path), out)
            else:
                units, found = tag_documents(predictor, read_documents(input_path, fmt), out)
        if not quiet:
            note(throughput(units, predictor.stats.words, found, time.perf_counter() - start, fmt))


def note(message: str) -> None:
    """A progress line on stderr: never wrapped or marked up, so paths and numbers stay intact."""
    err.print(message, highlight=False, soft_wrap=True, markup=False)


def throughput(units: int, words: int, found: int, seconds: float, fmt: str) -> str:
    kind, unit = ("sentences", "sentences") if fmt == "conll" else ("documents", "docs")
    seconds = max(seconds, 1e-9)
    return (f"tagged {units} {kind} ({words} words, {found} entities) in {seconds:.2f} s: "
            f"{units / seconds:.1f} {unit}/s, {words / seconds:.0f} words/s")


@click.command("export")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--format", "fmt", type=click.Choice(("hf",)), default="hf", show_default=True,
              help="hf: a Hugging Face BertForTokenClassification directory (AutoModel/AutoTokenizer load it).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Export this checkpoint file instead of best_model.pt / the newest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a non-empty directory.")
@click.argument("out", type=click.Path(path_type=Path))
def export(model_dir: Path, fmt: str, checkpoint: Path | None, overwrite: bool, out: Path) -> None:
    """Export a trained model directory to OUT (Hugging Face format)."""
    from tc.tasks.token_cls.export import export as run_export

    written = run_export(model_dir, out, fmt, checkpoint=checkpoint, overwrite=overwrite)
    click.echo(f"exported to {written} (load with AutoModelForTokenClassification.from_pretrained)")


COMMANDS = (predict, export)
