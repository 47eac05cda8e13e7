"""The machine's achievable matmul rate, the denominator of MFU: a loop of large square torch.matmul.

Measured in the run itself (not taken from a data sheet) because the same CPU model gives very
different numbers under different hypervisors, thread counts and neighbours. The best of several
short bursts is reported (a shared machine only ever makes a burst slower), along with the median.
Also measured: GEMMs of the shapes MiniLM's layers actually run, which is the realistic ceiling for
a model this narrow.

Usage: python bench/matmul_peak.py --device cpu --dtype fp32 --threads 2 [--seconds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from common import emit

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, seconds: float) -> dict[str, Any]:
    """FLOP/s of ``(m, k) @ (k, n)`` over bursts of about 0.25 s each, for ``seconds`` in all."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    out = torch.empty(m, n, device=device, dtype=dtype)
    flops = 2.0 * m * k * n
    torch.matmul(a, b, out=out)  # first call: library init, page faults
    sync(device)
    t0 = time.perf_counter()
    torch.matmul(a, b, out=out)
    sync(device)
    single = max(time.perf_counter() - t0, 1e-9)
    per_burst = max(1, int(0.25 / single))
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        t0 = time.perf_counter()
        for _ in range(per_burst):
            torch.matmul(a, b, out=out)
        sync(device)
        rates.append(per_burst * flops / (time.perf_counter() - t0))
    return {"shape": [m, k, n], "best": max(rates), "median": statistics.median(rates), "bursts": len(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--hidden", type=int, default=384, help="model width for the model-shaped GEMMs")
    parser.add_argument("--filter", type=int, default=1536)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    size = 2048 if device.type == "cpu" else 8192
    square = rate(size, size, size, dtype, device, args.seconds)
    tokens = 1024  # about one batch of 32 BC5CDR sentences
    model_shaped = [
        rate(tokens, args.hidden, 3 * args.hidden, dtype, device, args.seconds / 4),  # fused QKV
        rate(tokens, args.hidden, args.filter, dtype, device, args.seconds / 4),  # FFN up
        rate(tokens, args.filter, args.hidden, dtype, device, args.seconds / 4),  # FFN down
    ]
    emit({"device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(), "square": square,
          "model_shaped": model_shaped})


if __name__ == "__main__":
    main()
