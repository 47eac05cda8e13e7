"""The peer: Hugging Face transformers' Trainer with the run_ner recipe, on the same data and model.

As examples/pytorch/token-classification/run_ner.py does it: a fast tokenizer on pre-split words
(``is_split_into_words``, truncation at ``seq``), the label on each word's first subword and -100
elsewhere, ``DataCollatorForTokenClassification`` padding each batch to its longest row, a randomly
sampled train set, AdamW with linear decay after warmup. Batch size, learning rate, warmup, weight
decay, clipping, seed and thread count come from the same Recipe as tc's side.

Scoring is seqeval's default mode on whole sentences: words cut off by truncation are predicted "O"
(run_ner silently drops them from gold and prediction alike, which would flatter the peer); tc
covers long sentences with windows instead, so both F1s are over every gold entity.

Usage (normally started by bench_cpu.py): python bench/peer_hf.py '<recipe json>'
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Recipe, StepClock, Stopwatch, emit, gpu_peak_mib, length_stats, minilm_dir, peak_rss_mib

IGNORE = -100


def read_tsv(path: Path) -> list[tuple[list[str], list[str]]]:
    """(words, labels) per sentence of a BLURB-style ``token<TAB>label`` file, blank line between
    (``-DOCSTART-`` lines, which the shipped BC5CDR-chem files have between abstracts, are skipped)."""
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    labels: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.rstrip("\r").split("\t")
        if not line.strip() or parts[0].strip() == "-DOCSTART-":  # CoNLL's document separator
            if words:
                sentences.append((words, labels))
                words, labels = [], []
            continue
        words.append(parts[0])
        labels.append(parts[-1])
    if words:
        sentences.append((words, labels))
    return sentences


def first_subword_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """run_ner's alignment (label_all_tokens=False): the first piece of a word carries its label."""
    out: list[int] = []
    previous = None
    for word in word_ids:
        out.append(IGNORE if word is None or word == previous else word_labels[word])
        previous = word
    return out


def encode(tokenizer: Any, sentences: list[tuple[list[str], list[str]]], label2id: dict[str, int],
           seq: int) -> Any:
    """A datasets.Dataset of input_ids / attention_mask / token_type_ids / labels, as run_ner maps it."""
    import datasets

    raw = datasets.Dataset.from_dict({"tokens": [w for w, _ in sentences],
                                      "ner_tags": [[label2id[x] for x in lab] for _, lab in sentences]})

    def tokenize_and_align(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=seq)
        enc["labels"] = [first_subword_labels(enc.word_ids(i), tags) for i, tags in enumerate(batch["ner_tags"])]
        return enc

    return raw.map(tokenize_and_align, batched=True, remove_columns=raw.column_names)


def word_predictions(tokenizer: Any, sentences: list[tuple[list[str], list[str]]], pred_ids: np.ndarray,
                     id2label: dict[int, str], seq: int) -> list[list[str]]:
    """One label per word: the prediction on its first subword, "O" for words lost to truncation."""
    enc = tokenizer([w for w, _ in sentences], is_split_into_words=True, truncation=True, max_length=seq)
    out: list[list[str]] = []
    for i, (words, _) in enumerate(sentences):
        labels = ["O"] * len(words)
        seen: set[int] = set()
        for position, word in enumerate(enc.word_ids(i)):
            if word is not None and word not in seen:
                seen.add(word)
                labels[word] = id2label[int(pred_ids[i, position])]
        out.append(labels)
    return out


def seqeval_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    from seqeval.metrics import f1_score

    return 100.0 * float(f1_score(gold, pred))


def build_model(recipe: Recipe, labels: list[str]) -> Any:
    """MiniLM from its checkpoint, or BERT-base shapes from random init (no BERT-base weights here)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    id2label = dict(enumerate(labels))
    label2id = {x: i for i, x in id2label.items()}
    if recipe.model == "minilm":
        return AutoModelForTokenClassification.from_pretrained(
            str(minilm_dir()), num_labels=len(labels), id2label=id2label, label2id=label2id)
    from common import BERT_BASE

    config = AutoConfig.from_pretrained(str(minilm_dir()), num_labels=len(labels), id2label=id2label,
                                        label2id=label2id, **BERT_BASE)
    return AutoModelForTokenClassification.from_config(config)


def training_args(recipe: Recipe, output_dir: Path) -> Any:
    from transformers import TrainingArguments

    select = recipe.selects
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.eval_batch_size,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        warmup_steps=recipe.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        max_grad_norm=recipe.max_grad_norm,
        max_steps=recipe.total_steps or -1,
        num_train_epochs=recipe.epochs,
        seed=recipe.seed,
        # --select: pick the best devel epoch, as tc does (tc evaluates devel once per epoch by default)
        eval_strategy="epoch" if select else "no",
        save_strategy="epoch" if select else "no",
        save_total_limit=2 if select else None,
        load_best_model_at_end=select,
        metric_for_best_model="f1" if select else None,
        logging_steps=50,
        report_to="none",
        disable_tqdm=True,
        use_cpu=recipe.device == "cpu",
        bf16=recipe.precision == "bf16",
        fp16=recipe.precision == "fp16",
        tf32=True if recipe.device == "cuda" else None,
        dataloader_num_workers=0,
    )


def main() -> None:
    recipe = Recipe.from_json(sys.argv[1])
    import torch

    if recipe.device == "cpu":
        torch.set_num_threads(recipe.threads)
    import datasets
    import transformers
    from transformers import AutoTokenizer, DataCollatorForTokenClassification, Trainer, TrainerCallback

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()

    began = time.perf_counter()
    data = Path(recipe.data_dir)
    train_sents = read_tsv(data / "train.tsv")
    devel_sents = read_tsv(data / "devel.tsv")[: recipe.test_sentences or None]  # tc's eval_input.max_sentences
    test_sents = read_tsv(data / "test.tsv")[: recipe.test_sentences or None]
    labels = sorted({x for _, lab in train_sents for x in lab} | {"O"})  # tc's label order
    label2id = {x: i for i, x in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    train_ds = encode(tokenizer, train_sents, label2id, recipe.seq)
    devel_ds = encode(tokenizer, devel_sents, label2id, recipe.seq) if recipe.selects else None
    test_ds = encode(tokenizer, test_sents, label2id, recipe.seq)
    clock = StepClock(untimed=recipe.untimed_steps)

    class ClockedTrainer(Trainer):
        def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            clock.batch(inputs["attention_mask"])
            return super().training_step(model, inputs, *args, **kwargs)

    class StepMarks(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.restart()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if recipe.device == "cuda":
                torch.cuda.synchronize()
            clock.mark()

    def devel_f1(prediction: Any) -> dict[str, float]:
        """run_ner's compute_metrics: seqeval over positions whose label is not -100."""
        pred = np.argmax(prediction.predictions, axis=-1)
        gold_rows, pred_rows = [], []
        for p_row, g_row in zip(pred, prediction.label_ids, strict=True):
            keep = g_row != IGNORE
            gold_rows.append([labels[i] for i in g_row[keep]])
            pred_rows.append([labels[i] for i in p_row[keep]])
        return {"f1": seqeval_f1(gold_rows, pred_rows)}

    trainer = ClockedTrainer(
        model=build_model(recipe, labels),
        args=training_args(recipe, Path(recipe.work_dir) / "hf"),
        train_dataset=train_ds,
        eval_dataset=devel_ds,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=devel_f1 if recipe.selects else None,
        callbacks=[StepMarks()],
    )
    print(f"[peer] transformers Trainer, {len(train_ds)} train sentences, device {trainer.args.device}",
          file=sys.stderr, flush=True)
    trainer.train()
    trainer.compute_metrics = None  # time the prediction pass alone, score afterwards
    with Stopwatch() as sw:
        output = trainer.predict(test_ds)
    pred_ids = np.argmax(output.predictions, axis=-1)
    f1 = seqeval_f1([lab for _, lab in test_sents], word_predictions(tokenizer, test_sents, pred_ids,
                                                                      dict(enumerate(labels)), recipe.seq))
    emit({
        "side": "peer",
        "command": "transformers.Trainer (run_ner recipe), see bench/peer_hf.py",
        "device": str(trainer.args.device),
        "classes": len(labels),
        "train": clock.summary(),
        "predict": {"seconds": sw.seconds, "cpu_seconds": sw.cpu_seconds, "sentences": len(test_sents),
                    **length_stats([len(ids) for ids in test_ds["input_ids"]], recipe.eval_batch_size)},
        "setup_seconds": clock.start - began,
        "f1": f1,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu_peak_mib(),
    })


if __name__ == "__main__":
    main()
