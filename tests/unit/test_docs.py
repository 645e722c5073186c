"""The manual: every spec field and every command-line option is described and on its generated
page, every path and link the pages name exists, and the site builds with ``--strict`` (which
fails on a broken link or a missing page)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from augstream._cli import _parser
from augstream_protocol.fields import ArrayRefs, Position, Shard, StatsRefs
from augstream_protocol.spec import StreamSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: The models whose fields the spec reference lists, and the spec field that holds each.
HELD: dict[str, type[BaseModel]] = {
    "start": Position,
    "shard": Shard,
    "arrays": ArrayRefs,
    "stats": StatsRefs,
}


def _hook() -> ModuleType:
    """``docs/hooks/reference.py``, loaded from its path as MkDocs loads it."""
    spec = importlib.util.spec_from_file_location("reference_hook", DOCS / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _hook()


def _fields() -> list[tuple[str, str | None]]:
    """Every field the spec reference documents, as it names it, with its description."""
    fields = [(name, f.description) for name, f in StreamSpec.model_fields.items()]
    for holder, model in HELD.items():
        fields += [(f"{holder}.{name}", f.description) for name, f in model.model_fields.items()]
    return fields


def _commands() -> dict[str, argparse.ArgumentParser]:
    return dict(reference._subcommands(_parser()))


def test_every_spec_field_has_a_description() -> None:
    undescribed = [name for name, description in _fields() if not (description or "").strip()]
    assert not undescribed, f"fields without a docstring under them: {undescribed}"


def test_the_held_models_are_the_spec_fields_models() -> None:
    for holder, model in HELD.items():
        assert model.__name__ in str(StreamSpec.model_fields[holder].annotation), holder


def test_every_spec_field_is_on_the_generated_page_with_its_description() -> None:
    page = reference.spec_markdown()
    for name, description in _fields():
        row = next((line for line in page.splitlines() if f"`{name}` |" in line), None)
        assert row is not None, f"{name} is not on the spec reference"
        assert reference._markdown_text(description or "") in row, name


def test_every_cli_option_has_help_and_is_on_the_generated_page() -> None:
    page = reference.cli_markdown()
    commands = _commands()
    assert {"serve", "datasets", "preview", "bench", "demo"} <= set(commands)
    for name, command in commands.items():
        assert f"## `augstream {name}`" in page, name
        assert command.description, f"augstream {name} has no description"
        for action in reference.arguments(command):
            label = f"augstream {name} {action.dest}"
            assert action.help and action.help.strip(), f"{label} has no help text"
            assert not re.fullmatch(r"\(default: [^)]*\)", action.help), f"{label}: only a default"
            assert f"| `{reference._argument(action)}` |" in page, f"{label} is not on the page"


def test_the_routes_page_lists_every_route_of_the_api() -> None:
    page = reference.http_markdown()
    for path in ("/healthz", "/v1/stream", "/v1/arrays/{digest}", "/v1/stats", "/metrics"):
        assert f"`{path}`" in page, path


def test_markers_are_replaced_and_an_unknown_one_fails() -> None:
    page = reference.on_page_markdown("# x\n\n<!-- generated: cli -->\n")
    assert "## `augstream serve`" in page and "generated:" not in page
    with pytest.raises(ValueError, match="unknown reference 'nope'"):
        reference.on_page_markdown("<!-- generated: nope -->\n")


def test_the_reference_pages_ask_for_their_generated_parts() -> None:
    for page, marker in [("spec", "spec-fields"), ("cli", "cli"), ("http", "http-routes")]:
        text = (DOCS / "reference" / f"{page}.md").read_text()
        assert f"\n<!-- generated: {marker} -->\n" in text, page


# Paths the pages name in code (`tests/unit/test_masks.py`), and the README's relative links.
PATH = re.compile(r"`((?:tests|client|service|protocol|benchmarks|docs|docker)/[\w./-]+)`")
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize(
    "page", [*sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md")), "README.md"]
)
def test_every_repository_path_a_page_names_exists(page: str) -> None:
    text = (ROOT / page).read_text()
    missing = [p for p in PATH.findall(text) if not (ROOT / p.rstrip("/.")).exists()]
    assert not missing, f"{page} names paths that do not exist: {missing}"


def test_every_relative_link_of_the_readme_exists() -> None:
    links = [
        link
        for link, _ in LINK.findall((ROOT / "README.md").read_text())
        if "://" not in link and not link.startswith("mailto:")
    ]
    assert links, "the README links into docs/"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_field_and_command(tmp_path: Path) -> None:
    built = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    spec_page = (tmp_path / "site" / "reference" / "spec" / "index.html").read_text()
    for name, _ in _fields():
        assert f'id="{name}"' in spec_page, name
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for name in _commands():
        assert f"augstream {name}" in cli_page, name
    assert "generated:" not in spec_page + cli_page
    assert not list((tmp_path / "site").rglob("*.py")), "the docs' tooling is not published"


@pytest.mark.slow
def test_a_broken_link_or_a_missing_page_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "docs" / "demo.md").unlink()
    with (copy / "docs" / "index.md").open("a") as index:
        index.write("\n[a page that is not there](users/nowhere.md)\n")
    built = _build(copy / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    assert "demo.md" in built.stderr and "users/nowhere.md" in built.stderr, built.stderr
