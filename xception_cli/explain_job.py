"""The explain job, without Click: ``jobs.PredictJob`` with an executor that writes pictures.

Inputs, the records file and ``--resume``, counting, warnings, Ctrl-C and the closing line are
``PredictJob``'s; ``ExplainExecutor`` runs ``explain.Explainer`` and, for each photo, publishes
its overlays (and ``--raw`` maps) into the output folder through ``output.target`` before the
photo's record is written, so a record always names files that exist.

File names: ``<name>.<class>.<ext>``, ``<name>`` the input's file name without its extension,
made safe (the last part of the name only, control and invisible characters and separators as
``_``, no leading dot, at most 100 bytes) and ``<class>`` the class index and its label (``281-tabby``).
Inputs whose names would meet (``a/cat.jpg`` and ``b/cat.png``; case is ignored) all get
``~`` and 8 hex digits of their ``file_id`` (a digest of the resolved path): deterministic, and
never a file of another input. Nothing is written outside the folder: a name is never a path,
and a link found at a name is replaced, never followed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from .errors import OutputError
from .explain import Explain, Explainer, Explanation, resolve_class
from .heatmap import COLORMAPS, IMAGE_FORMATS, encode, encode_map, overlay
from .jobs import PredictJob, PredictOptions
from .labels import Prediction
from .output.formats import format_of_path
from .output.paths import display_path, file_id, shown
from .output.target import Protected, Publication, is_stream, writable_folder
from .pipeline import Record
from .weights import weights_files

RECORDS = "explain.jsonl"  # the records file in the output folder, unless --records says otherwise
MAX_STEM = 100  # bytes of an input's name kept in its files' names
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SLUG = re.compile(r"[^\w-]+")


@dataclass
class ExplainOptions:
    """``xception explain``'s options; every check that needs no file read is made on creation."""

    inputs: list[str]
    out_dir: str
    records: str | None = None  # None: OUT_DIR/explain.jsonl; "-": stdout
    k: int = 1
    classes: tuple[str, ...] = ()  # --class: indices, labels or WordNet IDs (resolved once the labels are known)
    size: int | None = 1024  # the overlay's long side; None: the photo's own size
    alpha: float = 0.5
    colormap: str = "viridis"
    image_format: str = "png"
    raw: bool = False
    resume: bool = False
    batch_size: int = 8
    workers: int | None = None
    weights: str | None = "imagenet"
    resize: str | None = None
    precision: str = "float32"
    runtime: str | None = None
    follow_links: bool = False
    predict: PredictOptions = field(init=False)

    def __post_init__(self):
        if self.classes and self.k != 1:
            raise OutputError("-k and --class do not go together: -k explains the most probable classes, "
                              "--class the ones named")
        if not 0.0 <= self.alpha <= 1.0:
            raise OutputError(f"--alpha must be between 0 and 1, got {self.alpha}")
        if self.colormap not in COLORMAPS:
            raise OutputError(f"--colormap must be one of {', '.join(COLORMAPS)}")
        if self.image_format not in IMAGE_FORMATS:
            raise OutputError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}")
        if self.size is not None and self.size < 16:
            raise OutputError(f"--size must be at least 16 pixels (or full), got {self.size}")
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise OutputError(f"{shown(self.out_dir)}: not a folder; -o names the folder the pictures go to")
        records = None if self.records == "-" else self.records or os.path.join(self.out_dir, RECORDS)
        if records and not is_stream(records) and format_of_path(records) != "jsonl":
            raise OutputError(f"{shown(records)}: explain's records are JSON Lines: name the file .jsonl "
                              "(or --records - for stdout)")
        head = Explain(self.k, named=tuple(self.classes) or None)
        self.predict = PredictOptions(
            inputs=self.inputs, fmt="jsonl", output=records, batch_size=self.batch_size, workers=self.workers,
            weights=self.weights, resize=self.resize, precision=self.precision, runtime=self.runtime,
            resume=self.resume, head=head, follow_links=self.follow_links)


def safe_stem(name: str) -> str:
    """The part of an input's name its files are named after: never a path, never hidden."""
    base = re.split(r"[/\\]", name.rstrip("/\\"))[-1]
    stem = os.path.splitext(base)[0] or base
    stem = _UNSAFE.sub("_", display_path(stem)[0]).lstrip(". ").rstrip()
    if len(stem.encode("utf-8")) > MAX_STEM:
        stem = stem.encode("utf-8")[:MAX_STEM].decode("utf-8", "ignore")
    return stem or "image"


def file_stems(names: list[str]) -> dict[str, str]:
    """``{input name: stem}`` for a run's inputs: each input's own, distinct (see the module's docstring)."""
    ids = {n: file_id(n) for n in dict.fromkeys(names)}
    stems = {n: safe_stem(n) for n in ids}
    for digits in (8, 16):
        owners: dict[str, set] = {}
        for n, stem in stems.items():
            owners.setdefault(stem.casefold(), set()).add(ids[n])
        clashing = {n for n, stem in stems.items() if len(owners[stem.casefold()]) > 1}
        if not clashing:
            break
        stems.update({n: f"{safe_stem(n)}~{ids[n][:digits]}" for n in clashing})
    return stems


def class_part(p: Prediction) -> str:
    """``281-tabby``: the class index and its label, as a file name may hold them."""
    slug = _SLUG.sub("_", p.label).strip("_")[:40]
    return f"{p.index}-{slug}" if slug else str(p.index)


@dataclass(frozen=True)
class Explained(Prediction):
    """A label of an explain record: ``predict``'s fields, plus the files written for it."""

    overlay: str = ""
    map: str | None = None

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d["map"] is None:
            del d["map"]
        return d


class Pictures:
    """Each explanation's files, published into ``out_dir`` (``output.target.Publication``)."""

    def __init__(self, options: ExplainOptions, stems: dict[str, str], protected: Protected):
        self.o, self.stems, self.protected = options, stems, protected
        self.written = 0
        # thumbnails for the page (``output.html``), made from the photo and pictures in hand, by path
        self.thumbs: dict | None = {} if options.predict.output is not None else None

    def record(self, e: Explanation) -> Record:
        """Write ``e``'s files; its record (an error record when they cannot be written there)."""
        if e.error is not None:
            return Record(e.path, error=e.error)
        o, stem = self.o, self.stems.get(e.path) or safe_stem(e.path)
        files, labels = [], []
        for p, cam in zip(e.predictions, e.maps):
            base = f"{stem}.{class_part(p)}"
            picture = base + "." + o.image_format
            at = os.path.join(o.out_dir, picture)
            files.append((picture, lambda cam=cam, at=at: self._draw(e, cam, at)))
            if o.raw:
                files.append((base + ".npy", lambda cam=cam: encode_map(cam)))
            labels.append(Explained(p.rank, p.index, p.wnid, p.label, p.probability, os.path.join(o.out_dir, picture),
                                    os.path.join(o.out_dir, base + ".npy") if o.raw else None))
        try:  # a file that would be an input or the weights: this photo's error, the others go on
            for name, _ in files:
                self.protected.check(os.path.join(o.out_dir, name))
        except OutputError as err:
            return Record(e.path, error=f"not written: {err}")
        try:  # anything else (another writer, a full disk, a read-only folder) stops the run, as for the records
            with Publication(self.protected) as pub:
                for name, data in files:
                    with open(pub.stage(os.path.join(o.out_dir, name), companion=True), "wb") as f:
                        f.write(data())
        except OSError as err:
            why = (err.strerror or str(err)).lower()
            raise OutputError(f"{shown(o.out_dir)}: cannot write {shown(files[0][0])}: {why}") from None
        self.written += len(files)
        if self.thumbs is not None:
            from .output.html import thumb_of

            self.thumbs[display_path(e.path)[0]] = thumb_of(e.photo)
        return Record(e.path, predictions=labels)

    def _draw(self, e: Explanation, cam, at: str) -> bytes:
        picture = overlay(e.photo, cam, e.box, self.o.alpha, self.o.colormap)
        if self.thumbs is not None:  # the page's thumbnail of the picture, while it is in hand
            from .output.html import thumb_of

            self.thumbs[at] = thumb_of(picture)
        return encode(picture, self.o.image_format)


class ExplainExecutor:
    """``jobs.LocalExecutor``'s part for explain: this process's decoding threads and network,
    and the pictures written as each batch comes."""

    where = ""

    def __init__(self, job: ExplainJob):
        self.job = job
        self.explainer = self.decoder = self.pictures = None
        self.head: Explain = job.o.head

    def load(self, items) -> None:
        x, ui = self.job.x, self.job.ui
        ex = Explainer(weights=x.weights, resize=x.resize, precision=x.precision, batch_size=x.batch_size,
                       workers=x.workers, progress=ui.download, runtime=x.runtime, size=x.size)
        _ = ex.engine.runtime  # weights found and runtime chosen before any thread starts: errors come first
        if self.head.named:
            names = ex.class_names()
            try:
                chosen = dict.fromkeys(resolve_class(c, names) for c in self.head.named)  # each class once
                self.head = replace(self.head, classes=tuple(chosen))
            except ValueError as e:
                raise OutputError(str(e)) from None
        self.decoder = ex.decoder(items)
        ex.load()
        self.explainer = ex
        protected = Protected([n for n, src in items if isinstance(n, str) and os.path.isfile(n)],
                              weights_files(x.weights))
        self.pictures = Pictures(x, self.job.stems, protected)
        for note in ex.notes:
            ui.warn(note)

    def batches(self):
        """Each batch's records once its pictures are written; a batch's pictures are drawn and
        written in a thread of their own while the next batch runs through the network."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="explain-write")
        pending: deque = deque()
        try:
            for batch in self.explainer.stream(self.decoder, self.head):
                pending.append(pool.submit(lambda b=batch: [self.pictures.record(e) for e in b]))
                if len(pending) > 1:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a batch being written is finished, the next one not begun

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()


class ExplainJob(PredictJob):
    """``PredictJob`` over ``ExplainExecutor``: ``ExplainJob(options, ui).run()`` -> exit status."""

    def __init__(self, options: ExplainOptions, ui, stdout=None, started: float | None = None):
        super().__init__(options.predict, ui, stdout, started)
        self.x = options
        self.stems: dict[str, str] = {}
        self.executor: ExplainExecutor | None = None

    def _inputs(self):
        items = super()._inputs()
        # Pictures an earlier run left in the output folder are not photos to explain, unless named one by one.
        folder, named = os.path.realpath(self.x.out_dir), set(self.x.inputs)
        inside = [name for name, _ in items if name not in named and os.path.dirname(os.path.realpath(name)) == folder]
        if inside:
            self.ui.warn(f"skipped {len(inside)} file(s) found in the output folder {shown(self.x.out_dir)} "
                         "(its own pictures); name a file there to explain it")
            items = [(name, src) for name, src in items if name not in set(inside)]
            if not items:
                from .jobs import NoInputs

                raise NoInputs(f"no images found outside the output folder {shown(self.x.out_dir)}")
        self.stems = file_stems([name for name, _ in items])  # before --resume leaves some out: names stay put
        return items

    def _open_output(self, items):
        why = writable_folder(self.x.out_dir, make=True)  # said before any work, whichever way the records go
        if why is not None:
            raise OutputError(f"{shown(self.x.out_dir)}: cannot write there: {why}")
        return super()._open_output(items)

    def _executor(self):
        self.executor = ExplainExecutor(self)
        return self.executor

    @property
    def thumbs(self) -> dict | None:
        """The page's thumbnails made as the pictures were drawn (by path)."""
        return self.executor.pictures.thumbs if self.executor and self.executor.pictures else None

    @property
    def written(self) -> int:
        """Files written into the output folder."""
        return self.executor.pictures.written if self.executor and self.executor.pictures else 0
