"""The user's own cache: what is slow to work out and the same on every run, kept between runs.

Where: ``$XCEPTION_CACHE_DIR``, else ``$XDG_CACHE_HOME/xception-cli``, else ``~/.cache/xception-cli``
(``location``). Two kinds of entries, one file each, in subfolders:

- ``networks/``: compiled networks (``runtimes.cache``), tens of MB each;
- ``facts/``: small facts about a weights file (its md5, what it says: ``weights.info``).

Every entry is keyed by a canonical JSON text (``key_text``) that says everything it depends on,
a weights file by ``fingerprint``: its resolved path, size, mtime and ctime in ns, inode and
device, and a hash of 64 blocks sampled across it (0.3 ms for 88 MB; its md5 takes 120 ms). A file
rewritten in place gets a new ctime (no one can set it back) and usually new sampled blocks, so a
changed file is never served from an entry made for the old one.

An entry is written to a private temporary file in the same folder, fsynced and renamed into place:
two processes filling one entry at once both succeed (the last rename wins, both files whole).
Reading maps the file copy-on-write (no copy: the runtime uses the payload in place) and checks
the magic, the key, the sizes and a CRC32 of the header and of the payload; a corrupt or truncated
entry is removed and rebuilt with one warning (``note``), never a crash. An entry is never changed
in place (replaced by rename, removed by unlink), so a mapping stays whole.

Trust: the folders are created 0700 and must be this user's and closed to group and others; an
entry must be this user's regular file, not writable by group or others. Anything else is never
loaded (one warning; caching is skipped). The cache is bounded (``$XCEPTION_CACHE_MAX_MB``, 1024 by
default): after a write the least recently used entries (by mtime, refreshed on use) go first.

Off for the process with ``set_enabled(False)`` (``--no-cache``) or ``XCEPTION_NO_CACHE=1``.
Nothing here imports NumPy, OpenVINO or TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ENV_DIR = "XCEPTION_CACHE_DIR"
ENV_OFF = "XCEPTION_NO_CACHE"
ENV_MAX_MB = "XCEPTION_CACHE_MAX_MB"
DEFAULT_MAX_BYTES = 1 << 30
MAGIC = b"XCEPTION-CLI\x00C\x00\x02"  # 16 bytes; the last two: the entry format's version
_PREFIX = struct.Struct("<QI")  # header length, header CRC32
MAX_HEADER_BYTES = 1 << 20
PAGE = 4096
CHUNK = 4 << 20  # the payload's CRC32 is one per chunk (checked by two threads)
SAMPLES, SAMPLE_BYTES = 64, 4096
TOUCH_AFTER_S = 600  # a used entry's mtime is refreshed (for eviction) when older than this
STALE_TEMP_S = 3600  # a writer's temporary file this old was left by a crash: removed at eviction

log = logging.getLogger("xception_cli.cache")
_lock = threading.Lock()
_notes: list[str] = []
_said: set[str] = set()


# -- on, off, where ---------------------------------------------------------------------------------

def set_enabled(on: bool) -> bool:
    """Turn the cache on or off for this process and the processes it starts (``$XCEPTION_NO_CACHE``,
    which Ray's workers inherit too); returns what it was."""
    before = enabled()
    if on:
        os.environ.pop(ENV_OFF, None)
    else:
        os.environ[ENV_OFF] = "1"
    return before


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() in ("", "0", "false", "no")


def location() -> Path:
    """The cache folder: ``$XCEPTION_CACHE_DIR``, ``$XDG_CACHE_HOME/xception-cli`` or ``~/.cache/xception-cli``."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xception-cli"


def max_bytes() -> int:
    raw = os.environ.get(ENV_MAX_MB, "").strip()
    try:
        return max(0, int(raw)) << 20 if raw else DEFAULT_MAX_BYTES
    except ValueError:
        note(f"${ENV_MAX_MB}={raw!r} is not a whole number of MB: using {DEFAULT_MAX_BYTES >> 20}")
        return DEFAULT_MAX_BYTES


def say(message: str, *args) -> None:
    """A line for ``-v`` (the logger ``xception_cli.cache``: INFO when verbose, else DEBUG)."""
    from .logs import verbose

    log.log(logging.INFO if verbose() else logging.DEBUG, "cache: " + message, *args)


def note(message: str) -> None:
    """A warning for the user, once per process (``take_notes`` hands them over)."""
    with _lock:
        if message not in _said:
            _said.add(message)
            _notes.append(message)
    log.debug("%s", message)


def take_notes() -> list[str]:
    """The warnings noted since the last call (the engine adds them to the network's notes)."""
    with _lock:
        taken = list(_notes)
        _notes.clear()
    return taken


def _untrusted(st: os.stat_result, what: str, mask: int) -> str | None:
    """Why a file or folder of the cache cannot be trusted, or ``None`` (where there are no
    owners and modes, as on Windows, the folder's own access rules stand)."""
    if not hasattr(os, "geteuid"):
        return None
    if st.st_uid != os.geteuid():
        return f"owned by another user (uid {st.st_uid})"
    if st.st_mode & mask:
        return f"open to group or others (mode {stat.S_IMODE(st.st_mode):04o}; a {what} of the cache must not be)"
    return None


def folder(kind: str, create: bool = True) -> Path | None:
    """The subfolder ``kind`` of the cache, made 0700 if missing; ``None`` when caching is off,
    or the folder is missing (``create=False``), cannot be made or cannot be trusted (one warning)."""
    if not enabled():
        return None
    root = location()
    for path in (root, root / kind):
        try:
            if create:
                os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.stat(path) if path == root else os.lstat(path)
        except OSError as e:  # not there, or cannot be made (a read-only home): no cache, quietly
            say("%s cannot be used (%s); running without the cache", path, e)
            return None
        why = "not a folder" if not stat.S_ISDIR(st.st_mode) else _untrusted(st, "folder", 0o077)
        if why:
            note(f"{path}: the cache folder is {why}: not used (chmod 700 it, or set ${ENV_DIR})")
            return None
    return root / kind


# -- a file's identity ------------------------------------------------------------------------------

def fingerprint(path: str | os.PathLike) -> dict:
    """What identifies a file's contents cheaply: resolved path, size, mtime and ctime (ns), inode,
    device, and a SHA-256 of its size and ``SAMPLES`` blocks spread evenly from its first byte to its
    last. ``OSError`` if it cannot be read."""
    real = os.path.realpath(path)
    with open(real, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        h = hashlib.sha256(size.to_bytes(8, "little"))
        last = max(0, size - SAMPLE_BYTES)
        for i in range(SAMPLES if size > SAMPLE_BYTES else 1):
            f.seek(last * i // (SAMPLES - 1))
            h.update(f.read(SAMPLE_BYTES))
    return {"path": real, "size": size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "dev": st.st_dev, "sample": h.hexdigest()}


def key_text(key: dict) -> str:
    """The canonical text of a key (what an entry records and its file name is the hash of)."""
    from . import __version__

    return json.dumps({"package": __version__, **key}, sort_keys=True, separators=(",", ":"))


def entry_path(kind: str, key: str, suffix: str = ".entry", create: bool = True) -> Path | None:
    where = folder(kind, create)
    return None if where is None else where / (hashlib.sha256(key.encode()).hexdigest()[:40] + suffix)


# -- entries ----------------------------------------------------------------------------------------

def write_entry(path: Path, key: str, header: dict, payload: bytes | memoryview = b"") -> bool:
    """Write an entry atomically (private temp file, fsync, rename); ``False`` with one warning if
    it could not be written (the run goes on without it)."""
    payload = memoryview(payload).cast("B")
    head = json.dumps({**header, "key": key, "payload_bytes": payload.nbytes,
                       "payload_crc32": _crcs(payload)}).encode()
    if payload.nbytes:  # padded so the payload starts on a page (the runtime uses it in place)
        head += b" " * (-(len(MAGIC) + _PREFIX.size + len(head)) % PAGE)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".writing-", dir=path.parent)  # 0600, in the same folder
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + _PREFIX.pack(len(head), zlib.crc32(head)) + head)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as e:
        note(f"{path.parent}: cannot write to the cache ({e.strerror or e}); running without it")
        return False
    finally:
        if tmp is not None:
            _remove(Path(tmp))
    if payload.nbytes:
        say("kept %s (%.1f MB)", path, payload.nbytes / 1e6)
    return True


def read_entry(path: Path, key: str) -> tuple[dict, memoryview] | None:
    """``(header, payload)`` of a trusted, whole entry for ``key``; ``None`` when there is none, or
    (with one warning) when it cannot be trusted or is corrupt (a corrupt one is removed)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        note(f"{path}: cannot read this cache entry ({e.strerror or e}): not used")
        return None
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        why = "not a regular file" if not stat.S_ISREG(st.st_mode) else _untrusted(st, "file", 0o022)
        if why:
            note(f"{path}: the cache entry is {why}: not used")
            return None
        problem, found = _read_checked(f, st.st_size, key)
    if problem:
        note(f"{path}: the cache entry is {problem}: rebuilt")
        _remove(path)
        return None
    if time.time() - st.st_mtime > TOUCH_AFTER_S:
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
    return found


def _read_checked(f, size: int, key: str) -> tuple[str | None, tuple[dict, memoryview] | None]:
    prefix = f.read(len(MAGIC) + _PREFIX.size)
    if prefix[:len(MAGIC) - 2] == MAGIC[:-2] and prefix[:len(MAGIC)] != MAGIC:
        return None, None  # an entry of another format version: a miss, replaced when stored
    if len(prefix) < len(MAGIC) + _PREFIX.size or not prefix.startswith(MAGIC):
        return "truncated or not a cache entry", None
    head_len, head_crc = _PREFIX.unpack(prefix[len(MAGIC):])
    if head_len > min(MAX_HEADER_BYTES, size):
        return "corrupt (header size)", None
    head = f.read(head_len)
    if len(head) != head_len or zlib.crc32(head) != head_crc:
        return "truncated or corrupt (header)", None
    try:
        header = json.loads(head)
        if header["key"] != key:
            return None, None  # another key whose hash clashes (never seen): a miss, left alone
        want = int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError):
        return "corrupt (header)", None
    start = len(prefix) + head_len
    if size != start + want:
        return f"truncated ({size} bytes, expected {start + want})", None
    payload = _mapped(f, start, want)
    if _crcs(payload) != header.get("payload_crc32"):
        return "corrupt (checksum)", None
    return None, (header, payload)


def _crcs(payload: memoryview) -> list[int]:
    """The CRC32 of each ``CHUNK`` of ``payload``, worked out by up to two threads (zlib lets go
    of the GIL): 91 MB in about 15 ms rather than 30 on two cores."""
    chunks = [payload[at:at + CHUNK] for at in range(0, payload.nbytes, CHUNK)]
    crcs = [0] * len(chunks)

    def work(first: int) -> None:
        for i in range(first, len(chunks), 2):
            crcs[i] = zlib.crc32(chunks[i])

    helper = threading.Thread(target=work, args=(1,), daemon=True) if len(chunks) > 1 else None
    if helper is not None:
        helper.start()
    work(0)
    if helper is not None:
        helper.join()
    return crcs


def _mapped(f, start: int, length: int) -> memoryview:
    """The payload, writable: mapped copy-on-write (no copy, pages shared with the page cache;
    writes stay private), or read into memory where the file cannot be mapped."""
    if length:
        try:
            return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY))[start:]
        except (OSError, ValueError):
            pass
    f.seek(start)
    payload = bytearray(length)
    f.readinto(payload)
    return memoryview(payload)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _fsync_folder(path: Path) -> None:
    """The rename itself made durable (best effort: some file systems cannot)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def evict(keep: Path | None = None, limit: int | None = None) -> int:
    """Remove the least recently used entries (every kind) until the cache holds ``limit`` bytes
    (``max_bytes()``); ``keep`` (the entry just written) stays. Returns the bytes removed."""
    limit = max_bytes() if limit is None else limit
    root, now, files = location(), time.time(), []
    for kind in ("networks", "facts"):
        try:
            entries = list(os.scandir(root / kind))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or _untrusted(st, "file", 0):
                continue
            if e.name.startswith(".writing-"):
                if now - st.st_mtime > STALE_TEMP_S:
                    _remove(Path(e.path))
                continue
            files.append((st.st_mtime, st.st_size, Path(e.path)))
    total, removed = sum(size for _, size, _ in files), 0
    for _, size, path in sorted(files):
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        _remove(path)
        total -= size
        removed += size
    return removed


# -- small facts about a file -----------------------------------------------------------------------

_facts: dict[str, object] = {}


def remember(what: str, path: str | os.PathLike, compute: Callable[[], object]) -> object:
    """``compute()`` (a JSON value: a file's md5, what it says), kept per file ``fingerprint`` in
    the cache (and in this process), so a later run reads it instead of the file."""
    if not enabled():
        return compute()
    try:
        before = fingerprint(path)
    except OSError:
        return compute()
    key = key_text({"kind": "fact", "fact": what, "file": before})
    if key in _facts:
        return _facts[key]
    where = entry_path("facts", key, ".json")
    found = read_entry(where, key) if where is not None else None
    if found is not None and "value" in found[0]:
        value = found[0]["value"]
    else:
        value = compute()
        if where is not None and _unchanged(path, before) and write_entry(where, key, {"value": value}):
            evict(keep=where)
    _facts[key] = value
    return value


def _unchanged(path, before: dict) -> bool:
    """The file is as it was before it was read (a rewrite meanwhile must not be cached as the old one)."""
    try:
        return fingerprint(path) == before
    except OSError:
        return False
