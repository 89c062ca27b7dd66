"""The ``-o FILE`` of a predict or embed run: checked and claimed before any work, resumed in the
file's own format, written only when work is done.

- Streaming formats (jsonl, csv, json) write into the file itself, as records come: it is opened
  without truncating and locked, and truncated only by ``begin()`` — an error before that leaves
  an existing file untouched, and a file this run created is removed. A resumed file whose earlier
  records must change (failures dropped, a cut record) is rewritten first, atomically (a new file
  from ``mkstemp`` renamed over it; a file with other hard links is rewritten in place, with a
  copy beside it until the rewrite is on disk).
- Whole formats (npz, parquet) are published when the run ends (``target.Publication``): the
  target is never created or truncated before.
- Anything else (``/dev/null``, a named pipe, ``>(gzip > x)``) is simply written, never resumed.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import IO

from ..errors import OutputError
from .formats import FORMATS
from .paths import shown
from .records import CSV_HEADER
from .resume import Done, Expect, settle, sniff_format
from .target import (
    Protected,
    Publication,
    check_parent,
    claim,
    fsync_path,
    hidden_prefix,
    is_stream,
    kind_of,
    lock_fd,
    open_direct,
    writable_folder,
)

MAX_EARLIER = 4 << 30  # an earlier output read back for --resume: larger is refused, never read whole


class RecordsOutput:
    """``-o FILE`` for records. ``fmt`` None: from the file's contents (resume, unknown extension)."""

    def __init__(self, path: str, fmt: str | None, *, expect: Expect, resume: bool = False,
                 fmt_explicit: bool = False, protected: Protected | None = None):
        self.path, self.expect, self.resume = path, expect, resume
        self.fmt = fmt or "jsonl"  # None: the earlier file says (resume), else JSON Lines
        self.done = Done(bases=(os.path.dirname(os.path.abspath(path)),))
        self.kept: list = []
        self.earlier_records = 0
        self._fd: int | None = None
        self._created = False
        self._pub: Publication | None = None
        self._claim: Publication | None = None  # a new streaming file's name, claimed until begin() makes it
        self.protected = protected or Protected()
        self._mode = "truncate"  # what begin() does: "truncate", "append" or "rewrite"
        self.stream: IO[str] | None = None
        if path.endswith("/"):
            raise OutputError(f"{shown(path)}: a folder; -o DIR/ writes Ray's shards (with --ray), else -o needs a "
                              "file")
        check_parent(path)
        (protected or Protected()).check(path)
        self.existed = os.path.isfile(path) and os.path.getsize(path) > 0
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise OutputError(f"{shown(path)}: cannot write: {e.strerror}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{shown(path)}: is a folder; -o needs a file")
        self.regular = (st is None or stat.S_ISREG(st.st_mode)) and not is_stream(path)
        if not self.regular:
            if resume:
                what = "a stream" if is_stream(path) else kind_of(st.st_mode)
                raise OutputError(f"{shown(path)}: cannot resume into {what}: --resume needs a regular file")
            if not os.access(path, os.W_OK):
                raise OutputError(f"{shown(path)}: cannot write: permission denied")
            return
        try:
            if FORMATS[self.fmt].streaming or (resume and fmt is None):
                self._open_locked()
            else:
                self._pub = Publication(protected)
                self._tmp = self._pub.stage(path)
            if resume:
                self._read_earlier(fmt_explicit)
        except BaseException:
            self.abort()
            raise

    # -- claiming and reading ---------------------------------------------------------------------

    def _open_locked(self) -> None:
        if not os.path.lexists(self.path):  # a new file is made by begin(), when work starts: a run
            self._claim = Publication(self.protected)  # that stops before leaves nothing; the name is
            self._claim.stage(self.path)  # claimed now (a second writer fails at once)
            return
        existed = os.path.exists(self.path)
        claim(self.path, lock_existing=False)  # no other writer staging this name
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            why = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else e.strerror
            raise OutputError(f"{shown(self.path)}: cannot write: {why}") from None
        self._created = not existed
        try:
            lock_fd(self._fd, self.path)
            self._recover()
        except BaseException:
            self._release()
            raise

    def _private(self, suffix: str) -> list[str]:
        folder, name = os.path.split(os.path.realpath(self.path))
        prefix = hidden_prefix(name)
        return [e.path for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(suffix)
                and e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_uid == os.getuid()]

    def _recover(self) -> None:
        """What a killed rewrite left beside the file (we hold its lock: nobody else is writing):
        a complete copy of the rewritten contents (``.xception-backup``) is put back if the file
        differs from it; unfinished copies and temporary files are removed."""
        for path in self._private(".xception-backup"):
            with open(path, "rb") as f:
                data = f.read()
            with open(self._fd, "rb", closefd=False) as f:
                f.seek(0)
                same = f.read() == data
            if not same:
                self._write_in_place(data)
            os.unlink(path)
        for path in self._private(".xception-tmp") + self._private(".xception-part"):
            os.unlink(path)

    def _read_data(self) -> bytes:
        if self._fd is not None:
            size = os.fstat(self._fd).st_size
            if size > MAX_EARLIER:
                raise OutputError(f"{shown(self.path)}: {size} bytes is more than --resume reads; choose another -o")
            with open(self._fd, "rb", closefd=False) as f:
                f.seek(0)
                return f.read()
        try:
            with open(self.path, "rb") as f:
                return f.read(MAX_EARLIER + 1)
        except FileNotFoundError:
            return b""

    def _read_earlier(self, fmt_explicit: bool) -> None:
        data = self._read_data()
        try:
            found = sniff_format(data)
        except ValueError as e:
            why = f"not an {self.fmt} file (an earlier xception embed output)" if not FORMATS[self.fmt].streaming else e
            raise OutputError(f"{shown(self.path)}: {why}; refusing to resume into it") from None
        if found is not None and self.expect.key not in FORMATS[found].heads:
            from .records import COMMAND

            other = next(k for k in COMMAND if k in FORMATS[found].heads)
            raise OutputError(f"{shown(self.path)}: holds xception {COMMAND[other]} output ({found}), which "
                              f"{COMMAND[self.expect.key]} cannot continue: choose another -o")
        if found is not None and found != self.fmt:
            if not FORMATS[found].resumable or fmt_explicit:
                hint = f"; use -f {found} to continue it" if FORMATS[found].resumable else ""
                raise OutputError(f"{shown(self.path)}: holds {found} output, cannot resume it as {self.fmt}{hint}")
            if FORMATS[found].streaming != FORMATS[self.fmt].streaming:
                raise OutputError(f"{shown(self.path)}: holds {found} output; resume it with -o NAME"
                                  f"{FORMATS[found].extensions[0]}")
            self.fmt = found
        if self.expect.key not in FORMATS[self.fmt].heads:
            raise OutputError(f"{shown(self.path)}: holds {self.fmt} output, which this command does not write: "
                              "choose another -o")
        if not FORMATS[self.fmt].resumable:
            raise OutputError(f"{shown(self.path)}: --resume works with jsonl, csv, npz or parquet output, "
                              f"not {self.fmt}")
        if found is None:
            return  # an empty file: written from the start
        try:
            entries = FORMATS[self.fmt].reader(data, self.expect.key, strict=True)
        except (ValueError, OSError, KeyError) as e:
            raise OutputError(f"{shown(self.path)}: cannot read it as {self.fmt} ({str(e).splitlines()[0]}); "
                              "refusing to resume into it: choose another -o") from None
        self.kept = settle(entries, self.expect, shown(self.path))
        self.done.add(self.kept)
        self.earlier_records = len(self.kept)
        if FORMATS[self.fmt].streaming:
            unchanged = self._kept_text().encode("utf-8", "surrogateescape") == data
            self._mode = "append" if unchanged else "rewrite"
            if self._mode == "rewrite":  # found out now, not after the model has loaded
                self._check_folder_writable()

    def _check_folder_writable(self) -> None:
        why = writable_folder(os.path.dirname(os.path.realpath(self.path)))
        if why:
            raise OutputError(f"{shown(self.path)}: cannot resume: its failed or cut records must be dropped, and "
                              f"its folder cannot be written ({why})")

    def _kept_text(self) -> str:
        head = CSV_HEADER + "\n" if self.fmt == "csv" else ""
        return head + "".join(e.text for e in self.kept)

    # -- writing ----------------------------------------------------------------------------------

    @property
    def append(self) -> bool:
        """Whether ``begin()`` continues an earlier file (no CSV header then)."""
        return self._mode != "truncate"

    def writer(self, options: dict | None = None, meta: dict | None = None):
        """The writer for this file (streaming formats start writing now)."""
        if not FORMATS[self.fmt].streaming:
            return FORMATS[self.fmt].writer(self._publish, self.fmt, meta or {}, earlier=self.kept)
        return FORMATS[self.fmt].writer(self.begin(), append=self.append, options=options)

    def begin(self) -> IO[str]:
        """The text stream to write records to, from now on (truncating or rewriting as decided)."""
        if not self.regular:
            self.stream = open_direct(self.path)
            return self.stream
        if self._fd is None:
            self._create()
        if self._mode == "rewrite":
            self._rewrite(self._kept_text().encode("utf-8", "surrogateescape"))
        elif self._mode == "truncate":
            os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_END)
        self.stream = open(self._fd, "w", encoding="utf-8", newline="", closefd=False)
        return self.stream

    def _create(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise OutputError(f"{shown(self.path)}: cannot write: {(e.strerror or str(e)).lower()}") from None
        self._created = True
        lock_fd(self._fd, self.path)
        self._claim.discard()
        self._claim = None

    def _publish(self, data: bytes) -> None:
        if self._pub is None:  # a pipe or a device: just written
            with open_direct(self.path, binary=True) as f:
                f.write(data)
            return
        with open(self._tmp, "wb") as f:
            f.write(data)
        pub, self._pub = self._pub, None
        pub.publish()

    def _rewrite(self, data: bytes) -> None:
        """Resume after dropping failed or cut records: the kept records as a new file, renamed over
        the old one (locked before it takes the name), or rewritten in place for a hard-linked file."""
        target = os.path.realpath(self.path)  # a symbolic link stays a link to the new file
        if os.fstat(self._fd).st_nlink > 1:
            self._rewrite_in_place(target, data)
            return
        folder, name = os.path.split(target)
        fd, tmp = tempfile.mkstemp(prefix=hidden_prefix(name), suffix=".xception-tmp", dir=folder)
        try:
            lock_fd(fd, self.path)
            _write_all(fd, data)
            os.fsync(fd)
            before = os.fstat(self._fd)
            os.fchmod(fd, stat.S_IMODE(before.st_mode))
            try:
                os.fchown(fd, before.st_uid, before.st_gid)  # the earlier file's owner and group, where we may
            except OSError:
                pass
            os.replace(tmp, target)
            fsync_path(folder)  # the new name on disk too
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        os.close(self._fd)  # releases the old inode's lock; the new one is held already
        self._fd = fd
        self._mode = "append"

    def _rewrite_in_place(self, target: str, data: bytes) -> None:
        """Every hard link sees the new contents; a copy of them lies beside the file (a new,
        private name) until the rewrite is on disk, so a crash in between loses nothing."""
        folder, name = os.path.split(target)
        fd, part = tempfile.mkstemp(prefix=hidden_prefix(name), suffix=".xception-part", dir=folder)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        backup = part.removesuffix(".xception-part") + ".xception-backup"  # only ever a complete copy
        os.rename(part, backup)
        self._write_in_place(data)
        os.unlink(backup)
        self._mode = "append"

    def _write_in_place(self, data: bytes) -> None:
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(self._fd, view[offset:], offset)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        """Give up before anything was written: a file this run created is removed, an existing one
        untouched, a staged one discarded."""
        if self.stream is None and self._created and self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self._claim is not None:
            self._claim.discard()
            self._claim = None
        if self._pub is not None:
            self._pub.discard()
            self._pub = None
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self._release()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
