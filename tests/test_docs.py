"""The README and docs/: every link and every repository path they name exists.

* Every relative link ``[text](path)`` (images and reference definitions too) of README.md
  and docs/**/*.md points at a file or directory of the repository, resolved from the
  linking file as GitHub does; a ``#anchor`` must be a heading (GitHub's anchor rules) or
  an explicit anchor of the linked markdown file, or of the same file.
* Every backticked repository path (``deploy/prometheus/rules/ccwatch.rules.yml``,
  ``docs/alerting.md``, ``tests/``: relative to the repository root, starting with one of
  its top-level entries) exists; a glob must match something.
* Nothing points outside the repository: no link leaves it, and no text names the machine's
  paths (``/work/...``) or the specs beside the repository (``../shared``).
* The Dockerfile's references to docs/ exist, and every page under docs/ is reachable from
  the README.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccwatch.http import USER_AGENT

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"

#: Paths the docs name that are made at run time, not kept in the repository.
GENERATED = {
    "deploy/compose/certs": "made by deploy/compose/make-certs.sh (gitignored)",
    ".venv": "made by make (gitignored)",
}
#: Code spans that look like repository paths but are not.
NOT_PATHS = {
    "grafana/grafana": "Grafana's container image",
}
#: Text that names something outside the repository.
OUTSIDE = ("/work/", "../shared", "shared/specs")
#: Pages that still name something outside the repository, with the fix. Strict xfail: the
#: test fails once the page is fixed, so that the entry is removed.
KNOWN_OUTSIDE: dict[str, str] = {}


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


# --------------------------------------------------------------------------- parsing

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:[^>]*\s)?(?:id|name)=\"([^\"]+)\"", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose(text: str) -> str:
    """The text outside fenced code blocks (fenced lines become empty lines)."""
    out = []
    fence: str | None = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * 3
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def without_code_spans(text: str) -> str:
    return CODE_SPAN.sub("``", text)


def code_spans(text: str) -> Iterator[str]:
    for match in CODE_SPAN.finditer(prose(text)):
        yield match.group(2).strip()


def links(text: str) -> list[str]:
    plain = without_code_spans(prose(text))
    return [m.group(1) for m in LINK.finditer(plain)] + REFERENCE.findall(plain)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text without markup, lower case, punctuation
    dropped (letters, digits, ``_`` and ``-`` stay), spaces turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    out = set(HTML_ANCHOR.findall(text))
    for line in prose(text).splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO)
    except ValueError:
        return False
    return True


def check_link(source: Path, target: str) -> str | None:
    """Why the link is broken, or None."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # http:, https:, mailto: ...: not the repository's
    if target.startswith("/"):
        return "an absolute path: link relative to the file"
    path_part, _, anchor = target.partition("#")
    resolved = (source.parent / path_part) if path_part else source
    if not inside_repo(resolved):
        return "points outside the repository"
    if not resolved.exists():
        return "no such file or directory"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.resolve()):
        return f"{resolved.relative_to(REPO)} has no heading with anchor #{anchor}"
    return None


@cache
def top_level() -> frozenset[str]:
    return frozenset(p.name for p in REPO.iterdir() if p.name != ".git")


PATHLIKE = re.compile(r"^[\w.@*?\[\]-]+(?:/[\w.@*?\[\]-]+)*/?$")
FILE_NAME = re.compile(r"^[^.]+$|\.[A-Za-z][A-Za-z0-9]*$")


def repo_paths(text: str) -> Iterator[str]:
    """The backticked code spans that are repository paths: relative, with a ``/``, their
    first part a top-level entry of the repository, and their last part a directory
    (``deploy/kubernetes``, ``tests/``) or a file name with an extension. Placeholders
    (``ccwatch/sources/<vendor>.py``), versions (``ccwatch/0.1.0``) and the like are not."""
    for span in code_spans(text):
        if "/" not in span or not PATHLIKE.match(span):
            continue
        first, *_ = span.split("/")
        last = span.rstrip("/").rsplit("/", 1)[-1]
        if span in NOT_PATHS:
            continue
        if first in top_level() and (span.endswith("/") or FILE_NAME.search(last)):
            yield span


def check_repo_path(path: str) -> str | None:
    clean = path.rstrip("/")
    if any(clean == g or clean.startswith(f"{g}/") for g in GENERATED):
        return None
    if not inside_repo(REPO / clean):
        return "points outside the repository"
    if any(c in clean for c in "*?["):
        return None if any(REPO.glob(clean)) else "the pattern matches nothing"
    return None if (REPO / clean).exists() else "no such file or directory"


# --------------------------------------------------------------------------- the checks


def test_the_helpers_follow_github() -> None:
    assert slug("Debugging a target: ccwatch probe") == "debugging-a-target-ccwatch-probe"
    assert slug("Genesys Mobile Services probe (`source: gms_probe`)") == (
        "genesys-mobile-services-probe-source-gms_probe"
    )
    assert slug("Opening hours, thresholds and SLOs") == "opening-hours-thresholds-and-slos"
    assert slug("Resilience: reloads, reload time, gzip bombs") == (
        "resilience-reloads-reload-time-gzip-bombs"
    )
    assert links("[a](x.md) `[b](not-a-link.md)` ![c](img.png)\n\n```\n[d](e.md)\n```") == [
        "x.md",
        "img.png",
    ]
    text = "`deploy/prometheus/rules/ccwatch.rules.yml` `ccwatch/0.1.0` `docs/<x>.md` `tests/`"
    assert list(repo_paths(text)) == ["deploy/prometheus/rules/ccwatch.rules.yml", "tests/"]


@pytest.mark.parametrize("path", markdown_files(), ids=ids(markdown_files()))
def test_links_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken = [f"{t}: {why}" for t in links(text) if (why := check_link(path, t))]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", markdown_files(), ids=ids(markdown_files()))
def test_backticked_repository_paths_exist(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken = [f"{p}: {why}" for p in repo_paths(text) if (why := check_repo_path(p))]
    assert not broken, "\n".join(broken)


def _outside_cases() -> list[Any]:
    cases = []
    for path in markdown_files():
        name = str(path.relative_to(REPO))
        reason = KNOWN_OUTSIDE.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        cases.append(pytest.param(path, id=name, marks=marks))
    return cases


@pytest.mark.parametrize("path", _outside_cases())
def test_nothing_points_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for needle in OUTSIDE:
        assert needle not in text, f"{path.relative_to(REPO)} names {needle!r}"


def test_the_dockerfile_references_existing_docs() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    named = re.findall(r"\bdocs/[\w./-]*\w", text)
    assert named, "the Dockerfile points at its documentation"
    for name in named:
        assert (REPO / name).is_file(), name


def test_every_page_is_reachable_from_the_readme() -> None:
    reached: set[Path] = set()
    todo = [README]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in links(page.read_text(encoding="utf-8")):
            path_part = target.partition("#")[0]
            if SCHEME.match(target) or not path_part.endswith(".md"):
                continue
            linked = (page.parent / path_part).resolve()
            if linked.is_file() and inside_repo(linked):
                todo.append(linked)
    orphans = [p for p in markdown_files() if p.resolve() not in reached]
    assert not orphans, f"not linked from the README or a page it links: {ids(orphans)}"


def test_the_readme_is_a_newcomers_path() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    quick_start = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start
    assert "make test" in quick_start
    for page in ("prerequisites", "configuration", "metrics", "alerting", "deploy", "security"):
        assert f"(docs/{page}.md" in text, page


def test_prerequisites_quote_the_user_agent() -> None:
    text = (DOCS / "prerequisites.md").read_text(encoding="utf-8")
    assert f"User-Agent: {USER_AGENT}" in text


def _alerts() -> dict[str, dict[str, Any]]:
    rules = yaml.safe_load(
        (REPO / "deploy" / "prometheus" / "rules" / "ccwatch.rules.yml").read_text("utf-8")
    )
    return {
        rule["alert"]: rule["labels"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_the_alerting_page_lists_every_alert_by_audience_and_severity() -> None:
    text = (DOCS / "alerting.md").read_text(encoding="utf-8")
    rows = {
        (m.group(1), m.group(2)): m.group(3)
        for m in re.finditer(r"^\| `(\w+)` \| `(\w+)`[^|]*\| (.*) \|$", text, re.M)
    }
    listed = {name for row in rows.values() for name in re.findall(r"`(Ccwatch\w+)`", row)}
    alerts = _alerts()
    assert listed == set(alerts)
    for name, labels in alerts.items():
        row = rows[(labels["audience"], labels["severity"])]
        assert f"`{name}`" in row, name
