"""`xception export`: every format round-trips in its own runtime and equals the reference."""

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from xception_cli.cli import cli
from xception_cli.labels import top_k
from xception_cli.preprocess import load_image, preprocess_image, to_input


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(*args):
    r = CliRunner().invoke(cli, ["export", *map(str, args)])
    return r


@pytest.fixture(scope="module")
def photos_batch(samples):
    return np.stack([preprocess_image(p) for p in samples])


@pytest.fixture(scope="module")
def reference_probs(reference_model, photos_batch):
    return np.asarray(reference_model.predict(photos_batch, verbose=0))


def assert_same(ours, theirs):
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4
    for a, b in zip(top_k(ours, 5), top_k(theirs, 5)):
        assert [p.index for p in a] == [p.index for p in b]


@pytest.fixture(scope="module")
def float32_ir(tmp_path_factory, weights_file):
    """The default export: float32 weights, uint8 pixels in."""
    out = tmp_path_factory.mktemp("ir") / "xception.xml"
    r = export("openvino", "-o", out, "--weights", weights_file)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def pixels(samples):
    """The samples as predict sees them, before scaling: uint8 (4, 299, 299, 3)."""
    return np.stack([load_image(p) for p in samples])


def test_openvino_ir_round_trips(float32_ir, weights_file, pixels, photos_batch, reference_probs):
    import openvino as ov

    assert float32_ir.with_suffix(".bin").stat().st_size > 88e6  # float32 kept, not fp16
    meta = json.loads(float32_ir.with_name(float32_ir.name + ".meta.json").read_text())
    assert meta["format"] == "openvino" and meta["precision"] == "float32"
    assert meta["weights"]["md5"] == md5(weights_file)
    assert len(meta["labels"]) == 1000 and meta["labels"][281] == ["n02123045", "tabby"]
    assert meta["input"]["shape"] == ["N", 299, 299, 3] and meta["preprocessing"]["crop_pct"] == 0.875
    assert meta["input_kind"] == "uint8" and meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NHWC"
    model = ov.Core().read_model(str(float32_ir))
    (inp,) = model.inputs
    # what OpenVINO Model Server needs to decode JPEG/PNG itself: u8, NHWC, the layout in the IR
    assert inp.get_element_type() == ov.Type.u8 and str(inp.get_partial_shape()) == "[?,299,299,3]"
    assert ov.layout_helpers.get_layout(inp) == ov.Layout("NHWC")
    assert np.abs(to_input(pixels) - photos_batch).max() == 0  # the same image as predict's
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert_same(compiled(pixels)[0], reference_probs)


def test_an_ir_fed_pixels_gives_predicts_probabilities(float32_ir, weights_file, samples, pixels):
    """A server feeding the IR uint8 pixels gets what `predict` gives for the same photos (the
    ONNX model: test_onnx_round_trips_in_onnx_runtime, against the same reference)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(float32_ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    from_ir = compiled(pixels)[0]
    r = CliRunner().invoke(cli, ["predict", *map(str, samples), "-f", "jsonl", "-k", "5", "--weights",
                                 str(weights_file)])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["path"] for x in records] == [str(p) for p in samples]
    for i, record in enumerate(records):
        assert [p["index"] for p in record["predictions"]] == list(np.argsort(-from_ir[i], kind="stable")[:5])
        assert max(abs(from_ir[i, p["index"]] - p["probability"]) for p in record["predictions"]) < 1e-4


@pytest.fixture(scope="module")
def float_input_ir(tmp_path_factory, weights_file):
    out = tmp_path_factory.mktemp("float-ir") / "f.xml"
    r = export("openvino", "--input", "float", "-o", out, "--weights", weights_file)
    assert r.exit_code == 0, r.output
    return out


def test_the_ir_takes_what_openvino_model_server_adds(float32_ir, pixels, reference_probs):
    """OpenVINO Model Server decodes JPEG/PNG to BGR; `--layout NHWC --color_format BGR:RGB --shape
    (1,299,299,3)` makes it add these steps to the IR (as its modelinstance.cpp does), and the IR
    then classifies BGR pixels as predict classifies the RGB ones."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    model = ov.Core().read_model(str(float32_ir))
    model.reshape([1, 299, 299, 3])
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NHWC"))
    ppp.input().tensor().set_color_format(ColorFormat.RGB)  # OVMS: the part after the colon ...
    ppp.input().preprocess().convert_color(ColorFormat.BGR)  # ... converted to the part before it
    compiled = ov.Core().compile_model(ppp.build(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    bgr = np.ascontiguousarray(pixels[:, :, :, ::-1])
    assert_same(np.concatenate([compiled(bgr[i:i + 1])[0] for i in range(len(bgr))]), reference_probs)


def test_input_float_keeps_the_float_input(float_input_ir, tmp_path, weights_file, photos_batch, reference_probs):
    import openvino as ov

    ort = pytest.importorskip("onnxruntime")
    ir, onnx_out = float_input_ir, tmp_path / "f.onnx"
    assert export("onnx", "--input", "float", "-o", onnx_out, "--weights", weights_file).exit_code == 0
    model = ov.Core().read_model(str(ir))
    assert model.input(0).get_element_type() == ov.Type.f32 and model.input(0).get_any_name() == "input_image"
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert_same(compiled(photos_batch)[0], reference_probs)
    session = ort.InferenceSession(str(onnx_out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    assert_same(session.run(None, {"input_image": photos_batch})[0], reference_probs)
    for f in (ir, onnx_out):
        meta = json.loads(f.with_name(f.name + ".meta.json").read_text())
        assert meta["input_kind"] == "float" and meta["input"]["dtype"] == "float32"
        assert meta["input"]["range"].startswith("[-1, 1]")
    r = export("saved-model", "--input", "float", "-o", tmp_path / "sm", "--weights", weights_file)
    assert r.exit_code == 2 and "--input is for openvino and onnx" in r.stderr


def test_the_runtime_feeds_either_kind_of_ir(float32_ir, float_input_ir, pixels, photos_batch):
    """What loads an exported IR for prediction takes pixels or [-1, 1] floats, whatever the IR takes."""
    from xception_cli.runtimes.openvino import compile_model, core, make_async_infer, make_infer

    results = []
    for path in (float32_ir, float_input_ir):
        compiled = compile_model(core().read_model(str(path)))
        infer = make_infer(compiled)
        in_flight = make_async_infer(compiled, 2)([pixels[:2], photos_batch[2:]])  # one of each kind
        results += [infer(pixels), infer(photos_batch), np.concatenate(list(in_flight))]
    assert all(r.shape == (4, 1000) and np.abs(r - results[0]).max() < 1e-5 for r in results)


def test_predict_accepts_an_exported_ir(float32_ir, weights_file, samples):
    def run(weights, *extra):
        r = CliRunner().invoke(cli, ["predict", *map(str, samples), "-f", "json", "--weights", str(weights), *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    from_ir, from_h5 = run(float32_ir), run(weights_file)
    assert [r["path"] for r in from_ir] == [r["path"] for r in from_h5]
    for a, b in zip(from_ir, from_h5):
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        assert max(abs(p["probability"] - q["probability"]) for p, q in zip(a["predictions"], b["predictions"])) < 1e-4
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(float32_ir), "--runtime", "tensorflow"])
    assert r.exit_code == 2
    assert "runtime tensorflow (--runtime or $XCEPTION_RUNTIME) cannot run a openvino-ir" in r.stderr


def test_predict_feeds_a_pixel_ir_its_pixels_as_they_are(float32_ir, float_input_ir, weights_file, samples,
                                                        monkeypatch):
    """An IR that scales pixels itself gets predict's decoded uint8 pixels with no conversion on the
    way (neither to [-1, 1] nor back); a network taking floats still gets them scaled. The answers
    are the .h5's."""
    import xception_cli.pipeline
    import xception_cli.preprocess
    import xception_cli.runtimes.openvino
    from xception_cli.engine import Engine

    assert Engine(weights=float32_ir).network.takes_pixels
    assert not Engine(weights=float_input_ir).network.takes_pixels
    assert not Engine(weights=weights_file).network.takes_pixels

    def predict(weights):
        r = CliRunner().invoke(cli, ["predict", *map(str, samples), "-f", "json", "--weights", str(weights)])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    expected = predict(weights_file)
    scaled = []

    def counting(fn):
        def wrapped(x, *a, **k):
            scaled.append(fn.__name__)
            return fn(x, *a, **k)
        return wrapped

    for module in (xception_cli.pipeline, xception_cli.preprocess, xception_cli.runtimes.openvino):
        for name in ("to_input", "from_input"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counting(getattr(module, name)))
    from_ir = predict(float32_ir)
    assert scaled == []  # pixels in, probabilities out
    from_float_ir = predict(float_input_ir)
    assert scaled and set(scaled) == {"to_input"}  # scaled once, never made pixels again
    for ours in (from_ir, from_float_ir):
        for a, b in zip(ours, expected, strict=True):
            assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
            assert max(abs(p["probability"] - q["probability"])
                       for p, q in zip(a["predictions"], b["predictions"])) < 1e-4


def test_benchmark_times_a_pixel_ir_on_pixels(float32_ir, monkeypatch):
    """`xception benchmark --weights IR` feeds an IR that takes pixels uint8 pixels (what predict feeds
    it), a float network floats."""
    from xception_cli import benchmark
    from xception_cli.runtimes import network as network_module

    fed = []
    original = network_module.Network.__init__

    def spying_init(self, *a, **k):
        original(self, *a, **k)
        infer = self.infer
        self.infer = lambda x: (fed.append(x.dtype), infer(x))[1]

    monkeypatch.setattr(network_module.Network, "__init__", spying_init)
    benchmark.run_benchmark(batch_sizes=[2], iterations=1, warmup=0, weights=str(float32_ir))
    assert fed and set(fed) == {np.dtype(np.uint8)}


def test_ir_without_its_bin_is_a_clear_error(tmp_path, float32_ir, samples):
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(float32_ir.read_bytes())
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(lonely)])
    assert r.exit_code == 2 and "needs its weights file lonely.bin beside it" in r.stderr


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory, samples):
    """15 photos made from the 4 samples (crops, flips, rotations), saved losslessly."""
    d = tmp_path_factory.mktemp("calibration")
    n = 0
    for p in samples:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        for k, variant in enumerate([im, ImageOps.mirror(im), im.crop((w // 8, h // 8, w, h)),
                                     im.rotate(8, expand=False)]):
            if n == 15:
                break
            variant.save(d / f"{p.stem}-{k}.png")
            n += 1
    (d / "broken.jpg").write_bytes(b"not an image")
    return d


def test_int8_export_checks_itself_and_is_deterministic(tmp_path, weights_file, calibration_dir, samples):
    outs = []
    for i in range(2):
        out = tmp_path / f"int8-{i}.xml"
        r = export("openvino", "--int8", "--calibrate", calibration_dir, "-o", out, "--weights", weights_file,
                   "-f", "json")
        assert r.exit_code == 0, r.output
        outs.append(out)
    result = json.loads(r.stdout)
    check = result["int8_check"]
    assert check["held_out_photos"] == 3 and check["calibration_photos"] == 12 and check["unreadable"] == 1
    assert check["top1_agree_count"] >= 2  # INT8 agrees with float32 on most held-out photos
    assert 0 < check["max_abs_probability_difference"] < 0.5
    assert "broken.jpg" in r.stderr  # the unreadable photo is named, and skipped
    assert md5(outs[0].with_suffix(".bin")) == md5(outs[1].with_suffix(".bin"))  # same photos, same model
    meta = json.loads(outs[0].with_name(outs[0].name + ".meta.json").read_text())
    assert meta["precision"] == "int8" and meta["int8"]["held_out_photos"] == 3
    assert meta["input_kind"] == "uint8"  # calibrated on pixels, as it is fed
    import openvino as ov

    assert ov.Core().read_model(str(outs[0])).input(0).get_element_type() == ov.Type.u8
    assert outs[0].with_suffix(".bin").stat().st_size < 40e6  # INT8 weights
    # predict runs it, with ImageNet labels, and says it ran INT8 in benchmark records
    r = CliRunner().invoke(cli, ["predict", *map(str, samples), "-f", "jsonl", "--weights", str(outs[0])])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 4 and all(len(x["predictions"]) == 5 and x["predictions"][0]["wnid"] for x in records)
    r = CliRunner().invoke(cli, ["benchmark", "-b", "1", "-n", "1", "--warmup", "0", "-f", "json", "--weights",
                                 str(outs[0])])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["precision_run"] == "int8"


def test_int8_refuses_too_few_photos(tmp_path, weights_file, samples):
    few = tmp_path / "few"
    few.mkdir()
    for p in samples:
        (few / p.name).write_bytes(p.read_bytes())
    r = export("openvino", "--int8", "--calibrate", few, "-o", tmp_path / "q.xml", "--weights", weights_file)
    assert r.exit_code == 2
    assert "too few photos to calibrate INT8: 4 readable image(s), at least 10 are needed" in r.stderr
    assert not (tmp_path / "q.xml").exists()


@pytest.mark.parametrize("args, message", [
    (["openvino", "-o", "x.onnx"], "use -o x.xml"),
    (["onnx", "-o", "x.xml"], "use -o x.onnx"),
    (["onnx", "--int8", "-o", "x.onnx"], "--int8 is for the openvino format"),
    (["openvino", "--int8", "-o", "x.xml"], "--int8 needs --calibrate DIR"),
    (["openvino", "-o", "no/such/dir/x.xml"], "folder no/such/dir does not exist"),
])
def test_export_usage_errors(args, message, weights_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = export(*args, "--weights", weights_file)
    assert r.exit_code == 2 and message in r.stderr


def test_missing_optional_package_says_how_to_install(monkeypatch):
    import sys

    from xception_cli.export import ExportError, require

    monkeypatch.setitem(sys.modules, "nncf", None)  # as if it were not installed
    with pytest.raises(ExportError, match=r"--int8 needs the 'nncf' package: pip install 'xception-cli\[export\]'"):
        require("nncf", "--int8")


def test_saved_model_signatures_and_labels(tmp_path, weights_file, samples, photos_batch, reference_probs):
    import tensorflow as tf

    out = tmp_path / "serving" / "xception" / "1"  # the folders are made (serving layouts are deep)
    r = export("saved-model", "-o", out, "--weights", weights_file)
    assert r.exit_code == 0, r.output
    loaded = tf.saved_model.load(str(out))
    assert set(loaded.signatures) == {"serving_default", "serving_uint8"}
    probs = loaded.signatures["serving_default"](images=tf.constant(photos_batch))["probabilities"].numpy()
    assert_same(probs, reference_probs)
    pixels = np.stack([load_image(p) for p in samples])
    probs_u8 = loaded.signatures["serving_uint8"](pixels=tf.constant(pixels))["probabilities"].numpy()
    assert_same(probs_u8, reference_probs)  # load_image + to_input is what preprocess_image does
    assert np.abs(to_input(pixels) - photos_batch).max() == 0
    labels = (out / "assets" / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[281] == "tabby"
    meta = json.loads((out / "xception.meta.json").read_text())
    assert meta["format"] == "saved-model" and "serving_uint8" in meta["signatures"]
    assert os.listdir(out.parent) == ["1"]  # the folder published whole: nothing staged left beside it


def test_onnx_round_trips_in_onnx_runtime(tmp_path, weights_file, pixels, reference_probs):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "xception.onnx"
    r = export("onnx", "-o", out, "--weights", weights_file)
    assert r.exit_code == 0, r.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("input_image", "tensor(uint8)", ["N", 299, 299, 3])
    (probs,) = session.run(None, {"input_image": pixels})
    assert_same(probs, reference_probs)
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert props["xception.precision"] == "float32" and props["xception.input_kind"] == "uint8"
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["weights"]["md5"] == md5(weights_file)
    assert meta["input_kind"] == "uint8" and meta["input"]["dtype"] == "uint8"
    assert meta["model_files"] == {"onnx": {"size": out.stat().st_size, "sha256": sha256(out)}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xception.onnx", "xception.onnx.meta.json"]


def test_an_ir_and_an_onnx_file_of_one_name_keep_their_own_metadata(float32_ir, weights_file):
    from xception_cli.weights import read_metadata

    onnx_out = float32_ir.with_suffix(".onnx")
    r = export("onnx", "-o", onnx_out, "--weights", weights_file)
    assert r.exit_code == 0, r.output
    assert read_metadata(float32_ir)["format"] == "openvino" and read_metadata(onnx_out)["format"] == "onnx"
    # NAME.meta.json (a name never released) is not read
    (float32_ir.parent / "solo.meta.json").write_text(json.dumps({"format": "openvino", "labels": [["", "ok"]]}))
    assert read_metadata(float32_ir.with_name("solo.xml")) is None


def test_saved_model_onto_a_file_says_so(tmp_path, weights_file):
    f = tmp_path / "cat.jpg"
    f.write_bytes(b"x")
    r = export("saved-model", "-o", f, "--weights", weights_file)
    assert r.exit_code == 2 and "a SavedModel is a folder, and this is a file" in r.stderr
    r = export("saved-model", "-o", f / "1", "--weights", weights_file)
    assert r.exit_code == 2 and "is a file, not a folder" in r.stderr and f.read_bytes() == b"x"


def test_benchmark_compares_two_weights_files(float32_ir, weights_file, image_dir):
    r = CliRunner().invoke(cli, ["benchmark", "-b", "1", "-n", "2", "--warmup", "0", "-f", "json", "--weights",
                                 str(weights_file), "--compare-weights", str(float32_ir), "--images", str(image_dir)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    wc = out["weights_comparison"]
    assert wc["top1_agreement"] == 1.0 and wc["max_abs_probability_difference"] < 1e-4
    assert wc["agreement_inputs"] == "4 images from --images" and set(wc["speedup_compare_vs_weights"]) == {"1"}
    assert [r.get("weights") for r in out["results"]] == [None, str(float32_ir)]
    assert out["end_to_end_compare_weights"]["classified"] == 4
