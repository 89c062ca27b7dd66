"""Architecture: counts, shapes and layer order against FACTS.md and the Keras reference."""

import numpy as np
import pytest

from xception_cli import config
from xception_cli.model import block_of, build_xception

# FACTS.md: block -> output shape after the block, 299x299 input.
BLOCK_SHAPES = {1: (147, 147, 64), 2: (74, 74, 128), 3: (37, 37, 256), 4: (19, 19, 728),
                **{b: (19, 19, 728) for b in range(5, 13)}, 13: (10, 10, 1024), 14: (10, 10, 2048)}


@pytest.fixture(scope="module")
def model():
    return build_xception()


def test_counts_with_top(model):
    assert len(model.layers) == 134
    assert model.count_params() == config.REFERENCE_PARAMS_TOP == 22_910_480
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 22_855_952
    assert tuple(model.output.shape) == (None, 1000)


def test_counts_without_top():
    m = build_xception(include_top=False)
    assert len(m.layers) == 132
    assert m.count_params() == config.REFERENCE_PARAMS_NOTOP == 20_861_480
    assert tuple(m.output.shape) == (None, 10, 10, 2048)


def test_block_output_shapes(model):
    last = {}
    for layer in model.layers:
        b = block_of(layer.name)
        if b is not None:
            last[b] = tuple(layer.output.shape[1:])
    assert last == BLOCK_SHAPES


def test_weight_layout_matches_reference(model):
    """Same number of weighted layers, same order, same shapes: the official file loads by order."""
    import keras

    ref = keras.applications.Xception(weights=None)
    ours = [[tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.weights]
    theirs = [[tuple(w.shape) for w in layer.weights] for layer in ref.layers if layer.weights]
    assert len(ours) == 81
    assert ours == theirs
    # The layout computed without Keras (used to read weights files directly) is the same.
    from xception_cli.model import weight_layout

    layout = weight_layout()
    assert [name for name, _ in layout] == [layer.name for layer in model.layers if layer.weights]
    assert [[tuple(s) for s in shapes] for _, shapes in layout] == ours
    assert len(weight_layout(include_top=False)) == 80


@pytest.mark.parametrize("pooling, shape", [(None, (None, 3, 3, 2048)), ("avg", (None, 2048)), ("max", (None, 2048))])
def test_pooling_without_top(pooling, shape):
    m = build_xception(include_top=False, input_shape=(71, 71, 3), pooling=pooling)
    assert tuple(m.output.shape) == shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"include_top": False, "pooling": "mean"}, "pooling must be one of None, 'avg', 'max'; got 'mean'"),
        ({"include_top": True, "pooling": "avg"}, "only applies with include_top=False"),
        ({"input_shape": (70, 299, 3)}, "at least 71, got 70x299"),
        ({"input_shape": (299, 299, 1)}, "3 channels"),
        ({"classes": 0}, "classes must be a positive integer, got 0"),
    ],
)
def test_argument_checks(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_xception(**kwargs)


def test_imagenet_top_needs_299(weights_file):
    from xception_cli.engine import Engine

    with pytest.raises(ValueError, match=r"ImageNet classifier top needs input_shape \(299, 299, 3\)"):
        Engine(weights=str(weights_file), input_size=224)
    # Random weights or no top: any size from 71 up is fine.
    assert Engine(weights="none", input_size=224).input_size == 224
    assert Engine(weights=str(weights_file), include_top=False, input_size=128).input_size == 128


def test_custom_classes():
    m = build_xception(classes=10, input_shape=(96, 96, 3))
    assert tuple(m.output.shape) == (None, 10)
