"""The ONNX realisation of the architecture (xception_cli.export.onnx_graph), run by onnxruntime,
against keras.applications.Xception and TensorFlow's own ops."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from xception_cli.export.onnx_graph import OnnxOps, Tensor, build_onnx, same_pads, save_onnx  # noqa: E402
from xception_cli.model import weight_layout  # noqa: E402
from xception_cli.preprocess import preprocess_image  # noqa: E402
from xception_cli.weights import read_for_layout, weighted_layers  # noqa: E402


def session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
    return sess.run(None, {"input_image": np.ascontiguousarray(batch, dtype=np.float32)})[0]


@pytest.fixture(scope="module")
def top_weights(weights_file) -> dict:
    return read_for_layout(weights_file, weight_layout(include_top=True))


@pytest.fixture(scope="module")
def photos(samples) -> np.ndarray:
    return np.stack([preprocess_image(p) for p in samples])


def top5(p: np.ndarray) -> np.ndarray:
    return np.argsort(-p, axis=1, kind="stable")[:, :5]


def test_classifier_matches_keras_reference(top_weights, reference_model, photos, tmp_path):
    path = save_onnx(build_onnx(top_weights), tmp_path / "xception.onnx")
    model = onnx.load(str(path))  # the file as written: self-contained, weights inside
    assert model.producer_name == "xception-cli" and model.doc_string
    assert [o.name for o in model.graph.output] == ["predictions"]
    (inp,) = model.graph.input
    assert inp.name == "input_image"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 299, 299, 3]
    assert not any(a.name == "auto_pad" for n in model.graph.node for a in n.attribute)

    sess = session(model)
    probs = run(sess, photos)
    ref = np.asarray(reference_model(photos, training=False))
    assert probs.shape == (4, 1000)
    assert np.abs(probs - ref).max() < 1e-4
    np.testing.assert_array_equal(top5(probs), top5(ref))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    one_by_one = np.concatenate([run(sess, photos[i:i + 1]) for i in range(len(photos))])
    assert np.abs(one_by_one - probs).max() < 1e-6
    np.testing.assert_array_equal(top5(one_by_one), top5(probs))


def test_pixel_input_scales_as_predict_does(top_weights, samples):
    """input_kind="uint8": pixels in, the same scaling inside as preprocess.to_input (same values)."""
    from xception_cli.preprocess import load_image, to_input

    pixels = np.stack([load_image(p) for p in samples[:2]])
    model = build_onnx(top_weights, input_kind="uint8")
    (inp,) = model.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [n.op_type for n in model.graph.node[:4]] == ["Cast", "Div", "Add", "Transpose"]
    sess = session(model)
    (scaled,) = [n.output[0] for n in model.graph.node[2:3]]
    probe = onnx.helper.make_model_gen_version(
        onnx.helper.make_graph(model.graph.node[:3], "probe", list(model.graph.input),
                               [onnx.helper.make_tensor_value_info(scaled, onnx.TensorProto.FLOAT, None)],
                               initializer=[i for i in model.graph.initializer if i.name.startswith("input_image/")]),
        opset_imports=model.opset_import)
    np.testing.assert_array_equal(session(probe).run(None, {"input_image": pixels})[0], to_input(pixels))
    float_model = session(build_onnx(top_weights))
    assert np.abs(sess.run(None, {"input_image": pixels})[0] - run(float_model, to_input(pixels))).max() < 1e-6
    with pytest.raises(ValueError, match="input kind must be one of uint8, float"):
        build_onnx(top_weights, input_kind="int8")


@pytest.mark.parametrize("size, pooling", [(150, "avg"), (150, "max"), (71, None)])
def test_headless_matches_keras_reference(top_weights, samples, size, pooling):
    import keras

    notop = {name: arrays for name, arrays in top_weights.items() if name != "predictions"}
    ref_model = keras.applications.Xception(include_top=False, weights=None, pooling=pooling,
                                            input_shape=(size, size, 3))
    # keras.applications names the residual convolutions conv2d, conv2d_1, ...: match by order,
    # which is the weights-file order (weight_layout), as a legacy .h5 is loaded
    layers, layout = weighted_layers(ref_model), weight_layout(include_top=False)
    assert len(layers) == len(layout)
    for layer, (name, _) in zip(layers, layout):
        layer.set_weights(notop[name])

    x = np.stack([preprocess_image(p, size) for p in samples])
    model = build_onnx(notop, include_top=False, pooling=pooling, input_size=size)
    out = run(session(model), x)
    ref = np.asarray(ref_model(x, training=False))
    name = f"{pooling}_pool" if pooling else "features"
    assert [o.name for o in model.graph.output] == [name]
    assert out.shape == ref.shape == ((4, 2048) if pooling else (4, 3, 3, 2048))
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("size", [299, 150, 74, 71])
@pytest.mark.parametrize("op", ["maxpool", "conv_s1", "conv_s2", "sepconv"])
def test_padding_matches_tensorflow_same(op, size):
    """Each padded op alone against TensorFlow's SAME, at odd and even sizes."""
    import tensorflow as tf

    rng = np.random.default_rng(size)
    c = 4
    x = rng.normal(size=(2, size, size, c)).astype(np.float32)
    bn = [np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32), np.ones(c, np.float32)]
    kernel = rng.normal(size=(3, 3, c, c)).astype(np.float32)
    depthwise = rng.normal(size=(3, 3, c, 1)).astype(np.float32)
    pointwise = rng.normal(size=(1, 1, c, c)).astype(np.float32)
    ops = OnnxOps({"conv": [kernel], "conv_bn": bn, "sep": [depthwise, pointwise], "sep_bn": bn})
    nchw = Tensor(ops.node("Transpose", ["x"], "x_nchw", perm=[0, 3, 1, 2]), c, size, size)
    if op == "maxpool":
        y, ref = ops.maxpool(nchw, "y"), tf.nn.max_pool2d(x, 3, 2, "SAME")
    elif op == "sepconv":
        y, ref = ops.sepconv_bn(nchw, c, "sep"), tf.nn.separable_conv2d(x, depthwise, pointwise, [1] * 4, "SAME")
    else:
        stride = int(op[-1])
        y = ops.conv_bn(nchw, c, 3, "conv", "conv_bn", strides=stride, padding="same")
        ref = tf.nn.conv2d(x, kernel, stride, "SAME")
    ops.node("Transpose", [y.name], "out", perm=[0, 2, 3, 1])
    ref = ref.numpy() * np.float32(1 / np.sqrt(1 + 1e-3)) if op != "maxpool" else ref.numpy()  # folded identity BN
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(ops.nodes, "t", [value("x", onnx.TensorProto.FLOAT, [2, size, size, c])],
                                   [value("out", onnx.TensorProto.FLOAT, [2, y.height, y.width, c])],
                                   initializer=ops.initializers)
    model = onnx.helper.make_model_gen_version(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert (y.height, y.width) == out.shape[1:3] == ref.shape[1:3]
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_same_pads():
    assert same_pads(147, 3, 2) == (1, 1)  # 147 -> 74 at 299
    assert same_pads(74, 3, 2) == (0, 1)  # 74 -> 37: TensorFlow puts the odd pixel at the end
    assert same_pads(147, 1, 2) == (0, 0)
    assert same_pads(19, 3, 1) == (1, 1)


def _with(weights: dict, name: str, arrays) -> dict:
    out = dict(weights)
    if arrays is None:
        del out[name]
    else:
        out[name] = arrays
    return out


@pytest.mark.parametrize("name, arrays, match", [
    ("block5_sepconv2", [np.zeros((3, 3, 728, 1)), np.zeros((1, 1, 728, 512))], "'block5_sepconv2'"),
    ("block1_conv1_bn", [np.zeros(32)] * 3, "'block1_conv1_bn'"),
    ("block14_sepconv2_bn", None, "no layer 'block14_sepconv2_bn'"),
    ("predictions", [np.zeros((2048, 10)), np.zeros(11)], "'predictions'"),
])
def test_wrong_weights_raise_naming_the_layer(top_weights, name, arrays, match):
    with pytest.raises(ValueError, match=match):
        build_onnx(_with(top_weights, name, arrays))


def test_bad_arguments(top_weights):
    with pytest.raises(ValueError, match="only applies with include_top=False"):
        build_onnx(top_weights, pooling="avg")
    with pytest.raises(ValueError, match="classes=10"):
        build_onnx(top_weights, classes=10)
    with pytest.raises(ValueError, match="activation"):
        build_onnx(top_weights, classifier_activation="sigmoid")
    with pytest.raises(ValueError, match="opset"):
        build_onnx(top_weights, opset=11)
    with pytest.raises(ValueError, match="at least 71"):
        build_onnx(top_weights, include_top=False, input_size=64)
