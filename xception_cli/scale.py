"""Past one machine: the predict (and embed) job on Ray Data, over local folders and object storage.

Decoding and preprocessing run as Ray tasks; inference runs in an actor pool whose actors each
build the network once, through the runtime layer, with as many threads as the CPUs they hold.
Records, schema, error records and exit codes are those of the local pipeline.

- Inputs: files, folders, globs (as ``predict``), and URIs (``s3://bucket/prefix`` and whatever
  else pyarrow's file systems read). S3 credentials and endpoint come from the usual variables
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``).
  Objects are listed by the driver and read by the decoding tasks, so an unreadable, vanished or
  non-image object is an error record, never a failed job.
- Output: ``-o FILE`` (local) as ``predict`` writes it, streamed in input order, with
  ``--resume``; or ``-o DIR/`` / ``-o s3://bucket/prefix/`` written as shard files (JSON Lines,
  CSV or Parquet) of ``SHARD_ROWS`` records as the results stream back (``ShardFolderWriter``). A
  rerun into the same folder skips what the task's shards record and retries the failures; files
  not named ``xception-<task>-*`` are never touched.

``XceptionPredictor`` is the class to drop into your own ``ray.data.Dataset.map_batches``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .config import DEFAULT_PREPROCESS, IMAGE_EXTENSIONS
from .errors import ImageError, OutputError, XceptionError

RAY_HINT = "--ray needs Ray Data: pip install 'xception-cli[ray]'"
SHARD_FORMATS = ("jsonl", "csv", "parquet")
SHARD_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
MISSING = "no such file or directory"
DECODE_CPUS = 0.5  # a decoding task's share of a CPU; every node keeps this much free for them


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise XceptionError(RAY_HINT) from None
    return ray


def is_uri(text: str) -> bool:
    return "://" in text and not os.path.exists(text)


# ---------------------------------------------------------------------------------------------
# file systems


def filesystem(uri: str):
    """``(pyarrow FileSystem, path within it)`` for a URI; S3 honours ``AWS_ENDPOINT_URL`` (or
    ``AWS_ENDPOINT_URL_S3``) for S3-compatible stores."""
    import pyarrow.fs as pafs

    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs = {"region": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host.rstrip("/") if host else scheme,
                          scheme=scheme if host else "https")
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/")
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


def read_bytes(name: str) -> bytes:
    """The bytes of a local path or a URI; ``ImageError`` with a one-line reason otherwise."""
    if not is_uri(name):
        raise ValueError("local paths are decoded from the file")
    try:
        fs, path = filesystem(name)
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError("object not found (it may have been moved or deleted)") from None
    except OSError as e:
        raise ImageError(f"cannot read: {str(e).splitlines()[0]}") from None


def list_uri(uri: str) -> list[str]:
    """Image objects under a URI prefix (or the object itself), sorted; hidden names skipped."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [uri]
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        raise XceptionError(f"{uri}: cannot list ({str(e).splitlines()[0]})") from None
    out = []
    for i in infos:
        name = i.path.rsplit("/", 1)[-1]
        if i.type == pafs.FileType.File and not name.startswith(".") \
                and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            out.append(f"{scheme}://{i.path}")
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# the Ray Data stages


def decode_batch(batch: dict, size: int = DEFAULT_PREPROCESS.input_size, resize: str = "center-crop") -> dict:
    """A Ray task: ``path`` (+ ``missing``) -> ``pixels`` (uint8 ``[N, size, size, 3]``) and ``error``
    ("" when decoded); a file or object that cannot be read becomes an error, never an exception."""
    from .preprocess import load_image

    paths = [str(p) for p in batch["path"]]
    missing = batch.get("missing")
    pixels = np.zeros((len(paths), size, size, 3), np.uint8)
    errors = []
    for i, name in enumerate(paths):
        if missing is not None and missing[i]:
            errors.append(MISSING)
            continue
        try:
            source = read_bytes(name) if is_uri(name) else name
            pixels[i] = load_image(source, size, resize)
            errors.append("")
        except ImageError as e:
            errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - one bad file must never end the job
            errors.append(f"cannot decode image: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return {"path": np.array(paths, dtype=object), "pixels": pixels, "error": np.array(errors, dtype=object)}


class XceptionPredictor:
    """Xception for ``ray.data.Dataset.map_batches``: the network is built once per actor.

    ``ds.map_batches(XceptionPredictor, fn_constructor_kwargs={"weights": "imagenet"}, batch_size=8,
    concurrency=2)``. A batch holds ``path`` and either ``pixels`` (uint8 ``[N, 299, 299, 3]``, as
    ``decode_batch`` makes them), ``image`` (arrays of any size, as ``ray.data.read_images`` gives)
    or ``bytes`` (as ``read_binary_files`` gives); an ``error`` column marks inputs already failed.
    It returns ``path``, ``ok``, ``record`` (the record as JSON, exactly as ``predict`` writes it)
    and ``node`` (the Ray node that ran it).

    ``task``: ``"classify"`` (``top_k`` labels) or ``"embed"`` (``pooling``, ``normalize``).
    ``threads``: inference threads (default: the CPUs this actor holds).
    """

    def __init__(self, weights="imagenet", task: str = "classify", top_k: int = 5, pooling: str = "avg",
                 normalize: bool = False, precision: str = "float32", runtime: str | None = None,
                 threads: int | None = None, resize: str = "center-crop"):
        from .engine import Engine
        from .heads import Classify, Embed

        if task not in ("classify", "embed"):
            raise ValueError(f"task must be 'classify' or 'embed', got {task!r}")
        self.head = Classify(top_k) if task == "classify" else Embed(pooling, normalize)
        if threads is None:
            threads = _actor_cpus()
        self.engine = Engine(weights=weights, include_top=self.head.include_top, pooling=self.head.pooling,
                             precision=precision, runtime_request=runtime, threads=threads)
        _ = self.engine.network  # build now, once per actor
        if isinstance(self.head, Classify) and self.engine.class_names:  # a model of your own classes
            from dataclasses import replace

            self.head = replace(self.head, labels=tuple(self.engine.class_names))
        self.resize = resize
        self.node = ""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():  # asking outside Ray would start a local Ray
            try:
                self.node = ray.get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - no node to name: the record says ""
                pass

    def __call__(self, batch: dict) -> dict:
        from .output import record_dict
        from .pipeline import Record
        from .preprocess import load_image, to_input

        paths = [str(p) for p in batch["path"]]
        errors = [str(e) if e else "" for e in batch.get("error", [""] * len(paths))]
        if "pixels" in batch:
            pixels = np.asarray(batch["pixels"])
            if pixels.dtype != np.uint8:  # float input in [-1, 1] cast to uint8 would be garbage, silently
                raise ValueError(f"'pixels' must be uint8 RGB [N, 299, 299, 3] (as decode_batch or load_image "
                                 f"give), not {pixels.dtype}")
        else:
            pixels = np.zeros((len(paths), 299, 299, 3), np.uint8)
            column = batch.get("image", batch.get("bytes"))
            for i, source in enumerate(column):
                if errors[i]:
                    continue
                try:
                    pixels[i] = load_image(bytes(source) if isinstance(source, (bytes, bytearray)) else source,
                                           resize=self.resize)
                except ImageError as e:
                    errors[i] = str(e)
        ok = [i for i, e in enumerate(errors) if not e]
        values = iter(self.head.values(self.engine(to_input(pixels[ok])))) if ok else iter(())
        records = [Record(p, error=e) if e else Record(p, **{self.head.key: next(values)})
                   for p, e in zip(paths, errors)]
        return {
            "path": np.array(paths, dtype=object),
            "ok": np.array([not e for e in errors]),
            "record": np.array([json.dumps(record_dict(r), ensure_ascii=False) for r in records], dtype=object),
            "node": np.array([self.node] * len(paths), dtype=object),
        }


def _actor_cpus() -> int:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():  # not in a Ray worker (asking would start a local Ray)
        return max(1, os.cpu_count() or 1)
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        return max(1, round(cpus)) if cpus else max(1, os.cpu_count() or 1)
    except Exception:  # noqa: BLE001
        return max(1, os.cpu_count() or 1)


def record_from_json(text: str):
    """A ``pipeline.Record`` back from the JSON ``XceptionPredictor`` made (for the local writers)."""
    import base64

    from .labels import Prediction
    from .pipeline import Record

    d = json.loads(text)
    path = os.fsdecode(base64.b64decode(d["path_base64"])) if "path_base64" in d else d["path"]
    if "error" in d:
        return Record(path, error=d["error"])
    if "embedding" in d:
        return Record(path, embedding=np.asarray(d["embedding"], np.float32))
    return Record(path, predictions=[Prediction(**p) for p in d["predictions"]])


# ---------------------------------------------------------------------------------------------
# shard output (a folder or a bucket prefix)


def is_shard_target(output: str | None) -> bool:
    return bool(output) and (output.endswith("/") or "://" in output or os.path.isdir(output))


SHARD_ROWS = 1000  # records per shard file


def shard_task(key: str) -> str:
    """The task a shard holds, in its name: ``predict`` or ``embed``."""
    return "embed" if key == "embedding" else "predict"


def _shard_fs(uri: str):
    import pyarrow.fs as pafs

    return filesystem(uri) if "://" in uri else (pafs.LocalFileSystem(), os.path.abspath(uri))


def _is_our_shard(name: str, task: str) -> bool:
    return name.startswith(f"xception-{task}-") and name.endswith(tuple(SHARD_SUFFIX.values()))


def _put(fs, path: str, data: bytes) -> None:
    """``data`` as the whole file ``path``: on a local disk through a hidden temporary file and a
    rename (a reader never sees half a shard); an object store's upload is whole anyway."""
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)


def _parquet_bytes(records) -> bytes:
    """Records as Parquet: columns path, error, and predictions (list of structs) or embedding."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from .output import record_dict

    recs = [record_dict(r) for r in records]
    cols = {"path": pa.array([r["path"] for r in recs], pa.string()),
            "path_base64": pa.array([r.get("path_base64") for r in recs], pa.string()),  # non-UTF-8 names
            "error": pa.array([r.get("error") for r in recs], pa.string())}
    if any(r.embedding is not None for r in records):
        cols["embedding"] = pa.array([None if r.embedding is None else np.asarray(r.embedding, np.float32).tolist()
                                      for r in records], pa.list_(pa.float32()))
    else:
        pred = pa.struct([("rank", pa.int32()), ("index", pa.int32()), ("wnid", pa.string()),
                          ("label", pa.string()), ("probability", pa.float64())])
        cols["predictions"] = pa.array([r.get("predictions") for r in recs], pa.list_(pred))
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


class ShardFolderWriter:
    """Records written under a folder or bucket prefix as shard files
    ``xception-{predict|embed}-{run}-{n:05d}.{jsonl|csv|parquet}``, ``rows`` records each, each
    written whole as the results stream in; ``close()`` writes the last (also on Ctrl-C)."""

    def __init__(self, uri: str, fmt: str, key: str, rows: int = SHARD_ROWS, options: dict | None = None):
        import uuid

        from .output import WRITERS

        self.fs, self.base = _shard_fs(uri)
        self.fmt, self.rows, self.writers, self.options = fmt, rows, WRITERS, options
        self.prefix = f"xception-{shard_task(key)}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.pending: list = []
        self.count = 0
        self.fs.create_dir(self.base, recursive=True)

    def write(self, records) -> None:
        self.pending += records
        while len(self.pending) >= self.rows:
            self._flush(self.pending[:self.rows])
            self.pending = self.pending[self.rows:]

    def close(self) -> None:
        if self.pending:
            self._flush(self.pending)
            self.pending = []

    def _flush(self, records) -> None:
        import io

        if self.fmt == "parquet":
            data = _parquet_bytes(records)
        else:
            buf = io.StringIO()
            writer = self.writers[self.fmt](buf, options=self.options)
            writer.write(records)
            writer.close()
            data = buf.getvalue().encode("utf-8", "surrogateescape")
        name = f"{self.prefix}-{self.count:05d}{SHARD_SUFFIX[self.fmt]}"
        _put(self.fs, f"{self.base}/{name}", data)
        self.count += 1


def record_key(path: str) -> str:
    """How recorded inputs are matched: a URI as it is, a local path resolved (``path_key``)."""
    from .output import path_key

    return path if is_uri(path) else path_key(path)


def recorded_in_shards(uri: str, key: str, warn=None) -> set[str]:
    """``record_key``s of the inputs recorded successfully in the task's shards under ``uri`` (any
    of the three formats). Error records are removed from their shard (a shard of nothing else is
    deleted), so those inputs are retried. Files not named as this task's shards are never read;
    a shard that holds anything but this task's records is reported and left exactly as it is."""
    import pyarrow.fs as pafs

    fs, base = _shard_fs(uri)
    # Relative paths are as the earlier run was given them: resolved from here, and from the
    # shard folder and its parent (where that run most likely started), as --resume does.
    bases = [] if "://" in uri else [base, os.path.dirname(base)]
    task = shard_task(key)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    done: set[str] = set()
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File or not _is_our_shard(info.base_name, task):
            continue
        fmt = os.path.splitext(info.base_name)[1].lstrip(".")
        try:
            with fs.open_input_stream(info.path) as f:
                data = f.read()
            entries = _shard_entries(data, fmt, key)
        except Exception as e:  # noqa: BLE001 - anything unexpected: reported, never touched
            if warn is not None:
                warn(f"{info.path}: not a readable {task} shard, left as it is ({str(e).splitlines()[0]})")
            continue
        for path, ok in entries:
            if ok:
                done |= _recorded_keys(path, exact=fmt != "csv", bases=bases)
        if any(not ok for _, ok in entries):
            kept = _shard_without_errors(data, fmt)
            if kept is None:
                fs.delete_file(info.path)  # nothing but failures: they are retried
            else:
                _put(fs, info.path, kept)
    return done


def _recorded_keys(path: str, exact: bool, bases: list[str]) -> set[str]:
    """The keys a recorded path matches. ``exact``: the path is the file's own name (JSON Lines and
    Parquet keep undecodable bytes in ``path_base64``); CSV has only the ``\\xNN`` text form."""
    from .output import _keys_of_path, _keys_of_text

    if is_uri(path):
        return {path}
    keys: set[str] = set()
    for b in bases or [None]:
        keys |= _keys_of_path(path, b) if exact else _keys_of_text(path, b)
    return keys


def _shard_entries(data: bytes, fmt: str, key: str) -> list[tuple[str, bool]]:
    """``(path, succeeded)`` for every record of a shard; ``ValueError`` for anything else in it."""
    import base64
    import csv
    import io

    from .output import CSV_FIELDS

    other = "predictions" if key == "embedding" else "embedding"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data), use_threads=False)
        names = table.column_names
        if "path" not in names or "error" not in names or other in names:
            raise ValueError(f"columns {names} are not those of a shard of this task")
        paths = table.column("path").to_pylist()
        if "path_base64" in names:
            paths = [os.fsdecode(base64.b64decode(r)) if r else p
                     for p, r in zip(paths, table.column("path_base64").to_pylist())]
        return [(p, e is None) for p, e in zip(paths, table.column("error").to_pylist())]
    text = data.decode("utf-8", "surrogateescape")
    entries = []
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True))
        if not rows or rows[0] != list(CSV_FIELDS) or any(len(r) != len(CSV_FIELDS) for r in rows[1:]):
            raise ValueError("not this tool's CSV (header or columns differ)")
        for row in rows[1:]:
            if not entries or entries[-1][0] != row[0]:  # one row per label: a path's rows are together
                entries.append((row[0], not row[6]))
        return entries
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and ("error" in rec or key in rec)):
            raise ValueError(f"line {n} is not a record of this task")
        raw = rec.get("path_base64")
        entries.append((os.fsdecode(base64.b64decode(raw)) if raw else rec["path"], "error" not in rec))
    return entries


def _shard_without_errors(data: bytes, fmt: str) -> bytes | None:
    """The shard with its error records removed; ``None`` when nothing else is left."""
    import csv
    import io

    from .output import CSV_HEADER, _csv_line

    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data), use_threads=False)
        ok = table.filter(table.column("error").is_null())
        if not ok.num_rows:
            return None
        buf = io.BytesIO()
        pq.write_table(ok, buf)
        return buf.getvalue()
    text = data.decode("utf-8", "surrogateescape")
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True))[1:]
        kept = [_csv_line(r) for r in rows if not r[6]]
        body = CSV_HEADER + "\n" + "".join(kept) if kept else None
    else:
        kept = [line + "\n" for line in text.splitlines() if line.strip() and "error" not in json.loads(line)]
        body = "".join(kept) if kept else None
    return None if body is None else body.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# the driver


@dataclass
class RayStats:
    done: int = 0
    failed: int = 0
    nodes: set = field(default_factory=set)
    actors: int = 0


def init_ray(address: str | None, quiet: bool = True):
    """Connect to ``address`` (or ``$RAY_ADDRESS``), or start a local Ray; reuse one already up."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    if quiet:  # Ray's C++ core logs notes at "error" level on the driver's stderr; real errors still raise
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    import sys

    saved = None
    if quiet:  # the C++ start-up notes go to fd 2 directly; errors still raise in Python
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    try:
        # "local": a new Ray of our own. (None would join whatever cluster `ray start` last
        # recorded on this machine, and wait forever if that one is gone.)
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=not quiet, configure_logging=True, logging_level="ERROR",
                 runtime_env={"env_vars": env} if env else None)
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return ray


def build_dataset(names: list[str], missing: set[str], options, actors: int, cpus_per_actor: float,
                  decode_cpus: float = DECODE_CPUS, progress: bool = False):
    """names -> decode tasks -> actor pool: a lazy dataset of ``path, ok, record, node``."""
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress  # Ray's own bars, on a terminal only
    ctx.enable_auto_log_stats = False
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    head = options.head
    task = "embed" if head.key == "embedding" else "classify"
    ds = ray.data.from_items([{"path": n, "missing": n in missing} for n in names],
                             override_num_blocks=max(1, min(len(names), 4 * max(actors, 1))))
    ds = ds.map_batches(decode_batch, batch_size=options.batch_size, num_cpus=decode_cpus,
                        fn_kwargs={"resize": options.resize})
    kwargs = {"weights": options.weights, "task": task, "top_k": getattr(head, "k", 5),
              "pooling": getattr(head, "pooling", None) or "avg", "normalize": getattr(head, "normalize", False),
              "precision": options.precision, "runtime": options.runtime, "resize": options.resize,
              "threads": max(1, round(cpus_per_actor))}
    return ds.map_batches(bound_predictor(**kwargs), batch_size=options.batch_size, num_cpus=cpus_per_actor,
                          compute=ray.data.ActorPoolStrategy(size=actors))


def bound_predictor(**kwargs) -> type:
    """``XceptionPredictor`` with its arguments bound in the class (shipped with it, so the actors
    need no constructor arguments from the object store)."""

    class BoundXceptionPredictor(XceptionPredictor):
        def __init__(self):
            super().__init__(**kwargs)

    return BoundXceptionPredictor


def plan_actors(ray, requested: int | None) -> tuple[int, float]:
    """``(actors, CPUs per actor)``: one actor per node by default; each node keeps half a CPU for
    the decoding tasks (an actor pool that took every CPU would leave them none, and wait forever)."""
    sizes = sorted((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), reverse=True)
    sizes = [s for s in sizes if s > DECODE_CPUS] or [float(os.cpu_count() or 1)]
    actors = requested or len(sizes)
    # Spread the actors over the nodes; the busiest node decides each actor's share.
    per_node = [actors // len(sizes) + (i < actors % len(sizes)) for i in range(len(sizes))]
    shares = [(cpus - DECODE_CPUS) / n for cpus, n in zip(sizes, per_node) if n]
    per_actor = min(shares)
    if per_actor < 0.25:
        raise XceptionError(f"--actors {actors}: the cluster's {sum(sizes):g} CPUs on {len(sizes)} node(s) leave too "
                            "little for each actor and the decoding tasks")
    return actors, round(per_actor, 2)


def run_ray_job(job, address: str | None, actors: int | None) -> int:
    """``jobs.PredictJob`` on Ray Data: the same inputs, records, output rules and exit codes."""
    from .discovery import discover
    from .output import display_path

    o, ui = job.o, job.ui
    local = [x for x in o.inputs if not is_uri(x)]
    uris = [x for x in o.inputs if is_uri(x)]
    found = discover(local) if local else None
    names: list[str] = list(found.ordered) if found else []
    missing = set(found.missing) if found else set()
    for raw, why in (found.problems if found else []):
        ui.warn(f"{display_path(raw)[0]}: {why}")
    if is_shard_target(o.output):  # checked before Ray starts: a mistake costs nothing
        usable = [f for f in SHARD_FORMATS if f in o.head.formats or f == "parquet"]
        if o.fmt not in usable:
            raise OutputError(f"{o.output}: shards are written as {' or '.join(usable)}, not {o.fmt}")
        if "://" not in o.output:
            _check_writable_folder(o.output)
    was_up = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    own = not was_up and not (address or os.environ.get("RAY_ADDRESS"))
    if own:
        _adopt_orphans()
    try:
        ray = init_ray(address)
        return _run_on_ray(job, ray, names, missing, uris, actors)
    finally:
        # A Ray this command started (even half-way, when Ctrl-C came during start-up) is stopped
        # now, so nothing is left running and Ctrl-C can't hit Ray's atexit hook.
        if not was_up and "ray" in sys.modules:
            _shutdown_quietly(sys.modules["ray"])
        if own:
            _kill_adopted_ray_processes()


def _adopt_orphans() -> None:
    """Linux: become the "subreaper" of this process's descendants. A Ctrl-C from a terminal
    reaches Ray's processes too; Ray's agents outlive its raylet and would be re-parented to init
    and run on; re-parented to us instead, they are found and stopped when the command ends."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _ray_children() -> list[int]:
    """This process's children that belong to Ray (its own, or adopted), from /proc."""
    me = str(os.getpid())
    found = []
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and b"ray" in cmd:
            found.append(int(pid))
    return found


def _kill_adopted_ray_processes(wait_s: float = 3.0) -> None:
    """Stop whatever of Ray is still a child of ours after ``ray.shutdown()``: nothing after a
    normal run; after a Ctrl-C during Ray's start-up, its agents as they are orphaned."""
    import signal

    deadline = time.monotonic() + wait_s
    while True:
        left = _ray_children()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _check_writable_folder(folder: str) -> None:
    """Shards can be written into ``folder`` (made if missing): found out before any work."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".xception-probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{folder}: cannot write shards there ({e.strerror})") from None


def _shutdown_quietly(ray) -> None:
    import signal

    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        ray.shutdown()
        return
    try:
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, old)


def _run_on_ray(job, ray, names, missing, uris, actors) -> int:
    from .jobs import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, NoInputs
    from .output import display_path, path_key

    o, ui = job.o, job.ui
    for uri in uris:
        listed = list_uri(uri)
        if not listed:
            ui.warn(f"{uri}: no images found")
        names += listed
    if not [n for n in names if n not in missing]:
        raise NoInputs("no images found: " + "; ".join(o.inputs))

    shards = is_shard_target(o.output)
    out = None
    if shards:
        done = recorded_in_shards(o.output, o.head.key, warn=ui.warn)
        keep = [n for n in names if record_key(n) not in done]
        if len(keep) != len(names):
            ui.info(f"{len(names) - len(keep)} already recorded in {o.output}, {len(keep)} to go")
        names = keep
    else:
        out = job._open_output([n for n in names if n not in missing and not is_uri(n)])
        if out is not None and o.resume:
            before = len(names)
            names = [n for n in names if (n if is_uri(n) else path_key(n)) not in out.done]
            ui.info(f"resume: {before - len(names)} already {o.head.done} in {o.output}, {len(names)} to go")
    if not names:
        if out is not None:
            out.close()
        return EXIT_OK

    n_actors, per_actor = plan_actors(ray, actors)
    stats = RayStats(actors=n_actors)
    started = time.perf_counter()
    ds = build_dataset(names, missing, o, n_actors, per_actor, progress=getattr(ui, "show_progress", False))
    interrupted = False
    try:
        if shards:  # shard files, written as the results stream back: Ctrl-C keeps what is done
            writer = ShardFolderWriter(o.output, o.fmt, o.head.key, options=job._embed_options())
        else:
            writer = job._writer(out)
        try:
            for batch in ds.iter_batches(batch_size=o.batch_size, batch_format="numpy"):
                records = [record_from_json(t) for t in batch["record"]]
                for r in records:
                    if r.error is not None:
                        ui.warn(f"{display_path(r.path)[0]}: {r.error}")
                        stats.failed += 1
                    else:
                        stats.done += 1
                stats.nodes.update(batch["node"].tolist())
                writer.write(records)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            writer.close()
            if out is not None:
                out.close()
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - started
    total = time.perf_counter() - job.started
    rate = stats.done / elapsed if elapsed else 0.0
    ui.info(f"{'interrupted: ' if interrupted else ''}{o.head.done} {stats.done}, failed {stats.failed} in "
            f"{total:.1f} s on Ray ({stats.actors} actor(s) on {len(stats.nodes) or 1} node(s); "
            f"{elapsed:.1f} s {o.head.doing} at {rate:.1f} images/s)")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if stats.failed else EXIT_OK
