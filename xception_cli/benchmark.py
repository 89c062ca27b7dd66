"""Speed measurement: model-only latency percentiles, training steps, end-to-end folders.

Warm-up is kept apart from steady state; every figure carries the system it came from. Used by
``xception benchmark``; importable without Click.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .system import cpu_record, peak_rss_mb

MODELS = ("xception", "inception-v3")
MODES = ("inference", "train")
E2E_BATCH = 8  # the end-to-end run uses predict's default batch size


# ---------------------------------------------------------------------------------------------
# the system record


def system_info(precision: str | None = None, network=None) -> dict:
    """Versions, CPU, threads and the CPU features that decide speed; the runtime that ran and the
    precision it actually ran in. TensorFlow's details only where TensorFlow was loaded."""
    info = {"python": platform.python_version(), "platform": platform.platform(), **cpu_record(),
            "precision": precision}
    if network is not None:
        info.update(runtime=network.runtime, runtime_version=network.version, precision_run=network.precision)
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow as tf

        try:
            from tensorflow.python.util import _pywrap_util_port

            onednn = bool(_pywrap_util_port.IsMklEnabled())
        except Exception:  # noqa: BLE001 - internal API; fall back to the documented switch
            onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
        info.update(
            tensorflow=tf.__version__, keras=keras.__version__, backend=keras.backend.backend(), onednn=onednn,
            intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
            inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count(),
        )
    return info


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


def precision_label(record: dict) -> str:
    """The precision a result record ran in, said plainly: ``int8`` for quantized weights (the
    precision asked for covers only their unquantized layers), ``float32 (bfloat16 asked)`` when
    the CPU could not run what was asked."""
    asked = record["precision"]
    ran = record.get("precision_run", asked)
    return ran if ran in (asked, "int8") else f"{ran} ({asked} asked)"


# ---------------------------------------------------------------------------------------------
# models


def build_model(name: str, precision: str, weights=None):
    """A fresh Keras model to benchmark (training mutates it, so never the shared engine's)."""
    import keras

    from .engine import _POLICY, Engine

    policy = _POLICY[precision]
    if name == "xception":  # a private engine: its Keras model is trained, never the shared one
        return Engine(weights=weights, precision=precision, runtime_request="tensorflow").model
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


def end_to_end(paths: list[str], weights, precision: str, batch_size: int, workers: int | None = None,
               runtime: str | None = None) -> dict:
    """Run the real predict pipeline over ``paths``: where the time goes, and how well it overlaps."""
    from .engine import get_engine
    from .pipeline import Stats, classify_stream

    engine = get_engine(weights=weights, precision=precision, runtime=runtime)
    engine.infer(np.zeros((1, engine.input_size, engine.input_size, 3), np.float32))  # warm, untimed
    stats = Stats()
    for _ in classify_stream(((p, p) for p in paths), engine, batch_size=batch_size, workers=workers,
                             stats=stats):
        pass
    n = stats.classified + stats.failed
    hidden = 1.0 - stats.wait_s / stats.decode_s if stats.decode_s > 0 else 0.0
    return {
        "images": n, "classified": stats.classified, "failed": stats.failed,
        "batch_size": batch_size, "precision": engine.network.precision, "runtime": engine.runtime,
        "elapsed_s": round(stats.elapsed_s, 3),
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
    runtime: str | None = None,
    compare_weights=None,
) -> dict:
    """Measure and return the JSON-ready benchmark record (see the README for its schema).

    Xception inference goes through the runtime layer (``runtime``: auto, openvino, tensorflow)
    exactly as ``predict`` does; training and Inception-v3 run on Keras. ``compare_weights``: a
    second weights file (e.g. an INT8 IR) timed the same way, with top-1 agreement and max |dp|
    against ``weights`` on the probe inputs (``images`` when given).
    """
    from . import config
    from .engine import Engine
    from .runtimes import PRECISIONS, requested_runtime

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
    runtime = requested_runtime(runtime)
    on_runtime_layer = model == "xception" and mode == "inference"
    if compare_weights is not None and (compare_precision or not on_runtime_layer):
        raise ValueError("--compare-weights compares two weights files for Xception inference, at one precision "
                         "(not with --compare-precision, --mode train or another model)")

    precisions = ["float32", "bfloat16"] if compare_precision else [precision]
    rng = np.random.default_rng(seed)
    out: dict = {"system": None, "model": None, "cold_start_s": None, "first_call_s": None, "results": []}
    probe = _agreement_inputs(images, rng)  # for float32 vs bfloat16 top-1 agreement
    probe_outputs = {}
    inputs = {bs: rng.uniform(-1, 1, (bs, 299, 299, 3)).astype(np.float32) for bs in batch_sizes}
    # A network that scales pixels itself (an IR exported with uint8 input) is timed on what predict
    # feeds it: uint8 pixels, not floats it would first turn back into pixels.
    pixel_rng = np.random.default_rng(seed + 1)
    pixels = {bs: pixel_rng.integers(0, 256, (bs, 299, 299, 3), dtype=np.uint8) for bs in batch_sizes}

    def feed_for(network) -> dict:
        return pixels if network.takes_pixels else inputs

    labels = {bs: rng.integers(0, 1000, (bs,)) for bs in batch_sizes}
    networks = {}

    t0 = time.perf_counter()  # the cold start: imports, weights, build
    if not on_runtime_layer or runtime == "tensorflow" or threads:
        from .runtimes.tensorflow import import_tensorflow_quietly

        import_tensorflow_quietly()
        if threads:
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:
                log("warning: TensorFlow is already running; --threads has no effect in this process")

    for prec in precisions:
        log(f"building {model} ({prec}, {mode})")
        t_build = time.perf_counter()
        if on_runtime_layer:
            # A private engine: a cold start is measured even if the process has built one before.
            engine = Engine(weights=weights or "none", precision=prec, runtime_request=runtime)
            network = networks[prec] = engine.network
            fn = network.infer
            params, macs = config.REFERENCE_PARAMS_TOP, config.REFERENCE_MACS_TOP  # checked against the model
            input_shape = [config.IMAGENET_INPUT_SIZE, config.IMAGENET_INPUT_SIZE, 3]
        else:
            from .runtimes.tensorflow import keras_inference

            net = build_model(model, prec, weights=weights)
            fn = keras_inference(net) if mode == "inference" else None
            params, macs = model_macs(net)
            input_shape = [int(d) for d in net.input.shape[1:]]
        built = time.perf_counter()
        if out["cold_start_s"] is None:
            out["cold_start_s"] = round(built - t0, 3)
            if on_runtime_layer:
                parts = {"resolve_weights_s": engine.timings["resolve_weights_s"], **network.timings}
                parts["other_s"] = max(0.0, built - t0 - sum(parts.values()))
                out["cold_start_breakdown_s"] = {k: round(v, 3) for k, v in parts.items()}
                # "loaded": the compiled network came from the user's cache (no .h5 read, no build)
                out["compiled_network_cache"] = getattr(network, "cache", None)
            out["model"] = {"name": model, "params": params, "macs_per_image": macs, "input_shape": input_shape}
        else:
            out.setdefault("extra_build_s", {})[prec] = round(built - t_build, 3)
        macs = out["model"]["macs_per_image"]
        if mode == "train":
            step = train_step_fn(net)

            def call_for(bs, step=step):
                x, y = inputs[bs], labels[bs]
                return lambda: step(x, y)
        else:
            feed = feed_for(network) if on_runtime_layer else inputs

            def call_for(bs, fn=fn, feed=feed):
                x = feed[bs]
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
            record = result_record(bs, prec, mode, timing, macs)
            if on_runtime_layer:
                record.update(runtime=networks[prec].runtime, runtime_version=networks[prec].version,
                              precision_run=networks[prec].precision)
            out["results"].append(record)

    first_net = networks.get(precisions[0])
    system = system_info(precision="+".join(precisions), network=first_net)
    out["system"] = system
    notes = [n for net in networks.values() for n in net.notes]
    if notes:
        out["notes"] = sorted(set(notes))
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
    if compare_weights is not None:
        other = Engine(weights=compare_weights, precision=precision, runtime_request=runtime).network
        log(f"timing the weights to compare ({compare_weights})")
        feed = feed_for(other)
        other.infer(feed[batch_sizes[0]])
        for bs in batch_sizes:
            timing = time_calls(lambda x=feed[bs]: other.infer(x), warmup=warmup, iterations=iterations,
                                seconds=seconds)
            record = result_record(bs, precision, mode, timing, out["model"]["macs_per_image"])
            record.update(runtime=other.runtime, runtime_version=other.version, precision_run=other.precision,
                          weights=str(compare_weights), system=system)
            out["results"].append(record)
        probe = _agreement_inputs(images, rng, n=64)  # more photos: INT8's agreement is the question
        a = np.concatenate([networks[precision].infer(probe[i:i + 8]) for i in range(0, len(probe), 8)])
        b = np.concatenate([other.infer(probe[i:i + 8]) for i in range(0, len(probe), 8)])
        base = [r for r in out["results"] if "weights" not in r]
        out["weights_comparison"] = {
            "weights": str(weights or "none"), "compare_weights": str(compare_weights),
            "precision_run": {"weights": networks[precision].precision, "compare_weights": other.precision},
            "speedup_compare_vs_weights": {
                str(r["batch_size"]): round(r["latency_ms"]["p50"] / c["latency_ms"]["p50"], 3)
                for r, c in zip(base, out["results"][len(base):])},
            "top1_agreement": round(float(np.mean(a.argmax(1) == b.argmax(1))), 3),
            "max_abs_probability_difference": float(np.abs(a - b).max()),
            "agreement_inputs": f"{len(probe)} {'images from --images' if images else 'random inputs'}",
        }
    if images:
        log(f"end to end over {len(images)} files")
        out["end_to_end"] = end_to_end(images, weights or "none", precisions[0], E2E_BATCH, runtime=runtime)
        if compare_weights is not None:
            out["end_to_end_compare_weights"] = end_to_end(images, compare_weights, precision, E2E_BATCH,
                                                           runtime=runtime)
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
