"""Inference with every BatchNormalization folded into the convolution before it.

At inference a BatchNormalization is an affine map per channel, ``y = x * s + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``; applied after a convolution it can be
folded into that convolution's (pointwise) kernel and a bias. ``FoldedOps`` runs
``model.xception_graph`` as plain TensorFlow ops on the folded weights of a built Keras model:
the same graph with 40 fewer per-pixel passes (about 10% faster on CPU), no second Keras model.
Numerically it matches the Keras model to ~1e-6.
"""

from __future__ import annotations

import numpy as np

from .model import BN_EPSILON, xception_graph


def fold(kernel: np.ndarray, gamma, beta, mean, var, eps: float = BN_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """Fold a BatchNormalization into the preceding kernel (output channels last): ``(kernel', bias)``."""
    scale = gamma / np.sqrt(var + eps)
    return (kernel * scale).astype(np.float32), (beta - mean * scale).astype(np.float32)


def model_weights(model) -> dict[str, list[np.ndarray]]:
    """``{layer name: [arrays]}`` of a built Keras model (read eagerly)."""
    return {layer.name: [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
            for layer in model.layers if layer.weights}


class FoldedOps:
    """``xception_graph``'s operations as TensorFlow ops over folded copies of the weights.

    ``weights``: ``{layer name: [arrays]}`` with the names and weight order of the Keras model
    (``model_weights(model)``, or a weights file read with ``weights.read_for_layout``).
    """

    def __init__(self, weights: dict[str, list[np.ndarray]]):
        import tensorflow as tf

        self.tf = tf
        self.weights = weights

    def _get(self, name):
        return self.weights[name]

    def _const(self, array):
        # Created eagerly (outside the graph being traced) so the function captures a reference;
        # 88 MB of constants inside the graph would make its optimisation slow.
        with self.tf.init_scope():
            return self.tf.constant(array)

    def conv_bn(self, x, filters, kernel, name, bn_name, strides=1, padding="valid"):
        (k,) = self._get(name)
        k, b = fold(k, *self._get(bn_name))
        tf = self.tf
        return tf.nn.bias_add(tf.nn.conv2d(x, self._const(k), strides, padding.upper()), self._const(b))

    def sepconv_bn(self, x, filters, name):
        depthwise, pointwise = self._get(name)
        pointwise, b = fold(pointwise, *self._get(f"{name}_bn"))
        tf = self.tf
        y = tf.nn.separable_conv2d(x, self._const(depthwise), self._const(pointwise), [1, 1, 1, 1], "SAME")
        return tf.nn.bias_add(y, self._const(b))

    def relu(self, x, name):
        return self.tf.nn.relu(x)

    def maxpool(self, x, name):
        return self.tf.nn.max_pool2d(x, 3, 2, "SAME")

    def add(self, x, y, name):
        return x + y

    def avg_pool(self, x, name):
        return self.tf.reduce_mean(x, axis=[1, 2])

    def max_pool(self, x, name):
        return self.tf.reduce_max(x, axis=[1, 2])

    def dense(self, x, units, activation, name):
        kernel, bias = self._get(name)
        y = self.tf.matmul(x, self._const(kernel)) + self._const(bias)
        if activation in (None, "linear"):
            return y
        if activation == "softmax":
            return self.tf.nn.softmax(y)
        raise ValueError(f"unsupported classifier activation for folded inference: {activation!r}")


def folded_inference(weights: dict[str, list[np.ndarray]], include_top: bool, pooling: str | None,
                     input_size: int):
    """A compiled ``f(float32 batch) -> float32 outputs`` equal to the Keras model in inference mode."""
    import tensorflow as tf

    ops = FoldedOps(weights)
    spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
    classes = weights["predictions"][1].shape[0] if include_top else None

    @tf.function(input_signature=[spec], autograph=False)
    def infer(x):
        return xception_graph(x, ops, include_top=include_top, pooling=pooling, classes=classes)

    infer.get_concrete_function()  # trace now: the folded weights are captured as tensors
    ops.weights = None  # the NumPy copies are no longer needed
    return lambda x: infer(x).numpy()
