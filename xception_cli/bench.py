"""Speed measurement: model-only latency percentiles, training steps, end-to-end folders.

Warm-up is kept apart from steady state; every figure carries the system it came from. Used by
``xception benchmark``; importable without Click.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS = ("xception", "inception-v3")
MODES = ("inference", "train")
E2E_BATCH = 8  # the end-to-end run uses predict's default batch size


# ---------------------------------------------------------------------------------------------
# the system record


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def system_info(precision: str | None = None) -> dict:
    """Versions, CPU, threads and the CPU features that decide speed (oneDNN, AVX-512, AMX)."""
    import keras
    import tensorflow as tf

    model, flags = cpu_info()
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001 - internal API; fall back to the documented switch
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "platform": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count(),
        "precision": precision,
        "onednn": onednn,
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }


# ---------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    latencies_ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def time_calls(fn: Callable[[], object], warmup: int = 2, iterations: int | None = 10,
               seconds: float | None = None) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``iterations`` times (or for ``seconds``)."""
    for _ in range(warmup):
        fn()
    lat = []
    deadline = time.perf_counter() + seconds if seconds else None
    while True:
        t0 = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t0) * 1000)
        if deadline is not None:
            if time.perf_counter() >= deadline:
                break
        elif len(lat) >= (iterations or 1):
            break
    return Timing(lat)


def result_record(batch_size: int, precision: str, mode: str, timing: Timing, macs_per_image: int) -> dict:
    p50 = timing.percentile(50)
    ips = batch_size * 1000.0 / p50
    return {
        "batch_size": batch_size,
        "precision": precision,
        "mode": mode,
        "iterations": len(timing.latencies_ms),
        "images_per_second": round(ips, 3),
        "latency_ms": {"p50": round(p50, 3), "p90": round(timing.percentile(90), 3),
                       "p99": round(timing.percentile(99), 3)},
        "ms_per_image": round(p50 / batch_size, 3),
        "gmacs_per_second": round(macs_per_image * ips / 1e9, 2),
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------
# models


def build_model(name: str, precision: str, weights=None):
    """A fresh Keras model to benchmark (training mutates it, so never the shared engine's)."""
    import keras

    from .engine import _POLICY
    from .model import build_xception
    from .weights import load_weights, resolve_weights

    policy = _POLICY[precision]
    if name == "xception":
        path = resolve_weights(weights)
        model = build_xception(dtype_policy=policy, initialize=path is None)
        if path is not None:
            load_weights(model, path)
        return model
    if name == "inception-v3":
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy or "float32")
        try:
            return keras.applications.InceptionV3(weights=None)
        finally:
            keras.config.set_dtype_policy(previous)
    raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")


def train_step_fn(model, learning_rate: float = 0.01) -> Callable[[np.ndarray, np.ndarray], float]:
    """One SGD step (sparse categorical cross-entropy) as a compiled function."""
    import keras
    import tensorflow as tf

    opt = keras.optimizers.SGD(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    opt.build(model.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.cast(model(x, training=True), tf.float32))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda x, y: float(step(x, y))


def model_macs(model) -> tuple[int, int]:
    from .architecture import totals

    t = totals(model)
    return t["params"], t["macs"]


# ---------------------------------------------------------------------------------------------
# the whole benchmark


def end_to_end(paths: list[str], weights, precision: str, batch_size: int, workers: int | None = None) -> dict:
    """Run the real predict pipeline over ``paths``: where the time goes, and how well it overlaps."""
    from .engine import get_engine
    from .pipeline import Stats, classify_stream

    engine = get_engine(weights=weights, precision=precision)
    engine.infer(np.zeros((1, engine.input_size, engine.input_size, 3), np.float32))  # warm, untimed
    stats = Stats()
    for _ in classify_stream(((p, p) for p in paths), engine, batch_size=batch_size, workers=workers,
                             stats=stats):
        pass
    n = stats.classified + stats.failed
    hidden = 1.0 - stats.wait_s / stats.decode_s if stats.decode_s > 0 else 0.0
    return {
        "images": n, "classified": stats.classified, "failed": stats.failed,
        "batch_size": batch_size, "precision": precision, "elapsed_s": round(stats.elapsed_s, 3),
        "images_per_second": round(n / stats.elapsed_s, 3) if stats.elapsed_s else 0.0,
        "decode_ms_per_image": round(stats.decode_s / n * 1000, 2) if n else 0.0,
        "model_ms_per_image": round(stats.model_s / n * 1000, 2) if n else 0.0,
        "decode_hidden_fraction": round(min(1.0, max(0.0, hidden)), 3),
    }


def run_benchmark(
    model: str = "xception",
    batch_sizes=(1, 8, 32),
    warmup: int = 2,
    iterations: int | None = 10,
    seconds: float | None = None,
    precision: str = "float32",
    compare_precision: bool = False,
    mode: str = "inference",
    weights=None,
    threads: int | None = None,
    images: list[str] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure and return the JSON-ready benchmark record (see the README for its schema)."""
    from .engine import PRECISIONS, get_engine, import_tensorflow_quietly, keras_inference

    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    batch_sizes = list(batch_sizes)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("batch sizes must be positive integers")
    log = log or (lambda msg: None)

    t0 = time.perf_counter()
    import_tensorflow_quietly()
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            log("warning: TensorFlow is already running; --threads has no effect in this process")

    precisions = ["float32", "bfloat16"] if compare_precision else [precision]
    rng = np.random.default_rng(seed)
    out: dict = {"system": None, "model": None, "cold_start_s": None, "first_call_s": None, "results": []}
    probe = _agreement_inputs(images, rng)  # for float32 vs bfloat16 top-1 agreement
    probe_outputs = {}
    inputs = {bs: rng.uniform(-1, 1, (bs, 299, 299, 3)).astype(np.float32) for bs in batch_sizes}
    labels = {bs: rng.integers(0, 1000, (bs,)) for bs in batch_sizes}

    for prec in precisions:
        log(f"building {model} ({prec}, {mode})")
        t_build = time.perf_counter()
        if model == "xception" and mode == "inference":
            engine = get_engine(weights=weights or "none", precision=prec)
            net, fn = engine.model, engine.infer
        else:
            net = build_model(model, prec, weights=weights)
            fn = keras_inference(net) if mode == "inference" else None
        built = time.perf_counter()
        if out["cold_start_s"] is None:
            out["cold_start_s"] = round(built - t0, 3)
            if model == "xception" and mode == "inference":
                # import_s is ~0 here: TensorFlow was imported above, in the first line's time
                t = engine.timings
                out["cold_start_breakdown_s"] = {
                    "import_s": round(built - t0 - t["resolve_weights_s"] - t["build_s"] - t["load_weights_s"], 3),
                    "resolve_weights_s": round(t["resolve_weights_s"], 3), "build_s": round(t["build_s"], 3),
                    "load_weights_s": round(t["load_weights_s"], 3)}
            params, macs = model_macs(net)
            out["model"] = {"name": model, "params": params, "macs_per_image": macs,
                            "input_shape": [int(d) for d in net.input.shape[1:]]}
        else:
            out.setdefault("extra_build_s", {})[prec] = round(built - t_build, 3)
        macs = out["model"]["macs_per_image"]
        if mode == "train":
            step = train_step_fn(net)

            def call_for(bs, step=step):
                x, y = inputs[bs], labels[bs]
                return lambda: step(x, y)
        else:
            def call_for(bs, fn=fn):
                x = inputs[bs]
                return lambda: fn(x)
        t_first = time.perf_counter()
        call_for(batch_sizes[0])()
        first = round(time.perf_counter() - t_first, 3)
        if out["first_call_s"] is None:
            out["first_call_s"] = first
        else:
            out.setdefault("extra_first_call_s", {})[prec] = first
        if mode == "inference" and compare_precision:
            probe_outputs[prec] = fn(probe)
        for bs in batch_sizes:
            log(f"timing batch {bs} ({prec}, {mode})")
            timing = time_calls(call_for(bs), warmup=warmup, iterations=iterations, seconds=seconds)
            out["results"].append(result_record(bs, prec, mode, timing, macs))

    system = system_info(precision="+".join(precisions))
    out["system"] = system
    for r in out["results"]:
        r["system"] = system
    if compare_precision:
        by = {(r["precision"], r["batch_size"]): r for r in out["results"]}
        cmp = {"speedup_bfloat16_vs_float32": {
            str(bs): round(by["float32", bs]["latency_ms"]["p50"] / by["bfloat16", bs]["latency_ms"]["p50"], 3)
            for bs in batch_sizes}}
        if probe_outputs:
            a, b = probe_outputs["float32"], probe_outputs["bfloat16"]
            cmp["top1_agreement"] = round(float(np.mean(a.argmax(1) == b.argmax(1))), 3)
            cmp["max_abs_probability_difference"] = float(np.abs(a - b).max())
            cmp["agreement_inputs"] = f"{len(probe)} {'images from --images' if images else 'random inputs'}"
            if not weights:
                cmp["note"] = ("random weights give near-uniform probabilities, so top-1 agreement is not "
                               "meaningful: pass --weights imagenet (or a weights file)")
        out["comparison"] = cmp
    if images:
        log(f"end to end over {len(images)} files")
        out["end_to_end"] = end_to_end(images, weights or "none", precisions[0], E2E_BATCH)
    return out



def _agreement_inputs(images, rng, n: int = 8) -> np.ndarray:
    """Up to ``n`` preprocessed images from ``images`` (real photos say more), else random inputs."""
    from .preprocess import ImageError, preprocess_image

    batch = []
    for p in images or ():
        try:
            batch.append(preprocess_image(p))
        except ImageError:
            continue
        if len(batch) == n:
            break
    if batch:
        return np.stack(batch)
    return rng.uniform(-1, 1, (n, 299, 299, 3)).astype(np.float32)
