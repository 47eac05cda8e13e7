"""``tc predict`` and ``tc export``: use a trained token_cls model directory from the command line.

Added to the ``tc`` group by the task plugin's ``register_commands`` hook. ``tc predict`` is a thin
front for ``tc.tasks.token_cls.corpus``: input is streamed in chunks so a file of any size is tagged in
bounded memory (a single huge line too: see ``longdoc``), a file output is built in ``OUT.partial/`` so
an interrupted run resumes and OUT appears only complete, and ``--num-processes`` shards the work over
ranks. Nothing a user types loses data: an output that is an input, or a file of the model directory,
is refused before any work starts (``tc.core.fs.check_output``), and an existing output is replaced
only with ``--overwrite``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tc.tasks.token_cls.corpus.readers import DOCUMENT_INPUTS, FORMATS

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@click.command("predict")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--input", "-i", "input_path", default="-", show_default=True,
              help="File to tag; - reads stdin.")
@click.option("--format", "fmt", type=click.Choice((*FORMATS, *DOCUMENT_INPUTS)),
              help="Input format (default: from the suffix: .jsonl -> jsonl, .tsv/.conll -> conll, .pubtator, "
                   ".xml / .bioc.json (BioC), a folder or .txt with .ann beside (BRAT), else text). text: one "
                   "document per line; jsonl: objects with a \"text\" field; conll: one token per line, blank "
                   "lines between sentences (output: the same lines plus a label column). Document formats come "
                   "back in the same format with predicted mentions (see README, Documents).")
@click.option("--output", "-o", "output_path", default="-", show_default=True,
              help="Where to write; - is stdout. For document input its suffix selects the format (.pubtator, "
                   ".xml, .bioc.json, .ann or a folder for BRAT, .jsonl).")
@click.option("--output-format", metavar="FORMAT",
              help="Write documents in this format (pubtator, bioc_xml, bioc_json, brat, jsonl) whatever the "
                   "--output suffix: converts, e.g. PubTator in, BioC out.")
@click.option("--min-score", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Leave out entities scoring below this (as tc serve's --min-score; CoNLL: labelled O).")
@click.option("--document-rules", metavar="RULES",
              help="Document-level rules on predicted mentions: none, or any of abbreviation, no_long_form, "
                   "long_form, consistency joined by commas (default: the model dir's, else "
                   "abbreviation,no_long_form).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Windows per batch.")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Use this checkpoint file instead of best_model.pt / the newest checkpoint.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Backend setting: runconfig.num_threads, runconfig.precision (fp32 --precision) or the "
                   "backend's section, e.g. --set runconfig.num_threads=2 (the model's own settings are fixed).")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress lines on stderr (otherwise one every TC_PROGRESS_SECONDS, default 5).")
@click.option("--chunk-size", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Documents (CoNLL: sentences and separator lines) tagged, written and made resumable at once; "
                   "bounds memory. A resumed run must use the same value.")
@click.option("--overwrite", is_flag=True,
              help="Start over: replace an existing --output, and discard an interrupted run's OUT.partial/.")
@click.option("--num-processes", "--num_processes", "num_processes", type=click.IntRange(min=1),
              help="Tag on N processes through torchrun (the deepspeed backend's launcher); same output as one.")
@click.option("--hostfile", type=click.Path(path_type=Path),
              help="Multi-node: a DeepSpeed hostfile ('host slots=N' lines); OUT must be on a shared filesystem.")
@click.option("--precision", type=click.Choice(("fp32", "onnx", "int8")), default="fp32", show_default=True,
              help="fp32: tc's torch model; onnx: onnxruntime fp32; int8: onnxruntime dynamic int8 (CPU).")
def predict(model_dir: Path, input_path: str, fmt: str | None, output_path: str, output_format: str | None,
            min_score: float, batch_size: int, backend_name: str, checkpoint: Path | None,
            overrides: tuple[str, ...], quiet: bool, chunk_size: int, overwrite: bool, num_processes: int | None,
            hostfile: Path | None, precision: str, document_rules: str | None) -> None:
    """Tag raw text, JSONL, CoNLL or documents (PubTator, BioC, BRAT) with a trained model; entities come
    with character offsets, documents come back in their format with predicted mentions.

    A file tagged into a file resumes when rerun after an interruption (see OUT.partial/), and
    --num-processes N splits it over N processes; the output is the same either way (BioC and BRAT are
    read and written whole, on one process)."""
    from tc.tasks.token_cls.corpus.run import PredictJob, predict_command
    from tc.tasks.token_cls.documents.rules import rules_flag
    from tc.tasks.token_cls.inference_sets import check_inference_sets

    check_inference_sets(overrides, model_dir, backend_name, precision)  # before ranks start or a model loads
    job = PredictJob(model_dir=model_dir, input_path=input_path, fmt=fmt, output_path=output_path,
                     batch_size=batch_size, backend=backend_name, checkpoint=checkpoint, overrides=overrides,
                     quiet=quiet, precision=precision, chunk_size=chunk_size, num_processes=num_processes,
                     hostfile=hostfile, overwrite=overwrite, output_format=output_format, min_score=min_score,
                     document_rules=rules_flag(document_rules))
    predict_command(job, sys.argv[1:])


@click.command("export")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory.")
@click.option("--format", "fmt", type=click.Choice(("hf", "onnx")), default="hf", show_default=True,
              help="hf: a Hugging Face BertForTokenClassification directory (AutoModel/AutoTokenizer load it); "
                   "onnx: the same plus model.onnx (fp32) and model.int8.onnx (dynamic int8) for onnxruntime.")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Export this checkpoint file instead of best_model.pt / the newest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a non-empty directory.")
@click.argument("out", type=click.Path(path_type=Path))
def export(model_dir: Path, fmt: str, checkpoint: Path | None, overwrite: bool, out: Path) -> None:
    """Export a trained model directory to OUT (Hugging Face format)."""
    from tc.tasks.token_cls.export import export as run_export

    written = run_export(model_dir, out, fmt, checkpoint=checkpoint, overwrite=overwrite)
    click.echo(f"exported to {written} (load with AutoModelForTokenClassification.from_pretrained)")


COMMANDS = (predict, export)
