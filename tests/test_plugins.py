"""Real plugin packages, pip-installed and discovered through the ``tc`` entry-point group."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from helpers import DATA, ONE_THREAD, ROOT, TC, TINY, error_line, pip_install_target, run_tc, weights, with_path, write

EXAMPLE = ROOT / "examples" / "tc-example-plugin"
BROKEN = ROOT / "tests" / "fixtures" / "tc-broken-plugin"
MODEL_PLUGIN = ROOT / "tests" / "fixtures" / "tc-model-plugin"
CLASH = ROOT / "tests" / "fixtures" / "tc-clash-plugin"


DOCUMENTED = {"mode-not-of-backend", "generic-predict-not-object"}
"""docs/errors.md rows tested here (modes come from the backend)."""


@pytest.fixture(scope="module")
def example_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("example-plugin")
    pip_install_target(EXAMPLE, target)
    return with_path(target)


@pytest.fixture(scope="module")
def broken_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("broken-plugin")
    pip_install_target(BROKEN, target)
    return with_path(target)


@pytest.fixture(scope="module")
def clash_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("clash-plugin")
    pip_install_target(CLASH, target)
    return with_path(target)


@pytest.fixture(scope="module")
def model_plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("model-plugin")
    pip_install_target(MODEL_PLUGIN, target)
    return with_path(target)


@pytest.mark.cli
def test_builtins_register_like_plugins() -> None:
    backends = json.loads(run_tc("backends", "list", "--json", check=True).stdout)["backends"]
    by_name = {b["name"]: b for b in backends}
    assert by_name["cpu"]["available"] is True
    assert by_name["cpu"]["plugin"] == "tc.backends.cpu"
    assert {"cpu", "cuda", "deepspeed", "cerebras"} <= set(by_name)
    tasks = json.loads(run_tc("tasks", "list", "--json", check=True).stdout)["tasks"]
    assert [t["name"] for t in tasks] == ["cdr_relations", "token_cls"]


@pytest.mark.cli
def test_unavailable_backends_say_why() -> None:
    backends = {b["name"]: b for b in json.loads(run_tc("backends", "list", "--json", check=True).stdout)["backends"]}
    import torch

    cuda = backends["cuda"]
    if torch.cuda.is_available():
        assert (cuda["available"], cuda["reason"]) == (True, "")
    else:
        assert cuda["available"] is False and "no CUDA device" in cuda["reason"]
    for name, backend in backends.items():  # a backend either runs here or says why not
        assert backend["available"] is (backend["reason"] == ""), name


@pytest.mark.cli
def test_example_plugin_is_listed(example_env: dict[str, str]) -> None:
    backends = json.loads(run_tc("backends", "list", "--json", env=example_env, check=True).stdout)["backends"]
    mine = next(b for b in backends if b["name"] == "single-thread")
    assert (mine["plugin"], mine["version"], mine["available"]) == ("example", "0.2.0", True)
    tasks = json.loads(run_tc("tasks", "list", "--json", env=example_env, check=True).stdout)["tasks"]
    assert {"name": "parity_tagging", "plugin": "example"}.items() <= next(
        t for t in tasks if t["name"] == "parity_tagging").items()
    plugins = json.loads(run_tc("plugins", "list", "--json", env=example_env, check=True).stdout)
    example = next(p for p in plugins["plugins"] if p["name"] == "example")
    assert example["version"] == "0.2.0"
    assert example["hooks"] == ["register_backends", "register_commands", "register_models", "register_tasks"]
    assert plugins["failures"] == []
    table = run_tc("backends", "list", env=example_env, check=True).stdout
    assert "single-thread" in table and "example 0.2.0" in table


@pytest.mark.cli
def test_run_dispatches_through_the_example_plugin(example_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_tc("run", "--task", "parity_tagging", "--backend", "single-thread", "--model-dir", str(tmp_path),
                  "--set", "runconfig.max_steps=60", "--set", "optimizer.learning_rate=0.05",
                  "--set", "runconfig.selection_split=null", "--json", env=example_env, check=True)
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] > 90  # parity is learnable; random guessing gives ~50
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert losses[-1] < losses[0]
    assert (tmp_path / "checkpoint_60.pt").exists()


@pytest.mark.cli
def test_register_commands_hook(example_env: dict[str, str]) -> None:
    proc = run_tc("parity-demo", "--length", "4", env=example_env, check=True)
    words = proc.stdout.split()
    assert len(words) >= 2 and all(w.endswith(("/odd", "/even")) for w in words)
    assert "parity-demo" in run_tc("--help", env=example_env, check=True).stdout


@pytest.mark.cli
def test_broken_plugins_are_isolated_and_reported(broken_env: dict[str, str]) -> None:
    proc = run_tc("backends", "list", "--json", env=broken_env)
    assert proc.returncode == 0
    listing = json.loads(proc.stdout)
    cpu = next(b for b in listing["backends"] if b["name"] == "cpu")
    assert cpu["plugin"] == "tc.backends.cpu"  # the thief did not replace it
    failures = {f["name"]: f for f in listing["failures"]}
    assert failures["broken_import"]["stage"] == "import"
    assert "a_module_that_does_not_exist" in failures["broken_import"]["error"]
    assert failures["broken_hook"]["stage"] == "register_backends"
    assert "broken on purpose" in failures["broken_hook"]["error"]
    assert "registered twice" in failures["name_thief"]["error"]
    assert "tc.backends.cpu" in failures["name_thief"]["error"]
    human = run_tc("plugins", "list", env=broken_env)
    assert human.returncode == 0 and "broken_import" in human.stdout and "failed" in human.stdout
    table = run_tc("backends", "list", env=broken_env)
    assert table.returncode == 0 and "warning: plugin broken_hook failed" in " ".join(table.stderr.split())


@pytest.mark.cli
def test_tc_load_plugins_selects(broken_env: dict[str, str]) -> None:
    env = {**broken_env, "TC_LOAD_PLUGINS": "broken_hook"}
    listing = json.loads(run_tc("plugins", "list", "--json", env=env, check=True).stdout)
    failures = {f["name"] for f in listing["failures"]}
    assert failures == {"broken_hook"}
    env["TC_LOAD_PLUGINS"] = ""
    assert json.loads(run_tc("plugins", "list", "--json", env=env, check=True).stdout)["failures"] == []


@pytest.mark.cli
def test_unknown_names_list_valid_choices() -> None:
    proc = run_tc("run", "--task", "nope", "--backend", "cpu")
    assert proc.returncode == 2
    assert "unknown task 'nope' (valid: cdr_relations, token_cls)" in proc.stderr
    proc = run_tc("run", "--backend", "tpu")
    assert proc.returncode == 2 and "unknown backend 'tpu'" in proc.stderr and "cpu" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.cli
def test_misspelled_hook_is_reported_not_ignored(broken_env: dict[str, str]) -> None:
    """``register_backend`` (no s) is no tc hook: pluggy's check_pending finds it and the plugin fails."""
    listing = json.loads(run_tc("plugins", "list", "--json", env=broken_env, check=True).stdout)
    failure = next(f for f in listing["failures"] if f["name"] == "misspelled_hook")
    assert failure["stage"] == "register"
    assert "unknown hook 'register_backend' (did you mean 'register_backends'?)" in failure["error"]
    assert "misspelled_hook" not in {p["name"] for p in listing["plugins"]}
    backends = json.loads(run_tc("backends", "list", "--json", env=broken_env, check=True).stdout)["backends"]
    assert "unreachable" not in {b["name"] for b in backends}
    human = run_tc("plugins", "list", env=broken_env, check=True).stdout
    assert "misspelled_hook" in human and "unknown hook 'register_backend'" in " ".join(human.split())


@pytest.mark.cli
def test_builtins_come_from_entry_points_and_load_nothing_heavy() -> None:
    """tc's own plugins are its entry points (named by module), loaded without torch, deepspeed or
    cstorch: ``tc --help`` stays fast."""
    ours = {ep.value for ep in entry_points(group="tc") if ep.dist is not None and ep.dist.name == "tc"}
    plugins = json.loads(run_tc("plugins", "list", "--json", check=True).stdout)["plugins"]
    assert {p["name"] for p in plugins if p["builtin"]} == ours
    assert {"tc.backends.deepspeed", "tc.backends.cerebras", "tc.tasks.token_cls.plugin"} <= ours
    probe = ("import sys; from tc.plugins.manager import load_plugins; p = load_plugins(); "
             "assert not p.failures, p.failures; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'deepspeed', 'cerebras'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert run_tc("--help", check=True).stdout.startswith("Usage: tc")


@pytest.mark.cli
def test_modes_come_from_the_backend(broken_env: dict[str, str], tmp_path: Path) -> None:
    """A plugin backend's own --mode runs; a built-in backend refuses it, and refuses cerebras's modes."""
    tiny = ["--config", str(ROOT / "configs" / "tiny_token_cls.yaml")]
    ran = run_tc("run", "--backend", "counting", "--mode", "count_only", *tiny, "--model-dir", str(tmp_path / "c"),
                 env=broken_env, check=True)
    assert re.search(r"^count_only: \d+ training rows$", ran.stderr, re.M), ran.stderr  # run_mode ran, nothing else
    assert not list((tmp_path / "c").glob("checkpoint_*"))
    for backend, mode in (("cpu", "count_only"), ("cpu", "compile_only")):
        proc = run_tc("run", "--backend", backend, "--mode", mode, *tiny, "--model-dir", str(tmp_path / mode),
                      env=broken_env)
        assert proc.returncode == 2, proc.stderr
        assert (f"--mode {mode}: not supported by the cpu backend (supported: train, eval, train_and_eval)"
                in " ".join(proc.stderr.split()))
        assert not (tmp_path / mode).exists()


@pytest.mark.cli
def test_a_plugin_model_is_what_tc_run_trains(model_plugin_env: dict[str, str], tmp_path: Path) -> None:
    """``register_models`` is real: ``--set model.name=embedding_tagger`` (a model of a pip-installed plugin)
    makes the token_cls task build that plugin's module; the shared loop trains it, and ``tc predict``
    rebuilds it from the model directory."""
    config = yaml.safe_load(TINY.read_text(encoding="utf-8"))
    del config["model"]  # BERT's keys (preset, pretrained) are no keys of the plugin model's section
    config["train_input"]["data_dir"] = str(DATA)
    run_yaml = write(tmp_path / "run.yaml", yaml.safe_dump(config))
    model_dir = tmp_path / "m"
    proc = run_tc("run", "--config", str(run_yaml), "--model-dir", str(model_dir),
                  "--set", "model.name=embedding_tagger", "--set", "runconfig.max_steps=2",
                  "--set", "runconfig.selection_split=null", "--set", "eval_input.max_sentences=8", "--json",
                  *ONE_THREAD, env=model_plugin_env, check=True)
    assert "f1" in json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(weights(model_dir / "checkpoint_2.pt")) == ["embed.weight", "head.bias", "head.weight"]
    info = json.loads((model_dir / "tc_task.json").read_text())
    assert (info["model"], info["model_config"]["hidden_size"], info["model_config"]["num_classes"]) == (
        "embedding_tagger", 16, 3)
    docs = write(tmp_path / "docs.txt", "Aspirin reduces fever.\nNaloxone reverses clonidine.\n")
    tagged = run_tc("predict", "--model-dir", str(model_dir), "-i", str(docs), "-q", *ONE_THREAD,
                    env=model_plugin_env, check=True)
    assert len(tagged.stdout.splitlines()) == 2
    refused = run_tc("run", "--config", str(run_yaml), "--model-dir", str(tmp_path / "n"),
                     "--set", "model.name=embedding_tagger")
    assert refused.returncode == 2
    assert "unknown model 'embedding_tagger' (valid: bert, bert_relations)" in refused.stderr


@pytest.mark.cli
def test_a_plugin_command_never_replaces_one_tc_has(clash_env: dict[str, str]) -> None:
    """click's ``add_command`` silently replaces a command of the same name: a plugin adding ``run`` (tc's
    own) or ``prepare token_cls`` (a built-in plugin's) is refused and reported, one line naming the plugin
    and the command, and tc's commands stay; the plugin's command under a free name still works."""
    run_help = run_tc("run", "--help", env=clash_env, check=True)
    assert run_help.stdout.startswith("Usage: tc run [OPTIONS]")
    assert "Train and/or evaluate TASK on BACKEND" in run_help.stdout and "hijacked" not in run_help.stdout
    prepare_help = run_tc("prepare", "token_cls", "--help", env=clash_env, check=True).stdout
    assert prepare_help.startswith("Usage: tc prepare token_cls") and "hijacked" not in prepare_help
    assert run_tc("clash-hello", env=clash_env, check=True).stdout == "hello from tc-clash-plugin\n"
    listed = run_tc("plugins", "list", env=clash_env, check=True)
    warnings = [" ".join(line.split()) for line in listed.stderr.splitlines() if line.startswith("warning:")]
    assert sorted(warnings) == [
        "warning: plugin clash_prepare failed (register_commands): command 'prepare token_cls' is registered "
        "twice: by tc.tasks.token_cls.plugin and by clash_prepare; tc.tasks.token_cls.plugin's stays",
        "warning: plugin clash_run failed (register_commands): command 'run' is registered twice: by tc and "
        "by clash_run; tc's stays",
    ], listed.stderr
    assert "Traceback" not in listed.stderr and "clash_run" in listed.stdout  # loaded; only its run was refused
    as_json = json.loads(run_tc("plugins", "list", "--json", env=clash_env, check=True).stdout)
    assert sorted((f["name"], f["stage"]) for f in as_json["failures"]) == [
        ("clash_prepare", "register_commands"), ("clash_run", "register_commands")]


@pytest.mark.cli
def test_a_plugin_task_gets_tc_predict_and_tc_serve(example_env: dict[str, str], tmp_path: Path) -> None:
    """The example task writes no command: its ``load`` returns a predictor with ``predict_records``, and
    tc's task-generic ``tc predict`` (JSONL) and ``tc serve`` (a real process, a real client) use it."""
    import httpx

    model = tmp_path / "parity"
    run_tc("run", "--task", "parity_tagging", "--backend", "single-thread", "--model-dir", str(model),
           "--set", "runconfig.max_steps=60", "--set", "optimizer.learning_rate=0.05",
           "--set", "runconfig.selection_split=null", env=example_env, check=True)
    tokens = [[3, 8, 5, 12], [7], [2, 2, 9]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "tokens": t}) + "\n" for i, t in enumerate(tokens)))
    run_tc("predict", "--model-dir", str(model), "-i", str(source), "-o", str(tmp_path / "out.jsonl"),
           env=example_env, check=True)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [0, 1, 2]
    assert [r["parities"] for r in out] == [["odd" if t % 2 else "even" for t in seq] for seq in tokens]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": [1]}\n[1, 2]\n')
    refused = run_tc("predict", "--model-dir", str(model), "-i", str(bad), "-o", str(tmp_path / "x.jsonl"),
                     env=example_env)
    assert refused.returncode == 2 and error_line(refused) == f"{bad}:2: expected a JSON object"
    assert not (tmp_path / "x.jsonl").exists()

    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([TC, "serve", "--model-dir", str(model), "--port", "0"], stdout=subprocess.DEVNULL,
                                stderr=sink, env={**os.environ, **example_env})
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"at (http://127\.0\.0\.1:\d+)", log.read_text())
            url = found.group(1) if found else None
            time.sleep(0.1)
        assert url is not None, log.read_text()
        answer = httpx.post(f"{url}/predict", json={"records": [{"tokens": t} for t in tokens]}, timeout=30)
        assert answer.status_code == 200 and [r["parities"] for r in answer.json()["results"]] == [
            r["parities"] for r in out]
        wrong = httpx.post(f"{url}/predict", json={"records": [{"tokens": [0]}]}, timeout=30)
        assert wrong.status_code == 422 and wrong.json()["detail"].startswith("records[0].tokens:")
        assert httpx.get(f"{url}/info").json()["task"] == "parity_tagging"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
