"""``tc predict`` and ``tc pipeline`` for relation model directories.

``tc predict --model-dir REL -i docs.pubtator -o out.pubtator`` reads documents with their mentions
(PubTator, BioC XML/JSON, JSONL), predicts the relations between their concepts and writes the documents
back in their format (or ``--output-format``): PubTator with ``PMID<TAB>CID<TAB>chemical<TAB>disease``
lines in place of the relation lines of that type (every other line byte for byte), BioC with
``<relation>`` elements, JSONL with a ``relations`` list. ``tc pipeline`` first tags the mentions with an
NER model dir (mentions without concept ids are grouped by their normalised text), then does the same.
Outputs follow tc's rule: never an input or a model dir's file, an existing file only with --overwrite,
written atomically.
"""

from __future__ import annotations

from pathlib import Path

import click


def _check_paths(input_path: Path, output_path: Path, model_dirs: dict[str, Path], overwrite: bool) -> None:
    from tc.core.fs import check_output, check_replace

    check_output(output_path, {"--input": input_path}, model_dirs)
    check_replace(output_path, overwrite)


def _write(output_path: Path, docs: list, output_format: str | None) -> None:
    from tc.tasks.token_cls.documents import write_documents

    write_documents(output_path, docs, output_format)
    relations = sum(len(d.extra.get("relations", [])) for d in docs)
    click.echo(f"{len(docs)} documents, {relations} relations -> {output_path}", err=True)


_model_dir = click.option("--model-dir", "--model_dir", "model_dir", required=True,
                          type=click.Path(path_type=Path), help="A trained cdr_relations model directory.")
_input = click.option("--input", "-i", "input_path", required=True, type=click.Path(path_type=Path),
                      help="Documents: .pubtator, .xml / .bioc.json (BioC), .jsonl.")
_output = click.option("--output", "-o", "output_path", required=True, type=click.Path(path_type=Path),
                       help="Where to write; its suffix selects the format unless --output-format says.")
_options = [
    click.option("--format", "fmt", help="Input format (pubtator, bioc_xml, bioc_json, jsonl; default: the suffix)."),
    click.option("--output-format", metavar="FORMAT", help="Write this format whatever the --output suffix."),
    click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                 help="Predict a pair at this probability (default: the model dir's, 0.5 unless chosen on devel)."),
    click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Documents per batch."),
    click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name."),
    click.option("--checkpoint", type=click.Path(path_type=Path), help="This checkpoint instead of best_model.pt."),
    click.option("--overwrite", is_flag=True, help="Replace an existing --output."),
]


def _with_options(command):  # type: ignore[no-untyped-def]
    for option in reversed(_options):
        command = option(command)
    return command


@click.command("predict")
@_model_dir
@_input
@_output
@_with_options
def predict(model_dir: Path, input_path: Path, output_path: Path, fmt: str | None, output_format: str | None,
            threshold: float | None, batch_size: int, backend_name: str, checkpoint: Path | None,
            overwrite: bool) -> None:
    """Predict relations between the annotated concepts of documents; documents come back in their format
    with the relation lines (PubTator), relations (BioC) or a "relations" list (JSONL)."""
    from tc.tasks.cdr_relations.predictor import RelationPredictor
    from tc.tasks.token_cls.documents import read_documents

    _check_paths(input_path, output_path, {"--model-dir": model_dir}, overwrite)
    docs = read_documents(input_path, fmt)
    with RelationPredictor.from_model_dir(model_dir, backend_name, checkpoint, batch_size, threshold) as predictor:
        _write(output_path, predictor.predict_documents(docs), output_format)


@click.command("pipeline")
@click.option("--ner-model-dir", required=True, type=click.Path(path_type=Path),
              help="A trained token_cls model directory that tags the head and tail types (Chemical, Disease).")
@click.option("--relation-model-dir", required=True, type=click.Path(path_type=Path),
              help="A trained cdr_relations model directory.")
@_input
@_output
@_with_options
def pipeline(ner_model_dir: Path, relation_model_dir: Path, input_path: Path, output_path: Path, fmt: str | None,
             output_format: str | None, threshold: float | None, batch_size: int, backend_name: str,
             checkpoint: Path | None, overwrite: bool) -> None:
    """NER then relations on raw documents (PubTator, BioC, JSONL; mentions already there are replaced):
    the mentions the NER model finds, grouped into concepts by their normalised text, and the relations
    between them."""
    from tc.tasks.cdr_relations.pipeline import run_pipeline

    _check_paths(input_path, output_path, {"--ner-model-dir": ner_model_dir,
                                           "--relation-model-dir": relation_model_dir}, overwrite)
    docs = run_pipeline(ner_model_dir, relation_model_dir, input_path, fmt, backend_name, batch_size, threshold,
                        checkpoint)
    _write(output_path, docs, output_format)


@click.command("calibrate")
@_model_dir
@click.option("--split", "split_path", type=click.Path(path_type=Path),
              help="Documents with gold relations to choose on (default: the devel split of the data it trained on).")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Registered backend name.")
def calibrate(model_dir: Path, split_path: Path | None, backend_name: str) -> None:
    """Choose the relation threshold on devel (the one that scores the best CID F1 there) and save it in the
    model dir's tc_task.json, where tc predict, tc serve and tc.load read it."""
    from tc.tasks.cdr_relations.calibration import choose_threshold

    chosen = choose_threshold(model_dir, split_path, backend_name)
    click.echo(f"threshold {chosen['threshold']} (CID F1 {chosen['f1']} on {chosen['split']}, "
               f"{chosen['at_previous']} at {chosen['previous']}) -> {model_dir / 'tc_task.json'}", err=True)
