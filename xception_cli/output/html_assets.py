"""The one style sheet and the one script of the report pages (``output.html``), as text.

The page's Content-Security-Policy allows exactly these two by their SHA-256 (nothing else runs,
and nothing is loaded). The script never builds markup: the cards are on the page already; it
reads the records from the page's JSON block (``textContent``), then hides, shows and reorders
the cards. Its state lives in the URL fragment (``#filter=tabby&sort=desc``, ``#errors``), so a
filtered view can be shared as a link and opens filtered.
"""

STYLE = """
:root { color-scheme: light dark; --fg: #1d232b; --muted: #5c6773; --line: #d9dee4; --card: #ffffff;
  --bg: #f3f5f7; --bar: #3a7bd5; --bad: #b42318; --badbg: #fdecea; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ed; --muted: #9aa5b1; --line: #38414b;
  --card: #1d232b; --bg: #12161b; --bar: #5b9cf0; --bad: #ff8a80; --badbg: #3a1f1f; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); }
header { padding: 14px 20px 10px; border-bottom: 1px solid var(--line); background: var(--card); }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 22px 0 8px; }
.meta { color: var(--muted); font-size: 12px; margin: 0; }
.controls { display: flex; gap: 14px; flex-wrap: wrap; align-items: center; margin-top: 10px; }
.controls label { color: var(--muted); }
select { font: inherit; }
#shown { color: var(--muted); }
main { padding: 16px 20px 40px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px; margin: 0;
  content-visibility: auto; contain-intrinsic-size: 190px 300px; min-width: 0; }
.card[hidden], .group[hidden] { display: none; }
.pics { display: flex; gap: 6px; justify-content: space-around; }
.pics .hm { font-size: 12px; color: var(--muted); text-align: center; margin-top: 2px; overflow-wrap: anywhere; }
.thumb { display: block; width: 160px; height: 160px; object-fit: contain; margin: 0 auto; }
.noimg { width: 160px; height: 160px; margin: 0 auto; display: flex; align-items: center; justify-content: center;
  color: var(--muted); border: 1px dashed var(--line); border-radius: 4px; font-size: 12px; text-align: center; }
.card.span2 { grid-column: span 2; }
.card.span3 { grid-column: span 3; }
.card.span4 { grid-column: span 4; }
.name { font-size: 12px; color: var(--muted); margin: 6px 0 4px; overflow-wrap: anywhere; }
.labels { list-style: none; margin: 0; padding: 0; }
.labels li { display: grid; grid-template-columns: 1fr auto; column-gap: 6px; font-size: 13px; }
.labels li:first-child { font-weight: 600; }
.label { overflow-wrap: anywhere; }
.p { font-variant-numeric: tabular-nums; color: var(--muted); }
.bar { grid-column: 1 / -1; width: 100%; height: 4px; margin: 1px 0 5px; }
.bar rect { fill: var(--bar); }
.bar .track { fill: var(--line); }
.card.error { border-color: var(--bad); background: var(--badbg); }
.err { color: var(--bad); font-size: 13px; overflow-wrap: anywhere; margin: 4px 0 0; }
.groups { display: flex; flex-direction: column; gap: 12px; }
.group { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px;
  content-visibility: auto; contain-intrinsic-size: 800px 260px; }
.group .members { display: flex; gap: 10px; overflow-x: auto; }
.group figure { margin: 0; width: 170px; flex: none; }
.group .sim { font-weight: 600; margin: 0 0 6px; }
.pairs { font-size: 12px; color: var(--muted); margin: 6px 0 0; }
.pairs li { overflow-wrap: anywhere; }
svg text { fill: var(--fg); font-size: 11px; }
.chart .axis { stroke: var(--muted); stroke-width: 1; }
.chart .grid-line { stroke: var(--line); stroke-width: 1; }
.chart polyline { fill: none; stroke-width: 2; }
.chart .train { stroke: var(--bar); }
.chart .val { stroke: #e8833a; stroke-dasharray: 5 3; }
.chart circle { stroke: none; }
.legend .train, .chart circle.train { fill: var(--bar); }
.legend .val, .chart circle.val { fill: #e8833a; }
.matrix rect { fill: var(--bar); }
.matrix .empty { fill: var(--line); fill-opacity: 0.35; }
.matrix .right { stroke: var(--fg); stroke-width: 1.5; }
.charts { display: flex; gap: 24px; flex-wrap: wrap; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line); }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("records").textContent);
  var grid = document.getElementById("grid");
  var filter = document.getElementById("filter");
  var sort = document.getElementById("sort");
  var shown = document.getElementById("shown");
  var cards = [];
  for (var i = 0; i < grid.children.length; i++) { cards.push(grid.children[i]); }
  var items = data.items;

  function fragment() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) { return; }
      var eq = part.indexOf("=");
      var key = eq < 0 ? part : part.slice(0, eq), value = eq < 0 ? "" : part.slice(eq + 1);
      try { out[decodeURIComponent(key)] = decodeURIComponent(value.replace(/\\+/g, " ")); } catch (e) { }
    });
    return out;
  }

  function choose(select, value, fallback) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) { select.selectedIndex = i; return; }
    }
    if (fallback !== undefined) { select.value = fallback; return; }
    var option = document.createElement("option");  // a label no photo has: text, never markup
    option.value = value;
    option.textContent = value.slice(1) + " (0)";
    select.appendChild(option);
    select.value = value;
  }

  function score(i, high) {
    var p = items[i].p;
    return p === null ? (high ? -Infinity : Infinity) : p;
  }

  function order(how) {
    var idx = items.map(function (_, i) { return i; });
    if (how === "desc") { idx.sort(function (a, b) { return score(b, true) - score(a, true) || a - b; }); }
    if (how === "asc") { idx.sort(function (a, b) { return score(a, false) - score(b, false) || a - b; }); }
    if (how === "name") {
      idx.sort(function (a, b) {
        var x = items[a].name, y = items[b].name;
        return x < y ? -1 : x > y ? 1 : a - b;
      });
    }
    return idx;
  }

  function apply() {
    var want = filter ? filter.value : "", n = 0;
    order(sort.value).forEach(function (i) {
      var item = items[i];
      var show = want === "" || (want === "!" ? item.error : (!item.error && "=" + item.top === want));
      cards[i].hidden = !show;
      if (show) { n += 1; }
      grid.appendChild(cards[i]);
    });
    shown.textContent = n === cards.length ? "" : n + " of " + cards.length + " shown";
  }

  function load() {
    var f = fragment();
    if (filter) { choose(filter, "errors" in f ? "!" : ("filter" in f && f.filter !== "" ? "=" + f.filter : "")); }
    choose(sort, f.sort || "input", "input");
    apply();
  }

  function save() {
    var parts = [];
    if (filter && filter.value === "!") { parts.push("errors"); }
    if (filter && filter.value.charAt(0) === "=") { parts.push("filter=" + encodeURIComponent(filter.value.slice(1))); }
    if (sort.value !== "input") { parts.push("sort=" + encodeURIComponent(sort.value)); }
    apply();
    try { location.replace("#" + parts.join("&")); } catch (e) { }
  }

  if (filter) { filter.addEventListener("change", save); }
  sort.addEventListener("change", save);
  window.addEventListener("hashchange", load);
  load();
})();
"""
