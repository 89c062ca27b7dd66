"""`predict`'s output can never be clobbered, corrupted or lost: each test written as a user hits
the case, through the command line."""

import base64
import csv
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli


@pytest.fixture
def run(weights_file):
    def invoke(*args, input=None):
        return CliRunner().invoke(cli, ["predict", *map(str, args), "--weights", str(weights_file)], input=input)

    return invoke


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


# inputs are never overwritten ------------------------------------------------------------------

def test_output_that_is_one_of_the_inputs_is_refused(run, photos):
    photo = photos / "cat.jpg"
    before = photo.read_bytes()
    r = run(photo, "-o", photo)
    assert r.exit_code == 2
    assert "is one of the inputs" in r.stderr and str(photo) in r.stderr
    assert photo.read_bytes() == before
    # any spelling of it, and inside a folder given as input
    os.chdir(photos)
    r = run(photos, "-o", "./cat.jpg", "-f", "jsonl")
    assert r.exit_code == 2 and photo.read_bytes() == before


# --resume continues a file in its own format ---------------------------------------------------

@pytest.mark.parametrize("have, ask", [("jsonl", "csv"), ("csv", "jsonl")])
def test_resume_in_another_format_is_refused_and_keeps_the_results(run, photos, tmp_path, have, ask):
    out = tmp_path / f"labels.{have}"
    assert run(photos, "-o", out).exit_code == 0
    before = out.read_bytes()
    r = run(photos, "-o", out, "-f", ask, "--resume")
    assert r.exit_code == 2
    assert f"holds {have} output" in r.stderr and f"-f {have}" in r.stderr
    assert out.read_bytes() == before


def test_resume_without_f_continues_in_the_files_own_format(run, photos, tmp_path):
    out = tmp_path / "labels.txt"  # the extension says nothing about the format
    assert run(photos, "-o", out, "-f", "csv").exit_code == 0
    (photos / "extra.jpg").write_bytes((photos / "cat.jpg").read_bytes()[:-1] + b"\xd9")
    r = run(photos, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    assert "4 already classified" in r.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted({row["path"] for row in rows}) == sorted(str(p) for p in photos.iterdir())


# pipes, devices and /dev/null ------------------------------------------------------------------

def test_resume_into_a_named_pipe_is_refused_at_once(weights_file, photos, tmp_path):
    fifo = tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "xception_cli", "predict", str(photos), "-o", str(fifo), "--resume",
                        "--weights", str(weights_file)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and time.monotonic() - t0 < 30
    assert "cannot resume into a named pipe" in r.stderr


def test_resume_into_a_device_or_a_link_to_one_is_refused(run, photos, tmp_path):
    r = run(photos, "-o", "/dev/null", "--resume", "-f", "jsonl")
    assert r.exit_code == 2 and "cannot resume into a device" in r.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    link = tmp_path / "zero.jsonl"
    link.symlink_to("/dev/zero")
    r = run(photos, "-o", link, "--resume")
    assert r.exit_code == 2 and "cannot resume into a device" in r.stderr
    assert link.is_symlink()


def test_writing_to_dev_null_still_works(run, photos):
    r = run(photos, "-o", "/dev/null", "-f", "jsonl")
    assert r.exit_code == 0 and r.stdout == ""


# file names with newlines ----------------------------------------------------------------------

def test_csv_resume_survives_a_newline_in_a_file_name(run, photos, tmp_path):
    shutil.copy(photos / "cat.jpg", photos / "two\nlines.jpg")
    out = tmp_path / "labels.csv"
    assert run(photos, "-o", out).exit_code == 0
    r = run(photos, "-o", out, "--resume")
    assert r.exit_code == 0 and "5 already classified" in r.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted({row["path"] for row in rows}) == sorted(str(p) for p in photos.iterdir())
    assert len(rows) == 5 * 5


# inputs recognised under any spelling ----------------------------------------------------------

def test_resume_matches_the_same_files_under_another_spelling(run, photos, tmp_path, monkeypatch):
    out = tmp_path / "labels.jsonl"
    monkeypatch.chdir(tmp_path)
    assert run("imgs", "-o", out).exit_code == 0
    r = run(str(photos.resolve()), "-o", out, "--resume")
    assert r.exit_code == 0 and "4 already classified" in r.stderr and "0 to go" in r.stderr
    assert len(jsonl(out.read_text())) == 4


# names that are not UTF-8 ----------------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_written_readably_and_losslessly(run, photos, tmp_path):
    raw = os.fsencode(str(photos)) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write((photos / "cat.jpg").read_bytes())
    out = tmp_path / "labels.jsonl"
    assert run(photos, "-o", out).exit_code == 0
    text = out.read_bytes().decode("utf-8")  # valid UTF-8
    (rec,) = [r for r in jsonl(text) if "caf" in r["path"]]
    assert rec["path"] == str(photos) + "/caf\\xe9.jpg"
    assert base64.b64decode(rec["path_base64"]) == raw
    r = run(photos, "-o", out, "--resume")
    assert r.exit_code == 0 and "5 already classified" in r.stderr
    csv_out = tmp_path / "labels.csv"
    assert run(photos, "-o", csv_out).exit_code == 0
    assert "caf\\xe9.jpg" in csv_out.read_bytes().decode("utf-8")
    r = run(photos, "-o", csv_out, "--resume")
    assert r.exit_code == 0 and "5 already classified" in r.stderr


def test_resume_reads_an_older_file_with_raw_bytes_without_dying(run, photos, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_bytes(b'{"path": "caf\xe9.jpg", "predictions": []}\n')
    r = run(photos, "-o", out, "--resume")
    assert r.exit_code == 0 and "0 already classified" in r.stderr


# one writer at a time; -k and hard links kept --------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_with_another_k_is_refused(fmt, run, photos, tmp_path):
    out = tmp_path / f"labels.{fmt}"
    assert run(photos / "cat.jpg", "-o", out).exit_code == 0
    before = out.read_bytes()
    r = run(photos, "-o", out, "--resume", "-k", "3")
    assert r.exit_code == 2 and "holds 5 label(s) per image; this run gives 3" in r.stderr
    assert out.read_bytes() == before


def test_resume_keeps_hard_links_to_the_output(run, photos, tmp_path):
    out, link = tmp_path / "labels.jsonl", tmp_path / "also.jsonl"
    (photos / "late.jpg").write_bytes(b"not yet")
    assert run(photos, "-o", out).exit_code == 1  # an error record, dropped on resume: a rewrite
    os.link(out, link)
    shutil.copy(photos / "cat.jpg", photos / "late.jpg")
    r = run(photos, "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    assert os.stat(out).st_ino == os.stat(link).st_ino and os.stat(out).st_nlink == 2
    recs = jsonl(link.read_text())
    assert sorted(os.path.basename(x["path"]) for x in recs) == sorted(p.name for p in photos.iterdir())
    assert not [x for x in recs if "error" in x]
    assert sorted(os.listdir(tmp_path)) == ["also.jsonl", "imgs", "labels.jsonl"]  # no backup left


def test_a_second_writer_to_the_same_output_fails_clearly(run, photos, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text('{"path": "x.jpg", "predictions": []}\n')
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(out)!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"]):
            r = run(photos, "-o", out, *extra)
            assert r.exit_code == 2 and "another process is writing to this file" in r.stderr
        assert out.read_text() == '{"path": "x.jpg", "predictions": []}\n'
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_held_while_writing(run, photos, tmp_path, monkeypatch):
    out = tmp_path / "labels.jsonl"
    seen = []
    from xception_cli.output import records as output

    real = output.JsonlWriter.write

    def write(self, records):
        fd = os.open(out, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("locked")
        finally:
            os.close(fd)
        return real(self, records)

    monkeypatch.setattr(output.JsonlWriter, "write", write)
    assert run(photos, "-o", out).exit_code == 0
    assert seen and set(seen) == {"locked"}


# weights refused in one line -------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_weights_with_nan_or_inf_are_refused(run, photos, tmp_path, weights_file, bad):
    broken = tmp_path / "broken.h5"
    shutil.copy(weights_file, broken)
    with h5py.File(broken, "r+") as f:
        group = f["block5_sepconv2_bn"]
        name = group.attrs["weight_names"][1]
        name = name.decode() if isinstance(name, bytes) else name
        data = group[name][()]
        data[3] = bad
        group[name][...] = data
    r = CliRunner().invoke(cli, ["predict", str(photos), "--weights", str(broken), "-f", "jsonl"])
    assert r.exit_code == 2
    assert str(broken) in r.stderr and "block5_sepconv2_bn" in r.stderr
    assert ("NaN" if np.isnan(bad) else "infinite") in r.stderr
    assert r.stdout == ""


# weights of another network --------------------------------------------------------------------

def test_keras3_weights_of_another_network_one_whole_line(photos, tmp_path):
    code = (
        "import keras\n"
        "m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)])\n"
        f"m.save_weights({str(tmp_path / 'other.weights.h5')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
    r = subprocess.run([sys.executable, "-m", "xception_cli", "predict", str(photos / "cat.jpg"), "--weights",
                        str(tmp_path / "other.weights.h5")], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].endswith("the file holds 4 arrays in 2 layers, the model needs 236 in 81")


# missing inputs, stdin, interruptions, the closing line ----------------------------------------

def test_a_missing_input_keeps_its_place(run, photos, tmp_path):
    gone = tmp_path / "gone.jpg"
    r = run(photos / "cat.jpg", gone, photos / "rocket.jpg", "-f", "jsonl")
    assert r.exit_code == 1
    recs = jsonl(r.stdout)
    assert [x["path"] for x in recs] == [str(photos / "cat.jpg"), str(gone), str(photos / "rocket.jpg")]
    assert recs[1]["error"] == "no such file or directory"


def test_pipes_and_devices_in_a_folder_are_named_for_what_they_are(run, photos):
    os.mkfifo(photos / "pipe.jpg")
    r = run(photos, "-f", "jsonl")
    assert r.exit_code == 1
    (err,) = [x for x in jsonl(r.stdout) if "error" in x]
    assert err["error"] == "not a regular file (a named pipe)"
    r = run("/dev/null", photos / "cat.jpg", "-f", "jsonl")
    assert jsonl(r.stdout)[0]["error"] == "not a regular file (a character device)"


def test_paths_from_stdin(run, photos):
    listing = f"{photos / 'rocket.jpg'}\n\n{photos / 'cat.jpg'}\r\n"
    r = run("-", "-f", "jsonl", input=listing)
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in jsonl(r.stdout)] == [str(photos / "rocket.jpg"), str(photos / "cat.jpg")]
    r = run("-", "-f", "jsonl", input="")  # `find -newer ... | xception predict -`: nothing new, nothing to do
    assert r.exit_code == 0 and r.stderr == "no paths on stdin: nothing to do\n" and r.stdout == ""


def test_json_interrupted_before_any_output_is_still_valid_json(run, photos, monkeypatch, tmp_path):
    from xception_cli import classifier

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(classifier.Classifier, "load", interrupted)
    r = run(photos, "-f", "json")
    assert r.exit_code == 130
    assert json.loads(r.stdout) == []
    # an -o file is left exactly as it was
    out = tmp_path / "old.jsonl"
    out.write_text("earlier results\n")
    r = run(photos, "-o", out)
    assert r.exit_code == 130 and out.read_text() == "earlier results\n"
    r = run(photos, "-o", tmp_path / "new.jsonl")
    assert r.exit_code == 130 and not (tmp_path / "new.jsonl").exists()


def test_an_error_before_any_work_leaves_the_output_alone(photos, tmp_path):
    out = tmp_path / "old.csv"
    out.write_text("earlier results\n")
    r = CliRunner().invoke(cli, ["predict", str(photos), "-o", str(out), "--weights", str(tmp_path / "none.h5")])
    assert r.exit_code == 2 and "weights file not found" in r.stderr
    assert out.read_text() == "earlier results\n"


def test_closing_line_counts_the_loading_too(run, photos):
    r = run(photos, "-f", "jsonl")
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("classified 4, failed 0 in ")
    total = float(line.split(" in ")[1].split(" s ")[0])
    loading = float(line.split("(")[1].split(" s loading")[0])
    classifying = float(line.split("loading, ")[1].split(" s classifying")[0])
    assert total >= loading + classifying - 0.15 and loading > 0


def test_progress_bar_leaves_nothing_where_the_table_starts(photos, weights_file):
    """On a terminal (a pseudo-terminal here), the bar is erased before the table is drawn."""
    import pty

    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "xception_cli", "predict", str(photos),
                                    "--weights", str(weights_file)], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert "classifying" in screen
    head = screen[: screen.index("┏")]
    before_table = head[head.rindex("classifying"):]
    assert "\x1b[2K" in before_table  # the bar's line is erased before the table starts


@pytest.mark.parametrize("width", [80, 100, 110, 120])
def test_summary_never_cuts_a_number(width):
    from rich.console import Console

    from xception_cli.architecture import build_summary
    from xception_cli.cli.summary import render_tables

    s = build_summary(299)
    buf = io.StringIO()
    render_tables(s, False, None, Console(file=buf, width=width))
    render_tables(s, True, None, Console(file=buf, width=width))
    text = buf.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    assert f"{s.total_params:,}" in text and f"{s.macs:,}" in text
    for b in s.blocks:
        assert f"{b.params:,}" in text
    if width >= 120:
        assert "175,976,064" in text and "Left out" not in text


# weights as output, resume from elsewhere, full disk, closed stdout, Ctrl-C --------------------

def test_output_that_is_the_weights_file_is_refused(photos, tmp_path, weights_file):
    mine = tmp_path / "mine.h5"
    shutil.copy(weights_file, mine)
    before = mine.read_bytes()
    r = CliRunner().invoke(cli, ["predict", str(photos), "--weights", str(mine), "-o", str(mine)])
    assert r.exit_code == 2 and "is the weights file" in r.stderr
    assert mine.read_bytes() == before


def test_resume_from_another_working_folder(run, photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("imgs", "-o", "labels.jsonl").exit_code == 0  # relative paths, from tmp_path
    monkeypatch.chdir("/")
    r = run(str(photos), "-o", str(tmp_path / "labels.jsonl"), "--resume")
    assert r.exit_code == 0 and "4 already classified" in r.stderr
    assert len(jsonl((tmp_path / "labels.jsonl").read_text())) == 4


def test_resume_warns_when_nothing_matches(run, photos, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text('{"path": "elsewhere/a.jpg", "predictions": []}\n')
    r = run(photos, "-o", out, "--resume")
    assert r.exit_code == 0 and "none of the 1 records" in r.stderr


def test_csv_survives_a_carriage_return_in_a_file_name(run, photos, tmp_path):
    shutil.copy(photos / "cat.jpg", photos / "cr\rx.jpg")
    out = tmp_path / "labels.csv"
    assert run(photos, "-o", out, "-k", "1").exit_code == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in photos.iterdir())
    r = run(photos, "-o", out, "-k", "1", "--resume")
    assert r.exit_code == 0 and "5 already classified" in r.stderr


def test_a_full_disk_names_the_file_and_keeps_the_records(run, photos):
    r = run(photos, "-o", "/dev/full", "-f", "jsonl")
    assert r.exit_code == 2
    assert "Error: /dev/full: cannot write: no space left on device" in r.stderr


def test_closed_stdout_is_a_clear_error(photos, weights_file):
    cmd = f"{sys.executable} -m xception_cli predict {photos / 'cat.jpg'} --weights {weights_file} -f jsonl >&-"
    r = subprocess.run(["bash", "-c", cmd], capture_output=False, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 2 and "stdout is closed" in r.stderr


def test_ctrl_c_inside_an_extension_import_is_an_interrupt(run, photos, monkeypatch):
    from xception_cli import classifier

    def interrupted_import(self):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise ImportError("initialization failed") from e

    monkeypatch.setattr(classifier.Classifier, "load", interrupted_import)
    r = run(photos, "-f", "json")
    assert r.exit_code == 130 and json.loads(r.stdout) == []


def test_summary_ignores_the_runtime_variable(monkeypatch):
    monkeypatch.setenv("XCEPTION_RUNTIME", "bogus")
    r = CliRunner().invoke(cli, ["summary", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["total_params"] == 22_910_480


def test_openvino_makes_no_usage_reports(photos, weights_file):
    code = (
        "import sys\n"
        "from xception_cli.cli import main\n"
        f"sys.argv = ['xception', 'predict', {str(photos / 'cat.jpg')!r}, '--weights', {str(weights_file)!r},"
        " '-o', '/dev/null', '-f', 'jsonl']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('openvino' in sys.modules, sys.modules.get('openvino_telemetry', 'absent'), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stderr.strip().splitlines()[-1] == "True None"  # OpenVINO ran, its telemetry was never loaded
