"""``xception predict``: options, and what a person sees (Rich on stderr); the work is ``jobs.PredictJob``."""

from __future__ import annotations

import sys

import click

from ..output.formats import command_formats
from .common import (
    CONTEXT,
    friendly_errors,
    input_list,
    output_options,
    pipeline_options,
    ray_options,
    require_stdout,
    said,
    stderr_is_terminal,
    warn,
)


class RichUI:
    """``jobs.UI`` on a terminal: warnings and a progress bar on stderr, tables with Rich."""

    def __init__(self, show_progress: bool):
        self.show_progress = show_progress
        self._console = None  # the progress bar's console while it runs (keeps warnings above it)
        self._download = None
        self._announced = False

    def warn(self, message: str) -> None:
        warn(message, self._console)

    def info(self, message: str) -> None:
        click.echo(said(message), err=True)

    def download(self, done: int, total: int | None) -> None:
        if not self._announced:
            self._announced = True
            size = f" ({total / 1e6:.0f} MB)" if total else ""
            click.echo(f"downloading the ImageNet weights{size} into the Keras cache (once)", err=True)
        if not self.show_progress:
            return
        if self._download is None:
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            from .render import console

            bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                           console=console(stderr=True), transient=True)
            bar.start()
            self._download = (bar, bar.add_task("downloading ImageNet weights", total=total))
        bar, task = self._download
        bar.update(task, completed=done)
        if total is not None and done >= total:
            bar.stop()

    def stop(self) -> None:
        """The download's bar off the screen (Ctrl-C or an error during the download)."""
        if self._download is not None:
            self._download[0].stop()

    def progress(self, total: int, label: str = "classifying"):
        self.stop()
        if not self.show_progress:
            return None
        return _Bar(self, total, label)

    def table(self, records, stream) -> None:
        from .render import console

        console(file=stream).print(predictions_table(records))


def percent(p: float) -> str:
    """A probability as a percentage with two decimals: ``<0.01%`` below, ``>99.99%`` short of 1."""
    if p < 1e-4:
        return "<0.01%"
    text = f"{p:.2%}"
    return ">99.99%" if text == "100.00%" and p < 1 else text


def predictions_table(records):
    """The predictions as people read them: paths fold at their separators, probabilities as
    percentages; when the terminal is narrow, WordNet ID and then Class are left out (said so)."""
    from ..output.paths import display_path
    from .render import Column, table

    rows, sections = [], []
    for r in records:
        path = display_path(r.path)[0]
        if r.error is not None:
            rows.append([path, "", f"error: {r.error}", "", "", ""])
        else:
            for p in r.predictions:
                rows.append([path if p.rank == 1 else "", p.rank, p.label, p.index, p.wnid, percent(p.probability)])
        sections.append(len(rows) - 1)
    columns = [Column("Image", "path"), Column("#", "number"), Column("Label"), Column("Class", "number"),
               Column("WordNet ID", "code"), Column("Probability", "number", short="Prob.")]
    return table(columns, rows, sections=sections[:-1], drop=(4, 3), more="-f jsonl")


class _Bar:
    """The classifying progress bar; transient, so nothing of it is left where the table starts."""

    def __init__(self, ui: RichUI, total: int, label: str = "classifying"):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        from .render import console

        class RateColumn(ProgressColumn):
            def render(self, task):
                return Text(f"{task.speed:.1f} img/s" if task.speed else "-- img/s")

        self.ui = ui
        self.bar = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("[red]{task.fields[failed]} failed"),
            console=console(stderr=True), transient=True,
        )
        self.task = self.bar.add_task("classify", total=total, failed=0)
        self.bar.start()
        ui._console = self.bar.console

    def advance(self, n: int, failed: int) -> None:
        self.bar.update(self.task, advance=n, failed=failed)

    def close(self) -> None:
        self.bar.stop()
        self.ui._console = None


@click.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("-k", "--top-k", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Number of labels per image.")
@output_options(command_formats("predictions"), note=" parquet: Ray's shards only (--ray -o DIR/).")
@pipeline_options()
@click.option("--resume", is_flag=True,
              help="With -o FILE (jsonl/csv): skip inputs already classified there, retry failures, append.")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@click.option("--csv-safe", is_flag=True,
              help="CSV for spreadsheets: a text cell starting with = + - @ (a formula there) gets a leading '.")
@ray_options
@friendly_errors
def predict(inputs, top_k, fmt, output, batch_size, workers, weights, resize, precision, runtime, resume,
            no_progress, csv_safe, use_ray, ray_address, actors, follow_links):
    """Classify images: files, folders (recursive), glob patterns, or '-' for paths on stdin.

    \b
    Examples:
      xception predict cat.jpg
      xception predict ~/Photos -o labels.jsonl
      xception predict 'shots/**/*.png' -f csv -k 3 > labels.csv
      xception predict ~/Photos -o labels.jsonl --resume
      find ~/Photos -newer last.jsonl -name '*.jpg' | xception predict - -o new.jsonl

    Results go to stdout or -o FILE; progress and warnings go to stderr. A file that cannot be
    read becomes an error record and the rest go on. Exit status: 0 all classified, 1 some
    inputs failed, 2 usage, weights or no-input errors, 130 interrupted.
    """
    from ..heads import Classify

    sys.exit(run_job(input_list(inputs), fmt, output, resume, no_progress, head=Classify(top_k),
                     batch_size=batch_size, workers=workers, weights=weights, resize=resize, precision=precision,
                     runtime=runtime, ray=use_ray, ray_address=ray_address, actors=actors,
                     follow_links=follow_links, csv_safe=csv_safe))


def run_job(inputs, fmt, output, resume, no_progress, head, **options) -> int:
    """The job for ``predict`` and ``embed``: the format decided once, then ``jobs.PredictJob``."""
    from ..jobs import PredictJob, PredictOptions
    from .clock import STARTED

    job_options = PredictOptions(inputs=inputs, fmt=fmt, output=output, resume=resume, head=head,
                                 terminal=sys.stdout.isatty(), **options)  # every check and the format, once
    if not output:
        require_stdout()
    ui = RichUI(show_progress=not no_progress and stderr_is_terminal())
    return PredictJob(job_options, ui, started=STARTED).run()
