"""The documentation site and the README build offline from the notebooks.

`test_site_*` build the real site (nbs/ and benchmarks/) once, without executing the notebooks (only the cells
`show_doc` needs run, as in nbdev's own docs processing; `make docs` executes everything). `test_scratch_*`
build a small throw-away project of notebooks *with* execution, to check ordering, skipped flags, hidden
cells, plots and the benchmark section.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = 'computepulse_ai'
sys.path.insert(0, str(ROOT / 'tools'))


def build_site(out: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--out', str(out / 'site'),
                          '--work', str(out / 'work'), *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, f'docs build failed:\n{res.stdout}\n{res.stderr}'
    return res


def html_page(nb_rel: Path) -> Path:
    "Where the page of a notebook must be: nbdev's naming (`00_core.ipynb` -> `core.html`)."
    return nb_rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb_rel.name.lower())).with_suffix('.html')


def notebooks(folder: Path) -> list[Path]:
    "Notebooks nbdev considers (names and folders starting with `_` or `.` are skipped), relative to `folder`."
    if not folder.is_dir(): return []
    return sorted((p.relative_to(folder) for p in folder.rglob('*.ipynb')
                   if not any(part.startswith(('_', '.')) for part in p.relative_to(folder).parts)),
                  key=lambda rel: (rel != Path('index.ipynb'), rel.as_posix()))   # index first, then file names


def public_names() -> dict[str, list[str]]:
    pkg = importlib.import_module(LIB)
    res = {}
    for info in pkgutil.walk_packages(pkg.__path__, prefix=LIB + '.'):
        if any(part.startswith('_') for part in info.name.split('.')[1:]): continue
        res[info.name] = list(getattr(importlib.import_module(info.name), '__all__', []))
    return res


def headings(html: str) -> dict[str, str]:
    "id -> visible text of every heading of a page."
    return {m.group(2): unescape(re.sub(r'<[^>]+>', '', m.group(3))).replace('¶', '').strip()
            for m in re.finditer(r'<h([1-6])[^>]*\bid="([^"]+)"[^>]*>(.*?)</h\1>', html, re.S)}


def nav_links(index_html: str) -> list[str]:
    "Pages in the order the primary navigation lists them."
    nav = index_html[index_html.index('md-nav--primary'):]
    return list(dict.fromkeys(re.findall(r'<a href="([^"#]+\.html)" class="md-nav__link', nav)))


def remote_assets(html: str) -> list[str]:
    "Scripts, stylesheets, images, frames or fonts a page would load from the network."
    tags = re.findall(r'<(?:script|img|iframe|source|embed|audio|video)\b[^>]*\bsrc\s*=\s*["\']?((?:https?:)?//[^"\'\s>]+)', html, re.I)
    links = [m.group(0) for m in re.finditer(r'<link\b[^>]*>', html, re.I)
             if re.search(r'rel=["\']?(stylesheet|preload|preconnect|modulepreload|icon)', m.group(0), re.I)
             and re.search(r'href\s*=\s*["\']?(https?:)?//', m.group(0), re.I)]
    imports = re.findall(r'@import\s+(?:url\()?["\']?((?:https?:)?//[^"\')]+)', html, re.I)
    return tags + links + imports


@pytest.fixture(scope='module')
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('docs')
    res = build_site(out, '--no-execute')
    BUILD_LOGS['site'] = res.stdout + res.stderr
    return out / 'site'


BUILD_LOGS: dict[str, str] = {}


def test_site_builds_without_mkdocs_warnings(site):
    "Links between pages written the nbdev way (`config.html`) resolve; mkdocs has nothing to warn about."
    warnings = [l for l in BUILD_LOGS['site'].splitlines() if l.startswith('WARNING')]
    assert not warnings, '\n'.join(warnings)
    basic = (site / 'examples' / 'basic_usage.html').read_text()
    assert 'href="custom_configuration.html"' in basic and 'href="../config.html' in (site / 'guides' / 'deployment.html').read_text()


def test_site_has_a_page_for_every_notebook(site):
    expected = [html_page(rel) for rel in notebooks(ROOT / 'nbs')]
    expected += [Path('benchmarks') / html_page(rel) for rel in notebooks(ROOT / 'benchmarks')]
    assert Path('index.html') in expected
    for page in expected:
        path = site / page
        assert path.exists(), f'no page {page} in the site'
        assert re.search(r'<h1[^>]*>\s*\S', path.read_text()), f'{page} has no title'
    order = nav_links((site / 'index.html').read_text())
    nb_pages = [p.as_posix() for p in expected if not p.parts[0] == 'benchmarks']
    assert [p for p in order if p in nb_pages] == nb_pages, 'navigation is not in notebook order'


def test_site_has_an_api_entry_for_every_public_name(site):
    entries = {}
    for page in site.rglob('*.html'):
        for hid, text in headings(page.read_text()).items(): entries.setdefault(hid, []).append(text)
    missing = [f'{mod}.{name}' for mod, names in public_names().items() for name in names
               if not any(name in text for text in entries.get(name.lower(), []))]
    assert not missing, f'public names without an API entry (heading with its anchor): {missing}'
    api = (site / 'api.html').read_text()
    for mod, names in public_names().items():
        for name in names: assert f'#{name.lower()}"' in api, f'{mod}.{name} missing from the API index'


def test_site_loads_nothing_from_the_network(site):
    pages = list(site.rglob('*.html'))
    assert pages
    for page in pages:
        assert not remote_assets(page.read_text()), f'{page.relative_to(site)} loads {remote_assets(page.read_text())}'
    for css in site.rglob('*.css'):
        assert not re.search(r'@import\s+(url\()?["\']?(https?:)?//|url\(["\']?(https?:)?//', css.read_text()), css
    assert 'fonts.googleapis' not in (site / 'index.html').read_text()


def test_site_search_works_offline(site):
    "Material's offline plugin ships the index as a script; the worker polyfill is local."
    index = (site / 'search' / 'search_index.js').read_text()
    assert index.startswith('var __index = ')
    docs = json.loads(index[len('var __index = '):])['docs']
    assert any(d['location'] == 'core.html#request' for d in docs)
    assert 'assets/javascripts/iframe-worker-shim.js' in (site / 'index.html').read_text()
    assert (site / 'assets' / 'javascripts' / 'iframe-worker-shim.js').exists()


@pytest.mark.skipif(shutil.which('node') is None, reason='node is needed to run the search worker')
def test_site_search_answers_queries(site):
    "Material's own search worker, run in node on the built index, finds API entries by name."
    def search(query):
        res = subprocess.run(['node', str(ROOT / 'tests' / 'docs_search_check.js'), str(site), query],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])['locations']
    assert 'core.html#get_logger' in search('get_logger')
    assert 'core.html#request' in search('Request')
    assert search('zzzqqqnotaword') == []


def test_remote_asset_detector_can_fail():
    assert remote_assets('<script src="https://cdn.example/x.js"></script>')
    assert remote_assets('<link rel="stylesheet" href="//fonts.example/css">')
    assert not remote_assets('<a href="https://example.org">a link</a><script src="assets/x.js"></script>')


# ---------------------------------------------------------------------------------------------------------------
# A scratch project, built with execution

def _nb(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    for kind, src in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == 'md' else nbformat.v4.new_code_cell(src))
    return nb


@pytest.fixture(scope='module')
def scratch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('scratch')
    nbs, bench = out / 'nbs', out / 'benchmarks'
    nbs.mkdir(); bench.mkdir()
    nbformat.write(_nb(('md', '# Scratch home\n\n> Home page.')), nbs / 'index.ipynb')
    nbformat.write(_nb(('md', '# Gamma\n\n> Numbered ten.')), nbs / '10_gamma.ipynb')
    nbformat.write(_nb(('md', '# Beta\n\n> Inserted with a letter.')), nbs / '01a_beta.ipynb')
    nbformat.write(_nb(
        ('md', '# Alpha\n\n> Runs code.'),
        ('md', 'A list right after text:\n- one\n  - nested\n- two\n\nScores $s_i$ combine as\n\n$$C = 1 - \\prod_i (1 - s_i)$$\n\nand cost $2 or $3.'),
        ('code', 'print(6 * 7)'),
        ('code', '#| hide\nprint("HIDDEN-" + "CELL")'),
        ('code', '#| slow\nraise RuntimeError("a slow cell was executed")'),
        ('code', 'import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4]);'),
    ), nbs / '01_alpha.ipynb')
    nbformat.write(_nb(('md', '# Bench plot\n\n> A benchmark.'),
                       ('code', 'import os\nprint("cwd=" + os.path.basename(os.getcwd()))'),
                       ('code', 'import matplotlib.pyplot as plt\nplt.bar(["a", "b"], [1, 2]);')), bench / 'perf_x.ipynb')
    (nbs / '_skipped.ipynb').write_text((nbs / 'index.ipynb').read_text())
    build_site(out, '--nbs', str(nbs), '--benchmarks', str(bench))
    return out / 'site'


def test_scratch_navigation_follows_file_names(scratch):
    order = nav_links((scratch / 'index.html').read_text())
    want = ['index.html', 'alpha.html', 'beta.html', 'gamma.html', 'api.html', 'benchmarks/perf_x.html']
    assert [p for p in order if p in want] == want
    assert not (scratch / 'skipped.html').exists() and not (scratch / '_skipped.html').exists()
    # no notebook here documents the library: its entries are generated on the API index page instead
    assert headings((scratch / 'api.html').read_text()).get('request') == 'Request'


def test_scratch_execution_outputs_and_flags(scratch):
    alpha = (scratch / 'alpha.html').read_text()
    assert '42' in alpha                                   # executed output
    assert 'HIDDEN-CELL' not in alpha and 'HIDDEN-" + "CELL' not in alpha   # hidden cell and its output gone
    assert 'a slow cell was executed' in alpha             # shown as source, but not run (the build would fail)
    assert 'Not run in this build' in alpha                # and says so, instead of a code cell without output
    assert re.search(r'<li>one\s*<ul>\s*<li>nested', alpha)  # CommonMark-style list rendered as a list
    assert alpha.count('<math') == 2 and '$2 or $3' in alpha   # TeX as MathML (no MathJax); prices left alone
    img = re.search(r'<img[^>]+src="(alpha_files/[^"]+\.png)"', alpha)
    assert img and (scratch / img.group(1)).stat().st_size > 1000
    bench = (scratch / 'benchmarks' / 'perf_x.html').read_text()
    assert 'cwd=benchmarks' in bench                       # executed with the notebook's folder as cwd
    img = re.search(r'<img[^>]+src="(perf_x_files/[^"]+\.png)"', bench)
    assert img and (scratch / 'benchmarks' / img.group(1)).exists()


# ---------------------------------------------------------------------------------------------------------------
# README

def test_readme_renders_code_and_text_outputs_and_drops_hidden_cells(tmp_path):
    import build_readme
    nb = _nb(('md', '# Project\n\n> One line.'), ('md', 'Some *prose*.'),
             ('code', 'print("hi")'), ('code', '#| hide\nsecret = 1'), ('code', '#| export\ndef f(): pass'))
    nb.cells[2].outputs = [nbformat.v4.new_output('stream', name='stdout', text='hi\n')]
    path = tmp_path / 'index.ipynb'
    nbformat.write(nb, path)
    text = build_readme.readme_text(path)
    assert text.startswith('# Project\n')
    assert '> One line.' in text and 'Some *prose*.' in text
    assert '```python\nprint("hi")\n```\n\n```\nhi\n```' in text
    assert 'secret' not in text and 'def f' not in text


def test_readme_is_in_sync_with_index_notebook():
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_readme.py'), '--check'], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------------------------------------------------------
# Quarto configuration (for users who have Quarto: `nbdev-docs` must keep working from the same notebooks)

def test_quarto_config_is_what_nbdev_docs_expects(capsys):
    import os
    import yaml
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml, nbdev_sidebar
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        cfg = get_config()
        vals = {k: cfg[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}
        # nbdev-docs regenerates nbdev.yml from pyproject.toml: the committed one must already be that text
        assert (cfg.nbs_path / 'nbdev.yml').read_text() == _nbdev_yml.format(doc_path=cfg.doc_path.name, **vals)
        quarto = yaml.safe_load((cfg.nbs_path / '_quarto.yml').read_text())
        assert quarto['project']['type'] == 'website'
        assert 'nbdev.yml' in quarto['metadata-files'] and 'sidebar.yml' in quarto['metadata-files']
        assert (cfg.nbs_path / quarto['format']['html']['css']).exists()
        nbdev_sidebar.__wrapped__(printit=True, force=True)   # what nbdev-docs writes to sidebar.yml
        sidebar = yaml.safe_load(capsys.readouterr().out)['website']['sidebar']['contents']
        assert [Path(p).name for p in sidebar if isinstance(p, str)][:1] == ['index.ipynb']
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------------------------------------------------------
# The site in a real browser: headless Chromium from the distribution's packages, driven over the DevTools protocol

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']


def find_chromium() -> tuple[str | None, str]:
    "The Chromium executable, installed with apt-get when missing (as root); else None and why."
    import os
    for name in ('chromium', 'chromium-browser'):
        if shutil.which(name): return shutil.which(name), ''
    if shutil.which('apt-get') is None: return None, 'no chromium and no apt-get to install it'
    if os.geteuid() != 0: return None, 'no chromium, and installing it with apt-get needs root'
    env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
    for step in (['apt-get', 'install', '-y', '-q', 'chromium'], ['apt-get', 'update', '-q'],
                 ['apt-get', 'install', '-y', '-q', 'chromium']):
        try: res = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired: return None, f'{" ".join(step)} timed out'
        if step[1] == 'install' and res.returncode == 0 and shutil.which('chromium'): return shutil.which('chromium'), ''
    return None, f'apt-get install chromium failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}'


class StaticServer:
    "The built site served on 127.0.0.1 (a free port) from a background thread."

    def __init__(self, root: Path):
        import functools
        import http.server
        import threading
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args): pass
        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_port}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Browser:
    "One headless Chromium (fresh profile); `visit` opens pages in a tab and reports errors and evaluated values."

    def __init__(self, exe: str, profile: Path):
        import time
        self.proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', '--remote-debugging-port=0',
                                      '--window-size=1600,1000', 'about:blank'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / 'DevToolsActivePort'     # Chromium writes its DevTools port here once it listens
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None: raise RuntimeError(f'chromium exited with status {self.proc.returncode}')
            if time.monotonic() > deadline: raise RuntimeError('chromium did not open its DevTools port in 60 s')
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])

    def visit(self, urls: list[str], script: str = 'null', width: int = 1600) -> list[dict]:
        "Load each URL; per page: errors (console errors, exceptions, failed loads) and the value of `script`."
        import asyncio
        return asyncio.run(self._visit(urls, script, width))

    async def _visit(self, urls, script, width):
        import asyncio
        import aiohttp
        async with aiohttp.ClientSession() as http:
            async with http.get(f'http://127.0.0.1:{self.port}/json/list') as res: targets = await res.json()
            page = next(t for t in targets if t['type'] == 'page')
            async with http.ws_connect(page['webSocketDebuggerUrl'], max_msg_size=0) as ws:
                pending, events, waiters, counter = {}, [], [], [0]

                async def reader():
                    async for msg in ws:
                        data = json.loads(msg.data)
                        if data.get('id') in pending: pending.pop(data['id']).set_result(data)
                        else:
                            events.append(data)
                            for method, fut in list(waiters):
                                if data.get('method') == method and not fut.done(): fut.set_result(data)

                async def send(method, **params):
                    counter[0] += 1
                    fut = asyncio.get_running_loop().create_future()
                    pending[counter[0]] = fut
                    await ws.send_str(json.dumps({'id': counter[0], 'method': method, 'params': params}))
                    res = await asyncio.wait_for(fut, 60)
                    if 'error' in res: raise RuntimeError(f'{method}: {res["error"]}')
                    return res['result']

                task = asyncio.ensure_future(reader())
                try:
                    for method in ('Page.enable', 'Runtime.enable', 'Log.enable'): await send(method)
                    await send('Emulation.setDeviceMetricsOverride', width=width, height=1000, deviceScaleFactor=1, mobile=False)
                    found = []
                    for url in urls:
                        events.clear()
                        loaded = asyncio.get_running_loop().create_future()
                        waiters[:] = [('Page.loadEventFired', loaded)]
                        nav = await send('Page.navigate', url=url)
                        if nav.get('errorText'): found.append({'url': url, 'errors': [nav['errorText']], 'value': None}); continue
                        await asyncio.wait_for(loaded, 60)
                        value = await send('Runtime.evaluate', expression=script, awaitPromise=True, returnByValue=True)
                        errors = [e['params']['exceptionDetails'].get('exception', {}).get('description')
                                  or e['params']['exceptionDetails'].get('text') for e in events if e.get('method') == 'Runtime.exceptionThrown']
                        errors += [f"{e['params']['entry'].get('url', '')}: {e['params']['entry']['text']}" for e in events
                                   if e.get('method') == 'Log.entryAdded' and e['params']['entry']['level'] == 'error']
                        errors += [' '.join(str(a.get('value', a.get('description', ''))) for a in e['params']['args'])
                                   for e in events if e.get('method') == 'Runtime.consoleAPICalled' and e['params']['type'] == 'error']
                        if 'exceptionDetails' in value: errors.append(f'check script failed: {value["exceptionDetails"]}')
                        found.append({'url': url, 'errors': errors, 'value': value.get('result', {}).get('value')})
                    return found
                finally:
                    task.cancel()

    def close(self):
        self.proc.terminate()
        try: self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired: self.proc.kill()


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    exe, why = find_chromium()
    if exe is None: pytest.skip(f'headless Chromium unavailable: {why}')
    b = Browser(exe, tmp_path_factory.mktemp('chromium-profile'))
    yield b
    b.close()


@pytest.fixture(scope='module')
def served_site(site):
    server = StaticServer(site)
    yield server.url, site
    server.close()


def test_browser_every_page_loads_without_console_errors(served_site, browser):
    url, root = served_site
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob('*.html') if p.name != '404.html')
    assert len(pages) > 20
    script = "document.readyState + ' ' + document.querySelectorAll('h1').length"
    results = browser.visit([f'{url}/{p}' for p in pages], script)
    failures = {r['url']: r['errors'] for r in results if r['errors']}
    assert not failures, f'console errors: {failures}'
    assert all(r['value'].startswith('complete') and not r['value'].endswith(' 0') for r in results), results


def test_browser_detects_a_console_error(tmp_path, browser):
    "The check can fail: a page whose script throws and that loads a missing file is reported."
    (tmp_path / 'bad.html').write_text('<html><body><h1>x</h1><img src="missing.png"><script>throw new Error("boom")</script></body></html>')
    server = StaticServer(tmp_path)
    try: result = browser.visit([f'{server.url}/bad.html'])[0]
    finally: server.close()
    assert any('boom' in e for e in result['errors']) and any('missing.png' in e or '404' in e for e in result['errors'])


SEARCH = """new Promise((done, fail) => {
  const input = document.querySelector('input.md-search__input');
  if (!input) return fail('no search box');
  const t0 = Date.now();
  (function ask() {
    input.value = %s; input.dispatchEvent(new Event('focus')); input.dispatchEvent(new Event('input', {bubbles: true}));
    const hits = [...document.querySelectorAll('.md-search-result__item a, .md-search-result__link')].map(a => a.getAttribute('href'));
    const meta = (document.querySelector('.md-search-result__meta') || {}).textContent || '';
    if (hits.length || /no matching/i.test(meta)) return done(hits);   // the worker answered
    if (Date.now() - t0 > 20000) return fail('no answer from the search worker in 20 s: ' + meta);
    setTimeout(ask, 100);
  })();
})"""


def test_browser_search_finds_a_public_name(served_site, browser):
    url, _ = served_site
    result = browser.visit([f'{url}/index.html'], SEARCH % json.dumps('get_logger'))[0]
    assert not result['errors'], result['errors']
    assert any(re.search(r'/core\.html(\?h=[^#]*)?#get_logger$', h) for h in result['value']), result['value']
    result = browser.visit([f'{url}/index.html'], SEARCH % json.dumps('zzzqqqnotaword'))[0]
    assert result['value'] == [], result['value']


def test_browser_plots_are_shown(scratch, browser):
    "The executed pages' figures load (the real site's notebooks keep no outputs; `make docs` executes them)."
    server = StaticServer(scratch)
    script = "[...document.querySelectorAll('img')].filter(i => i.src.endsWith('.png')).map(i => i.complete && i.naturalWidth)"
    try: results = browser.visit([f'{server.url}/alpha.html', f'{server.url}/benchmarks/perf_x.html'], script)
    finally: server.close()
    for r in results:
        assert not r['errors'], r
        assert r['value'] and all(w and w > 100 for w in r['value']), r


def test_browser_wide_window_is_used_by_code(served_site, browser):
    "On a 2000 px window the content is wider than Material's default cap (61rem), and long code lines scroll."
    url, _ = served_site
    script = ("JSON.stringify({grid: document.querySelector('.md-grid').getBoundingClientRect().width, "
              "overflow: [...new Set([...document.querySelectorAll('pre > code')].map(c => getComputedStyle(c).overflowX))]})")
    result = browser.visit([f'{url}/core.html'], script, width=2000)[0]
    shown = json.loads(result['value'])
    assert shown['grid'] > 1800, shown
    assert shown['overflow'] == ['auto'], shown
