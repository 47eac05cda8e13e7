"""The one predictor protocol, and the task-generic ``tc predict`` / ``tc serve`` built on it.

A task's ``Task.load(model_dir)`` returns a predictor; one that has ``predict_records`` (JSON objects
in, one JSON object of results per input out) and ``describe`` gets, with no code of its own, a
``tc predict`` over JSONL files (each output line the input record plus its results, written atomically,
an existing output replaced only with ``--overwrite``) and a ``tc serve`` (``POST /predict`` with
``{"records": [...]}``, ``GET /health``, ``GET /info``). A task with richer commands of its own
(token_cls: every document format, resumable corpus tagging, micro-batching) names them in
``Task.model_commands`` instead; ``tc.core.dispatch`` picks which one runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import click

from tc.core.errors import ConfigError, DataError

CHUNK = 256
"""Records predicted (and held in memory) at a time."""


@runtime_checkable
class RecordPredictor(Protocol):
    """What the generic commands consume: records in, one result object per record out."""

    def predict_records(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def load_record_predictor(model_dir: Path, backend: str) -> RecordPredictor:
    """The model dir's predictor (``tc.core.jobs.load``), refused in one line unless it has the protocol."""
    from tc.core.jobs import load, task_of

    predictor = load(model_dir, backend=backend)
    if not isinstance(predictor, RecordPredictor):
        raise ConfigError(f"--model-dir {model_dir}: the {task_of(model_dir)} task's predictor has no "
                          "predict_records, so the generic tc predict / tc serve cannot use it")
    return predictor


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of a JSONL file, read as every tc input is
    (``readers.read_text``: no FIFO, exact UTF-8; lines split at ``\\n`` only, as JSONL defines them)."""
    from tc.core.readers import parse_json, read_text

    text, _ = read_text(path, "JSONL file")
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            record = parse_json(line, path, DataError, line=number)
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object")
            out.append((number, record))
    return out


def _results(predictor: RecordPredictor, records: Sequence[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    results = predictor.predict_records(records)
    if len(results) != len(records) or not all(isinstance(r, dict) for r in results):
        from tc.core.errors import PluginError

        raise PluginError(f"{where}: predict_records returned {len(results)} results for {len(records)} records")
    return results


@click.command("predict")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--input", "-i", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL: one JSON object per line, what the task's predictor reads.")
@click.option("--output", "-o", "output_path", required=True, type=click.Path(path_type=Path),
              help="JSONL: each input record with the predictor's results added.")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
def predict(model_dir: Path, input_path: Path, output_path: Path, backend_name: str, overwrite: bool) -> None:
    """Predict with any task's model directory over a JSONL file (the task-generic tc predict)."""
    from tc.core.fs import atomic_writer, check_output, check_replace

    check_output(output_path, {"--input": input_path}, {"--model-dir": model_dir})
    check_replace(output_path, overwrite)
    records = _records(input_path)
    predictor = load_record_predictor(model_dir, backend_name)
    try:
        with atomic_writer(output_path) as handle:
            for start in range(0, len(records), CHUNK):
                chunk = records[start : start + CHUNK]
                results = _results(predictor, [r for _, r in chunk], f"{input_path}:{chunk[0][0]}")
                for (_, record), result in zip(chunk, results, strict=True):
                    handle.write(json.dumps({**record, **result}, ensure_ascii=False) + "\n")
    finally:
        predictor.close()
    click.echo(f"{len(records)} records -> {output_path}", err=True)


def create_app(predictor: RecordPredictor, max_records: int) -> Any:
    """FastAPI app over one loaded predictor: its model runs one request at a time, off the event loop."""
    import threading

    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from tc.core.readers import parse_json

    app = FastAPI(title="tc")
    lock = threading.Lock()

    def run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with lock:
            return _results(predictor, records, "request")

    async def predict_route(request: Request) -> Any:
        try:  # tc's JSON parser: a duplicate key or an oversized integer is refused, not half-read
            body = parse_json((await request.body()).decode("utf-8"), "request body", DataError)
        except (UnicodeDecodeError, DataError) as exc:
            return JSONResponse({"detail": str(exc) if isinstance(exc, DataError) else "the body is not UTF-8"},
                                status_code=400)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            return JSONResponse({"detail": 'the body must be {"records": [objects]}'}, status_code=422)
        if len(records) > max_records:
            return JSONResponse({"detail": f"{len(records)} records; at most {max_records} per request "
                                           "(--max-records)"}, status_code=413)
        try:
            results = await run_in_threadpool(run, records)
        except DataError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return {"results": results}

    predict_route.__annotations__["request"] = Request  # a real class: this module's annotations are strings
    app.add_api_route("/predict", predict_route, methods=["POST"])
    app.add_api_route("/health", lambda: {"status": "ok"}, methods=["GET"])
    app.add_api_route("/info", predictor.describe, methods=["GET"])
    return app


@click.command("serve")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port; 0 picks a free one (printed at start).")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
@click.option("--max-records", default=256, show_default=True, type=click.IntRange(min=1),
              help="Most records in one request; more is a 413.")
def serve(model_dir: Path, host: str, port: int, backend_name: str, max_records: int) -> None:
    """Serve any task's model directory over HTTP: POST /predict {"records": [...]}, GET /health, GET /info."""
    from tc.core.serving import run_server

    run_server(lambda: load_record_predictor(model_dir, backend_name), lambda p: create_app(p, max_records),
               host, port, str(model_dir))
