"""Report pages: one self-contained HTML file a person opens in any browser, offline.

- ``predict -o report.html`` (``HtmlWriter``): a card per photo — a thumbnail, its top-k labels
  with probability bars — and an error card per photo that could not be read; a filter by top
  label (or the errors) and a sort by confidence or name.
- ``explain``'s records (each label with its ``overlay``, the heatmap drawn over the photo): the
  same page, the heatmaps beside each photo (``write_page``).
- ``similar --duplicates -o dups.html`` (``duplicates_page``): groups of near-duplicates (pairs
  joined when they share an image), their photos side by side, most similar first.
- ``train``'s report (``charts.train_page``).

Self-contained: thumbnails are embedded as ``data:`` URIs (JPEG, ``THUMB`` px on the longest
side, about 5 KB a photo: ~5 MB of page per 1000 photos), the style and script are inline, and
nothing is fetched. Names and labels (a trained model's class names too) are data, never
markup: every text is HTML-escaped (control and invisible characters first written as ``\\xNN``,
as in messages), the records the script reads sit in a ``type="application/json"`` block with
``<``, ``>`` and ``&`` escaped, read with ``textContent``; the script never builds markup. A
Content-Security-Policy allows nothing but ``data:`` images and the page's own style and script
(by SHA-256), so nothing in a page can load or run anything else.

Not streaming: records are gathered and the page is published whole when the run ends
(``target.Publication`` through ``files.RecordsOutput``); thumbnails are made then, in threads.
An html page cannot be continued with ``--resume`` (``formats.choose_format`` refuses it).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .html_assets import SCRIPT, STYLE
from .paths import from_record, is_uri, shown
from .target import Protected, write_bytes

THUMB = 160  # px, the longest side of a thumbnail
JPEG_QUALITY = 70
PAIRS_LISTED = 50  # pairs listed under a duplicate group (its photos are all shown)


def esc(value) -> str:
    """Text as HTML text or attribute value: control and invisible characters written as
    ``\\xNN`` (``paths.shown``), then ``& < > " '`` as entities."""
    return html.escape(shown(str(value)), quote=True)


def json_block(element_id: str, data) -> str:
    """``data`` as a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` escaped
    (``\\u003c``...), so no text in it can end the block or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def number(x: float) -> float | None:
    """A probability or similarity for the page's records (JSON has no NaN: ``None``)."""
    return round(float(x), 6) if math.isfinite(x) else None


def source_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def policy(script: bool) -> str:
    """The page's Content-Security-Policy: nothing loaded, ``data:`` images, the page's own style
    and (when it has one) script by hash."""
    scripts = source_hash(SCRIPT) if script else "'none'"
    return (f"default-src 'none'; img-src data:; style-src {source_hash(STYLE)}; script-src {scripts}; "
            "base-uri 'none'; form-action 'none'")


def document(title: str, header: str, body: str, records: dict | None = None) -> str:
    """A whole page. ``records``: what the script reads (no script without them)."""
    script = records is not None
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{policy(script)}">\n',
        '<meta name="referrer" content="no-referrer">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        header, "\n<main>\n", body, "\n</main>\n",
        (json_block("records", records) + f"\n<script>{SCRIPT}</script>\n") if script else "",
        "</body></html>\n",
    ])


def made_by(meta: Mapping) -> str:
    parts = [f"{k} {meta[k]}" for k in ("weights", "resize", "precision") if meta.get(k)]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return " · ".join(parts + [f"made {when}" + (f" by {meta['created_by']}" if meta.get("created_by") else "")])


# -- thumbnails ----------------------------------------------------------------------------------

# EXIF orientation -> the transpose that shows the photo upright (as the model sees it)
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


@dataclass(frozen=True)
class Thumb:
    uri: str  # data:image/jpeg;base64,...
    width: int
    height: int


def thumbnail(source: str, side: int = THUMB) -> Thumb | None:
    """A photo as a small JPEG ``data:`` URI (``side`` px on its longest side, upright), or
    ``None`` when it cannot be read. Read as predict reads photos: the pixel and byte limits
    checked before decoding, a JPEG decoded at a reduced scale."""
    from PIL import Image

    from ..errors import ImageError
    from ..preprocess import DECODE_BUDGET, measured_image, to_rgb, working_bytes

    try:
        im = measured_image(source, draft_to=side)
        with im, DECODE_BUDGET.reserve(working_bytes(im)):
            im.load()
            turn = _UPRIGHT.get(im.getexif().get(0x0112, 1))
            small = to_rgb(im)
            small.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
            if turn:
                small = small.transpose(getattr(Image.Transpose, turn))
            return thumb_of(small, side)
    except (ImageError, OSError, ValueError, MemoryError, SyntaxError, EOFError):
        return None


def thumb_of(picture, side: int = THUMB) -> Thumb:
    """An image already decoded and upright (a PIL image: explain's photo or picture) as a
    thumbnail, with no file read again."""
    from PIL import Image

    small = picture.convert("RGB") if picture.mode != "RGB" else picture.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return Thumb("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), *small.size)


def thumbnails(sources: Iterable[str | None], workers: int | None = None) -> dict[str, Thumb | None]:
    """``thumbnail`` of each local file named (URIs and ``None`` skipped), in threads."""
    wanted = list(dict.fromkeys(s for s in sources if s and not is_uri(s)))
    pool = ThreadPoolExecutor(max_workers=workers or max(1, min(8, os.cpu_count() or 1)))
    try:
        return dict(zip(wanted, pool.map(thumbnail, wanted)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: the queued ones are dropped


def image(thumb: Thumb | None, alt: str, missing: str = "no preview") -> str:
    if thumb is None:
        return f'<div class="noimg">{esc(missing)}</div>'
    return (f'<img class="thumb" src="{thumb.uri}" width="{thumb.width}" height="{thumb.height}" '
            f'alt="{esc(alt)}" loading="lazy">')


# -- predictions (and explanations) --------------------------------------------------------------

@dataclass
class Item:
    """One photo on a page: its name (as given), labels ``[(label, probability)]`` best first, or
    an error; ``overlays``: a picture per label shown beside the photo (explain's heatmaps)."""

    path: str
    labels: list[tuple[str, float]]
    error: str | None = None
    overlays: list[str] = field(default_factory=list)


def item_of(record) -> Item:
    """An ``Item`` from a record: a ``pipeline.Record`` of predict or explain (explain's labels
    carry ``overlay``), a record as JSON Lines hold it (``path``, ``predictions`` or ``error``),
    or one explained label flat (``path``, ``label``, ``probability``, ``overlay``)."""
    if isinstance(record, Mapping):
        path = from_record(str(record["path"]), record.get("path_base64"))  # a name's exact bytes, when kept
        if record.get("error") is not None:
            return Item(path, [], str(record["error"]))
        labels = record.get("predictions")
        if labels is None:
            labels = [record]
        return Item(path, [(str(p["label"]), float(p["probability"])) for p in labels],
                    overlays=[str(p["overlay"]) for p in labels if p.get("overlay")])
    if record.error is not None:
        return Item(record.path, [], record.error)
    labels = record.predictions or ()
    return Item(record.path, [(p.label, float(p.probability)) for p in labels],
                overlays=[p.overlay for p in labels if getattr(p, "overlay", None)])


def bar(p: float) -> str:
    """A probability as a bar: inline SVG (no style attribute: the policy allows none)."""
    width = max(0.0, min(1.0, p)) * 100
    return (f'<svg class="bar" viewBox="0 0 100 4" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="track" width="100" height="4"/><rect width="{width:.1f}" height="4"/></svg>')


def card(i: int, item: Item, thumbs: Mapping[str, Thumb | None]) -> str:
    name = os.path.basename(item.path.rstrip("/")) or item.path
    caption = f'<div class="name" title="{esc(item.path)}">{esc(name)}</div>'
    if item.error is not None:
        return (f'<figure class="card error" id="c{i}"><div class="noimg">could not be read</div>'
                f'<figcaption>{caption}<p class="err">{esc(item.error)}</p></figcaption></figure>')
    pics = image(thumbs.get(item.path), name)
    kind = "card"
    if item.overlays:
        kind = f"card explain span{min(4, 1 + len(item.overlays))}"
        heat = "".join(f'<div>{image(thumbs.get(o), f"heatmap of {name} for {label}")}<div class="hm">'
                       f"{esc(label)}</div></div>" for o, (label, _) in zip(item.overlays, item.labels))
        pics = f'<div class="pics"><div>{pics}<div class="hm">the photo</div></div>{heat}</div>'
    rows = "".join(f'<li><span class="label">{esc(label)}</span><span class="p">{p:.1%}</span>{bar(p)}</li>'
                   for label, p in item.labels)
    return f'<figure class="{kind}" id="c{i}">{pics}<figcaption>{caption}<ol class="labels">{rows}</ol>' \
           '</figcaption></figure>'


def option(value: str, text: str) -> str:
    return f'<option value="{esc(value)}">{esc(text)}</option>'


SORTS = {"predictions": (("input", "input order"), ("desc", "confidence, highest first"),
                         ("asc", "confidence, lowest first"), ("name", "name")),
         "duplicates": (("input", "most similar first"), ("asc", "least similar first"), ("name", "name"))}


def controls(sorts, filters: list[tuple[str, str]] | None = None) -> str:
    parts = ['<div class="controls">']
    if filters is not None:
        parts.append('<label>Top label <select id="filter">' + "".join(option(v, t) for v, t in filters)
                     + "</select></label>")
    parts.append('<label>Sort <select id="sort">' + "".join(option(v, t) for v, t in sorts) + "</select></label>")
    parts.append('<span id="shown" aria-live="polite"></span></div>')
    return "".join(parts)


def predictions_page(items: list[Item], meta: Mapping | None = None, thumbs: Mapping | None = None,
                     command: str = "predict") -> str:
    """The page of a predict (or explain) run: the ``thumbs`` not given made here."""
    meta = meta or {}
    ready = dict(thumbs or {})
    thumbs = {**thumbnails([s for it in items if it.error is None for s in (it.path, *it.overlays)
                            if s not in ready]), **ready}
    failed = sum(it.error is not None for it in items)
    tops = Counter(shown(it.labels[0][0]) for it in items if it.error is None and it.labels)
    filters = [("", f"all ({len(items):,})")]
    filters += [("=" + label, f"{label} ({n:,})") for label, n in sorted(tops.items(), key=lambda t: (-t[1], t[0]))]
    if failed:
        filters.append(("!", f"errors ({failed:,})"))
    noun = "photo" if len(items) == 1 else "photos"
    title = f"xception {command}: {len(items):,} {noun}"
    done = "explained" if command == "explain" else "classified"
    header = (f"<header><h1>{esc(title)}</h1><p class=\"meta\">{len(items) - failed:,} {done}, {failed:,} "
              f"failed · {esc(made_by(meta))}</p>{controls(SORTS['predictions'], filters)}</header>")
    body = '<div class="grid" id="grid">' + "\n".join(card(i, it, thumbs) for i, it in enumerate(items)) + "</div>"
    records = {"kind": command, "items": [
        {"path": shown(it.path), "name": shown(os.path.basename(it.path)), "error": it.error is not None,
         "top": shown(it.labels[0][0]) if it.labels else None,
         "p": number(it.labels[0][1]) if it.labels else None,
         "labels": [[shown(label), number(p)] for label, p in it.labels]} for it in items]}
    return document(title, header, body, records)


class HtmlWriter:
    """``-o report.html`` for predict: records gathered as the run goes, the page (thumbnails
    made in threads) published whole by ``close()`` — the same interface as ``ArrayWriter``."""

    def __init__(self, publish, fmt: str = "html", meta: Mapping | None = None, earlier=()):
        if earlier:
            raise ValueError("an html page is written whole; it cannot continue an earlier one")
        self.publish, self.meta = publish, dict(meta or {})
        self.items: list[Item] = []

    def write(self, records) -> None:
        self.items.extend(item_of(r) for r in records)

    def close(self) -> None:
        self.publish(predictions_page(self.items, self.meta).encode("utf-8"))


def write_page(path: str, records, *, command: str = "predict", meta: Mapping | None = None,
               protected: Protected | None = None, thumbs: Mapping | None = None) -> None:
    """Records (any that ``item_of`` takes) as a page at ``path``, published whole
    (``target.write_bytes``): explain's records beside its pictures, or JSON Lines records read back;
    ``thumbs``: those already made (by path), the others made from the files."""
    page = predictions_page([item_of(r) for r in records], meta, thumbs, command=command)
    write_bytes(path, page.encode("utf-8"), protected)


def jsonl_records(path: str) -> list[dict]:
    """The records of a JSON Lines file this tool wrote (predict's or explain's): a line that is not
    a whole record (one cut short by a kill) is left out."""
    out = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str) and (
                    "error" in record or isinstance(record.get("predictions"), list)):
                out.append(record)
    return out


# -- near-duplicates -----------------------------------------------------------------------------

def groups_of(pairs: list[tuple[str, str, float]]) -> list[tuple[list[str], list[tuple[str, str, float]]]]:
    """Pairs joined into groups (images linked by any chain of pairs): ``(members, pairs)``, the
    group with the most similar pair first (pairs come most similar first); members in the order
    they first appear."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in pairs:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra
    groups: dict[str, tuple[list[str], list, set]] = {}
    for a, b, s in pairs:
        members, listed, seen = groups.setdefault(root(a), ([], [], set()))
        for x in (a, b):
            if x not in seen:
                seen.add(x)
                members.append(x)
        listed.append((a, b, s))
    return [(members, listed) for members, listed, _ in groups.values()]


def duplicates_page(pairs: list[tuple[str, str, float]], threshold: float, source: str = "") -> str:
    """``similar --duplicates``' page: each group's photos side by side, its pairs listed."""
    groups = groups_of(pairs)
    thumbs = thumbnails(m for members, _ in groups for m in members)
    sections, items = [], []
    for i, (members, listed) in enumerate(groups):
        best, worst = listed[0][2], listed[-1][2]
        span = f"{best:.4f}" if best == worst else f"{worst:.4f}–{best:.4f}"
        figures = "".join(
            f'<figure>{image(thumbs.get(m), os.path.basename(m))}<figcaption class="name" title="{esc(m)}">'
            f"{esc(os.path.basename(m) or m)}</figcaption></figure>" for m in members)
        more = len(listed) - PAIRS_LISTED
        rows = "".join(f"<li>{esc(a)} ↔ {esc(b)}: {s:.4f}</li>" for a, b, s in listed[:PAIRS_LISTED])
        rows += f"<li>and {more:,} more</li>" if more > 0 else ""
        sections.append(f'<section class="group" id="g{i}"><p class="sim">{len(members)} images · similarity '
                        f'{span}</p><div class="members">{figures}</div><details><summary>{len(listed):,} '
                        f'pair(s)</summary><ol class="pairs">{rows}</ol></details></section>')
        items.append({"name": shown(os.path.basename(members[0])), "top": None, "error": False,
                      "p": number(best), "members": [shown(m) for m in members]})
    title = f"xception similar --duplicates: {len(groups):,} group(s)"
    where = f" in {shown(source)}" if source else ""
    header = (f"<header><h1>{esc(title)}</h1><p class=\"meta\">{len(pairs):,} pair(s) at or above similarity "
              f"{threshold}{esc(where)} · {esc(made_by({}))}</p>{controls(SORTS['duplicates'])}</header>")
    body = '<div class="groups" id="grid">' + "\n".join(sections) + "</div>"
    if not groups:
        body += f"<p>No pairs at or above {threshold}.</p>"
    return document(title, header, body, {"kind": "duplicates", "items": items})
