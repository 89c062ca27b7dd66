"""`xception train` writes its model and report through the output layer: no fixed temporary
name (a planted link there is never followed), both published together, never over the base
weights, and nothing written when training fails."""

import json
import os
import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli
from xception_cli.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=4)


def train(dataset, output, weights, *extra):
    return CliRunner().invoke(cli, ["train", str(dataset), "-o", str(output), "--weights", str(weights),
                                    "--epochs", "2", *map(str, extra)])


def test_links_planted_at_the_old_temporary_names_are_never_followed(tmp_path, dataset, weights_file):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "m.h5"
    planted = [tmp_path / "m.h5.tmp", tmp_path / "m.h5.report.json.tmp", tmp_path / ".m.h5.tmp"]
    for link in planted:
        link.symlink_to(victim)
    r = train(dataset, out, weights_file)
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "precious"
    assert all(link.is_symlink() and os.readlink(link) == str(victim) for link in planted)
    assert not out.is_symlink() and h5py.is_hdf5(out)
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["model"] == "m.h5"  # names, not where they live (the report travels with the model)
    assert report["options"]["data_dir"] == dataset.name and report["options"]["output"] == "m.h5"
    assert str(tmp_path) not in json.dumps(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim.txt", "m.h5", "m.h5.report.json", "m.h5.report.html", *(p.name for p in planted)])  # nothing else


def test_a_failed_training_leaves_the_earlier_model_and_report(tmp_path, weights_file):
    root = make_shapes_dataset(tmp_path / "d", per_class=4)
    for p in sorted((root / "red").iterdir())[1:]:
        p.write_bytes(b"junk")  # found as photos, then unreadable: the run fails after computing features
    out = tmp_path / "m.h5"
    out.write_bytes(b"earlier model")
    Path(f"{out}.report.json").write_text("earlier report")
    r = train(root, out, weights_file)
    assert r.exit_code == 2 and "class 'red': 1 readable photo(s)" in r.stderr, r.output
    assert out.read_bytes() == b"earlier model" and Path(f"{out}.report.json").read_text() == "earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "m.h5", "m.h5.report.json"]


@pytest.mark.parametrize("spelling", ["hard link", "symbolic link"])
def test_the_base_weights_by_another_name_are_refused(tmp_path, dataset, weights_file, spelling):
    base = tmp_path / "base.h5"
    shutil.copy(weights_file, base)
    alias = tmp_path / "alias.h5"
    (os.link if spelling == "hard link" else os.symlink)(base, alias)
    r = train(dataset, alias, base)
    assert r.exit_code == 2 and "is the weights file" in r.stderr, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.h5", "base.h5"]


def test_a_folder_where_the_report_goes_is_refused_before_any_work(tmp_path, dataset, weights_file):
    (tmp_path / "m.h5.report.json").mkdir()
    r = train(dataset, tmp_path / "m.h5", weights_file)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == f"Error: {tmp_path / 'm.h5.report.json'}: is a folder; -o needs a file name here"
    assert "computing features" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5.report.json"]
