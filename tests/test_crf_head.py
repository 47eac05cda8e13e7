"""``model.head: crf`` end to end: training, evaluation, ``tc predict`` (torch and ONNX), export, checkpoints.

One tiny CRF model is trained per module by the real CLI (the tiny config, 200 steps on one thread: enough
for its emissions to propose entities). Its Viterbi labels never hold a transition the label scheme forbids,
while the argmax of the very same logits does; the ONNX session decodes exactly as the torch model; the
Hugging Face export still loads in transformers with the CRF beside it; a softmax checkpoint loads into a CRF
model only non-strictly, which reports the fresh CRF tensors; refused combinations give one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import DATA, ONE_THREAD, SMALL, TINY, Case, check_case, read_jsonl, refused, run_tc, tiny_run, weights

from tc.tasks.token_cls.calibration import word_logits
from tc.tasks.token_cls.crf import LinearChainCRF, allowed_transitions
from tc.tasks.token_cls.crf_head import CRF_FILE, crf_loss, read_crf_file
from tc.tasks.token_cls.export import export
from tc.tasks.token_cls.model_dir import load_trained_model
from tc.tasks.token_cls.onnx_export import FP32_FILE, INT8_FILE, OnnxRunner
from tc.tasks.token_cls.predict import Predictor
from tc.tasks.token_cls.readers import load_split

CRF = ("--set", "model.head=crf")
DOCUMENTED = {"crf-seed-scheme", "crf-calibrate"}
"""docs/errors.md rows tested here (the CRF head's refusals)."""


@pytest.fixture(scope="module")
def crf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crf") / "model"
    run_tc("run", "--task", "token_cls", "--backend", "cpu", "--config", str(TINY), "--model-dir", str(out),
           *ONE_THREAD, *CRF, "--set", "runconfig.max_steps=200", "--set", "runconfig.eval_frequency=100", "-q",
           check=True)
    return out


@pytest.fixture(scope="module")
def test_sentences() -> list:
    return [s for s in load_split(DATA, "test")[:300] if s.words]


def forbidden(labels: list[str]) -> int:
    """IOB2 transitions no reading allows: ``I-X`` first, or after anything but ``B-X``/``I-X``."""
    bad, prev = 0, "O"
    for label in labels:
        bad += label.startswith("I-") and prev[2:] != label[2:]
        prev = label
    return bad


def test_trains_and_evaluates(crf_model: Path) -> None:
    losses = [r["loss"] for r in read_jsonl(crf_model / "metrics.jsonl") if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] / 5
    results = json.loads((crf_model / "eval_results.json").read_text())
    assert results["split"] == "test" and 0 <= results["f1"] <= 100
    assert json.loads((crf_model / "tc_task.json").read_text())["model_config"]["head"] == "crf"
    state = weights(crf_model / "best_model.pt")
    label2id = json.loads((crf_model / "label2id.json").read_text())
    start, trans, end = allowed_transitions(sorted(label2id, key=label2id.get))  # the checkpoint carries them
    assert all(torch.equal(state[f"crf.{k}_mask"], m) for k, m in (("start", start), ("transition", trans),
                                                                   ("end", end)))
    assert not trans.all() and state["crf.transitions"].abs().sum() > 0  # constrained, and learned


def test_viterbi_never_decodes_a_forbidden_transition(crf_model: Path, test_sentences: list) -> None:
    """The predictor's labels (``run_rows``, as evaluation reads them) against the argmax of the same logits."""
    with Predictor.from_model_dir(crf_model, overrides=["runconfig.num_threads=1"]) as predictor:
        viterbi = predictor.predict_tokens([list(s.words) for s in test_sentences])
        logits, counts = word_logits(predictor, test_sentences)
        names = predictor.labels
    argmax, start = [], 0
    for count in counts:
        argmax.append([names[i] for i in logits[start : start + count].argmax(-1)])
        start += count
    assert sum(forbidden(labels) for labels in viterbi) == 0
    assert sum(forbidden(labels) for labels in argmax) > 0  # the emissions alone do ask for them
    assert any(label != "O" for labels in viterbi for label in labels)


@pytest.mark.cli
def test_predict_torch_equals_onnx(crf_model: Path, test_sentences: list, tmp_path: Path) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(" ".join(s.words) for s in test_sentences[:120]) + "\n", encoding="utf-8")
    outputs = {}
    for precision in ("fp32", "onnx"):
        out = tmp_path / f"{precision}.jsonl"
        run_tc("predict", "--model-dir", str(crf_model), "-i", str(source), "-o", str(out), "-q",
               "--precision", precision, *ONE_THREAD, check=True)
        outputs[precision] = read_jsonl(out)
    spans = {p: [[(e["start"], e["end"], e["type"]) for e in r["entities"]] for r in rows]
             for p, rows in outputs.items()}
    assert spans["onnx"] == spans["fp32"] and any(spans["fp32"])
    for got, want in zip(outputs["onnx"], outputs["fp32"], strict=True):
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]],
                                                                        abs=1e-3)


def test_onnx_export_decodes_with_the_crf_beside_it(crf_model: Path, test_sentences: list, tmp_path: Path) -> None:
    out = export(crf_model, tmp_path / "onnx_export", fmt="onnx")
    crf = read_crf_file(out / CRF_FILE)
    state = weights(crf_model / "best_model.pt")
    assert all(torch.equal(crf.state_dict()[k], state[f"crf.{k}"]) for k in crf.state_dict())
    words = [list(s.words) for s in test_sentences]
    with Predictor.from_model_dir(crf_model, overrides=["runconfig.num_threads=1"]) as predictor:
        want = predictor.predict_tokens(words)
        predictor.runner = OnnxRunner(out / FP32_FILE, threads=1, crf=crf)  # type: ignore[assignment]
        assert predictor.predict_tokens(words) == want
        predictor.runner = OnnxRunner(out / INT8_FILE, threads=1, crf=crf)  # type: ignore[assignment]
        assert sum(forbidden(labels) for labels in predictor.predict_tokens(words)) == 0  # Viterbi on int8 too


@pytest.fixture(scope="module")
def hf_export(crf_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "hf_model"
    run_tc("export", "--model-dir", str(crf_model), "--format", "hf", str(out), check=True)
    return out


@pytest.mark.cli
def test_hf_export_loads_in_transformers(crf_model: Path, hf_export: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model, info = transformers.AutoModelForTokenClassification.from_pretrained(hf_export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tc_model = load_trained_model(crf_model).build_model()
    ids = torch.tensor([[2, 1000, 1001, 1002, 3]])
    with torch.no_grad():
        theirs = model(input_ids=ids).logits
        ours, _ = tc_model({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert torch.allclose(theirs, ours, atol=1e-4)  # the emissions
    assert read_crf_file(hf_export / CRF_FILE).transitions.shape == (3, 3)
    assert "CRF head" in (hf_export / "README.md").read_text()
    assert json.loads((hf_export / "tc_export.json").read_text())["head"]["file"] == CRF_FILE
    run_tc("export", "--model-dir", str(crf_model), "--format", "hf", str(hf_export), "--overwrite", check=True)


@pytest.mark.cli
def test_pretrained_start_gets_a_fresh_crf(hf_export: Path, tmp_path: Path) -> None:
    """``model.pretrained`` (here the export, a Hugging Face folder) loads; the CRF starts afresh."""
    out = tmp_path / "model"
    run_tc("run", "--config", str(TINY), "--model-dir", str(out), *SMALL, *CRF, "--mode", "train",
           "--set", f"model.pretrained={hf_export}", *ONE_THREAD, check=True)
    assert weights(out / "checkpoint_2.pt")["crf.transitions"].abs().max() < 0.01  # 2 steps from zero


@pytest.mark.cli
def test_softmax_checkpoint_loads_into_a_crf_model_non_strictly(trained: Path, tmp_path: Path) -> None:
    """(Strict loading refuses it: ``missing keys: crf.start, ...``, the generic rule.)"""
    base = ["run", "--config", str(TINY), *SMALL, *CRF, "--mode", "train", *ONE_THREAD,
            "--checkpoint-path", str(trained / "checkpoint_2.pt"), "--load-checkpoint-states", "model"]
    loose = run_tc(*base, "--model-dir", str(tmp_path / "loose"), "--disable-strict-checkpoint-loading", check=True)
    assert "crf.transitions" in loose.stderr and "freshly initialised" in loose.stderr
    after = weights(tmp_path / "loose" / "checkpoint_2.pt")
    assert after["crf.transition_mask"].sum() < after["crf.transition_mask"].numel()  # constrained anyway


def test_class_mask_takes_unannotated_classes_out_of_the_chain() -> None:
    """Several corpora: a row whose corpus does not annotate D has the loss of a CRF over B-A, I-A, O alone
    (the sub-matrices of the full CRF), and its D emissions get no gradient; an unmasked row is unchanged."""
    labels = ("B-A", "B-D", "I-A", "I-D", "O")
    crf = LinearChainCRF.from_labels(labels)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (crf.start, crf.transitions, crf.end):
            p.copy_(torch.randn(p.shape, generator=g))
    emissions = torch.randn(2, 7, 5, generator=g).requires_grad_()
    gold = torch.tensor([[-100, 4, 0, 2, 4, -100, -100], [-100, 1, 3, 4, 0, 2, -100]])
    class_mask = torch.tensor([[True, False, True, False, True], [True] * 5])
    total = crf_loss(crf, emissions, gold, class_mask=class_mask) * 9  # per word: 9 words in the batch
    kept = [0, 2, 4]
    small = LinearChainCRF(3)
    start, trans, end = crf.scores()
    with torch.no_grad():
        small.start.copy_(start[kept]), small.transitions.copy_(trans[kept][:, kept]), small.end.copy_(end[kept])
    words = gold.ne(-100)
    row0 = small.nll(emissions[:1, :, kept], torch.tensor([[0, 2, 0, 1, 2, 0, 0]]), words[:1])
    row1 = crf.nll(emissions[1:], gold[1:], words[1:])
    assert total.item() == pytest.approx((row0 + row1).item(), rel=1e-5)
    total.backward()
    assert emissions.grad is not None and (emissions.grad[0][:, [1, 3]] == 0).all()
    assert emissions.grad[1][words[1]][:, [1, 3]].abs().sum() > 0


CASES = {
    "crf-seed-scheme": Case(
        tiny_run([*CRF, "--set", "train_input.label_scheme=seed"]),
        lambda e: "model.head: crf needs train_input.label_scheme typed, not 'seed' (the seed scheme labels "
                  "subword pieces and special tokens, which a CRF over words does not model)"),
}


@pytest.mark.cli
@pytest.mark.parametrize("name", list(CASES))
def test_refused_combinations(name: str, tmp_path: Path) -> None:
    check_case(CASES[name], tmp_path, lambda: tmp_path)


@pytest.mark.cli
def test_calibrate_refuses_a_crf_model(crf_model: Path) -> None:
    proc = run_tc("calibrate", "--model-dir", str(crf_model), *ONE_THREAD)
    assert refused(proc) == (f"{crf_model}: tc calibrate scales softmax scores; this model has model.head crf, "
                             "whose Viterbi labels a temperature would change")
    assert not (crf_model / "calibration.json").exists()
