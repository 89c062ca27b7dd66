"""``train``'s report as a page (``MODEL.h5.report.html``, beside the JSON report): per-epoch loss
and accuracy curves and the validation confusion matrix as inline SVG, the class counts and the
photos skipped. No script; nothing loaded (the page policy of ``output.html``); class names are
data, escaped wherever they appear (SVG text too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .html import document, esc, made_by

CHART_W, CHART_H = 440, 250
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 24, 34
LABEL_CHARS = 24  # a class name longer than this is cut on the matrix (whole in its tooltip)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _ticks(top: float) -> list[float]:
    """Five round steps from 0 to at least ``top``."""
    top = top if top > 0 else 1.0
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def line_chart(title: str, history: list[Mapping], key: str, fraction: bool = False) -> str:
    """``train_<key>`` and ``val_<key>`` per epoch as two lines (all stages, one after another); a
    dashed rule where fine-tuning starts."""
    series = [(part, [(i + 1, row[f"{part}_{key}"]) for i, row in enumerate(history)
                      if _finite(row.get(f"{part}_{key}"))]) for part in ("train", "val")]
    values = [y for _, pts in series for _, y in pts]
    ticks = _ticks(1.0 if fraction else max(values or [1.0]))
    top, n = ticks[-1], max(2, len(history))
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B

    def x(epoch):
        return PAD_L + (epoch - 1) / (n - 1) * plot_w

    def y(value):
        return PAD_T + plot_h - value / top * plot_h

    parts = [f'<svg class="chart" role="img" width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}">',
             f"<title>{esc(title)}</title>", f'<text x="{PAD_L}" y="14">{esc(title)}</text>']
    for t in ticks:
        label = f"{t:.0%}" if fraction else f"{t:g}"
        parts.append(f'<line class="grid-line" x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                     f'<text x="{PAD_L - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{label}</text>')
    step = max(1, math.ceil(len(history) / 10))
    for epoch in range(1, len(history) + 1, step):
        parts.append(f'<text x="{x(epoch):.1f}" y="{CHART_H - PAD_B + 16}" text-anchor="middle">{epoch}</text>')
    parts.append(f'<text x="{PAD_L + plot_w / 2:.1f}" y="{CHART_H - 4}" text-anchor="middle">epoch</text>')
    tuned = next((i + 1 for i, row in enumerate(history) if row.get("stage") == "fine-tune"), None)
    if tuned is not None:
        parts.append(f'<line class="axis" stroke-dasharray="3 3" x1="{x(tuned):.1f}" x2="{x(tuned):.1f}" '
                     f'y1="{PAD_T}" y2="{PAD_T + plot_h}"/><text x="{x(tuned) - 4:.1f}" y="{PAD_T + 12}" '
                     'text-anchor="end">fine-tuning</text>')
    base = PAD_T + plot_h
    parts.append(f'<line class="axis" x1="{PAD_L}" x2="{PAD_L}" y1="{PAD_T}" y2="{base}"/>'
                 f'<line class="axis" x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{base}" y2="{base}"/>')
    for part, pts in series:
        if not pts:
            continue
        points = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in pts)
        parts.append(f'<polyline class="{part}" points="{points}"><title>{part} {key}</title></polyline>')
        if len(pts) <= 30:
            parts.append("".join(f'<circle class="{part}" cx="{x(e):.1f}" cy="{y(v):.1f}" r="2.5">'
                                 f"<title>epoch {e}: {part} {key} {v:g}</title></circle>" for e, v in pts))
    legend = [(part, "training" if part == "train" else "validation") for part, pts in series if pts]
    for i, (part, name) in enumerate(legend):
        lx = CHART_W - PAD_R - 170 + i * 90
        parts.append(f'<g class="legend"><rect class="{part}" x="{lx}" y="5" width="12" height="4"/>'
                     f'<text x="{lx + 16}" y="11">{name}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def matrix_svg(classes: list[str], matrix: list[list[int]]) -> str:
    """The confusion matrix: a row per true class, a column per predicted class, each cell as dark
    as its share of the row, its count written when there is room; the diagonal outlined."""
    n = len(classes)
    cell = max(14, min(44, 560 // max(1, n)))
    names = [c if len(c) <= LABEL_CHARS else c[:LABEL_CHARS - 1] + "…" for c in classes]
    left = 12 + 7 * max(len(c) for c in names)
    top = 12 + int(5 * max(len(c) for c in names))
    width = max(left + n * cell + 10 + 3 * max(len(c) for c in names), left + 270)
    height = top + n * cell + 30
    parts = [f'<svg class="matrix" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             "<title>Confusion matrix: rows are the true classes, columns the predicted ones</title>"]
    for i, (full, name) in enumerate(zip(classes, names)):
        cy = top + i * cell + cell / 2 + 4
        cx = left + i * cell + cell / 2
        parts.append(f'<text x="{left - 6}" y="{cy:.1f}" text-anchor="end"><title>{esc(full)}</title>{esc(name)}</text>'
                     f'<text transform="translate({cx + 4:.1f},{top - 6}) rotate(-60)"><title>{esc(full)}</title>'
                     f"{esc(name)}</text>")
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            kind = ("right " if i == j else "") + ("empty" if not count else "")
            attrs = f' class="{kind.strip()}"' if kind.strip() else ""
            opacity = f' fill-opacity="{0.12 + 0.88 * share:.3f}"' if count else ""
            parts.append(f'<rect{attrs} x="{left + j * cell}" y="{top + i * cell}" width="{cell - 1}" '
                         f'height="{cell - 1}"{opacity}><title>true {esc(classes[i])}, predicted {esc(classes[j])}: '
                         f"{count}</title></rect>")
            if count and cell >= 20:
                parts.append(f'<text x="{left + j * cell + cell / 2:.1f}" y="{top + i * cell + cell / 2 + 4:.1f}" '
                             f'text-anchor="middle">{count}</text>')
    parts.append(f'<text x="{left}" y="{height - 8}">columns: predicted class · rows: true class</text></svg>')
    return "".join(parts)


def train_page(report: Mapping) -> str:
    """The page of ``train``'s report (the dict written as ``MODEL.h5.report.json``)."""
    classes = list(report.get("classes", []))
    history = list(report.get("history", []))
    counts = report.get("class_counts", {})
    matrix = report.get("confusion_matrix") or []
    acc = report.get("final_val_accuracy")
    timings = report.get("timings_s", {})
    options = report.get("options", {})
    title = f"xception train: {report.get('model', 'model')}"
    summary = [f"{len(classes)} classes", f"validation accuracy {acc:.1%}" if _finite(acc) else "no validation photos"]
    if _finite(timings.get("total")):
        summary.append(f"{timings['total']:.1f} s in all")
    header = (f"<header><h1>{esc(title)}</h1><p class=\"meta\">{esc(' · '.join(summary))} · "
              f"{esc(made_by({'weights': options.get('weights'), 'resize': options.get('resize')}))}</p></header>")
    body = []
    if history:
        body.append('<h2>Loss and accuracy per epoch</h2><div class="charts">'
                    + line_chart("accuracy", history, "accuracy", fraction=True) + line_chart("loss", history, "loss")
                    + "</div>")
    if matrix and len(matrix) == len(classes):
        body.append("<h2>Confusion matrix (validation photos)</h2>" + matrix_svg(classes, matrix))
    rows = []
    for i, c in enumerate(classes):
        right = matrix[i][i] if matrix and len(matrix) == len(classes) else None
        total = sum(matrix[i]) if right is not None else 0
        recall = f"{right / total:.1%}" if total else "–"
        rows.append(f"<tr><td>{esc(c)}</td><td class=\"n\">{counts.get('train', {}).get(c, 0):,}</td>"
                    f"<td class=\"n\">{counts.get('val', {}).get(c, 0):,}</td><td class=\"n\">{recall}</td></tr>")
    body.append("<h2>Classes</h2><table><thead><tr><th>class</th><th>training photos</th><th>validation photos</th>"
                "<th>validation recall</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    skipped = report.get("skipped") or []
    if skipped:
        body.append(f"<h2>Skipped ({len(skipped)} unreadable)</h2><ul class=\"pairs\">"
                    + "".join(f"<li>{esc(s.get('path', ''))}: {esc(s.get('error', ''))}</li>" for s in skipped)
                    + "</ul>")
    return document(title, header, "\n".join(body))
