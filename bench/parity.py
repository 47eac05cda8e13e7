"""Is tc doing the same computation as the peer? Three checks that isolate where two F1s can part.

    python bench/parity.py data                 # tc's train rows vs run_ner's encoding (ids and labels)
    python bench/parity.py step [--steps 30]    # same batches, dropout off: tc's step vs HF model + AdamW
    python bench/parity.py eval MODEL_DIR       # the peer's test scoring applied to a trained tc model

`data` and `eval` need a few seconds; `step` about a minute. When all three agree, a remaining F1 gap
between `bench_cpu.py --quality` sides comes from what they do not hold equal: random streams (head
init, batch order, dropout masks) and the batch plan (tc windows long sentences, run_ner truncates).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import DATA_DIR, Recipe, minilm_dir
from peer_hf import encode, read_tsv, seqeval_f1, word_predictions
from profile_step import tc_task


def hf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def check_data() -> None:
    """Every tc train row (ids and labels over real tokens) should be a row run_ner produces."""
    task, _ = tc_task([])
    data = task.dataset("train")
    train = read_tsv(DATA_DIR / "train.tsv")
    label2id = {x: i for i, x in enumerate(sorted({x for _, lab in train for x in lab} | {"O"}))}
    theirs: dict[tuple[int, ...], set[tuple[int, ...]]] = {}
    for row in encode(hf_tokenizer(), train, label2id, 128):
        theirs.setdefault(tuple(row["input_ids"]), set()).add(tuple(row["labels"]))
    batch = data.collate(np.arange(len(data)))
    unmatched = relabelled = 0
    for i in range(len(data)):
        real = batch["attention_mask"][i].numpy().astype(bool)
        ids = tuple(batch["input_ids"][i].numpy()[real].tolist())
        labels = tuple(batch["labels"][i].numpy()[real].tolist())
        if ids not in theirs:
            unmatched += 1
        elif labels not in theirs[ids]:
            relabelled += 1
    print(f"data: tc {len(data)} rows, run_ner {len(train)}; tc rows with no identical run_ner row: {unmatched} "
          "(expected: windows of over-long sentences, which run_ner truncates, and rows with words its "
          f"tokenizer drops); same ids but other labels: {relabelled}")


def check_step(steps: int) -> None:
    """tc's EagerRunner against a hand-written HF Trainer step on identical batches and weights."""
    from transformers import AutoModelForTokenClassification, get_linear_schedule_with_warmup

    from tc.backends.eager import EagerRunner
    from tc.core.sampling import BatchPlan
    from tc.core.trainer import optim_spec
    from tc.tasks.token_cls.hf_bert import to_hf_state_dict

    recipe = Recipe()  # run_ner's recipe, as bench_cpu.py --quality runs it
    off = ["model.dropout_rate=0", "model.attention_dropout_rate=0", "model.encoder_output_dropout_rate=0"]
    task, cfg = tc_task([*off, f"optimizer.learning_rate={recipe.learning_rate}",
                         f"optimizer.weight_decay={recipe.weight_decay}",
                         f"optimizer.warmup_ratio={recipe.warmup_ratio}",
                         f"optimizer.max_gradient_norm={recipe.max_grad_norm}"])
    data = task.dataset("train")
    plan = BatchPlan(data, cfg.train_input.batch_size, train=True, seed=0)
    total = math.ceil(plan.steps_per_epoch() * recipe.epochs)
    spec = optim_spec(cfg, total)  # tc's own schedule, warm-up steps rounded as tc rounds them
    torch.manual_seed(recipe.seed)  # the random head, as tc seeds it before building the model
    ours = task.build_model()
    theirs = AutoModelForTokenClassification.from_pretrained(
        str(minilm_dir()), num_labels=ours.config.num_classes, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    theirs.load_state_dict(to_hf_state_dict(ours.state_dict()))  # same random head on both sides
    runner = EagerRunner(ours, spec, torch.device("cpu"))
    decay = [n for n, _ in theirs.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    groups = [{"params": [p for n, p in theirs.named_parameters() if n in decay], "weight_decay": recipe.weight_decay},
              {"params": [p for n, p in theirs.named_parameters() if n not in decay], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate, eps=1e-8)
    # the Trainer's warm-up from a ratio: ceil(ratio * total)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(recipe.warmup_ratio * total), total)
    theirs.train()
    print("step  tc loss   hf loss   tc lr     hf lr")
    for step, rows in enumerate(plan.epoch_batches(0)[:steps]):
        batch = {**data.collate(rows), "loss_share": 1.0, "step_weight": 1.0}
        hf_lr = schedule.get_last_lr()[0]
        result = runner.train_step([batch])
        loss = theirs(**{k: batch[k].long() for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), recipe.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        print(f"{step:4d}  {result.loss:.6f}  {loss.item():.6f}  {spec.learning_rate * spec.lr_factor(step):.3e} "
              f"{hf_lr:.3e}")


def check_eval(model_dir: Path) -> None:
    """Export a trained tc model to HF format, predict test the way the peer does, score as the peer does."""
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "hf"
        tc_bin = Path(sys.executable).with_name("tc")
        subprocess.run([str(tc_bin), "export", "--model-dir", str(model_dir), str(exported)], check=True)
        model = AutoModelForTokenClassification.from_pretrained(str(exported)).eval()
    tokenizer = hf_tokenizer()
    test = read_tsv(DATA_DIR / "test.tsv")
    id2label = {i: model.config.id2label[i] for i in range(model.config.num_labels)}
    rows = encode(tokenizer, test, {x: i for i, x in id2label.items()}, 128)
    collate = DataCollatorForTokenClassification(tokenizer)
    predictions = np.zeros((len(rows), 128), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(rows), 64):
            batch = collate([rows[j] for j in range(start, min(start + 64, len(rows)))])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            predictions[start : start + len(logits), : logits.shape[1]] = logits.argmax(-1).numpy()
    f1 = seqeval_f1([lab for _, lab in test], word_predictions(tokenizer, test, predictions, id2label, 128))
    print(f"eval: the peer's scoring of {model_dir}: test F1 {f1:.2f} (compare tc's eval_results.json)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="check", required=True)
    sub.add_parser("data")
    step = sub.add_parser("step")
    step.add_argument("--steps", type=int, default=30)
    ev = sub.add_parser("eval")
    ev.add_argument("model_dir", type=Path)
    args = p.parse_args()
    if args.check == "data":
        check_data()
    elif args.check == "step":
        check_step(args.steps)
    else:
        check_eval(args.model_dir)


if __name__ == "__main__":
    main()
