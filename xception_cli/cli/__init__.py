"""The ``xception`` command: a thin Click shell over the library, one module per command.

Nothing imported here loads TensorFlow or Keras (``xception --help`` stays instant); each
command imports what it needs when it runs.
"""

from __future__ import annotations

import sys

from . import clock  # noqa: F401 - first of all: the closing line of `predict` counts the whole wait

# isort: split
import click  # noqa: E402

from .. import __version__  # noqa: E402
from .benchmark import benchmark  # noqa: E402
from .common import CONTEXT, FatalError, friendly_errors, said  # noqa: E402,F401
from .embed import embed  # noqa: E402
from .explain import explain  # noqa: E402
from .export import export  # noqa: E402
from .predict import predict  # noqa: E402
from .similar import similar  # noqa: E402
from .summary import summary  # noqa: E402
from .train import train  # noqa: E402


class OneLineErrors(click.Group):
    """The group, with usage errors on one line (``Error: ... (see 'xception predict -h')``) rather
    than Click's usage block; every other error already is one line (``common.friendly_errors``)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # `xception` alone: the help, as --help
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            ctx = e.ctx
            where = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
            click.echo(f"Error: {said(e.format_message())}{where}", err=True)  # a name in it is data
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@click.group(cls=OneLineErrors, context_settings=CONTEXT)
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


for command in (predict, embed, explain, similar, train, summary, benchmark, export):
    cli.add_command(command)


def main() -> None:
    import os
    import sys

    from ..keras_import import skip_scikit_learn
    from . import common

    skip_scikit_learn()  # the command never uses Keras's scikit-learn wrappers (~0.7 s of its start)
    # Started with stdout or stderr closed (`>&-`, `2>&-`): stderr messages go nowhere; results
    # meant for stdout are refused with a message (see common.require_stdout).
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        common.STDOUT_CLOSED = True
    import signal

    def stop(signum, frame):  # `kill`, `timeout`, a closed terminal: stopped as Ctrl-C stops a run (exit 130),
        raise KeyboardInterrupt  # so whatever it was writing is left as Ctrl-C leaves it

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    cli(prog_name="xception")
