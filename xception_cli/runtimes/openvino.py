"""Xception on OpenVINO: ``model.xception_graph`` built op by op as an ``openvino.Model``.

No TensorFlow and no Keras, here or in what this imports: the weights are NumPy arrays
``{keras layer name: [arrays]}`` (``weights.read_for_layout(path, weight_layout(include_top))``),
every BatchNormalization is folded into the convolution before it (``fused.fold``), and the
graph is compiled by OpenVINO's CPU plugin.

The model takes what the other runtimes take, an NHWC float32 batch ``(N, size, size, 3)``
(dynamic N) scaled to ``[-1, 1]``, and transposes it to NCHW inside the graph; kernels are
stored OIHW, a depthwise kernel as a group convolution's ``[C, 1, 1, 3, 3]``. TensorFlow's
"SAME" padding is ``auto_pad="same_upper"``: the odd pixel of padding goes at the end, as in TF,
which matters for the stride-2 max-pools on even sizes (74 -> 37 even at 299; "same_lower" is
off by up to 0.66 there). In float32 it matches ``keras.applications.Xception`` to ~3e-6 in
probabilities and ~5e-6 relative in features.

Precision: on CPUs with AVX512-BF16 or AMX, OpenVINO runs in bfloat16 *by default*;
``compile_model`` always pins ``INFERENCE_PRECISION_HINT`` and ``actual_precision`` reads back
what the plugin chose. In bfloat16 the classifier runs in bfloat16 too (Keras keeps it float32).

    from xception_cli.runtimes.openvino import build_model, compile_model, make_infer
    infer = make_infer(compile_model(build_model(weights)))
    probabilities = infer(batch)  # (N, 1000) float32
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .. import config
from ..fused import fold
from ..model import check_graph_weights, xception_graph
from .network import import_openvino

ov = import_openvino()
from openvino import opset13 as opset  # noqa: E402 - every op used here is unchanged up to opset16

PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}  # ours -> OpenVINO's element type names
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
DEVICE = "CPU"
_AUTO_PAD = {"same": "same_upper", "valid": "valid"}
_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)


class OpenVinoOps:
    """``xception_graph``'s operations as OpenVINO nodes (NCHW) over folded copies of the weights.

    ``weights``: ``{layer name: [arrays]}`` with the names and weight order of the Keras model.
    Nodes are named after the Keras layers (the bias add of a folded pair after its
    BatchNormalization), which is what OpenVINO's profiling reports.
    """

    def __init__(self, weights: dict[str, list[np.ndarray]]):
        self.weights = weights

    @staticmethod
    def _const(array) -> ov.Node:
        return opset.constant(np.ascontiguousarray(array, dtype=np.float32))

    def _bias(self, x, bias, name):
        return opset.add(x, self._const(np.reshape(bias, (1, -1, 1, 1))), name=name)

    def conv_bn(self, x, filters, kernel, name, bn_name, strides=1, padding="valid"):
        (k,) = self.weights[name]
        k, b = fold(k, *self.weights[bn_name])
        y = opset.convolution(x, self._const(k.transpose(3, 2, 0, 1)), [strides, strides], [0, 0], [0, 0],
                              [1, 1], auto_pad=_AUTO_PAD[padding], name=name)  # HWIO -> OIHW
        return self._bias(y, b, bn_name)

    def sepconv_bn(self, x, filters, name):
        depthwise, pointwise = self.weights[name]
        pointwise, b = fold(pointwise, *self.weights[f"{name}_bn"])
        kh, kw, channels, multiplier = depthwise.shape
        # (kh, kw, C, 1) -> groups of one channel each: [C, 1, 1, kh, kw]
        dw = depthwise.transpose(2, 3, 0, 1).reshape(channels, multiplier, 1, kh, kw)
        y = opset.group_convolution(x, self._const(dw), [1, 1], [0, 0], [0, 0], [1, 1],
                                    auto_pad="same_upper", name=f"{name}_depthwise")
        y = opset.convolution(y, self._const(pointwise.transpose(3, 2, 0, 1)), [1, 1], [0, 0], [0, 0],
                              [1, 1], auto_pad="valid", name=f"{name}_pointwise")
        return self._bias(y, b, f"{name}_bn")

    def relu(self, x, name):
        return opset.relu(x, name=name)

    def maxpool(self, x, name):
        pool = opset.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [3, 3], "floor", "same_upper", name=name)
        return pool.output(0)  # MaxPool-8 also returns the indices

    def add(self, x, y, name):
        return opset.add(x, y, name=name)

    def avg_pool(self, x, name):
        return opset.reduce_mean(x, opset.constant(np.array([2, 3], dtype=np.int64)), False, name=name)

    def max_pool(self, x, name):
        return opset.reduce_max(x, opset.constant(np.array([2, 3], dtype=np.int64)), False, name=name)

    def dense(self, x, units, activation, name):
        kernel, bias = self.weights[name]
        y = opset.add(opset.matmul(x, self._const(kernel), False, False), self._const(bias),
                      name=name if activation in (None, "linear") else f"{name}_logits")
        if activation in (None, "linear"):
            return y
        if activation == "softmax":
            return opset.softmax(y, 1, name=name)
        raise ValueError(f"unsupported classifier activation for OpenVINO: {activation!r}")


def build_model(
    weights: dict[str, list[np.ndarray]],
    include_top: bool = True,
    pooling: str | None = None,
    input_size: int = config.IMAGENET_INPUT_SIZE,
    classes: int | None = None,
    classifier_activation: str | None = "softmax",
) -> ov.Model:
    """The Xception ``openvino.Model`` over ``weights``: input ``input_image``, NHWC float32
    ``[?, input_size, input_size, 3]``; output ``(N, classes)`` probabilities with the top
    (logits with ``classifier_activation=None``), ``(N, 2048)`` for pooling ``"avg"``/``"max"``,
    else the NHWC feature map ``(N, h, w, 2048)``.

    ``classes`` defaults to the size of ``weights["predictions"]``.
    """
    height, width, classes = check_graph_weights(weights, include_top, pooling, input_size, classes)

    image = opset.parameter([-1, height, width, 3], np.float32, name="input_image")
    x = opset.transpose(image, opset.constant(np.array(_NHWC_TO_NCHW, dtype=np.int64)))
    y = xception_graph(x, OpenVinoOps(weights), include_top=include_top, pooling=pooling, classes=classes,
                       classifier_activation=classifier_activation)
    if include_top:
        output_name = "predictions"
    elif pooling is not None:
        output_name = f"{pooling}_pool"
    else:
        output_name = "block14_sepconv2_act"
        y = opset.transpose(y, opset.constant(np.array(_NCHW_TO_NHWC, dtype=np.int64)), name="features_nhwc")
    result = opset.result(y, name=output_name)
    result.output(0).get_tensor().set_names({output_name})
    return ov.Model([result], [image], "xception")


_core: ov.Core | None = None
_core_lock = threading.Lock()


def core() -> ov.Core:
    """One ``openvino.Core`` per process (creating one loads the plugins' registry)."""
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


def compile_model(
    model: ov.Model,
    *,
    precision: str = "float32",
    hint: str = "LATENCY",
    streams: int | str | None = None,
    cache_dir: str | None = None,
    threads: int | None = None,
    device: str = DEVICE,
) -> ov.CompiledModel:
    """Compile ``model`` for ``device`` with ``INFERENCE_PRECISION_HINT`` pinned to ``precision``.

    ``hint``: ``PERFORMANCE_HINT`` (``"LATENCY"``: one stream, all cores on each request;
    ``"THROUGHPUT"``: several streams, for several requests in flight). ``streams``:
    ``NUM_STREAMS`` (an int or ``"AUTO"``), ``threads``: ``INFERENCE_NUM_THREADS``, ``cache_dir``:
    ``CACHE_DIR``, where compiled blobs are kept and reused by later compilations of the same model.
    """
    return core().compile_model(model, device, _config(precision, hint, streams, cache_dir, threads))


def _config(precision: str, hint: str, streams=None, cache_dir=None, threads=None) -> dict:
    import openvino.properties as props
    import openvino.properties.hint as hints

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if str(hint).upper() not in HINTS:
        raise ValueError(f"hint must be one of {', '.join(HINTS)}; got {hint!r}")
    cfg = {
        hints.inference_precision: ov.Type.f32 if precision == "float32" else ov.Type.bf16,
        hints.performance_mode: getattr(hints.PerformanceMode, str(hint).upper()),
    }
    if streams is not None:
        cfg[props.num_streams] = props.streams.Num.AUTO if str(streams).upper() == "AUTO" else int(streams)
    if threads is not None:
        cfg[props.inference_num_threads] = int(threads)
    if cache_dir is not None:
        cfg[props.cache_dir] = str(cache_dir)
    return cfg


def actual_precision(compiled: ov.CompiledModel) -> str:
    """The precision the plugin actually runs in, read back from the compiled model:
    ``"float32"``, ``"bfloat16"`` (or ``"float16"``, or OpenVINO's own name for anything else)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = value.get_type_name() if isinstance(value, ov.Type) else str(value).lower()
    return {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}.get(name, name)


def input_feeder(model: ov.Model | ov.CompiledModel) -> Callable[[np.ndarray], np.ndarray]:
    """``f(batch) -> what the model's input takes``, for a batch of either kind: uint8 RGB pixels or
    float32 scaled to ``[-1, 1]``. An IR exported with uint8 input (``export openvino``, the
    default) scales inside; float32 is made pixels again for it (exact on ``to_input``'s output),
    and pixels are scaled for a float32 model."""
    from ..preprocess import from_input, to_input

    if model.input(0).get_element_type() == ov.Type.u8:
        return lambda b: np.ascontiguousarray(b) if b.dtype == np.uint8 else from_input(b)
    return lambda b: to_input(b) if b.dtype == np.uint8 else np.ascontiguousarray(b, dtype=np.float32)


def make_infer(compiled: ov.CompiledModel, keep: object = None) -> Callable[[np.ndarray], np.ndarray]:
    """``f(NHWC batch) -> float32 array`` (a copy) on one InferRequest: float32 in ``[-1, 1]`` or
    uint8 pixels, whichever input the model takes (``input_feeder``); the batch is copied in
    (about 1 MB per image, negligible next to the network) and never written to.

    ``keep``: what must live as long as the model (the buffer it was imported from, used in place).

    Calls from several threads are serialised by a lock; for requests in parallel use
    ``make_async_infer`` (with a THROUGHPUT-compiled model).
    """
    request = compiled.create_infer_request()
    lock = threading.Lock()
    feed = input_feeder(compiled)

    def infer(batch: np.ndarray) -> np.ndarray:
        x = feed(np.asarray(batch))
        with lock:
            _ = keep
            # share_inputs=False: with True, OpenVINO 2026.4's CPU plugin keeps the caller's array
            # as the request's input memory, and another request of the same stream (shared
            # memory) later writes into it: the caller's batch is silently overwritten.
            request.infer({0: x}, share_inputs=False)
            return request.get_output_tensor(0).data.copy()

    return infer


def make_async_infer(
    compiled: ov.CompiledModel, jobs: int | None = None
) -> Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]]:
    """``f(iterable of batches) -> iterator of outputs, in order``, with up to ``jobs`` requests in
    flight (default: the compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, which follows its
    streams: compile with ``hint="THROUGHPUT"`` or ``streams=N`` for this to run in parallel).

    The next batch is taken from the iterable while the others run, so a producer (decoding
    images) overlaps with inference. Inputs are copied into the requests.

    Plain InferRequests taken round-robin (the oldest in flight is the next to reuse) rather than
    ``openvino.AsyncInferQueue``: its Python callbacks run in OpenVINO's threads, and a garbage
    collection triggered there can destroy OpenVINO objects from the wrong thread (seen with
    OpenVINO 2026.4: "terminate called without an active exception" at interpreter exit).
    """
    if jobs is None:
        jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    feed = input_feeder(compiled)

    def run(batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        requests = [compiled.create_infer_request() for _ in range(jobs)]
        sent = 0
        try:
            for batch in batches:
                request = requests[sent % jobs]
                ready = None
                if sent >= jobs:  # this request carries batch sent - jobs, the oldest in flight
                    request.wait()
                    ready = request.get_output_tensor(0).data.copy()
                request.start_async({0: feed(np.asarray(batch))}, share_inputs=False)
                sent += 1
                if ready is not None:
                    yield ready
            for k in range(max(0, sent - jobs), sent):
                request = requests[k % jobs]
                request.wait()
                yield request.get_output_tensor(0).data.copy()
        finally:
            for request in requests[:sent]:  # never leave requests running on buffers we drop
                request.wait()

    return run


def load(spec, precision: str):
    """The network on OpenVINO for ``runtimes.load_network``: ``spec`` a ``runtimes.NetworkSpec``
    (official-format .h5, random weights, or an IR written by ``xception export openvino``),
    ``precision`` the one ``decide_precision`` chose. The returned ``Network.precision`` is what
    the plugin actually runs, read back (``int8`` for a quantized IR)."""
    import time

    from . import cache
    from .network import weight_arrays

    t0 = time.perf_counter()
    key = cache.network_key(spec, "openvino", ov.__version__, precision, "LATENCY", DEVICE)
    found = cache.load(key)
    if found is not None:
        header, blob = found
        t1 = time.perf_counter()
        try:
            compiled = core().import_model(ov.Tensor(np.frombuffer(blob, np.uint8), shared_memory=True), DEVICE,
                                           _config(precision, "LATENCY", threads=spec.threads))
        except Exception as e:  # noqa: BLE001 - a blob OpenVINO cannot read: rebuilt
            cache.unusable(key, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        else:
            return _network(compiled, precision, bool(header.get("quantized")), keep=blob, cache_state="loaded",
                            timings={"cache_read_s": t1 - t0, "cache_import_s": time.perf_counter() - t1})
    quantized = False
    if spec.weights.format == "openvino-ir":
        model = read_ir(spec.weights.path, spec)
        quantized = _is_quantized(model)
        t1 = t2 = time.perf_counter()
    else:
        weights = weight_arrays(spec)
        t1 = time.perf_counter()
        model = build_model(weights, include_top=spec.include_top, pooling=spec.pooling, input_size=spec.input_size)
        del weights  # the model holds its own (folded) constants
        t2 = time.perf_counter()
    compiled = compile_model(model, precision=precision, threads=spec.threads)
    t3 = time.perf_counter()
    timings = {"read_weights_s": t1 - t0, "build_s": t2 - t1, "compile_s": t3 - t2}
    stored = key is not None and cache.store(key, {"quantized": quantized}, lambda: _exported(compiled))
    if stored:
        timings["cache_store_s"] = time.perf_counter() - t3
    return _network(compiled, precision, quantized, cache_state="stored" if stored else None, timings=timings)


def _exported(compiled: ov.CompiledModel) -> memoryview:
    out = compiled.export_model()  # a BytesIO (bytes in some versions)
    return out.getbuffer() if hasattr(out, "getbuffer") else memoryview(out)


def _network(compiled, precision: str, quantized: bool, keep=None, cache_state=None, timings=None):
    """The ``Network`` of a compiled model; ``keep``: the buffer it was imported from (used in place)."""
    from .network import Network

    actual = actual_precision(compiled)
    notes = [] if actual == precision else [f"--precision {precision}: OpenVINO ran {actual} on this CPU"]
    return Network(infer=make_infer(compiled, keep), runtime="openvino", version=ov.__version__.split("-")[0],
                   precision="int8" if quantized else actual, notes=notes, handle=compiled, cache=cache_state,
                   timings=timings or {}, takes_pixels=compiled.input(0).get_element_type() == ov.Type.u8)


def read_ir(path, spec) -> ov.Model:
    """An exported IR, checked to be the network ``spec`` asks for (input size, classes or features)."""
    from ..weights import WeightsError
    from ..weights.ir import check_ir

    try:
        model = core().read_model(str(path))
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with long messages
        raise WeightsError(f"{path}: cannot read as an OpenVINO IR ({str(e).strip().splitlines()[0]})") from None
    if not spec.include_top:
        raise WeightsError(f"{path}: an exported IR ends with its classifier, so it cannot give embeddings: use the "
                           ".h5 it was exported from")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise WeightsError(f"{path}: not an Xception IR (expected one input and one output)")
    shape = model.input(0).get_partial_shape()
    want = [spec.input_size, spec.input_size, 3]
    if shape.rank.get_length() != 4 or [d.get_length() if d.is_static else None for d in list(shape)[1:]] != want:
        raise WeightsError(f"{path}: the IR takes input {shape}, expected [?,{','.join(map(str, want))}] (NHWC)")
    out = model.output(0).get_partial_shape()
    if spec.include_top and (out.rank.get_length() != 2 or not out[1].is_static):
        raise WeightsError(f"{path}: the IR's output is {out}, expected [?,classes] probabilities")
    check_ir(model, path, want)  # its operations and sizes, before anything is compiled
    return model


def _is_quantized(model: ov.Model) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
