"""``xception embed``: options for the embedding head; the work is ``jobs.PredictJob`` with ``heads.Embed``."""

from __future__ import annotations

import sys

import click

from ..output.formats import command_formats
from .common import (
    CONTEXT,
    friendly_errors,
    input_list,
    pipeline_options,
    ray_options,
)

FORMATS = command_formats("embedding")


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
          resume, no_progress, use_ray, ray_address, actors, follow_links):
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
    from .predict import run_job

    sys.exit(run_job(input_list(inputs), fmt, output, resume, no_progress, head=Embed(pooling, normalize),
                     batch_size=batch_size, workers=workers, weights=weights, resize=resize, precision=precision,
                     runtime=runtime, ray=use_ray, ray_address=ray_address, actors=actors,
                     follow_links=follow_links))
