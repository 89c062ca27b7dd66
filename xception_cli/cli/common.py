"""What every command shares: error handling, options, output format and stderr messages.

Nothing here imports TensorFlow or Keras (``xception --help`` stays instant).
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from ..errors import XceptionError, one_line

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEBUG_ENV = "XCEPTION_DEBUG"


class FatalError(click.ClickException):
    """Weights, inputs or set-up errors: one line on stderr, exit code 2 (control characters from
    a name in the message escaped: see ``said``)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(said(message))


def said(message: str) -> str:
    """A message for a person, on one line: control characters that a file name (or any text
    from outside) put in it are escaped (``\\x1b``, ``\\n``), so no name can move the cursor, set
    the window title, clear the screen or fake a log line."""
    from ..output.paths import shown

    return shown(message)


def friendly_errors(fn):
    """Turn library errors into one-line messages (``XCEPTION_DEBUG=1`` shows the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # before any work was done (e.g. while TensorFlow loads)
            click.echo("interrupted", err=True)
            sys.exit(130)
        except ImportError as e:
            from ..jobs import caused_by_interrupt

            if caused_by_interrupt(e):  # Ctrl-C inside an extension module's import
                click.echo("interrupted", err=True)
                sys.exit(130)
            if os.environ.get(DEBUG_ENV):
                raise
            raise FatalError(f"unexpected ImportError: {one_line(e)} (set {DEBUG_ENV}=1 for details)") from None
        except BrokenPipeError:
            # The reader went away (`xception predict dir | head`): stop quietly, as Unix tools do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except (XceptionError, ValueError, OSError) as e:
            if os.environ.get(DEBUG_ENV):
                raise
            raise FatalError(one_line(e)) from None
        except Exception as e:  # noqa: BLE001 - last line of defence: no tracebacks for users
            if os.environ.get(DEBUG_ENV):
                raise
            # exit 2, as every fatal error: 1 means "some inputs failed"
            raise FatalError(f"unexpected {type(e).__name__}: {one_line(e)} (set {DEBUG_ENV}=1 for details)") from None

    return wrapper


WEIGHTS_ACCEPTED = {
    "any": "a weights file (.h5, .weights.h5, .keras, or an exported OpenVINO .xml)",
    "no-ir": "a weights file (.h5, .weights.h5 or .keras; an exported IR ends with the classifier, so not "
             "one of those)",
    "h5": "an official-layout .h5 file (as Keras writes for Xception, or xception train)",
}


def weights_option(default="imagenet", accepts: str = "any"):
    """``--weights``; ``accepts``: which files the command can use (its help says so)."""
    return click.option(
        "--weights", default=default, show_default=True, metavar="imagenet|PATH|none",
        help=f"ImageNet weights ($XCEPTION_WEIGHTS, the Keras cache, or a download), {WEIGHTS_ACCEPTED[accepts]}, "
        "or 'none' for random weights (meaningless labels: to try the tool offline). "
        "[env var: XCEPTION_WEIGHTS, the file 'imagenet' means]",
    )


# Environment variables the library reads itself are named in the help as Click shows its own
# ("[env var: NAME]"), not bound to the option: a bound --runtime would be refused by Click
# before the library could say which runtimes there are, and a bound --ray-address would make
# every run without --ray an error wherever RAY_ADDRESS is exported.
runtime_option = click.option(
    "--runtime", type=click.Choice(["auto", "openvino", "tensorflow"], case_sensitive=False), default=None,
    help="Inference runtime [default: auto: OpenVINO whenever it can read the weights] "
    "[env var: XCEPTION_RUNTIME].",
)

precision_option = click.option(
    "--precision", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True,
    help="Compute precision; bfloat16 is fast only on CPUs with AMX/AVX512-BF16.",
)


def output_options(formats, note: str = ""):
    """``-f/--format`` and ``-o/--output``, shared by every command that prints results."""

    def decorator(fn):
        fn = click.option("-o", "--output", type=click.Path(), default=None,
                          help="Write to FILE instead of stdout (format from its extension unless -f).")(fn)
        fn = click.option("-f", "--format", "fmt", type=click.Choice(formats), default=None,
                          help=f"Output format [{'|'.join(formats)}]; default: table on a terminal, "
                          f"{'jsonl' if 'jsonl' in formats else 'json'} otherwise.{note}")(fn)
        return fn

    return decorator


def pick_format(fmt: str | None, output: str | None, formats, machine_default: str, command: str) -> str:
    """A report's format (``output.formats.choose_report_format``, with this terminal)."""
    from ..output.formats import choose_report_format

    return choose_report_format(fmt, output, tuple(formats), default=machine_default, terminal=sys.stdout.isatty(),
                                command=command)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def warn(message: str, console=None) -> None:
    """``warning: MESSAGE`` on stderr (above a progress bar's ``console``): the message as data —
    never Rich markup, control characters escaped (``said``)."""
    message = said(message)
    if console is not None:
        console.print("[yellow]warning:[/] " + _escape(message), markup=True, highlight=False)
    else:
        click.echo(f"warning: {message}", err=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


follow_links_option = click.option(
    "--follow-links", is_flag=True,
    help="Follow links that lead out of a folder given (or out of a glob's fixed start); by default they are "
    "skipped, with a warning.")


def pipeline_options(weights_accepted: str = "any"):
    """The options of every command that runs images through the network (predict, embed):
    ``-b``, ``-j``, ``--weights``, ``--resize``, ``--precision``, ``--runtime``, ``--follow-links``."""
    return lambda fn: _pipeline_options(fn, weights_accepted)


def _pipeline_options(fn, weights_accepted: str):
    from ..config import RESIZE_MODES
    from .cacheopt import no_cache_option

    for option in reversed([
        click.option("-b", "--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True,
                     help="Images per model call."),
        click.option("-j", "--workers", type=click.IntRange(1, 16), default=None,
                     help="Decoding threads; they share 1 GiB for the images they decode "
                     "[default: one per core, 2-8]."),
        weights_option(accepts=weights_accepted),
        click.option("--resize", type=click.Choice(RESIZE_MODES), default=None,
                     help="center-crop: short side to 299/0.875 then the centre 299x299 (bicubic); "
                     "squash: straight to 299x299 [default: what the weights file says, else center-crop]."),
        precision_option,
        runtime_option,
        follow_links_option,
        no_cache_option,
    ]):
        fn = option(fn)
    return fn


def input_list(inputs) -> list[str]:
    """INPUTS as given, with a ``-`` replaced by the paths listed on stdin."""
    from ..discovery import expand_stdin

    try:
        inputs = expand_stdin(list(inputs), sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if not inputs:  # `find -newer last.jsonl | xception predict -`: nothing new is the usual case, not an error
        click.echo("no paths on stdin: nothing to do", err=True)
        sys.exit(0)
    return inputs


def ray_options(fn):
    """``--ray``, ``--ray-address``, ``--actors``: run the job on Ray Data (``xception_cli.scale``)."""
    fn = click.option("--actors", type=click.IntRange(1, 10000), default=None,
                      help="With --ray: inference actors [default: one per node].")(fn)
    fn = click.option("--ray-address", default=None, metavar="ADDR",
                      help="With --ray: the cluster to use [default: a local Ray of its own] "
                      "[env var: RAY_ADDRESS].")(fn)
    fn = click.option("--ray", "use_ray", is_flag=True,
                      help="Run on Ray Data: folders, globs and s3:// URIs in; output as without --ray (a table "
                      "on a terminal, -o FILE), or shards with -o DIR/ or s3://.../.")(fn)
    return fn


STDOUT_CLOSED = False  # set by main() when the process was started with stdout closed (`>&-`)


def require_stdout() -> None:
    """Refuse to write results to a closed stdout (rather than fail on the first write)."""
    if STDOUT_CLOSED:
        raise FatalError("stdout is closed, so the results cannot be written there: use -o FILE")


def report_output(output: str | None, inputs=(), weights=()):
    """``with report_output(...) as stream``: ``-o FILE`` for a one-shot report (summary, benchmark,
    similar), or stdout. The file is checked and claimed on entry — never one of ``inputs`` or the
    ``weights`` files — and published only when the block succeeds (``output.target``)."""
    import contextlib

    from ..output.target import Protected, publish_text

    if not output:
        require_stdout()
        return contextlib.nullcontext(sys.stdout)
    return publish_text(output, Protected(inputs, weights))


def epoch_line_due(epoch: int, total: int, lines: int = 4) -> bool:
    """Whether epoch ``epoch`` of ``total`` gets a line when stderr is no terminal: the first, about
    ``lines`` more at even steps, and the last (40 epochs: 1, 10, 20, 30, 40); every one with -v."""
    from ..logs import verbose

    step = max(1, -(-total // lines))
    return verbose() or epoch in (1, total) or epoch % step == 0


# -- -q / -v ----------------------------------------------------------------------------------

_SAVED_STDERR: list = []  # sys.stderr as it was before -q pointed it at /dev/null


VERBOSITY = {  # the options' declarations and settings, for the decorator and for commands already made
    ("-q", "--quiet"): "Only errors on stderr: no progress, warnings or closing line (results and exit status "
                       "as ever).",
    ("-v", "--verbose"): "Also what the libraries underneath say: TensorFlow's start-up lines, Ray's logs (and "
                         "where its log files are); every epoch of train. [env var: XCEPTION_DEBUG=1 adds full "
                         "tracebacks]",
}


def verbosity_options(fn):
    """``-q/--quiet`` and ``-v/--verbose`` on a command function (every command of the group gets
    them anyway: ``with_verbosity``). They set ``logs.set_level`` for the run; ``-q`` sends what
    the command would say on stderr to /dev/null, all but its error line (``quiet_stderr``)."""
    for decls, text in reversed(VERBOSITY.items()):
        fn = click.option(*decls, is_flag=True, expose_value=False, callback=_verbosity, help=text)(fn)
    return fn


def with_verbosity(command: click.Command) -> click.Command:
    """``command`` with ``-q`` and ``-v`` (unless it has them already)."""
    have = {d for p in command.params for d in p.opts}
    command.params.extend(click.Option(list(decls), is_flag=True, expose_value=False, callback=_verbosity, help=text)
                          for decls, text in VERBOSITY.items() if not have & set(decls))
    return command


def _verbosity(ctx: click.Context, param: click.Parameter, value: bool):
    from .. import logs

    if not value:
        return value
    seen = ctx.meta.setdefault("xception.verbosity", set())  # shared by the group's and the command's context
    seen.add(param.name)
    if seen == {"quiet", "verbose"}:
        raise click.UsageError("-q (only errors) and -v (more than usual) cannot go together", ctx)
    logs.set_level(logs.QUIET if param.name == "quiet" else logs.VERBOSE)
    if param.name == "quiet":
        quiet_stderr()
    return value


def quiet_stderr() -> None:
    """Whatever is written to ``sys.stderr`` from now on goes to /dev/null (``loud_stderr`` undoes it)."""
    if not _SAVED_STDERR:
        _SAVED_STDERR.append(sys.stderr)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - closed by loud_stderr


def loud_stderr() -> None:
    """``sys.stderr`` as it was before ``quiet_stderr`` (for an error line, and at the end)."""
    if _SAVED_STDERR:
        quiet, sys.stderr = sys.stderr, _SAVED_STDERR.pop()
        quiet.close()


class StderrLogHandler(logging.Handler):
    """The logger ``xception_cli`` on the command line: a record at WARNING or above as
    ``warning: MESSAGE``, below it as the message, on stderr as the commands' own lines (-q
    silences both). Installed for one run by ``cli.OneLineErrors``."""

    def emit(self, record):
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                warn(message)
            else:
                click.echo(said(message), err=True)
        except Exception:  # noqa: BLE001 - logging's own rule: a handler never raises
            self.handleError(record)
