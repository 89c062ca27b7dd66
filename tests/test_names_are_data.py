"""A file's name (and a trained model's class name) is data wherever it is shown: never Rich
markup in a table, never a control sequence on the terminal, and — with ``--csv-safe`` — never a
formula in a spreadsheet. Each test is what a user with hostile file names would run."""

import csv
import io
import json
import shutil

import h5py
import pytest
from click.testing import CliRunner

from xception_cli.cli import cli

HOSTILE = "x\x1b]0;PWNED\x07\x1b[2J.jpg"  # sets the window title, then clears the screen
MARKUP = ["[conceal]hidden.jpg", "[link=https:/evil.example]click.jpg", "dir[/b]y.jpg"]
FORMULAS = ["=1+2.jpg", "+cmd.jpg", "-2+3.jpg", "@SUM(A1).jpg"]


@pytest.fixture
def run(weights_file):
    def invoke(*args, input=None, weights=weights_file):
        return CliRunner().invoke(cli, ["predict", "--weights", str(weights), *map(str, args)], input=input)

    return invoke


def no_control(text: str) -> None:
    """Nothing that drives a terminal: no ESC (0x1b), no BEL (0x07), as bytes written."""
    raw = text.encode("utf-8", "surrogateescape")
    assert b"\x1b" not in raw and b"\x07" not in raw, raw


def copy_as(src, folder, names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / name)


# tables: cells are plain text, never markup ----------------------------------------------------

def test_table_shows_names_as_typed_and_markup_never_breaks_the_run(run, samples, tmp_path, monkeypatch):
    copy_as(samples[0], tmp_path, MARKUP)
    monkeypatch.chdir(tmp_path)
    r = run(*MARKUP, "-f", "table", "-k", "1")
    assert r.exit_code == 0, r.output  # not "unexpected MarkupError" after the whole run
    for name in MARKUP:
        assert name in r.stdout  # as typed: not concealed, not a link, not a closing tag
    assert "\x1b]8;" not in r.stdout  # no terminal hyperlink


def test_trained_class_names_are_text_in_the_table_and_exact_in_csv(run, samples, weights_file, tmp_path,
                                                                    monkeypatch):
    weights = tmp_path / "trained.h5"
    shutil.copy(weights_file, weights)
    names = [f"=HYPERLINK(\"http://evil.example\")[conceal]c{i}\x1b]0;PWNED\x07" for i in range(1000)]
    with h5py.File(weights, "a") as f:
        f.attrs["xception_class_names"] = json.dumps(names)
    copy_as(samples[0], tmp_path, ["a.jpg"])
    monkeypatch.chdir(tmp_path)
    r = run("a.jpg", "-f", "table", "-k", "2", weights=weights)
    assert r.exit_code == 0, r.output
    assert '=HYPERLINK("http://evil.example")[conceal]c' in r.stdout and "\\x1b]0;PWNED\\x07" in r.stdout
    no_control(r.stdout)
    r = run("a.jpg", "-f", "csv", "-k", "2", weights=weights)  # by default the CSV is the data, exact
    labels = [row["label"] for row in csv.DictReader(io.StringIO(r.stdout))]
    assert len(labels) == 2 and all(label in names for label in labels)
    r = run("a.jpg", "-f", "csv", "-k", "2", "--csv-safe", weights=weights)
    labels = [row["label"] for row in csv.DictReader(io.StringIO(r.stdout))]
    assert len(labels) == 2 and all(label[0] == "'" and label[1:] in names for label in labels)


# control characters never reach the terminal ---------------------------------------------------

def test_a_hostile_name_is_escaped_in_the_table(run, samples, tmp_path):
    copy_as(samples[0], tmp_path, [HOSTILE])
    (tmp_path / ("broken" + HOSTILE)).write_bytes(b"not an image")
    r = run(tmp_path / HOSTILE, tmp_path / ("broken" + HOSTILE), "-f", "table", "-k", "1")
    assert r.exit_code == 1, r.output  # the broken one failed, the other was classified
    no_control(r.stdout)
    no_control(r.stderr)
    assert "x\\x1b]0;PWNED\\x07\\x1b[2J.jpg" in r.stdout  # shown, escaped as one-line messages are


def test_a_broken_image_with_a_hostile_name_warns_without_control_characters(run, tmp_path):
    (tmp_path / HOSTILE).write_bytes(b"GIF89a and then nothing")
    r = run(tmp_path / HOSTILE, "-f", "jsonl")
    assert r.exit_code == 1
    no_control(r.stderr)
    assert "x\\x1b]0;PWNED\\x07\\x1b[2J.jpg" in r.stderr
    assert json.loads(r.stdout)["path"].endswith(HOSTILE)  # the record keeps the exact name


def test_richui_table_and_warnings_write_no_control_characters():
    from rich.console import Console

    from xception_cli.cli.predict import RichUI
    from xception_cli.labels import Prediction
    from xception_cli.pipeline import Record

    records = [Record(HOSTILE, [Prediction(1, 3, None, "[red]" + HOSTILE, 0.5)]),
               Record("[bold]" + HOSTILE, error=f"cannot read {HOSTILE}")]
    out = io.StringIO()
    RichUI(show_progress=False).table(records, out)
    no_control(out.getvalue())
    assert "[red]x\\x1b" in out.getvalue() and "[bold]x\\x1b" in out.getvalue()

    ui = RichUI(show_progress=True)
    err = io.StringIO()
    ui._console = Console(file=err, width=500)  # as while the progress bar runs
    ui.warn(f"{HOSTILE}: cannot identify image file [/b]\nwarning: faked line")
    ui._console = None
    no_control(err.getvalue())
    assert err.getvalue().count("\n") == 1 and "[/b]\\nwarning: faked line" in err.getvalue()


def test_fatal_and_usage_errors_escape_a_name(run, tmp_path):
    r = run(tmp_path / HOSTILE, "-o", tmp_path / ("out" + HOSTILE))  # no such input; an unknown extension
    assert r.exit_code == 2
    no_control(r.stderr)
    r = CliRunner().invoke(cli, ["similar", "--embeddings", str(tmp_path / (HOSTILE + ".npz")), "--duplicates"])
    assert r.exit_code == 2 and "cannot read" in r.stderr
    no_control(r.stderr)


# CSV: exact by default, formula-safe on request ------------------------------------------------

def test_csv_is_exact_by_default_and_csv_safe_writes_formulas_as_text_that_resume_still_matches(
        run, samples, tmp_path, monkeypatch):
    copy_as(samples[0], tmp_path, [*FORMULAS, "plain.jpg", "=late.jpg"])
    monkeypatch.chdir(tmp_path)
    r = run("-f", "csv", "-k", "1", "--", *FORMULAS)  # "--": "-2+3.jpg" is a name, not an option
    assert r.exit_code == 0, r.output
    assert sorted(row["path"] for row in csv.DictReader(io.StringIO(r.stdout))) == sorted(FORMULAS)

    r = run("-o", "out.csv", "-k", "2", "--csv-safe", "--", *FORMULAS, "plain.jpg")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
    paths = [row["path"] for row in rows if row["rank"] == "1"]
    assert sorted(paths) == sorted(["'" + n for n in FORMULAS] + ["plain.jpg"])
    assert all(row["probability"][0].isdigit() for row in rows)  # numbers stay numbers

    # --resume recognises every record (by file_id) and classifies only the new file
    r = run("-o", "out.csv", "-k", "2", "--csv-safe", "--resume", "--", *FORMULAS, "plain.jpg", "=late.jpg")
    assert r.exit_code == 0, r.output
    assert "5 already classified" in r.stderr and "1 to go" in r.stderr
    rows = list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
    paths = [row["path"] for row in rows if row["rank"] == "1"]
    assert sorted(paths) == sorted(["'" + n for n in [*FORMULAS, "=late.jpg"]] + ["plain.jpg"])
    assert len(rows) == 12

    # and a resume without the option matches them all the same
    r = run("-o", "out.csv", "-k", "2", "--resume", "--", *FORMULAS, "plain.jpg", "=late.jpg")
    assert r.exit_code == 0 and "6 already classified" in r.stderr, r.output


def test_csv_safe_goes_with_csv_only(run, samples, tmp_path):
    r = run(samples[0], "-f", "jsonl", "--csv-safe")
    assert r.exit_code == 2 and "--csv-safe goes with CSV output" in r.stderr


def test_invisible_characters_that_reorder_a_name_are_shown_escaped(tmp_path, weights_file):
    bad = tmp_path / "bidi\u202egpj.exe.jpg"
    bad.write_bytes(b"not an image")
    r = CliRunner().invoke(cli, ["predict", str(bad), str(bad), "-f", "jsonl", "--weights", str(weights_file)])
    assert "\u202e" not in r.stderr and "bidi\\u202egpj.exe.jpg" in r.stderr
    assert json.loads(r.stdout.splitlines()[0])["path"] == str(bad)  # the record keeps the exact name
