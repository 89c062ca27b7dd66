"""The predict (and embed) job, without Click: inputs -> records -> output, with resume, locking
and progress.

``PredictJob(options, ui).run()`` returns the exit status; ``options.head`` says what the network's
output becomes (``heads.Classify``: labels, the default; ``heads.Embed``: feature vectors).
Everything a person sees (warnings, progress, the closing line, the table) goes through ``ui``, a
small interface the command line implements with Rich; a program can pass ``QuietUI`` or its own.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import IO, Protocol

from .discovery import discover
from .errors import ImageError, OutputError, XceptionError
from .output import (
    ARRAY_FORMATS,
    EMBED_OPTIONS,
    WRITERS,
    ArrayWriter,
    OutputFile,
    check_same_options,
    display_path,
    path_key,
    same_file_as_any,
)
from .pipeline import Record, Stats
from .weights import weights_files

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MISSING = "no such file or directory"


def caused_by_interrupt(e: BaseException) -> bool:
    """Whether a KeyboardInterrupt lies behind ``e`` (Ctrl-C during a C extension's import surfaces
    as an ``ImportError`` raised from it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


class NoInputs(XceptionError):
    """Nothing to classify: every input is missing or empty."""


class ProgressHandle(Protocol):
    def advance(self, n: int, failed: int) -> None: ...

    def close(self) -> None: ...


class UI(Protocol):
    """What a person sees while a job runs (stderr on the command line)."""

    def warn(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...

    def download(self, done: int, total: int | None) -> None: ...

    def progress(self, total: int, label: str = "classifying") -> ProgressHandle | None: ...

    def table(self, records: list[Record], stream: IO[str]) -> None: ...


class _NoProgress:
    def advance(self, n, failed):
        pass

    def close(self):
        pass


class QuietUI:
    """A UI that shows nothing (warnings are still kept in ``self.warnings``)."""

    def __init__(self):
        self.warnings: list[str] = []

    def warn(self, message):
        self.warnings.append(message)

    def info(self, message):
        pass

    def download(self, done, total):
        pass

    def progress(self, total, label="classifying"):
        return None

    def table(self, records, stream):
        raise XceptionError("the table format needs a UI that can draw tables")


@dataclass
class PredictOptions:
    inputs: list[str]
    top_k: int = 5
    fmt: str | None = None  # None: from the output's extension (as the command does), else jsonl
    fmt_explicit: bool = False
    output: str | None = None
    batch_size: int = 8
    workers: int | None = None
    weights: str | None = "imagenet"
    resize: str = "center-crop"
    precision: str = "float32"
    runtime: str | None = None
    resume: bool = False
    head: object = None  # heads.Classify(top_k) when None

    def __post_init__(self):
        if self.head is None:
            from .heads import Classify

            self.head = Classify(self.top_k)
        if self.fmt is None:
            from .output import format_for_path

            guessed = format_for_path(self.output) if self.output else None
            self.fmt = guessed if guessed in self.head.formats and guessed != "table" else "jsonl"
        valid = (*self.head.formats, "parquet")  # parquet: Ray shards
        if self.fmt not in valid:
            raise OutputError(f"unknown output format {self.fmt!r}: choose one of {', '.join(valid)}")


class PredictJob:
    def __init__(self, options: PredictOptions, ui: UI, stdout: IO[str] | None = None,
                 started: float | None = None):
        """``started``: ``time.perf_counter()`` when the command began (the closing line counts from it)."""
        self.o = options
        self.ui = ui
        self.stdout = stdout if stdout is not None else sys.stdout
        self.started = started if started is not None else time.perf_counter()

    # -- the steps ---------------------------------------------------------------------------

    def _inputs(self) -> list[tuple[str, object]]:
        found = discover(self.o.inputs)
        if not found.paths:
            problems = [f"{display_path(raw)[0]}: {MISSING}" for raw in found.missing]
            problems += [f"{display_path(raw)[0]}: {why}" for raw, why in found.problems]
            raise NoInputs(problems[0] if len(problems) == 1 else "no images found: " + "; ".join(problems))
        for raw, why in found.problems:
            self.ui.warn(f"{display_path(raw)[0]}: {why}")
        missing = set(found.missing)
        # A missing input keeps its place among the others; the decoder turns it into its record.
        return [(p, ImageError(MISSING) if p in missing else p) for p in found.ordered]

    def _open_output(self, names: list[str]) -> OutputFile | None:
        o = self.o
        if not o.output:
            if o.resume:
                raise OutputError("--resume needs -o FILE (the output of the earlier run)")
            return None
        clash = same_file_as_any(o.output, names)
        if clash is not None:
            raise OutputError(f"{o.output}: is one of the inputs ({display_path(clash)[0]}); "
                              "writing there would destroy it: choose another -o")
        if same_file_as_any(o.output, weights_files(o.weights)) is not None:
            raise OutputError(f"{o.output}: is the weights file; writing there would destroy it: choose another -o")
        out = OutputFile(o.output, o.fmt, resume=o.resume, fmt_explicit=o.fmt_explicit, key=o.head.key)
        if out.fmt not in o.head.formats:  # resume found a file another command wrote
            out.close()
            raise OutputError(f"{o.output}: holds {out.fmt} output, which this command does not write "
                              f"({', '.join(o.head.formats)}): choose another -o")
        o.fmt = out.fmt  # resume continues in the file's own format
        if out.earlier_k is not None and out.earlier_k != self._labels_per_image():
            out.close()
            raise OutputError(f"{o.output}: holds {out.earlier_k} label(s) per image; this run gives "
                              f"{self._labels_per_image()}: resume with -k {out.earlier_k}, or choose another -o")
        options = self._embed_options()
        if options:  # embeddings made otherwise are refused now, before any work
            try:
                earlier = out.earlier_arrays.meta if out.earlier_arrays is not None else out.earlier_options
                check_same_options(out.path, earlier, options)
            except OutputError:
                out.close()
                raise
        return out

    def _load(self, items):
        from .classifier import model_for

        clf = model_for(self.o.head, weights=self.o.weights, resize=self.o.resize, precision=self.o.precision,
                        batch_size=self.o.batch_size, workers=self.o.workers, progress=self.ui.download,
                        runtime=self.o.runtime)
        _ = clf.engine.runtime  # weights found and runtime chosen before any thread starts: errors come first
        decoder = clf.decoder(items)  # decoding starts now, while the model loads
        try:
            clf.load()
        except BaseException:
            decoder.close()
            raise
        for note in clf.notes:
            self.ui.warn(note)
        return clf, decoder

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> int:
        from PIL import Image

        # Oversized images become error records with their own message; Pillow's warning is noise.
        # The caller's warning filters are put back afterwards (a Python user's process).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            return self._run()

    def _run(self) -> int:
        o = self.o
        items = self._inputs()
        out = self._open_output([name for name, src in items if not isinstance(src, ImageError)])
        try:
            if out is not None and o.resume:
                before = len(items)
                items = [(name, src) for name, src in items if path_key(name) not in out.done]
                self.ui.info(f"resume: {before - len(items)} already {self.o.head.done} in {o.output}, "
                             f"{len(items)} to go")
                if before == len(items) and out.earlier_records:
                    self.ui.warn(f"resume: none of the {out.earlier_records} records in {o.output} match these "
                                 "inputs (another folder, or paths relative to another working folder?): "
                                 f"all are {self.o.head.done} again")
                if not items:
                    out.close()
                    return EXIT_OK
            try:
                try:
                    clf, decoder = self._load(items)
                except Exception as e:
                    if caused_by_interrupt(e):  # Ctrl-C inside an extension's import: an ImportError
                        raise KeyboardInterrupt from e
                    raise
            except KeyboardInterrupt:
                # Nothing was classified: an -o file is left as it was; stdout gets a valid document.
                if out is not None:
                    out.abort()
                else:
                    self._empty_document()
                self._closing_line(Stats(), interrupted=True, loaded_at=None)
                return EXIT_INTERRUPTED
        except BaseException:
            if out is not None:
                out.abort()
            raise
        loaded_at = time.perf_counter()
        stats = Stats(started=loaded_at)
        writer = self._writer(out)
        table_rows: list[Record] = []
        bar = self.ui.progress(len(items), o.head.doing) or _NoProgress()
        interrupted = False
        write_error: OSError | None = None
        try:
            for batch in clf.stream(decoder, stats=stats):
                for r in batch:
                    if r.error is not None:
                        self.ui.warn(f"{display_path(r.path)[0]}: {r.error}")
                if writer is not None:
                    try:
                        writer.write(batch)
                    except BrokenPipeError:
                        raise
                    except OSError as e:  # a full disk, a quota, an I/O error: stop, keep what was written
                        write_error = e
                        break
                else:
                    table_rows.extend(batch)
                bar.advance(len(batch), stats.failed)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            try:
                if writer is not None:
                    writer.close()
            except OSError as e:
                if not isinstance(e, BrokenPipeError) and write_error is None:
                    write_error = e
                elif isinstance(e, BrokenPipeError):
                    raise
            finally:
                if out is not None:
                    try:
                        out.close()
                    except OSError as e:
                        write_error = write_error or e
        if write_error is not None:
            self._closing_line(stats, True, loaded_at)
            where = o.output or "stdout"
            why = (write_error.strerror or str(write_error)).lower()
            raise OutputError(f"{where}: cannot write: {why}" + ("; the records written so far are kept "
                                                                  "(--resume continues)" if o.output else ""))
        if o.fmt == "table":
            self.ui.table(table_rows, self.stdout)
        if interrupted or len(items) > 1 or stats.failed:
            self._closing_line(stats, interrupted, loaded_at)
        if interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if stats.failed else EXIT_OK

    def _writer(self, out):
        """The writer for ``-o`` (or stdout): an earlier output's embedding options are checked
        before anything in it changes."""
        o = self.o
        if o.fmt == "table":
            return None
        if o.fmt in ARRAY_FORMATS:
            return ArrayWriter(out, o.fmt, self._array_meta(), earlier=out.earlier_arrays)
        stream = out.begin() if out is not None else self.stdout
        return WRITERS[o.fmt](stream, append=out is not None and out.append, options=self._embed_options())

    def _labels_per_image(self) -> int:
        """``-k``, capped at the number of classes (a model from ``xception train`` has its own), found
        without loading the network."""
        from .engine import Engine
        from .weights import IMAGENET, RANDOM, normalize_weights

        w = normalize_weights(self.o.weights)
        classes = 1000 if w in (IMAGENET, RANDOM) else len(Engine(weights=w).class_names or ()) or 1000
        return min(self.o.top_k, classes)

    def _embed_options(self) -> dict | None:
        """How embeddings are made (``EMBED_OPTIONS``); ``None`` when classifying."""
        if self.o.head.key != "embedding":
            return None
        meta = self._array_meta()
        return {k: meta[k] for k in EMBED_OPTIONS}

    def _array_meta(self) -> dict:
        from . import __version__
        from .weights import IMAGENET, RANDOM, normalize_weights

        w = normalize_weights(self.o.weights)
        return {"model": "xception", "pooling": getattr(self.o.head, "pooling", None),
                "normalize": getattr(self.o.head, "normalize", False),
                "weights": w if w in (IMAGENET, RANDOM) else os.path.abspath(w),
                "resize": self.o.resize, "created_by": f"xception-cli {__version__}"}

    def _empty_document(self) -> None:
        if self.o.fmt in WRITERS:
            WRITERS[self.o.fmt](self.stdout).close()

    def _closing_line(self, stats: Stats, interrupted: bool, loaded_at: float | None) -> None:
        """``classified N, failed M in T s (L s loading, C s classifying at R images/s)``: T is the
        whole wait, from the start of the command."""
        total = time.perf_counter() - self.started
        head = "interrupted: " if interrupted else ""
        if loaded_at is None:
            self.ui.info(f"{head}{self.o.head.done} 0 in {total:.1f} s (stopped while loading)")
            return
        kept = f"; results so far are in {self.o.output}" if interrupted and self.o.output else ""
        self.ui.info(
            f"{head}{self.o.head.done} {stats.classified}, failed {stats.failed} in {total:.1f} s "
            f"({loaded_at - self.started:.1f} s loading, {stats.elapsed_s:.1f} s {self.o.head.doing} at "
            f"{stats.images_per_second:.1f} images/s){kept}"
        )
