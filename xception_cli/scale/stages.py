"""The Ray Data stages: decoding tasks (``decode_batch``) and the inference actor
(``XceptionPredictor``), and the dataset that chains them for a job (``build_dataset``)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ..config import DEFAULT_PREPROCESS
from ..discovery import MISSING
from ..errors import ImageError
from .uris import is_uri, read_bytes

DECODE_CPUS = 0.5  # a decoding task's share of a CPU; every node keeps this much free for them


def decode_batch(batch: dict, size: int = DEFAULT_PREPROCESS.input_size, resize: str = "center-crop") -> dict:
    """A Ray task: ``path`` (+ ``missing``) -> ``pixels`` (uint8 ``[N, size, size, 3]``) and ``error``
    ("" when decoded); a file or object that cannot be read becomes an error, never an exception."""
    from ..preprocess import load_image

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

    ``ds.map_batches(XceptionPredictor, fn_constructor_kwargs={"weights": "imagenet", "head": Classify(3)},
    batch_size=8, concurrency=2)``. A batch holds ``path`` and either ``pixels`` (uint8 ``[N, 299, 299, 3]``, as
    ``decode_batch`` makes them), ``image`` (arrays of any size, as ``ray.data.read_images`` gives)
    or ``bytes`` (as ``read_binary_files`` gives); an ``error`` column marks inputs already failed.
    It returns ``path``, ``ok``, ``record`` (the record as JSON, exactly as ``predict`` writes it)
    and ``node`` (the Ray node that ran it).

    ``head``: what the network's output becomes, ``heads.Classify(k)`` (top-k labels, the default
    ``Classify(5)``) or ``heads.Embed(pooling, normalize)`` (embeddings).
    ``threads``: inference threads (default: the CPUs this actor holds).
    """

    def __init__(self, weights="imagenet", head=None, precision: str = "float32", runtime: str | None = None,
                 threads: int | None = None, resize: str | None = None):
        from ..engine import Engine
        from ..heads import Classify, Embed

        if head is None:
            head = Classify()
        if not isinstance(head, (Classify, Embed)):
            raise TypeError(f"head must be heads.Classify(k) or heads.Embed(pooling, normalize), got {head!r}")
        self.head = head
        if threads is None:
            threads = _actor_cpus()
        self.engine = Engine(weights=weights, include_top=self.head.include_top, pooling=self.head.pooling,
                             precision=precision, runtime_request=runtime, threads=threads)
        _ = self.engine.network  # build now, once per actor
        if isinstance(self.head, Classify) and self.engine.class_names:  # a model of your own classes
            from dataclasses import replace

            self.head = replace(self.head, labels=tuple(self.engine.class_names))
        self.resize = resize or self.engine.resize  # None: as the weights were made
        self.node = ""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():  # asking outside Ray would start a local Ray
            try:
                self.node = ray.get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - no node to name: the record says ""
                pass

    def __call__(self, batch: dict) -> dict:
        from ..output.records import record_dict
        from ..pipeline import Record
        from ..preprocess import load_image

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
        values = iter(self.head.values(self.engine.infer_pixels(pixels[ok]))) if ok else iter(())
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

    from ..labels import Prediction
    from ..pipeline import Record

    d = json.loads(text)
    path = os.fsdecode(base64.b64decode(d["path_base64"])) if "path_base64" in d else d["path"]
    if "error" in d:
        return Record(path, error=d["error"])
    if "embedding" in d:
        return Record(path, embedding=np.asarray(d["embedding"], np.float32))
    return Record(path, predictions=[Prediction(**p) for p in d["predictions"]])


def build_dataset(names: list[str], missing: set[str], options, actors: int, cpus_per_actor: float,
                  decode_cpus: float = DECODE_CPUS, progress: bool = False):
    """names -> decode tasks -> actor pool: a lazy dataset of ``path, ok, record, node``.
    ``progress``: Ray Data's own progress bars (the command line draws its own)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress
    ctx.enable_auto_log_stats = False
    ds = ray.data.from_items([{"path": n, "missing": n in missing} for n in names],
                             override_num_blocks=max(1, min(len(names), 4 * max(actors, 1))))
    ds = ds.map_batches(decode_batch, batch_size=options.batch_size, num_cpus=decode_cpus,
                        fn_kwargs={"resize": options.resize})
    kwargs = {"weights": options.weights, "head": options.head, "precision": options.precision,
              "runtime": options.runtime, "resize": options.resize, "threads": max(1, round(cpus_per_actor))}
    return ds.map_batches(bound_predictor(**kwargs), batch_size=options.batch_size, num_cpus=cpus_per_actor,
                          compute=ray.data.ActorPoolStrategy(size=actors))


def bound_predictor(**kwargs) -> type:
    """``XceptionPredictor`` with its arguments bound in the class (shipped with it, so the actors
    need no constructor arguments from the object store)."""

    class BoundXceptionPredictor(XceptionPredictor):
        def __init__(self):
            super().__init__(**kwargs)

    return BoundXceptionPredictor
