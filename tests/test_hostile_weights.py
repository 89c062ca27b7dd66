"""Weights files made to take memory are refused from their declarations, before anything is read,
built or compiled (red-team review 18, items 1-3): an OpenVINO IR whose graph grows a tensor,
Keras 3 files whose arrays are not floats, a legacy .h5 whose arrays widen past the limit.

The hostile files are made here, small; the public command runs in a child and its peak memory is
measured (``test_bounded_reading.run``).
"""

from __future__ import annotations

import io
import zipfile
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from test_bounded_reading import SAMPLES, empty_dataset, error_lines, legacy_h5, run

from xception_cli.model import weight_layout

CAT = str(SAMPLES / "cat.jpg")


def refused(tmp_path, weights, message: str, most_mib: int, *options) -> None:
    """``predict --weights WEIGHTS`` exits 2 with the one line ``Error: WEIGHTS: MESSAGE``, its peak
    memory under ``most_mib``."""
    code, peak, _, err = run(tmp_path, "predict", *options, CAT, "--weights", str(weights))
    assert code == 2
    assert error_lines(err) == [f"Error: {weights}: {message}"]
    assert peak < most_mib, f"peak {peak:.0f} MiB"


# --- OpenVINO IR --------------------------------------------------------------------------------

def save_ir(model, path):
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def image():
    from openvino import opset13 as ops

    return ops.parameter([-1, 299, 299, 3], np.float32, name="input_image")


def test_an_ir_with_operations_no_export_writes_is_refused_before_compiling(tmp_path):
    """ReduceMean -> Tile to 6e8 values -> Softmax: 3 KB, and 14 GB when it ran."""
    from openvino import Model
    from openvino import opset13 as ops

    x = image()
    mean = ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], np.int64)), False)  # [N]
    column = ops.unsqueeze(mean, ops.constant(np.array([1], np.int64)))  # [N, 1]
    tiled = ops.tile(column, ops.constant(np.array([1, 600_000_000], np.int64)))
    bomb = save_ir(Model([ops.result(ops.softmax(tiled, 1))], [x], "bomb"), tmp_path / "bomb.xml")
    assert bomb.stat().st_size < 10_000
    refused(tmp_path, bomb, "not an Xception IR: it holds Tile, Unsqueeze operations, which xception export "
            "openvino never writes", 600)  # running it took 14 GB


def test_an_ir_of_exported_operations_growing_a_tensor_is_refused(tmp_path):
    """Add broadcasts: the image plus a [400,1,1,1,1] constant is 107 M values for one image."""
    from openvino import Model
    from openvino import opset13 as ops

    from xception_cli.weights import WeightsError
    from xception_cli.weights.ir import check_ir

    x = image()
    wide = ops.add(x, ops.constant(np.zeros((400, 1, 1, 1, 1), np.float32)), name="wide")  # [400, N, 299, 299, 3]
    out = ops.softmax(ops.reduce_mean(wide, ops.constant(np.array([0, 2, 3], np.int64)), False), 1)  # [N, 3]
    model = Model([ops.result(out)], [x], "wide")
    with pytest.raises(WeightsError, match=r"^w\.xml: not an Xception IR: 'wide' \(Add\) makes 107,281,200 values "
                                           r"for one image, over the limit of 16,777,216$"):
        check_ir(model, "w.xml", [299, 299, 3])
    assert str(model.input(0).get_partial_shape()) == "[?,299,299,3]"  # set back to any batch


def test_xception_passes_and_the_bounds_are_what_it_measures(monkeypatch):
    from xception_cli.runtimes.openvino import build_model
    from xception_cli.weights import WeightsError, ir
    from xception_cli.weights.values import random_weights

    model = build_model(random_weights())
    ir.check_ir(model, "x.xml", [299, 299, 3])
    assert str(model.input(0).get_partial_shape()) == "[?,299,299,3]"
    monkeypatch.setattr(ir, "MAX_LIVE_BYTES", 20 << 20)
    with pytest.raises(WeightsError, match=r"^x\.xml: not an Xception IR: it keeps 27 MiB alive for one image, over "
                                           r"the limit of 20 MiB$"):
        ir.check_ir(model, "x.xml", [299, 299, 3])
    monkeypatch.setattr(ir, "MAX_LIVE_BYTES", 128 << 20)
    monkeypatch.setattr(ir, "MAX_CONSTANT_BYTES", 64 << 20)
    with pytest.raises(WeightsError, match=r"^x\.xml: its weights take 88 MiB, over the limit of 64 MiB$"):
        ir.check_ir(model, "x.xml", [299, 299, 3])


# --- Keras 3 files ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """``(config.json, metadata.json, [(name, shape)] of model.weights.h5)`` of a saved .keras of
    this architecture."""
    from xception_cli.model import build_xception

    path = tmp_path_factory.mktemp("k3") / "m.keras"
    build_xception().save(path)
    with zipfile.ZipFile(path) as z:
        config, metadata = z.read("config.json"), z.read("metadata.json")
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            datasets = []
            f.visititems(lambda name, obj: datasets.append((name, obj.shape)) if isinstance(obj, h5py.Dataset)
                         else None)
    return config, metadata, datasets


STRINGS = "not Xception weights: an array of type |S1200 (expected floating point)"


def strings_kernel(datasets, target) -> None:
    """A Keras 3 weights file of Xception's arrays, storing nothing, with the classifier's kernel
    as 1200-byte strings (2.5 GB as declared, a few KB on disk)."""
    with h5py.File(target, "w") as f:
        for name, shape in datasets:
            empty_dataset(f, name, shape, "S1200" if shape == (2048, 1000) else "f4")


def test_a_keras3_weights_file_of_strings_is_refused_before_keras_reads_it(tmp_path, keras_files):
    path = tmp_path / "s.weights.h5"
    strings_kernel(keras_files[2], path)
    assert path.stat().st_size < 1 << 20
    refused(tmp_path, path, STRINGS, 1500, "--runtime", "tensorflow")  # Keras reading it took 10.4 GB


def test_a_keras_archive_of_strings_is_refused_before_keras_reads_it(tmp_path, keras_files):
    config, metadata, datasets = keras_files
    inner = io.BytesIO()
    strings_kernel(datasets, inner)
    path = tmp_path / "s.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", metadata)
        z.writestr("config.json", config)
        z.writestr("model.weights.h5", inner.getvalue())
    refused(tmp_path, path, STRINGS, 1500, "--runtime", "tensorflow")  # Keras reading it took 4.2 GB


# --- legacy .h5 ---------------------------------------------------------------------------------

def test_a_float16_h5_is_measured_as_float32_and_refused_before_reading(tmp_path):
    """110,000 classes in float16: 470 MiB stored, 939 MiB once widened; it peaked at 3.84 GB."""
    path = legacy_h5(tmp_path / "wide.h5", weight_layout(True, 110_000), dtype="f2")
    assert path.stat().st_size < 1 << 20
    refused(tmp_path, path, "its arrays declare 939 MiB, over the limit of 320 MiB for a weights file (counted as "
            "float32, 4 bytes a value)", 300)


def test_the_limit_admits_30758_classes_and_float16_is_read_as_float32(tmp_path):
    from xception_cli.weights import WeightsError, read_weights
    from xception_cli.weights.files import check_declared

    def declared(classes, dtype):
        return [SimpleNamespace(shape=s, dtype=np.dtype(dtype)) for _, shapes in weight_layout(True, classes)
                for s in shapes]

    check_declared("w.h5", declared(30_758, "f2"))
    with pytest.raises(WeightsError, match="declare 335,546,684 bytes, over the limit of 320 MiB"):
        check_declared("w.h5", declared(30_759, "f2"))
    check_declared("w.h5", declared(20_000, "f4"))
    with pytest.raises(WeightsError, match="declare 472 MiB"):  # float64: 8 bytes a value
        check_declared("w.h5", declared(20_000, "f8"))
    half = legacy_h5(tmp_path / "half.h5", weight_layout(True), dtype="f2")
    arrays = read_weights(half)
    assert {a.dtype for layer in arrays.values() for a in layer} == {np.dtype("float32")}
