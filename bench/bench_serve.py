"""``tc serve`` under load: requests/s and p50/p99 latency at 1 and 16 concurrent clients, batching on and off.

    python bench/bench_serve.py MODEL_DIR                       # fp32, 1 and 16 clients, batching on/off
    python bench/bench_serve.py MODEL_DIR --precision int8 --clients 1,16,32 --seconds 20 --threads 2

Each configuration starts its own real ``tc serve`` process on 127.0.0.1 (``--port 0``), warms it up,
then every client (a thread with its own keep-alive httpx connection) posts one BC5CDR test sentence
per request, back to back, for ``--seconds``. Latency is the client-side wall time of one request.
Clients share the machine with the server: on a 2-core VM read the 16-client rows as "server plus a
busy client", the same for both batching modes. A Markdown table goes to stdout, the raw numbers to
``bench/results/serve_<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TC = str(Path(sys.executable).with_name("tc"))
DATA = ROOT / "data" / "BC5CDR-chem-IOB" / "test.tsv"


def sentences(limit: int = 2000) -> list[str]:
    """Test-split sentences as raw text (words joined by spaces)."""
    out, words = [], []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        token = line.split("\t")[0].strip()
        if token and token != "-DOCSTART-":
            words.append(token)
        elif words:
            out.append(" ".join(words))
            words = []
        if len(out) >= limit:
            break
    return out


def start(model_dir: Path, log: Path, args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with log.open("wb") as sink:
        proc = subprocess.Popen([TC, "serve", "--model-dir", str(model_dir), "--port", "0", *args],
                                stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tc serve exited {proc.returncode}: {log.read_text()}")
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            try:
                if httpx.get(f"{found.group(1)}/health", timeout=2).status_code == 200:
                    return proc, found.group(1)
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"tc serve did not come up: {log.read_text()}")


def load(url: str, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads posting back to back for ``seconds``; every answer must be a 200."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=120) as http:
            i = k
            while time.perf_counter() < stop_at:
                begin = time.perf_counter()
                answer = http.post(f"{url}/predict", json={"text": texts[i % len(texts)]})
                latencies[k].append(time.perf_counter() - begin)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:100]}")
                i += clients

    begin = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    flat = sorted(x for per in latencies for x in per)
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, first: {errors[0]}")
    return {"clients": clients, "requests": len(flat), "seconds": round(wall, 3),
            "requests_per_s": round(len(flat) / wall, 2),
            "p50_ms": round(1000 * statistics.median(flat), 2),
            "p99_ms": round(1000 * flat[min(len(flat) - 1, int(0.99 * len(flat)))], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, nargs="?", default=ROOT / "model_dir",
                        help="a trained tc model directory (default: ./model_dir, where `tc run` trains)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "onnx", "int8"))
    parser.add_argument("--clients", default="1,16", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each server's rows")
    parser.add_argument("--threads", type=int, default=None, help="server intra-op threads (default: all cores)")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()

    texts = sentences()
    levels = [int(c) for c in args.clients.split(",")]
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows: list[dict[str, Any]] = []
    for batching in (True, False):
        flags = ["--precision", args.precision, "--batch-window-ms", str(args.window_ms),
                 "--max-batch", str(args.max_batch if batching else 1)]
        if args.threads:
            flags += ["--set", f"runconfig.num_threads={args.threads}"]
        proc, url = start(args.model_dir, results_dir / f"serve_{stamp}_{'on' if batching else 'off'}.log", flags)
        try:
            load(url, texts, max(levels), args.warmup)
            for clients in levels:
                row = load(url, texts, clients, args.seconds)
                row.update(batching="on" if batching else "off", precision=args.precision)
                rows.append(row)
                print(f"batching {row['batching']:>3}, {clients:>3} clients: {row['requests_per_s']:8.1f} req/s, "
                      f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms", file=sys.stderr)
            import httpx

            rows[-1]["server_stats"] = httpx.get(f"{url}/info", timeout=10).json()["stats"]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    out = results_dir / f"serve_{stamp}.json"
    out.write_text(json.dumps({"model_dir": str(args.model_dir), "rows": rows}, indent=2) + "\n")
    print("| precision | batching | clients | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['batching']} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']} | "
              f"{r['p99_ms']} |")
    print(f"\nraw: {out}")


if __name__ == "__main__":
    main()
