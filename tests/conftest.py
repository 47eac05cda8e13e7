"""Fixtures shared by the test modules; plain helpers are in helpers.py (``from helpers import ...``).

Hermetic by construction: every test runs in its own ``tmp_path`` (the working directory, so ``tc`` finds
no ``./model_dir`` or ``runs/`` that ``make demo`` left), session fixtures in a session folder, with no
``TC_*`` variable of the user's environment, and the run fails when the suite changed the checkout
(``git status --porcelain --ignored``, caches aside).

``tiny_model`` is the one trained tiny model of a session: the tiny config trained by the real CLI on one
thread, once for all xdist workers. It is read-only by convention; a module or test that writes into a
model directory works on a copy (``model_copy``, or ``copy_model`` at module scope).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import ONE_THREAD, ROOT, SMALL, TINY, TINY_STEPS, TRAINED_STEP, copy_model, run_tc

KEPT_VARIABLES = {"TC_CEREBRAS_PYTHON"}
"""The one ``TC_*`` variable the suite reads on purpose: the cerebras venv ``make test`` built."""
for _name in [name for name in os.environ if name.startswith("TC_") and name not in KEPT_VARIABLES]:
    del os.environ[_name]  # a user's TC_LOAD_PLUGINS, TC_PROGRESS_SECONDS... must change nothing tests see

CACHES = {"__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", "tc.egg-info"}
"""Folders whose change by a test run is not a change of the checkout (and ``.coverage*`` data files)."""

CHECKOUT = pytest.StashKey[set[str]]()
"""Where the controller keeps the checkout's state from session start."""

TRAINED_FIXTURES = {"tiny_model", "model_dir", "model_copy", "trained"}


def checkout_state() -> set[str]:
    """``git status --porcelain --ignored`` of the checkout, caches aside (empty outside a git checkout)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line for line in out.splitlines()
            if not CACHES & set(Path(line[3:]).parts) and not line[3:].startswith(".coverage")}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist) checks
        session.config.stash[CHECKOUT] = checkout_state()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the suite left the checkout other than it found it: a test read or wrote there."""
    before = session.config.stash.get(CHECKOUT, None)
    if before is None:
        return
    changed = sorted(checkout_state() ^ before)
    if changed:
        print("\nerror: the test suite changed the checkout (tests must work in their own tmp_path):\n  "
              + "\n  ".join(changed))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by kind, so ``make check`` is one ``-m`` expression: a test that needs a trained model is
    ``trained`` (it waits for the session's tiny fine-tune)."""
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.trained)


SUBPROCESS_MARKS = ("cli", "slow", "cerebras")
"""A test that starts a process says so with one of these marks; ``make check`` runs none of them."""


@pytest.fixture(autouse=True)
def subprocess_needs_a_mark(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test without a subprocess mark that starts a process fails at once, naming the mark it needs:
    so the fast tier (``make check``) stays in-process by construction, not by remembering."""
    if any(request.node.get_closest_marker(mark) for mark in SUBPROCESS_MARKS):
        return
    def refuse(self: subprocess.Popen, args: object, *rest: object, **kw: object) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process ({args!r}): mark it @pytest.mark.cli")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)  # session fixtures were built before this


@pytest.fixture(scope="session", autouse=True)
def session_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Session fixtures (the tiny model, the trained model dir) run in a folder of their own, not the checkout."""
    folder = tmp_path_factory.mktemp("session_cwd")
    old = Path.cwd()
    os.chdir(folder)
    yield folder
    os.chdir(old)


@pytest.fixture(autouse=True)
def own_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own ``tmp_path``: what ``tc`` reads or writes by default stays there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def shared_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: object) -> Path:
    """``build(folder)`` once for the whole run, shared by every xdist worker (a file lock in the run's
    common temp root); without xdist, once for the session. Returns the built folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder all workers' basetemps share
    folder = root / f"shared_{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)  # type: ignore[operator]
            (folder / ".done").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    return ["--task", "token_cls", "--config", str(TINY)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tc run --config configs/tiny_token_cls.yaml`` once per session (150 steps, one thread): weights,
    checkpoints, metrics and the inference assets. Do not write into it: take ``model_copy``."""
    def build(folder: Path) -> None:
        run_tc("run", "--task", "token_cls", "--backend", "cpu", "--config", str(TINY), "--model-dir",
               str(folder / "model"), *ONE_THREAD, "-q", check=True, cwd=folder)

    out = shared_once(tmp_path_factory, "tiny_model", build) / "model"
    assert (out / f"checkpoint_{TINY_STEPS}.pt").is_file()
    return out


@pytest.fixture(scope="module")
def model_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model for one test module: a copy, so what a module writes there (calibration, an ONNX
    cache, a report) is never seen by another module."""
    return copy_model(tiny_model, tmp_path_factory.mktemp("model_dir") / "model")


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """This test's own copy of the tiny model, free to change."""
    return copy_model(tiny_model, tmp_path / "model")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory after a 2-step training run on a few sentences (``SMALL``: checkpoint_2.pt,
    label2id.json, vocab.txt...), for the error cases that need a trained model."""
    def build(folder: Path) -> None:
        run_tc("run", "--config", str(TINY), "--model-dir", str(folder / "model"), *SMALL, "--mode", "train",
               check=True, cwd=folder)

    model_dir = shared_once(tmp_path_factory, "trained", build) / "model"
    assert (model_dir / f"checkpoint_{TRAINED_STEP}.pt").exists()
    return model_dir
