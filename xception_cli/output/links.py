"""Links on the way to an output: which ones may be followed.

The kernel's protected_symlinks rule (``fs.protected_symlinks = 1``) makes ``/tmp`` safe for
programs that let the kernel follow links: in a sticky, world-writable folder, a link is followed
only when its owner is the one following it or the folder's owner. The output layer resolves
links itself (a link the user named stays a link, to the new file), so it applies the same rule
itself, whether or not this system turns it on.
"""

from __future__ import annotations

import os
import stat


def planted_link(path: str) -> tuple[str, str, int] | None:
    """The first link on the way to ``path`` (itself included) that the kernel's protected_symlinks
    rule would not follow, whether or not this system turns it on (links are resolved here, not by
    the kernel): a link in a sticky, world-writable folder (``/tmp``) owned by neither us nor the
    folder's owner. ``(link, folder, the link's owner)``, or ``None``."""
    here, todo, hops = os.sep, os.path.abspath(path).split(os.sep)[::-1], 0
    while todo:
        name = todo.pop()
        if name in ("", ".", ".."):
            here = os.path.dirname(here) if name == ".." else here
            continue
        step = os.path.join(here, name)
        try:
            st = os.lstat(step)
            if not stat.S_ISLNK(st.st_mode):
                here = step
                continue
            folder, target, hops = os.stat(here), os.readlink(step), hops + 1
        except OSError:
            return None  # nothing further (the write itself will say why)
        shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
        if shared and st.st_uid not in (os.geteuid(), folder.st_uid):
            return step, here, st.st_uid
        if hops > 40:  # a loop of links: the write fails on its own
            return None
        here = os.sep if target.startswith(os.sep) else here
        todo.extend(target.split(os.sep)[::-1])
    return None
