"""Every example in README.md and docs/*.md is run, and the output it shows is checked.

``python tests/test_docs.py PAGE...`` runs pages the same way and writes what each command printed
under it, for a change to what a command prints (outputs a page elides with ``...`` are kept).

How a page is run: its fenced blocks, top to bottom, in a folder of its own (a copy of one
prepared world, below), so a later block may use what an earlier one wrote.

- ```console / ```sh / ```bash blocks: lines starting with ``$ `` are commands (a line ending in
  ``\\`` continues on the next); the lines after a command, up to the next ``$ ``, are its output.
  A block without any ``$ `` line is a script: every line that is not a comment is a command, and
  no output is shown. A command may end with ``# exit N``: the exit status it must give (0
  otherwise).
- ```python blocks are run as a script in the same folder (their printed output is not compared).
- Other blocks (json, text, ...) are examples of data, not of commands: not run.

The line right before a block's fence (blank lines aside) may mark it:

- ``<!-- not run: REASON -->``: skipped (needs the network, the real ImageNet weights, a Ray
  cluster, Docker, an installation...). Every other block is run, and a command the runner does
  not know how to run (anything but ``xception`` and a few file tools) fails the test, so a block
  that cannot run here must say why.
- ``<!-- output not checked: REASON -->``: run, exit status checked, output not compared.
- ``<!-- numbers vary: REASON -->``: output compared with every number as a wildcard (timings,
  probabilities of the generated weights).

How output is compared: ANSI codes and table borders (box-drawing characters) are dropped and
spaces collapsed, so a table is compared by its cells, line by line; blank lines are ignored.
In the shown output ``...`` matches any text within a line, and a line that is only ``...`` any
number of lines. Runs of 16 or more hex digits (file ids, which digest the temporary folder's
path, and md5s of the generated weights) match any such run.

The world: ``cat.jpg`` and ``examples/cat.jpg``; ``photos/`` (the four sample photos, an exact
copy of the cat and a copy resized to 2/3 and re-encoded at JPEG quality 85); ``test-weights.h5``
(the tests' generated weights, in the official layout); ``plants/`` (three classes of four
pictures, ``xception_cli.synthetic.make_shapes_dataset``); ``$HOME`` is the folder's ``home/``,
holding ``Photos/`` (the four sample photos). ``$XCEPTION_WEIGHTS`` names the generated
weights, so ``--weights imagenet`` (the default) uses them and nothing is downloaded. ``$HOME``'s
path in the output is shown as ``~``.

``xception`` commands run in this process (Click's test runner, the shell expanding the arguments
first), with stdout taken for a terminal (tables, 80 columns) and stderr not (no progress bars,
which are erased when a run ends anyway), the closing line's clock started with the command.
``TOOL ... | xception ...`` feeds the tool's output to it; any other pipe or redirection, and
the file tools, run in bash (``xception`` there is this environment's).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

SHELL = {"console", "sh", "bash", "shell", "shell-session"}
XCEPTION = {"xception", ".venv/bin/xception"}
TOOLS = {"ls", "head", "tail", "wc", "cat", "cp", "mv", "rm", "mkdir", "find", "sort", "cut", "grep", "jq",
         "python", "echo", "printf", "true", "test", "du"}
MARK = re.compile(r"<!--\s*(not run|output not checked|numbers vary):\s*(\S.*?)\s*-->")
EXIT = re.compile(r"#.*\bexit(?: status)? (\d+)\s*$")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
HEX = re.compile(r"[0-9a-f]{16,}")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
BOX = re.compile(r"[\u2500-\u257f]")


@dataclass
class Command:
    text: str  # as written, after the prompt (continuations joined)
    line: int
    output: list[str] = field(default_factory=list)
    shows_output: bool = True

    @property
    def exit_status(self) -> int:
        m = EXIT.search(self.text)
        return int(m.group(1)) if m else 0


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: list[str]
    mark: str | None = None
    reason: str | None = None

    @property
    def where(self) -> str:
        return f"{named(self.page)}:{self.line}"

    def commands(self) -> list[Command]:
        console = any(line.startswith("$ ") for line in self.body)
        out: list[Command] = []
        lines = iter(enumerate(self.body, self.line + 1))
        for n, line in lines:
            if console and not line.startswith("$ "):
                if not out:
                    raise AssertionError(f"{self.where}: output before the first command")
                out[-1].output.append(line)
                continue
            text = line[2:] if console else line
            if not console and (not text.strip() or text.lstrip().startswith("#")):
                continue
            while text.rstrip().endswith("\\"):
                _, more = next(lines)
                text = text.rstrip()[:-1].rstrip() + " " + more.strip()
            out.append(Command(text.strip(), n, shows_output=console))
        return out


def named(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, with the mark on the line before each (blank lines aside)."""
    found, lines, i = [], page.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,})(\S*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if not lines[i][:indent].strip() else lines[i].lstrip())
            i += 1
        i += 1
        block = Block(page, start + 1, lang, body)
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        if before.startswith("<!--") and lang in SHELL | {"python"}:
            mark = MARK.fullmatch(before)
            assert mark, f"{block.where}: unknown mark {before!r} (see tests/test_docs.py)"
            block.mark, block.reason = mark.group(1), mark.group(2)
        found.append(block)
    return found


# -- the world each page runs in ------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, weights_file, samples):
    from xception_cli.engine import clear_engines

    clear_engines()  # `--weights imagenet` is one engine per process, whatever $XCEPTION_WEIGHTS says
    yield make_world(tmp_path_factory.mktemp("docs-world"), weights_file, samples)
    clear_engines()


def make_world(w: Path, weights_file: Path, samples: list[Path]) -> Path:
    from PIL import Image

    from xception_cli.synthetic import make_shapes_dataset

    cat = ROOT / "examples" / "cat.jpg"
    (w / "examples").mkdir(parents=True)
    shutil.copy(cat, w / "examples" / "cat.jpg")
    shutil.copy(cat, w / "cat.jpg")
    for folder in (w / "photos", w / "home" / "Photos"):
        folder.mkdir(parents=True)
        for p in samples:
            shutil.copy(p, folder / p.name)
    shutil.copy(w / "photos" / "cat.jpg", w / "photos" / "cat-copy.jpg")
    im = Image.open(w / "photos" / "cat.jpg")
    im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.BICUBIC).save(
        w / "photos" / "cat-small.jpg", quality=85)
    make_shapes_dataset(w / "plants", per_class=4)
    _link_or_copy(weights_file, w / "test-weights.h5")
    return w


def page_folder(world: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "page"
    shutil.copytree(world, folder, copy_function=_link_or_copy)
    return folder


def _link_or_copy(src, dst):  # the photos and weights are only read: hard links are enough
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def environment(folder: Path) -> dict[str, str]:
    return {"HOME": str(folder / "home"), "XCEPTION_WEIGHTS": str(folder / "test-weights.h5"),
            "XCEPTION_CACHE_DIR": str(folder / "home" / ".cache" / "xception-cli"),
            "COLUMNS": "80", "LINES": "50", "NO_COLOR": "1", "TERM": "dumb", "XCEPTION_DEBUG": None}


# -- running ----------------------------------------------------------------------------------------


def words(text: str) -> list[str] | None:
    """The command's words if it is one plain command (no pipe, redirection, list or
    substitution), else ``None``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    tokens = list(lexer)
    if any(t and set(t) <= set("|&;<>()") for t in tokens) or "$(" in text or "`" in text:
        return None
    return tokens


def command_words(text: str) -> list[str]:
    """The first word of each command in a pipeline or list."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    first, out = True, []
    for t in lexer:
        if t and set(t) <= set("|&;()"):
            first = True
        elif first and not (t and set(t) <= set("<>")):
            out.append(t)
            first = False
    return out


def shell_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XCEPTION_DEBUG",)}
    env.update({k: v for k, v in environment(folder).items() if v is not None})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def expand(argv_text: str, folder: Path) -> list[str]:
    """The arguments as bash would pass them (quotes, ``~``, globs, variables)."""
    out = subprocess.run(["bash", "-c", f'printf "%s\\0" {argv_text}'], cwd=folder, env=shell_env(folder),
                         capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


def run_xception(argv: list[str], folder: Path, stdin: str | None = None) -> tuple[int, str]:
    """``xception ARGV`` in this process: stdout a terminal, stderr not; stdout and stderr as they
    would interleave on a screen."""
    from click.testing import CliRunner

    from xception_cli.cli import cli, clock

    clock.STARTED = time.perf_counter()  # the closing line counts from the command's start, as in its own process
    old = os.getcwd()
    os.chdir(folder)
    try:
        with CliRunner().isolation(input=stdin, env=environment(folder)) as streams:
            sys.stdout.isatty = lambda: True  # the runner's own stream: a terminal for this command
            try:
                cli.main(argv, prog_name="xception")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            output = streams[-1].getvalue().decode("utf-8", "replace")
    finally:
        os.chdir(old)
    return code, output


def run_shell(text: str, folder: Path, merge: bool = True) -> tuple[int, str]:
    out = subprocess.run(["bash", "-c", text], cwd=folder, env=shell_env(folder), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merge else None, timeout=120)
    return out.returncode, out.stdout.decode("utf-8", "replace")


def run_command(cmd: Command, block: Block, folder: Path) -> tuple[int, str]:
    feed, text = None, cmd.text
    piped = re.fullmatch(r"([^|]*)\|\s*((?:\.venv/bin/)?xception\s.*)", text)
    if piped and words(piped.group(2)) and command_words(piped.group(1))[0] in TOOLS:
        code, feed = run_shell(piped.group(1), folder, merge=False)  # `find ... | xception predict -`
        assert code == 0, f"{block.where}: {piped.group(1)} exited with {code}"
        text = piped.group(2)
    argv = words(text)
    if argv and argv[0] in XCEPTION:
        rest = text.split(None, 1)[1] if len(argv) > 1 else ""
        return run_xception(expand(rest, folder) if rest else [], folder, feed)
    unknown = [w for w in command_words(cmd.text) if w not in XCEPTION | TOOLS]
    if unknown:
        pytest.fail(f"{block.where}: the runner cannot run {cmd.text!r} ({', '.join(unknown)}): mark the block "
                    "<!-- not run: REASON --> if it cannot run offline here", pytrace=False)
    return run_shell(cmd.text, folder)


def run_python(block: Block, folder: Path) -> None:
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(folder)
    os.environ.update({k: v for k, v in environment(folder).items() if v is not None})
    try:
        exec(compile("\n".join(block.body), block.where, "exec"), {"__name__": "__docs__"})
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


# -- comparing --------------------------------------------------------------------------------------


def normal(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = " ".join(BOX.sub(" ", ANSI.sub("", line)).split())
        if line:
            out.append(line)
    return out


def line_pattern(shown: str, numbers_vary: bool) -> re.Pattern:
    parts = []
    for i, piece in enumerate(shown.split("...")):
        if i:
            parts.append(".*?")
        pos = 0
        for m in re.finditer(HEX.pattern + (f"|{NUMBER.pattern}" if numbers_vary else ""), piece):
            parts.append(re.escape(piece[pos:m.start()]))
            parts.append(HEX.pattern if HEX.fullmatch(m.group()) else NUMBER.pattern)
            pos = m.end()
        parts.append(re.escape(piece[pos:]))
    return re.compile("".join(parts))


def matches(shown: list[str], actual: list[str], numbers_vary: bool) -> bool:
    if not shown:
        return not actual
    if shown[0] == "...":
        return any(matches(shown[1:], actual[k:], numbers_vary) for k in range(len(actual) + 1))
    return bool(actual) and bool(line_pattern(shown[0], numbers_vary).fullmatch(actual[0])) and matches(
        shown[1:], actual[1:], numbers_vary)


def run_page(page: Path, folder: Path, rewrite: bool = False) -> None:
    """Run a page's examples in ``folder``; with ``rewrite``, put what each command printed under it
    on the page instead of comparing (outputs the page elides with ``...`` are kept as they are)."""
    home, printed = str(folder / "home"), {}
    for block in blocks(page):
        if block.mark == "not run" or (block.lang not in SHELL and block.lang != "python"):
            continue
        if block.lang == "python":
            run_python(block, folder)
            continue
        for cmd in block.commands():
            code, output = run_command(cmd, block, folder)
            output = output.replace(home, "~").replace(str(folder) + os.sep, "")
            where = f"{named(page)}:{cmd.line}: $ {cmd.text}"
            assert code == cmd.exit_status, f"{where}\nexit status {code}, the page says {cmd.exit_status}\n{output}"
            if not cmd.shows_output or block.mark == "output not checked":
                continue
            if rewrite and not any("..." in line for line in cmd.output):
                printed[cmd.line] = [ANSI.sub("", line).rstrip() for line in output.splitlines()]
                continue
            shown, actual = normal(cmd.output), normal(output.splitlines())
            assert matches(shown, actual, block.mark == "numbers vary"), (
                f"{where}\n--- the page shows:\n" + "\n".join(cmd.output) + "\n--- the command printed:\n" + output)
    if printed:
        lines, out, n = page.read_text(encoding="utf-8").splitlines(), [], 0
        while n < len(lines):
            out.append(lines[n])
            n += 1
            if n in printed:  # a command's line (1-based): its old output goes, up to the next command or fence
                new = printed[n]
                while out[-1].rstrip().endswith("\\") and n < len(lines):  # the command's continuation lines
                    out.append(lines[n])
                    n += 1
                while n < len(lines) and not lines[n].startswith(("$ ", "```")):
                    n += 1
                out.extend(new)
        page.write_text("\n".join(out) + "\n", encoding="utf-8")


# -- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_shown(page, world, tmp_path):
    run_page(page, page_folder(world, tmp_path))


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: " + ", ".join(broken)


def test_readme_reads_in_five_minutes():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md is {len(lines)} lines: move detail to docs/"


def test_readme_keeps_the_ci_commands():
    """CI (.ci/run) installs and tests with the README's own commands."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make install" in text and "make test" in text


def test_every_page_is_reachable_from_the_readme():
    linked, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for m in LINK.finditer(text):
            target = (m.group(1) or m.group(2)).partition("#")[0]
            dest = (page.parent / target).resolve() if target and ":" not in target else None
            if dest and dest.suffix == ".md" and dest.exists() and dest not in linked:
                linked.add(dest)
                todo.append(dest)
    assert not [p.name for p in PAGES[1:] if p.resolve() not in linked]


def test_the_runner_compares_what_it_should(tmp_path):
    """The comparison itself: wildcards where the docs say, and nothing else."""
    assert matches(normal(["┃ A ┃ B ┃", "│ x │ 1 │"]), normal(["A   B", "x 1"]), False)
    assert not matches(["x 1"], ["x 2"], False) and matches(["x 1"], ["x 2.5"], True)
    assert matches(["a ... c"], ["a b b c"], False) and not matches(["a ... c"], ["a b b d"], False)
    assert matches(["one", "...", "four"], ["one", "two", "three", "four"], False)
    assert not matches(["one", "two"], ["one", "two", "three"], False)  # a line too many
    assert matches(['{"file_id": "3f9c2a61d0b7e845"}'], ['{"file_id": "00cf243126cf2f10"}'], False)
    page = tmp_path / "page.md"
    page.write_text("<!-- not run: needs the network -->\n```sh\ncurl x\n```\n\n```console\n$ xception a \\\n"
                    "  --b   # exit 2\nout\n```\n<!-- run it -->\n```json\n{}\n```\n")
    found = blocks(page)
    assert [(b.lang, b.mark) for b in found] == [("sh", "not run"), ("console", None), ("json", None)]
    (cmd,) = found[1].commands()
    assert (cmd.text, cmd.exit_status, cmd.output) == ("xception a --b   # exit 2", 2, ["out"])
    assert words("xception predict x | head") is None and words("xception predict 'a b'") == [
        "xception", "predict", "a b"]
    assert command_words("find . -name '*.jpg' | xception predict - > out.jsonl") == ["find", "xception"]


def test_a_block_that_cannot_run_must_say_why(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```sh\ncurl https://example.com\n```\n")
    with pytest.raises(pytest.fail.Exception, match=r"cannot run 'curl https://example.com' \(curl\): mark the block"):
        run_page(page, tmp_path)
    page.write_text("<!-- not run: needs the network -->\n```sh\ncurl https://example.com\n```\n")
    run_page(page, tmp_path)  # marked: skipped
    page.write_text("<!-- not run -->\n```sh\ncurl https://example.com\n```\n")  # no reason
    with pytest.raises(AssertionError, match="unknown mark"):
        blocks(page)


def test_shown_output_and_exit_status_are_held_to(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ printf 'a\\nb\\n'\na\nc\n```\n")
    with pytest.raises(AssertionError, match="the page shows"):
        run_page(page, tmp_path)
    page.write_text("```console\n$ test -e nothing-here\n```\n")
    with pytest.raises(AssertionError, match="exit status 1, the page says 0"):
        run_page(page, tmp_path)
    page.write_text("```console\n$ test -e nothing-here   # exit 1\n$ printf 'a\\nb\\n'\na\nb\n```\n")
    run_page(page, tmp_path)


def main(argv: list[str]) -> None:
    """``python tests/test_docs.py PAGE...``: run the pages as the test does and write what each
    command printed under it (after a change to what a command prints; review the diff)."""
    import tempfile

    from xception_cli.synthetic import make_weights_file

    os.environ.setdefault("XCEPTION_NO_CACHE", "1")
    samples = sorted((ROOT / "tests" / "data").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_weights_file(Path(tmp) / "xception_test.h5", samples, seed=0)  # as conftest's
        world = make_world(Path(tmp) / "world", weights, samples)
        for i, page in enumerate(argv):
            run_page(Path(page).resolve(), page_folder(world, Path(tmp) / f"page{i}"), rewrite=True)


if __name__ == "__main__":
    main(sys.argv[1:])
