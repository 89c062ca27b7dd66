"""A real browser for the report-page tests: headless Chromium driven by its command line (the
standard library only, no driver package), and the DOM it dumps read back into a small tree.

- ``Browser.dom(page, fragment)``: the DOM after the page's script ran (``--dump-dom``), opened
  at ``page#fragment``.
- ``Browser.screenshot(page, png)``: what a person sees.
- ``Browser.console``: what the last page wrote on its console (script errors, policy violations).
- ``netlog=``: Chromium's network log of the visit (``--log-net-log``); ``requested(netlog)``
  lists every URL the page asked for. Host names never resolve (``--host-resolver-rules``), so
  nothing can leave this machine even if a page tried.

Which browser: ``$XCEPTION_CHROMIUM``, else ``chromium`` (Debian's; ``make install`` installs it
when it can), ``chromium-browser``, ``google-chrome``. None: ``find()`` is ``None`` and the tests
that need one skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions", "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0")  # the page's console (errors, policy violations) on stderr
SKIP_REASON = ("no Chromium to open the report pages in: `make install` installs Debian's chromium (as root, "
               "with apt-get), or set XCEPTION_CHROMIUM to a Chromium or Chrome binary")


def find() -> str | None:
    named = os.environ.get("XCEPTION_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    return next((path for path in map(shutil.which, NAMES) if path), None)


class Browser:
    def __init__(self, executable: str):
        self.executable = executable
        self.console: list[str] = []  # what the last page said on its console (script errors, CSP violations)

    def run(self, url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="xception-chromium-") as profile:
            r = subprocess.run([self.executable, *FLAGS, f"--user-data-dir={profile}", *args, url],
                               capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"chromium exited {r.returncode}: {r.stderr[-2000:]}")
        self.console = [line.split("] ", 1)[-1] for line in r.stderr.splitlines() if ":CONSOLE" in line]
        return r

    def dom(self, page: Path, fragment: str = "", netlog: Path | None = None) -> str:
        extra = [f"--log-net-log={netlog}", "--net-log-capture-mode=Everything"] if netlog else []
        return self.run(url(page, fragment), "--dump-dom", *extra).stdout

    def screenshot(self, page: Path, png: Path, size=(1200, 900), fragment: str = "") -> Path:
        self.run(url(page, fragment), f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
                 "--hide-scrollbars")
        return png


def url(page: Path, fragment: str = "") -> str:
    return Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")


def requested(netlog: Path) -> list[str]:
    """The URLs a visited page asked for, from Chromium's network log: every request job started
    on the page's behalf (the browser's own background requests, which have no initiating
    origin, are not the page's)."""
    log = json.loads(Path(netlog).read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    jobs = [e.get("params") or {} for e in log.get("events", []) if e.get("type") == start]
    return [p["url"] for p in jobs if "url" in p and p.get("initiator") != "not an origin"]


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None = None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]

    def find(self, tag: str | None = None, cls: str | None = None, id: str | None = None) -> Node | None:
        return next((n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)
                     and (id is None or n.attrs.get("id") == id)), None)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: ("" if v is None else v) for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: ("" if v is None else v) for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(dom: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(dom)
    builder.close()
    return builder.root
