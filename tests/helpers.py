"""Shared test helpers: run the real ``tc`` console script, install real plugin packages, build a job from
names, and the small stand-ins several modules need (a pickle payload, a lengths-only dataset).

Imported as ``from helpers import ...``: pytest puts ``tests/`` (a folder without ``__init__.py``, holding
conftest.py) on ``sys.path``, under ``python -m pytest`` and plain ``pytest`` alike. Fixtures live in
conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tc.core.interfaces import Batch, Dataset

ROOT = Path(__file__).resolve().parents[1]
TC = str(Path(sys.executable).with_name("tc"))
TINY = ROOT / "configs" / "tiny_token_cls.yaml"
TINY_STEPS = 150
"""``runconfig.max_steps`` of the tiny config: the step of the shared tiny model's last checkpoint."""
ONE_THREAD = ("--set", "runconfig.num_threads=1")
DATA = ROOT / "data" / "BC5CDR-chem-IOB"
SMALL = ("--set", "train_input.max_sentences=16", "--set", "eval_input.max_sentences=8",
         "--set", "runconfig.max_steps=2", "--set", "runconfig.selection_split=null")
"""A 2-step run on a few sentences: what the error cases and the ``trained`` fixture train."""
TRAINED_STEP = 2
DOCS = [
    "Naloxone reverses the antihypertensive effect of clonidine.",
    "",
    "Lidocaine-induced cardiac asystole (after 5 mg/kg of cocaine) was   observed\tin rats.",
    "Café patients took aspirin, ibuprofen and 北京 naloxone\u200b twice\x07 daily.",
    "No chemical here at all",
]
"""Texts to tag: an empty one, odd spacing, a tab, accents, CJK, a zero-width space, a control character."""
LENGTHS = (12, 9, 5, 2)
"""Rows of ``padded_batch``: each row shorter than the last, the last one only [CLS] [SEP]."""


def run_tc(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``tc ARGS`` as a user would; returns the finished process (stdout/stderr as text).

    ``cwd`` defaults to the current directory, which conftest.py makes each test's own ``tmp_path`` (and a
    session folder for session fixtures): a ``./model_dir`` or ``runs/`` that ``make demo`` left in the
    checkout is never seen, and nothing a test's ``tc`` writes by default lands there."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([TC, *args], capture_output=True, text=True, env=full_env, cwd=cwd or Path.cwd(),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tc {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def error_line(result: str | subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line a user error prints (without ``error: ``): last on stderr, alone, with no
    traceback. ``result`` is a finished ``tc`` process or its stderr."""
    stderr = result if isinstance(result, str) else result.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0].removeprefix("error: ")


def weights(path: Path) -> dict[str, Any]:
    """The model weights (name -> tensor) of a tc checkpoint file."""
    import torch

    return torch.load(path, weights_only=True)["model"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, content: str | bytes) -> Path:
    """``content`` into ``path`` (folders made), as text or bytes; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def pip_install_target(package: Path, target: Path) -> None:
    """pip-install ``package`` into ``target`` (a folder later put on PYTHONPATH), offline-safe. The build
    runs on a copy beside ``target``: setuptools writes ``build/`` and ``*.egg-info`` into the source tree,
    which is the checkout's."""
    source = shutil.copytree(package, target.parent / f"{target.name}-source-{package.name}",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )


def with_path(folder: Path) -> dict[str, str]:
    """An environment that puts ``folder`` (a pip ``--target``) first on PYTHONPATH."""
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def without_modules(folder: Path, *modules: str) -> dict[str, str]:
    """An environment in which ``modules`` are not installed, for the real ``tc`` in a subprocess: a
    ``sitecustomize`` in ``folder`` (put on PYTHONPATH) sets them to None in ``sys.modules``, so importing
    them fails and ``importlib.util.find_spec`` finds nothing, as on a machine without the extra."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules), encoding="utf-8")
    return with_path(folder)


def copy_model(model_dir: Path, target: Path) -> Path:
    """A private copy of a trained model directory (real files, no links), for a test that writes into it."""
    shutil.copytree(model_dir, target)
    return target


def tiny_job(*sets: str, backend: str = "cpu") -> Any:
    """The job ``tc run --backend BACKEND --config configs/tiny_token_cls.yaml --set ...`` would run."""
    from tc.core.jobs import open_job

    return open_job("token_cls", backend, TINY, list(sets))


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str] | None = None,
             timeout: float = 120.0) -> None:
    """Poll until ``predicate()``; fail on ``timeout``, or when ``proc`` ends first (it never got there)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before the kill point")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


class Payload:
    """Unpickling this runs code: it creates the file ``marker``. A loader that runs it is unsafe."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class Rows(Dataset):
    """A stand-in dataset for ``BatchPlan``, which reads only lengths and loss tokens: ``n`` rows of random
    lengths 3-99 (``seed``) carrying loss on all but [CLS]/[SEP], or of one ``length`` each."""

    def __init__(self, n: int, seed: int = 0, length: int | None = None) -> None:
        if length is not None:
            self.lengths = np.full(n, length, dtype=np.int64)
            self.loss_tokens = self.lengths.copy()
        else:
            self.lengths = np.random.default_rng(seed).integers(3, 100, size=n)
            self.loss_tokens = self.lengths - 2

    def __len__(self) -> int:
        return len(self.lengths)

    def collate(self, indices: Any, pad_to: int | None = None) -> Batch:
        raise NotImplementedError("Rows has lengths only")


def padded_batch(vocab: int, num_classes: int, seed: int = 0, dtype: Any = None) -> dict[str, Any]:
    """A batch with different lengths, both token types and labels (-100 on padding and a few tokens)."""
    import torch

    from tc.tasks.token_cls.labels import IGNORE_INDEX

    dtype = dtype or torch.int32
    g = torch.Generator().manual_seed(seed)
    b, t = len(LENGTHS), max(LENGTHS)
    mask = (torch.arange(t)[None] < torch.tensor(LENGTHS)[:, None]).to(dtype)
    ids = torch.randint(1000, vocab, (b, t), generator=g, dtype=dtype) * mask
    types = torch.zeros(b, t, dtype=dtype)
    types[:, 4:] = 1
    types *= mask
    labels = torch.randint(0, num_classes, (b, t), generator=g, dtype=torch.int32)
    labels[mask == 0] = IGNORE_INDEX
    labels[:, 0] = IGNORE_INDEX  # [CLS]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}


def tiny_bert(**kw: object) -> Any:
    """A seeded random BERT of the ``tiny`` preset over a 1200-word vocabulary (``kw``: config overrides)."""
    import torch

    from tc.tasks.token_cls.model import PRESETS, BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    return BertForTokenClassification(BertConfig(**(PRESETS["tiny"] | {"vocab_size": 1200} | kw)))


# -- one bad input, one clear line ----------------------------------------------------------------
@dataclass
class Env:
    """Where an error case builds its bad input: a fresh folder, and the shared trained model directory."""

    tmp: Path
    trained: Path

    @property
    def ckpt(self) -> Path:
        return self.trained / f"checkpoint_{TRAINED_STEP}.pt"


@dataclass(frozen=True)
class Case:
    """A bad input (a row of docs/errors.md): the ``tc`` argv that feeds it, the exact message, the exit code."""

    argv: Callable[[Env], list[str]]
    message: Callable[[Env], str]
    exact: bool = True
    """False: ``message`` is a prefix (the rest lists keys or choices that are not worth pinning)."""
    needs_training: bool = False
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


def tiny_run(args: Callable[[Env], Sequence[str]] | Sequence[str] = (),
             small: Sequence[str] = SMALL) -> Callable[[Env], list[str]]:
    """``tc run`` on the tiny config (cut down by ``small``) into a fresh ``DIR/model``, then ``args`` (a
    list, or made from the case's Env); a later flag wins, so ``args`` may name another config or model dir."""

    def argv(e: Env) -> list[str]:
        extra = args(e) if callable(args) else args
        return ["run", "--config", str(TINY), "--model-dir", str(e.tmp / "model"), *small, *extra]

    return argv


def check_case(case: Case, tmp_path: Path, trained: Callable[[], Path]) -> None:
    """Run ``case`` in ``tmp_path`` (``trained()`` gives the trained model directory when it needs one):
    the exit code, the one ``error:`` line, and nothing run or written (no ``pwned``, no checkpoint)."""
    env = Env(tmp_path, trained() if case.needs_training else tmp_path / "untrained")
    proc = run_tc(*case.argv(env), env=case.env, cwd=tmp_path)
    assert proc.returncode == case.code, proc.stderr
    message, expected = error_line(proc), case.message(env)
    assert message == expected if case.exact else message.startswith(expected), (message, expected)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "model" / f"checkpoint_{TRAINED_STEP}.pt").exists()


def case_test(cases: dict[str, Case]) -> Callable[..., None]:
    """The test of a module's error ``cases``, one parametrized run per row:
    ``test_bad_input_gives_one_clear_line = case_test(CASES)``."""
    import pytest

    @pytest.mark.cli
    @pytest.mark.parametrize("name", list(cases))
    def test_bad_input_gives_one_clear_line(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        check_case(cases[name], tmp_path, lambda: request.getfixturevalue("trained"))

    return test_bad_input_gives_one_clear_line


def refused(proc: subprocess.CompletedProcess[str]) -> str:
    """The message of a refusal that prints exactly one line, ``error: ...``, and exits 2."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0].removeprefix("error: ")


def dataset_dir(folder: Path, train: str | bytes, test: str | None = None) -> Path:
    """A data_dir whose train.tsv (and test.tsv) hold ``train`` (and ``test``)."""
    write(folder / "train.tsv", train)
    if test is not None:
        write(folder / "test.tsv", test)
    return folder


def yaml_config(text: str) -> Callable[[Env], list[str]]:
    """``--config DIR/run.yaml`` holding ``text``."""
    return lambda e: ["--config", str(write(e.tmp / "run.yaml", text))]
