"""``tc predict`` over a corpus: documents/s at 1 and 2 processes (``--num-processes``).

    python bench/bench_corpus.py MODEL_DIR                          # the BC5CDR test abstracts, 1 and 2 processes
    python bench/bench_corpus.py MODEL_DIR --input my.jsonl --processes 1,2,4 --repeat 4

Each row is one real ``tc predict -i IN -o OUT --num-processes N`` run (the resumable, sharded path),
output to a fresh folder. ``tagging docs/s`` is tc's own closing line (documents over the time from the
first chunk to the merged output, model loading excluded); ``wall docs/s`` is documents over the whole
command, start-up included. Every multi-process output is checked byte-identical to the one-process
output. On a machine with C cores, N ranks get C/N threads each (as tc predict gives them). Without
``--input`` the corpus is the 500 BC5CDR test abstracts (``data/BC5CDR-PubTator/test.pubtator``) as JSONL,
repeated ``--repeat`` times. A Markdown table goes to stdout, the raw numbers to
``bench/results/corpus_<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TC = str(Path(sys.executable).with_name("tc"))
PUBTATOR = ROOT / "data" / "BC5CDR-PubTator" / "test.pubtator"


def abstracts_jsonl(path: Path, repeat: int) -> int:
    """The test abstracts (title + abstract text) as ``{"id", "text"}`` lines; returns the count."""
    docs: dict[str, list[str]] = {}
    for line in PUBTATOR.read_text(encoding="utf-8").splitlines():
        match = re.match(r"(\d+)\|[ta]\|(.*)", line)
        if match:
            docs.setdefault(match.group(1), []).append(match.group(2))
    lines = [json.dumps({"id": f"{k}-{r}", "text": " ".join(v)}) + "\n" for r in range(repeat) for k, v in docs.items()]
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def run(model_dir: Path, source: Path, out: Path, processes: int, extra: list[str]) -> dict[str, Any]:
    command = [TC, "predict", "--model-dir", str(model_dir), "-i", str(source), "-o", str(out), *extra]
    if processes > 1:
        command += ["--num-processes", str(processes)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr}")
    found = re.search(r"tagged (\d+) documents .* in ([\d.]+) s: ([\d.]+) docs/s", proc.stderr)
    if found is None:
        raise SystemExit(f"no closing line in:\n{proc.stderr}")
    docs = int(found.group(1))
    return {"processes": processes, "documents": docs, "tagging_seconds": float(found.group(2)),
            "tagging_docs_per_s": float(found.group(3)), "wall_seconds": wall, "wall_docs_per_s": docs / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--input", type=Path, help="a file tc predict reads (default: the test abstracts)")
    parser.add_argument("--processes", default="1,2", help="comma list of --num-processes values")
    parser.add_argument("--repeat", type=int, default=2, help="copies of the default corpus")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="passed on as --set")
    args = parser.parse_args()
    extra = [x for o in args.overrides for x in ("--set", o)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tc-bench-corpus-") as tmp:
        source = args.input
        if source is None:
            source = Path(tmp) / "abstracts.jsonl"
            abstracts_jsonl(source, args.repeat)
        outputs = {}
        for n in (int(x) for x in args.processes.split(",")):
            out = Path(tmp) / f"out_{n}{source.suffix or '.txt'}"
            rows.append(run(args.model_dir, source, out, n, extra))
            outputs[n] = out.read_bytes()
        first = outputs[min(outputs)]
        identical = all(data == first for data in outputs.values())
    print(f"corpus: {source if args.input else f'BC5CDR test abstracts x{args.repeat}'}, model {args.model_dir}")
    print("| processes | documents | tagging s | tagging docs/s | wall s | wall docs/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['documents']} | {r['tagging_seconds']:.2f} | {r['tagging_docs_per_s']:.1f} | "
              f"{r['wall_seconds']:.2f} | {r['wall_docs_per_s']:.1f} |")
    print(f"outputs byte-identical across process counts: {identical}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"corpus_{stamp}.json").write_text(json.dumps({"rows": rows, "identical": identical,
                                                               "model_dir": str(args.model_dir)}, indent=1))
    if not identical:
        raise SystemExit("outputs differ between process counts")


if __name__ == "__main__":
    main()
