"""``xception train``: options, and per-epoch progress (Rich on a terminal, plain lines otherwise)."""

from __future__ import annotations

import click

from ..config import RESIZE_MODES
from .common import (
    CONTEXT,
    epoch_line_due,
    follow_links_option,
    friendly_errors,
    runtime_option,
    said,
    stderr_is_terminal,
    weights_option,
)


@click.command(context_settings=CONTEXT)
@click.argument("data_dir", metavar="DATA_DIR")
@click.option("-o", "--output", required=True, type=click.Path(), help="The model to write: MODEL.h5.")
@click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Share of each class held out for validation (deterministic with --seed).")
@click.option("--val-dir", type=click.Path(), default=None, help="Validation photos in their own class folders.")
@click.option("--epochs", type=click.IntRange(1, 100000), default=40, show_default=True,
              help="Epochs for the new head (on cached features: seconds).")
@click.option("--fine-tune-epochs", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Then fine-tune the last blocks for this many epochs (Keras on TensorFlow; slow on a CPU).")
@click.option("--unfreeze-from", type=click.IntRange(1, 14), default=13, show_default=True, metavar="BLOCK",
              help="First block trained when fine-tuning (BatchNormalization stays frozen).")
@click.option("-b", "--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--augment", is_flag=True, help="Add a flipped and two slightly rotated copies of each training photo.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resize", type=click.Choice(RESIZE_MODES), default=None,
              help="How photos are resized (recorded in the model) [default: what --weights says, else center-crop].")
@weights_option(accepts="h5")
@runtime_option
@follow_links_option
@friendly_errors
def train(data_dir, output, val_split, val_dir, epochs, fine_tune_epochs, unfreeze_from, batch_size, augment, seed,
          resize, weights, runtime, follow_links):
    """Train on your own classes: DATA_DIR holds one subfolder of photos per class.

    \b
    Examples:
      xception train ~/plants -o plants.h5
      xception train ~/plants -o plants.h5 --augment --fine-tune-epochs 2
      xception predict ~/new-photos --weights plants.h5

    The base network's features are computed once and the new head trains on them in seconds.
    Writes MODEL.h5 (your class names inside) and MODEL.h5.report.json (per-epoch loss and
    accuracy, validation accuracy, confusion matrix, class counts, timings), and the same report
    as a page to open in a browser: MODEL.h5.report.html (curves and confusion matrix).
    """
    from ..train import TrainOptions, run

    o = TrainOptions(data_dir=data_dir, output=output, val_split=val_split, val_dir=val_dir, epochs=epochs,
                     fine_tune_epochs=fine_tune_epochs, unfreeze_from=unfreeze_from, batch_size=batch_size,
                     augment=augment, weights=weights, seed=seed, runtime=runtime, resize=resize,
                     follow_links=follow_links)
    log = lambda msg: click.echo(said(msg), err=True)  # noqa: E731
    bar = None
    if stderr_is_terminal():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from .render import console

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[metrics]}"), console=console(stderr=True), transient=False)
        tasks = {}

    def on_epoch(row: dict) -> None:
        metrics = (f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f}"
                   + (f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}" if "val_loss" in row else ""))
        if bar is None:  # piped: a few lines, not one per epoch (-v: every epoch)
            total = epochs if row["stage"] == "head" else fine_tune_epochs
            if epoch_line_due(row["epoch"], total):
                click.echo(f"{row['stage']} epoch {row['epoch']}/{total}: {metrics}", err=True)
            return
        stage = row["stage"]
        if stage not in tasks:
            total = epochs if stage == "head" else fine_tune_epochs
            tasks[stage] = bar.add_task(f"{stage} epochs", total=total, metrics="")
        bar.update(tasks[stage], completed=row["epoch"], metrics=metrics)

    if bar is not None:
        bar.start()
    try:
        report = run(o, log=log, on_epoch=on_epoch)
    finally:
        if bar is not None:
            bar.stop()
    if bar is not None:  # on a terminal: how each class did
        from .render import console

        console(stderr=True).print(report_table(report))
    acc = report["final_val_accuracy"]
    t = report["timings_s"]
    click.echo(said(f"wrote {output} ({len(report['classes'])} classes: {', '.join(report['classes'])})"),
               err=True)  # folder names are class names: data
    click.echo(f"validation accuracy {acc:.1%}" if acc is not None else "no validation photos", err=True)
    click.echo(f"features {t['features']:.1f} s, head {t['head']:.1f} s"
               + (f", fine-tuning {t['fine_tune']:.1f} s" if t["fine_tune"] else "")
               + f"; report in {output}.report.json and .report.html"
               + (f"; {len(report['skipped'])} unreadable photo(s) skipped" if report["skipped"] else ""), err=True)


def report_table(report: dict):
    """The training report per class: photos trained on and validated, validation accuracy, and
    the classes its validation photos were taken for. Class names are folder names: data."""
    from .render import table

    per_copy = 4 if report.get("options", {}).get("augment") else 1  # --augment: 3 more copies of each photo
    matrix = report["confusion_matrix"] or [[0] * len(report["classes"]) for _ in report["classes"]]
    rows = []
    for i, (name, row) in enumerate(zip(report["classes"], matrix)):
        seen = sum(row)
        wrong = sorted(((n, report["classes"][j]) for j, n in enumerate(row) if j != i and n), reverse=True)
        rows.append([name, report["class_counts"]["train"][name] // per_copy, seen, row[i],
                     f"{row[i] / seen:.1%}" if seen else "", ", ".join(f"{c} ({n})" for n, c in wrong[:3])])
    return table(["Class", ("Trained on", "number"), ("Validated", "number"), ("Right", "number"),
                  ("Accuracy", "number"), "Mistaken for"], rows, title="Validation, per class",
                 caption="Mistaken for: what the class's validation photos were taken for, most often first "
                 "(all in the confusion matrix of the report).", drop=(3, 1), more="the report's JSON")
