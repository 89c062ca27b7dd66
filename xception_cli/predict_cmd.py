"""``xception predict``: discovery, resume, the streaming pipeline, progress and output.

Called by ``cli.predict`` after option parsing; returns the exit status.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from contextlib import ExitStack

import click

from .cli import FatalError, warn
from .discovery import discover
from .output import WRITERS, read_completed, rewrite_kept
from .pipeline import Record, Stats

EXIT_OK, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _load_classifier(weights, resize, precision, batch_size, workers, show_progress, paths):
    from .classifier import Classifier

    bar = task = None
    announced = False

    def on_download(done: int, total: int | None) -> None:
        nonlocal bar, task, announced
        if not announced:
            announced = True
            size = f" ({total / 1e6:.0f} MB)" if total else ""
            click.echo(f"downloading the ImageNet weights{size} into the Keras cache (once)", err=True)
        if not show_progress:
            return
        if bar is None:
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            from .render import console

            bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                           console=console(stderr=True), transient=True)
            bar.start()
            task = bar.add_task("downloading ImageNet weights", total=total)
        bar.update(task, completed=done)

    clf = Classifier(weights=weights, resize=resize, precision=precision, batch_size=batch_size,
                     workers=workers, progress=on_download)
    decoder = clf.decoder((p, p) for p in paths)
    try:
        clf.load()
    except BaseException:
        decoder.close()
        raise
    finally:
        if bar is not None:
            bar.stop()
    return decoder, clf


def run_predict(*, inputs, top_k, fmt, output, batch_size, workers, weights, resize, precision, resume, progress):
    from PIL import Image

    # Oversized images become error records with their own message; Pillow's warning is noise here.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    found = discover(inputs)
    if not found.paths:
        problems = [f"{raw}: no such file or directory" for raw in found.missing]
        problems += [f"{raw}: {why}" for raw, why in found.problems]
        raise FatalError(problems[0] if len(problems) == 1 else "no images found: " + "; ".join(problems))
    for raw, why in found.problems:
        warn(f"{raw}: {why}")
    leading = [Record(raw, error="no such file or directory") for raw in found.missing]
    paths = found.paths

    if output:  # fail before the model loads, not after
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise FatalError(f"{output}: cannot write: folder {parent} does not exist")
        if not os.access(parent, os.W_OK) or (os.path.exists(output) and not os.access(output, os.W_OK)):
            raise FatalError(f"{output}: cannot write: permission denied")

    append = False
    if resume:
        if not output:
            raise click.UsageError("--resume needs -o FILE (the output of the earlier run)")
        if fmt not in ("jsonl", "csv"):
            raise click.UsageError(f"--resume works with jsonl or csv output, not {fmt}")
        if os.path.exists(output):
            done, kept = read_completed(output, fmt)
            rewrite_kept(output, kept)
            append = bool(kept)
            before = len(paths)
            paths = [p for p in paths if p not in done]
            leading = [r for r in leading if r.path not in done]
            click.echo(f"resume: {before - len(paths)} already classified in {output}, {len(paths)} to go",
                       err=True)
            if not paths and not leading:
                return EXIT_OK

    # Decoding starts now and runs while TensorFlow loads (its import leaves the other cores idle).
    decoder, clf = _load_classifier(weights, resize, precision, batch_size, workers, progress, paths)

    stats = Stats(started=time.perf_counter())
    records_for_table: list[Record] = []
    with ExitStack() as stack:
        if output:
            stream = stack.enter_context(
                open(output, "a" if append else "w", encoding="utf-8", newline="", errors="surrogateescape")
            )
        else:
            stream = sys.stdout
        writer = WRITERS[fmt](stream, append=append) if fmt != "table" else None
        bar = _progress_bar(len(paths) + len(leading)) if progress else None
        if bar is not None:
            stack.enter_context(bar)
        con = bar.console if bar is not None else None
        interrupted = False

        def emit(batch: list[Record]) -> None:
            for r in batch:
                if r.error is not None:
                    warn(f"{r.path}: {r.error}", con)
            if writer is not None:
                writer.write(batch)
            else:
                records_for_table.extend(batch)
            if bar is not None:
                bar.update(bar.task_ids[0], advance=len(batch), failed=stats.failed + len(leading))

        try:
            if leading:
                emit(leading)
            for batch in clf.stream(decoder, top_k=top_k, stats=stats):
                emit(batch)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if writer is not None:
                writer.close()
        if fmt == "table":
            _print_table(records_for_table, stream)

    failed = stats.failed + len(leading)
    n_inputs = len(paths) + len(leading)
    if interrupted or n_inputs > 1 or failed:
        rate = f"{stats.images_per_second:.1f} images/s"
        head = "interrupted: " if interrupted else ""
        kept = f"; results so far are in {output}" if interrupted and output else ""
        click.echo(f"{head}classified {stats.classified}, failed {failed} in {stats.elapsed_s:.1f} s "
                   f"({rate}){kept}", err=True)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _progress_bar(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    from .render import console

    class RateColumn(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.1f} img/s" if task.speed else "-- img/s")

    bar = Progress(
        TextColumn("[bold]classifying"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("[red]{task.fields[failed]} failed"),
        console=console(stderr=True),
    )
    bar.add_task("classify", total=total, failed=0)
    return bar


def _print_table(records: list[Record], stream) -> None:
    from .render import console, table

    rows, sections = [], []
    for r in records:
        if r.error is not None:
            rows.append([r.path, "", f"error: {r.error}", "", "", ""])
        else:
            for p in r.predictions:
                rows.append([r.path if p.rank == 1 else "", p.rank, p.label, p.index, p.wnid,
                             f"{p.probability:.2%}" if p.probability >= 1e-4 else f"{p.probability:.2e}"])
        sections.append(len(rows) - 1)
    t = table(["Image", ("#", "right"), "Label", ("Class", "right"), "WordNet ID", ("Probability", "right")],
              rows, sections=sections[:-1])
    console(file=stream).print(t)
