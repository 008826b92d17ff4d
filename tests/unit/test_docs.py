"""The documentation: a short README, relative links that resolve, and the CI timings file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXTERNAL = ("http://", "https://", "mailto:")


def doc_files(root: Path = ROOT) -> list[Path]:
    """The documents whose links are checked: README.md, docs/*.md, reports/desk/NOTES.md, bench/README.md."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "reports/desk/NOTES.md",
             root / "bench/README.md"]
    return [f for f in files if f.exists()]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation except '-' and '_' dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file defines through its headings (repeats get GitHub's -1, -2 suffixes)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """The targets of the Markdown links and images in text, outside code blocks and code spans."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    return LINK.findall(text) + IMAGE.findall(text)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Relative links of one Markdown file that do not resolve: a missing file, or an anchor no heading defines.

    External links (http, https, mailto) and links to paths outside `root` are not checked.
    """
    root = root.resolve()
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        if not dest.is_relative_to(root):
            continue
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.is_file() and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(root)}")
    return broken


def test_slug_follows_github():
    assert slug("Saliency criteria (SPEC §13–§14)") == "saliency-criteria-spec-1314"
    assert slug("On a GPU workstation (the paper's settings)") == "on-a-gpu-workstation-the-papers-settings"
    heading = "The desk profile: `make desk`, `make desk-evidence`"
    assert slug(heading) == "the-desk-profile-make-desk-make-desk-evidence"
    assert slug("seed_groups and A-B") == "seed_groups-and-a-b"


def test_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: here\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n"
        "Good: [other](other.md), [its section](other.md#a-section-here), [this](#doc), [web](https://x.org/y).\n"
        "Outside the root, skipped: [spec](../../outside/SPEC.md).\n"
        "In code, skipped: `[x](nowhere.md)`\n\n```\n[y](nowhere-either.md)\n```\n"
        "Broken: [gone](missing.md) and [bad anchor](other.md#no-such-section).\n"
    )
    assert broken_links(doc, root=tmp_path) == [
        "missing.md: no such file",
        "other.md#no-such-section: no heading with that anchor in other.md",
    ]
    (tmp_path / "missing.md").write_text("# Now here\n")
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: here\n\n## No such section\n")
    assert broken_links(doc, root=tmp_path) == []


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_the_documents_exist():
    for rel in ("README.md", "docs/running.md", "docs/design.md", "reports/desk/NOTES.md", "bench/README.md"):
        assert (ROOT / rel).is_file(), rel


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_ci_timings_parse():
    records = json.loads((ROOT / ".ci/timings.json").read_text(encoding="utf-8"))
    assert isinstance(records, list) and records
    for record in records:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["date"]), record
        assert isinstance(record["suite_min"], int | float) and record["suite_min"] > 0, record
        if "total_min" in record:
            assert record["total_min"] >= record["suite_min"], record
    dates = [r["date"] for r in records]
    assert dates == sorted(dates), "records are kept oldest first"
