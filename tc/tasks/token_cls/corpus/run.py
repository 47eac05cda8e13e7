"""``tc predict`` end to end: checks, launching ranks, tagging chunk by chunk, resuming, merging.

A file input tagged into a file output is resumable (``resume``): every finished chunk is made durable
in ``OUT.partial/`` and OUT appears, complete, in one rename at the end. stdin or stdout cannot be
resumed: they stream chunk by chunk as before (a file output still appears only when complete).
Memory is bounded by ``--chunk-size`` (units held at once), never by the input's size.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tc.core.errors import DataError, TcError
from tc.core.fs import WriteError, atomic_writer, check_output
from tc.tasks.token_cls.corpus import documents, resume, shard
from tc.tasks.token_cls.corpus.progress import ProgressLine, note, throughput
from tc.tasks.token_cls.corpus.readers import Cursor, check_input, input_format, read_units
from tc.tasks.token_cls.corpus.tagging import Tally, render_chunk, stream

DEFAULT_CHUNK = 1024


@dataclass
class PredictJob:
    """What ``tc predict`` was asked to do (its flags, as typed)."""

    model_dir: Path
    input_path: str
    fmt: str | None
    output_path: str
    batch_size: int = 32
    backend: str = "cpu"
    checkpoint: Path | None = None
    overrides: tuple[str, ...] = ()
    quiet: bool = False
    precision: str = "fp32"
    chunk_size: int = DEFAULT_CHUNK
    num_processes: int | None = None
    hostfile: Path | None = None
    overwrite: bool = False
    output_format: str | None = None
    min_score: float = 0.0
    document_rules: tuple[str, ...] | None = None
    """``--document-rules`` (None: the model dir's, else tc's default)."""
    plan: documents.DocPlan | None = None
    """Set by ``predict_command``: the input is documents (see ``corpus.documents``), else plain."""

    def settings(self, fmt: str) -> dict[str, Any]:
        """The flags that change the output bytes; a resumed run must repeat them."""
        found = {"--format": fmt, "--precision": self.precision, "--backend": self.backend,
                 "--checkpoint": None if self.checkpoint is None else str(self.checkpoint.expanduser().resolve()),
                 "--batch-size": self.batch_size, "--chunk-size": self.chunk_size, "--set": list(self.overrides),
                 "--min-score": self.min_score,
                 "--document-rules": None if self.document_rules is None else list(self.document_rules)}
        return found if self.plan is None else {**found, **self.plan.settings()}

    def units(self, fmt: str, cursor: Cursor | None = None) -> Iterator[Any]:
        """What is tagged one by one: documents of a document format, else plain documents or CoNLL blocks."""
        if self.plan is not None:
            return documents.read_units(self.plan, self.input_path, cursor)
        return read_units(self.input_path, fmt, cursor)

    def render(self, predictor: Any, fmt: str, chunk: list[Any]) -> tuple[str, Tally]:
        if self.plan is not None:
            return documents.render_chunk(predictor, self.plan, chunk, self.min_score)
        return render_chunk(predictor, fmt, chunk, self.min_score)


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """stdout for ``-``; otherwise a temporary file beside ``path`` renamed onto it on success."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_writer(Path(path), "w") as handle:
        yield handle


def chunks(units: Iterator[Any], size: int) -> Iterator[list[Any]]:
    from tc.tasks.token_cls.predict import iter_chunks

    return iter_chunks(units, size)


def predict_command(job: PredictJob, argv: list[str]) -> None:
    """Run ``tc predict``: everything a user typed wrong fails here, before a model loads or ranks start."""
    job.plan = documents.plan(job.input_path, job.fmt, job.output_path, job.output_format)
    if job.plan is not None and not job.plan.streamed:
        documents.predict_whole(job, job.plan)
        return
    fmt = job.plan.source if job.plan is not None else input_format(job.input_path, job.fmt)
    check_input(job.input_path)
    output = None if job.output_path == "-" else Path(job.output_path)
    if output is not None:
        if output.is_dir():
            raise DataError(f"{output}: is a directory, expected an output file")
        check_output(output, inputs={"--input": job.input_path, "--checkpoint": job.checkpoint},
                     protected_dirs={"--model-dir": job.model_dir}, flag="--output")
    launched = shard.under_launcher()
    rank = shard.current_rank() if launched else shard.Rank()
    world = rank.world if launched else shard.planned_world(job.num_processes, job.hostfile)
    many = world > 1 or job.hostfile is not None
    if many and (output is None or job.input_path == "-"):
        flag = f"--num-processes {job.num_processes}" if job.num_processes else f"--hostfile {job.hostfile}"
        raise TcError(f"{flag}: needs --input FILE and --output FILE (every rank reads the input and writes "
                      "its shard beside the output)")
    identity = None
    if output is not None and job.input_path != "-":
        identity = resume.run_identity(Path(job.input_path), job.model_dir, job.checkpoint, job.settings(fmt))
        continued = resume.check_partial(output, identity, world, job.overwrite, rank.rank if launched else None)
        resume.check_output_exists(output, job.overwrite, continued)
    elif output is not None:
        resume.check_output_exists(output, job.overwrite, None)
    if many and not launched:
        shard.launch(job.num_processes, job.hostfile, world, argv)
    if job.input_path == "-" and sys.stdin.isatty():
        note(f"reading {fmt} from stdin (the terminal): type or paste, then press Ctrl-D on a new line to end "
             "(Ctrl-C aborts)")
    _tag(job, fmt, output, identity, rank)


def _tag(job: PredictJob, fmt: str, output: Path | None, identity: dict[str, Any] | None, rank: shard.Rank) -> None:
    from tc.tasks.token_cls.onnx_export import load_predictor

    talk = not job.quiet and rank.is_main
    overrides = shard.thread_overrides(job.overrides, job.backend, rank)
    with load_predictor(job.model_dir, job.precision, job.backend, job.checkpoint, job.batch_size,
                        overrides, document_rules=job.document_rules) as predictor:
        if talk:
            extra = f", rank 0 of {rank.world}" if rank.world > 1 else ""
            note(f"predicting with {predictor.trained.weights_path} ({len(predictor.labels)} labels) on "
                 f"{predictor.backend.device_description()}{extra}")
        kind = "sentences" if fmt == "conll" else "documents"
        progress = ProgressLine(enabled=talk, note=note, kind=kind)
        predictor.progress = progress.long_document
        start = time.perf_counter()
        if output is None or identity is None:
            with open_output(job.output_path) as out:
                tally = stream(lambda chunk: job.render(predictor, fmt, chunk),
                               chunks(job.units(fmt), job.chunk_size), out,
                               lambda t: progress.documents(t.units, predictor.stats.words))
            if talk:
                note(throughput(tally.units, predictor.stats.words, tally.entities, time.perf_counter() - start, fmt))
            return
        part = resume.Shard(output, rank.rank, rank.world)
        fresh = not part.folder.exists()
        try:
            part.open(identity, job.overwrite, shard.launch_token())
        except OSError as exc:
            if fresh and rank.world == 1:  # nothing was done: leave no empty partial behind
                shutil.rmtree(part.folder, ignore_errors=True)
            raise WriteError(part.folder, exc) from None
        try:
            _tag_shard(predictor, job, fmt, part, progress, talk)
        except WriteError:  # a full disk: what is done stays, and the rerun continues once there is room
            raise
        except DataError:  # the same input fails at the same place again: nothing worth resuming
            for suffix in (".json", ".out", ".idx"):
                part.path(suffix).unlink(missing_ok=True)
            if rank.world == 1:
                shutil.rmtree(part.folder, ignore_errors=True)
            raise
        if not rank.is_main:
            return
        states = shard.wait_for_shards(output, rank.world, shard.launch_token()) if rank.world > 1 else [part.state]
        totals = {s["total_chunks"] for s in states}
        if len(totals) != 1:
            raise DataError(f"{job.input_path}: the ranks read different numbers of chunks ({sorted(totals)}); "
                            f"did the input change during the run? {resume.START_OVER}")
        resume.merge(output, rank.world, totals.pop())
        if talk:
            note(summary(fmt, output, states, time.perf_counter() - start))


def _tag_shard(predictor: Any, job: PredictJob, fmt: str, part: resume.Shard, progress: ProgressLine,
               talk: bool) -> None:
    """Tag this rank's chunks that its shard does not hold yet, committing each."""
    state = part.state
    if state["complete"]:
        return
    done, rank, world = state["chunks"], part.rank, part.world
    if done and talk:
        note(f"resuming {part.folder}: {state['units_read']:,} {progress.kind} were done, continuing after them")
    total = Path(job.input_path).stat().st_size
    cursor = Cursor()
    count = index = 0
    started = False
    for index, chunk in enumerate(chunks(job.units(fmt, cursor), job.chunk_size)):
        count += len(chunk)
        if index % world != rank or index // world < done:
            continue
        if not started:
            progress.begin(cursor.bytes_read)
            started = True
        words = predictor.stats.words
        text, tally = job.render(predictor, fmt, chunk)
        part.commit(text, tally.units, predictor.stats.words - words, tally.entities, count, cursor.bytes_read)
        progress.corpus(count, cursor.bytes_read, total)
    part.finish(index + 1 if count else 0)


def summary(fmt: str, output: Path, states: list[dict[str, Any]], seconds: float) -> str:
    """The last line: what this run tagged (over every rank) and how fast, and what earlier runs had done."""
    def this_run(key: str) -> int:
        return sum(s[key] - s["resumed"][key] for s in states)

    line = throughput(this_run("units"), this_run("words"), this_run("entities"), seconds, fmt)
    if len(states) > 1:
        line = line.replace(" in ", f" on {len(states)} processes in ", 1)
    earlier = sum(s["resumed"]["units"] for s in states)
    kind = "sentences" if fmt == "conll" else "documents"
    return f"{line}; wrote {output}" + (f" ({earlier:,} {kind} were tagged by the interrupted run)" if earlier else "")
