"""How Keras is imported in this process: the ``xception`` command loads it without scikit-learn.

Keras imports scikit-learn at start-up whenever it is installed (for its sklearn wrappers; NNCF,
from the export extra, brings it): ~0.7 s of every command that loads Keras. The command never
uses those wrappers, so its ``main()`` calls ``skip_scikit_learn()``; a Python user's own process
(the API) keeps Keras's usual imports. The standard library only, so the CLI pays nothing for it.
"""

from __future__ import annotations

import sys

_skip_scikit_learn = False


def skip_scikit_learn() -> None:
    """From now on, Keras loads without scikit-learn in this process (unless it is loaded already)."""
    global _skip_scikit_learn
    _skip_scikit_learn = True


class _NoScikitLearn:
    """A meta path finder that makes ``import sklearn`` fail while Keras loads (and only then)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"{name}: not loaded by the xception command")
        return None


def import_keras() -> None:
    if not _skip_scikit_learn or "sklearn" in sys.modules:
        import keras  # noqa: F401

        return
    sys.meta_path.insert(0, _NoScikitLearn)
    try:
        import keras  # noqa: F401
    finally:
        sys.meta_path.remove(_NoScikitLearn)
