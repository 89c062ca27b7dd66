"""An OpenVINO IR given as weights, measured before it is compiled.

An IR is a graph, not a list of arrays: any graph that takes a 299x299x3 image and gives
``[?, N]`` would run, and a 3 KB one that tiles its input to 6e8 values took 14 GB. ``check_ir``
refuses, from the graph's declarations alone (nothing is computed or compiled):

* an operation that ``xception export openvino`` never writes (``EXPORTED_OPS``: what its float32,
  ``--input float`` and ``--int8`` IRs hold);
* with the batch set to 1, a tensor without a fixed shape, one computed from the image of more
  than ``MAX_TENSOR_VALUES`` values, or more than ``MAX_LIVE_BYTES`` of such tensors alive at
  once (each kept from the operation that makes it to the last one that uses it, in the graph's
  order); at batch N the network takes N times that;
* more than ``MAX_CONSTANT_BYTES`` of weights and of what is computed from weights alone (an INT8
  IR widens its weights to float32 in the graph: OpenVINO computes those once, when compiling).

The model (an ``openvino.Model``; this module does not import OpenVINO) is set back to a dynamic
batch afterwards. Every refusal is a ``WeightsError`` with one line naming the file.
"""

from __future__ import annotations

import math

from ..errors import WeightsError, one_line
from .files import MAX_WEIGHTS_BYTES

EXPORTED_OPS = frozenset({
    "Parameter", "Result", "Constant", "Convert", "Subtract", "Multiply", "Transpose", "Convolution",
    "GroupConvolution", "Add", "Relu", "MaxPool", "ReduceMean", "MatMul", "Softmax", "FakeQuantize"})
# Xception's largest activation at 299x299 is 2.8 M values (block2's 128x147x147); its IRs (float32,
# INT8) keep 27 MiB alive at once for one image. Bounds well above both:
MAX_TENSOR_VALUES = 1 << 24  # 16.8 M values, 64 MiB in float32, for one image
MAX_LIVE_BYTES = 128 << 20  # for one image
MAX_CONSTANT_BYTES = 3 * MAX_WEIGHTS_BYTES  # INT8 keeps 1 byte a weight and widens it to 4, then scales it


def check_ir(model, path, image_shape: list[int]) -> None:
    """Refuse ``model`` (an ``openvino.Model`` taking NHWC ``[?, *image_shape]``) unless it is
    built from the operations an export writes, within the bounds above at batch 1."""
    odd = sorted({op.get_type_name() for op in model.get_ops()} - EXPORTED_OPS)
    if odd:
        raise WeightsError(f"{path}: not an Xception IR: it holds {', '.join(odd[:3])} operations, which "
                           "xception export openvino never writes")
    try:
        model.reshape([1, *image_shape])
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with long messages
        raise WeightsError(f"{path}: not an Xception IR: it cannot run one image ({one_line(e)})") from None
    try:
        _measure(model.get_ordered_ops(), path)
    finally:
        model.reshape([-1, *image_shape])


def _measure(ops: list, path) -> None:
    order = {op: k for k, op in enumerate(ops)}
    from_image, live, peak, constant = set(), {}, 0, 0
    for k, op in enumerate(ops):
        name = f"'{op.get_friendly_name()[:60]}' ({op.get_type_name()})"
        if op.get_type_name() == "Parameter" or any(i.get_source_output().get_node() in from_image
                                                    for i in op.inputs()):
            from_image.add(op)
        for out in op.outputs():
            shape = out.get_partial_shape()
            if not shape.is_static:
                raise WeightsError(f"{path}: not an Xception IR: {name} has no fixed shape for one image ({shape})")
            values = math.prod(int(d) for d in out.get_shape())
            size = values * max(1, out.get_element_type().size)
            if op not in from_image:
                constant += size
                continue
            if values > MAX_TENSOR_VALUES:
                raise WeightsError(f"{path}: not an Xception IR: {name} makes {values:,} values for one image, over "
                                   f"the limit of {MAX_TENSOR_VALUES:,}")
            last = max((order.get(i.get_node(), k) for i in out.get_target_inputs()), default=k)
            live[(k, out.get_index())] = (last, size)
        peak = max(peak, sum(size for _, size in live.values()))
        live = {key: (last, size) for key, (last, size) in live.items() if last > k}
    if peak > MAX_LIVE_BYTES:
        raise WeightsError(f"{path}: not an Xception IR: it keeps {math.ceil(peak / 2**20):,} MiB alive for one "
                           f"image, over the limit of {MAX_LIVE_BYTES >> 20:,} MiB")
    if constant > MAX_CONSTANT_BYTES:
        raise WeightsError(f"{path}: its weights take {math.ceil(constant / 2**20):,} MiB, over the limit of "
                           f"{MAX_CONSTANT_BYTES >> 20:,} MiB")
