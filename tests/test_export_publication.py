"""`xception export` writes through the output layer: never over the weights it reads, every file
of an export published together (a kill leaves the earlier export as it was), and a set that is
not one export (a new .bin beside an earlier .xml and metadata) refused by every reader."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import xception_cli
from xception_cli.cli import cli

PACKAGE_ROOT = str(Path(xception_cli.__file__).resolve().parents[1])


def export(*args):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


def predict(weights, photo):
    return CliRunner().invoke(cli, ["predict", str(photo), "-f", "jsonl", "--weights", str(weights)])


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (staging folders included) with the sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, weights_file):
    """An export of the test weights (x.xml, x.bin, x.xml.meta.json), alone in its folder."""
    out = tmp_path_factory.mktemp("earlier") / "x.xml"
    r = export("openvino", "--weights", weights_file, "-o", out)
    assert r.exit_code == 0, r.output
    return out


# ---------------------------------------------------------------------------------------------
# Never over the weights it reads


@pytest.mark.parametrize("fmt, weights_name, output", [
    ("openvino", "model.bin", "model.xml"),  # the IR's .bin is the weights file (an HDF5 named .bin)
    ("onnx", "w.onnx", "w.onnx"),  # the model file is the weights file
    ("openvino", "w.xml.meta.json", "w.xml"),  # the metadata file is the weights file
])
def test_an_export_never_writes_over_its_weights(tmp_path, weights_file, fmt, weights_name, output):
    mine = tmp_path / weights_name
    shutil.copy(weights_file, mine)
    before = contents(tmp_path)
    r = export(fmt, "--weights", mine, "-o", tmp_path / output)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == (f"Error: {mine}: is the weights file ({mine}); writing there would destroy it: "
                                "choose another -o")
    assert contents(tmp_path) == before  # nothing written, nothing staged, the weights untouched


def test_a_hard_link_to_the_weights_is_the_weights(tmp_path, weights_file):
    mine = tmp_path / "w.h5"
    shutil.copy(weights_file, mine)
    os.link(mine, tmp_path / "served.bin")
    before = contents(tmp_path)
    r = export("openvino", "--weights", mine, "-o", tmp_path / "served.xml")
    assert r.exit_code == 2 and "is the weights file" in r.stderr, r.output
    assert contents(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Published together: a kill leaves the earlier export as it was


def _snapshot(folder: Path) -> dict[str, tuple]:
    out = {}
    for p in folder.rglob("*"):
        try:
            st = p.stat()
        except OSError:
            continue
        out[str(p.relative_to(folder))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _started(folder: Path, first: dict) -> bool:
    """Anything written yet: a new name, or a file changed."""
    return _snapshot(folder) != first


def _bin_written(folder: Path, first: dict) -> bool:
    """A new .bin (staged or not) with more than 1 MB in it: the IR being saved."""
    now = _snapshot(folder)
    return any(name.endswith("x.bin") and now[name] != first.get(name) and now[name][1] > 1 << 20 for name in now)


@pytest.mark.parametrize("point", [_started, _bin_written], ids=["as-it-starts", "while-saving-the-bin"])
def test_a_killed_export_leaves_the_earlier_one_as_it_was(tmp_path, earlier, samples, point):
    folder = tmp_path / "served"
    shutil.copytree(earlier.parent, folder)
    before = contents(folder)
    first = _snapshot(folder)
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    cmd = [sys.executable, "-m", "xception_cli", "export", "openvino", "--weights", "none", "-o", "x.xml"]
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not point(folder, first):
            assert proc.poll() is None, f"the export ended before the kill: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "the export never reached the kill point"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = contents(folder)
    left = {name for name in after if name not in before}
    assert all(".xception-" in name for name in left)  # at most a staging folder, under its own name
    assert {k: v for k, v in after.items() if k in before} == before  # byte for byte
    r = predict(folder / "x.xml", samples[0])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["predictions"][0]["wnid"].startswith("n")
    # the next export clears what the killed one left, and publishes its whole set
    r = export("openvino", "--weights", "none", "-o", folder / "x.xml")
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(folder)) == ["x.bin", "x.xml", "x.xml.meta.json"]
    assert contents(folder)["x.bin"] != before["x.bin"]
    assert predict(folder / "x.xml", samples[0]).exit_code == 0


# ---------------------------------------------------------------------------------------------
# A mixed set is refused by its reader, in one line


def _change_a_byte(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 1]))


MIXES = {
    "a .bin of the same size": ("bin", _change_a_byte),
    "a .bin of another size": ("bin", lambda p: os.truncate(p, p.stat().st_size - 4)),
    "another .xml": ("xml", lambda p: p.write_bytes(p.read_bytes() + b"\n")),
}


@pytest.mark.parametrize("case", sorted(MIXES))
def test_a_mixed_set_is_refused_in_one_line(tmp_path, earlier, samples, case):
    ext, change = MIXES[case]
    mine = tmp_path / "m.xml"
    for suffix in (".xml", ".bin"):  # the one changed is a copy; the other a hard link
        (shutil.copy if suffix == f".{ext}" else os.link)(earlier.with_suffix(suffix), mine.with_suffix(suffix))
    shutil.copy(earlier.with_name("x.xml.meta.json"), tmp_path / "m.xml.meta.json")
    change(mine.with_suffix(f".{ext}"))
    r = predict(mine, samples[0])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == (
        f"Error: {tmp_path / 'm.xml.meta.json'}: does not describe the m.{ext} beside it (a file of another export, "
        "or an export interrupted while replacing this one): export the model again")
    assert r.stdout == ""


def test_the_metadata_describes_the_files_it_was_written_with(earlier):
    meta = json.loads(earlier.with_name("x.xml.meta.json").read_text())
    for ext in ("xml", "bin"):
        data = earlier.with_suffix(f".{ext}").read_bytes()
        assert meta["model_files"][ext] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# ---------------------------------------------------------------------------------------------
# Targets that cannot be written: one line, nothing written


def test_a_folder_named_like_the_model_is_refused(tmp_path, weights_file):
    (tmp_path / "dir.xml").mkdir()
    r = export("openvino", "--weights", weights_file, "-o", tmp_path / "dir.xml")
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == f"Error: {tmp_path / 'dir.xml'}: is a folder; the model is a file: choose another -o"
    assert sorted(os.listdir(tmp_path)) == ["dir.xml"] and not os.listdir(tmp_path / "dir.xml")


def test_a_folder_where_the_bin_goes_is_refused(tmp_path, weights_file):
    (tmp_path / "x.bin").mkdir()
    r = export("openvino", "--weights", weights_file, "-o", tmp_path / "x.xml")
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == f"Error: {tmp_path / 'x.bin'}: is a folder; -o needs a file name here"
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_a_saved_model_into_a_folder_that_is_not_empty_is_refused(tmp_path, weights_file):
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "keep.txt").write_text("mine")
    r = export("saved-model", "--weights", weights_file, "-o", tmp_path / "serving")
    assert r.exit_code == 2, r.output
    assert "a SavedModel is a folder, and this one exists and is not empty" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["serving"] and os.listdir(tmp_path / "serving") == ["keep.txt"]
    assert (tmp_path / "serving" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("fmt, output", [("saved-model", "a/b/1"), ("openvino", "x.xml"), ("onnx", "x.onnx")])
def test_a_failed_export_leaves_nothing(tmp_path, fmt, output):
    import h5py

    empty = tmp_path / "empty.h5"  # an HDF5 file without Xception's layers: fails after the files are staged
    h5py.File(empty, "w").close()
    r = export(fmt, "--weights", empty, "-o", tmp_path / output)
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: {empty}: "), r.output
    assert os.listdir(tmp_path) == ["empty.h5"]  # no model, no metadata, no staging folder, no made folders


# ---------------------------------------------------------------------------------------------
# model_files itself: checked like the rest of the metadata; metadata without it is not checked


def _linked_set(tmp_path: Path, earlier: Path, meta: dict) -> Path:
    mine = tmp_path / "m.xml"
    for suffix in (".xml", ".bin"):
        os.link(earlier.with_suffix(suffix), mine.with_suffix(suffix))
    (tmp_path / "m.xml.meta.json").write_text(json.dumps(meta))
    return mine


BAD_FILES = {
    "a list": [],
    "a path for an extension": {"../../etc/passwd": {"size": 1, "sha256": "0" * 64}},
    "a size that is text": {"bin": {"size": "88", "sha256": "0" * 64}},
    "a digest that is not hex": {"bin": {"size": 88, "sha256": "z" * 64}},
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_model_files_are_one_line_naming_the_metadata(tmp_path, earlier, samples, case):
    meta = json.loads(earlier.with_name("x.xml.meta.json").read_text())
    mine = _linked_set(tmp_path, earlier, dict(meta, model_files=BAD_FILES[case]))
    r = predict(mine, samples[0])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().startswith(f"Error: {tmp_path / 'm.xml.meta.json'}: not the metadata of an exported "
                                       "Xception model: 'model_files'")
    assert len(r.stderr.strip().splitlines()) == 1


def test_metadata_without_model_files_is_read_as_before(tmp_path, earlier, samples):
    meta = json.loads(earlier.with_name("x.xml.meta.json").read_text())
    del meta["model_files"]
    r = predict(_linked_set(tmp_path, earlier, meta), samples[0])
    assert r.exit_code == 0, r.output


def test_a_file_changed_after_it_was_checked_is_checked_again(tmp_path, earlier):
    from xception_cli.errors import WeightsError
    from xception_cli.weights import read_metadata

    mine = tmp_path / "m.xml"
    shutil.copy(earlier, mine)
    os.link(earlier.with_suffix(".bin"), mine.with_suffix(".bin"))
    shutil.copy(earlier.with_name("x.xml.meta.json"), tmp_path / "m.xml.meta.json")
    assert read_metadata(mine)["format"] == "openvino"
    _change_a_byte(mine)  # same size, in place: the digest read before must not be reused
    with pytest.raises(WeightsError, match="does not describe the m.xml beside it"):
        read_metadata(mine)
