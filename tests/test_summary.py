"""`xception summary`: every block's numbers equal FACTS.md; formats parse; input-size checks."""

import csv
import io
import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from xception_cli.architecture import separable_vs_regular, summarize
from xception_cli.cli import cli

# FACTS.md, 299x299 with the top: block -> (output shape, params, MACs)
FACTS = {
    1: ([147, 147, 64], 19_680, 417_478_752),
    2: ([74, 74, 128], 36_032, 613_262_528),
    3: ([37, 37, 256], 137_600, 602_097_152),
    4: ([19, 19, 728], 920_312, 1_060_088_600),
    **{b: ([19, 19, 728], 1_618_344, 581_068_488) for b in range(5, 13)},
    13: ([10, 10, 1024], 2_045_136, 539_717_360),
    14: ([10, 10, 2048], 4_755_968, 474_163_200),
}


@pytest.fixture(scope="module")
def summary_json():
    r = CliRunner().invoke(cli, ["summary", "-f", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_blocks_match_facts(summary_json):
    s = summary_json
    assert (s["model"], s["input_shape"], s["include_top"]) == ("xception", [299, 299, 3], True)
    assert [b["block"] for b in s["blocks"]] == list(range(1, 15))
    for b in s["blocks"]:
        shape, params, macs = FACTS[b["block"]]
        assert (b["output_shape"], b["params"], b["macs"]) == (shape, params, macs), b["block"]
        assert b["flow"] == ("entry" if b["block"] <= 4 else "middle" if b["block"] <= 12 else "exit")
    assert s["top"]["params"] == 2_049_000 and s["top"]["macs"] == 2_048_000
    assert s["total_params"] == 22_910_480
    assert (s["trainable_params"], s["non_trainable_params"]) == (22_855_952, 54_528)
    assert s["macs"] == 8_357_403_496


def test_regular_equivalent_columns(summary_json):
    blocks = {b["block"]: b for b in summary_json["blocks"]}
    assert blocks[1]["separable_convs"] == 0 and blocks[1]["regular_equivalent_params"] == 0
    assert [blocks[b]["separable_convs"] for b in range(2, 15)] == [2, 2, 2] + [3] * 8 + [2, 2]
    # Block 2: 64->128 then 128->128 separable 3x3 convs at 74x74... their regular twins:
    assert blocks[2]["regular_equivalent_params"] == 3 * 3 * 64 * 128 + 3 * 3 * 128 * 128
    assert blocks[5]["regular_equivalent_macs"] == 3 * (19 * 19 * 9 * 728 * 728)


def test_seed_example_by_the_same_helper():
    cost = separable_vs_regular(16, 32, 3)
    assert (cost.regular_params, cost.params) == (4_608, 656)
    assert round(cost.saving, 2) == 7.02


def test_csv_parses():
    r = CliRunner().invoke(cli, ["summary", "-f", "csv"])
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["block"] for row in rows] == [str(b) for b in range(1, 15)] + ["top", "total"]
    assert rows[0]["output_shape"] == "147x147x64"
    assert int(rows[-1]["params"]) == 22_910_480 and int(rows[-1]["macs"]) == 8_357_403_496


def test_layers_view():
    r = CliRunner().invoke(cli, ["summary", "--layers", "-f", "csv"])
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 134
    assert sum(int(x["params"]) for x in rows) == 22_910_480
    sep = next(x for x in rows if x["layer"] == "block4_sepconv1")
    assert (sep["type"], sep["output_shape"], sep["block"]) == ("SeparableConv2D", "37x37x728", "4")
    assert int(sep["macs"]) == 37 * 37 * 9 * 256 + 37 * 37 * 256 * 728
    assert next(x for x in rows if x["layer"] == "block2_residual_conv")["block"] == "2"


def test_table(tmp_path):
    r = CliRunner().invoke(cli, ["summary", "-f", "table"])
    assert r.exit_code == 0
    for text in ("entry", "middle", "exit", "22,910,480", "8.36 G", "147x147x64", "4,608", "656"):
        assert text in r.stdout


def test_input_size_71_and_70():
    r = CliRunner().invoke(cli, ["summary", "--input-size", "71", "-f", "json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["include_top"] is False and s["top"] is None and s["input_shape"] == [71, 71, 3]
    assert s["blocks"][-1]["output_shape"] == [3, 3, 2048]
    assert s["total_params"] == 20_861_480
    table = CliRunner().invoke(cli, ["summary", "--input-size", "71", "-f", "table"]).stdout
    assert "ImageNet top is left out" in " ".join(table.split())
    r = CliRunner().invoke(cli, ["summary", "--input-size", "70"])
    assert r.exit_code == 2
    assert "Invalid value for '--input-size': 70 is not in the range x>=71" in r.stderr


def test_compare_inception_v3():
    r = CliRunner().invoke(cli, ["summary", "--compare", "inception-v3", "-f", "json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["compare"]["inception-v3"]
    assert c["params"] == 23_851_784
    assert round(c["macs"] / 1e9, 2) == 5.71


def test_summary_needs_neither_tensorflow_nor_keras():
    """Every view of `summary` (but --compare) runs without importing TensorFlow or Keras."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from xception_cli.cli import cli\n"
        "for args in (['-f', 'json'], ['-f', 'table'], ['--layers', '-f', 'csv'], ['--input-size', '71']):\n"
        "    r = CliRunner().invoke(cli, ['summary', *args])\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'scipy', 'nncf') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def _layer_rows(infos, names: bool = True):
    return [((i.name,) if names else ()) + (i.type, i.output_shape, i.params, i.trainable_params, i.macs)
            for i in infos]


@pytest.mark.parametrize("size, include_top", [(299, True), (150, False)])
def test_propagation_equals_our_keras_realisation(size, include_top):
    """The shapes, parameters and MACs propagated from xception_graph are those of the Keras model
    built from the same graph, layer by layer and block by block (Keras counts its own weights)."""
    from xception_cli.architecture import build_summary, propagate
    from xception_cli.model import build_xception

    model = build_xception(include_top=include_top, input_shape=(size, size, 3), initialize=False)
    keras_summary = summarize(model)
    assert _layer_rows(propagate(size, include_top)) == _layer_rows(keras_summary.layers)
    ours = build_summary(size)
    assert ours.to_dict(with_layers=True) == keras_summary.to_dict(with_layers=True)


def test_propagation_equals_keras_applications(reference_model):
    """keras.applications.Xception (the oracle) has the same layers in the same order: types,
    output shapes, weights and MACs (it names the residual convolutions conv2d, conv2d_1, ...)."""
    from xception_cli.architecture import layer_infos, propagate

    ref = layer_infos(reference_model)
    ours = propagate(299)
    assert _layer_rows(ours, names=False) == _layer_rows(ref, names=False)
    unnamed = re.compile(r"(input_layer|conv2d|batch_normalization|add)(_\d+)?")  # Keras' default names
    assert [a.name for a, b in zip(ours, ref) if a.name != b.name and not unnamed.fullmatch(b.name)] == []
    assert sum(i.params for i in ref) == 22_910_480 and sum(i.macs for i in ref) == 8_357_403_496


def test_propagation_checks_its_input():
    from xception_cli.architecture import propagate

    assert propagate(71)[-1].output_shape == [3, 3, 2048]
    assert propagate(128)[1:][3].output_shape == [61, 61, 64]  # block1_conv2 at 128: (63 - 3) + 1
    with pytest.raises(ValueError, match="at least 71"):
        propagate(70)
    with pytest.raises(ValueError, match="needs input_shape"):
        propagate(150, include_top=True)
