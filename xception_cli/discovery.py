"""Finding the images to classify: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from .config import IMAGE_EXTENSIONS

_GLOB_CHARS = set("*?[")


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith(".")


@dataclass
class Discovery:
    """What ``discover`` found.

    ``paths``: the files to classify; ``missing``: inputs that do not exist; ``ordered``: both, in
    the order the inputs were given (a missing input keeps its place); ``problems``: inputs that
    gave nothing, as ``(input, reason)``.
    """

    paths: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ordered: list[str] = field(default_factory=list)


def walk_images(top: str) -> list[str]:
    """Image files under ``top``, sorted, recursive; hidden files and folders skipped.

    Symbolic links to folders are followed once: a link back to an ancestor cannot loop.
    """
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def visit(d: str) -> None:
        try:
            st = os.stat(d)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return
        seen_dirs.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if _hidden(e.name):
                continue
            try:
                is_dir = e.is_dir()  # follows symlinks; False for a broken one
            except OSError:
                is_dir = False
            if is_dir:
                visit(e.path)
            elif is_image_name(e.name):
                found.append(e.path)  # broken links stay: they get an error record

    visit(top)
    return found


def discover(inputs: list[str]) -> Discovery:
    """Expand ``inputs`` in the order given; each expansion is sorted, duplicates dropped.

    A file named explicitly is kept whatever its extension (it gets an error record if it is not
    an image); inside folders only image extensions are taken (case-insensitive).
    """
    out = Discovery()
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.paths.append(path)
            out.ordered.append(path)

    for raw in inputs:
        if os.path.isdir(raw):
            images = walk_images(raw)
            if not images:
                out.problems.append((raw, "no images found in this folder"))
            for p in images:
                add(p)
        elif os.path.lexists(raw):
            add(raw)
        elif _GLOB_CHARS & set(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                out.problems.append((raw, "the pattern matched no files"))
            for m in matches:
                if os.path.isdir(m):
                    for p in walk_images(m):
                        add(p)
                elif is_image_name(m):
                    add(m)
        else:
            out.missing.append(raw)
            out.ordered.append(raw)
    return out


STDIN = "-"


def read_path_list(stream) -> list[str]:
    """Paths from a binary stream, one a line (``find ... | xception predict -``).

    Blank lines are skipped; a trailing ``\r`` is dropped; names that are not valid UTF-8 are
    kept exactly (as Python keeps them from the file system).
    """
    out = []
    for line in stream.read().split(b"\n"):
        line = line.removesuffix(b"\r")
        if line.strip():
            out.append(os.fsdecode(line))
    return out


def expand_stdin(inputs: list[str], stdin) -> list[str]:
    """Replace a ``-`` among ``inputs`` by the paths listed on ``stdin`` (a binary stream).

    Raises ``ValueError`` when ``-`` is given twice or stdin is a terminal (nothing piped in).
    """
    if STDIN not in inputs:
        return inputs
    if inputs.count(STDIN) > 1:
        raise ValueError("'-' (paths from stdin) can be given only once")
    if stdin.isatty():
        raise ValueError("'-' reads a list of paths from stdin, one a line, but stdin is a terminal: "
                         "pipe them in, e.g. find ~/Photos -name '*.jpg' | xception predict -")
    i = inputs.index(STDIN)
    return inputs[:i] + read_path_list(stdin) + inputs[i + 1:]
