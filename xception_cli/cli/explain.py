"""``xception explain``: where the network looked, as pictures; the work is ``explain_job.ExplainJob``."""

from __future__ import annotations

import sys

import click

from ..heatmap import COLORMAPS, IMAGE_FORMATS
from .common import (
    CONTEXT,
    friendly_errors,
    input_list,
    pipeline_options,
    require_stdout,
    said,
    stderr_is_terminal,
)


class SizeType(click.ParamType):
    """``--size``: pixels on the long side, or ``full``."""

    name = "PX|full"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "full":
            return None
        try:
            px = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a number of pixels nor 'full'", param, ctx)
        if px < 16:
            self.fail(f"{px} is too small (at least 16 pixels, or 'full')", param, ctx)
        return px


@click.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR",
              help="The folder for the pictures (made if missing), and for the records (explain.jsonl).")
@click.option("-k", "--top-k", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Explain the N most probable classes of each image.")
@click.option("--class", "classes", multiple=True, metavar="INDEX|LABEL",
              help="Explain this class (an index, a label or a WordNet ID) whatever its rank; repeat for more.")
@click.option("--size", type=SizeType(), default="1024", show_default=True,
              help="The pictures' long side in pixels (never enlarged), or 'full' for the photo's own size.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="How much of the colour map shows over the photo.")
@click.option("--colormap", type=click.Choice(COLORMAPS), default="viridis", show_default=True,
              help="A perceptually uniform colour map (low to high).")
@click.option("--image-format", type=click.Choice(tuple(IMAGE_FORMATS)), default="png", show_default=True,
              help="The pictures' format.")
@click.option("--raw", is_flag=True,
              help="Also write each map itself as .npy (float32, 10x10 for 299 input, rectified and scaled to [0, 1]).")
@click.option("--records", metavar="FILE|-", default=None,
              help="Where the JSON Lines records go: a .jsonl file, or '-' for stdout [default: DIR/explain.jsonl].")
@click.option("--resume", is_flag=True,
              help="Skip inputs the records file already holds (retrying failures); append to it.")
@pipeline_options(weights_accepted="h5")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@friendly_errors
def explain(inputs, out_dir, top_k, classes, size, alpha, colormap, image_format, raw, records, resume, batch_size,
            workers, weights, resize, precision, runtime, follow_links, no_progress):
    """Show where the network looked: a class activation map over each photo.

    For each image, the map of its most probable class (or each of the top -k, or each --class)
    laid over the photo, as the photo is seen (EXIF orientation applied), written to
    DIR/<name>.<class>.png, and one JSON Lines record (predict's, each label with its picture).
    The map is Grad-CAM's, from the same single pass that gives the probabilities.

    \b
    Examples:
      xception explain cat.jpg -o maps
      xception explain ~/Photos -o maps -k 3 --size 512
      xception explain dog.jpg -o maps --class 'golden_retriever' --class 207
      xception explain shots/ -o maps --raw --records - | jq .predictions[0].map

    Inputs as predict takes them (files, folders, globs, '-' for paths on stdin). A file that
    cannot be read becomes an error record and the rest go on. Exit status: 0 all explained,
    1 some inputs failed, 2 usage, weights or no-input errors, 130 interrupted.
    """
    from ..explain_job import ExplainJob, ExplainOptions
    from .clock import STARTED
    from .predict import RichUI

    options = ExplainOptions(
        inputs=input_list(inputs), out_dir=out_dir, records=records, k=top_k, classes=tuple(classes), size=size,
        alpha=alpha, colormap=colormap, image_format=image_format, raw=raw, resume=resume, batch_size=batch_size,
        workers=workers, weights=weights, resize=resize, precision=precision, runtime=runtime,
        follow_links=follow_links)
    if options.predict.output is None:
        require_stdout()
    job = ExplainJob(options, RichUI(show_progress=not no_progress and stderr_is_terminal()), started=STARTED)
    status = job.run()
    where = "stdout" if options.predict.output is None else options.predict.output
    page = ""
    if options.predict.output is not None and status != 130:  # the page of every record in the file (--resume too)
        import os

        from ..output.html import jsonl_records, write_page
        from ..output.target import Protected

        page = os.path.join(out_dir, "explain.html")
        write_page(page, jsonl_records(options.predict.output), command="explain", meta=job._array_meta(),
                   protected=Protected(options.inputs), thumbs=job.thumbs)
        page = f"; a page of them in {page}"
    click.echo(said(f"{job.written} file(s) written in {out_dir}; records in {where}{page}"), err=True)
    sys.exit(status)
