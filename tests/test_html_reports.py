"""Report pages (``-o report.html``, ``similar --duplicates -o dups.html``, train's
``MODEL.h5.report.html``, explain records), opened in a real browser (headless Chromium, see
``tests/browser.py``): one card per photo, error cards, filter and sort by the URL fragment, names
and labels shown as text, a screenshot that is not blank, and no request leaving the page.

``XCEPTION_DOCS_SCREENSHOTS=1`` also saves the screenshots into docs/img/ (the README's).
"""

import base64
import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from browser import SKIP_REASON, Browser, find, parse, requested
from click.testing import CliRunner
from PIL import Image, ImageStat

from xception_cli.cli import cli
from xception_cli.errors import OutputError
from xception_cli.output.formats import choose_format
from xception_cli.output.html import document, groups_of, item_of, json_block, predictions_page, write_page

HOSTILE = "<img src=x onerror=alert(1)>"  # a file name, a folder (class) name
SCRIPT_END = "</script><script>alert(2)</script>"  # a class name
DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"


@pytest.fixture(scope="module")
def browser():
    exe = find()
    if exe is None:
        pytest.skip(SKIP_REASON)
    return Browser(exe)


def run(*args):
    r = CliRunner().invoke(cli, [*map(str, args)])
    return r


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, samples, weights_file):
    """predict -o report.html (and the same run as JSON Lines) on the samples, a copy named like
    markup, and a file that is no image."""
    root = tmp_path_factory.mktemp("report")
    folder = root / "photos"
    folder.mkdir()
    for p in samples:
        shutil.copy(p, folder / p.name)
    shutil.copy(samples[1], folder / f"{HOSTILE}.jpg")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    page, lines = root / "report.html", root / "report.jsonl"
    for out in (page, lines):
        r = run("predict", folder, "-o", out, "--weights", weights_file, "-k", "3")
        assert r.exit_code == 1, r.output  # one photo failed
    records = {Path(d["path"]).name: d for d in map(json.loads, lines.read_text().splitlines())}
    return page, records


def shown_cards(tree):
    return [c for c in tree.find("div", id="grid").children if not isinstance(c, str) and "hidden" not in c.attrs]


def card_name(card):
    return card.find(cls="name").text()


def save_for_docs(png: Path, name: str) -> None:
    if os.environ.get("XCEPTION_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, DOCS / name)


def assert_not_blank(png: Path) -> None:
    with Image.open(png) as im:
        spread = ImageStat.Stat(im.convert("L")).stddev[0]
    assert spread > 20, f"{png.name}: a blank screenshot (pixel stddev {spread:.1f})"


# -- the page of a predict run -----------------------------------------------------------------------

def test_a_card_per_photo_labels_and_error_cards_loading_nothing(predicted, browser, tmp_path):
    page, records = predicted
    tree = parse(browser.dom(page, netlog=tmp_path / "net.json"))
    assert requested(tmp_path / "net.json") == []  # nothing asked of any network
    assert browser.console == []  # no script error, nothing the policy had to block (its own style and script)
    cards = shown_cards(tree)
    assert sorted(map(card_name, cards)) == sorted(records) and len(cards) == 6
    for card in cards:
        record = records[card_name(card)]
        if "error" in record:
            assert "error" in card.classes and card.find(cls="err").text() == record["error"]
            assert card.find("img") is None
            continue
        labels = [li.find(cls="label").text() for li in card.find("ol").find_all("li")]
        assert labels == [p["label"] for p in record["predictions"]]
        percent = card.find(cls="p").text()
        assert percent == f"{record['predictions'][0]['probability']:.1%}"
        (img,) = card.find_all("img")
        assert img.attrs["src"].startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(img.attrs["src"].split(",", 1)[1]))) as thumb:
            assert max(thumb.size) == 160
    # every src or href on the page is data: (and the markup-like name is text, nothing more)
    assert all(n.attrs.get(a, "data:").startswith("data:") for n in tree.iter() for a in ("src", "href"))
    assert len(tree.find_all("img")) == 5
    hostile = next(c for c in cards if card_name(c) == f"{HOSTILE}.jpg")
    assert all(isinstance(x, str) for x in hostile.find(cls="name").children)
    assert hostile.find("img").attrs["alt"] == f"{HOSTILE}.jpg"
    assert tree.find("span", id="shown").text() == ""  # the script ran: nothing filtered


def test_filter_and_sort_by_the_url_fragment(predicted, browser):
    page, records = predicted
    ok = {name: r for name, r in records.items() if "error" not in r}
    label = ok["cat.jpg"]["predictions"][0]["label"]
    tree = parse(browser.dom(page, f"filter={quote(label, safe='')}&sort=desc"))
    cards = shown_cards(tree)
    expected = [n for n, r in ok.items() if r["predictions"][0]["label"] == label]
    assert sorted(map(card_name, cards)) == sorted(expected)
    assert tree.find("span", id="shown").text() == f"{len(expected)} of 6 shown"
    assert tree.find("select", id="filter").find("option").attrs["value"] == ""  # options are the page's own

    tree = parse(browser.dom(page, "errors"))
    assert [card_name(c) for c in shown_cards(tree)] == ["broken.jpg"]

    tree = parse(browser.dom(page, "sort=asc"))
    names = [card_name(c) for c in shown_cards(tree)]
    top = {n: r["predictions"][0]["probability"] for n, r in ok.items()}
    assert [top[n] for n in names[:-1]] == sorted(top.values())
    assert names[-1] == "broken.jpg"  # no confidence: last either way


def test_the_page_is_seen_not_blank(predicted, browser, tmp_path):
    page, _ = predicted
    assert_not_blank(browser.screenshot(page, tmp_path / "report.png", size=(1100, 760)))


def test_a_page_cannot_reach_out_and_the_check_would_see_it(browser, tmp_path):
    """The network check is not vacuous: a page without the policy asks for its image (and the log
    shows it); the same markup inside a report page is blocked by its Content-Security-Policy."""
    body = '<img src="http://example.com/leak.png" alt="">'
    bare = tmp_path / "bare.html"
    bare.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>")
    browser.dom(bare, netlog=tmp_path / "bare.json")
    assert "http://example.com/leak.png" in requested(tmp_path / "bare.json")
    guarded = tmp_path / "guarded.html"
    guarded.write_text(document("t", "<header></header>", body))
    browser.dom(guarded, netlog=tmp_path / "guarded.json")
    assert requested(tmp_path / "guarded.json") == []
    assert any("http://example.com/leak.png" in line and "Content Security Policy" in line for line in browser.console)
    # and the console check sees a style the policy does not name
    guarded.write_text(document("t", "<header></header>", "<p>x</p>").replace("<style>", "<style>/* not ours */"))
    browser.dom(guarded)
    assert any("Content Security Policy directive 'style-src" in line for line in browser.console)


# -- explain records: the heatmap beside the photo ---------------------------------------------------

def test_explain_records_show_the_heatmap_beside_the_photo_and_labels_as_text(samples, browser, tmp_path):
    from xception_cli.labels import Prediction
    from xception_cli.pipeline import Record

    @dataclass(frozen=True)
    class Explained(Prediction):  # as explain's records carry them: a label and its picture
        overlay: str = ""

    heat = tmp_path / "cat.overlay.png"
    Image.new("RGB", (299, 299), (220, 40, 40)).save(heat)
    records = [Record(str(samples[1]), [Explained(1, 3, None, SCRIPT_END, 0.91, str(heat)),
                                        Explained(2, 4, None, "tabby", 0.05, str(heat))]),
               {"path": str(samples[0]), "predictions": [{"label": "tabby", "probability": 0.4, "overlay": str(heat)}]},
               {"path": str(samples[2]), "label": "espresso", "probability": 0.3, "overlay": str(heat)},
               {"path": str(tmp_path / "gone.jpg"), "error": "file not found"}]
    page = tmp_path / "explain.html"
    write_page(str(page), records, command="explain")
    tree = parse(browser.dom(page, "sort=desc"))
    cards = shown_cards(tree)
    assert [card_name(c) for c in cards] == [samples[1].name, samples[0].name, samples[2].name, "gone.jpg"]
    first = cards[0]  # the script ran (sorted) and the photo has a heatmap per explained label
    assert "explain" in first.classes and len(first.find_all("img")) == 3
    assert [i.attrs["alt"] for i in first.find_all("img")[1:]] == [
        f"heatmap of {samples[1].name} for {SCRIPT_END}", f"heatmap of {samples[1].name} for tabby"]
    assert first.find(cls="label").text() == SCRIPT_END
    assert len(cards[2].find_all("img")) == 2 and cards[2].find(cls="label").text() == "espresso"
    assert len([n for n in tree.iter() if n.tag == "script"]) == 2  # the JSON block and the page's script


def test_explain_writes_a_page_of_its_records(photos, weights_file, browser, tmp_path):
    (photos / "broken.jpg").write_bytes(b"not a photo")
    maps = tmp_path / "maps"
    r = run("explain", photos, "-o", maps, "-k", "2", "--size", "200", "--weights", weights_file)
    assert r.exit_code == 1, r.output  # broken.jpg
    assert f"a page of them in {maps / 'explain.html'}" in r.stderr
    records = {Path(d["path"]).name: d for d in map(json.loads, (maps / "explain.jsonl").read_text().splitlines())}
    tree = parse(browser.dom(maps / "explain.html"))
    assert browser.console == []
    cards = shown_cards(tree)
    assert sorted(map(card_name, cards)) == sorted(records) and len(cards) == 5
    for card in cards:
        record = records[card_name(card)]
        if "error" in record:
            assert "error" in card.classes
            continue
        assert [li.find(cls="label").text() for li in card.find("ol").find_all("li")] == [
            p["label"] for p in record["predictions"]]
        pictures = card.find_all("img")  # the photo, then a heatmap per explained label
        assert len(pictures) == 3 and all(i.attrs["src"].startswith("data:image/jpeg") for i in pictures)
        assert pictures[1].attrs["alt"] == f"heatmap of {card_name(card)} for {record['predictions'][0]['label']}"
    if os.environ.get("XCEPTION_DOCS_SCREENSHOTS") == "1":
        save_for_docs(browser.screenshot(maps / "explain.html", tmp_path / "e.png", size=(1100, 760)),
                      "report-explain.png")


# -- similar --duplicates ----------------------------------------------------------------------------

def test_duplicates_page_shows_each_group_side_by_side(samples, weights_file, browser, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("lib")
    folder.mkdir()
    for p in samples:
        shutil.copy(p, folder / p.name)
    shutil.copy(samples[1], folder / "cat-copy.jpg")
    embeddings, page = "lib.npz", Path("dups.html")
    assert run("embed", folder, "-o", embeddings, "--weights", weights_file).exit_code == 0
    r = run("similar", "--duplicates", "--threshold", "0.999", "--embeddings", embeddings, "-o", page)
    assert r.exit_code == 0, r.output
    tree = parse(browser.dom(page, "sort=name"))
    assert browser.console == []
    (group,) = [g for g in tree.find(id="grid").children if not isinstance(g, str)]
    names = [f.find("figcaption").text() for f in group.find_all("figure")]
    assert sorted(names) == ["cat-copy.jpg", samples[1].name]
    assert [i.attrs["src"][:23] for i in group.find_all("img")] == ["data:image/jpeg;base64,"] * 2
    assert "1 pair(s)" in group.find("summary").text()
    if os.environ.get("XCEPTION_DOCS_SCREENSHOTS") == "1":
        save_for_docs(browser.screenshot(page, tmp_path / "dups.png", size=(900, 420)), "report-duplicates.png")


def test_groups_join_pairs_that_share_an_image():
    pairs = [("a", "b", 0.99), ("d", "e", 0.98), ("b", "c", 0.97)]
    assert groups_of(pairs) == [(["a", "b", "c"], [("a", "b", 0.99), ("b", "c", 0.97)]),
                                (["d", "e"], [("d", "e", 0.98)])]


# -- train's report ------------------------------------------------------------------------------------

def test_train_writes_its_report_as_a_page_and_its_class_names_stay_text(weights_file, browser, tmp_path,
                                                                          monkeypatch):
    from xception_cli.synthetic import make_shapes_dataset

    monkeypatch.chdir(tmp_path)  # names as a user types them: relative
    data = make_shapes_dataset("shapes", per_class=4)
    (data / "red").rename(data / HOSTILE)  # a class name is a folder name: data
    (data / "circles" / "broken.jpg").write_bytes(b"not a photo")
    r = run("train", "shapes", "-o", "shapes.h5", "--weights", weights_file, "--epochs", "8")
    assert r.exit_code == 0, r.output
    assert "shapes.h5.report.json and .report.html" in r.stderr
    report = json.loads(Path("shapes.h5.report.json").read_text())
    page = Path("shapes.h5.report.html")
    tree = parse(browser.dom(page))
    assert tree.find("script") is None and browser.console == []  # a page without a script; nothing blocked
    assert len(tree.find_all("polyline")) == 4  # loss and accuracy, training and validation
    classes = report["classes"]
    assert HOSTILE in classes
    cells = tree.find("svg", cls="matrix").find_all("rect")
    assert len(cells) == len(classes) ** 2
    counts = [int(re.search(r": (\d+)$", c.find("title").text()).group(1)) for c in cells]
    assert counts == [n for row in report["confusion_matrix"] for n in row]
    rows = [tr.find_all("td") for tr in tree.find("tbody").find_all("tr")]
    assert [r[0].text() for r in rows] == classes and tree.find("img") is None
    png = browser.screenshot(page, tmp_path / "train.png", size=(1000, 900))
    assert_not_blank(png)
    save_for_docs(png, "report-train.png")

    # the model's class names on a predict page: text
    r = run("predict", "shapes", "-o", "shapes.html", "--weights", "shapes.h5", "-k", "2")
    assert r.exit_code == 1, r.output  # broken.jpg
    tree = parse(browser.dom(Path("shapes.html")))
    cards = shown_cards(tree)
    assert len(cards) == 13 and len(tree.find_all("img")) == 12
    tops = [c.find(cls="label").text() for c in cards if "error" not in c.classes]
    assert sorted(set(tops)) == sorted(classes) and tops.count(HOSTILE) == 4
    assert tree.find("select", id="filter").find_all("option")[1].text().endswith(" (4)")
    if os.environ.get("XCEPTION_DOCS_SCREENSHOTS") == "1":
        save_for_docs(browser.screenshot(Path("shapes.html"), tmp_path / "p.png", size=(1100, 760)),
                      "report-predict.png")


# -- the rules, without a browser ----------------------------------------------------------------------

def test_html_is_chosen_by_its_extension_or_f_and_never_resumed(weights_file, photos, tmp_path):
    assert choose_format(None, "r.html", "predictions") == "html"
    assert choose_format("html", "r.out", "predictions") == "html"
    with pytest.raises(OutputError, match="html output needs -o FILE"):
        choose_format("html", None, "predictions")
    with pytest.raises(OutputError, match="embed writes"):
        choose_format(None, "e.html", "embedding")
    out = tmp_path / "r.html"
    out.write_text("<p>an earlier page</p>")
    r = run("predict", photos, "-o", out, "--resume", "--weights", weights_file)
    assert r.exit_code == 2 and r.stderr.strip().endswith(
        "an html page is written whole, --resume cannot continue it (a run to resume writes -o FILE.jsonl)")
    assert out.read_text() == "<p>an earlier page</p>"


def test_data_never_becomes_markup_and_the_policy_names_the_page_own_code():
    block = json_block("records", {"label": SCRIPT_END, "name": "<!--"})
    inner = block.split(">", 1)[1].rsplit("</script>", 1)[0]
    assert "<" not in inner and json.loads(inner) == {"label": SCRIPT_END, "name": "<!--"}
    page = predictions_page([item_of({"path": f"{HOSTILE}.jpg", "label": SCRIPT_END, "probability": 0.5})],
                            thumbs={})
    assert HOSTILE not in page and SCRIPT_END not in page
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)

    def sha(text):
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    assert policy.startswith("default-src 'none'; img-src data:;")
    nan = predictions_page([item_of({"path": "a.jpg", "label": "x", "probability": float("nan")})], thumbs={})
    assert '"p":null' in nan  # a probability that is not a number is no number in the page's JSON
    assert f"style-src {sha(style)};" in policy and f"script-src {sha(script)};" in policy
