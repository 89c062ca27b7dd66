"""``xception embed``: options for the embedding head; the work is ``jobs.PredictJob`` with ``heads.Embed``."""

from __future__ import annotations

import sys

import click

from .common import (
    CONTEXT,
    friendly_errors,
    input_list,
    pipeline_options,
    ray_options,
    require_stdout,
    stderr_is_terminal,
)

FORMATS = ("jsonl", "npz", "parquet")


@click.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Write to FILE (format from its extension: .npz, .parquet, .jsonl); jsonl may go to stdout.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format [jsonl|npz|parquet]; default from -o's extension, else jsonl.")
@click.option("--pooling", type=click.Choice(["avg", "max"]), default="avg", show_default=True,
              help="Global pooling of the last feature map (2048 values either way).")
@click.option("--normalize", is_flag=True, help="Scale every embedding to unit L2 length.")
@pipeline_options("no-ir")
@click.option("--resume", is_flag=True,
              help="With -o FILE: skip inputs already embedded there, retry failures (same options as before).")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@ray_options
@friendly_errors
def embed(inputs, output, fmt, pooling, normalize, batch_size, workers, weights, resize, precision, runtime,
          resume, no_progress, use_ray, ray_address, actors):
    """Feature vectors (Xception's pooled 2048 values) for files, folders, globs or '-' (stdin).

    \b
    Examples:
      xception embed ~/Photos -o photos.npz
      xception embed ~/Photos -o photos.parquet --normalize
      xception embed ~/Photos -o photos.jsonl --resume
      xception similar query.jpg --embeddings photos.npz

    The same pipeline as predict: bad files become error records, Ctrl-C keeps what was done,
    exit status 0/1/2/130 as for predict. npz and parquet are written when the run ends (a
    killed run leaves an earlier file as it was); jsonl grows as it goes.
    """
    from ..heads import Embed
    from ..jobs import PredictJob, PredictOptions
    from ..output import format_for_path
    from . import STARTED
    from .predict import RichUI, run_job

    inputs = input_list(inputs)
    guessed = format_for_path(output) if output else None
    if fmt is None and guessed is not None and guessed not in FORMATS:
        raise click.UsageError(f"{output}: embed writes npz, parquet or jsonl, not {guessed}: name the file "
                               ".npz, .parquet or .jsonl, or give -f")
    chosen = fmt or (guessed if guessed in FORMATS else "jsonl")
    if chosen != "jsonl" and not output:
        raise click.UsageError(f"{chosen} output needs -o FILE")
    if resume and not output:
        raise click.UsageError("--resume needs -o FILE (the output of the earlier run)")
    if not output:
        require_stdout()
    options = PredictOptions(
        inputs=inputs, fmt=chosen, fmt_explicit=fmt is not None, output=output, batch_size=batch_size,
        workers=workers, weights=weights, resize=resize, precision=precision, runtime=runtime, resume=resume,
        head=Embed(pooling, normalize),
    )
    ui = RichUI(show_progress=not no_progress and stderr_is_terminal())
    sys.exit(run_job(PredictJob(options, ui, started=STARTED), use_ray, ray_address, actors))
