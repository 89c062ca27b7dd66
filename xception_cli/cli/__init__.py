"""The ``xception`` command: a thin Click shell over the library, one module per command.

Nothing imported here loads TensorFlow or Keras (``xception --help`` stays instant); each
command imports what it needs when it runs.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # the closing line of `predict` counts the user's whole wait

import click  # noqa: E402

from .. import __version__  # noqa: E402
from .benchmark import benchmark  # noqa: E402
from .common import CONTEXT, FatalError, friendly_errors  # noqa: E402,F401
from .embed import embed  # noqa: E402
from .export import export  # noqa: E402
from .predict import predict  # noqa: E402
from .similar import similar  # noqa: E402
from .summary import summary  # noqa: E402
from .train import train  # noqa: E402


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="xception")
def cli():
    """Classify images with Xception (ImageNet, 1000 classes).

    \b
    Examples:
      xception predict cat.jpg                    top-5 labels as a table
      xception predict ~/Photos -o labels.jsonl   a whole folder, streamed, resumable
      xception embed ~/Photos -o photos.npz       feature vectors, for search and de-duplication
      xception similar q.jpg --embeddings photos.npz   the most similar photos
      xception summary                            the 3 flows and 14 blocks
      xception benchmark                          how fast it runs here
      xception export openvino -o xception.xml    the network for serving
      xception train ~/plants -o plants.h5        your own classes, in minutes on a CPU

    Set XCEPTION_DEBUG=1 to see full tracebacks.
    """


for command in (predict, embed, similar, train, summary, benchmark, export):
    cli.add_command(command)


def main() -> None:
    import os
    import sys

    from . import common

    # Started with stdout or stderr closed (`>&-`, `2>&-`): stderr messages go nowhere; results
    # meant for stdout are refused with a message (see common.require_stdout).
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        common.STDOUT_CLOSED = True
    cli(prog_name="xception")
