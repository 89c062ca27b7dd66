"""The runtime layer: one choice, one precision decision, two runtimes equal to the reference."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli
from xception_cli.engine import Engine
from xception_cli.errors import RuntimeChoiceError
from xception_cli.labels import top_k
from xception_cli.preprocess import preprocess_image
from xception_cli.runtimes import choose_runtime, decide_precision, requested_runtime

# ---------------------------------------------------------------------------------------------
# decisions (pure functions: no hardware, no runtime needed)


@pytest.mark.parametrize("requested, fmt, installed, expected", [
    ("auto", "legacy-h5", True, "openvino"),
    ("auto", "random", True, "openvino"),
    ("auto", "keras-weights", True, "tensorflow"),
    ("auto", "keras-archive", True, "tensorflow"),
    ("auto", "legacy-h5", False, "tensorflow"),
    ("tensorflow", "legacy-h5", True, "tensorflow"),
    ("openvino", "legacy-h5", True, "openvino"),
])
def test_choose_runtime(requested, fmt, installed, expected):
    assert choose_runtime(requested, fmt, openvino_installed=installed) == expected


@pytest.mark.parametrize("fmt, installed, message", [
    ("keras-weights", True, "use --runtime tensorflow"),
    ("keras-archive", True, "use --runtime tensorflow"),
    ("legacy-h5", False, "OpenVINO is not installed"),
])
def test_explicit_openvino_that_cannot_work_says_why(fmt, installed, message):
    with pytest.raises(RuntimeChoiceError, match=message):
        choose_runtime("openvino", fmt, openvino_installed=installed)


def test_runtime_from_the_environment(monkeypatch):
    monkeypatch.setenv("XCEPTION_RUNTIME", "TensorFlow")
    assert requested_runtime(None) == "tensorflow"
    assert requested_runtime("openvino") == "openvino"  # the option wins
    monkeypatch.setenv("XCEPTION_RUNTIME", "onnx")
    with pytest.raises(RuntimeChoiceError, match="unknown runtime 'onnx'"):
        requested_runtime(None)


@pytest.mark.parametrize("flags, runtime, expected, warns", [
    ({"avx2", "fma"}, "openvino", "float32", True),  # AMD EPYC here: no bf16 units
    ({"avx2", "avx512f", "avx512_vnni"}, "openvino", "float32", True),  # Xeon here: emulated bf16 only
    ({"avx512f", "avx512_bf16"}, "openvino", "bfloat16", False),
    ({"avx512f", "amx_bf16", "amx_tile"}, "openvino", "bfloat16", False),
    ({"avx2"}, "tensorflow", "bfloat16", False),  # Keras mixed precision runs what is asked
])
def test_bfloat16_decision_from_cpu_flags(flags, runtime, expected, warns):
    precision, warning = decide_precision("bfloat16", runtime, cpu_flags=flags)
    assert precision == expected
    assert (warning is not None) == warns
    if warns:
        assert "no bfloat16 units" in warning
    assert decide_precision("float32", runtime, cpu_flags=flags) == ("float32", None)


# ---------------------------------------------------------------------------------------------
# the runtimes themselves


@pytest.fixture(scope="module")
def photos_batch(samples):
    return np.stack([preprocess_image(p) for p in samples])


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_both_runtimes_equal_the_reference(runtime, weights_file, reference_model, photos_batch):
    engine = Engine(weights=str(weights_file), runtime_request=runtime)
    ours = engine(photos_batch)
    theirs = np.asarray(reference_model.predict(photos_batch, verbose=0))
    assert engine.runtime == runtime and engine.network.runtime == runtime
    assert engine.network.precision == "float32"
    assert np.abs(ours - theirs).max() < 1e-4
    for a, b in zip(top_k(ours, 5), top_k(theirs, 5)):
        assert [p.index for p in a] == [p.index for p in b]


def test_openvino_precision_is_pinned_and_read_back(weights_file, monkeypatch):
    """float32 is pinned (OpenVINO picks bf16 by itself on CPUs with bf16 units); what actually ran
    is read back from the compiled model, and a difference from the request is said."""
    from xception_cli import runtimes
    from xception_cli.runtimes.openvino import actual_precision

    net = Engine(weights=str(weights_file), runtime_request="openvino").network
    assert net.precision == actual_precision(net.handle) == "float32"
    # Let the decision through whatever this CPU is: the network reports what the plugin ran.
    monkeypatch.setattr(runtimes, "has_native_bf16", lambda flags=None: True)
    bf = Engine(weights=str(weights_file), precision="bfloat16", runtime_request="openvino").network
    assert bf.precision == actual_precision(bf.handle)
    assert (bf.precision != "bfloat16") == any("OpenVINO ran" in n for n in bf.notes)


def test_random_weights_are_the_same_on_every_runtime(photos_batch):
    ov = Engine(weights="none", runtime_request="openvino")(photos_batch[:2])
    tf = Engine(weights="none", runtime_request="tensorflow")(photos_batch[:2])
    keras_model = Engine(weights="none", runtime_request="tensorflow").model
    ref = np.asarray(keras_model.predict(photos_batch[:2], verbose=0))
    assert np.abs(ov - tf).max() < 1e-5 and np.abs(ov - ref).max() < 1e-5


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_predict_json_equals_the_reference(runtime, presized, weights_file, reference_model):
    import keras
    from keras.applications.xception import preprocess_input

    files = sorted(presized.glob("*.png"))
    r = CliRunner().invoke(cli, ["predict", str(presized), "--resize", "squash", "-f", "json", "-k", "5",
                                 "--weights", str(weights_file), "--runtime", runtime])
    assert r.exit_code == 0, r.output
    records = json.loads(r.stdout)
    batch = preprocess_input(np.stack([keras.utils.img_to_array(keras.utils.load_img(f)) for f in files]))
    for record, expected in zip(records, top_k(reference_model.predict(batch, verbose=0), 5)):
        got = record["predictions"]
        assert [p["index"] for p in got] == [p.index for p in expected]
        assert max(abs(p["probability"] - e.probability) for p, e in zip(got, expected)) < 1e-4


def test_explicit_runtime_that_cannot_read_the_weights_exits_2(tmp_path, samples, weights_file):
    keras3 = tmp_path / "mine.weights.h5"
    Engine(weights=str(weights_file), runtime_request="tensorflow").model.save_weights(keras3)
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(keras3), "--runtime", "openvino"])
    assert r.exit_code == 2
    assert "runtime openvino (--runtime or $XCEPTION_RUNTIME) reads the official-format .h5" in r.stderr
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(keras3), "-f", "jsonl"])
    assert r.exit_code == 0, r.output  # auto: TensorFlow reads it, silently
    assert r.stderr == ""


def test_bad_runtime_from_environment_exits_2(samples, weights_file, monkeypatch):
    monkeypatch.setenv("XCEPTION_RUNTIME", "cuda")
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(weights_file)])
    assert r.exit_code == 2 and "unknown runtime 'cuda'" in r.stderr


def test_bfloat16_on_a_cpu_without_bf16_units_warns_once(samples, weights_file, monkeypatch):
    from xception_cli import runtimes
    from xception_cli.engine import clear_engines

    monkeypatch.setattr(runtimes, "has_native_bf16", lambda flags=None: False)  # an AVX2-only CPU
    clear_engines()  # not an engine another test built with this CPU's own flags
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "--weights", str(weights_file), "--precision",
                                 "bfloat16", "-f", "jsonl"])
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "runs float32" in warnings[0]


POISON = """
raise ImportError("the OpenVINO path imported {name}")
"""


def test_predict_with_an_official_file_never_imports_tensorflow(tmp_path, samples, weights_file):
    """Run predict with `tensorflow` and `keras` modules on the path that fail on import."""
    for name in ("tensorflow", "keras"):
        (tmp_path / "poison" / name).mkdir(parents=True)
        (tmp_path / "poison" / name / "__init__.py").write_text(POISON.format(name=name))
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / 'poison')!r})
        from xception_cli.cli import main
        sys.argv = ["xception", "predict", {str(samples[0])!r}, {str(samples[1])!r}, "-f", "jsonl",
                    "--weights", {str(weights_file)!r}]
        main()
    """)
    for extra in ([], ["--weights", "none"]):
        r = subprocess.run([sys.executable, "-c", code.replace("main()", f"sys.argv += {extra!r}\nmain()")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        records = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(records) == 2 and all("predictions" in x for x in records)
