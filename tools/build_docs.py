#!/usr/bin/env python
"""Build the documentation site from the notebooks, offline, without Quarto.

    python tools/build_docs.py                 # executes the notebooks, writes site/
    python tools/build_docs.py --no-execute    # keeps stored outputs (runs only what `show_doc` needs)

How it works:

1. Every notebook in `nbs/` (recursively, nbdev's own glob: files and folders starting with `_` or `.` are
   skipped) and in `benchmarks/` is put through nbdev's notebook processors — the same ones `nbdev-docs`
   uses before handing the notebooks to Quarto: frontmatter, `add_show_docs` (API docs for every exported
   class and function), hidden/exported cells removed, directives stripped, housekeeping magics removed,
   symbol names linked. Quarto-only processors (`clean_show_doc`, `add_fold`, `insert_warning`) are replaced
   by their equivalent in the Markdown writer below.
2. Any name in a module's `__all__` that still has no `show_doc` gets one (variables such as a ContextVar
   get a small value entry), so every public name has an API entry with an anchor (`#request`,
   `#jsonmodel.to_dict`: nbdev's own anchors, so nbdev's doc links resolve locally).
3. Notebooks are executed in a fresh IPython shell (execnb's `CaptureShell`, as `nbdev-test` does) with the
   notebook's folder as working directory and `IN_TEST=1`; cells flagged with a `tst_flags` flag
   (`slow`, `full`), `#| eval: false` cells and notebooks with `skip_exec: true` frontmatter are not run.
   With `--no-execute` only the cells `show_doc` needs run (nbdev's `exec_show_docs` rule) and the other
   cells keep the outputs stored in the notebook.
4. Each processed notebook becomes one Markdown page (plots saved as PNG/SVG files next to it) named as
   nbdev names its pages (`00_core.ipynb` -> `core.html`), and mkdocs with the Material theme renders the
   site: navigation in file-name order (`index` first), benchmark notebooks in their own section, an API
   index of every public name, and client-side search that works from `file://` (Material's offline
   plugin). No web font, CDN script or remote stylesheet is referenced.

Intermediate files go to `_mkdocs/` (git-ignored); the site goes to `site/` (or `--out`).
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import html
import importlib
import multiprocessing
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {'.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp'}
NB_CONFIG_FILES = {'_quarto.yml', 'nbdev.yml', 'sidebar.yml', 'styles.css'}


# ---------------------------------------------------------------------------------------------------------------
# Discovering notebooks and naming pages

@dataclass
class Source:
    "One notebook to render: where it is, which page it becomes and which nav section it belongs to."
    nb_path: Path      # absolute path of the notebook
    page: str          # page path inside the docs dir, e.g. 'core.md' or 'benchmarks/perf_routing.md'
    section: tuple     # nav section path, e.g. () for nbs/ top level, ('Benchmarks',) for benchmarks


def page_name(rel: Path) -> str:
    "nbdev's page name for a notebook path relative to its root (`00_core.ipynb` -> `core.md`)."
    from nbdev.config import nbpath2html
    return nbpath2html(rel).with_suffix('.md').as_posix()


def _sort_key(rel: Path):
    "File-name order, with `index` first in its folder (as nbdev's sidebar does)."
    return tuple(('00' if p.startswith('index.') and i == len(rel.parts) - 1 else '1' + p)
                 for i, p in enumerate(rel.parts))


def find_sources(nbs: Path, benchmarks: Path | None) -> list[Source]:
    "Every notebook in `nbs` (nbdev's glob rules) and in `benchmarks`, in reading order."
    from nbdev.doclinks import nbglob
    sources = []
    nb_files = sorted((Path(p).relative_to(nbs) for p in nbglob(nbs)), key=_sort_key)
    for rel in nb_files:
        sources.append(Source(nbs / rel, page_name(rel), tuple(rel.parts[:-1])))
    if benchmarks is not None and benchmarks.is_dir():
        bench = sorted((p.relative_to(benchmarks) for p in benchmarks.rglob('*.ipynb')
                        if not any(part.startswith(('.', '_')) for part in p.relative_to(benchmarks).parts)),
                       key=_sort_key)
        for rel in bench:
            sources.append(Source(benchmarks / rel, 'benchmarks/' + page_name(rel),
                                  ('Benchmarks',) + tuple(rel.parts[:-1])))
    return sources


# ---------------------------------------------------------------------------------------------------------------
# Public API of the library

def public_names(lib_name: str) -> dict[str, list[str]]:
    "Module name (e.g. 'core') -> the names in its `__all__`, for every public module of the library."
    pkg = importlib.import_module(lib_name)
    res = {}
    for info in pkgutil.walk_packages(pkg.__path__, prefix=lib_name + '.'):
        short = info.name[len(lib_name) + 1:]
        if any(part.startswith('_') for part in short.split('.')): continue
        mod = importlib.import_module(info.name)
        names = getattr(mod, '__all__', None)
        if names: res[short] = list(names)
    return res


def anchor(name: str) -> str:
    "nbdev's anchor for a documented name: lower case, dots kept (`JsonModel.to_dict` -> `jsonmodel.to_dict`)."
    return name.lower()


class ValueDoc:
    "API entry for an exported name that is not a class or function (a constant, a ContextVar, ...)."
    def __init__(self, obj, name: str, title_level: int = 3):
        self.obj, self.name, self.title_level = obj, name, title_level

    def _repr_markdown_(self):
        value = re.sub(r' at 0x[0-9a-f]+', '', repr(self.obj))
        if len(value) > 300: value = value[:300] + '…'
        return (f"---\n\n{'#' * self.title_level} {self.name}\n\n```python\n"
                f"{self.name}: {type(self.obj).__name__} = {value}\n```\n")


def site_show_doc(sym, renderer=None, name: str | None = None, title_level: int = 3):
    "nbdev's `show_doc`, plus a value entry for exported names that are neither classes nor functions."
    import inspect
    from nbdev.showdoc import show_doc
    if name is not None and not (inspect.isclass(sym) or callable(sym) or isinstance(sym, property)):
        return ValueDoc(sym, name, title_level)
    return show_doc(sym, renderer=renderer, name=name, title_level=title_level)


# ---------------------------------------------------------------------------------------------------------------
# nbdev processing (runs in a worker process, one notebook per process)

def _defined_names(source: str, ordered: bool = False):
    "Top-level names a cell defines (functions, classes, assignments), as a set or in definition order."
    import ast
    try: tree = ast.parse(source)
    except SyntaxError: return [] if ordered else set()
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names[node.name] = 1
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name): names[n.id] = 1
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name): names[node.target.id] = 1
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names: names[(a.asname or a.name).split('.')[0]] = 1
    return list(names) if ordered else set(names)


def _shown_names(nb) -> set[str]:
    "Names that already have a `show_doc(...)` cell (written by the author or added by `add_show_docs`)."
    shown = set()
    for cell in nb.cells:
        if cell.cell_type != 'code' or not cell.source: continue
        for m in re.finditer(r'^\s*show_doc\(\s*([\w.]+)', cell.source, re.MULTILINE): shown.add(m.group(1))
    return shown


def _order_show_docs(cells):
    "Put the `show_doc` cells inserted after an exported cell in the order the cell defines the names."
    i = 0
    while i < len(cells):
        j = i + 1
        while j < len(cells) and getattr(cells[j], 'has_sd', False): j += 1
        if j - i > 2 and cells[i].cell_type == 'code':
            order = _defined_names(cells[i].source, ordered=True)

            def key(c):
                m = re.match(r'\s*show_doc\(\s*([\w.]+)', c.source)
                return order.index(m.group(1)) if m and m.group(1) in order else len(order)
            cells[i + 1:j] = sorted(cells[i + 1:j], key=key)
        i = j


def make_add_missing_show_docs(api: dict[str, list[str]]):
    "A processor adding a `show_doc` cell for each `__all__` name of this notebook's modules still undocumented."
    from fastcore.nbio import mk_cell
    from nbdev.process import Processor

    class add_missing_show_docs(Processor):
        def begin(self):
            nb = self.nb
            default_mod, mods = None, []
            for cell in nb.cells:
                d = getattr(cell, 'directives_', {}) or {}
                if cell.cell_type != 'code': continue
                if 'default_exp' in d: default_mod = d['default_exp'].split()[0]; mods.append(default_mod)
                for k in ('export', 'exports', 'exporti'):
                    if d.get(k): mods.append(d[k].split()[0])
            shown = _shown_names(nb)
            leftovers = []
            for mod in dict.fromkeys(mods):
                for name in api.get(mod, []):
                    if name in shown: continue
                    cell_idx = None
                    for i, cell in enumerate(nb.cells):
                        d = getattr(cell, 'directives_', {}) or {}
                        if (cell.cell_type == 'code' and {'export', 'exports'} & set(d)
                                and (d.get('export') or d.get('exports') or default_mod) == mod
                                and name in _defined_names(cell.source)): cell_idx = i
                    new = mk_cell(f"show_doc({name}, name='{name}')")
                    new.has_sd = True
                    if cell_idx is None:
                        if mod == default_mod: leftovers.append(new)
                        continue
                    new.directives_ = {}
                    nb.cells.insert(cell_idx + 1, new)
                    shown.add(name)
            if leftovers:
                head = mk_cell('## Other exported names', 'markdown')
                head.directives_ = {}
                for c in leftovers: c.directives_ = {}
                nb.cells.extend([head] + leftovers)
            _order_show_docs(nb.cells)
            for i, cell in enumerate(nb.cells): cell.idx_ = i
            if shown or leftovers: nb.has_docs_ = True

    return add_missing_show_docs


def _import_lines(source: str) -> str:
    "Only the top-level import statements of a cell."
    import ast
    try: tree = ast.parse(source)
    except SyntaxError: return ''
    return '\n'.join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def make_exec_cells(nb_dir: Path, execute: bool, skip_flags: set[str]):
    "A processor running the notebook's cells in a fresh shell with cwd = the notebook's folder."
    from execnb.shell import CaptureShell
    from nbdev.process import Processor
    from nbdev.processors import _do_eval

    class exec_cells(Processor):
        def begin(self):
            fm = getattr(self.nb, 'frontmatter_', {}) or {}
            self.skip_nb = str(fm.get('skip_exec', '')).lower() == 'true'
            self.prev_cwd = os.getcwd()
            os.chdir(nb_dir)
            self.k = CaptureShell(path=nb_dir)
            self.k.run_cell('from nbdev.showdoc import show_doc')
            self.k.user_ns['show_doc'] = site_show_doc

        def _wanted(self, cell) -> bool:
            d = getattr(cell, 'directives_', {}) or {}
            if cell.cell_type != 'code' or not cell.source: return False
            if d.get('eval', '').lower() == 'false': return False
            if execute and not self.skip_nb: return not (skip_flags & set(d))
            return bool(_do_eval(cell)) or getattr(cell, 'has_sd', False)

        def __call__(self, cell):
            d = getattr(cell, 'directives_', {}) or {}
            if cell.cell_type == 'code' and skip_flags & set(d): cell.not_run_ = sorted(skip_flags & set(d))
            if not self._wanted(cell): return
            is_sd = getattr(cell, 'has_sd', False) or bool(re.match(r'\s*show_doc\(', cell.source))
            if execute and not self.skip_nb or is_sd or 'exec_doc' in d: self.k.cell(cell)
            elif {'export', 'exports', 'exporti'} & set(d): self.k.run(cell.source)
            else:
                # Not executing: a cell run only for its imports (nbdev's rule). Run just its import statements,
                # keep its stored outputs, and don't fail the build on it (the rest of the cell may need state
                # from cells that were not run).
                self.k.run(_import_lines(cell.source))
                if self.k.exc:
                    print(f'  note: {getattr(self.nb, "path_", nb_dir)}: imports of cell {cell.idx_} failed: '
                          f'{type(self.k.exc).__name__}: {self.k.exc}', flush=True)
                    self.k.exc = None
            if self.k.exc:
                e = self.k.exc
                raise RuntimeError(f'{getattr(self.nb, "path_", nb_dir)}: cell {cell.idx_} failed:\n{cell.source}\n'
                                   f'{type(e).__name__}: {e}') from e
            self.k.user_ns['show_doc'] = site_show_doc  # an `from nbdev.showdoc import show_doc` cell may reset it

        def end(self):
            os.chdir(self.prev_cwd)
            self.k.close()

    return exec_cells


def make_add_links(lib: str):
    """nbdev's `add_links`, with the library's own names linked by their short name too.

    nbdev strips the prefix of `strip_libs` (default: `lib_name`, here the distribution name `computepulse-ai`)
    while the entry point is the package `computepulse_ai`, so plain `add_links` leaves `Request` unlinked."""
    from nbdev.doclinks import NbdevLookup
    lookup = NbdevLookup(strip_libs=lib)

    def add_links(cell):
        if cell.cell_type == 'markdown': cell.source = lookup.linkify(cell.source)
        for o in cell.get('outputs', []):
            if hasattr(o, 'data') and hasattr(o['data'], 'text/markdown'):
                md = o.data['text/markdown']
                o.data['text/markdown'] = lookup.linkify(''.join(md) if isinstance(md, list) else md)
    return add_links


def process_notebook(nb_path: Path, root: Path, execute: bool, api: dict[str, list[str]]):
    "Read and process one notebook with nbdev's processors (plus ours). Returns the processed notebook."
    from fastcore.nbio import read_nb
    from nbdev.config import get_config
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    from nbdev.processors import (add_show_docs, ai_magics, clean_magics, filter_stream_, hide_,
                                  hide_line, mv_exports, populate_language, rm_export, rm_header_dash,
                                  strip_ansi, strip_hidden_metadata)
    os.chdir(root)
    cfg = get_config()
    skip_flags = set(cfg.get('tst_flags', []) if isinstance(cfg.get('tst_flags'), list)
                     else str(cfg.get('tst_flags', '')).split())
    nb = read_nb(nb_path)
    nb.path_ = str(nb_path)
    nb.modules_ = list(dict.fromkeys(m.group(1) for c in nb.cells if c.cell_type == 'code'
                                     for m in [re.search(r'^\s*#\|\s*default_exp\s+(\S+)', c.source, re.M)] if m))
    procs = [FrontmatterProc, populate_language, add_show_docs, make_add_missing_show_docs(api), strip_ansi,
             hide_line, filter_stream_, rm_header_dash, make_exec_cells(nb_path.parent, execute, skip_flags),
             rm_export, ai_magics, clean_magics, hide_, make_add_links(cfg.lib_path.name), mv_exports, strip_hidden_metadata]
    NBProcessor(nb=nb, procs=procs, rm_directives=True).process()
    return nb


# ---------------------------------------------------------------------------------------------------------------
# Processed notebook -> Markdown page

_re_list = re.compile(r'^( *)([-*+]|\d+[.)])\s')
_re_fence = re.compile(r'^\s*(`{3,}|~{3,})')


def fix_markdown(src: str) -> str:
    "Adapt Jupyter (CommonMark) Markdown to Python-Markdown: blank line before lists/tables/quotes, 4-space nesting."
    out, in_fence, in_list = [], None, False
    for line in src.split('\n'):
        m = _re_fence.match(line)
        if in_fence:
            out.append(line)
            if m and m.group(1)[0] == in_fence[0] and len(m.group(1)) >= len(in_fence): in_fence = None
            continue
        if m:
            in_fence = m.group(1)
            if out and out[-1].strip() and not in_list: out.append('')
            out.append(line); continue
        prev = out[-1] if out else ''
        lm = _re_list.match(line)
        if lm:
            indent = len(lm.group(1))
            if in_list and indent % 4: line = ' ' * (indent * 2) + line[indent:]
            elif not in_list and prev.strip(): out.append('')
            in_list = True
        elif not line.strip(): pass
        elif in_list and not line.startswith(' ') and not prev.strip(): in_list = False
        elif in_list and line.startswith(' ') and (len(line) - len(line.lstrip(' '))) % 4:
            indent = len(line) - len(line.lstrip(' '))
            line = ' ' * (indent * 2) + line[indent:]
        if not lm and not in_list and line.lstrip().startswith(('|', '>')) and prev.strip() \
                and not prev.lstrip().startswith(line.lstrip()[0]): out.append('')
        out.append(line)
    return '\n'.join(out)


def _fence(text: str, lang: str = '') -> str:
    "A fenced block (longer fence than any backtick run inside); `lang='text'` marks a cell output."
    ticks = '`' * max(3, max((len(m) for m in re.findall(r'`+', text)), default=0) + 1)
    info = ' { .text .nb-output }' if lang == 'text' else lang
    return f'{ticks}{info}\n{text.rstrip()}\n{ticks}'


def _escape_md(text: str) -> str: return re.sub(r'([_*\[\]<>])', r'\\\1', text)


_re_source_link = re.compile(r'\[source\]\((\S+?)\)\{target="_blank"[^}]*\}')
_re_heading = re.compile(r'^(#{1,6}) (.+?)[ \t]*$', re.MULTILINE)


def fix_show_doc(md: str) -> tuple[str, str | None]:
    "Turn nbdev's `show_doc` Markdown into Python-Markdown with an nbdev anchor; returns (markdown, name)."
    md = _re_source_link.sub(lambda m: f'<a class="doc-source" href="{html.escape(m.group(1).removesuffix("#LNone"))}">'
                                       'source</a>', md)
    m = _re_heading.search(md)
    if not m: return md, None
    name = m.group(2)
    heading = f'{m.group(1)} {_escape_md(name)} {{ #{anchor(name)} .doc-heading data-toc-label="{html.escape(name)}" }}'
    return md[:m.start()] + heading + md[m.end():], name


def _relink(md: str, page: str, doc_prefix: str, pages_by_html: dict[str, str]) -> str:
    "Point nbdev doc links (doc_host URLs) and links to sibling notebooks at the local pages."
    page_dir = os.path.dirname(page)

    def local(target_page: str, frag: str) -> str: return os.path.relpath(target_page, page_dir or '.') + frag

    def sub_doc(m):
        html_path, frag = m.group(1), m.group(2) or ''
        target = pages_by_html.get(html_path)
        return f']({local(target, frag)})' if target else m.group(0)

    if doc_prefix: md = re.sub(r'\]\(' + re.escape(doc_prefix) + r'([^)#\s]+\.html)(#[^)\s]*)?\)', sub_doc, md)

    def sub_nb(m):
        from nbdev.config import nbpath2html
        rel = os.path.normpath(os.path.join(page_dir, m.group(1) + '.ipynb'))
        target = nbpath2html(Path(rel)).with_suffix('.md').as_posix()
        return f']({local(target, m.group(2) or "")})'

    md = re.sub(r'\]\((?!https?:)([^)\s#]+?)\.ipynb(#[^)\s]*)?\)', sub_nb, md)

    def sub_html(m):   # nbdev/Quarto style links between pages (`config.html`): mkdocs wants the source .md
        rel = os.path.normpath(os.path.join(page_dir, m.group(1) + '.html')).replace(os.sep, '/')
        target = pages_by_html.get(rel)
        return f']({local(target, m.group(2) or "")})' if target else m.group(0)

    return re.sub(r'\]\((?![a-z][a-z0-9+.-]*:|/|#)([^)\s#]+?)\.html(#[^)\s]*)?\)', sub_html, md)


@dataclass
class Page:
    "A rendered page: its Markdown, its title and the API names it documents."
    page: str
    markdown: str
    title: str
    documented: list = field(default_factory=list)   # show_doc heading names on this page
    modules: list = field(default_factory=list)      # modules this notebook exports to


def render_output(out, img_base: str, img_dir: Path, counter: list, is_show_doc: bool, documented: list) -> str:
    "Markdown for one cell output."
    kind = out.get('output_type')
    if kind == 'stream':
        text = out.get('text', '')
        text = ''.join(text) if isinstance(text, list) else text
        return _fence(text, 'text') if text.strip() else ''
    if kind == 'error':
        from nbdev.processors import _re_ansi_escape
        tb = '\n'.join(out.get('traceback', [])) or f"{out.get('ename')}: {out.get('evalue')}"
        return _fence(_re_ansi_escape.sub('', tb), 'text')
    data = out.get('data', {}) or {}

    def get(mime):
        v = data.get(mime)
        return ''.join(v) if isinstance(v, list) else v

    if get('text/markdown') is not None:
        md = get('text/markdown')
        if is_show_doc or md.lstrip().startswith('---'):
            md, name = fix_show_doc(md)
            if name: documented.append(name)
        return md
    for mime, ext in (('image/png', '.png'), ('image/jpeg', '.jpg'), ('image/svg+xml', '.svg')):
        v = get(mime)
        if v is None: continue
        counter[0] += 1
        img_dir.mkdir(parents=True, exist_ok=True)
        fname = f'output_{counter[0]}{ext}'
        if ext == '.svg': (img_dir / fname).write_text(v)
        else: (img_dir / fname).write_bytes(base64.b64decode(v))
        return f'![output {counter[0]}]({img_base}/{fname}){{ .nb-image }}'
    v = get('text/html')
    if v is not None and not re.search(r'<(script|link)\b[^>]*(src|href)\s*=\s*["\']?(https?:)?//', v, re.I):
        body = '\n'.join(l for l in v.split('\n') if l.strip())
        return f'<div class="nb-output-html">\n{body}\n</div>'
    v = get('text/plain')
    if v is not None: return _fence(v, 'text')
    return ''


def _not_run_note(flags: list[str]) -> str:
    "What a reader sees under a flagged cell the build did not run (instead of a cell with no output)."
    shown = ", ".join(f"`#| {f}`" for f in flags)
    return (f'!!! note "Not run in this build ({shown})"\n    The cells above are the full-size version: it takes minutes, so the '
            f'docs build and `nbdev-test` skip it. The quick version on this page runs the same code at a smaller scale '
            f'and shows its output; the figures quoted in the text come from the full run '
            f'(`nbdev-test --flags "{" ".join(flags)}" NOTEBOOK` runs it).')


def notebook_to_markdown(nb, page: str, docs_dir: Path, doc_prefix: str, pages_by_html: dict[str, str]) -> Page:
    "One processed notebook as a Markdown page (images written next to it)."
    fm = getattr(nb, 'frontmatter_', {}) or {}
    parts, documented, mods = [], [], list(getattr(nb, 'modules_', []))
    title = fm.get('title')
    if title:
        parts.append(f'# {title}')
        if fm.get('description'): parts.append(f"> {fm['description']}")
    stem = Path(page).stem
    img_dir = docs_dir / Path(page).parent / f'{stem}_files'
    counter = [0]
    not_run: list[str] = []        # flags of the current run of flagged cells without output (one note after them)
    for cell in nb.cells:
        d = getattr(cell, 'directives_', {}) or {}
        if cell.cell_type == 'raw' or not getattr(cell, 'source', None) and cell.cell_type == 'markdown': continue
        flagged = cell.cell_type == 'code' and getattr(cell, 'not_run_', None) and not cell.get('outputs')
        if not_run and not flagged:
            parts.append(_not_run_note(not_run))
            not_run = []
        if flagged: not_run = sorted(set(not_run) | set(cell.not_run_))
        if str(d.get('include', '')).lower() == 'false': continue
        if cell.cell_type == 'markdown':
            parts.append(fix_markdown(cell.source))
            continue
        if cell.cell_type != 'code': continue
        is_sd = getattr(cell, 'has_sd', False) or bool(re.match(r'\s*show_doc\(', cell.source or ''))
        echo = str(d.get('echo', '')).lower() != 'false' and not is_sd
        if echo and (cell.source or '').strip(): parts.append(_fence(cell.source, 'python'))
        if str(d.get('output', '')).lower() == 'false': continue
        for out in cell.get('outputs', []):
            md = render_output(out, f'{stem}_files', img_dir, counter, is_sd, documented)
            if md.strip(): parts.append(md)
    if not_run: parts.append(_not_run_note(not_run))
    md = _relink('\n\n'.join(parts) + '\n', page, doc_prefix, pages_by_html)
    if not title:
        m = re.search(r'^# (.+)$', md, re.MULTILINE)
        title = m.group(1).strip() if m else Path(page).stem
    return Page(page, md, title, documented, mods)


def build_page(nb_path: str, page: str, root: str, execute: bool, api, docs_dir: str, doc_prefix: str,
               pages_by_html) -> Page:
    "Worker: process one notebook and write its page; runs in its own process (cwd changes, fresh shell)."
    import warnings
    warnings.filterwarnings('ignore', message='Found cells containing imports')   # nbdev's hint for authors
    os.environ['IN_TEST'] = '1'
    os.environ.setdefault('MPLBACKEND', 'Agg')
    t0 = time.perf_counter()
    nb = process_notebook(Path(nb_path), Path(root), execute, api)
    result = notebook_to_markdown(nb, page, Path(docs_dir), doc_prefix, pages_by_html)
    dest = Path(docs_dir) / page
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(result.markdown, encoding='utf-8')
    print(f'  {page:<40} {time.perf_counter() - t0:5.1f}s', flush=True)
    return result


# ---------------------------------------------------------------------------------------------------------------
# API index page and mkdocs configuration

def api_index(api: dict[str, list[str]], pages: list[Page]) -> tuple[str, list[str]]:
    "Markdown of the API index: every public name, linked to its entry; entries missing elsewhere live here."
    from nbdev.config import get_config
    lib = get_config().lib_path.name
    where = {}
    for p in pages:
        for name in p.documented:
            where.setdefault(name, p.page)
            for mod in p.modules: where.setdefault(f'{mod}:{name}', p.page)
    parts, missing = ['# API index', '> Every public name of every module, linked to its documentation.'], []
    for mod, names in sorted(api.items()):
        parts.append(f'## `{lib}.{mod}`')
        rows = []
        for name in names:
            page = where.get(f'{mod}:{name}') or where.get(name)
            if page: rows.append(f'- [`{name}`]({page}#{anchor(name)})')
            else:
                rows.append(f'- [`{name}`](#{anchor(name)})')
                missing.append((mod, name))
        parts.append('\n'.join(rows))
    if missing:
        parts.append('## Entries not rendered in a notebook')
        for mod, name in missing:
            obj = getattr(importlib.import_module(f'{lib}.{mod}'), name)
            parts.append(fix_show_doc(site_show_doc(obj, name=name)._repr_markdown_())[0])
    return '\n\n'.join(parts) + '\n', [f'{m}.{n}' for m, n in missing]


ASSETS = Path(__file__).resolve().parent / 'docs_assets'   # extra.css, the local iframe-worker shim


def _nav(pages: list[Page], sources: list[Source], api_page: str | None) -> list:
    "mkdocs nav: notebooks in file-name order (sub-folders as sections), API index, then benchmarks."
    by_page = {p.page: p for p in pages}
    nav: list = []

    def section(path: tuple) -> list:
        items = nav
        for name in path:
            found = next((i for i in items if isinstance(i, dict) and name in i and isinstance(i[name], list)), None)
            if found is None:
                found = {name: []}
                items.append(found)
            items = found[name]
        return items

    for s in sources:
        if s.section[:1] == ('Benchmarks',): continue
        title = 'Home' if s.page == 'index.md' else by_page[s.page].title
        section(tuple(re.sub(r'^\d+[a-zA-Z0-9]*_', '', p) for p in s.section)).append({title: s.page})
    if api_page: nav.append({'API index': api_page})
    bench = [s for s in sources if s.section[:1] == ('Benchmarks',)]
    for s in bench: section(s.section).append({by_page[s.page].title: s.page})
    return nav


def mkdocs_config(cfg, nav: list, docs_dir: Path, site_dir: Path) -> dict:
    return {
        'site_name': cfg.get('title', cfg.lib_name),
        'site_description': cfg.get('description', ''),
        'docs_dir': str(docs_dir),
        'site_dir': str(site_dir),
        'use_directory_urls': False,          # plain .html files: browsable from file:// without a server
        'nav': nav,
        'theme': {'name': 'material', 'font': False,          # no Google Fonts
                  'features': ['navigation.sections', 'navigation.top', 'toc.follow', 'search.highlight',
                               'content.code.copy'],
                  'palette': {'primary': 'indigo'}},
        'plugins': ['search', 'offline'],     # offline: search index shipped as JS, works from file://
        # Material's offline plugin would add the iframe-worker polyfill from a CDN unless one is configured:
        # ours is local (search from file:// runs its worker in an iframe).
        'extra': {'generator': False, 'polyfills': ['assets/javascripts/iframe-worker-shim.js']},
        'extra_css': ['assets/extra.css'],
        'markdown_extensions': [
            {'toc': {'permalink': True}}, 'attr_list', 'md_in_html', 'tables', 'admonition', 'def_list',
            'footnotes', {'pymdownx.highlight': {'use_pygments': True}}, 'pymdownx.superfences',
            'pymdownx.inlinehilite', 'pymdownx.details', 'pymdownx.tilde',
            {'pymdownx.arithmatex': {'generic': True}}],   # math -> MathML in docs_hooks.py, no MathJax
        'hooks': [str(Path(__file__).resolve().parent / 'docs_hooks.py')],
        'validation': {'links': {'not_found': 'warn', 'anchors': 'info', 'unrecognized_links': 'info'}},
    }


def _fix_member_links(pages: list[Page], docs_dir: Path):
    "Point links to undocumented members (`core.md#modelspec.cost_usd`) at their documented class instead."
    anchors = {p.page: {anchor(n) for n in p.documented} for p in pages}

    def sub(m, page_dir):
        target, frag = m.group(1), m.group(2)
        target_page = os.path.normpath(os.path.join(page_dir, target)) if target else None
        known = anchors.get(target_page, set())
        if frag in known or '.' not in frag: return m.group(0)
        owner = frag.rsplit('.', 1)[0]
        return f'({target}#{owner})' if owner in known else m.group(0)

    for p in pages:
        path = docs_dir / p.page
        page_dir = os.path.dirname(p.page)
        md = path.read_text(encoding='utf-8')
        new = re.sub(r'\(([^()\s#]*\.md)#([\w.]+)\)', lambda m: sub(m, page_dir), md)
        if new != md: path.write_text(new, encoding='utf-8')


def build(out: Path, work: Path, execute: bool, nbs: Path | None = None, benchmarks: Path | None = None,
          jobs: int | None = None) -> dict:
    "Build the site into `out`; returns a summary (pages, API names, missing entries, seconds)."
    import yaml
    t0 = time.perf_counter()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from nbdev.config import get_config
    cfg = get_config()
    nbs = Path(nbs or cfg.nbs_path).resolve()
    benchmarks = Path(benchmarks or ROOT / 'benchmarks').resolve()
    out, work = Path(out).resolve(), Path(work).resolve()
    docs_dir = work / 'docs'
    if docs_dir.exists(): shutil.rmtree(docs_dir)
    docs_dir.mkdir(parents=True)
    api = public_names(cfg.lib_path.name)
    sources = find_sources(nbs, benchmarks)
    doc_prefix = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/') + '/' if cfg.get('doc_host') else ''
    pages_by_html = {Path(s.page).with_suffix('.html').as_posix(): s.page for s in sources}
    pages_by_html.setdefault('api.html', 'api.md')   # the generated API index
    print(f'processing {len(sources)} notebooks ({"executing" if execute else "stored outputs"})', flush=True)
    ctx = multiprocessing.get_context('spawn')
    workers = jobs or min(len(sources), os.cpu_count() or 1) or 1
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        futs = [pool.submit(build_page, str(s.nb_path), s.page, str(ROOT), execute, api, str(docs_dir),
                            doc_prefix, pages_by_html) for s in sources]
        pages = [f.result() for f in futs]
    _fix_member_links(pages, docs_dir)
    # Images and other files the notebooks' Markdown refers to (nbs/images/..., benchmarks/*.png)
    for base, prefix in ((nbs, ''), (benchmarks, 'benchmarks/')):
        if not base.is_dir(): continue
        for f in base.rglob('*'):
            rel = f.relative_to(base)
            if (f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and f.name not in NB_CONFIG_FILES
                    and not any(p.startswith(('.', '_')) for p in rel.parts)):
                dest = docs_dir / prefix / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)
    api_md, missing = api_index(api, pages)
    (docs_dir / 'api.md').write_text(api_md, encoding='utf-8')
    (docs_dir / 'assets' / 'javascripts').mkdir(parents=True, exist_ok=True)
    shutil.copy2(ASSETS / 'extra.css', docs_dir / 'assets' / 'extra.css')
    shutil.copy2(ASSETS / 'iframe-worker-shim.js', docs_dir / 'assets' / 'javascripts' / 'iframe-worker-shim.js')
    conf = mkdocs_config(cfg, _nav(pages, sources, 'api.md'), docs_dir, out)
    conf_path = work / 'mkdocs.yml'
    conf_path.write_text(yaml.safe_dump(conf, sort_keys=False, allow_unicode=True))
    mkdocs = Path(sys.executable).parent / 'mkdocs'
    cmd = [str(mkdocs) if mkdocs.exists() else 'mkdocs', 'build', '--clean', '-f', str(conf_path)]
    subprocess.run(cmd, check=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    secs = time.perf_counter() - t0
    print(f'site written to {out} in {secs:.1f}s ({len(pages)} notebook pages, '
          f'{sum(len(v) for v in api.values())} public names'
          + (f', entries generated in the API index: {", ".join(missing)}' if missing else '') + ')', flush=True)
    return {'pages': [p.page for p in pages], 'api': api, 'missing': missing, 'seconds': secs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / 'site'), help='output folder of the HTML site')
    ap.add_argument('--work', default=str(ROOT / '_mkdocs'), help='folder for intermediate files')
    ap.add_argument('--no-execute', action='store_true', help="don't execute notebooks (use stored outputs)")
    ap.add_argument('--nbs', default=None, help='notebook folder (default: nbs_path from pyproject.toml)')
    ap.add_argument('--benchmarks', default=None, help='benchmark notebook folder (default: benchmarks/)')
    ap.add_argument('--jobs', type=int, default=None, help='worker processes (default: one per CPU)')
    args = ap.parse_args(argv)
    build(Path(args.out), Path(args.work), not args.no_execute, args.nbs and Path(args.nbs),
          args.benchmarks and Path(args.benchmarks), args.jobs)


if __name__ == '__main__':
    main()
