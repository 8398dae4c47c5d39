"""Formulas as MathML, written when the site is built: no script, no network.

``pymdownx.arithmatex`` (generic mode) marks ``$...$`` and ``$$...$$`` in the pages as
``<span class="arithmatex">\\(...\\)</span>`` and ``<div class="arithmatex">\\[...\\]</div>``;
this MkDocs hook replaces each with the MathML that ``latex2mathml`` (pure Python, the
``docs`` extra) writes. Browsers draw MathML themselves (MathML Core: Chromium, Firefox,
Safari), so the site needs neither KaTeX nor MathJax, nor a CDN at read time, and builds
and reads offline. A browser without MathML shows the formula's symbols in a row, and
the TeX source stays in each formula's ``alttext``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def mathml(tex: str, display: str) -> str:
    """MathML of the (HTML-escaped) TeX ``tex``, with the TeX as its ``alttext``."""
    tex = html.unescape(tex).strip()
    alttext = html.escape(tex, quote=True)
    return convert(tex, display=display).replace("<math ", f'<math alttext="{alttext}" ', 1)


def on_page_content(html_text: str, **_: Any) -> str:
    html_text = BLOCK.sub(
        lambda match: f'<div class="formula">{mathml(match[1], "block")}</div>', html_text
    )
    return INLINE.sub(lambda match: mathml(match[1], "inline"), html_text)
