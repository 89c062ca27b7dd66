"""Paths as data: how an input's name is written, shown in a message, and recognised again.

- ``display_path``: the readable UTF-8 text of a name, plus the exact bytes (base64) of a name
  that is not valid UTF-8 (written as ``\\xNN`` in the text).
- ``shown``: a name inside a one-line message: control characters (newlines, escapes) written
  as ``\\n``, ``\\x1b``..., so a file name can never fake a log line or drive the terminal.
- ``file_id``: what identifies an input across runs: a digest of its resolved absolute path (a
  URI as it is). Every record carries it, so ``--resume`` recognises a file by what it is, not by
  a relative spelling (``imgs/a.jpg`` from another folder is another file), and two names that
  print alike (``caf\\xe9.jpg`` and a name holding the byte 0xE9) stay two files.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable

# Control characters, and the invisible format characters that reorder or hide text (bidi
# overrides and isolates, zero-width characters, the BOM): escaped wherever a name is shown.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def display_path(path: str) -> tuple[str, str | None]:
    """``(readable UTF-8 text, base64 of the exact bytes or None)`` for a path from the file system.

    Python keeps undecodable bytes of file names as lone surrogates; those cannot be written as
    UTF-8. Such a name is shown with ``\\xNN`` for each bad byte, and its bytes kept in base64.
    """
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        pass
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "replace")
    return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")


def shown(path: str) -> str:
    """A name as it appears in a one-line message: readable, control characters escaped."""
    text = display_path(path)[0]
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def from_record(text: str, raw: object) -> str:
    """The name a record holds: its exact bytes from ``path_base64`` when present, else the text."""
    if isinstance(raw, str) and raw:
        try:
            return os.fsdecode(base64.b64decode(raw, validate=True))
        except ValueError:
            pass
    return text


def is_uri(text: str) -> bool:
    return "://" in text and not os.path.exists(text)


def file_id(path: str) -> str:
    """16 hex digits identifying an input: its resolved absolute path (a URI as written)."""
    ident = path if is_uri(path) else os.path.realpath(path)
    return hashlib.blake2b(os.fsencode(ident), digest_size=8).hexdigest()


def path_key(path: str) -> str:
    """How two spellings of one file compare (``imgs/a.jpg`` and ``/abs/imgs/a.jpg``)."""
    return os.path.realpath(path)


def same_file_as_any(path: str, inputs: Iterable[str]) -> str | None:
    """The first of ``inputs`` that is the file at ``path`` (any spelling, links, hard links), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # nothing there yet: writing it cannot destroy an input
    for p in inputs:
        try:
            if os.path.samestat(st, os.stat(p)):
                return p
        except (OSError, ValueError):
            continue
    return None
