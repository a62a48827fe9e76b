"""The user-facing docs: relative links resolve, the README stays short and speaks of the project, not its history."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_BYTES = 20 * 1024
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md")])
MORE_READMES = [ROOT / p for p in ("benchmarks/README.md", "runtime/android/README.md", "android_demo/README.md")]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_HISTORY = re.compile(r"[Ii]ssue [0-9]+|^Status:|\bthis session\b", re.M)


def _prose(text: str) -> str:
    """The text with fenced blocks and code spans removed: links there are examples, not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file (lower case, punctuation dropped, spaces to '-')."""
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    for title in _HEADING.findall(_FENCE.sub("", md.read_text(encoding="utf-8"))):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").replace("*", "")
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(f"{slug}-{n}" if n else slug)            # GitHub numbers repeated headings
    return anchors


def broken_links(md: Path) -> list[str]:
    """Relative links in `md` whose file, or whose #anchor in a markdown file, does not exist."""
    bad = []
    for target in _LINK.findall(_prose(md.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):       # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor.lower() not in _anchors(dest):
            bad.append(f"{target} (no heading with that anchor)")
    return bad


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("md", DOCS + MORE_READMES, ids=_rel)
def test_relative_links_resolve(md: Path) -> None:
    assert broken_links(md) == []


@pytest.mark.parametrize("md", DOCS, ids=_rel)
def test_no_development_history(md: Path) -> None:
    assert _HISTORY.findall(md.read_text(encoding="utf-8")) == []


def test_readme_is_short() -> None:
    assert README.stat().st_size < README_MAX_BYTES


def test_readme_quickstart_runs_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = [line for line in ci if line.strip() and not line.startswith("#")][-1]
    assert command in README.read_text(encoding="utf-8").splitlines()


def test_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages and {p for p in pages if f"]({p})" not in index} == set()


@pytest.mark.parametrize("body, expected", [
    ("[ok](other.md) and [ok too](other.md#a-heading) and [web](https://example.com/x)", []),
    ("[gone](missing.md)", ["missing.md (no such file)"]),
    ("[bad anchor](other.md#no-such-heading)", ["other.md#no-such-heading (no heading with that anchor)"]),
    ("[self anchor](#nowhere)", ["#nowhere (no heading with that anchor)"]),
    ("`[code](missing.md)` and\n```\n[fenced](missing.md)\n```\n", []),
], ids=["valid", "missing-file", "missing-anchor", "missing-self-anchor", "code-is-not-a-link"])
def test_link_checker_catches_broken_links(tmp_path: Path, body: str, expected: list[str]) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(body, encoding="utf-8")
    assert broken_links(page) == expected
