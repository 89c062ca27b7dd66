"""The metadata beside an exported IR (``NAME.xml.meta.json``) is checked and size-limited: bad
content is one error line naming the file, never an unexpected exception."""

import json
import os

import pytest
from click.testing import CliRunner

from xception_cli.cli import cli
from xception_cli.labels import class_index


@pytest.fixture(scope="module")
def exported(tmp_path_factory, weights_file):
    """An IR of the test weights and its metadata, as ``xception export openvino`` writes them."""
    ir = tmp_path_factory.mktemp("ir") / "x.xml"
    r = CliRunner().invoke(cli, ["export", "openvino", "--weights", str(weights_file), "-o", str(ir)])
    assert r.exit_code == 0, r.output
    return ir, json.loads(ir.with_name("x.xml.meta.json").read_text())


def ir_with(tmp_path, exported, content: str | bytes | None):
    """The exported IR under a new name (hard links), with ``content`` as its metadata."""
    ir, _ = exported
    mine = tmp_path / "m.xml"
    os.link(ir, mine)
    os.link(ir.with_suffix(".bin"), mine.with_suffix(".bin"))
    sidecar = tmp_path / "m.xml.meta.json"
    if content is not None:
        sidecar.write_bytes(content if isinstance(content, bytes) else content.encode())
    return mine, sidecar


def predict(ir, sample):
    return CliRunner().invoke(cli, ["predict", str(sample), "-f", "jsonl", "--weights", str(ir)])


def with_labels(meta, labels, outputs=None):
    meta = dict(meta, labels=labels)
    meta["output"] = dict(meta["output"], shape=["N", outputs if outputs is not None else len(labels)])
    return json.dumps(meta)


IMAGENET = [list(pair) for pair in class_index()]

BAD = {
    "not an object": lambda meta: "[1, 2, 3]",
    "labels a string": lambda meta: json.dumps(dict(meta, labels="cat")),
    "labels missing": lambda meta: json.dumps({k: v for k, v in meta.items() if k != "labels"}),
    "labels of numbers": lambda meta: with_labels(meta, [[1, 2]] * 1000),
    "a label pair of three": lambda meta: with_labels(meta, [["n0", "cat", "x"]] * 1000),
    "one label too few": lambda meta: with_labels(meta, IMAGENET[:-1], outputs=1000),
    "wnids mixed with nulls": lambda meta: with_labels(meta, [[None, "a"]] + IMAGENET[1:]),
    "output shape not a list": lambda meta: json.dumps(dict(meta, output={"shape": "N x 1000"})),
    "preprocessing a list": lambda meta: json.dumps(dict(meta, preprocessing=[1])),
    "an unknown resize": lambda meta: json.dumps(dict(meta, preprocessing={"resize": "stretch"})),
    "another format": lambda meta: json.dumps(dict(meta, format="onnx")),
    "nested too deep to parse": lambda meta: '{"labels": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "nested deep": lambda meta: json.dumps(dict(meta, extra=json.loads("[" * 200 + "]" * 200))),
    "not JSON": lambda meta: "{labels: cat",
    "not UTF-8": lambda meta: b'{"labels": "\xff"}',
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_metadata_is_one_line_naming_the_file(tmp_path, exported, samples, case):
    ir, sidecar = ir_with(tmp_path, exported, BAD[case](exported[1]))
    r = predict(ir, samples[0])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {sidecar}: "), r.stderr
    assert "unexpected" not in r.stderr and r.stdout == ""


def test_a_huge_metadata_file_is_refused_without_reading_it(tmp_path, exported, samples):
    ir, sidecar = ir_with(tmp_path, exported, "{")
    with open(sidecar, "r+b") as f:
        f.truncate(9 << 20)  # sparse: 9 MiB on paper
    r = predict(ir, samples[0])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == (f"Error: {sidecar}: 9,437,184 bytes; a model's metadata file is at most 8 MiB, "
                                "so this one is not ours")


def test_labels_for_another_number_of_outputs_than_the_ir_has(tmp_path, exported, samples):
    """Consistent metadata that does not describe this IR (3 classes, the IR gives 1000)."""
    ir, sidecar = ir_with(tmp_path, exported, with_labels(exported[1], [[None, "a"], [None, "b"], [None, "c"]]))
    r = predict(ir, samples[0])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == f"Error: {sidecar}: 3 labels for the IR's 1000 outputs: not the metadata of this model"


def test_an_ir_without_metadata_gives_imagenet_labels(tmp_path, exported, samples):
    ir, _ = ir_with(tmp_path, exported, None)
    r = predict(ir, samples[0])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["predictions"][0]["wnid"].startswith("n")


def test_the_legacy_name_is_not_read(tmp_path, exported, samples):
    """``NAME.meta.json`` was never released: what it says changes nothing."""
    ir, _ = ir_with(tmp_path, exported, None)
    (tmp_path / "m.meta.json").write_text(with_labels(exported[1], [[None, "a"], [None, "b"], [None, "c"]]))
    r = predict(ir, samples[0])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["predictions"][0]["wnid"].startswith("n")
