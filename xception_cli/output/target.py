"""Where every artifact is written: the rules each command gets by writing through here.

- ``Protected``: the files a command reads (its inputs, its weights). An output that is one of
  them — any spelling, a symbolic or hard link — is refused before any work.
- ``Publication``: files (or a folder) written first into a private staging folder beside their
  final place (``mkdtemp``: a new name, mode 0700, so no other user can plant or read anything
  in it), fsynced, then renamed into place in one short step with Ctrl-C held off. A set of files
  (an IR, its ``.bin`` and its metadata) is published together; on any failure the staging
  folder is removed and the earlier files are exactly as they were.
- ``claim``: one writer per target. A writer holds an exclusive ``flock`` on the existing file
  and on a lock file in its staging folder; a second writer fails at once with ``OutputError``.
  Staging folders left by a killed run (no lock held, ours) are removed by the next writer.

No Click or Rich here.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager

from ..errors import OutputError
from .links import planted_link
from .paths import same_file_as_any, shown

STAGING_TAG = ".xception-"  # staging folders are named .<final name>.xception-<random>
BUSY = "another process is writing to this file (an xception run still going?); choose another -o or wait for it"


class Protected:
    """What an output must never be: ``inputs`` and ``weights`` (files the command reads)."""

    def __init__(self, inputs: Iterable[str] = (), weights: Iterable[str] = ()):
        self.inputs = [os.fspath(p) for p in inputs if p]
        self.weights = [os.fspath(p) for p in weights if p]

    def check(self, path: str, option: str = "-o") -> None:
        clash = same_file_as_any(path, self.inputs)
        if clash is not None:
            raise OutputError(f"{shown(path)}: is one of the inputs ({shown(clash)}); writing there would destroy "
                              f"it: choose another {option}")
        clash = same_file_as_any(path, self.weights)
        if clash is not None:
            raise OutputError(f"{shown(path)}: is the weights file ({shown(clash)}); writing there would destroy "
                              f"it: choose another {option}")


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def is_stream(path: str) -> bool:
    """A name for an open stream (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``): written to
    as it is, appending (``-o /dev/stdout >> log`` keeps the log), never staged or replaced."""
    import re

    p = os.path.normpath(os.fspath(path))
    return p in ("/dev/stdout", "/dev/stderr") or p.startswith("/dev/fd/") or bool(
        re.fullmatch(r"/proc/(self|thread-self|\d+)/fd/\d+", p))


def is_direct(path: str) -> bool:
    """Written to directly: a stream's name, or an existing named pipe, device or socket."""
    if is_stream(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def open_direct(path: str, binary: bool = False):
    """A direct target opened for appending (a pipe or a device does not mind; a file behind
    ``/dev/stdout`` is not truncated)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as e:
        raise OutputError(f"{shown(path)}: cannot write: {(e.strerror or str(e)).lower()}") from None
    return os.fdopen(fd, "ab" if binary else "a", **({} if binary else {"encoding": "utf-8", "newline": ""}))


def writable_folder(folder: str, make: bool = False) -> str | None:
    """Why nothing can be written in ``folder`` (made first when ``make``), or ``None``: found out
    with a new file of a private name (never a fixed name someone could have planted a link at)."""
    try:
        if make:
            os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".xception-probe-"):
            pass
    except OSError as e:
        return (e.strerror or str(e)).lower()
    return None


def check_parent(path: str, option: str = "-o", companion: bool = False) -> None:
    """Whether ``path`` may be written: no planted link on the way (``check_links``), a folder there."""
    check_links(path, option, companion)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputError(f"{shown(path)}: cannot write: folder {shown(parent)} does not exist")


def check_links(path: str, option: str = "-o", companion: bool = False) -> None:
    """``OutputError`` when writing ``path`` would follow a link another user planted in a shared
    folder (``planted_link``; for a ``companion``, never followed itself, the folders on the way)."""
    found = planted_link(os.path.dirname(os.path.abspath(path)) if companion else path)
    if found is not None:
        link, folder, uid = found
        what = "is a link" if link == os.path.abspath(path) else f"{shown(link)} on the way is a link"
        raise OutputError(f"{shown(path)}: {what} another user (uid {uid}) made in the shared folder "
                          f"{shown(folder)}; it is not followed: choose another {option}, in a folder of your own")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def signals_held():
    """Ctrl-C, SIGTERM and SIGHUP held off for a few system calls (delivered right after)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    except (ValueError, OSError):  # not the main thread's business here, or no such call
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def lock_fd(fd: int, path: str) -> None:
    """An exclusive, non-blocking ``flock``; ``OutputError`` naming ``path`` when another holds it."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise OutputError(f"{shown(path)}: {BUSY}") from None
        raise OutputError(f"{shown(path)}: cannot lock: {e.strerror}") from None


def hidden_prefix(name: str) -> str:
    """``.NAME.``: how the private files and folders written for ``name`` begin (a long name is
    shortened, with a digest of it, so that the whole fits the file system's 255 bytes)."""
    if len(os.fsencode(name)) <= 120:
        return f".{name}."
    import hashlib

    digest = hashlib.blake2b(os.fsencode(name), digest_size=6).hexdigest()
    return f".{os.fsdecode(os.fsencode(name)[:80])}~{digest}."


def _staging_busy(final: str) -> None:
    """``OutputError`` when another writer stages ``final``; a staging folder a killed run left is
    removed (ours, and nobody holds its lock)."""
    parent, name = os.path.split(final)
    prefix = hidden_prefix(name) + STAGING_TAG[1:]
    try:
        entries = [e for e in os.scandir(parent or ".") if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(entry.path, "lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            lock_fd(fd, final)
        finally:
            os.close(fd)
        shutil.rmtree(entry.path, ignore_errors=True)


def claim(final: str, *, lock_existing: bool = True) -> int | None:
    """Become ``final``'s one writer: refuse when another is busy; lock an existing regular file
    (its descriptor is returned, held until published)."""
    _staging_busy(final)
    if not lock_existing:
        return None
    try:
        fd = os.open(final, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link at a companion's name: replaced, never followed
            return None
        raise OutputError(f"{shown(final)}: cannot open: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    try:
        lock_fd(fd, final)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Publication:
    """Files published under their final names only once complete (see the module's docstring).

    ``with Publication(protected) as pub: tmp = pub.stage(final); <write tmp>`` — everything
    staged is published when the block ends without an exception, in staging order.
    """

    def __init__(self, protected: Protected | None = None, option: str = "-o"):
        self.protected = protected or Protected()
        self.option = option
        self._staged: list[tuple[str, str, bool]] = []  # (temporary path, final path, folder?)
        self._dir: str | None = None
        self._locks: list[int] = []

    def stage(self, final: str | os.PathLike, folder: bool = False, companion: bool = False) -> str:
        """A path to write ``final``'s new contents to (a folder to fill when ``folder``).

        The name the user gave: a symbolic link there stays a link, to the new file (one another
        user planted in a shared folder is refused: ``check_links``). A
        ``companion`` (a name derived from it: an IR's ``.bin``, metadata, a report) is never
        followed: a link found there is replaced, whatever it points to is left alone."""
        final = os.fspath(final)
        check_links(final, self.option, companion)
        if is_direct(final):
            raise OutputError(f"{shown(final)}: not a regular file; {self.option} here needs a file name")
        if companion:
            final = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(final))), os.path.basename(final))
        else:
            final = os.path.realpath(final)
        check_parent(final, self.option, companion)
        self.protected.check(final, self.option)
        try:
            st = os.lstat(final) if companion else os.stat(final)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            st = None  # a link at a companion's name is replaced
        if st is not None and stat.S_ISDIR(st.st_mode) and not folder:
            raise OutputError(f"{shown(final)}: is a folder; {self.option} needs a file name here")
        if st is not None and folder and not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{shown(final)}: is a file; this output is a folder")
        if st is not None and folder and os.listdir(final):
            raise OutputError(f"{shown(final)}: is a folder that is not empty; choose a new or empty one")
        if self._dir is None:
            self._open_staging(final)
        else:
            fd = claim(final)
            if fd is not None:
                self._locks.append(fd)
        base = os.path.basename(final)
        if len(os.fsencode(base)) > 200:  # the staged name keeps the extensions tools look at (.weights.h5)
            base = "".join(os.path.splitext(base)[1:]) if base.count(".") < 2 else ".".join(base.split(".")[-2:])
        tmp = os.path.join(self._dir, f"{len(self._staged)}-{base[-60:]}")
        if folder:
            os.mkdir(tmp)
        self._staged.append((tmp, final, folder))
        return tmp

    def _open_staging(self, final: str) -> None:
        fd = claim(final)
        if fd is not None:
            self._locks.append(fd)
        parent, name = os.path.split(final)
        with signals_held():  # a Ctrl-C comes after the folder is known (and removed), never half-way
            try:
                self._dir = tempfile.mkdtemp(prefix=hidden_prefix(name) + STAGING_TAG[1:], dir=parent)
                lock = os.open(os.path.join(self._dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                               0o600)
            except OSError as e:
                self.discard()
                raise OutputError(f"{shown(final)}: cannot write: {(e.strerror or str(e)).lower()}") from None
            self._locks.append(lock)
        lock_fd(lock, final)

    def publish(self) -> list[str]:
        """Everything staged, in place: fsynced, then renamed with Ctrl-C held off; the final paths."""
        mask = _umask()
        for tmp, final, folder in self._staged:
            if not os.path.lexists(tmp):
                raise OutputError(f"{shown(final)}: nothing was written")
            _settle_modes(tmp, final, folder, mask)
        with signals_held():
            try:
                for tmp, final, _ in self._staged:
                    _move(tmp, final)
                for parent in {os.path.dirname(f) for _, f, _ in self._staged}:
                    fsync_path(parent)
            finally:
                self.discard()
        return [final for _, final, _ in self._staged]

    def discard(self) -> None:
        """Remove the staging folder and release the locks (the earlier files are untouched)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        for fd in self._locks:
            os.close(fd)
        self._locks = []

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.publish()
        else:
            self.discard()


def _settle_modes(tmp: str, final: str, folder: bool, mask: int) -> None:
    """Modes as the user expects (an existing file's own, else the umask's), and data on disk."""
    try:
        st = os.lstat(final)
        mode = None if folder or stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
    except OSError:
        mode = None
    if folder:
        os.chmod(tmp, 0o777 & ~mask)
        for root, dirs, files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(root, f), 0o666 & ~mask)
                fsync_path(os.path.join(root, f))
        return
    os.chmod(tmp, mode if mode is not None else 0o666 & ~mask)
    if mode is not None:  # the earlier file's owner and group, where this user may give them
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            try:
                os.chown(tmp, -1, st.st_gid)
            except OSError:
                pass
    fsync_path(tmp)


def fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move(tmp: str, final: str) -> None:
    """Rename into place; a device or a pipe (``/dev/null``, ``>(gzip)``) is written to instead."""
    try:
        st = os.lstat(final)
    except OSError:
        st = None
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        with open(tmp, "rb") as src, open(final, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    os.replace(tmp, final)


def write_bytes(final: str, data: bytes, protected: Protected | None = None, option: str = "-o") -> None:
    """One whole file, published (see ``Publication``); a pipe or a device is written directly."""
    if is_direct(final):
        check_links(final, option)
        (protected or Protected()).check(final, option)
        with open_direct(final, binary=True) as f:
            f.write(data)
        return
    with Publication(protected, option) as pub:
        with open(pub.stage(final), "wb") as f:
            f.write(data)


class publish_text:  # noqa: N801 - used as a context manager, like open()
    """``with publish_text(path) as stream``: a report (summary, benchmark, a trained model's
    report) written whole; the earlier file is replaced only when the block succeeds."""

    def __init__(self, path: str, protected: Protected | None = None, option: str = "-o"):
        self.path = path
        self.existed = os.path.lexists(path)
        self.pub = self.tmp = None
        if is_direct(path):  # a pipe, a device, /dev/stdout: written as it goes
            check_links(path, option)
            (protected or Protected()).check(path, option)
        else:
            self.pub = Publication(protected, option)
            self.tmp = self.pub.stage(path)
        self.stream = None

    def __enter__(self):
        self.stream = open(self.tmp, "w", encoding="utf-8", newline="") if self.pub else open_direct(self.path)
        return self.stream

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stream.close()
        except OSError as e:
            exc_type, exc = exc_type or type(e), exc or e
        if self.pub is not None:
            if exc_type is None:
                self.pub.publish()
            else:
                self.pub.discard()
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):  # a full disk, a quota
            kept = "; the earlier file is as it was" if self.pub is not None and self.existed else ""
            raise OutputError(f"{shown(self.path)}: cannot write: {(exc.strerror or str(exc)).lower()}{kept}") from None
        return False
