"""``tc calibrate``: fit the entity-score temperature on a labelled split and store it in the model dir.

A module of its own so that registering the command imports only click (``tc --help`` stays fast).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("calibrate")
@click.option("--model-dir", "--model_dir", "model_dir", required=True, type=click.Path(path_type=Path),
              help="A trained tc model directory (calibration.json is written into it).")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Dataset folder holding the split (default: the shipped BC5CDR-chem).")
@click.option("--split", default="devel", show_default=True, help="Labelled split to fit on (never test).")
@click.option("--held-out", "held_out", default="test", show_default=True,
              help="Labelled split to measure ECE on too, not fitted on ('none' to skip; skipped if absent).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Windows per batch.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Backend setting: runconfig.num_threads, runconfig.precision or a cpu.* key, e.g. "
                   "--set runconfig.num_threads=2 (the model's own settings are fixed).")
def calibrate(model_dir: Path, data_dir: Path | None, split: str, held_out: str, batch_size: int,
              overrides: tuple[str, ...]) -> None:
    """Temperature-scale entity scores on SPLIT; prints the ECE of entity scores before and after."""
    from tc.core.errors import ConfigError
    from tc.tasks.token_cls import calibration
    from tc.tasks.token_cls.inference_sets import check_inference_sets
    from tc.tasks.token_cls.onnx_export import load_predictor
    from tc.tasks.token_cls.readers import find_split_file, load_split
    from tc.tasks.token_cls.settings import default_data_dir

    check_inference_sets(overrides, model_dir)
    folder = data_dir if data_dir is not None else default_data_dir()
    if held_out == split:
        raise ConfigError(f"--held-out {held_out}: the split the temperature is fitted on (--split); pick another")
    sentences = load_split(folder, split)
    check = held_out != "none" and find_split_file(folder, held_out) is not None
    with load_predictor(model_dir, "fp32", batch_size=batch_size, overrides=overrides, calibrated=False) as predictor:
        calibration.check_writable(predictor.trained.model_dir)  # a refused write is said before the fitting
        result = calibration.calibrate(predictor, sentences, split)
        if check:
            result.held_out = calibration.measure(predictor, load_split(folder, held_out), result.temperature,
                                                  held_out)
    calibration.save(predictor.trained.model_dir, result)
    click.echo(f"temperature {result.temperature:.4f} from {result.words} {split} words; entity-score ECE "
               f"{100 * result.ece_before:.2f}% -> {100 * result.ece_after:.2f}% over {result.entities} "
               f"predicted entities (written to {predictor.trained.model_dir / calibration.CALIBRATION_FILE})")
    if result.held_out is not None:
        h = result.held_out
        click.echo(f"held-out {held_out}: entity-score ECE {100 * h['entity_ece_before']:.2f}% -> "
                   f"{100 * h['entity_ece_after']:.2f}% over {h['predicted_entities']} predicted entities")


COMMANDS = (calibrate,)
