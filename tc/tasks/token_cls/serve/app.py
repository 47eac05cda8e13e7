"""The HTTP API of ``tc serve``: a FastAPI app around one loaded Predictor and a MicroBatcher.

Endpoints::

    POST /predict  {"text": "..."}                      -> {"entities": [...]}
                   {"texts": ["...", ...]}              -> {"results": [{"entities": [...]}, ...]}
                   {"documents": [{"text": ..., ...}]}  -> {"documents": [{..., "entities": [...]}]}
                   {"document": "<file text>", "format": "pubtator"|"bioc_xml"|"bioc_json"|"jsonl"}
                       -> {"format": ..., "document": "<the same format, predicted mentions>",
                           "results": [{"id": ..., "entities": [...]}, ...]}
                   optional "min_score": 0..1 (default: the server's --min-score)
    GET  /health   {"status": "ok"}
    GET  /info     labels, model, tc version, precision, batching, limits, counters

Entities are exactly ``tc predict``'s: ``start``/``end`` character offsets, ``type``, ``text``, ``score``;
``documents`` keep every other field of each record, as ``tc predict`` does for JSONL. A ``document``
(the text of a PubTator, BioC or JSONL file) is tagged as ``tc predict`` tags that file: sentence by
sentence, predicted mentions replacing its own, everything else kept (``documents.tagging``); its
entities' offsets index the document's text (PubTator: title, space, abstract; BioC: passage offsets).
``--max-texts`` counts its documents and ``--max-chars`` applies to each document's text.

The body is parsed by hand rather than by a pydantic model so that every client mistake gets a 400 with
ONE line naming the field at fault (FastAPI's own 422 lists of errors are turned into that too), and so
that the size limits are enforced while the body streams in, before it is held whole (413).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import tc
from tc.core.errors import first_line
from tc.tasks.token_cls.serve.batcher import BatcherBusy, BatcherClosed, MicroBatcher

log = logging.getLogger("tc.serve")
FIELDS = ("text", "texts", "documents", "document")
DOCUMENT_FORMATS = ("pubtator", "bioc_xml", "bioc_json", "jsonl")  # documents.tagging.STRING_FORMATS


@dataclass(frozen=True)
class Limits:
    """What one request may carry; beyond it the answer is 413, never an out-of-memory worker."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_chars: int = 100_000
    request_timeout_s: float = 120.0


class ClientError(Exception):
    """A bad request: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------------------------
# Request parsing
# ---------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ClientError(400, f"bad Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise ClientError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Parsed:
    """A validated /predict request: the texts to tag and how to shape the answer."""

    kind: str
    texts: list[str]
    records: list[dict[str, Any]] | None
    min_score: float
    format: str | None = None
    """``document`` requests: the document format (the text to parse is ``texts[0]``)."""


def parse_request(body: bytes, limits: Limits, default_min_score: float) -> Parsed:
    """Validate a /predict body; every problem is a ClientError with one line naming the field."""
    if not body.strip():
        raise ClientError(400, 'empty body: send a JSON object with "text", "texts", "documents" or "document"')
    try:
        text = body.decode("utf-8-sig")  # JSON is UTF-8 (RFC 8259); json.loads(bytes) would also guess UTF-16/32
    except UnicodeDecodeError as exc:
        raise ClientError(400, f"request body is not UTF-8 (byte {exc.start})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(payload, dict):
        raise ClientError(400, f"request body must be a JSON object, got {_json_type(payload)}")
    unknown = sorted(set(payload) - {*FIELDS, "min_score", "format"})
    if unknown:
        raise ClientError(400, f"unknown field {unknown[0]!r} (expected one of text, texts, documents, document; "
                          "format, min_score)")
    given = [f for f in FIELDS if f in payload]
    if len(given) != 1:
        raise ClientError(400, 'give exactly one of "text", "texts", "documents" or "document"'
                          + (f" (got {', '.join(given)})" if given else ""))
    kind = given[0]
    value = payload[kind]
    records: list[dict[str, Any]] | None = None
    fmt = _document_format(kind, payload)
    if kind == "document":
        if not isinstance(value, str):
            raise ClientError(400, f'"document" must be a string (the file\'s text), got {_json_type(value)}')
        texts = [value]
    elif kind == "text":
        if not isinstance(value, str):
            raise ClientError(400, f'"text" must be a string, got {_json_type(value)}')
        texts = [value]
    elif kind == "texts":
        if not isinstance(value, list):
            raise ClientError(400, f'"texts" must be a list of strings, got {_json_type(value)}')
        bad = next((i for i, t in enumerate(value) if not isinstance(t, str)), None)
        if bad is not None:
            raise ClientError(400, f'"texts"[{bad}] must be a string, got {_json_type(value[bad])}')
        texts = value
    else:
        if not isinstance(value, list):
            raise ClientError(400, f'"documents" must be a list of objects, got {_json_type(value)}')
        for i, record in enumerate(value):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ClientError(400, f'"documents"[{i}] must be an object with a string "text" field')
        records = value
        texts = [r["text"] for r in value]
    if len(texts) > limits.max_texts:
        raise ClientError(413, f"{len(texts)} texts in one request exceeds the limit of {limits.max_texts}")
    long = next((i for i, t in enumerate(texts) if len(t) > limits.max_chars), None)
    if long is not None and kind != "document":  # a document's limit applies to each of its documents
        where = "text" if kind == "text" else f"{kind}[{long}]"
        raise ClientError(413, f"{where} has {len(texts[long])} characters, over the limit of {limits.max_chars}")
    min_score = payload.get("min_score", default_min_score)
    if isinstance(min_score, bool) or not isinstance(min_score, int | float) or not 0.0 <= min_score <= 1.0:
        raise ClientError(400, f'"min_score" must be a number from 0 to 1, got {json.dumps(min_score)[:40]}')
    return Parsed(kind, texts, records, float(min_score), fmt)


def _document_format(kind: str, payload: dict[str, Any]) -> str | None:
    """The ``format`` of a ``document`` request (required there, refused elsewhere)."""
    value = payload.get("format")
    if kind != "document":
        if "format" in payload:
            raise ClientError(400, '"format" goes with "document" (the text of a PubTator, BioC or JSONL file)')
        return None
    valid = ", ".join(DOCUMENT_FORMATS)
    if value is None:
        raise ClientError(400, f'"document" needs "format": one of {valid}')
    key = value.lower().replace("-", "_") if isinstance(value, str) else None
    key = {"bioc": "bioc_xml"}.get(key or "", key)
    if key not in DOCUMENT_FORMATS:
        raise ClientError(400, f'"format" must be one of {valid}, got {json.dumps(value)[:40]}')
    return key


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def shape_response(parsed: Parsed, results: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The answer in the request's own shape, entities below ``min_score`` left out."""
    from tc.tasks.token_cls.documents.tagging import keep_scores

    kept = [keep_scores(spans, parsed.min_score) for spans in results]
    if parsed.kind == "text":
        return {"entities": kept[0]}
    if parsed.kind == "texts":
        return {"results": [{"entities": spans} for spans in kept]}
    assert parsed.records is not None
    return {"documents": [{**record, "entities": spans} for record, spans in zip(parsed.records, kept, strict=True)]}


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def create_app(predictor: Any, batcher: MicroBatcher, limits: Limits = Limits(), min_score: float = 0.0,
               precision: str = "fp32") -> FastAPI:
    """The ASGI app. ``predictor`` is loaded already (load errors belong to the CLI, before listening);
    the batcher starts with the app and, at shutdown, finishes what is queued before the model closes."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="tc serve", version=tc.__version__, lifespan=lifespan)
    info = model_info(predictor, batcher, limits, min_score, precision)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{str(exc.detail).lower()}: {request.method} {request.url.path}"
        return error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def get_info() -> dict[str, Any]:
        return {**info, "stats": batcher.stats.as_dict()}

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            parsed = parse_request(await read_body(request, limits.max_body_bytes), limits, min_score)
        except ClientError as exc:
            return error(exc.status, exc.message)
        if parsed.kind == "document":
            return await predict_document(parsed)
        if not parsed.texts:
            return JSONResponse(shape_response(parsed, []))
        return await run_model(parsed.texts, lambda results: shape_response(parsed, results))

    async def predict_document(parsed: Parsed) -> JSONResponse:
        from tc.core.errors import DataError
        from tc.tasks.token_cls.documents.tagging import read_text_documents

        assert parsed.format is not None
        try:
            docs = await asyncio.to_thread(read_text_documents, parsed.texts[0], parsed.format)
        except DataError as exc:
            return error(400, f"{parsed.format}: {first_line(exc)}")
        if len(docs) > limits.max_texts:
            return error(413, f"{len(docs)} documents in one request exceeds the limit of {limits.max_texts}")
        long = next((d for d in docs if len(d.text) > limits.max_chars), None)
        if long is not None:
            return error(413, f"document {long.id} has {len(long.text)} characters, over the limit of "
                         f"{limits.max_chars}")
        return await document_answer(parsed, docs)

    async def document_answer(parsed: Parsed, docs: list[Any]) -> JSONResponse:
        from tc.tasks.token_cls.documents.tagging import attach, entity_dicts, render_documents, sentence_pieces

        pieces = sentence_pieces(docs)
        assert parsed.format is not None
        fmt = parsed.format

        def answer(results: list[list[dict[str, Any]]]) -> dict[str, Any]:
            tagged = attach(docs, pieces, results, parsed.min_score)
            return {"format": fmt, "document": render_documents(tagged, fmt),
                    "results": [{"id": d.id, "entities": entity_dicts(d)} for d in tagged]}

        if not pieces:
            return JSONResponse(await asyncio.to_thread(answer, []))
        return await run_model([text for _, _, text in pieces], answer, [index for index, _, _ in pieces])

    async def run_model(texts: list[str], shape: Any, documents: list[int] | None = None) -> JSONResponse:
        """Run ``texts`` through the batcher and answer ``shape(results)``, or the error status
        (``documents``: the document of each text, when they are sentences of documents)."""
        try:
            results = await asyncio.wait_for(batcher.submit(texts, documents), limits.request_timeout_s)
        except BatcherBusy as exc:
            return error(503, str(exc), headers={"Retry-After": "1"})
        except BatcherClosed as exc:
            return error(503, str(exc))
        except TimeoutError:
            return error(504, f"prediction took longer than {limits.request_timeout_s:g} s")
        except Exception as exc:  # a model failure is this request's 500, not a dead worker
            log.exception("prediction failed")
            return error(500, f"prediction failed: {type(exc).__name__}: {first_line(exc)}")
        return JSONResponse(await asyncio.to_thread(shape, results))

    return app


def model_info(predictor: Any, batcher: MicroBatcher, limits: Limits, min_score: float,
               precision: str) -> dict[str, Any]:
    """The static part of ``/info``: what model answers, and under which settings."""
    trained = predictor.trained
    config = trained.config
    labels = list(predictor.labels)
    types = sorted({label[2:] for label in labels if label[:2] in ("B-", "I-")})
    return {
        "tc_version": tc.__version__,
        "model_dir": str(trained.model_dir),
        "weights": str(trained.weights_path),
        "labels": labels,
        "entity_types": types,
        "precision": precision,
        "temperature": getattr(predictor.runner, "temperature", None),  # None: scores not calibrated
        "max_sequence_length": trained.max_sequence_length,
        "model": {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
                  "num_heads": config.num_heads, "vocab_size": config.vocab_size,
                  "num_classes": config.num_classes},
        "batching": {"enabled": batcher.batching, "window_ms": batcher.window_ms, "max_batch": batcher.max_batch,
                     "max_queue": batcher.max_queue},
        "limits": asdict(limits),
        "min_score": min_score,
    }
