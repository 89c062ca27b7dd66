"""Finding the images to classify: files, folders (recursive) and glob patterns."""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass, field

from .config import IMAGE_EXTENSIONS

MISSING = "no such file or directory"  # an input that is not there: its error record says so
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
    gave nothing, as ``(input, reason)``; ``skipped``: links that lead out of the folder given,
    not followed (see ``follow_links``).
    """

    paths: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ordered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def skipped_note(self) -> str | None:
        """One line naming the links left out, or ``None``."""
        return links_note(self.skipped)


def links_note(skipped: list[str], hint: str = "--follow-links follows them") -> str | None:
    """One warning for the links not followed out of a folder (``None`` when there are none)."""
    # one link met twice (two inputs, or through a link to its folder) is named once
    skipped = list({(os.path.realpath(os.path.dirname(s)), os.path.basename(s)): s for s in reversed(skipped)}
                   .values())[::-1]
    if not skipped:
        return None
    named = ", ".join(f"{s} -> {_target(s)}" for s in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return f"skipped {len(skipped)} link(s) that lead out of the folder given: {named} ({hint})"


def _target(link: str) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "?"


class Tree:
    """One folder given (or a glob's fixed start): what lies in it, and which folders were seen.

    A link whose target lies outside the folder is not followed unless ``follow_links`` (it is
    added to ``skipped``); a folder is entered once, so links back to an ancestor cannot loop.
    """

    def __init__(self, top: str, follow_links: bool = False, skipped: list[str] | None = None):
        self.root = os.path.realpath(top or os.curdir)
        self.follow_links = follow_links
        self.skipped = skipped if skipped is not None else []
        self._seen: set[tuple[int, int]] = set()

    def fresh(self) -> Tree:
        """The same rule, no folder seen yet."""
        return Tree(self.root, self.follow_links, self.skipped)

    def allows(self, path: str, is_link: bool | None = None) -> bool:
        """Whether ``path`` (met inside the tree) may be taken: not a link, or one that stays inside."""
        if self.follow_links or not (os.path.islink(path) if is_link is None else is_link):
            return True
        target = os.path.realpath(path)
        if target == self.root or target.startswith(self.root.rstrip(os.sep) + os.sep):
            return True
        self.skipped.append(path)
        return False

    def entries(self, d: str) -> list[os.DirEntry]:
        """``d``'s entries, sorted by name; none when ``d`` was seen before or cannot be read."""
        try:
            st = os.stat(d or os.curdir)
        except OSError:
            return []
        key = (st.st_dev, st.st_ino)
        if key in self._seen:
            return []
        self._seen.add(key)
        try:
            with os.scandir(d or os.curdir) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError:
            return []

    def below(self, d: str, files: bool) -> list[tuple[str, bool]]:
        """``(path, is_folder)`` under ``d`` at any depth, sorted, hidden ones skipped: folders (and,
        with ``files``, files), each folder entered once, links followed as the tree allows. Walked
        with a stack of its own (a tree thousands of folders deep is no trouble)."""
        out: list[tuple[str, bool]] = []
        stack = [(d, iter(self.entries(d)))]  # the folders being listed, the deepest last
        while stack:
            folder, rest = stack[-1]
            e = next(rest, None)
            if e is None:
                stack.pop()
                continue
            path, is_dir = os.path.join(folder, e.name), _is_dir(e)
            if _hidden(e.name) or not (files or is_dir) or not self.allows(path, _is_link(e)):
                continue
            out.append((path, is_dir))
            if is_dir:
                stack.append((path, iter(self.entries(path))))
        return out


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()  # follows symlinks; False for a broken one
    except OSError:
        return False


def _is_link(e: os.DirEntry) -> bool:
    try:
        return e.is_symlink()
    except OSError:
        return True  # asked again, by path


def walk_images(top: str, follow_links: bool = False, skipped: list[str] | None = None,
                root: str | None = None) -> list[str]:
    """Image files under ``top``, sorted, recursive; hidden files and folders skipped.

    Links are followed once (a link back to an ancestor cannot loop), and only when they stay
    inside ``root`` (``top`` unless given) or ``follow_links``; the others are added to ``skipped``.
    Broken links stay (they get an error record).
    """
    tree = Tree(top if root is None else root, follow_links, skipped)
    return [p for p, is_dir in tree.below(top, files=True) if not is_dir and is_image_name(p)]


def glob_start(pattern: str) -> tuple[str, list[str]]:
    """A pattern's fixed start (the folders before its first wildcard; ``""``: the current folder)
    and the components after it."""
    parts = pattern.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    return os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else ""), parts[fixed:]


def glob_paths(pattern: str, follow_links: bool = False, skipped: list[str] | None = None) -> list[str]:
    """What ``glob.glob(pattern, recursive=True)`` matches, sorted, with folder walking's rules: a
    ``**`` enters each folder once, no wildcard level goes down into a folder it is already inside
    (links to themselves or an ancestor cannot loop or multiply the paths), and links out of the
    pattern's fixed start are not followed unless ``follow_links``."""
    start, rest = glob_start(pattern)
    tree = Tree(start, follow_links, skipped)
    ancestry = _Ancestry(start)
    paths = [start]
    for i, part in enumerate(rest):
        last = i == len(rest) - 1
        paths = [q for p in paths for q in _glob_step(tree, p, part, last)]
        if not last and glob.has_magic(part):  # one path per folder and way down: never round a loop
            paths = [q for q in paths if not ancestry.repeats(q)]
    return sorted({p for p in paths if p})


def _key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path or os.curdir)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Ancestry:
    """The folders (device and inode) on the way down to each path a glob reached from its fixed
    start, as chains ``(key, parent's chain)`` shared by all the paths below a folder."""

    def __init__(self, start: str):
        self.chains: dict[str, tuple | None] = {_trimmed(start): (_key(start), None)}

    def chain(self, path: str) -> tuple | None:
        path, todo = _trimmed(path), []
        while path not in self.chains:  # up to a folder already known, then back down
            todo.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        chain = self.chains.get(path)
        for p in reversed(todo):  # '.' stays where it is; '..' goes up by name: a fresh start
            name = os.path.basename(p)
            chain = self.chains[p] = chain if name == os.curdir else (_key(p), None if name == os.pardir else chain)
        return chain

    def repeats(self, path: str) -> bool:
        """Whether ``path`` is a folder already on its own way down (``d/self`` where ``self -> .``)."""
        key, up = self.chain(path) or (None, None)
        while key is not None and up is not None:
            if up[0] == key:
                return True
            up = up[1]
        return False


def _trimmed(path: str) -> str:
    return path.rstrip(os.sep) or path[:1]


def _glob_step(tree: Tree, p: str, part: str, last: bool) -> list[str]:
    """The paths one pattern component gives from ``p`` (a folder, ``""`` for the current one)."""
    if part == "**":
        return [p, *(q for q, _ in tree.fresh().below(p, files=last))]
    if part == "":  # a trailing separator: folders only
        return [os.path.join(p, "")] if os.path.isdir(p or os.curdir) else []
    if glob.has_magic(part):
        try:
            with os.scandir(p or os.curdir) as it:
                names = sorted(e.name for e in it)
        except OSError:
            return []
        names = [n for n in names if fnmatch.fnmatch(n, part) and (not _hidden(n) or _hidden(part))]
    else:
        names = [part]
    joined = [os.path.join(p, n) for n in names]
    return [q for q in joined if os.path.lexists(q) and tree.allows(q) and (last or os.path.isdir(q))]


def discover(inputs: list[str], follow_links: bool = False) -> Discovery:
    """Expand ``inputs`` in the order given; each expansion is sorted, duplicates dropped.

    A file named explicitly is kept whatever its extension (it gets an error record if it is not
    an image); inside folders only image extensions are taken (case-insensitive). Links that lead
    out of a folder given (or out of a glob's fixed start) are not followed unless
    ``follow_links``: they are listed in ``skipped``.
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
            images = walk_images(raw, follow_links, out.skipped)
            if not images:
                out.problems.append((raw, "no images found in this folder"))
            for p in images:
                add(p)
        elif os.path.lexists(raw):
            add(raw)
        elif _GLOB_CHARS & set(raw):
            matches = glob_paths(raw, follow_links, out.skipped)
            if not matches:
                out.problems.append((raw, "the pattern matched no files"))
            walked: list[str] = []  # a folder inside one walked already gives nothing new ('deep/**/')
            for m in matches:
                if os.path.isdir(m) and not _inside(m, walked):
                    walked.append(m)
                    for p in walk_images(m, follow_links, out.skipped, root=glob_start(raw)[0]):
                        add(p)
                elif is_image_name(m):
                    add(m)
        else:
            out.missing.append(raw)
            out.ordered.append(raw)
    return out


def _inside(path: str, folders: list[str]) -> bool:
    """Whether ``path`` (a glob match) lies in one of ``folders`` (earlier matches, spelt from the
    same start) by names folder walking takes: none hidden, no ``..``."""
    path = path.rstrip(os.sep)
    for folder in folders:
        folder = folder.rstrip(os.sep) + os.sep
        if path.startswith(folder) and not any(_hidden(c) for c in path[len(folder):].split(os.sep)):
            return True
    return False


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
