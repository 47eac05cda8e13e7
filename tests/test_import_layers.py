"""Import layering, checked in a fresh interpreter: reading documents must not drag in the predictor or
the task (the cycle task -> sources -> documents -> align -> predict -> model_dir -> task), and sharding
``tc predict`` over processes gets its launcher from the registry, not from a backend it names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write

from tc.core.errors import ConfigError


def imported_after(module: str) -> set[str]:
    """The ``tc`` modules a fresh interpreter holds after ``import module``."""
    probe = (f"import sys, json, {module}; "
             "print(json.dumps(sorted(m for m in sys.modules if m == 'tc' or m.startswith('tc.'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout))


@pytest.mark.cli
def test_reading_documents_imports_neither_the_predictor_nor_the_task() -> None:
    loaded = imported_after("tc.tasks.token_cls.documents.align")
    assert "tc.tasks.token_cls.spans" in loaded  # where split_words / word_spans live now
    assert not loaded & {"tc.tasks.token_cls.predict", "tc.tasks.token_cls.task", "tc.tasks.token_cls.model_dir"}


@pytest.mark.cli
def test_a_model_directory_is_read_without_the_task() -> None:
    assert "tc.tasks.token_cls.task" not in imported_after("tc.tasks.token_cls.model_dir")


def test_predict_still_exports_the_moved_helpers() -> None:
    from tc.plugins import manager
    from tc.tasks.token_cls import predict, spans, task

    assert (predict.split_words, predict.word_spans, predict.UNTYPED) == (spans.split_words, spans.word_spans,
                                                                          spans.UNTYPED)
    assert task.registered_model is manager.registered_model
    with pytest.raises(ConfigError, match=r"^model\.name: unknown model 'nope' \(valid: .*bert"):
        manager.registered_model("nope", "model.name")


def test_sharding_gets_its_launcher_from_the_registry(tmp_path: Path) -> None:
    """``tc predict --num-processes`` asks the registry for a process launcher (the built-in one: torchrun),
    whose errors name the flags the user typed."""
    from tc.tasks.token_cls.corpus import shard

    assert shard.planned_world(None, None) == 1
    assert shard.planned_world(3, None) == 3
    hosts = write(tmp_path / "hosts", "worker-1 slots=2\nworker-2 slots=3\n")
    assert shard.planned_world(None, hosts) == 5
    assert shard.planned_world(2, hosts) == 4
    empty = write(tmp_path / "empty", "# no hosts\n")
    with pytest.raises(ConfigError, match=rf"^--hostfile: {empty} lists no hosts$"):
        shard.planned_world(None, empty)
    from tc.plugins.manager import load_plugins

    launcher = load_plugins().process_launcher()
    assert launcher is not None
    command = launcher.relaunch_command(2, None, 2, ["predict", "-i", "in.txt"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[-5:] == ["-m", "tc.cli", "predict", "-i", "in.txt"] and "--nproc_per_node" in command
