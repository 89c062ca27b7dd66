"""The Xception network (Chollet, CVPR 2017) in Keras 3.

The architecture is written once, ``xception_graph(x, ops)``, against a small set of operations;
``KerasOps`` realises it as Keras layers (``build_xception``: the reference model, weight loading,
``summary``), ``fused.FoldedOps`` as TensorFlow ops with BatchNormalization folded (inference),
and ``LayoutOps`` as the list of weighted layers and their shapes (``weight_layout``).

Weights files: Keras 3 loads a legacy ``.h5`` by the order of ``model.layers``, which is
topological — in blocks 2, 3, 4 and 13 it lists the separable convolutions of the main branch
before the strided 1x1 residual convolution, whatever order the layers are created in. The
official file follows that order (``keras.applications.Xception`` loads it); the tests check that
this model, ``weight_layout()`` and the reference agree layer by layer.

Every layer carries a ``blockN_`` prefix (or ``avg_pool``/``max_pool``/``predictions`` for the
head), which is how ``summary`` groups layers into the 3 flows and 14 blocks.
"""

from __future__ import annotations

from . import config

POOLINGS = (None, "avg", "max")

# (block, channels of the two separable convolutions, residual channels) for the entry flow
# blocks 2-4, which share one shape: [act] sep bn act sep bn pool + strided 1x1 residual.
_ENTRY_BLOCKS = ((2, 128, 128), (3, 256, 256), (4, 728, 728))
MIDDLE_BLOCKS = range(5, 13)
BN_EPSILON = 1e-3

FLOWS = {"entry": (1, 2, 3, 4), "middle": tuple(MIDDLE_BLOCKS), "exit": (13, 14)}


def flow_of(block: int) -> str:
    for flow, blocks in FLOWS.items():
        if block in blocks:
            return flow
    raise ValueError(f"Xception has blocks 1-14, got {block}")


def validate_input_shape(input_shape, *, imagenet_top: bool = False) -> tuple[int, int, int]:
    """Check ``input_shape`` as ``(height, width, 3)`` and return it as a tuple of ints."""
    if input_shape is None:
        return (config.IMAGENET_INPUT_SIZE, config.IMAGENET_INPUT_SIZE, 3)
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}") from None
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) with 3 channels, got {input_shape!r}")
    if min(shape[:2]) < config.MIN_INPUT_SIZE:
        raise ValueError(
            f"input_shape height and width must be at least {config.MIN_INPUT_SIZE}, got {shape[0]}x{shape[1]}"
        )
    if imagenet_top and shape[:2] != (config.IMAGENET_INPUT_SIZE, config.IMAGENET_INPUT_SIZE):
        raise ValueError(
            "the ImageNet classifier top needs input_shape (299, 299, 3), "
            f"got {shape}; use include_top=False for other sizes"
        )
    return shape


def build_xception(
    include_top: bool = True,
    input_shape=None,
    pooling: str | None = None,
    classes: int = config.IMAGENET_CLASSES,
    classifier_activation: str | None = "softmax",
    dtype_policy: str | None = None,
    initialize: bool = True,
    name: str = "xception",
):
    """Build the (untrained) Xception network.

    Args:
        include_top: end with global average pooling and a ``classes``-way Dense layer.
        input_shape: ``(height, width, 3)``, each side at least 71; default ``(299, 299, 3)``.
        pooling: without the top, ``None`` (4D feature map), ``"avg"`` or ``"max"``.
        classes: size of the classifier when ``include_top``.
        classifier_activation: activation of the classifier (``None`` for logits).
        dtype_policy: a Keras dtype policy such as ``"mixed_bfloat16"``; the classifier is kept in
            float32 so probabilities are computed at full precision.
        initialize: draw random initial weights (Keras' defaults). ``False`` fills kernels with
            zeros instead, which is much faster: for a model whose weights are loaded next, or
            that is only inspected.
    """
    import keras

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of None, 'avg', 'max'; got {pooling!r}")
    if include_top and pooling is not None:
        raise ValueError(f"pooling={pooling!r} only applies with include_top=False")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}")
    shape = validate_input_shape(input_shape)
    inputs = keras.Input(shape=shape, name="input_image")
    ops = KerasOps(dtype_policy=dtype_policy, initialize=initialize)
    outputs = xception_graph(inputs, ops, include_top, pooling, classes, classifier_activation)
    return keras.Model(inputs, outputs, name=name)


def xception_graph(x, ops, include_top=True, pooling=None, classes=config.IMAGENET_CLASSES,
                   classifier_activation="softmax"):
    """The architecture, written once against ``ops`` (``KerasOps`` builds layers; the engine's
    ``FoldedOps`` runs the same graph as plain TensorFlow ops with BatchNormalization folded)."""

    def downsampling_block(x, block, filters1, filters2, relu_first=True):
        """Two separable convolutions, a strided max-pool and a strided 1x1 residual."""
        p = f"block{block}"
        inputs = x
        if relu_first:
            x = ops.relu(x, f"{p}_sepconv1_act")
        x = ops.sepconv_bn(x, filters1, f"{p}_sepconv1")
        x = ops.relu(x, f"{p}_sepconv2_act")
        x = ops.sepconv_bn(x, filters2, f"{p}_sepconv2")
        x = ops.maxpool(x, f"{p}_pool")
        residual = ops.conv_bn(inputs, filters2, 1, f"{p}_residual_conv", f"{p}_residual_bn", strides=2,
                               padding="same")
        return ops.add(x, residual, f"{p}_add")

    # Entry flow. Block 1: the stem of two regular convolutions (299 -> 149 -> 147).
    x = ops.relu(ops.conv_bn(x, 32, 3, "block1_conv1", "block1_conv1_bn", strides=2), "block1_conv1_act")
    x = ops.relu(ops.conv_bn(x, 64, 3, "block1_conv2", "block1_conv2_bn"), "block1_conv2_act")
    for block, filters, residual_filters in _ENTRY_BLOCKS:
        # Block 2 follows a ReLU already, so it starts straight with its separable convolution.
        x = downsampling_block(x, block, filters, residual_filters, relu_first=block != 2)

    # Middle flow: eight identical residual blocks of three separable convolutions.
    for block in MIDDLE_BLOCKS:
        p = f"block{block}"
        residual = x
        for i in (1, 2, 3):
            x = ops.relu(x, f"{p}_sepconv{i}_act")
            x = ops.sepconv_bn(x, 728, f"{p}_sepconv{i}")
        x = ops.add(x, residual, f"{p}_add")

    # Exit flow.
    x = downsampling_block(x, 13, 728, 1024)
    for i, filters in ((1, 1536), (2, 2048)):
        x = ops.relu(ops.sepconv_bn(x, filters, f"block14_sepconv{i}"), f"block14_sepconv{i}_act")

    if include_top:
        return ops.dense(ops.avg_pool(x, "avg_pool"), classes, classifier_activation, "predictions")
    if pooling == "avg":
        return ops.avg_pool(x, "avg_pool")
    if pooling == "max":
        return ops.max_pool(x, "max_pool")
    return x


class KerasOps:
    """``xception_graph``'s operations as Keras layers (the reference model and its weights)."""

    def __init__(self, dtype_policy: str | None = None, initialize: bool = True):
        from keras import layers

        self.layers = layers
        self.kw = {"dtype": dtype_policy} if dtype_policy else {}
        self.init = {} if initialize else {"kernel_initializer": "zeros"}
        self.sep_init = {} if initialize else {"depthwise_initializer": "zeros", "pointwise_initializer": "zeros"}

    def _bn(self, x, name):
        return self.layers.BatchNormalization(epsilon=BN_EPSILON, name=name, **self.kw)(x)

    def conv_bn(self, x, filters, kernel, name, bn_name, strides=1, padding="valid"):
        x = self.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name,
                               **self.init, **self.kw)(x)
        return self._bn(x, bn_name)

    def sepconv_bn(self, x, filters, name):
        x = self.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name,
                                        **self.sep_init, **self.kw)(x)
        return self._bn(x, f"{name}_bn")

    def relu(self, x, name):
        return self.layers.Activation("relu", name=name, **self.kw)(x)

    def maxpool(self, x, name):
        return self.layers.MaxPooling2D(3, strides=2, padding="same", name=name, **self.kw)(x)

    def add(self, x, y, name):
        return self.layers.Add(name=name, **self.kw)([x, y])

    def avg_pool(self, x, name):
        return self.layers.GlobalAveragePooling2D(name=name, **self.kw)(x)

    def max_pool(self, x, name):
        return self.layers.GlobalMaxPooling2D(name=name, **self.kw)(x)

    def dense(self, x, units, activation, name):
        # float32 even under mixed precision: probabilities are computed at full precision
        return self.layers.Dense(units, activation=activation, name=name, dtype="float32", **self.init)(x)


class LayoutOps:
    """``xception_graph``'s operations on channel counts only: records each weighted layer's name
    and weight shapes in the order of ``model.layers`` (the weights-file order): each convolution
    then its BatchNormalization, the main branch of a downsampling block before its residual."""

    def __init__(self):
        self.layout: list[tuple[str, list[tuple[int, ...]]]] = []

    def _bn(self, channels, name):
        self.layout.append((name, [(channels,)] * 4))  # gamma, beta, moving mean, moving variance
        return channels

    def conv_bn(self, c, filters, kernel, name, bn_name, strides=1, padding="valid"):
        self.layout.append((name, [(kernel, kernel, c, filters)]))
        return self._bn(filters, bn_name)

    def sepconv_bn(self, c, filters, name):
        self.layout.append((name, [(3, 3, c, 1), (1, 1, c, filters)]))
        return self._bn(filters, f"{name}_bn")

    def relu(self, c, name):
        return c

    maxpool = avg_pool = max_pool = relu

    def add(self, c, other, name):
        return c

    def dense(self, c, units, activation, name):
        self.layout.append((name, [(c, units), (units,)]))
        return units


def weight_layout(include_top: bool = True, classes: int = config.IMAGENET_CLASSES) -> list[tuple[str, list]]:
    """``[(layer name, [weight shapes])]`` of the weighted layers, in weights-file order (no Keras)."""
    ops = LayoutOps()
    xception_graph(3, ops, include_top=include_top, classes=classes)
    return ops.layout


def check_graph_weights(weights: dict, include_top: bool, pooling, input_size: int,
                        classes: int | None = None) -> tuple[int, int, int]:
    """Arguments and ``{layer name: [arrays]}`` checked for a realisation built from weights (OpenVINO,
    ONNX): ``(height, width, classes)``, ``classes`` taken from ``weights["predictions"]`` when not
    given. ``ValueError`` names the first layer missing or of the wrong shape."""
    import numpy as np

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of None, 'avg', 'max'; got {pooling!r}")
    if include_top and pooling is not None:
        raise ValueError(f"pooling={pooling!r} only applies with include_top=False")
    height, width, _ = validate_input_shape((input_size, input_size, 3))
    if include_top:
        if "predictions" not in weights:
            raise ValueError("include_top=True needs weights with the 'predictions' layer")
        found = int(np.shape(weights["predictions"][1])[0])
        if classes is not None and classes != found:
            raise ValueError(f"classes={classes} but the weights' classifier has {found} classes")
        classes = found
    else:
        classes = config.IMAGENET_CLASSES  # unused without the top
    for name, shapes in weight_layout(include_top=include_top, classes=classes):
        if name not in weights:
            raise ValueError(f"weights have no layer {name!r}")
        got = [tuple(np.shape(a)) for a in weights[name]]
        if got != [tuple(s) for s in shapes]:
            raise ValueError(f"weights for layer {name!r} have shapes {got}, expected {[tuple(s) for s in shapes]}")
    return height, width, classes


def block_of(layer_name: str) -> int | None:
    """The block (1-14) a layer belongs to, from its name; ``None`` for the input and the head."""
    if layer_name.startswith("block"):
        digits = layer_name[5:].split("_", 1)[0]
        if digits.isdigit():
            return int(digits)
    return None
