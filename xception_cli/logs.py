"""How loud the package is, and where its messages go (no Click, no Rich, nothing but the standard library).

- **The logger** ``xception_cli`` (``logging.getLogger("xception_cli")``): a program using the
  Python API sees the package's warnings and notes there (``ui.LoggingUI``, the default UI of
  ``jobs.PredictJob``; ``train.run`` without ``log``). It has a ``NullHandler``, as a library's
  logger should: nothing is printed unless the program configures logging. The command line
  shows the same records on stderr (``cli.common``).
- **The level**: ``QUIET`` (errors only), ``NORMAL`` or ``VERBOSE`` (``-q``/``-v`` on the
  command line; ``set_level`` for a program). ``verbose()`` also holds when ``$XCEPTION_DEBUG``
  is set. Verbose lets the libraries underneath speak: TensorFlow's start-up lines
  (``runtimes.tensorflow``) and Ray's own logs (``scale``); otherwise both are kept off the
  terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

LOGGER_NAME = "xception_cli"
DEBUG_ENV = "XCEPTION_DEBUG"
QUIET, NORMAL, VERBOSE = -1, 0, 1

logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())

_level = NORMAL


def set_level(level: int) -> int:
    """Set the package's verbosity (``QUIET``, ``NORMAL`` or ``VERBOSE``); returns the one before."""
    global _level
    if level not in (QUIET, NORMAL, VERBOSE):
        raise ValueError(f"level must be QUIET (-1), NORMAL (0) or VERBOSE (1), not {level!r}")
    before, _level = _level, level
    return before


def level() -> int:
    return _level


def verbose() -> bool:
    """Whether the libraries underneath (TensorFlow, Ray) may write their own logs to the terminal."""
    return _level >= VERBOSE or bool(os.environ.get(DEBUG_ENV))


def quiet() -> bool:
    return _level <= QUIET and not os.environ.get(DEBUG_ENV)


# -- TensorFlow's start-up lines ---------------------------------------------------------------
# TensorFlow's C++ core writes its start-up notes (absl "All log messages before
# absl::InitializeLog()...", oneDNN, CUDA probing, CPU features) straight to fd 2 while it loads
# and first lists its devices, before any log level applies: TF_CPP_MIN_LOG_LEVEL=3 does not
# stop them. So the first import of TensorFlow runs with fd 2 pointed at /dev/null, unless
# ``verbose()``; whatever module imports it first (Keras, a summary's --compare, export).


@contextmanager
def silenced_fd2():
    """fd 2 (where C++ libraries write) pointed at /dev/null for the block; Python's ``sys.stderr``
    flushed on both sides, so nothing of ours is lost or delayed."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow_imports() -> None:
    """From now on, the first ``import tensorflow`` of this process says nothing on stderr (unless
    ``verbose()`` by then). The ``xception`` command calls it at start; a program's own process is
    left as it is."""
    if "tensorflow" not in sys.modules and _QuietTensorFlow not in sys.meta_path:
        sys.meta_path.insert(0, _QuietTensorFlow)


class _QuietTensorFlow:
    """A meta path finder for ``tensorflow`` alone, used once: its spec, with a loader that runs
    the import (and the first listing of devices) under ``silenced_fd2``."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if cls in sys.meta_path:
            sys.meta_path.remove(cls)
        if verbose():
            return None
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with silenced_fd2():
            self._loader.exec_module(module)
            try:
                module.config.list_physical_devices()  # CUDA probing: the last of the start-up lines
            except Exception:  # noqa: BLE001 - a TensorFlow without it: its own first use will tell
                pass
