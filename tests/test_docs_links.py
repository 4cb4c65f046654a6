"""The front page and docs/ name files of this repository: a renamed or moved file, or a page
that was split, must not leave a link or a backticked path pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
# A path as the docs write one: plain names joined by slashes (placeholders such as <hash>, globs
# and {md,csv} alternatives are patterns, not files).
_PATH = re.compile(r"[\w.-]+(/[\w.-]+)*/?")


def _prose(page: Path) -> str:
    """The page without its fenced blocks, whose text is code or output, not references."""
    return _FENCE.sub("", page.read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(page).splitlines() if line.startswith("#")}


def _ignored_folders(root: Path) -> set[str]:
    """Top-level folders .gitignore keeps out of the repository (runs/, reports/*, .venv/...):
    paths under them are a run's outputs, which the docs may name without their existing here."""
    folders = set()
    for line in (root / ".gitignore").read_text().splitlines():
        match = re.fullmatch(r"/?([\w.-]+)/\*?", line.strip())
        if match:
            folders.add(match.group(1))
    return folders


def _source_folders(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir() and p.name != ".git"} - _ignored_folders(root)


def _package_subfolders(root: Path, folders: set[str]) -> set[str]:
    return {sub.name for folder in folders for sub in (root / folder).iterdir()
            if sub.is_dir() and (sub / "__init__.py").is_file()}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: outside the repository
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        where = page.relative_to(root).as_posix()
        if not linked.exists():
            problems.append(f"{where}: link to {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            shown = file_part or page.name
            problems.append(f"{where}: link to {target}: no heading #{anchor} in {shown}")
    return problems


def broken_paths(page: Path, root: Path = ROOT) -> list[str]:
    sources = _source_folders(root)
    subfolders = _package_subfolders(root, sources)
    where = page.relative_to(root).as_posix()
    problems = []
    for span in _CODE.findall(_prose(page)):
        if "/" not in span or not _PATH.fullmatch(span):
            continue
        first = span.split("/")[0]
        names_a_file = "." in span.rstrip("/").split("/")[-1]
        if first in sources and not (root / span).exists():
            problems.append(f"{where}: `{span}` does not exist in the repository")
        elif first not in sources and first in subfolders and names_a_file:
            # `data/captions.py`: experiments/ or repro/? The docs write paths from the root, so
            # that they can be checked at all.
            problems.append(f"{where}: `{span}` is short for a path inside a package; write it from the root")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_point_at_existing_files_and_headings(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_backticked_paths_exist(page):
    assert broken_paths(page) == []


def test_a_missing_file_a_missing_heading_and_a_short_path_are_each_reported(tmp_path):
    (tmp_path / ".gitignore").write_text("/runs/\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "experiments" / "training").mkdir(parents=True)
    (tmp_path / "experiments" / "training" / "__init__.py").touch()
    (tmp_path / "experiments" / "config.py").touch()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tiers.md").write_text("# Tiers\n\n## Full tier\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n[gone](docs/nowhere.md), [bad anchor](docs/tiers.md#tiny-tier), "
        "[good](docs/tiers.md#full-tier), [here](#title), [web](https://example.org/x.md)\n"
        "`experiments/no_such_module.py`, `training/loop.py`, `experiments/config.py`, `runs/abc/x.py`, "
        "`unilm/models/aligner.py`, `runs/<hash>/x.py`\n"
        "```\n[in a fence](ignored.md) `experiments/ignored.py`\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "README.md: link to docs/nowhere.md: no such file",
        "README.md: link to docs/tiers.md#tiny-tier: no heading #tiny-tier in docs/tiers.md",
    ]
    assert broken_paths(page, tmp_path) == [
        "README.md: `experiments/no_such_module.py` does not exist in the repository",
        "README.md: `training/loop.py` is short for a path inside a package; write it from the root",
    ]


def test_every_docs_page_is_linked_from_the_front_page():
    targets = _LINK.findall(_prose(ROOT / "README.md"))
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in targets}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []
