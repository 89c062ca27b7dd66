"""Every table fits the terminal it is printed on (80 columns up): no line wider, no number cut,
no column squeezed to nothing (each shown, or named in the caption as left out), paths folded at
their separators, one number format per column. The views are fed constructed data: no model runs."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest
from rich.cells import cell_len
from rich.console import Console

from xception_cli.cli.render import fold_path, table
from xception_cli.labels import Prediction
from xception_cli.pipeline import Record

WIDTHS = [80, 100, 200]
DEEP = "/home/someone/Pictures/holidays/2026/a-rather-long-folder-name/IMG_20260712_183455_HDR.jpg"
DEEPER = "/mnt/archive/photos/[red]not-markup/2019/summer trip/day 3/DSC_0042 (edited).jpeg"


@dataclass
class Drawn:
    """A drawn table read back: headers, each column's cell lines (top to bottom), the caption."""

    text: str
    headers: list[str]
    widths: list[int]
    columns: dict[str, list[str]]
    caption: str

    def left_out(self) -> list[str]:
        m = re.search(r"Left out at this width: (.*?) \(widen the terminal", self.caption)
        return m.group(1).split(", ") if m else []

    def header_of(self, name: str) -> str | None:
        """The header that shows column ``name`` (itself or its short form), None when left out."""
        if name in self.headers:
            return name
        short = [h for h in self.headers if f"{h} = {name}" in self.caption]
        return short[0] if short else None

    def cells(self, name: str) -> list[str]:
        """The non-empty cell lines of column ``name``."""
        return [c for c in self.columns[self.header_of(name)] if c]


def draw(renderable, width: int) -> Drawn:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(renderable)
    return read_back(buf.getvalue())


def read_back(text: str) -> Drawn:
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    head_end = next(i for i in range(top, bottom) if lines[i].startswith("┡"))
    edges = [j for j, ch in enumerate(lines[top]) if ch in "┏┳┓"]
    spans = list(zip(edges, edges[1:]))

    def cells(line):
        return [line[a + 1:b].strip() for a, b in spans]

    head_rows = [cells(line) for line in lines[top + 1:head_end]]
    headers = [" ".join(" ".join(r[k] for r in head_rows).split()) for k in range(len(spans))]
    body = [cells(line) for line in lines[head_end + 1:bottom] if not line.startswith(("├", "┡"))]
    return Drawn(text, headers, [b - a - 3 for a, b in spans], {h: [r[k] for r in body] for k, h in enumerate(headers)},
                 " ".join(" ".join(lines[bottom + 1:]).split()))


def check(d: Drawn, width: int, names: list[str], numbers: dict[str, list[str]] = None,
          paths: dict[str, list[str]] = None) -> None:
    """The rules every table keeps at ``width``."""
    assert max(cell_len(line) for line in d.text.splitlines()) <= width, d.text
    assert "…" not in d.text
    assert all(d.headers) and min(d.widths) >= 1, d.headers  # no column squeezed to nothing
    assert len(d.headers) == len(set(d.headers))
    for name in names:  # each column shown (whole or abbreviated, said so) or named as left out
        assert (d.header_of(name) is not None) != (name in d.left_out()), (name, d.headers, d.caption)
    assert set(d.headers) <= {d.header_of(n) for n in names}
    for name, values in (numbers or {}).items():  # every number whole, one to a line, in order
        if d.header_of(name) is not None:
            assert d.cells(name) == [v for v in values if v != ""], (name, d.text)
    for name, values in (paths or {}).items():  # nothing lost; folded after a separator
        if d.header_of(name) is None:
            continue
        lines, width_of = d.cells(name), d.widths[d.headers.index(d.header_of(name))]
        assert "".join(lines) == "".join(values), d.text
        for line in lines:  # a line ends at a separator, or a path's end, or is full (a name too long for it)
            assert line.endswith("/") or any(v.endswith(line) for v in values) or cell_len(line) == width_of, line


# predict ------------------------------------------------------------------------------------------

def predict_records():
    probs = [0.8731, 0.1203, 0.0006, 6.64e-05, 3.1e-07]
    labels = ["tabby", "tiger_cat", "Egyptian_cat", "German_short-haired_pointer", "window_screen"]
    return [
        Record(DEEP, [Prediction(r, 280 + r, f"n0212304{r}", labels[r - 1], p) for r, p in enumerate(probs, 1)]),
        Record(DEEPER, [Prediction(1, 0, "n01440764", "tench", 0.99999), Prediction(2, 999, "n15075141",
                                                                                   "toilet_tissue", 1e-05)]),
        Record("photos/b.jpg", error="cannot identify image file"),
    ]


def test_percent_is_one_format():
    from xception_cli.cli.predict import percent

    assert [percent(p) for p in (0.8731, 0.0006, 0.0001, 6.64e-05, 0.0, 0.99999, 1.0)] == [
        "87.31%", "0.06%", "0.01%", "<0.01%", "<0.01%", ">99.99%", "100.00%"]


@pytest.mark.parametrize("width", WIDTHS)
def test_predict_table_fits(width):
    from xception_cli.cli.predict import predictions_table

    records = predict_records()
    d = draw(predictions_table(records), width)
    preds = [(r, p) for r in records for p in (r.predictions or [None])]
    check(d, width, ["Image", "#", "Label", "Class", "WordNet ID", "Probability"],
          numbers={"#": [str(p.rank) if p else "" for _, p in preds],
                   "Class": [str(p.index) if p else "" for _, p in preds]},
          paths={"Image": [r.path for r in records]})
    probs = d.cells("Probability")
    assert probs[:3] == ["87.31%", "12.03%", "0.06%"] and "<0.01%" in probs and ">99.99%" in probs
    assert all(re.fullmatch(r"<0\.01%|>99\.99%|\d{1,3}\.\d\d%", p) for p in probs), probs
    assert d.cells("Label")[:2] == ["tabby", "tiger_cat"]  # names whole: none of them is long
    assert "German_short-haired_pointer" in d.cells("Label")
    assert "[red]not-markup/" in d.text  # a file name is data, not markup
    if width >= 100:
        assert d.left_out() == [] and d.header_of("Probability") == "Probability"
    if width == 200:
        assert d.cells("Image")[0] == DEEP  # room: the path on one line


@pytest.mark.parametrize("width", [80, 100])
def test_the_predict_table_on_a_terminal_takes_its_width_from_columns(monkeypatch, width):
    """Through RichUI, on a stream that says it is a terminal: COLUMNS decides the width."""
    from xception_cli.cli.predict import RichUI

    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = type("Terminal", (io.StringIO,), {"isatty": lambda self: True})()
    RichUI(show_progress=False).table(predict_records(), terminal)
    d = read_back(re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", terminal.getvalue()))  # bold headers: escapes, not cells
    check(d, width, ["Image", "#", "Label", "Class", "WordNet ID", "Probability"],
          paths={"Image": [r.path for r in predict_records()]})
    assert max(cell_len(line) for line in d.text.splitlines()) > width - 5  # the room is used


# benchmark -----------------------------------------------------------------------------------------

def bench_result(compare: bool):
    system = {"python": "3.11.7", "cpu": "AMD EPYC 9R14 96-Core Processor", "cores": 2, "avx2": True,
              "avx512f": True, "avx512_vnni": True, "avx512_bf16": True, "amx_bf16": False, "precision": "float32",
              "runtime": "openvino", "runtime_version": "2026.4.1", "precision_run": "float32"}

    def record(bs, ips, asked="float32", ran="float32", weights=None):
        r = {"batch_size": bs, "precision": asked, "mode": "inference", "iterations": 10, "images_per_second": ips,
             "latency_ms": {"p50": 1000 * bs / ips, "p90": 1030 * bs / ips, "p99": 1070 * bs / ips},
             "ms_per_image": 1000 / ips, "gmacs_per_second": 8.357 * ips, "peak_rss_mb": 2013.4,
             "runtime": "openvino", "runtime_version": "2026.4.1", "precision_run": ran, "system": system}
        return r | ({"weights": weights} if weights else {})

    results = [record(1, 9.87), record(8, 11.234), record(32, 11.5), record(8, 10.9, "bfloat16", "float32")]
    out = {"system": system, "cold_start_s": 0.464, "first_call_s": 0.828,
           "model": {"name": "xception", "params": 22910480, "macs_per_image": 8357403496,
                     "input_shape": [299, 299, 3]},
           "cold_start_breakdown_s": {"read_weights_s": 0.144, "build_s": 0.14, "compile_s": 0.092}}
    if compare:
        int8 = "bench-out/quantized/xception-int8.xml"
        results = results[:3] + [record(1, 30.1, ran="int8", weights=int8), record(8, 40.2, ran="int8", weights=int8),
                                 record(32, 42.0, ran="int8", weights=int8)]
        out["weights_comparison"] = {
            "weights": "bench-out/xception.xml", "compare_weights": int8,
            "precision_run": {"weights": "float32", "compare_weights": "int8"},
            "speedup_compare_vs_weights": {"1": 3.05, "8": 3.58, "32": 3.65}, "top1_agreement": 0.984,
            "max_abs_probability_difference": 0.0123, "agreement_inputs": "64 images from --images"}
    return out | {"results": results}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("compare", [False, True])
def test_benchmark_table_fits(width, compare):
    from xception_cli.cli.benchmark import render_tables

    result = bench_result(compare)
    buf = io.StringIO()
    render_tables(result, Console(file=buf, width=width, color_system=None, force_terminal=False))
    d = read_back(buf.getvalue())
    rs = result["results"]
    names = ["Precision", "Batch", "Iters", "Images/s", "p50 ms", "p90 ms", "p99 ms", "ms/image", "GMAC/s",
             "Peak RSS MB"] + (["Weights"] if compare else [])
    check(d, width, names, numbers={
        "Batch": [str(r["batch_size"]) for r in rs], "Iters": [str(r["iterations"]) for r in rs],
        "Images/s": [f"{r['images_per_second']:.2f}" for r in rs],
        **{f"{q} ms": [f"{r['latency_ms'][q]:.1f}" for r in rs] for q in ("p50", "p90", "p99")},
        "ms/image": [f"{r['ms_per_image']:.1f}" for r in rs], "GMAC/s": [f"{r['gmacs_per_second']:.1f}" for r in rs],
        "Peak RSS MB": ["2013"] * len(rs)},
        paths={"Weights": ["bench-out/xception.xml"] * 3 + [r["weights"] for r in rs[3:]]} if compare else None)
    assert "inference on openvino" in d.text  # the runtime and mode every row shares, said once
    precision = " ".join(d.cells("Precision"))
    assert "ran" not in precision
    if compare:
        assert precision.split() == ["float32"] * 3 + ["int8"] * 3
    else:
        assert "float32 (bfloat16 asked)" in " ".join(precision.split())
    if "GMAC/s" in d.headers:
        assert "GMAC/s from the multiply-add count" in d.caption
    else:  # no note on a column that is not shown
        assert "multiply-add" not in d.caption
    assert ("or use -f json" in d.caption) == bool(d.left_out())
    if width == 200:
        assert d.left_out() == [] and set(names) <= set(d.headers)


def test_benchmark_precision_label():
    from xception_cli.benchmark import precision_label

    assert precision_label({"precision": "float32", "precision_run": "int8"}) == "int8"
    assert precision_label({"precision": "bfloat16", "precision_run": "float32"}) == "float32 (bfloat16 asked)"
    assert precision_label({"precision": "bfloat16", "precision_run": "bfloat16"}) == "bfloat16"
    assert precision_label({"precision": "float32"}) == "float32"  # training, Inception-v3: Keras as asked


# summary -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_summary_tables_fit(width):
    from xception_cli.architecture import build_summary
    from xception_cli.cli.summary import human, render_tables

    s = build_summary(299)
    buf = io.StringIO()
    render_tables(s, False, None, Console(file=buf, width=width, color_system=None, force_terminal=False))
    d = read_back(buf.getvalue())
    check(d, width, ["Block", "Flow", "Output", "Params", "MACs", "Sep. convs", "Regular-conv params",
                     "Regular-conv MACs", "Saving"],
          numbers={"Params": [f"{b.params:,}" for b in s.blocks] + [f"{s.top['params']:,}", f"{s.total_params:,}"],
                   "MACs": [human(b.macs) for b in s.blocks] + [human(s.top["macs"]), human(s.macs)]})
    buf = io.StringIO()
    render_tables(s, True, None, Console(file=buf, width=width, color_system=None, force_terminal=False))
    d = read_back(buf.getvalue())
    check(d, width, ["Block", "Layer", "Type", "Output", "Params", "MACs"],
          numbers={"Params": [f"{x.params:,}" for x in s.layers] + [f"{s.total_params:,}"],
                   "MACs": [f"{x.macs:,}" for x in s.layers] + [f"{s.macs:,}"]})
    assert d.cells("Layer")[:2] == ["input_image", "block1_conv1"]


# similar -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_similar_tables_fit(width):
    from xception_cli.cli.similar import neighbours_table, pairs_table

    pairs = [{"a": DEEP, "b": DEEPER, "similarity": 0.991234}, {"a": "a.jpg", "b": "photos/b.jpg", "similarity": 0.95}]
    d = draw(pairs_table(pairs), width)
    check(d, width, ["Image", "Duplicate of", "Similarity"], numbers={"Similarity": ["0.9912", "0.9500"]},
          paths={"Image": [p["a"] for p in pairs], "Duplicate of": [p["b"] for p in pairs]})
    queries = [{"path": DEEPER, "neighbors": [{"rank": 1, "path": DEEP, "similarity": 0.87654},
                                              {"rank": 2, "path": "cat.jpg", "similarity": -0.01}]},
               {"path": "q.png", "neighbors": [{"rank": 1, "path": DEEPER, "similarity": 1.0}]}]
    d = draw(neighbours_table(queries), width)
    check(d, width, ["Query", "#", "Most similar", "Similarity"],
          numbers={"#": ["1", "2", "1"], "Similarity": ["0.8765", "-0.0100", "1.0000"]},
          paths={"Query": [DEEPER, "", "q.png"], "Most similar": [DEEP, "cat.jpg", DEEPER]})


# train ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_train_report_table_fits(width):
    from xception_cli.cli.train import report_table

    classes = ["circles", "red", "stripes", "a rather long class name", "Zebra_crossing_at_night_2026"]
    report = {"classes": classes, "options": {"augment": True},
              "class_counts": {"train": {c: 40 for c in classes}, "val": {c: 10 for c in classes}},
              "confusion_matrix": [[9, 1, 0, 0, 0], [0, 10, 0, 0, 0], [2, 0, 7, 1, 0], [0, 0, 0, 10, 0],
                                   [0, 3, 0, 0, 7]]}
    d = draw(report_table(report), width)
    check(d, width, ["Class", "Trained on", "Validated", "Right", "Accuracy", "Mistaken for"],
          numbers={"Trained on": ["10"] * 5, "Validated": ["10"] * 5, "Right": ["9", "10", "7", "10", "7"],
                   "Accuracy": ["90.0%", "100.0%", "70.0%", "100.0%", "70.0%"]})
    assert "Zebra_crossing_at_night_2026" in d.cells("Class")  # a class name whole, not cut
    assert "circles (2)," in " ".join(d.cells("Mistaken for"))


# the layout itself ---------------------------------------------------------------------------------

def test_paths_fold_after_separators_and_only_a_long_name_inside():
    assert fold_path("a/bb/ccc.jpg", 12) == ["a/bb/ccc.jpg"]
    assert fold_path("a/bb/ccc.jpg", 8) == ["a/bb/", "ccc.jpg"]
    assert fold_path("a/bb/ccc.jpg", 5) == ["a/bb/", "ccc.j", "pg"]  # a name longer than a line: cut inside
    assert fold_path("x/averyveryverylongname.jpg", 10) == ["x/", "averyveryv", "erylongnam", "e.jpg"]


def test_columns_go_in_the_order_given_and_come_back_when_they_fit():
    rows = [["a", "1" * 20, "2" * 30, "3" * 10]]
    t = table(["Name", ("Wide", "number"), ("Wider", "number"), ("Narrow", "number")], rows, drop=(3, 2, 1),
              more="-f json")
    assert draw(t, 200).left_out() == [] and draw(t, 80).left_out() == []
    d = draw(t, 60)  # Narrow goes first, but is back once Wider (which had to go too) is gone
    assert d.left_out() == ["Wider"] and d.cells("Narrow") == ["3" * 10]
    assert "Left out at this width: Wider (widen the terminal, or use -f json)." in d.caption
    d = draw(t, 40)
    assert d.left_out() == ["Narrow", "Wider"] and d.cells("Wide") == ["1" * 20]
