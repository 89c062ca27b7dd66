"""Folded inference (BatchNormalization folded into the convolutions) equals the Keras model."""

import numpy as np
import pytest

from xception_cli.fused import fold, folded_inference, model_weights
from xception_cli.model import build_xception


def test_fold_is_the_batchnorm_affine_map():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(1, 1, 4, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.normal(size=3)
    mean, var = rng.normal(size=3), rng.uniform(0.1, 2, 3)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    conv = x @ kernel[0, 0]
    bn = (conv - mean) / np.sqrt(var + 1e-3) * gamma + beta
    k, b = fold(kernel, gamma, beta, mean, var)
    np.testing.assert_allclose(x @ k[0, 0] + b, bn, rtol=1e-5, atol=1e-5)


def _randomise_batchnorms(model, seed=0):
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                               rng.uniform(0.5, 2.0, n)])


@pytest.mark.parametrize("include_top, pooling, size", [(True, None, 299), (False, None, 71), (False, "avg", 96),
                                                        (False, "max", 80)])
def test_folded_equals_keras(include_top, pooling, size):
    import keras

    keras.utils.set_random_seed(1)
    model = build_xception(include_top=include_top, pooling=pooling, input_shape=(size, size, 3))
    _randomise_batchnorms(model)
    x = np.random.default_rng(2).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    got = folded_inference(model_weights(model), include_top, pooling, size)(x)
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() / scale < 1e-5


def test_tensorflow_runtime_uses_folded_inference_for_float32(weights_file, samples):
    from xception_cli.engine import Engine
    from xception_cli.preprocess import preprocess_image

    engine = Engine(weights=str(weights_file), runtime_request="tensorflow")
    x = np.stack([preprocess_image(p) for p in samples[:2]])
    keras_out = np.asarray(engine.model(x, training=False))
    assert np.abs(engine(x) - keras_out).max() < 1e-5
    assert engine.infer.__qualname__.startswith("folded_inference")


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_legacy_file_needs_no_keras_model(weights_file, samples, runtime):
    """With the official file format, inference reads the file straight into the folded graph."""
    from xception_cli.engine import Engine
    from xception_cli.preprocess import preprocess_image

    e = Engine(weights=str(weights_file), runtime_request=runtime)
    x = np.stack([preprocess_image(p) for p in samples[:2]])
    probs = e(x)
    assert e._model is None, "the Keras model was not built"
    assert "read_weights_s" in e.network.timings and "keras_build_s" not in e.timings
    assert np.abs(probs - np.asarray(e.model(x, training=False))).max() < 1e-5
