"""Every error the library raises on purpose: one line of text that names the file and the problem.

The command line turns these into ``Error: ...`` and exit status 2 (``cli.friendly_errors``); the
Python API lets them propagate. Nothing here imports anything heavy.
"""

from __future__ import annotations


class XceptionError(Exception):
    """Base class: ``str()`` is one line, ready to show to a user."""


class WeightsError(XceptionError):
    """Weights that cannot be found, fetched, verified or loaded."""


class ImageError(XceptionError):
    """An input that cannot be classified (it becomes an error record, the run goes on)."""


class OutputError(XceptionError):
    """An ``-o`` target that cannot be written, resumed or locked."""


class RuntimeChoiceError(XceptionError):
    """A runtime (or precision) that cannot run the requested network here."""


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()
    return type(e).__name__


def whole_message(e: BaseException, limit: int = 400) -> str:
    """An exception's whole message on one line (lines joined), cut at ``limit`` characters."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
