"""The built site as a reader meets it: every page rendered, nothing left raw.

``make docs`` builds the site and then runs these checks on it (``ATROUS_SITE=site``, a
few seconds). Run alone, they build the site into a temporary folder first (half a
minute), so they are marked slow and ``make test`` leaves them to ``make docs``.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site: ``$ATROUS_SITE`` when set (make docs), else a fresh strict build."""
    given = os.environ.get("ATROUS_SITE")
    if given:
        return Path(given).resolve()
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return out


def page(site: Path, name: str) -> str:
    path = site / name / "index.html"
    assert path.is_file(), f"{name} is not in the site"
    return path.read_text()


def article(text: str) -> str:
    """The page's own content (without navigation), as HTML."""
    start = text.index('<article class="md-content__inner')
    return text[start : text.index("</article>", start)]


def visible(fragment: str) -> str:
    """Text a reader sees: tags (and their attributes, alttext included) removed."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def table_rows(fragment: str) -> list[list[str]]:
    """The cells of every table row of ``fragment``, as visible text."""
    rows = re.findall(r"<tr>(.*?)</tr>", fragment, flags=re.S)
    return [[visible(c).strip() for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]


def html_pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_no_raw_sphinx_roles(site: Path) -> None:
    role = re.compile(r":(class|func|meth|data|mod|attr|exc):`")
    raw = [str(p.relative_to(site)) for p in html_pages(site) if role.search(p.read_text())]
    assert not raw, f"raw Sphinx roles (write ``Name`` instead) in {raw}"


def test_the_catalogue_lists_every_registered_and_shipped_model(site: Path) -> None:
    from atrous.models import list_models, shipped_models

    names = {row[0] for row in table_rows(article(page(site, "reference/catalogue"))) if row}
    missing = [name for name in [*list_models(), *shipped_models()] if name not in names]
    assert not missing, f"not on the catalogue page: {missing}"


def test_the_cli_page_lists_every_flag_of_every_command(site: Path) -> None:
    from atrous.cli import build_parser

    text = visible(article(page(site, "reference/cli")))
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in action.choices.items():
        assert f"atrous {name}" in text, name
        for flag in (s for a in sub._actions for s in a.option_strings):
            assert flag in text, (name, flag)


def test_every_config_key_has_a_description(site: Path) -> None:
    from atrous.engine.config import config_keys

    rows = {row[0]: row for row in table_rows(article(page(site, "reference/config-keys"))) if row}
    for key, _, _ in config_keys():
        assert key in rows, key
        assert len(rows[key][3]) > 10, f"{key}: no description ({rows[key]})"


def test_formulas_are_rendered_not_left_as_tex_or_code(site: Path) -> None:
    tex_left = re.compile(r"\\(?:sum|max|times|le|big)\b|\\\(|\\\[")
    for path in html_pages(site):
        content = article(path.read_text()) if "md-content__inner" in path.read_text() else ""
        name = str(path.relative_to(site))
        assert 'class="arithmatex"' not in content, f"{name}: a formula was not converted"
        # Inline code holding $...$ is a formula shown as code.
        inline_code = re.findall(r"(?<!<pre>)<code>([^<]*)</code>", content)
        assert not [c for c in inline_code if re.search(r"\$[^$\s][^$]*\$", c)], name
        assert not tex_left.search(visible(content)), f"{name}: TeX shown as text"
    definition = article(page(site, "tutorial/01-definition"))
    assert definition.count("<math ") >= 8
    assert '<math alttext="y[i] = \\sum_{k=1}^{K}' in definition
    assert 'display="block"' in definition and "&#x02211;" in definition  # the sum sign


def test_the_benchmarks_page_is_the_repositorys_benchmarks(site: Path) -> None:
    text = page(site, "benchmarks")
    content = visible(article(text))
    source = (REPO_ROOT / "BENCHMARKS.md").read_text()
    for heading in re.findall(r"^#{1,3} (.+)$", source, flags=re.M):
        assert visible(heading.replace("`", "")) in content, heading
    # Reachable from every page's navigation, and links to files of the repository
    # became their names (the site does not hold them).
    assert 'href="benchmarks/"' in (site / "index.html").read_text()
    assert not re.search(r'href="[^"#]*\.md"', article(text))


def test_how_to_pages_show_what_their_blocks_print(site: Path) -> None:
    for source in sorted((REPO_ROOT / "docs" / "how-to").glob("*.md")):
        text = source.read_text()
        blocks = re.findall(r"(<!-- skip[^>]*-->\s*)?```python([^\n]*)\n(.*?)```", text, re.S)
        printing = [options for skip, options, code in blocks if "print(" in code and not skip]
        for options in printing:
            assert 'exec="on"' in options and "result=" in options, (source.name, options)
        if printing:
            shown = article(page(site, f"how-to/{source.stem}"))
            assert shown.count('class="language-text highlight"') >= len(printing), source.name


def test_commands_wrap_and_keep_clear_of_the_copy_button(site: Path) -> None:
    css = (site / "stylesheets" / "extra.css").read_text()
    assert "white-space: pre-wrap" in css and "padding-right" in css
    serve = page(site, "how-to/serve")
    assert "stylesheets/extra.css" in serve
    assert 'class="language-console highlight"' in serve
