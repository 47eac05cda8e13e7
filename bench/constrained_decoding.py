"""Issue #21's decoding lever: a trained softmax model's F1 with each ``model.decoding``, same weights.

For every model directory and split, ``tc run --mode eval`` once per decoding (``argmax``: each word's own
best label; ``constrained``: the best sequence the label scheme allows, ``tc/tasks/token_cls/decoding.py``),
on a copy of the directory's weights and settings (eval results are written into the copy; the model
directory is only read). One JSON line per pair:

    python bench/constrained_decoding.py MODEL_DIR [MODEL_DIR ...] [--split devel --split test] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COPIED = ("best_model.pt", "config.yaml", "label2id.json", "tc_task.json", "vocab.txt")
DECODINGS = ("argmax", "constrained")


def evaluate(model_dir: Path, split: str, decoding: str, threads: int) -> dict[str, float]:
    """Entity F1 and evaluation time of ``model_dir`` on ``split`` read with ``decoding``."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model"
        work.mkdir()
        for name in COPIED:
            if (model_dir / name).exists():
                shutil.copy(model_dir / name, work / name)
        argv = [sys.executable, "-m", "tc", "run", "--backend", "cpu", "--mode", "eval", "--model-dir", str(work),
                "--json", "--set", f"eval_input.split={split}", "--set", f"model.decoding={decoding}",
                "--set", f"runconfig.num_threads={threads}"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode:
            sys.exit(f"{model_dir} {split} {decoding}: {proc.stderr.strip().splitlines()[-1:]}")
        metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"f1": metrics["f1"], "eval_seconds": metrics["eval_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--split", action="append", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for model_dir in args.model_dirs:
        for split in args.split or ["devel"]:
            found = {d: evaluate(model_dir, split, d, args.threads) for d in DECODINGS}
            row = {"model_dir": str(model_dir), "split": split, **{d: found[d]["f1"] for d in DECODINGS},
                   "eval_seconds": {d: found[d]["eval_seconds"] for d in DECODINGS}}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
