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

The body is parsed by hand (``request``, a pure function of the bytes) rather than by a pydantic model
so that every client mistake gets a 400 with ONE line naming the field at fault (FastAPI's own 422 lists
of errors are turned into that too), so that the size limits are enforced while the body streams in,
before it is held whole (413), and so that no JSON a client sends can make the server raise; a
``document``'s offsets and counts are checked before its reader builds it (``documents``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import tc
from tc.core.errors import first_line
from tc.tasks.token_cls.serve.batcher import BatcherBusy, BatcherClosed, MicroBatcher
from tc.tasks.token_cls.serve.request import ClientError, Limits, Parsed, parse_request, read_body

log = logging.getLogger("tc.serve")
DEFAULT_LIMITS = Limits()
__all__ = ["ClientError", "Limits", "Parsed", "create_app", "parse_request", "read_body", "shape_response"]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def shape_response(parsed: Parsed, results: list[list[dict[str, Any]]], rules: Sequence[str] = ()) -> dict[str, Any]:
    """The answer in the request's own shape: each text one document for the document ``rules``, then
    entities below ``min_score`` left out."""
    from tc.tasks.token_cls.documents.tagging import revise_entities

    kept = [revise_entities(text, spans, rules, parsed.min_score)
            for text, spans in zip(parsed.texts, results, strict=True)]
    if parsed.kind == "text":
        return {"entities": kept[0]}
    if parsed.kind == "texts":
        return {"results": [{"entities": spans} for spans in kept]}
    assert parsed.records is not None
    return {"documents": [{**record, "entities": spans} for record, spans in zip(parsed.records, kept, strict=True)]}


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


def create_app(predictor: Any, batcher: MicroBatcher, limits: Limits = DEFAULT_LIMITS, min_score: float = 0.0,
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
            parsed = parse_request(await read_body(request, limits.max_body_bytes), limits, min_score,
                                   request.headers.get("content-type"))
        except ClientError as exc:
            return error(exc.status, exc.message)
        if parsed.kind == "document":
            return await predict_document(parsed)
        if not parsed.texts:
            return JSONResponse(shape_response(parsed, []))
        return await run_model(parsed.texts, lambda results: shape_response(parsed, results, predictor.document_rules))

    async def predict_document(parsed: Parsed) -> JSONResponse:
        from tc.core.errors import DataError
        from tc.tasks.token_cls.serve.documents import read_checked_documents

        assert parsed.format is not None
        try:
            docs = await asyncio.to_thread(read_checked_documents, parsed.texts[0], parsed.format, limits)
        except ClientError as exc:
            return error(exc.status, exc.message)
        except DataError as exc:
            return error(400, f"{parsed.format}: {first_line(exc)}")
        return await document_answer(parsed, docs)

    async def document_answer(parsed: Parsed, docs: list[Any]) -> JSONResponse:
        from tc.tasks.token_cls.documents.tagging import attach, entity_dicts, render_documents, sentence_pieces

        pieces = sentence_pieces(docs)
        assert parsed.format is not None
        fmt = parsed.format

        def answer(results: list[list[dict[str, Any]]]) -> dict[str, Any]:
            tagged = attach(docs, pieces, results, parsed.min_score, predictor.document_rules)
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
        "document_rules": list(getattr(predictor, "document_rules", None) or ()),
    }
