"""The ``xception`` command: a thin Click shell over the library.

Nothing at module level imports TensorFlow or Keras (``xception --help`` stays instant); each
command imports what it needs when it runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import click

from . import __version__
from .config import IMAGENET_INPUT_SIZE, MIN_INPUT_SIZE, RESIZE_MODES

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_ENV = "XCEPTION_DEBUG"


class FatalError(click.ClickException):
    """Weights, inputs or set-up errors: one line on stderr, exit code 2."""

    exit_code = 2


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def friendly_errors(fn):
    """Turn library errors into one-line messages (``XCEPTION_DEBUG=1`` shows the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .preprocess import ImageError
        from .weights import WeightsError

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except (WeightsError, ImageError, ValueError, OSError) as e:
            if os.environ.get(DEBUG_ENV):
                raise
            raise FatalError(_one_line(e)) from None
        except Exception as e:  # noqa: BLE001 - last line of defence: no tracebacks for users
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {_one_line(e)} (set {DEBUG_ENV}=1 for details)"
            ) from None

    return wrapper


def weights_option(default="imagenet"):
    return click.option(
        "--weights", default=default, show_default=True, metavar="imagenet|PATH|none",
        help="ImageNet weights ($XCEPTION_WEIGHTS, the Keras cache, or a download), a weights file "
        "(.h5, .weights.h5, .keras), or 'none' for random weights.",
    )


precision_option = click.option(
    "--precision", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
    help="Compute precision; bfloat16 uses Keras mixed precision (fast only on CPUs with AMX/AVX512-BF16).",
)


def output_options(formats):
    """``-f/--format`` and ``-o/--output``, shared by every command that prints results."""

    def decorator(fn):
        fn = click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                          help="Write to FILE instead of stdout (format from its extension unless -f).")(fn)
        fn = click.option("-f", "--format", "fmt", type=click.Choice(formats), default=None,
                          help=f"Output format [{'|'.join(formats)}]; default: table on a terminal, "
                          f"{'jsonl' if 'jsonl' in formats else 'json'} otherwise.")(fn)
        return fn

    return decorator


def pick_format(fmt: str | None, output: str | None, formats, machine_default: str) -> str:
    from .output import format_for_path

    if fmt:
        return fmt
    if output:
        guessed = format_for_path(output)
        return guessed if guessed in formats else machine_default
    return "table" if sys.stdout.isatty() else machine_default


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def warn(message: str, console=None) -> None:
    if console is not None:
        console.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)
    else:
        click.echo(f"warning: {message}", err=True)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="xception")
def cli():
    """Classify images with Xception (ImageNet, 1000 classes) on Keras 3.

    \b
    Examples:
      xception predict cat.jpg                    top-5 labels as a table
      xception predict ~/Photos -o labels.jsonl   a whole folder, streamed, resumable
      xception summary                            the 3 flows and 14 blocks
      xception benchmark                          how fast it runs here

    Set XCEPTION_DEBUG=1 to see full tracebacks.
    """


# ---------------------------------------------------------------------------------------------
# predict


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("-k", "--top-k", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Number of labels per image.")
@output_options(["table", "json", "jsonl", "csv"])
@click.option("-b", "--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Images per model call.")
@click.option("-j", "--workers", type=click.IntRange(1, 64), default=None,
              help="Decoding threads [default: one per core, 2-8].")
@weights_option()
@click.option("--resize", type=click.Choice(RESIZE_MODES), default="center-crop", show_default=True,
              help="center-crop: short side to 299/0.875 then the centre 299x299 (bicubic); "
              "squash: straight to 299x299.")
@precision_option
@click.option("--resume", is_flag=True,
              help="With -o FILE (jsonl/csv): skip inputs already classified there, retry failures, append.")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@friendly_errors
def predict(inputs, top_k, fmt, output, batch_size, workers, weights, resize, precision, resume, no_progress):
    """Classify images: files, folders (recursive) and glob patterns.

    \b
    Examples:
      xception predict cat.jpg
      xception predict ~/Photos -o labels.jsonl
      xception predict 'shots/**/*.png' -f csv -k 3 > labels.csv
      xception predict ~/Photos -o labels.jsonl --resume

    Results go to stdout or -o FILE; progress and warnings go to stderr. A file that cannot be
    read becomes an error record and the rest go on. Exit status: 0 all classified, 1 some
    inputs failed, 2 usage, weights or no-input errors, 130 interrupted.
    """
    from .predict_cmd import run_predict

    code = run_predict(
        inputs=list(inputs), top_k=top_k, fmt=pick_format(fmt, output, ("table", "json", "jsonl", "csv"), "jsonl"),
        output=output, batch_size=batch_size, workers=workers, weights=weights, resize=resize,
        precision=precision, resume=resume,
        progress=not no_progress and stderr_is_terminal(),
    )
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# summary


@cli.command(context_settings=CONTEXT)
@output_options(["table", "json", "csv"])
@click.option("--layers", is_flag=True, help="One row per layer (name, type, output, params, MACs).")
@click.option("--input-size", type=click.IntRange(min=MIN_INPUT_SIZE), default=IMAGENET_INPUT_SIZE,
              show_default=True, help="Input side in pixels; other than 299 leaves out the ImageNet top.")
@click.option("--compare", type=click.Choice(["inception-v3"]), default=None,
              help="Add another architecture's totals (random weights, never downloaded).")
@friendly_errors
def summary(fmt, output, layers, input_size, compare):
    """The architecture: 3 flows and 14 blocks with shapes, parameters and multiply-adds.

    \b
    Examples:
      xception summary
      xception summary --layers
      xception summary --compare inception-v3
      xception summary --input-size 71 -f json

    Needs no weights and never downloads.
    """
    from .render import console
    from .summary_cmd import build_summary, compare_totals, to_csv, to_json

    fmt = pick_format(fmt, output, ("table", "json", "csv"), "json")
    s = build_summary(input_size)
    cmp = {compare: compare_totals(compare, input_size)} if compare else None
    with open_output(output) as stream:
        if fmt == "json":
            stream.write(to_json(s, layers, cmp))
        elif fmt == "csv":
            stream.write(to_csv(s, layers))
        else:
            from .summary_cmd import render_tables

            render_tables(s, layers, cmp, console(file=stream))


@contextlib.contextmanager
def open_output(output):
    """``-o FILE`` opened for writing, or stdout."""
    if output:
        with open(output, "w", encoding="utf-8", newline="") as f:
            yield f
    else:
        yield sys.stdout


def main() -> None:
    cli(prog_name="xception")
