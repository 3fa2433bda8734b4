"""mkdocs hooks for the offline docs site (loaded by the mkdocs.yml that tools/build_docs.py writes).

Math: `pymdownx.arithmatex` (generic mode) finds `$...$` / `$$...$$` in the Markdown and keeps it away from the
Markdown parser; here each formula becomes MathML (latex2mathml), which browsers render natively, so no MathJax
or KaTeX has to be loaded from a CDN. A formula latex2mathml cannot convert stays as TeX source.
"""
from __future__ import annotations

import html
import re

_re_math = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


def tex_to_mathml(tex: str, block: bool) -> str | None:
    try: from latex2mathml.converter import convert
    except ImportError: return None
    try: return convert(tex, display='block' if block else 'inline')
    except Exception: return None


def _replace(m) -> str:
    tag, body = m.group(1), html.unescape(m.group(2)).strip()
    block = tag == 'div'
    for open_, close in ((r'\[', r'\]'), (r'\(', r'\)'), ('$$', '$$'), ('$', '$')):
        if body.startswith(open_) and body.endswith(close):
            body = body[len(open_):len(body) - len(close)]
            break
    mathml = tex_to_mathml(body.strip(), block)
    if mathml is None: return m.group(0)
    return f'<{tag} class="math">{mathml}</{tag}>'


def on_page_content(html_text: str, **kwargs) -> str:
    return _re_math.sub(_replace, html_text)
