"""The command line as a newcomer and an operator meet it (issue 16): one clear line and an exit status for ordinary
mistakes, `check` before the first fetch, the one-line offline start, metrics for the hourly job, logging that
respects the application, `make lab` as root, and the README's notebook snippet run as written."""
from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from computepulse_ai.cli import main
from computepulse_ai.config import Config
from computepulse_ai.fakes import FakeProviderServer
from computepulse_ai.jobs import demo_models
from computepulse_ai.offline import OFFLINE_KEY_ENV, write_offline_config

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY", OFFLINE_KEY_ENV)


@pytest.fixture(autouse=True)
def clean_logging(monkeypatch):
    "Each test starts with no key in the environment and leaves the package logger as it found it."
    for key in KEYS: monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    logger = logging.getLogger("computepulse_ai")
    saved = logger.level, list(logger.handlers), getattr(logger, "_computepulse_level", None)
    yield
    for h in [h for h in logger.handlers if h not in saved[1]]: logger.removeHandler(h)
    logger.setLevel(saved[0])
    logger._computepulse_level = saved[2]


def run(capsys, *argv) -> tuple[int, str, str]:
    try: status = main(list(argv))
    except SystemExit as e: status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture
def server():
    with FakeProviderServer(seed=0, models=[fake for fake, _ in demo_models()]) as s:
        yield s


@pytest.fixture
def fake_config(server, tmp_path) -> Path:
    return write_offline_config(server, tmp_path / "fake.json")


# ---------------------------------------------------------------------------------------------------------------
# Item 5: one line per problem, exit 2 for usage/configuration, 1 for failed work, --debug, --version

@pytest.mark.parametrize("content, expected", [
    ('{"routnig": {"epsilon": 0.1}}', "unknown key 'routnig'"),
    ('{"quality_threshold": "high"}', 'quality_threshold="high": expected a number in [0, 1]'),
    ('{"models": [', "not valid JSON"),
    ('{"routing": "epsilon"}', "routing=\"epsilon\": expected an object (the 'routing' section's options)"),  # was "unknown key ... a typo?"
    ('{"storage": {"retention": 365}}', "storage.retention=365: expected an object"),
    ('{"validation": {"cny_per_usd": "7.2"}}', "validation: ValidationRules.cny_per_usd='7.2': expected a number > 0"),  # check passed it, fetch exited 1
])
def test_bad_config_is_one_line_and_exit_2(capsys, tmp_path, content, expected):
    config = tmp_path / "config.json"
    config.write_text(content)
    for command in (["fetch", "gpu", "--out", str(tmp_path / "out")], ["check"]):
        status, _, err = run(capsys, *command, "--config", str(config))
        assert status == 2, (command, err)
        assert len(err.strip().splitlines()) == 1, err
        assert expected in err and "Traceback" not in err


@pytest.mark.parametrize("argv, expected", [
    (["report", "--since", "yesterday"], "not an ISO-8601 time"),
    (["report", "--until", "tomorrow"], "not an ISO-8601 time"),
    (["report", "--period", "banana"], "not a period"),
    (["fake-providers", "--port", "99999"], "not a port number"),
    (["fake-providers", "--port", "http"], "not a port number"),
    (["demo", "--rounds", "0"], "expected at least 1"),
    (["fetch", "gpu", "--metrics-port", "70000"], "not a port number"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, expected):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_port_in_use_is_a_failure_naming_the_address(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, _, err = run(capsys, "fake-providers", "--port", str(port))
    assert status == 1
    assert len(err.strip().splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_unwritable_out_stops_before_any_model_is_called(capsys, server, fake_config, tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_KEY_ENV, "placeholder")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status, _, err = run(capsys, "fetch", "gpu", "--config", str(fake_config), "--out", str(blocker / "out"))
    assert status == 2
    assert "--out" in err and "cannot write there" in err and len(err.strip().splitlines()) == 1
    assert server.requests == []                        # nothing paid for
    status, _, err = run(capsys, "report", "--history", str(tmp_path / "none.jsonl"))
    assert status == 1 and "no history file" in err


def test_debug_shows_the_traceback_and_version_is_there(capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{")
    status, _, err = run(capsys, "--debug", "check", "--config", str(config))
    assert status == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("computepulse-ai check: error:")
    status, _, err = run(capsys, "check", "--debug", "--config", str(config))
    assert status == 2 and "Traceback" in err
    status, out, _ = run(capsys, "--version")
    assert status == 0 and re.match(r"computepulse-ai \d+\.\d+", out)


# ---------------------------------------------------------------------------------------------------------------
# Item 6: check, and missing keys said once

def test_check_reports_keys_by_name_and_endpoints(capsys, server, fake_config, monkeypatch):
    status, out, _ = run(capsys, "check", "--config", str(fake_config))
    assert status == 1
    lines = [l for l in out.splitlines() if l.startswith(("ok", "FAIL"))]
    assert len(lines) == 3 and all(f"{OFFLINE_KEY_ENV}: NOT SET" in l and "reachable" in l for l in lines)
    secret = "sk-do-not-print-0123456789"
    monkeypatch.setenv(OFFLINE_KEY_ENV, secret)
    status, out, err = run(capsys, "check", "--config", str(fake_config))
    assert status == 0, out
    assert secret not in out + err
    doc = json.loads(fake_config.read_text())
    with socket.socket() as closed:                     # a port that was free a moment ago: nothing listens there
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    doc["models"][1]["base_url"] = f"http://127.0.0.1:{dead}/v1"
    fake_config.write_text(json.dumps(doc))
    status, out, _ = run(capsys, "check", "--config", str(fake_config), "--timeout", "2")
    assert status == 1
    deepseek = next(l for l in out.splitlines() if " deepseek " in l)
    assert deepseek.startswith("FAIL") and f"127.0.0.1:{dead}" in deepseek and "UNREACHABLE" in deepseek


def test_fetch_without_keys_says_so_once_per_variable(capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text((ROOT / "config.example.json").read_text())
    status, out, err = run(capsys, "fetch", "gpu", "token", "grid", "--config", str(config), "--out", str(tmp_path / "out"))
    assert status == 2
    for variable in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY"):
        assert (out + err).count(variable) == 1, (variable, err)
    assert "shadow: same data" not in out + err
    assert not (tmp_path / "out" / "gpu_prices.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Item 7: the offline start, fake-providers prints base_url, README snippet; metrics of the fetch

def test_fake_providers_prints_base_url_and_writes_a_config(capsys, tmp_path):
    from computepulse_ai.cli import build_parser, run_fake_providers
    target = tmp_path / "fake.json"
    code = run_fake_providers(build_parser().parse_args(["fake-providers", "--write-config", str(target)]), wait=lambda: None)
    out = capsys.readouterr().out
    assert code == 0
    assert "base_address" not in out and out.count("base_url:") == 3
    cfg = Config.load(target)
    urls = {m.provider: m.base_url for m in cfg.models}
    for line in out.splitlines()[:3]: assert line.split("base_url: ")[1] in urls.values()
    assert {m.api_key_env for m in cfg.models} == {OFFLINE_KEY_ENV}


def test_fetch_against_the_written_config_with_metrics_textfile(capsys, server, fake_config, tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_KEY_ENV, "placeholder")
    prom = tmp_path / "textfile" / "computepulse.prom"
    prom.parent.mkdir()
    argv = ["fetch", "gpu", "grid", "--config", str(fake_config), "--out", str(tmp_path / "out"), "--metrics-textfile", str(prom)]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert (tmp_path / "out" / "gpu_prices.json").exists() and (tmp_path / "out" / "grid_load.json").exists()
    text = prom.read_text()
    for name in ("computepulse_model_calls_total", "computepulse_model_failures_total", "computepulse_model_cost_usd_total",
                 "computepulse_model_latency_seconds_bucket", "computepulse_records_served_total",
                 "computepulse_records_rejected_total", "computepulse_last_success_timestamp_seconds"):
        assert name in text, name
    def calls(text):
        return sum(float(v) for v in re.findall(r'^computepulse_model_calls_total\{[^}]*\} (\S+)$', text, re.M))
    first = calls(text)
    assert first == len([r for r in server.requests])   # every call the fake server saw is counted
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    assert calls(prom.read_text()) == len(server.requests) > first    # counters carried over from the previous run
    assert [p.name for p in prom.parent.iterdir()] == ["computepulse.prom"]   # atomic: no temporary file left


def snippet_from_index() -> str:
    doc = json.loads((ROOT / "nbs" / "index.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in doc["cells"] if c["cell_type"] == "markdown")
    section = text[text.index("## From a notebook"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs_offline_and_displays_its_result():
    src = snippet_from_index()
    tree = ast.parse(src)
    last = tree.body[-1]
    assert isinstance(last, ast.Expr), "the snippet must end in an expression, so Jupyter displays it"
    assert not any(isinstance(node, ast.AsyncWith) for node in ast.walk(last))
    body = ast.Module(body=tree.body[:-1], type_ignores=[])
    code = compile(body, "README snippet", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    shown = compile(ast.Expression(last.value), "README snippet", "eval")
    namespace: dict = {}

    async def play():
        await eval(code, namespace)
        return eval(shown, namespace)
    value = asyncio.run(play())
    assert isinstance(value, list) and value and {"provider", "gpu", "price"} <= set(value[0])
    assert namespace["result"].success


# ---------------------------------------------------------------------------------------------------------------
# Item 4: logging

def test_orchestrator_keeps_the_level_the_application_set(tmp_path):
    from computepulse_ai.orchestrator import AIOrchestrator
    logging.getLogger("computepulse_ai").setLevel(logging.ERROR)
    AIOrchestrator(Config.from_dict({"logging": {"level": "INFO"}}), folder=tmp_path)
    assert logging.getLogger("computepulse_ai").level == logging.ERROR


AGGREGATION_SCRIPT = """
import asyncio, sys, tempfile
from computepulse_ai.config import Config, configure_logging
from computepulse_ai.core import Request, TaskType
from computepulse_ai.orchestrator import AIOrchestrator
if sys.argv[1] == "cli": configure_logging(level="WARNING", handler=True)   # the command line's handler
models = [{"name": n, "provider": "simulated", "input_price": 1.0, "output_price": 2.0,
           "options": {"accuracy": 0.5, "latency_s": 0.0, "seed": i}} for i, n in enumerate(["a", "b"])]
cfg = Config.from_dict({"cache": {"enabled": False}, "models": models,   # a bar no model meets, whatever is learned
                        "routing": {"task_thresholds": {t.value: 1.0 for t in TaskType}}})
async def play():
    async with AIOrchestrator(cfg, folder=tempfile.mkdtemp(), seed=0) as orch:
        for _ in range(60): await orch.process(Request("请返回主要云厂商的GPU租赁价格(JSON)", data_type="gpu"))
asyncio.run(play())
from computepulse_ai.core import repeats
repeats.flush()
"""


@pytest.mark.parametrize("output", ["last_resort", "cli"])
def test_a_warning_on_every_request_is_aggregated(output):
    "Sixty requests below the bar through the real router: one warning line and a summary, not sixty lines."
    # the bar is set to 1.0 for every task type, so the warning fires on every request however the scores move
    res = subprocess.run([sys.executable, "-c", AGGREGATION_SCRIPT, output], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    bar = [l for l in res.stderr.splitlines() if "meet the bar" in l]
    assert len(bar) == 2, bar
    assert "message repeated" not in bar[0] and re.search(r"\[message repeated (\d+) times\]$", bar[1])
    assert int(re.search(r"repeated (\d+) times", bar[1]).group(1)) == 59


def test_aggregation_leaves_the_applications_handlers_alone():
    "A handler the application installed sees every warning: the filter is only on outputs the package controls."
    from computepulse_ai.core import get_logger
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = get_logger("computepulse_ai.routing")
    logger.addHandler(handler)
    try:
        for i in range(5): logger.warning("no or too few models meet the bar %.2f for %s", 0.95, "price_extraction")
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 5


# ---------------------------------------------------------------------------------------------------------------
# Item 8 and item 10

def test_make_lab_allows_root_and_opens_the_repository():
    res = subprocess.run(["make", "-n", "lab", f"STAMP={ROOT / 'pyproject.toml'}"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # under `make test` the outer make's flags reach this one and add "Entering/Leaving directory" lines: pick the command
    command = next(line for line in reversed(res.stdout.splitlines()) if "jupyter" in line)
    assert "jupyter lab" in command and f'--ServerApp.root_dir="{ROOT}"' in command
    assert ("--allow-root" in command) == (os.getuid() == 0)


def test_report_headline_units_and_empty_selection(capsys, server, fake_config, tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_KEY_ENV, "placeholder")
    status, _, err = run(capsys, "fetch", "gpu", "token", "--config", str(fake_config), "--out", str(tmp_path / "out"),
                         "--path", "shadow")
    assert status == 0, err
    history = fake_config.parent / "data" / "performance_history.jsonl"
    status, out, err = run(capsys, "report", "--history", str(history), "--out", str(tmp_path / "report"), "--period", "h")
    assert status == 0, err
    head = out[out.index("Headline"):out.index("By model")]
    for column in ("calls per fetch", "cost per fetch (USD)", "legacy cost per fetch (USD)", "same as legacy (%)"):
        assert column in head, column
    assert "p50 (s)" in out and "cost (USD)" in out and "success (%)" in out
    assert not re.search(r"\d\.\d{6,}", out), "figures are rounded"
    assert (tmp_path / "report" / "report.html").exists()
    status, out, err = run(capsys, "report", "--history", str(history), "--out", str(tmp_path / "empty"), "--since", "2099-01-01")
    assert status == 1 and "no records" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "empty").exists()


def test_fetch_metrics_port(capsys, server, fake_config, tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_KEY_ENV, "placeholder")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, _, err = run(capsys, "fetch", "gpu", "--config", str(fake_config), "--out", str(tmp_path / "out"),
                             "--metrics-port", str(port))
    assert status == 1 and f"cannot serve metrics on port {port}" in err and len(err.strip().splitlines()) == 1
    assert server.requests == []
    status, _, err = run(capsys, "fetch", "gpu", "--config", str(fake_config), "--out", str(tmp_path / "out"), "--metrics-port", "0")
    assert status == 0, err
    served = int(re.search(r"serving Prometheus metrics on port (\d+)", err).group(1))
    with socket.socket() as probe:            # the endpoint is closed with the job
        assert probe.connect_ex(("127.0.0.1", served)) != 0


def test_demo_progress_bar_is_not_broken_by_warnings(tmp_path):
    "The demo asks for errors only; the orchestrator it builds no longer resets that to INFO (warnings under the bar)."
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    res = subprocess.run([str(Path(sys.executable).parent / "computepulse-ai"), "demo", "--rounds", "2", "--out", str(tmp_path / "demo")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "meet the bar" not in res.stderr and "WARNING" not in res.stderr, res.stderr
    assert "learned" in res.stdout


def test_fetch_runs_with_the_models_that_have_keys(capsys, server, fake_config, tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_KEY_ENV, "placeholder")
    doc = json.loads(fake_config.read_text())
    doc["models"][0]["api_key_env"] = "COMPUTEPULSE_TEST_UNSET_KEY"       # qwen has no key in this run
    fake_config.write_text(json.dumps(doc))
    status, out, err = run(capsys, "fetch", "gpu", "--config", str(fake_config), "--out", str(tmp_path / "out"), "--path", "shadow")
    assert status == 0, err
    assert err.count("COMPUTEPULSE_TEST_UNSET_KEY is not set: qwen left out of this run") == 1
    assert {r.model for r in server.requests} == {"deepseek-chat", "doubao-seed-1-6"}   # qwen was never called
