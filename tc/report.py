"""``tc report MODEL_DIR``: how a run went, from the files every run leaves in its model directory.

Reads ``metrics.jsonl`` (training loss, learning rate and devel scores as the run logged them) and
``eval_results*.json`` (the last evaluation of each split) and shows them as a PNG (loss and F1 curves
plus a per-type precision/recall/F1 table) and as tables in the terminal. Nothing here knows the task:
each evaluation names the score that selects models under ``selection`` (its key, label and direction,
``tc.core.evaluation.selection_fields``), so any task is covered, and ``per_type``, ``precision`` and
``recall`` are shown where its metrics have them. Files from runs before that key existed scored ``f1``.
The PNG needs matplotlib (``pip install 'tc[report]'``); without it the terminal report still works.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tc.core.errors import DataError, first_line
from tc.core.fs import atomic_writer, check_output, check_replace

METRICS_FILE = "metrics.jsonl"
RESULTS_GLOB = "eval_results*.json"
DEFAULT_PNG = "report.png"
SPLIT_ORDER = ("train", "devel", "dev", "validation", "test")
INSTALL_HINT = "matplotlib is not installed, so no PNG was written: pip install 'tc[report]'"


# ---------------------------------------------------------------------------------------------
# Reading the run
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """The score an evaluation was selected by: its key in the metrics, its label, which way is better."""

    metric: str = "f1"
    label: str = "F1"
    mode: str = "max"


def score_of(entry: dict[str, Any]) -> Score:
    """The ``selection`` an evaluation entry or results file names; ``f1`` for one from before it did."""
    named = entry.get("selection")
    if not isinstance(named, dict) or not isinstance(named.get("metric"), str):
        return Score()
    metric = named["metric"]
    label, mode = named.get("label"), named.get("mode")
    return Score(metric, label if isinstance(label, str) and label else metric, "min" if mode == "min" else "max")


def has_score(entry: dict[str, Any]) -> bool:
    return _is_number(entry.get(score_of(entry).metric))


def value_of(entry: dict[str, Any]) -> float:
    """The selection score of an entry already checked to carry it (``has_score``)."""
    return float(entry[score_of(entry).metric])


@dataclass
class History:
    """The run's curves, one point per step (a resumed run's re-logged steps replace the old ones)."""

    train: list[dict[str, Any]] = field(default_factory=list)
    evals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped_lines: list[int] = field(default_factory=list)

    def best(self, split: str) -> dict[str, Any] | None:
        """The best evaluation of ``split`` by its own score and direction (a tie: the earliest, as training
        kept it)."""
        points = self.evals.get(split) or []
        if not points:
            return None
        sign = -1.0 if score_of(points[-1]).mode == "min" else 1.0
        return max(points, key=lambda p: (sign * value_of(p), -p["step"]))

    @property
    def selection_split(self) -> str | None:
        """The split evaluated during training (devel unless the run chose another)."""
        return next(iter(sorted(self.evals, key=_split_rank)), None)


def read_history(path: Path) -> History:
    """Parse ``metrics.jsonl``; unreadable lines (a run killed mid-write) are skipped and counted."""
    history = History()
    if not path.is_file():
        return history
    train: dict[int, dict[str, Any]] = {}
    evals: dict[str, dict[int, dict[str, Any]]] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                history.skipped_lines.append(number)
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
                continue  # final-evaluation markers and anything without a step are not curve points
            if "split" in entry and has_score(entry):
                evals.setdefault(str(entry["split"]), {})[entry["step"]] = entry
            elif _is_number(entry.get("loss")):
                train[entry["step"]] = entry
    history.train = [train[s] for s in sorted(train)]
    history.evals = {split: [points[s] for s in sorted(points)] for split, points in evals.items()}
    return history


def read_results(model_dir: Path) -> dict[str, dict[str, Any]]:
    """Last evaluation per split from ``eval_results_<split>.json`` (``eval_results.json`` fills a gap)."""
    results: dict[str, dict[str, Any]] = {}
    for path in sorted(model_dir.glob(RESULTS_GLOB), key=lambda p: p.name == "eval_results.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: unreadable evaluation results ({first_line(exc)})") from None
        if not isinstance(data, dict) or not has_score(data):
            metric = score_of(data).metric if isinstance(data, dict) else "f1"
            raise DataError(f"{path}: expected a JSON object with an {metric!r} score")
        split = str(data.get("split") or path.stem.removeprefix("eval_results").lstrip("_") or "eval")
        results.setdefault(split, data)
    return dict(sorted(results.items(), key=lambda item: _split_rank(item[0])))


def _split_rank(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def score_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(name, P, R, score, support) per type, then the micro average; the score is the selection metric
    (``score_of``), scores are percentages, "-" where the task has no such number."""
    metric = score_of(metrics).metric

    def fmt(values: dict[str, Any], key: str) -> str:
        value = values.get(key)
        return f"{value:.2f}" if _is_number(value) else "-"

    rows = []
    for name, values in sorted((metrics.get("per_type") or {}).items()):
        rows.append((str(name), fmt(values, "precision"), fmt(values, "recall"), fmt(values, metric),
                     str(values.get("support", ""))))
    support = metrics.get("entities", metrics.get("support", ""))
    overall = "micro avg" if rows else "overall"  # an average only over the types above it
    rows.append((overall, fmt(metrics, "precision"), fmt(metrics, "recall"), fmt(metrics, metric), str(support)))
    return rows


def results_table(split: str, metrics: dict[str, Any]) -> Table:
    step = f" (step {metrics['step']})" if "step" in metrics else ""
    table = Table(title=f"{split} scores{step}", title_justify="left")
    for column in ("type", "precision", "recall", score_of(metrics).label, "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    rows = score_rows(metrics)
    for row in rows[:-1]:
        table.add_row(*row)
    table.add_row(*(f"[bold]{cell}" for cell in rows[-1]))
    return table


def summary(model_dir: Path, history: History, results: dict[str, dict[str, Any]]) -> str:
    """One line: steps trained, last loss, best selection score and final scores."""
    bits = [str(model_dir)]
    if history.train:
        last = history.train[-1]
        bits.append(f"{last['step']} steps, last loss {last['loss']:.4f}")
    split = history.selection_split
    best = history.best(split) if split else None
    if best is not None:
        bits.append(f"best {split} {score_of(best).label} {value_of(best):.2f} at step {best['step']}")
    bits += [f"{name} {score_of(metrics).label} {value_of(metrics):.2f}"
             for name, metrics in results.items() if name != split]
    return " | ".join(bits)


# ---------------------------------------------------------------------------------------------
# The PNG
# ---------------------------------------------------------------------------------------------


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_png(out: Path, title: str, history: History, results: dict[str, dict[str, Any]]) -> Path:
    """Loss curve, evaluation curves and the per-type table in one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(split, *row) for split, metrics in results.items() for row in score_rows(metrics)]
    table_height = 0.6 + 0.32 * max(len(rows), 1)
    fig = plt.figure(figsize=(13, 4.6 + table_height), dpi=110)
    grid = fig.add_gridspec(2, 2, height_ratios=[4.2, table_height], hspace=0.35, wspace=0.38)
    _plot_loss(fig.add_subplot(grid[0, 0]), history)
    _plot_scores(fig.add_subplot(grid[0, 1]), history, results)
    _plot_table(fig.add_subplot(grid[1, :]), rows, score_of(next(iter(results.values()), {})).label)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    try:
        with atomic_writer(out, "wb") as handle:
            fig.savefig(handle, format=out.suffix.lstrip(".").lower() or "png", bbox_inches="tight",
                        facecolor="white")
    finally:
        plt.close(fig)
    return out


def _plot_loss(ax: Any, history: History) -> None:
    ax.set_title("training loss", loc="left", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if not history.train:
        ax.text(0.5, 0.5, "no training steps in metrics.jsonl", ha="center", va="center", transform=ax.transAxes)
        return
    steps = [p["step"] for p in history.train]
    losses = [p["loss"] for p in history.train]
    ax.plot(steps, losses, color="tab:blue", alpha=0.35 if len(steps) > 20 else 1.0, lw=1, label="loss")
    if len(steps) > 20:
        ax.plot(steps, _ema(losses, 0.9), color="tab:blue", lw=2, label="loss (smoothed)")
    ax.set_ylabel("loss")
    lrs = [p.get("lr") for p in history.train]
    if all(_is_number(v) for v in lrs):
        lr_ax = ax.twinx()
        lr_ax.plot(steps, lrs, color="grey", lw=1, ls="--", label="learning rate")
        lr_ax.set_ylabel("learning rate", color="grey")
        lr_ax.tick_params(axis="y", colors="grey")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize=8)
    else:
        ax.legend(loc="upper right", fontsize=8)


def _ema(values: list[float], decay: float) -> list[float]:
    out, current = [], values[0]
    for value in values:
        current = decay * current + (1 - decay) * value
        out.append(current)
    return out


def _plot_scores(ax: Any, history: History, results: dict[str, dict[str, Any]]) -> None:
    labels = [score_of(points[-1]).label for points in history.evals.values()]
    labels += [score_of(metrics).label for metrics in results.values()]
    ax.set_title(f"evaluation ({' / '.join(dict.fromkeys(labels)) or Score().label}, %)", loc="left", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    colors = iter(("tab:orange", "tab:green", "tab:purple", "tab:brown"))
    for split, points in sorted(history.evals.items(), key=lambda item: _split_rank(item[0])):
        color = next(colors, "black")
        steps = [p["step"] for p in points]
        label = score_of(points[-1]).label
        ax.plot(steps, [value_of(p) for p in points], marker="o", color=color, lw=2, label=f"{split} {label}")
        for key, style in (("precision", ":"), ("recall", "--")):
            if all(_is_number(p.get(key)) for p in points):
                ax.plot(steps, [p[key] for p in points], ls=style, color=color, lw=1, alpha=0.7,
                        label=f"{split} {key}")
        best = history.best(split)
        if best is not None:
            ax.scatter([best["step"]], [value_of(best)], marker="*", s=220, color=color, zorder=5, edgecolor="black")
            right_half = best["step"] > (steps[0] + steps[-1]) / 2
            ax.annotate(f"best {split} {label} {value_of(best):.2f} (step {best['step']})",
                        (best["step"], value_of(best)),
                        textcoords="offset points", xytext=(-10 if right_half else 10, 10),
                        ha="right" if right_half else "left", fontsize=8)
    for split, metrics in results.items():
        if split in history.evals:
            continue
        ax.axhline(value_of(metrics), color=next(colors, "black"), ls="-.", lw=1.2,
                   label=f"{split} {score_of(metrics).label} (final)")
    if not ax.lines:
        ax.text(0.5, 0.5, "no evaluations recorded", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_ylabel("score (%)")
    highest = max((max(line.get_ydata(), default=0.0) for line in ax.lines), default=0.0)
    top = max(10.0, float(highest) * 1.15)  # a run stuck at 0 still reads as 0-10
    ax.set_ylim(0, min(100.0, top) if highest <= 100 else top)  # percentages up to 100; other scores as they are
    ax.legend(loc="lower right", fontsize=8)


def _plot_table(ax: Any, rows: list[tuple[str, ...]], score: str) -> None:
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "no eval_results*.json in the model directory", ha="center", va="center")
        return
    columns = ("split", "type", "precision", "recall", score, "support")
    table = ax.table(cellText=[list(r) for r in rows], colLabels=columns, loc="upper center", cellLoc="center",
                     colLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.25)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
        elif rows[row - 1][1] in ("micro avg", "overall"):
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#f4f4f4")
    ax.set_title("per-type scores (last evaluation of each split)", loc="left", fontsize=10)


# ---------------------------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------------------------


IMAGE_SUFFIXES = ("png", "svg", "pdf", "jpg", "jpeg", "tif", "tiff", "webp", "eps", "ps")
"""What --output may end in when matplotlib cannot be asked (it is not installed)."""


def check_image_name(output: Path | None) -> None:
    """``--output`` must name an image file matplotlib writes, by its suffix: checked before anything is
    read or printed, so ``-o r.txt`` is one line, not a traceback after the report."""
    if output is None:
        return
    try:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = sorted(FigureCanvasBase.get_supported_filetypes())
    except ImportError:
        formats = sorted(IMAGE_SUFFIXES)
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in formats:
        what = f"'.{suffix}' is not an image format" if suffix else "has no suffix to say which image format"
        raise DataError(f"--output {output}: {what} (use .png, .svg or .pdf; valid: "
                        f"{', '.join('.' + f for f in formats)})")


def build_report(model_dir: Path, output: Path | None, console: Console, overwrite: bool = False) -> Path | None:
    """Print the report and write the PNG (None when matplotlib is missing). The model directory's own
    report.png is replaced freely (tc report wrote it); any other existing file only with ``overwrite``."""
    check_image_name(output)
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise DataError(f"{model_dir}: model directory not found")
    target = output or model_dir / DEFAULT_PNG
    check_output(target, protected_dirs={"model directory": model_dir}, flag="--output",
                 replaceable=("*.png", "*.svg", "*.pdf", "*.jp*g", "*.tif*", "*.webp", "*.gif", "*.eps", "*.ps"))
    if output is not None and not _is_own_report(output, model_dir):
        check_replace(output, overwrite)
    history = read_history(model_dir / METRICS_FILE)
    results = read_results(model_dir)
    if not history.train and not history.evals and not results:
        raise DataError(f"{model_dir}: no {METRICS_FILE} or eval_results*.json to report on (train first)")
    title = summary(model_dir, history, results)
    console.print(title, highlight=False, soft_wrap=True, markup=False)
    if history.skipped_lines:
        lines = history.skipped_lines
        console.print(f"[yellow]note:[/] skipped {len(lines)} unreadable line(s) of {METRICS_FILE} "
                      f"(first: line {lines[0]})", highlight=False)
    for split, metrics in results.items():
        console.print(results_table(split, metrics))
    if not have_matplotlib():
        console.print(INSTALL_HINT, highlight=False, soft_wrap=True, markup=False)
        return None
    if target.is_dir():
        raise DataError(f"{target}: is a directory; --output takes a .png file name")
    return write_png(target, title, history, results)


def _is_own_report(output: Path, model_dir: Path) -> bool:
    """Whether ``-o`` names the default output, ``MODEL_DIR/report.png`` itself (not a link to it)."""
    default = model_dir / DEFAULT_PNG
    return not output.is_symlink() and os.path.realpath(output) == os.path.realpath(default)


@click.command("report")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help=f"Image to write, .png (default: MODEL_DIR/{DEFAULT_PNG}), .svg or .pdf.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file.")
def report(model_dir: Path, output: Path | None, overwrite: bool) -> None:
    """Loss and score curves (the task's selection metric, e.g. F1) plus per-type scores of a run, as a PNG
    and terminal tables."""
    written = build_report(model_dir, output, Console(), overwrite)
    if written is not None:
        click.echo(f"wrote {written}")
