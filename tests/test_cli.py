"""The predict command through Click: formats, exit codes, bad files, no TensorFlow for --help."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

COMMANDS = [[], ["predict"], ["summary"], ["benchmark"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "xception")
def test_help_never_imports_tensorflow(command):
    code = (
        "import sys\n"
        "from xception_cli.cli import cli\n"
        f"try:\n    cli.main({command + ['--help']!r}, prog_name='xception')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: xception" in out.stdout
    assert out.stdout.strip().endswith("LOADED []")


def test_importing_the_package_does_not_import_tensorflow():
    code = "import sys, xception_cli, xception_cli.cli; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_the_command_loads_keras_without_scikit_learn(tmp_path):
    """Keras imports scikit-learn (~0.7 s) whenever it is installed; the command skips it, the API doesn't."""
    pytest.importorskip("sklearn")
    code = (
        "import atexit, sys\n"
        "from xception_cli.cli import main\n"
        "atexit.register(lambda: print('KERAS', 'keras' in sys.modules, 'SKLEARN', 'sklearn' in sys.modules))\n"
        "sys.argv = ['xception', 'summary', '--compare', 'inception-v3', '-f', 'json']\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("KERAS True SKLEARN False")
    json.loads(out.stdout.rsplit("KERAS", 1)[0])  # the summary itself is whole
    api = ("import sys\nfrom xception_cli.runtimes.tensorflow import import_tensorflow_quietly\n"
           "import_tensorflow_quietly()\nprint('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", api], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True"  # a Python user's process keeps Keras's usual imports


def test_version():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("xception, version ")


@pytest.fixture
def run(weights_file):
    def invoke(*args):
        return CliRunner().invoke(cli, ["predict", *map(str, args), "--weights", str(weights_file)])

    return invoke


def test_formats_agree(run, image_dir, samples):
    outs = {fmt: run(image_dir, "-f", fmt) for fmt in ("json", "jsonl", "csv", "table")}
    for fmt, r in outs.items():
        assert r.exit_code == 0, (fmt, r.output)
    as_json = json.loads(outs["json"].stdout)
    as_jsonl = [json.loads(line) for line in outs["jsonl"].stdout.splitlines()]
    assert as_json == as_jsonl
    assert [r["path"] for r in as_json] == sorted(str(image_dir / p.name) for p in samples)
    rows = list(csv.DictReader(io.StringIO(outs["csv"].stdout)))
    assert list(rows[0]) == ["path", "rank", "index", "wnid", "label", "probability", "error", "file_id"]
    assert [r["file_id"] for r in rows] == [r["file_id"] for r in as_json for _ in r["predictions"]]
    flat = [(r["path"], p["rank"], p["index"], p["wnid"], p["label"], p["probability"])
            for r in as_json for p in r["predictions"]]
    assert [(r["path"], int(r["rank"]), int(r["index"]), r["wnid"], r["label"], float(r["probability"]))
            for r in rows] == flat
    table = outs["table"].stdout
    for record in as_json:
        top = record["predictions"][0]
        assert top["label"] in table and f"{top['probability']:.2%}" in table
    assert all(len(r["predictions"]) == 5 for r in as_json)
    probs = [p["probability"] for p in as_json[0]["predictions"]]
    assert probs == sorted(probs, reverse=True)


def test_top_k_and_output_file_format_from_extension(run, image_dir, tmp_path):
    out = tmp_path / "labels.csv"
    r = run(image_dir / "cat.jpg", "-k", "3", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    rows = list(csv.DictReader(out.open()))
    assert [int(x["rank"]) for x in rows] == [1, 2, 3]


def test_default_format_is_jsonl_when_piped(run, image_dir):
    r = run(image_dir / "cat.jpg")
    assert r.exit_code == 0
    (line,) = r.stdout.splitlines()
    assert json.loads(line)["path"].endswith("cat.jpg")


def test_corrupt_file_among_good_ones(run, image_dir):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    r = run(image_dir, "-f", "jsonl")
    assert r.exit_code == 1
    records = [json.loads(line) for line in r.stdout.splitlines()]
    errors = [x for x in records if "error" in x]
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.jpg")
    assert set(errors[0]) == {"path", "file_id", "error"}
    assert sum("predictions" in x for x in records) == len(records) - 1
    assert f"warning: {image_dir / 'broken.jpg'}: " in r.stderr
    assert "Traceback" not in r.output


def test_csv_error_row_leaves_prediction_fields_empty(run, tmp_path):
    (tmp_path / "bad.png").write_text("nope")
    r = run(tmp_path / "bad.png", "-f", "csv")
    assert r.exit_code == 1
    (row,) = list(csv.DictReader(io.StringIO(r.stdout)))
    assert row["path"].endswith("bad.png") and row["error"]
    assert [row[k] for k in ("rank", "index", "wnid", "label", "probability")] == [""] * 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict"], "Missing argument 'INPUTS...'"),
        (["predict", "x.jpg", "-k", "0"], "0 is not in the range 1<=x<=1000"),
        (["predict", "x.jpg", "-f", "xml"], "'xml' is not one of"),
        (["predict", "x.jpg", "--resize", "stretch"], "'stretch' is not one of"),
    ],
)
def test_usage_errors_exit_2(args, message):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and message in r.stderr


def test_no_inputs_exit_2(tmp_path, weights_file):
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "missing.jpg"), "--weights", str(weights_file)])
    assert r.exit_code == 2
    assert r.stderr.strip() == f"Error: {tmp_path / 'missing.jpg'}: no such file or directory"
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "empty"), "--weights", str(weights_file)])
    assert r.exit_code == 2
    assert "no images found in this folder" in r.stderr


def test_missing_file_among_good_ones_is_an_error_record(run, image_dir, tmp_path):
    r = run(image_dir / "cat.jpg", tmp_path / "gone.jpg", "-f", "jsonl")
    assert r.exit_code == 1
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert {x["path"]: "error" in x for x in records} == {str(tmp_path / "gone.jpg"): True,
                                                           str(image_dir / "cat.jpg"): False}


def test_glob_pattern(run, image_dir):
    r = run(str(image_dir / "c*.jpg"), "-f", "jsonl")
    assert r.exit_code == 0
    assert [json.loads(x)["path"] for x in r.stdout.splitlines()] == [
        str(image_dir / "cat.jpg"), str(image_dir / "coffee.jpg")]


def test_python_api_without_click(samples, weights_file):
    code = (
        "import sys\n"
        "from xception_cli import Classifier\n"
        f"records = Classifier(weights={str(weights_file)!r}).predict([{str(samples[0])!r}], top_k=2)\n"
        "print(records[0].predictions[0].label, len(records[0].predictions), 'click' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    label, n, click_loaded = out.stdout.split()
    assert n == "2" and click_loaded == "False" and label


def test_unwritable_output_fails_before_any_work(run, image_dir, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "out.jsonl"
    r = run(image_dir, "-o", target)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"Error: {target}: cannot write: folder {target.parent} does not exist"


@pytest.mark.parametrize("args, message", [
    (["predict", "x.jpg", "-k", "0"], "Error: Invalid value for '-k' / '--top-k': 0 is not in the range 1<=x<=1000."
                                      " (see 'xception predict -h')"),
    (["predict"], "Error: Missing argument 'INPUTS...'. (see 'xception predict -h')"),
    (["nope"], "Error: No such command 'nope'. (see 'xception -h')"),
])
def test_usage_errors_are_one_line(args, message):
    r = CliRunner().invoke(cli, args, prog_name="xception")
    assert r.exit_code == 2 and r.stderr.strip() == message


def test_no_command_shows_the_help():
    r = CliRunner().invoke(cli, [], prog_name="xception")
    assert r.exit_code == 0 and r.stdout.startswith("Usage: xception")


def test_table_output_to_a_file_is_refused(tmp_path, weights_file, samples):
    r = CliRunner().invoke(cli, ["predict", str(samples[0]), "-o", str(tmp_path / "x.txt"), "--weights",
                                 str(weights_file)])
    assert r.exit_code == 2 and "the table is drawn on the terminal" in r.stderr
    assert not (tmp_path / "x.txt").exists() and r.stdout == ""


def test_a_narrow_terminal_keeps_every_column(monkeypatch):
    """Long paths fold over lines; the probabilities always show (they were cut at 80 columns)."""
    from xception_cli.cli.predict import RichUI
    from xception_cli.labels import Prediction
    from xception_cli.pipeline import Record

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    path = "/home/someone/Pictures/holidays/2026/a-rather-long-folder-name/cat.jpg"
    preds = [Prediction(r, 281 + r, f"n0212304{r}", f"label_{r}", 0.5 / r) for r in range(1, 6)]
    out = Terminal()
    RichUI(show_progress=False).table([Record(path, predictions=preds)], out)
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())  # bold headers: escape codes, not columns
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Probability" in text and "50.00%" in text and "10.00%" in text


def test_weights_help_says_what_each_command_accepts():
    def weights_help(command):
        text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
        return " ".join(text.split("--weights imagenet|PATH|none", 1)[1].split("--", 1)[0].split())

    assert "OpenVINO .xml" in weights_help("predict") and "OpenVINO .xml" in weights_help("benchmark")
    assert "an exported IR ends with the classifier" in weights_help("embed")
    for command in ("export", "train"):
        assert "official-layout .h5" in weights_help(command) and ".keras" not in weights_help(command)


def _blas_threads_cpu(env_extra: dict, import_cli: bool) -> tuple[str, int]:
    """In a fresh process: import the CLI package (or NumPy alone), wait 0.3 s (OpenBLAS spins for
    about 0.1 s from its load), and sum the CPU time of every thread but the main one, in clock
    ticks (10 ms)."""
    code = (
        "import os, sys, time\n"
        + ("import xception_cli.cli\n" if import_cli else "")
        + "import numpy\n"
        "time.sleep(0.3)\n"
        "me = os.getpid()\n"
        "ticks = 0\n"
        "for t in os.listdir('/proc/self/task'):\n"
        "    if int(t) != me:\n"
        "        fields = open(f'/proc/self/task/{t}/stat').read().rsplit(')', 1)[1].split()\n"
        "        ticks += int(fields[11]) + int(fields[12])  # utime + stime\n"
        "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), ticks)\n"
    )
    unset = ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in unset} | env_extra
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    value, ticks = out.stdout.split()
    return value, int(ticks)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2,
                    reason="needs Linux's /proc and OpenBLAS threads (2+ cores)")
def test_the_command_lets_numpys_idle_blas_threads_sleep():
    """OpenBLAS spins ~0.1 s of a core per thread after NumPy loads; the CLI tells it not to, before
    NumPy loads (a user's own setting is kept)."""
    assert _blas_threads_cpu({"OPENBLAS_THREAD_TIMEOUT": "7"}, import_cli=True)[0] == "7"
    alone = _blas_threads_cpu({}, import_cli=False)[1]
    if alone < 3:  # the spin counts wall-clock cycles: a machine busy enough leaves it little CPU
        pytest.skip(f"NumPy's BLAS threads took only {alone} ticks on their own: too busy a machine to compare")
    value, ticks = _blas_threads_cpu({}, import_cli=True)
    assert value == "4"
    assert ticks <= 1 < alone, (ticks, alone)  # asleep at once, where NumPy alone spins
