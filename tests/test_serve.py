"""``tc serve``: a real server process on 127.0.0.1 talked to with a real HTTP client (httpx).

Checked: /predict answers equal ``tc predict``'s on the same texts, 32 concurrent clients are all
answered correctly, bad requests get the right status and a one-line reason (and the server stays
up), SIGTERM lets in-flight requests finish and the process exits 0, and the micro-batcher merges
queued requests and isolates a failing one. Every wait is bounded; every server is killed in a finally.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import DOCS, ONE_THREAD, TC, error_line, read_jsonl, run_tc, without_modules

from tc.tasks.token_cls.predict import Predictor
from tc.tasks.token_cls.serve.batcher import MicroBatcher

STARTUP_S = 120.0

DOCUMENTED = {"serve-port-busy", "serve-host", "serve-model-missing", "serve-extra"}
"""docs/errors.md rows tested here (``test_cli_errors_are_one_line`` and the extra's test)."""


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(model_dir: Path, log: Path, *args: str) -> Server:
    """``tc serve --port 0`` as a subprocess; returns once /health answers (bounded wait)."""
    with log.open("wb") as sink:
        proc = subprocess.Popen([TC, "serve", "--model-dir", str(model_dir), "--port", "0", *ONE_THREAD, *args],
                                stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + STARTUP_S
    url = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"tc serve exited {proc.returncode}: {log.read_text()}")
            if url is None:
                found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
                url = found.group(1) if found else None
            if url is not None:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        return Server(proc, url, log)
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"tc serve did not answer /health within {STARTUP_S:g} s: {log.read_text()}")
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a service manager stops it (the server drains and exits, so `make coverage` sees its
    lines); SIGKILL only when it does not exit within 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(model_dir, tmp_path_factory.mktemp("serve_log") / "server.log")
    try:
        yield running
    finally:
        stop(running.proc)


def post(server: Server, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, timeout=60, **kwargs)


def spans(entities: Sequence[dict[str, Any]]) -> list[tuple[int, int, str, str]]:
    return [(e["start"], e["end"], e["type"], e["text"]) for e in entities]


def tc_predict(model_dir: Path, tmp_path: Path, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), "-q", *ONE_THREAD,
           check=True)
    return [r["entities"] for r in read_jsonl(out)]


@pytest.mark.cli
def test_predict_equals_tc_predict(server: Server, model_dir: Path, tmp_path: Path) -> None:
    expected = tc_predict(model_dir, tmp_path, DOCS)
    assert sum(len(e) for e in expected) >= 3, "the tiny model should tag some chemicals"

    answer = post(server, {"texts": DOCS})
    assert answer.status_code == 200, answer.text
    results = [r["entities"] for r in answer.json()["results"]]
    assert [spans(r) for r in results] == [spans(e) for e in expected]
    for got, want in zip(results, expected, strict=True):
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=1e-3)

    one = post(server, {"text": DOCS[0]}).json()
    assert spans(one["entities"]) == spans(expected[0])

    records = [{"id": i, "text": t, "meta": {"k": [i]}} for i, t in enumerate(DOCS)]
    documents = post(server, {"documents": records}).json()["documents"]
    assert [d["id"] for d in documents] == list(range(len(DOCS)))
    assert [d["meta"] for d in documents] == [r["meta"] for r in records]
    assert [spans(d["entities"]) for d in documents] == [spans(e) for e in expected]


@pytest.mark.cli
def test_documents_in_the_formats_tc_predict_reads(server: Server, model_dir: Path, tmp_path: Path) -> None:
    """A PubTator or BioC XML file's text posted as a document comes back as ``tc predict`` writes that file."""
    from tc.tasks.token_cls.documents import read_documents, write_documents

    blocks = (Path(__file__).resolve().parents[1] / "data" / "BC5CDR-PubTator" / "test.pubtator").read_text(
        encoding="utf-8").split("\n\n")[:3]
    pubtator = tmp_path / "three.pubtator"
    pubtator.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    bioc = tmp_path / "three.xml"
    write_documents(bioc, read_documents(pubtator))
    for source, fmt in ((pubtator, "PubTator"), (bioc, "bioc")):
        out = tmp_path / f"tagged{source.suffix}"
        run_tc("predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), "-q", *ONE_THREAD,
               check=True)
        answer = post(server, {"document": source.read_text(encoding="utf-8"), "format": fmt})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["format"] == {"PubTator": "pubtator", "bioc": "bioc_xml"}[fmt]
        assert body["document"] == out.read_text(encoding="utf-8")  # byte for byte what tc predict wrote
        written = read_documents(out)
        assert [r["id"] for r in body["results"]] == [d.id for d in written]
        assert [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in body["results"]] == [
            [m.span for m in d.mentions] for d in written]
        assert sum(len(r["entities"]) for r in body["results"]) > 0


def test_min_score_filters(server: Server) -> None:
    full = post(server, {"text": DOCS[2]}).json()["entities"]
    assert full
    cut = sorted(e["score"] for e in full)[len(full) // 2]
    kept = post(server, {"text": DOCS[2], "min_score": cut}).json()["entities"]
    assert spans(kept) == spans([e for e in full if e["score"] >= cut])
    assert post(server, {"text": DOCS[2], "min_score": 1.0}).json()["entities"] == [
        e for e in full if e["score"] >= 1.0]


def test_health_and_info(server: Server, model_dir: Path) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    info = httpx.get(f"{server.url}/info", timeout=10).json()
    labels = json.loads((model_dir / "label2id.json").read_text())
    assert sorted(info["labels"]) == sorted(labels)
    assert info["entity_types"] == ["Chemical"]
    assert info["tc_version"] and info["model_dir"] == str(model_dir)
    assert info["weights"].endswith("best_model.pt") and info["precision"] == "fp32"
    assert info["batching"]["enabled"] and info["limits"]["max_texts"] == 256
    assert info["document_rules"] == ["abbreviation", "no_long_form"]  # tc's default: the model dir sets none


def test_32_concurrent_clients_all_answered(server: Server) -> None:
    texts = [f"{DOCS[i % len(DOCS)]} Case {i} received aspirin." for i in range(32)]
    expected = [spans(r["entities"]) for r in post(server, {"texts": texts}).json()["results"]]
    before = httpx.get(f"{server.url}/info", timeout=10).json()["stats"]

    def one(i: int) -> tuple[int, list[tuple[int, int, str, str]]]:
        with httpx.Client(timeout=120) as client:
            answer = client.post(f"{server.url}/predict", json={"text": texts[i]})
            return answer.status_code, spans(answer.json().get("entities", []))

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert [code for code, _ in answers] == [200] * 32
    assert [found for _, found in answers] == expected
    after = httpx.get(f"{server.url}/info", timeout=10).json()["stats"]
    assert after["requests"] - before["requests"] == 32
    assert after["texts"] - before["texts"] == 32


BAD_REQUESTS = [
    (b'{"text": ', 400, "malformed JSON"),
    (b"", 400, "empty body"),
    (b"\xff\xfe{}", 400, "not UTF-8"),
    (b"[1, 2]", 400, "must be a JSON object, got a list"),
    (b'{"txt": "a"}', 400, "unknown field 'txt'"),
    (b"{}", 400, 'exactly one of "text", "texts", "documents" or "document"'),
    (b'{"document": "1|t|A"}', 400, '"document" needs "format": one of pubtator, bioc_xml, bioc_json, jsonl'),
    (b'{"document": "x", "format": "brat"}', 400, '"format" must be one of pubtator, bioc_xml, bioc_json, jsonl'),
    (b'{"text": "a", "format": "pubtator"}', 400, '"format" goes with "document"'),
    (b'{"document": "1|t|A\\n1\\t0\\t9\\tA\\tX\\n", "format": "pubtator"}', 400,
     "pubtator: document:2: document 1: mention 0-9 ends past the document text"),
    (b'{"text": "a", "texts": ["b"]}', 400, "(got text, texts)"),
    (b'{"text": 3}', 400, '"text" must be a string, got a number'),
    (b'{"texts": "a"}', 400, '"texts" must be a list of strings, got a string'),
    (b'{"texts": ["a", null]}', 400, '"texts"[1] must be a string, got null'),
    (b'{"documents": [{"id": 1}]}', 400, '"documents"[0] must be an object with a string "text"'),
    (b'{"text": "a", "min_score": 2}', 400, '"min_score" must be a number from 0 to 1'),
    (b'{"text": "a", "min_score": true}', 400, '"min_score" must be a number from 0 to 1'),
    (json.dumps({"texts": ["a"] * 257}).encode(), 413, "257 texts in one request exceeds the limit of 256"),
    (json.dumps({"texts": ["ok", "a" * 100_001]}).encode(), 413, "texts[1] has 100001 characters"),
    (json.dumps({"text": "a " * 600_000}).encode(), 413, "exceeds the limit of 1048576 bytes"),
]


@pytest.mark.parametrize(("body", "status", "reason"), BAD_REQUESTS, ids=[r[2][:30] for r in BAD_REQUESTS])
def test_bad_requests_get_a_code_and_one_line(server: Server, body: bytes, status: int, reason: str) -> None:
    answer = httpx.post(f"{server.url}/predict", content=body, headers={"content-type": "application/json"},
                        timeout=60)
    assert answer.status_code == status
    message = answer.json()["error"]
    assert reason in message and "\n" not in message
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200  # the worker is still up


def test_unknown_routes_and_methods(server: Server) -> None:
    missing = httpx.get(f"{server.url}/nope", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "not found: GET /nope"}
    wrong = httpx.get(f"{server.url}/predict", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method not allowed: GET /predict"
    assert "POST" in wrong.headers["allow"]
    empty = post(server, {"texts": []})
    assert empty.status_code == 200 and empty.json() == {"results": []}


@pytest.mark.cli
def test_sigterm_finishes_in_flight_requests(model_dir: Path, tmp_path: Path) -> None:
    """Requests held in a long batching window when SIGTERM arrives are answered; then exit 0."""
    running = start_server(model_dir, tmp_path / "server.log", "--batch-window-ms", "1500")
    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(post, running, {"text": f"{DOCS[0]} ({i})"}) for i in range(6)]
            deadline = time.monotonic() + 60
            while httpx.get(f"{running.url}/info", timeout=10).json()["stats"]["requests"] < 6:
                assert time.monotonic() < deadline, "requests never reached the server"
                time.sleep(0.02)
            running.proc.send_signal(signal.SIGTERM)
            answers = [f.result(timeout=120) for f in futures]
        assert [a.status_code for a in answers] == [200] * 6
        assert all(spans(a.json()["entities"]) for a in answers)
        assert running.proc.wait(timeout=60) == 0
        log = running.stderr()
        assert "stopped" in log and "Traceback" not in log
    finally:
        stop(running.proc)


@pytest.mark.cli
def test_batching_off_still_answers(model_dir: Path, tmp_path: Path) -> None:
    running = start_server(model_dir, tmp_path / "server.log", "--max-batch", "1", "--precision", "int8")
    try:
        info = httpx.get(f"{running.url}/info", timeout=10).json()
        assert info["batching"]["enabled"] is False and info["precision"] == "int8"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: post(running, {"texts": DOCS}), range(8)))
        assert [a.status_code for a in answers] == [200] * 8
        assert len({json.dumps(a.json()) for a in answers}) == 1  # the same texts, the same answer
        stats = httpx.get(f"{running.url}/info", timeout=10).json()["stats"]
        assert stats["largest_batch"] == len(DOCS)  # never two requests in one model call
    finally:
        stop(running.proc)


@pytest.mark.cli
def test_cli_errors_are_one_line(model_dir: Path, tmp_path: Path) -> None:
    proc = run_tc("serve", "--model-dir", str(tmp_path / "absent"), "--port", "0", timeout=120)
    assert proc.returncode == 2 and f"{tmp_path / 'absent'}: model directory not found" in proc.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        proc = run_tc("serve", "--model-dir", str(model_dir), "--port", str(port), timeout=120)
    finally:
        busy.close()
    assert proc.returncode == 2
    assert f"error: --port {port}: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_tc("serve", "--model-dir", str(model_dir), "--host", "no-such-host.invalid", timeout=120)
    assert proc.returncode == 2 and "error: --host no-such-host.invalid: cannot resolve (" in proc.stderr
    proc = run_tc("serve", "--model-dir", str(model_dir), "--precision", "int8", "--backend", "cuda", "--port", "0",
                  timeout=120)
    assert proc.returncode == 2 and "--precision int8 runs on onnxruntime's CPU provider" in proc.stderr


@pytest.mark.cli
def test_serve_without_its_extra_says_what_to_install(model_dir: Path, tmp_path: Path) -> None:
    proc = run_tc("serve", "--model-dir", str(model_dir), "--port", "0",
                  env=without_modules(tmp_path / "site", "fastapi", "uvicorn"), timeout=120)
    assert proc.returncode == 2
    assert error_line(proc) == "tc serve needs fastapi and uvicorn: pip install 'tc[serve]'"


# -- the batcher itself, on the real tiny model --------------------------------------------------


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Iterator[Predictor]:
    with Predictor.from_model_dir(model_dir, overrides=["runconfig.num_threads=1"]) as p:
        yield p


def test_batcher_merges_queued_requests(predictor: Predictor) -> None:
    """Requests queued before the collector runs share one model call and get their own slices."""
    texts = [[d] for d in DOCS] + [DOCS[:2], DOCS[2:]]

    async def scenario() -> tuple[list[Any], MicroBatcher]:
        batcher = MicroBatcher(predictor.predict, window_ms=50, max_batch=64)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(t) for t in texts)), batcher
        finally:
            await batcher.stop()

    results, batcher = asyncio.run(scenario())
    assert results == [predictor.predict(t) for t in texts]
    assert batcher.stats.batches == 1 and batcher.stats.texts == 2 * len(DOCS)


def test_batcher_keeps_each_requests_documents_apart(predictor: Predictor) -> None:
    """Sentences of documents (``documents`` keys) merge into one call whose keys never join two requests;
    a request without keys gets a document per text; each answer is what it gets alone."""
    calls: list[list[int] | None] = []

    def recording(texts: Sequence[str], documents: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
        calls.append(None if documents is None else list(documents))
        return predictor.predict(texts, documents)

    requests = [(DOCS[:3], [0, 0, 1]), (DOCS[3:5], [0, 0]), (DOCS[:2], None)]

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(recording, window_ms=50, max_batch=64)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(list(t), d) for t, d in requests))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert calls == [[0, 0, 1, 2, 2, 3, 4]]
    assert results == [predictor.predict(t, d) for t, d in requests]


def test_batcher_respects_max_batch_and_isolates_failures(predictor: Predictor) -> None:
    """A batch that raises is retried request by request: only the bad request fails."""
    poison = "POISON"

    def flaky(texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        if poison in texts:
            raise ValueError("cannot tag this")
        return predictor.predict(texts)

    async def scenario() -> tuple[list[Any], MicroBatcher]:
        batcher = MicroBatcher(flaky, window_ms=50, max_batch=3)
        await batcher.start()
        try:
            jobs = [batcher.submit([DOCS[0]]), batcher.submit([poison]), batcher.submit([DOCS[2]]),
                    batcher.submit([DOCS[3], DOCS[4]])]
            return await asyncio.gather(*jobs, return_exceptions=True), batcher
        finally:
            await batcher.stop()

    results, batcher = asyncio.run(scenario())
    assert results[0] == predictor.predict([DOCS[0]]) and results[2] == predictor.predict([DOCS[2]])
    assert isinstance(results[1], ValueError)
    assert results[3] == predictor.predict(DOCS[3:5])
    assert batcher.stats.largest_batch <= 3 and batcher.stats.failed_batches == 1


@pytest.mark.cli
def test_serve_help_is_fast_to_import() -> None:
    """``tc serve --help`` must not import fastapi/uvicorn/torch (the command imports them when run)."""
    code = ("import sys; from tc.tasks.token_cls.serve import command; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules))")
    out = subprocess.run([os.fspath(Path(TC).with_name("python")), "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
