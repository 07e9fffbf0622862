"""The README stays a short tour whose links resolve, CI runs exactly its test command in one
environment, and every page of the manual is in the site's navigation (the links inside docs/
are checked by `mkdocs build --strict`, which .ci/run runs)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.support import REPO

README = REPO / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def anchors(markdown: str) -> set[str]:
    """The heading anchors Python-Markdown's toc (MkDocs) and GitHub give a page's headings."""
    found = set()
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            text = re.sub(r"[^\w\s-]", "", match.group(1).replace("`", "")).strip().lower()
            found.add(re.sub(r"[-\s]+", "-", text))
    return found


def local_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", path.read_text())) if not re.match(r"[a-z]+:", t)]


def test_readme_is_a_short_tour():
    assert len(README.read_text().splitlines()) <= 300


def test_every_local_link_of_the_readme_resolves():
    links = local_links(README)
    assert links, "the README links to the manual"
    for link in links:
        target, _, anchor = link.partition("#")
        path = (README.parent / target) if target else README
        assert path.exists(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in anchors(path.read_text()), f"README.md links to {link}: no such heading"


def test_the_anchor_rule_matches_headings_with_code_and_punctuation():
    assert anchors("# Results on this machine\n## ResNet20 / CIFAR-10\n### Ablation: CHITA's search\n") == {
        "results-on-this-machine",
        "resnet20-cifar-10",
        "ablation-chitas-search",
    }
    assert anchors("```\n# not a heading\n```\n## The `swap` search\n") == {"the-swap-search"}


def readme_test_command() -> str:
    section = README.read_text().split("## The tests", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert block, "the README's test section has a command"
    (command,) = block.group(1).strip().splitlines()
    return command


def test_ci_runs_exactly_the_readme_test_command_in_one_environment():
    command = readme_test_command()
    assert "pytest" in command and "-m venv" in command
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run does not run the README's test command: {command}"
    code = [line for line in ci if not line.lstrip().startswith("#")]
    assert sum(line.count("-m venv") for line in code) == 1, ".ci/run makes more than one virtual environment"
    assert any(line.split("#")[0].split()[-2:] == ["build", "--strict"] for line in code if "mkdocs" in line)


def test_every_page_of_the_manual_is_in_the_navigation():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["theme"]["name"] == "material" and config.get("strict") is True

    def pages(nav) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        if isinstance(nav, dict):
            return set().union(*(pages(v) for v in nav.values()))
        return set().union(*(pages(item) for item in nav))

    listed = pages(config["nav"])
    docs = REPO / "docs"
    assert {p.name for p in docs.glob("*.md")} <= listed
    assert all((docs / page).is_file() for page in listed), sorted(p for p in listed if not (docs / p).is_file())
