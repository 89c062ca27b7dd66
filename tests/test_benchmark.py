"""`xception benchmark` with tiny iteration counts: schema, consistency, system record."""

import io
import json

import pytest
from click.testing import CliRunner

from xception_cli.benchmark import time_calls
from xception_cli.cli import cli

SYSTEM_KEYS = {"python", "cpu", "cores", "precision", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
               "runtime", "runtime_version", "precision_run"}


def invoke(*args):
    r = CliRunner().invoke(cli, ["benchmark", "-f", "json", "--warmup", "1", *map(str, args)])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def check_result(r, system):
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert r["images_per_second"] == pytest.approx(r["batch_size"] * 1000 / lat["p50"], rel=1e-3)
    assert r["ms_per_image"] == pytest.approx(lat["p50"] / r["batch_size"], rel=1e-3)
    assert r["peak_rss_mb"] > 0 and r["gmacs_per_second"] > 0
    assert r["system"] == system


@pytest.fixture(scope="module")
def model_only():
    return invoke("-b", "1,2", "-n", "3")


def test_schema_and_consistency(model_only):
    out = model_only
    assert set(out) >= {"system", "model", "cold_start_s", "first_call_s", "results"}
    assert SYSTEM_KEYS <= set(out["system"])
    assert out["model"] == {"name": "xception", "params": 22_910_480, "macs_per_image": 8_357_403_496,
                            "input_shape": [299, 299, 3]}
    assert out["cold_start_s"] >= 0 and out["first_call_s"] > 0
    parts = out["cold_start_breakdown_s"]
    assert {"resolve_weights_s", "import_s", "read_weights_s", "build_s", "other_s"} <= set(parts)
    assert sum(parts.values()) == pytest.approx(out["cold_start_s"], abs=0.01)
    assert out["system"]["runtime"] == "openvino"  # auto, with random weights
    assert [(r["batch_size"], r["precision"], r["mode"], r["iterations"]) for r in out["results"]] == [
        (1, "float32", "inference", 3), (2, "float32", "inference", 3)]
    for r in out["results"]:
        check_result(r, out["system"])
        assert r["gmacs_per_second"] == pytest.approx(8.357403496 * r["images_per_second"], rel=1e-2)


def test_table_output(tmp_path):
    out = tmp_path / "bench.txt"
    r = CliRunner().invoke(cli, ["benchmark", "-b", "1", "-n", "2", "--warmup", "0", "-f", "table", "-o", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    for s in ("xception", "22,910,480", "cold start", "first call", "p50 ms", "float32", "openvino"):
        assert s in text


def test_time_calls_separates_warmup():
    calls = []
    t = time_calls(lambda: calls.append(1), warmup=3, iterations=5)
    assert len(calls) == 8 and len(t.latencies_ms) == 5
    t = time_calls(lambda: None, warmup=0, iterations=None, seconds=0.05)
    assert len(t.latencies_ms) > 1


def test_compare_precision_and_end_to_end(image_dir):
    out = invoke("-b", "1", "-n", "2", "--compare-precision", "--images", image_dir)
    assert [(r["precision"], r["batch_size"]) for r in out["results"]] == [("float32", 1), ("bfloat16", 1)]
    cmp = out["comparison"]
    assert set(cmp["speedup_bfloat16_vs_float32"]) == {"1"}
    assert 0 <= cmp["top1_agreement"] <= 1 and "images from --images" in cmp["agreement_inputs"]
    e2e = out["end_to_end"]
    assert e2e["images"] == e2e["classified"] == len(list(image_dir.iterdir()))
    assert e2e["decode_ms_per_image"] > 0 and e2e["model_ms_per_image"] > 0
    assert 0 <= e2e["decode_hidden_fraction"] <= 1
    for r in out["results"]:
        check_result(r, out["system"])


def test_runtime_choice_is_recorded():
    out = invoke("-b", "1", "-n", "1", "--runtime", "tensorflow")
    (r,) = out["results"]
    assert r["runtime"] == out["system"]["runtime"] == "tensorflow"
    assert r["runtime_version"] == out["system"]["tensorflow"] and r["precision_run"] == "float32"
    check_result(r, out["system"])


def test_inception_v3_training_step():
    out = invoke("--model", "inception-v3", "--mode", "train", "-b", "1", "-n", "1", "--warmup", "0")
    assert out["model"]["name"] == "inception-v3" and out["model"]["params"] == 23_851_784
    (r,) = out["results"]
    assert r["mode"] == "train" and r["iterations"] == 1
    check_result(r, out["system"])


@pytest.mark.parametrize("args, message", [
    (["-b", "0"], "batch sizes must be between 1 and 1024"),
    (["-b", "a,b"], "expected comma-separated integers"),
    (["--model", "resnet"], "'resnet' is not one of"),
])
def test_bad_options(args, message):
    r = CliRunner().invoke(cli, ["benchmark", *args])
    assert r.exit_code == 2 and message in r.stderr


def test_output_never_overwrites_an_input(tmp_path, weights_file, image_dir):
    import shutil

    mine = tmp_path / "mine.h5"
    shutil.copy(weights_file, mine)
    size = mine.stat().st_size
    for extra in (["--weights", str(mine)], ["--compare-weights", str(mine)]):
        r = CliRunner().invoke(cli, ["benchmark", "-b", "1", "-n", "1", "--warmup", "0", *extra, "-o", str(mine)])
        assert r.exit_code == 2 and "is the weights file" in r.stderr
        assert mine.stat().st_size == size
    photo = next(image_dir.iterdir())
    before = photo.read_bytes()
    r = CliRunner().invoke(cli, ["benchmark", "-b", "1", "-n", "1", "--warmup", "0", "--images", str(image_dir),
                                 "-o", str(photo)])
    assert r.exit_code == 2 and photo.read_bytes() == before


def test_a_cold_start_served_by_the_compiled_network_cache_says_so(model_only):
    """Built (the suite runs without the cache) or taken from the user's cache: the line says which."""
    from rich.console import Console

    from xception_cli.cli.benchmark import render_tables

    assert model_only["compiled_network_cache"] is None  # built here
    lines = {}
    for cached in (None, "loaded"):
        console = Console(width=200, record=True, file=io.StringIO())
        render_tables({**model_only, "compiled_network_cache": cached}, console)
        lines[cached] = next(line for line in console.export_text().splitlines() if line.startswith("cold start"))
    assert lines[None].startswith("cold start (import + build + weights)")
    assert "compiled network from the cache" in lines["loaded"] and "--no-cache" in lines["loaded"]
