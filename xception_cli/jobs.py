"""The predict (and embed) job, without Click: inputs -> records -> output, with resume, locking
and progress — one loop, two executors.

``PredictJob(options, ui).run()`` returns the exit status; ``options.head`` says what the network's
output becomes (``heads.Classify``: labels, the default; ``heads.Embed``: feature vectors). An
executor turns the inputs into batches of records: ``LocalExecutor`` (this process's decoding
threads and network) or, with ``options.ray``, ``scale.RayExecutor`` (Ray Data). Everything else —
finding inputs, the output and ``--resume``, counting, warnings, writing, Ctrl-C and the closing
line — is written once, here. What a person sees goes through ``ui`` (the command line implements
it with Rich; a program can pass ``ui.QuietUI`` or its own).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import IO

from .discovery import MISSING, discover
from .errors import ImageError, OutputError, XceptionError
from .output.files import RecordsOutput
from .output.formats import FORMATS, choose_format
from .output.paths import is_uri, shown
from .output.records import RUN_OPTIONS
from .output.resume import Expect
from .output.shards import ShardOutput, is_shard_target
from .output.target import Protected
from .pipeline import Record
from .ui import UI, LoggingUI, NoProgress
from .weights import is_random, weights_files

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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


@dataclass
class PredictOptions:
    inputs: list[str]
    top_k: int = 5
    fmt: str | None = None  # asked for (-f); None: decided by output.formats.choose_format, once
    output: str | None = None
    batch_size: int = 8
    workers: int | None = None
    weights: str | None = "imagenet"
    resize: str | None = None  # None: what the weights file says, else center-crop
    precision: str = "float32"
    runtime: str | None = None
    resume: bool = False
    head: object = None  # heads.Classify(top_k) when None
    ray: bool = False  # run on Ray Data (scale.RayExecutor); inputs may then be URIs
    ray_address: str | None = None
    actors: int | None = None
    csv_safe: bool = False  # CSV only: formula-looking text cells written with a leading ' (records.CsvWriter)
    terminal: bool = False  # stdout is a terminal: the default format is the table
    follow_links: bool = False  # follow links that lead out of a folder given (discovery)
    fmt_explicit: bool = field(init=False, default=False)

    def __post_init__(self):
        """Every check that needs no file read, before any work: what -o may not be, the format."""
        if self.head is None:
            from .heads import Classify

            self.head = Classify(self.top_k)
        if self.resume and not self.output:
            raise OutputError("--resume needs -o FILE (the output of the earlier run)")
        if (self.ray_address or self.actors) and not self.ray:
            raise OutputError("--ray-address and --actors go with --ray")
        if self.fmt is not None and self.fmt not in FORMATS:
            raise OutputError(f"unknown output format {self.fmt!r}: choose one of {', '.join(FORMATS)}")
        if self.output:  # named on the command line: refused before anything else is said about it
            Protected([i for i in self.inputs if i != "-" and os.path.isfile(i)], weights_files(self.weights)).check(
                self.output)
        self.fmt_explicit = self.fmt is not None
        self.fmt = choose_format(self.fmt, self.output, self.head.key, terminal=self.terminal, shards=self.shards,
                                 resume=self.resume)
        if self.csv_safe and self.fmt != "csv":
            raise OutputError("--csv-safe goes with CSV output (-f csv, or -o FILE.csv)")

    @property
    def shards(self) -> bool:
        return self.ray and is_shard_target(self.output)


class LocalExecutor:
    """Records from this process: decoding threads feeding the shared network."""

    where = ""

    def __init__(self, options: PredictOptions, ui: UI):
        self.o, self.ui = options, ui
        self.clf = self.decoder = None

    def load(self, items) -> None:
        from .classifier import model_for

        o = self.o
        clf = model_for(o.head, weights=o.weights, resize=o.resize, precision=o.precision,
                        batch_size=o.batch_size, workers=o.workers, progress=self.ui.download, runtime=o.runtime)
        _ = clf.engine.runtime  # weights found and runtime chosen before any thread starts: errors come first
        self.decoder = clf.decoder(items)  # decoding starts now, while the model loads
        clf.load()
        self.clf = clf
        for note in clf.notes:
            self.ui.warn(note)

    def batches(self):
        return self.clf.stream(self.decoder)

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()


class PredictJob:
    def __init__(self, options: PredictOptions, ui: UI | None = None, stdout: IO[str] | None = None,
                 started: float | None = None):
        """``ui``: what a person sees [default: ``ui.LoggingUI``, the logger ``xception_cli``];
        ``started``: ``time.perf_counter()`` when the command began (the closing line counts from it)."""
        self.o = options
        self.ui = ui if ui is not None else LoggingUI()
        self.stdout = stdout if stdout is not None else sys.stdout
        self.started = started if started is not None else time.perf_counter()
        self.kept: str | None = options.output  # where the results are when the run stops early
        self._existed = False  # a whole file's earlier version was there

    # -- the steps ---------------------------------------------------------------------------

    def _inputs(self) -> list[tuple[str, object]]:
        """``(name, source)`` in input order; a missing input keeps its place as an ``ImageError``."""
        local = [x for x in self.o.inputs if not (self.o.ray and is_uri(x))]
        found = discover(local, self.o.follow_links)
        if found.skipped_note():
            self.ui.warn(found.skipped_note())
        for raw, why in found.problems:
            if found.paths or self.o.ray:
                self.ui.warn(f"{shown(raw)}: {why}")
        items = [(p, ImageError(MISSING) if p in set(found.missing) else p) for p in found.ordered]
        for uri in (x for x in self.o.inputs if self.o.ray and is_uri(x)):
            from .scale.uris import list_uri

            listed = list_uri(uri)
            if not listed:
                self.ui.warn(f"{uri}: no images found")
            items += [(name, name) for name in listed]
        if not any(not isinstance(src, ImageError) for _, src in items):
            problems = [f"{shown(raw)}: {MISSING}" for raw in found.missing]
            problems += [f"{shown(raw)}: {why}" for raw, why in found.problems]
            if not problems:
                raise NoInputs("no images found: " + "; ".join(map(shown, self.o.inputs)))
            raise NoInputs(problems[0] if len(problems) == 1 else "no images found: " + "; ".join(problems))
        return items

    def _expect(self) -> Expect:
        if self.o.head.key == "predictions":
            return Expect("predictions", labels=self._labels_per_image(), options=self._options())
        return Expect("embedding", options=self._options())

    def _open_output(self, items):
        o = self.o
        if not o.output:
            return None
        protected = Protected([name for name, src in items if not isinstance(src, ImageError) and not is_uri(name)],
                              weights_files(o.weights))
        if o.shards:
            return ShardOutput(o.output, o.fmt, self._expect(), protected, warn=self.ui.warn)
        out = RecordsOutput(o.output, o.fmt, expect=self._expect(), resume=o.resume, fmt_explicit=o.fmt_explicit,
                            protected=protected)
        o.fmt = out.fmt  # resume continues in the file's own format
        return out

    def _skip_done(self, items, out):
        o = self.o
        if out is None or not (o.resume or o.shards):
            return items
        before = len(items)
        items = [(name, src) for name, src in items if name not in out.done]
        where = shown(o.output)
        if o.shards:
            if before != len(items):
                self.ui.info(f"{before - len(items)} already recorded in {where}, {len(items)} to go")
            return items
        self.ui.info(f"resume: {before - len(items)} already {o.head.done} in {where}, {len(items)} to go")
        if before == len(items) and out.earlier_records:
            self.ui.warn(f"resume: none of the {out.earlier_records} records in {where} match these inputs "
                         f"(other files, or the same names in another folder): all are {o.head.done} again")
        return items

    def _executor(self):
        if self.o.ray:
            from .scale.executor import RayExecutor

            return RayExecutor(self.o, self.ui)
        return LocalExecutor(self.o, self.ui)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> int:
        from PIL import Image

        # Oversized images become error records with their own message; Pillow's warning is noise.
        # The caller's warning filters are put back afterwards (a Python user's process).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            executor = self._executor()
            try:
                return self._run(executor)
            finally:
                executor.close()

    def _run(self, executor) -> int:
        o = self.o
        items = self._inputs()
        out = self._open_output(items)
        bar = None
        try:
            items = self._skip_done(items, out)
            if not items:
                out.close()
                return EXIT_OK
            if is_random(o.weights):
                what = "labels" if o.head.key == "predictions" else "vectors"
                self.ui.info(f"note: --weights none: random weights, so the {what} mean nothing (to try the tool)")
            if getattr(executor, "slow_start", False):  # Ray's start takes seconds: the bar shows it began
                bar = self.ui.progress(len(items), o.head.doing)
            try:
                executor.load(items)
            except Exception as e:
                if caused_by_interrupt(e):  # Ctrl-C inside an extension's import: an ImportError
                    raise KeyboardInterrupt from e
                raise
        except KeyboardInterrupt:
            # Nothing was done: an -o file is left as it was; stdout gets a valid document.
            self._stop_showing(bar)
            if out is not None:
                out.abort()
            elif FORMATS[o.fmt].streaming:
                FORMATS[o.fmt].writer(self.stdout).close()
            self._closing_line(0, 0, interrupted=True, loaded_at=None, where=executor.where)
            return EXIT_INTERRUPTED
        except BaseException:
            self._stop_showing(bar)
            if out is not None:
                out.abort()
            raise
        return self._loop(executor, items, out, bar)

    def _stop_showing(self, bar) -> None:
        """Whatever the UI shows live (a progress bar, a download's) taken off the screen."""
        if bar is not None:
            bar.close()
        stop = getattr(self.ui, "stop", None)  # an optional part of the UI interface
        if stop is not None:
            stop()

    def _loop(self, executor, items, out, bar=None) -> int:
        o = self.o
        loaded_at = time.perf_counter()
        done = failed = 0
        table_rows: list[Record] = []
        interrupted, write_error = False, None
        writer = None
        try:
            if out is not None:
                writer = out.writer(options=self._writer_options(), meta=self._array_meta()) if not o.shards \
                    else out.writer(options=self._writer_options())
            elif o.fmt != "table":
                writer = FORMATS[o.fmt].writer(self.stdout, options=self._writer_options())
        except BaseException:
            self._stop_showing(bar)
            out is not None and out.abort()
            raise
        bar = bar or self.ui.progress(len(items), o.head.doing) or NoProgress()
        try:
            for batch in executor.batches():
                for r in batch:
                    if r.error is not None:
                        failed += 1
                        self.ui.warn(f"{shown(r.path)}: {r.error}")
                done += len(batch)
                if writer is None:
                    table_rows.extend(batch)
                else:
                    try:
                        writer.write(batch)
                    except BrokenPipeError:
                        raise
                    except OSError as e:  # a full disk, a quota, an I/O error: stop, keep what was written
                        write_error = e
                        break
                bar.advance(len(batch), failed)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._stop_showing(bar)
            whole = out is not None and not o.shards and not FORMATS[o.fmt].streaming
            self._existed = whole and out.existed
            # A whole file (npz, parquet) stopped by Ctrl-C replaces an earlier one only when it
            # continues it (--resume): otherwise the earlier, complete file is kept as it was; and
            # a run stopped before anything was done writes nothing.
            if interrupted and whole and ((out.existed and not o.resume) or not done):
                self.kept = None
                out.abort()
                writer = None
            write_error = self._finish(writer, out, write_error)
        where = executor.where
        if write_error is not None:
            self.kept = o.output if not whole else None
            self._closing_line(done - failed, failed, True, loaded_at, where, head="stopped: ")
            raise OutputError(self._write_error_message(write_error))
        if o.fmt == "table" and table_rows:  # (none: Ctrl-C came first)
            self.ui.table(table_rows, self.stdout)
        if interrupted or len(items) > 1 or failed or where:
            self._closing_line(done - failed, failed, interrupted, loaded_at, where)
        if interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if failed else EXIT_OK

    def _finish(self, writer, out, write_error):
        """Close the writer (a whole file is published now) and the output; the first write error."""
        try:
            if writer is not None:
                writer.close()
        except BrokenPipeError:
            raise
        except OSError as e:
            write_error = write_error or e
        finally:
            if out is not None:
                try:
                    out.close()
                except OSError as e:
                    write_error = write_error or e
        return write_error

    def _write_error_message(self, e: OSError) -> str:
        o = self.o
        why = (e.strerror or str(e)).lower()
        if not o.output:
            return f"stdout: cannot write: {why}"
        if FORMATS[o.fmt].streaming or o.shards:
            return f"{shown(o.output)}: cannot write: {why}; the records written so far are kept (--resume continues)"
        earlier = " (the earlier file is as it was)" if self._existed else ""
        return f"{shown(o.output)}: cannot write: {why}; nothing was written{earlier}"

    def _labels_per_image(self) -> int:
        """``-k``, capped at the number of classes (a model from ``xception train`` has its own)."""
        from .weights import weights_classes

        return min(self.o.head.k, weights_classes(self.o.weights))

    def _options(self) -> dict:
        """How this run's results are made (``RUN_OPTIONS``): what --resume holds an earlier output to."""
        meta = self._array_meta()
        return {k: meta[k] for k in RUN_OPTIONS if k in meta and (k not in ("pooling", "normalize")
                                                                  or self.o.head.key == "embedding")}

    def _writer_options(self) -> dict:
        """``_options()`` as the writers get them: with --csv-safe (CSV only), ``csv_safe`` too."""
        return self._options() | ({"csv_safe": True} if self.o.csv_safe else {})

    def _array_meta(self) -> dict:
        """What an embeddings file records about how it was made (worked out once)."""
        if getattr(self, "_meta", None) is None:
            from . import __version__
            from .weights import is_random, md5sum, normalize_weights, weights_name, weights_resize

            w = normalize_weights(self.o.weights)
            self._meta = {"model": "xception", "pooling": getattr(self.o.head, "pooling", None),
                          "normalize": getattr(self.o.head, "normalize", False),
                          "weights": weights_name(self.o.weights),  # its name: where it lives is private
                          # the file's contents: the same file under another name is the same network,
                          # another file under the same name is not
                          "weights_md5": None if is_random(w) or w == "imagenet" or not os.path.isfile(w)
                          else md5sum(w),
                          "resize": weights_resize(self.o.weights, self.o.resize), "precision": self.o.precision,
                          "created_by": f"xception-cli {__version__}"}
        return self._meta

    def _closing_line(self, done: int, failed: int, interrupted: bool, loaded_at: float | None,
                      where: str = "", head: str = "interrupted: ") -> None:
        """``classified N, failed M in T s (L s loading, C s classifying at R images/s)``: T is the
        whole wait, from the start of the command; ``where``: e.g. ``on Ray (2 actor(s) on 2 node(s))``."""
        now = time.perf_counter()
        total = now - self.started
        head = head if interrupted else ""
        if loaded_at is None:
            self.ui.info(f"{head}{self.o.head.done} 0 in {total:.1f} s (stopped while loading)")
            return
        kept = ""
        if interrupted and self.o.output:
            kept = f"; results so far are in {shown(self.o.output)}" if self.kept \
                else f"; {shown(self.o.output)} is as it was" if self._existed \
                else f"; nothing was written to {shown(self.o.output)}"
        work = now - loaded_at
        rate = done / work if work > 0 else 0.0
        opening = f" {where[:-1]}; " if where else " ("
        self.ui.info(
            f"{head}{self.o.head.done} {done}, failed {failed} in {total:.1f} s{opening}"
            f"{loaded_at - self.started:.1f} s loading, {work:.1f} s {self.o.head.doing} at {rate:.1f} images/s)"
            f"{kept}"
        )
