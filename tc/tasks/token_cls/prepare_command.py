"""``tc prepare token_cls``: the seed's write_csv_ner.py step as a subcommand of ``tc prepare``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


@click.command("token_cls")
@click.option("--data-dir", "--data_dir", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Folder with train.tsv, devel.tsv (or dev.tsv) and test.tsv.")
@click.option("--vocab-file", "--vocab_file", "vocab_file", type=click.Path(path_type=Path),
              help="WordPiece vocab.txt (default: the pretrained MiniLM's).")
@click.option("--output-dir", "--output_dir", "output_dir", required=True, type=click.Path(path_type=Path))
@click.option("--do-lower-case/--no-do-lower-case", "--do_lower_case", default=True, show_default=True)
@click.option("--max-seq-length", "--max_seq_length", "max_seq_length", default=128, show_default=True, type=int)
@click.option("--label-scheme", type=click.Choice(["typed", "seed"]), default="typed", show_default=True,
              help="typed keeps entity types; seed is the Model Zoo's [PAD] B I O X [CLS] [SEP].")
@click.option("--overwrite", is_flag=True,
              help="Replace the files of an earlier prepare in --output-dir; its split CSVs that the new data "
                   "lacks are removed (they would be read as the new data's splits).")
def prepare_token_cls(data_dir: Path, vocab_file: Path | None, output_dir: Path, do_lower_case: bool,
                      max_seq_length: int, label_scheme: str, overwrite: bool) -> None:
    """Write per-split CSVs, label2id.json, meta.json and params.json for token classification."""
    from tc.tasks.token_cls.prepare import prepare
    from tc.tasks.token_cls.settings import DEFAULT_PRETRAINED, pretrained_dir

    vocab = vocab_file or pretrained_dir(DEFAULT_PRETRAINED) / "vocab.txt"
    meta = prepare(data_dir, vocab, output_dir, do_lower_case, max_seq_length, label_scheme, overwrite)
    table = Table(title=f"prepared {output_dir}", title_justify="left")
    for column in ("split", "sentences", "words", "windows", "split sentences"):
        table.add_column(column, justify="right")
    for split, counts in meta["splits"].items():
        table.add_row(split, str(counts["sentences"]), str(counts["words"]), str(counts["windows"]),
                      str(counts["split_sentences"]))
    Console().print(table)
