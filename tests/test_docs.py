"""The README and docs/: relative links resolve, `specks` commands shown parse, the README stays short.

Nothing here runs a command: each `specks ...` line of a code block goes through the real argparse
parser only. Usage synopses with `[optional]` parts are fenced as ```text and are not parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from specks.cli import build_parser

README = REPO_ROOT / "README.md"
DOC_PAGES = sorted((REPO_ROOT / "docs").glob("*.md"))
DOC_FILES = [README, *DOC_PAGES]
README_MAX_LINES = 300

# Code blocks whose lines are shell commands; ```text, ```json, ```python and the rest are not.
COMMAND_FENCES = frozenset({"", "bash", "sh", "shell", "console"})
FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)\)")
INLINE_CODE = re.compile(r"(`+).*?\1")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A line that runs specks: an optional `$ ` prompt, optional VAR=value assignments, then the program.
SPECKS_LINE = re.compile(r"""^\s*(?:\$\s+)?(?:[A-Za-z_]\w*=(?:"[^"]*"|'[^']*'|\S)*\s+)*(?:\S*/)?specks(?:\s|$)""")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ">", ">>", "<", ">&", "<&", "(", ")"})


@dataclass(frozen=True)
class Line:
    """One line of a markdown file; ``fence`` is the info string of its code block, None outside one."""

    number: int
    text: str
    fence: str | None


def markdown_lines(markdown: str) -> list[Line]:
    """Every line that is not a fence marker itself, with the code block (if any) it belongs to."""
    lines: list[Line] = []
    marker: str | None = None
    info: str | None = None
    for number, text in enumerate(markdown.splitlines(), start=1):
        opening = FENCE_OPEN.match(text)
        if marker is None and opening:
            marker, info = opening.group(1), opening.group(2).lower()
        elif marker is not None and text.strip().startswith(marker) and not text.strip().strip(marker[0]):
            marker = info = None
        else:
            lines.append(Line(number, text, info if marker is not None else None))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link markup dropped, lowercase, punctuation other than hyphens
    and underscores removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in markdown_lines(markdown):
        heading = HEADING.match(line.text) if line.fence is None else None
        if heading is None:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code that is not a URL (http, mailto)."""
    links = []
    for line in markdown_lines(markdown):
        if line.fence is not None:
            continue
        for match in LINK.finditer(INLINE_CODE.sub("", line.text)):
            if not URL_SCHEME.match(match.group(1)):
                links.append((line.number, match.group(1)))
    return links


def broken_links(path: Path) -> list[str]:
    """One message per relative link of ``path`` whose file is missing, or whose #anchor names no
    heading of the markdown page it points to."""
    problems = []
    for number, target in relative_links(path.read_text(encoding="utf-8")):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part) if file_part else path
        where = f"{path.name}:{number}: {target}"
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text(encoding="utf-8")):
            problems.append(f"{where}: no heading with that anchor in {destination.name}")
    return problems


def strip_comment(command: str) -> str:
    """The command without a trailing `# comment` (a # that starts a word, outside quotes)."""
    quote = None
    for index, char in enumerate(command):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1].isspace()):
            return command[:index].rstrip()
    return command


def shell_commands(markdown: str) -> list[tuple[int, str]]:
    """(first line number, command) of each command line in shell code blocks: comments removed,
    lines continued with a trailing backslash joined."""
    commands: list[tuple[int, str]] = []
    start, joined = 0, ""
    for line in markdown_lines(markdown):
        if line.fence not in COMMAND_FENCES:
            continue
        text = strip_comment(line.text).strip()
        continued = text.endswith("\\")
        if not joined:
            start = line.number
        piece = text.removesuffix("\\").strip()
        joined = f"{joined} {piece}".strip()
        if not continued and joined:
            commands.append((start, joined))
            joined = ""
    return commands


def specks_arguments(command: str) -> list[str] | None:
    """The arguments after `specks` when ``command`` runs it (after a `$ ` prompt and VAR=value
    assignments), up to the first shell operator (|, &&, >, ...); None for any other command."""
    if not SPECKS_LINE.match(command):
        return None
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words = list(lexer)
    if words[0] == "$":
        words = words[1:]
    while ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    arguments = words[1:]
    for index, word in enumerate(arguments):
        if word in SHELL_OPERATORS:
            return arguments[:index]
    return arguments


def parse_failure(arguments: list[str]) -> str | None:
    """argparse's complaint about ``arguments``, or None when `specks` accepts them."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(arguments)
    except SystemExit as exc:
        message = stderr.getvalue().strip().splitlines()
        return message[-1] if message else f"exit status {exc.code}"
    return None


def synopsis_flags(markdown: str) -> list[tuple[int, str, str]]:
    """(line number, command, --flag) of each flag in ```text usage synopses: lines starting with
    `specks COMMAND`, and the indented lines under them that continue it."""
    found: list[tuple[int, str, str]] = []
    command = None
    for line in markdown_lines(markdown):
        if line.fence != "text":
            command = None
            continue
        start = re.match(r"specks ([\w-]+)", line.text)
        if start:
            command = start.group(1)
        elif not line.text.startswith(" "):
            command = None
        if command is not None:
            found.extend((line.number, command, flag) for flag in re.findall(r"(?<![\w-])(--[\w-]+)", line.text))
    return found


def command_options() -> dict[str, set[str]]:
    """Each `specks` command's option strings, from the real parser."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: set(parser._option_string_actions) for name, parser in commands.choices.items()}


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command) of every `specks` command line in the README's and docs' code blocks."""
    found = []
    for path in DOC_FILES:
        for number, command in shell_commands(path.read_text(encoding="utf-8")):
            if SPECKS_LINE.match(command):
                found.append((f"{path.relative_to(REPO_ROOT).as_posix()}:{number}", command))
    return found


COMMANDS = documented_commands()


def doc_id(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


# -- the checkers, on made-up pages -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("`POST /predict`", "post-predict"),
        ("DeepStack / CodeProject.AI", "deepstack--codeprojectai"),
        ("Batches: one run or one per image", "batches-one-run-or-one-per-image"),
        ("The first model it made: `yolox-nano-thermal`", "the-first-model-it-made-yolox-nano-thermal"),
        ("Roboflow (`inference-sdk`)", "roboflow-inference-sdk"),
        ("A second development set, and what else was tried", "a-second-development-set-and-what-else-was-tried"),
        ("[Linked](x.md) heading_with_underscore", "linked-heading_with_underscore"),
    ],
)
def test_slug_follows_githubs_rule(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_anchors_number_repeated_headings_and_skip_code() -> None:
    page = "# Measured\n\ntext\n\n## Measured\n\n```bash\n# not a heading\n```\n### Measured ###\n"
    assert anchors(page) == {"measured", "measured-1", "measured-2"}


def test_the_link_checker_reports_each_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## `POST /predict`\n\n[back](../README.md#top)\n")
    (tmp_path / "docs" / "shot.png").write_bytes(b"")
    (tmp_path / "README.md").write_text(
        "# Top\n\n"
        "[fine](docs/page.md#post-predict) [self](#top) ![shot](docs/shot.png) [web](https://example.org/x#y)\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#predict) ![lost](shot.png)\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n"
    )
    assert broken_links(tmp_path / "docs" / "page.md") == []
    assert broken_links(tmp_path / "README.md") == [
        "README.md:4: docs/missing.md: no such file",
        "README.md:4: docs/page.md#predict: no heading with that anchor in page.md",
        "README.md:4: shot.png: no such file",
    ]


def test_commands_are_found_joined_and_cut_at_shell_operators() -> None:
    page = (
        "```bash\n"
        "make dev                                  # not specks\n"
        "SPECKS_X=1 A='b c' .venv/bin/specks serve --port 80 \\\n"
        "    --workers 2   # a comment's apostrophe\n"
        "specks ray-config --port 8000 > specks-serve.yaml && serve deploy specks-serve.yaml\n"
        "```\n\n"
        "```text\nspecks serve [--host HOST]\n```\n\n"
        "```\n$ specks config\nspecks: error: output, not a command\n```\n"
    )
    commands = shell_commands(page)
    found = [(number, specks_arguments(command)) for number, command in commands]
    assert [item for item in found if item[1] is not None] == [
        (3, ["serve", "--port", "80", "--workers", "2"]),
        (5, ["ray-config", "--port", "8000"]),
        (13, ["config"]),
    ]
    assert synopsis_flags("```text\nspecks eval DATASET [--json]\n    [--no-such]\nnot specks --x\n```\n") == [
        (2, "eval", "--json"),
        (3, "eval", "--no-such"),
    ]
    assert parse_failure(["serve", "--port", "80"]) is None
    assert "unrecognized arguments" in (parse_failure(["eval", "data", "[--imgsz", "416]"]) or "")


# -- the real pages ---------------------------------------------------------------------------------


def test_the_readme_is_at_most_300_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference text into docs/"


def test_the_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for _, target in relative_links(README.read_text(encoding="utf-8"))}
    assert {f"docs/{page.name}" for page in DOC_PAGES} <= linked


@pytest.mark.parametrize("path", DOC_FILES, ids=doc_id)
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOC_FILES, ids=doc_id)
def test_usage_synopses_name_real_options(path: Path) -> None:
    options = command_options()
    unknown = [
        f"{path.name}:{number}: specks {command} has no {flag}"
        for number, command, flag in synopsis_flags(path.read_text(encoding="utf-8"))
        if flag not in options.get(command, set())
    ]
    assert unknown == []


def test_the_pages_show_specks_commands() -> None:
    # A collector that silently found nothing would pass every command test below.
    assert len(COMMANDS) >= 30
    assert any(where.startswith("README.md:") for where, _ in COMMANDS)


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_specks_commands_parse(where: str, command: str) -> None:
    try:
        arguments = specks_arguments(command)
    except ValueError as exc:  # shlex: an unclosed quote
        pytest.fail(f"{where}: `{command}` is not a shell command line: {exc}")
    assert arguments is not None
    failure = parse_failure(arguments)
    assert failure is None, f"{where}: `{command}` does not parse with specks.cli.build_parser(): {failure}"
