"""The ``xception`` command: a thin Click shell over the library, one module per command.

Nothing imported here loads TensorFlow or Keras (``xception --help`` stays instant); each
command imports what it needs when it runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from . import clock  # noqa: F401 - first of all: the closing line of `predict` counts the whole wait

# isort: split
from . import blas  # noqa: F401,E402 - before NumPy loads: its idle BLAS threads sleep instead of spinning

# isort: split
import click  # noqa: E402

from .. import __version__  # noqa: E402
from . import common  # noqa: E402
from .benchmark import benchmark  # noqa: E402
from .common import CONTEXT, FatalError, friendly_errors, said, verbosity_options  # noqa: E402,F401
from .embed import embed  # noqa: E402
from .explain import explain  # noqa: E402
from .export import export  # noqa: E402
from .predict import predict  # noqa: E402
from .similar import similar  # noqa: E402
from .summary import summary  # noqa: E402
from .train import train  # noqa: E402

EPILOG = """\b
Environment:
  XCEPTION_WEIGHTS  the file --weights imagenet reads (else the Keras cache)
  XCEPTION_RUNTIME  auto, openvino or tensorflow: --runtime when not given
  KERAS_HOME        the Keras cache's home (~/.keras; weights in models/)
  RAY_ADDRESS       the cluster --ray joins (else a local Ray of its own)
  XCEPTION_DEBUG=1  full tracebacks instead of one-line errors (and -v)

\b
Shell completion (bash; zsh and fish likewise), in ~/.bashrc:
  eval "$(_XCEPTION_COMPLETE=bash_source xception)"
"""


class OneLineErrors(click.Group):
    """The group, with usage errors on one line (``Error: ... (see 'xception predict -h')``) rather
    than Click's usage block; every other error already is one line (``common.friendly_errors``)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        with one_run():
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, standalone_mode, **extra)
            return self._main(args, prog_name, complete_var, **extra)

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # `xception` alone: the help, as --help
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            common.loud_stderr()  # -q: errors still show
            ctx = e.ctx
            where = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
            click.echo(f"Error: {said(e.format_message())}{where}", err=True)  # a name in it is data
            sys.exit(e.exit_code)
        except click.ClickException as e:
            common.loud_stderr()
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)


@contextlib.contextmanager
def one_run():
    """One command's run: the verbosity (``-q``/``-v``) and ``sys.stderr`` put back afterwards, and
    the logger ``xception_cli`` shown on stderr meanwhile (``common.StderrLogHandler``)."""
    from .. import logs

    before = logs.set_level(logs.NORMAL)
    handler = common.StderrLogHandler()
    logs.logger.addHandler(handler)
    level, propagate = logs.logger.level, logs.logger.propagate
    logs.logger.setLevel(logging.INFO)
    logs.logger.propagate = False  # the command line is the program: its handler is the one
    try:
        yield
    finally:
        common.loud_stderr()
        logs.logger.removeHandler(handler)
        logs.logger.setLevel(level)
        logs.logger.propagate = propagate
        logs.set_level(before)


@click.group(cls=OneLineErrors, context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="xception")
@verbosity_options
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

    Quiet by default: results on stdout (or -o), progress and warnings on stderr; -q for errors
    only, -v for what TensorFlow and Ray say too. Every command takes -q and -v.
    """


for command in (predict, embed, explain, similar, train, summary, benchmark, export):
    cli.add_command(common.with_verbosity(command))  # -q and -v on every command


def main() -> None:
    import os
    import sys

    from ..keras_import import skip_scikit_learn
    from ..logs import quiet_tensorflow_imports

    skip_scikit_learn()  # the command never uses Keras's scikit-learn wrappers (~0.7 s of its start)
    quiet_tensorflow_imports()  # TensorFlow's start-up lines on fd 2, whatever TF_CPP_MIN_LOG_LEVEL says (-v: shown)
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
    if not _whole_process():  # main() called by a program that goes on afterwards: a plain return
        cli(prog_name="xception")
        return
    try:
        cli(prog_name="xception")
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    exit_now(code)


def _whole_process() -> bool:
    """Whether this process is the command itself (the ``xception`` script, ``python -m
    xception_cli``), so that nothing runs after ``main()``."""
    import os

    top = sys.modules.get("__main__")
    spec = getattr(top, "__spec__", None)
    if spec is not None:
        return spec.name == "xception_cli.__main__"
    script = getattr(top, "__file__", None)
    return script is not None and os.path.basename(script).split(".")[0] in ("xception", "xception-script")


def exit_now(code) -> None:
    """End the process as the interpreter would, less its teardown (~0.04 s of freeing every module
    and object, OpenVINO's included): threads joined as at exit (``concurrent.futures`` pools
    included), ``atexit`` handlers run (Ray's private folder, log handlers), stdout and stderr
    flushed, then ``os._exit``. Every output file is published (and closed) before ``main`` gets
    here; a code that is not a number, or a flush that fails, takes the interpreter's own way out."""
    import atexit
    import os
    import threading

    if code is None:
        code = 0
    if not isinstance(code, int):
        raise SystemExit(code)
    threading._shutdown()  # what the interpreter does first on its way out: wait for the threads
    atexit._run_exitfuncs()  # then the handlers (cleared once run: none runs twice)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a reader gone, a closed stream: the interpreter reports it as usual
        raise SystemExit(code) from None
    os._exit(code & 0xFF)
