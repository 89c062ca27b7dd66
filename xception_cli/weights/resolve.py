"""Where weights come from: what ``--weights`` means, and the file it names.

``resolve_weights("imagenet")`` finds the official file: ``$XCEPTION_WEIGHTS`` if set, else the
Keras cache (``$KERAS_HOME/models``, shared with ``keras.applications.Xception``) when its md5 is
right, else a download from the official URL into that cache, md5-checked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import WEIGHTS_NOTOP, WEIGHTS_TOP, WeightsFile
from ..errors import WeightsError
from .files import file_format

ENV_WEIGHTS = "XCEPTION_WEIGHTS"
IMAGENET, RANDOM = "imagenet", "none"


def keras_cache_dir() -> Path:
    """``$KERAS_HOME/models``, ``~/.keras/models`` by default: the cache Keras itself uses."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The file's md5, kept in the user's cache per file ``usercache.fingerprint`` (88 MB take
    120 ms to hash; a file seen before, 0.3 ms)."""
    from ..usercache import remember

    if os.path.getsize(path) < 1 << 20:
        return _md5(path, chunk)
    return remember("md5", path, lambda: _md5(path, chunk))


def _md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def official_file(include_top: bool = True) -> WeightsFile:
    return WEIGHTS_TOP if include_top else WEIGHTS_NOTOP


def _urlopen(url: str, timeout: float):  # indirection so tests can simulate the network
    import urllib.request  # here: ~15 ms of imports (http, email, socket) no run without a download needs

    return urllib.request.urlopen(url, timeout=timeout)


def download(
    spec: WeightsFile,
    dest: Path,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``spec`` to ``dest`` atomically, checking its md5; ``progress(done, total)``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = (
        f"download it elsewhere and pass it with --weights PATH or {ENV_WEIGHTS}=PATH, "
        f"or copy it to {dest}; or try the tool with --weights none (random weights, meaningless labels)"
    )
    h = hashlib.md5()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with _urlopen(spec.url, timeout) as resp:
                    total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                    total = int(total) if total else None
                    done = 0
                    while block := resp.read(1 << 20):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            except (OSError, TimeoutError) as e:  # urllib's URLError is an OSError
                reason = getattr(e, "reason", None) or e
                raise WeightsError(
                    f"cannot download the ImageNet weights from {spec.url} ({reason}; are you offline?): {hint}"
                ) from None
        if h.hexdigest() != spec.md5:
            raise WeightsError(
                f"downloaded weights from {spec.url} have md5 {h.hexdigest()}, expected {spec.md5} "
                "(corrupted in transit?): try again, or " + hint
            )
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def normalize_weights(weights: str | os.PathLike | None) -> str:
    """The one place ``--weights`` is interpreted: ``"imagenet"``, ``"none"`` (random weights, from
    ``None``, ``"none"``, ``"None"``...) or a path, as a string."""
    if weights is None or str(weights).strip().lower() == RANDOM:
        return RANDOM
    if str(weights).strip().lower() == IMAGENET:
        return IMAGENET
    return os.fspath(weights)


def is_random(weights: str | os.PathLike | None) -> bool:
    """Whether a ``--weights`` value asks for random weights (``none``, ``None``...)."""
    return normalize_weights(weights) == RANDOM


def weights_identity(weights: str | os.PathLike | None) -> str:
    """What a run records as its weights: ``"imagenet"``, ``"none"`` or the file's absolute path."""
    w = normalize_weights(weights)
    return w if w in (IMAGENET, RANDOM) else os.path.abspath(os.path.expanduser(w))


def weights_name(weights: str | os.PathLike | None) -> str:
    """What an output records as its weights: ``"imagenet"``, ``"none"`` or the file's name, never
    where it lives (a shared output names no private folder); the file's md5 says which it is."""
    w = normalize_weights(weights)
    return w if w in (IMAGENET, RANDOM) else os.path.basename(os.path.normpath(os.path.expanduser(w)))


def same_weights(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Two ``--weights`` values naming the same weights (``imagenet``, ``none``, or one file by any
    spelling, links followed)."""
    a, b = weights_identity(a), weights_identity(b)
    if a in (IMAGENET, RANDOM) or b in (IMAGENET, RANDOM):
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


@dataclass(frozen=True)
class WeightsSource:
    """A resolved weights choice: the file to read (``None`` for random weights) and its format."""

    path: Path | None
    format: str

    @property
    def random(self) -> bool:
        return self.path is None


def weights_source(weights: str | os.PathLike | None, include_top: bool = True,
                   progress: Callable[[int, int | None], None] | None = None) -> WeightsSource:
    """Resolve ``--weights`` to a file (env var, Keras cache, download or path) and tell its format."""
    path = resolve_weights(weights, include_top=include_top, progress=progress)
    return WeightsSource(path, "random" if path is None else file_format(path))


def local_source(weights: str | os.PathLike | None) -> WeightsSource | None:
    """The file a ``--weights`` value names when it can be read without a download: a path, or
    ``$XCEPTION_WEIGHTS`` for ``imagenet``; ``None`` for random weights and the official file
    (which says nothing beyond ImageNet's facts)."""
    w = normalize_weights(weights)
    if w == RANDOM or (w == IMAGENET and not os.environ.get(ENV_WEIGHTS)):
        return None
    return weights_source(w)


def weights_files(weights: str | os.PathLike | None) -> list[str]:
    """The files a ``--weights`` value names without resolving anything (no download): the path
    given, an IR's ``.bin`` and metadata, or for ``imagenet`` ``$XCEPTION_WEIGHTS`` and the files
    in the Keras cache. For refusing an ``-o``."""
    weights = normalize_weights(weights)
    if weights == RANDOM:
        return []
    if weights == IMAGENET:
        cached = [os.fspath(keras_cache_dir() / spec.filename) for spec in (WEIGHTS_TOP, WEIGHTS_NOTOP)]
        return ([os.environ[ENV_WEIGHTS]] if os.environ.get(ENV_WEIGHTS) else []) + cached
    if weights.endswith(".xml"):  # an exported IR: its weights and its labels are files of it too
        return [weights, os.fspath(Path(weights).with_suffix(".bin")), weights + ".meta.json"]
    return [weights]


def resolve_weights(
    weights: str | os.PathLike | None,
    include_top: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path | None:
    """Turn ``"imagenet"``, ``"none"``/``None`` or a path into a file to load (or ``None``)."""
    weights = normalize_weights(weights)
    if weights == RANDOM:
        return None
    if weights == IMAGENET:
        env = os.environ.get(ENV_WEIGHTS)
        if env:
            path = Path(env).expanduser()
            if not path.is_file():
                raise WeightsError(f"{path}: weights file not found (from ${ENV_WEIGHTS})")
            return path
        spec = official_file(include_top)
        # Without the top (embed, train), the file with the top serves as well (its classifier
        # is dropped): whichever of the two the cache holds, before any download.
        for candidate in [spec] + ([] if include_top else [official_file(True)]):
            cached = keras_cache_dir() / candidate.filename
            if cached.is_file():
                digest = md5sum(cached)
                if digest != candidate.md5:
                    raise WeightsError(
                        f"{cached}: md5 is {digest}, expected {candidate.md5}: the file is corrupt or not the "
                        "official Xception weights; delete it to download it again"
                    )
                return cached
        return download(spec, keras_cache_dir() / spec.filename, progress=progress)
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    return path
