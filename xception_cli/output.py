"""Machine-readable output: JSON, JSON Lines and CSV writers, the ``-o`` file, and ``--resume``.

Writers take finished batches and flush after each, writing whole lines only, so a run that is
killed keeps every completed record. ``OutputFile`` owns an ``-o FILE``: it refuses targets that
would destroy data, holds an exclusive lock while writing (a second writer fails at once), and
for ``--resume`` reads what is already there, in that file's own format. No Click or Rich here.

File names that are not valid UTF-8 are written as valid UTF-8: each undecodable byte appears as
``\\xNN`` in ``path`` (readable), and JSON records carry the exact bytes in ``path_base64``.
"""

from __future__ import annotations

import base64
import csv
import errno
import io
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from .errors import OutputError
from .pipeline import Record

FORMATS = ("table", "json", "jsonl", "csv")
RESUMABLE = ("jsonl", "csv", "npz", "parquet")
ARRAY_FORMATS = ("npz", "parquet")  # embeddings, written whole (atomically) when the run ends
CSV_FIELDS = ("path", "rank", "index", "wnid", "label", "probability", "error")
CSV_HEADER = ",".join(CSV_FIELDS)
EXTENSION_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "table",
                     ".npz": "npz", ".parquet": "parquet", ".pq": "parquet"}


def format_for_path(path: str) -> str | None:
    return EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())


# ---------------------------------------------------------------------------------------------
# Paths as text


def display_path(path: str) -> tuple[str, str | None]:
    """``(readable UTF-8 text, base64 of the exact bytes or None)`` for a path from the file system.

    Python keeps undecodable bytes of file names as lone surrogates; those cannot be written as
    UTF-8. Such a name is shown with ``\\xNN`` for each bad byte, and its bytes kept in base64.
    """
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "surrogateescape") if _only_escapes(path) else path.encode("utf-8", "replace")
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")


def _only_escapes(path: str) -> bool:
    try:
        path.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


def path_key(path: str) -> str:
    """How two spellings of one file compare (``imgs/a.jpg`` and ``/abs/imgs/a.jpg``)."""
    return os.path.realpath(path)


_HEX_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _keys_of_path(path: str, base: str | None) -> set[str]:
    """Keys of a recorded path: resolved from the current folder and, for a relative path, from
    ``base`` too (the output file's folder: an earlier run started there is matched from anywhere)."""
    keys = {path_key(path)}
    if base is not None and not os.path.isabs(path):
        keys.add(path_key(os.path.join(base, path)))
    return keys


def _keys_of_text(text: str, base: str | None) -> set[str]:
    """Keys of a path read back from CSV: as written, and with ``\\xNN`` turned back into bytes."""
    keys = _keys_of_path(text, base)
    if _HEX_ESCAPE.search(text):
        raw = _HEX_ESCAPE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), text)
        keys |= _keys_of_path(os.fsdecode(raw.encode("utf-8", "surrogateescape")), base)
    return keys


# ---------------------------------------------------------------------------------------------
# Records


def _prob(p: float) -> float:
    return float(f"{p:.6g}")


def record_dict(r: Record) -> dict:
    d = r.to_dict()
    text, raw = display_path(r.path)
    d["path"] = text
    if raw is not None:
        d = {"path": text, "path_base64": raw, **{k: v for k, v in d.items() if k != "path"}}
    for p in d.get("predictions", ()):
        p["probability"] = _prob(p["probability"])
    return d


def csv_rows(r: Record) -> list[list]:
    path = display_path(r.path)[0]
    if r.error is not None:
        return [[path, "", "", "", "", "", r.error]]
    return [[path, p.rank, p.index, p.wnid, p.label, _prob(p.probability), ""] for p in r.predictions]


def _csv_line(row) -> str:
    buf = io.StringIO()
    # The csv module quotes a field holding "\n" but not one holding a lone "\r" (with "\n" as line
    # terminator): such a row is quoted whole, or a reader would split it in two.
    quoting = csv.QUOTE_ALL if any("\r" in str(v) for v in row) else csv.QUOTE_MINIMAL
    csv.writer(buf, lineterminator="\n", quoting=quoting).writerow(row)
    return buf.getvalue()


class Writer:
    """Base: ``write(batch)`` per finished batch, ``close()`` at the end (always a valid document)."""

    def __init__(self, stream: IO[str], append: bool = False, options: dict | None = None):
        self.stream = stream
        self.append = append
        self.options = options  # for embeddings, how they were made (only JSON Lines records it)

    def write(self, records: Iterable[Record]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class JsonlWriter(Writer):
    """``options``: for embeddings, how they were made (``EMBED_OPTIONS``), on every vector's line,
    so a jsonl file can be checked on ``--resume`` and by ``similar`` as npz and parquet are."""

    def _dict(self, r: Record) -> dict:
        d = record_dict(r)
        if self.options and r.embedding is not None:
            vector = d.pop("embedding")
            d = {**d, "options": self.options, "embedding": vector}
        return d

    def write(self, records):
        self.stream.write("".join(json.dumps(self._dict(r), ensure_ascii=False) + "\n" for r in records))
        self.stream.flush()


EMBED_OPTIONS = ("pooling", "normalize", "weights", "resize")  # what makes two embeddings comparable


def check_same_options(path: str, earlier: dict | None, now: dict) -> None:
    """``OutputError`` when an earlier output's embeddings were made with other options."""
    if not earlier:
        return
    mismatch = {k: (earlier[k], now[k]) for k in EMBED_OPTIONS if k in earlier and k in now and earlier[k] != now[k]}
    if mismatch:
        raise OutputError(f"{path}: holds embeddings made with other options "
                          + ", ".join(f"{k}={a} (now {b})" for k, (a, b) in mismatch.items())
                          + ": resume with the same options, or choose another -o")


class CsvWriter(Writer):
    def __init__(self, stream, append=False, options=None):
        super().__init__(stream, append, options)
        self._header = not append

    def _start(self) -> str:
        head, self._header = (CSV_HEADER + "\n" if self._header else ""), False
        return head

    def write(self, records):
        self.stream.write(self._start() + "".join(_csv_line(row) for r in records for row in csv_rows(r)))
        self.stream.flush()

    def close(self):
        self.stream.write(self._start())
        super().close()


class JsonWriter(Writer):
    """One JSON array, streamed: a record per line, ``]`` on close (``[]`` when there were none)."""

    def __init__(self, stream, append=False, options=None):
        super().__init__(stream, append, options)
        self.count = 0

    def write(self, records):
        parts = []
        for r in records:
            parts.append(("," if self.count else "[") + "\n  " + json.dumps(record_dict(r), ensure_ascii=False))
            self.count += 1
        self.stream.write("".join(parts))
        self.stream.flush()

    def close(self):
        self.stream.write("\n]\n" if self.count else "[]\n")
        self.stream.flush()


WRITERS = {"jsonl": JsonlWriter, "csv": CsvWriter, "json": JsonWriter}


# ---------------------------------------------------------------------------------------------
# --resume: what an earlier output file already holds


def sniff_format(text: str) -> str | None:
    """The format of an earlier output's text: ``jsonl``, ``csv``, ``json``, or ``None`` if empty;
    raises ``ValueError`` for text that is none of them."""
    head = text.lstrip()
    if not head:
        return None
    if text.startswith(CSV_HEADER + "\n") or text == CSV_HEADER:
        return "csv"
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "jsonl"
    raise ValueError("not an earlier xception output (neither JSON Lines nor CSV)")


def read_completed(text: str, fmt: str, base: str | None = None, key: str = "predictions"
                   ) -> tuple[set[str], list[str]]:
    """From an earlier ``-o`` file's text: the keys (``path_key``) of the inputs classified
    successfully, and the serialized records to keep (each ending in a newline).

    Error records (to be retried) and a last record cut short by a kill are dropped; a path
    recorded twice is kept once. For CSV the header is the first kept entry. Relative paths are
    resolved from the current folder and from ``base`` (see ``_keys_of_path``).
    """
    if fmt == "jsonl":
        return _read_jsonl(text, base, key)
    if fmt == "csv":
        return _read_csv(text, base)
    raise ValueError(f"--resume works with jsonl or csv output, not {fmt}")


TASK_OF_KEY = {"predictions": "predict", "embedding": "embed"}


def _read_jsonl(text: str, base: str | None, key: str) -> tuple[set[str], list[str]]:
    """``ValueError`` when the file holds the other command's records (never dropped silently)."""
    other = "embedding" if key == "predictions" else "predictions"
    lines = text.split("\n")
    lines.pop()  # "" after the final newline, or a last line cut short by a kill
    done: set[str] = set()
    kept: list[str] = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and other in rec:
            raise ValueError(f"holds {TASK_OF_KEY[other]} output, not {TASK_OF_KEY[key]} output")
        if not (isinstance(rec, dict) and key in rec and isinstance(rec.get("path"), str)):
            continue
        raw = rec.get("path_base64")
        try:
            path = os.fsdecode(base64.b64decode(raw, validate=True)) if isinstance(raw, str) else rec["path"]
        except ValueError:
            continue
        keys = _keys_of_path(path, base)
        if not keys & done:
            done |= keys
            kept.append(line + "\n")
    return done, kept


def _read_csv(text: str, base: str | None) -> tuple[set[str], list[str]]:
    if not text.endswith("\n"):  # a last row cut short by a kill
        text = text[: text.rfind("\n") + 1]
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        rows = _rows_until_error(text)
    if not rows or rows[0] != list(CSV_FIELDS):
        return set(), [CSV_HEADER + "\n"]
    by_path: dict[str, list[list[str]]] = {}
    for row in rows[1:]:
        if len(row) != len(CSV_FIELDS) or row[6] or not row[1].isdigit():
            continue
        by_path.setdefault(row[0], []).append(row)
    # A batch cut short by a kill can leave a path with only its first few rows: a path is
    # complete only with ranks 1..n, n being the most rows any path has.
    expected = [str(i) for i in range(1, max((len(r) for r in by_path.values()), default=0) + 1)]
    done: set[str] = set()
    kept = [CSV_HEADER + "\n"]
    for path, prows in by_path.items():
        keys = _keys_of_text(path, base)
        if [r[1] for r in prows] == expected and not keys & done:
            done |= keys
            kept.append("".join(_csv_line(r) for r in prows))
    return done, kept


def _rows_until_error(text: str) -> list[list[str]]:
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        try:
            rows.append(next(reader))
        except (csv.Error, StopIteration):
            return rows


# ---------------------------------------------------------------------------------------------
# The -o file


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


class OutputFile:
    """An ``-o FILE`` target, checked and locked before any work, written only when work is done.

    - A regular file (or a new one) is opened without truncating and locked (``flock``, exclusive,
      non-blocking): a second ``xception`` writing to it fails at once with ``OutputError``. It is
      truncated only by ``begin()``, so an error before that leaves an existing file untouched
      (and removes a file that this run created).
    - Anything else (``/dev/null``, a named pipe, ``>(gzip > x)``) is simply opened for writing
      by ``begin()``, and cannot be resumed.
    - ``resume=True`` reads what the file holds (in its own format: ``fmt`` is adjusted to it
      unless ``fmt_explicit`` and different, which is refused) and ``begin()`` appends after the
      records worth keeping.
    """

    def __init__(self, path: str, fmt: str, *, resume: bool = False, fmt_explicit: bool = False,
                 key: str = "predictions"):
        self.path, self.fmt, self.resume, self.key = path, fmt, resume, key
        self.earlier_arrays: EmbeddingTable | None = None  # npz/parquet: what an earlier run kept
        self.done: set[str] = set()
        self.earlier_records = 0
        self.earlier_options: dict | None = None  # jsonl embeddings: the options they were made with
        self.earlier_k: int | None = None  # labels per image in an earlier predict output
        self._mode = "truncate"  # what begin() does: "truncate", "append" or "rewrite" (self._kept)
        self._kept: list[str] = []
        self._fd: int | None = None
        self._created = False
        self.stream: IO[str] | None = None
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"{path}: cannot write: folder {parent} does not exist")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise OutputError(f"{path}: cannot write: {e.strerror}") from None
        self.regular = st is None or stat.S_ISREG(st.st_mode)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path}: is a folder; -o needs a file")
        if not self.regular:
            if resume:
                raise OutputError(f"{path}: cannot resume into {_kind(st.st_mode)}: --resume needs a regular file")
            if not os.access(path, os.W_OK):
                raise OutputError(f"{path}: cannot write: permission denied")
            return
        self._open_locked()
        if resume:
            try:
                self._read_earlier(fmt_explicit)
            except BaseException:
                self.abort()
                raise

    def _open_locked(self) -> None:
        import fcntl

        existed = os.path.exists(self.path)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            why = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else e.strerror
            raise OutputError(f"{self.path}: cannot write: {why}") from None
        self._created = not existed
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._release()
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{self.path}: another process is writing to this file "
                                  "(an xception run still going?); choose another -o or wait for it") from None
            raise OutputError(f"{self.path}: cannot lock: {e.strerror}") from None

    def _read_earlier(self, fmt_explicit: bool) -> None:
        with open(self._fd, "rb", closefd=False) as f:
            data = f.read()
        text = data.decode("utf-8", "surrogateescape")  # older files may hold raw bytes: never fail here
        try:
            found = _sniff_binary(data) or sniff_format(text)
        except ValueError as e:
            why = f"not an {self.fmt} file (an earlier xception embed output)" if self.fmt in ARRAY_FORMATS else e
            raise OutputError(f"{self.path}: {why}; refusing to resume into it") from None
        if found is not None and found != self.fmt:
            if found not in RESUMABLE or fmt_explicit:
                hint = f"; use -f {found} to continue it" if found in RESUMABLE else ""
                raise OutputError(f"{self.path}: holds {found} output, cannot resume it as {self.fmt}{hint}")
            self.fmt = found
        if self.fmt not in RESUMABLE:
            raise OutputError(f"{self.path}: --resume works with jsonl or csv output, not {self.fmt}")
        if found is None:
            return  # an empty file: written from the start
        base = os.path.dirname(os.path.abspath(self.path))
        if self.fmt in ARRAY_FORMATS:
            try:
                self.earlier_arrays = EmbeddingTable.from_bytes(data, self.fmt)
            except (ValueError, OSError, KeyError) as e:
                raise OutputError(f"{self.path}: cannot read it as {self.fmt} ({str(e).splitlines()[0]}); "
                                  "refusing to resume into it") from None
            self.done = set().union(*(_keys_of_path(p, base) for p in self.earlier_arrays.paths))
            self.earlier_records = len(self.earlier_arrays.paths)
            self._mode = "append"  # the writer writes everything, old and new, when the run ends
            return
        try:
            self.done, self._kept = read_completed(text, self.fmt, base=base, key=self.key)
        except ValueError as e:
            raise OutputError(f"{self.path}: {e}; refusing to resume into it: choose another -o") from None
        self.earlier_records = len(self._kept) - (self.fmt == "csv")
        if self.fmt == "jsonl" and self._kept:
            first = json.loads(self._kept[0])
            self.earlier_options = first.get("options") if isinstance(first.get("options"), dict) else None
            if isinstance(first.get("predictions"), list) and first["predictions"]:
                self.earlier_k = len(first["predictions"])
        elif self.fmt == "csv" and len(self._kept) > 1:  # kept[1]: every row of the first path
            self.earlier_k = len(list(csv.reader(io.StringIO(self._kept[1], newline=""))))
        # Something to drop (failures, a cut line, duplicates): rewritten by begin(); else appended.
        unchanged = "".join(self._kept).encode("utf-8", "surrogateescape") == data
        self._mode = "append" if unchanged else "rewrite"

    @property
    def append(self) -> bool:
        """Whether ``begin()`` continues an earlier file (no CSV header then)."""
        return self._mode != "truncate"

    def begin(self) -> IO[str]:
        """The text stream to write records to, from now on (truncating or rewriting as decided)."""
        if not self.regular:
            self.stream = open(self.path, "w", encoding="utf-8", newline="")
            return self.stream
        if self._mode == "rewrite":  # resume after dropping failed or cut records: atomic, lock kept
            self._rewrite(self._kept)
        elif self._mode == "truncate":
            os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_END)
        self.stream = open(self._fd, "w", encoding="utf-8", newline="", closefd=False)
        return self.stream

    def _rewrite(self, kept: list[str]) -> None:
        self.replace_contents("".join(kept).encode("utf-8", "surrogateescape"))

    def replace_contents(self, data: bytes) -> None:
        """Replace the file by ``data`` atomically; the new file is locked before it takes the name."""
        import fcntl

        if not self.regular:  # /dev/null, a pipe: nothing to replace, just write
            with open(self.path, "wb") as f:
                f.write(data)
            return
        target = os.path.realpath(self.path)  # a symbolic link stays a link to the new file
        if os.fstat(self._fd).st_nlink > 1:
            self._rewrite_in_place(target, data)
            return
        tmp = f"{target}.resume-tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.chmod(tmp, stat.S_IMODE(os.fstat(self._fd).st_mode))
            os.replace(tmp, target)
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        os.close(self._fd)  # releases the old inode's lock; the new one is held already
        self._fd = fd
        self._mode, self._kept = "append", []

    def _rewrite_in_place(self, target: str, data: bytes) -> None:
        """A file with other hard links keeps its identity (every name sees the new contents): it
        is rewritten in place, under the lock already held, with a copy of the new contents beside
        it until the rewrite is on disk (after a crash it holds everything)."""
        backup = f"{target}.resume-backup"
        with open(backup, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(self._fd, view[offset:], offset)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)
        os.unlink(backup)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._mode, self._kept = "append", []

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        """Give up before ``begin()``: a file this run created is removed, an existing one untouched."""
        if self.stream is None and self._created and self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        self._release()


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
        except OSError:
            continue
    return None


class open_for_writing:  # noqa: N801 - used as a context manager, like open()
    """``with open_for_writing(path) as stream``: an ``OutputFile`` for a one-shot report (summary,
    benchmark): locked, and an existing file is replaced only when the body succeeds."""

    def __init__(self, path: str):
        self.out = OutputFile(path, "report")

    def __enter__(self) -> IO[str]:
        return self.out.begin()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.out.close()
        else:
            self.out.abort()



# ---------------------------------------------------------------------------------------------
# Embeddings as arrays: npz and parquet


def _sniff_binary(data: bytes) -> str | None:
    if data.startswith(b"PK\x03\x04"):
        return "npz"
    if data.startswith(b"PAR1"):
        return "parquet"
    return None


PARQUET_HINT = "the parquet format needs pyarrow: pip install 'xception-cli[parquet]'"


@dataclass
class EmbeddingTable:
    """Embeddings in input order plus the failures: what ``npz`` and ``parquet`` files hold.

    npz: arrays ``paths`` (str), ``embeddings`` (float32 ``[N, D]``), ``failed_paths``,
    ``failed_errors`` and ``meta`` (a JSON string: pooling, normalisation, weights...).
    parquet: columns ``path`` (string), ``embedding`` (fixed-size list of float32, null for a
    failure) and ``error`` (null for a success); ``meta`` in the schema's metadata.
    """

    paths: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def embeddings(self) -> np.ndarray:
        if not self.vectors:
            return np.zeros((0, 0), np.float32)
        return np.stack(self.vectors).astype(np.float32, copy=False)

    def to_bytes(self, fmt: str) -> bytes:
        buf = io.BytesIO()
        shown = [display_path(p) for p in self.paths]  # text, and the exact bytes of non-UTF-8 names
        texts, raws = [t for t, _ in shown], [r or "" for _, r in shown]
        if fmt == "npz":
            np.savez(buf, paths=np.array(texts, dtype=str), paths_base64=np.array(raws, dtype=str),
                     embeddings=self.embeddings,
                     failed_paths=np.array([p for p, _ in self.failed], dtype=str),
                     failed_errors=np.array([e for _, e in self.failed], dtype=str),
                     meta=np.array(json.dumps(self.meta)))
            return buf.getvalue()
        pa, pq = _pyarrow()
        dim = self.embeddings.shape[1] if self.vectors else int(self.meta.get("dimensions", 2048))
        emb_type = pa.list_(pa.float32(), dim)
        rows_emb = [v.astype(np.float32).tolist() for v in self.vectors] + [None] * len(self.failed)
        table = pa.table(
            {"path": pa.array(texts + [p for p, _ in self.failed], pa.string()),
             "path_base64": pa.array([r or None for r in raws] + [None] * len(self.failed), pa.string()),
             "embedding": pa.array(rows_emb, emb_type),
             "error": pa.array([None] * len(self.vectors) + [e for _, e in self.failed], pa.string())},
        ).replace_schema_metadata({"xception": json.dumps(self.meta)})
        pq.write_table(table, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, fmt: str) -> EmbeddingTable:
        if fmt == "npz":
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"])) if "meta" in z else {}
                failed = list(zip(z["failed_paths"].tolist(), z["failed_errors"].tolist())) \
                    if "failed_paths" in z else []
                emb = z["embeddings"]
                paths = z["paths"].tolist()
                if "paths_base64" in z:
                    paths = [os.fsdecode(base64.b64decode(r)) if r else p
                             for p, r in zip(paths, z["paths_base64"].tolist())]
                return cls(paths, list(emb) if len(emb) else [], failed, meta)
        pa, pq = _pyarrow()
        # use_threads=False: pyarrow 26's threaded read can abort the interpreter at exit
        # ("terminate called without an active exception", exit 134) about one run in three.
        table = pq.read_table(io.BytesIO(data), use_threads=False)
        raw = (table.schema.metadata or {}).get(b"xception")
        meta = json.loads(raw) if raw else {}
        out = cls(meta=meta)
        names = table.column_names
        if "embedding" not in names and "predictions" in names:
            raise ValueError("it holds predictions, not embeddings")
        errors = table.column("error").to_pylist() if "error" in names else [None] * table.num_rows
        # a Ray shard in which every image failed has no embedding column at all
        vectors = table.column("embedding").to_pylist() if "embedding" in names else [None] * table.num_rows
        paths = table.column("path").to_pylist()
        if "path_base64" in names:  # a Ray shard: the exact bytes of names that are not UTF-8
            paths = [os.fsdecode(base64.b64decode(r)) if r else p
                     for p, r in zip(paths, table.column("path_base64").to_pylist())]
        for path, vec, err in zip(paths, vectors, errors):
            if err is None and vec is not None:
                out.paths.append(path)
                out.vectors.append(np.asarray(vec, np.float32))
            else:
                out.failed.append((path, err or "no embedding"))
        return out


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError(PARQUET_HINT) from None
    return pa, pq


class ArrayWriter:
    """npz / parquet: records are gathered (about 8 KB an image) and the file is written whole, and
    atomically, by ``close()`` — a killed run leaves the earlier file as it was (use jsonl for a
    file that grows as it goes). ``earlier``: what a resumed file already held (kept, failures
    dropped: they are retried)."""

    def __init__(self, out: OutputFile, fmt: str, meta: dict, earlier: EmbeddingTable | None = None):
        if fmt == "parquet":
            _pyarrow()  # fail before any work, not at the end
        self.out, self.fmt = out, fmt
        self.table = EmbeddingTable(meta=dict(meta))
        if earlier is not None:
            check_same_options(out.path, earlier.meta, meta)
            self.table.paths, self.table.vectors = list(earlier.paths), list(earlier.vectors)

    def write(self, records) -> None:
        for r in records:
            if r.error is not None:
                self.table.failed.append((display_path(r.path)[0], r.error))
            else:
                self.table.paths.append(r.path)  # the real name: to_bytes keeps its exact bytes
                self.table.vectors.append(np.asarray(r.embedding, np.float32))

    def close(self) -> None:
        if self.table.vectors:
            self.table.meta["dimensions"] = int(self.table.vectors[0].shape[0])
        self.out.replace_contents(self.table.to_bytes(self.fmt))


SHARD_SUFFIXES = (".jsonl", ".parquet")


def load_embeddings(path: str) -> EmbeddingTable:
    """Read an ``xception embed`` output back; ``OutputError`` if it is none.

    ``path``: an npz, parquet or jsonl file, or a folder of the ``.jsonl`` / ``.parquet`` shards
    that ``embed --ray -o DIR/`` writes (``xception-embed-*``, merged in path order since shards
    hold no input order; a path in several shards counts once, its last).
    """
    if os.path.isdir(path):
        shards = sorted(e.path for e in os.scandir(path)
                        if e.name.startswith("xception-embed-") and e.name.endswith(SHARD_SUFFIXES) and e.is_file())
        if not shards:
            raise OutputError(f"{path}: a folder without xception-embed-*.jsonl or .parquet shards (expected "
                              "the output of xception embed --ray -o DIR/)")
        vectors: dict[str, np.ndarray] = {}  # a path in several shards (reruns, formats): the last
        failed: dict[str, str] = {}
        meta: dict = {}
        for shard in shards:
            part = _read_embeddings_file(shard)
            meta = meta or part.meta
            vectors.update(zip(part.paths, part.vectors))
            failed.update(part.failed)
        table = EmbeddingTable(paths=sorted(vectors), meta=meta,
                               failed=sorted((p, e) for p, e in failed.items() if p not in vectors))
        table.vectors = [vectors[p] for p in table.paths]
    else:
        table = _read_embeddings_file(path)
    if not table.vectors:
        if table.failed:
            raise OutputError(f"{path}: holds no embeddings: every image in it failed ({len(table.failed)} error "
                              "record(s))")
        raise OutputError(f"{path}: holds no embeddings (expected the output of xception embed: npz, parquet "
                          "or jsonl)")
    dims = {v.shape[0] for v in table.vectors}
    if len(dims) != 1:
        raise OutputError(f"{path}: embeddings of different lengths {sorted(dims)}")
    return table


def _read_embeddings_file(path: str) -> EmbeddingTable:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OutputError(f"{path}: cannot read ({e.strerror})") from None
    fmt = _sniff_binary(data)
    try:
        if fmt is not None:
            return EmbeddingTable.from_bytes(data, fmt)
        table = EmbeddingTable()
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("embedding"), list):
                if not table.meta and isinstance(rec.get("options"), dict):
                    table.meta = dict(rec["options"])
                raw = rec.get("path_base64")
                table.paths.append(os.fsdecode(base64.b64decode(raw)) if raw else rec["path"])
                table.vectors.append(np.asarray(rec["embedding"], np.float32))
            elif isinstance(rec, dict) and "error" in rec:
                table.failed.append((rec.get("path", ""), rec["error"]))
            elif isinstance(rec, dict) and "predictions" in rec:
                raise OutputError(f"{path}: holds predict output (labels), not embeddings: make them with "
                                  "xception embed")
        return table
    except OutputError:
        raise
    except (ValueError, OSError, KeyError) as e:
        raise OutputError(f"{path}: cannot read embeddings ({str(e).splitlines()[0]})") from None
