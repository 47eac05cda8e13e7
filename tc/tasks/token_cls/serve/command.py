"""``tc serve``: the click command that loads a model once and serves it over HTTP with uvicorn.

The model is loaded and the port bound BEFORE the server starts, so a bad model directory, a busy
port or a missing extra is a one-line CLI error (exit 2), never a half-up server. SIGTERM and SIGINT
stop accepting connections, let in-flight requests finish (up to ``--graceful-timeout``), drain the
batcher, close the model and exit 0: a supervisor's stop is a clean stop, not a crash.
"""

from __future__ import annotations

from pathlib import Path

import click

from tc.core.errors import TcError
from tc.core.serving import bind, quiet_stop, require_extras, url_host

PRECISIONS = ("fp32", "onnx", "int8")  # tc.tasks.token_cls.onnx_export.PRECISIONS, without importing numpy here


@click.command("serve")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port; 0 picks a free one (printed at start).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32: tc's torch model; onnx: onnxruntime fp32; int8: onnxruntime dynamic int8 (CPU).")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Use this checkpoint file instead of best_model.pt / the newest checkpoint.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Backend setting: runconfig.num_threads, runconfig.precision (fp32 --precision) or the "
                   "backend's section, e.g. --set runconfig.num_threads=2 (the model's own settings are fixed).")
@click.option("--batch-window-ms", default=5.0, show_default=True, type=click.FloatRange(min=0, max=10_000),
              help="How long the first queued request waits for others to share its model call.")
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(min=0),
              help="Most texts in one model call; 0 or 1 turns micro-batching off.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Windows per forward pass inside a model call.")
@click.option("--min-score", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Leave out entities scoring below this (a request's \"min_score\" overrides it).")
@click.option("--document-rules", metavar="RULES",
              help="Document-level rules on predicted mentions: none, or any of abbreviation, no_long_form, "
                   "long_form, consistency joined by commas (default: the model dir's, else "
                   "abbreviation,no_long_form).")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1),
              help="Larger request bodies are refused with 413.")
@click.option("--max-texts", default=256, show_default=True, type=click.IntRange(min=1),
              help="Most texts (or documents) in one request; more is a 413.")
@click.option("--max-chars", default=100_000, show_default=True, type=click.IntRange(min=1),
              help="Most characters in one text; longer is a 413.")
@click.option("--max-queue", default=4096, show_default=True, type=click.IntRange(min=1),
              help="Texts waiting for the model beyond which requests get 503 (retry later).")
@click.option("--request-timeout", default=120.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds a request may wait for its prediction before a 504.")
@click.option("--graceful-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="On SIGTERM, seconds in-flight requests get to finish.")
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log) on stderr.")
def serve(model_dir: Path, host: str, port: int, precision: str, backend_name: str, checkpoint: Path | None,
          overrides: tuple[str, ...], batch_window_ms: float, max_batch: int, batch_size: int, min_score: float,
          max_body_bytes: int, max_texts: int, max_chars: int, max_queue: int, request_timeout: float,
          graceful_timeout: float, access_log: bool, document_rules: str | None) -> None:
    """Serve a trained model over HTTP: POST /predict, GET /health, GET /info."""
    from tc.tasks.token_cls.documents.rules import rules_flag

    rules = rules_flag(document_rules)
    require_extras()
    import uvicorn

    from tc.tasks.token_cls.corpus.progress import note
    from tc.tasks.token_cls.inference_sets import check_inference_sets
    from tc.tasks.token_cls.onnx_export import load_predictor
    from tc.tasks.token_cls.serve.app import Limits, create_app
    from tc.tasks.token_cls.serve.batcher import MicroBatcher

    check_inference_sets(overrides, model_dir, backend_name, precision)
    listener = bind(host, port)
    try:
        predictor = load_predictor(model_dir, precision, backend_name, checkpoint, batch_size, overrides,
                                   document_rules=rules)
    except BaseException:
        listener.close()
        raise
    try:
        batcher = MicroBatcher(predictor.predict, window_ms=batch_window_ms, max_batch=max_batch,
                               max_queue=max_queue)
        limits = Limits(max_body_bytes=max_body_bytes, max_texts=max_texts, max_chars=max_chars,
                        request_timeout_s=request_timeout)
        app = create_app(predictor, batcher, limits, min_score=min_score, precision=precision)
        config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                                timeout_graceful_shutdown=graceful_timeout, lifespan="on")
        server = uvicorn.Server(config)
        bound = listener.getsockname()
        mode = f"batching {batch_window_ms:g} ms / {max_batch} texts" if max_batch > 1 else "no batching"
        note(f"serving {predictor.trained.weights_path} ({precision}, {mode}) on "
             f"{predictor.backend.device_description()} at http://{url_host(bound[0])}:{bound[1]}")
        with quiet_stop():
            server.run(sockets=[listener])
        if not server.started:
            raise TcError(f"--port {port}: the server failed to start on {host} (see the log above)")
        note("stopped")
    finally:
        listener.close()
        predictor.close()


COMMANDS = (serve,)
