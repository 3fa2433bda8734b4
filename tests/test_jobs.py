"""The operator's commands: fetch (atomic, old file kept on failure), report, demo --json; no key leaks end to end."""
import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from computepulse_ai.adapters import RetryPolicy, make_adapter
from computepulse_ai.cli import main
from computepulse_ai.fakes import FakeProviderServer
from computepulse_ai.jobs import FILES, PROMPTS, demo_config, demo_models, fetch_data_sets
from computepulse_ai.orchestrator import AIOrchestrator

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def fake_config_file(tmp_path, server, **extra):
    cfg = demo_config(server, tmp_path / "data").to_dict()
    cfg.update(extra)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture
def server():
    with FakeProviderServer(seed=3, models=[m for m, _ in demo_models()]) as s:
        yield s


@pytest.fixture
def keys(monkeypatch):
    secrets = {"DASHSCOPE_API_KEY": "sk-dash-SECRET-123456", "DEEPSEEK_API_KEY": "sk-deep-SECRET-654321",
               "ARK_API_KEY": "ark-SECRET-abcdef"}
    for k, v in secrets.items(): monkeypatch.setenv(k, v)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return secrets


def test_fetch_writes_valid_files_atomically_and_keeps_old_ones_on_failure(tmp_path, server, keys, capsys):
    config = fake_config_file(tmp_path, server)
    out = tmp_path / "site-data"
    assert main(["fetch", "gpu", "token", "grid", "--config", str(config), "--out", str(out)]) in (0, 1)
    for kind in ("gpu", "token", "grid_load"):
        if (out / FILES[kind]).exists():
            data = json.loads((out / FILES[kind]).read_text())
            assert isinstance(data, dict if kind == "grid_load" else list) and data
    # every model now answers garbage: validation fails, the previous file stays, exit status 1
    for fake, _ in demo_models(): server.add_fault("content", model=fake.name, text='[{"provider": "x", "price": "n/a"}]')
    (out / FILES["gpu"]).write_text('[{"provider": "AWS", "region": "us", "gpu": "H100", "price": 2.49, "currency": "USD"}]')
    before = (out / FILES["gpu"]).read_bytes()
    capsys.readouterr()
    assert main(["fetch", "gpu", "--config", str(config), "--out", str(out)]) == 1
    assert (out / FILES["gpu"]).read_bytes() == before
    printed = capsys.readouterr().out
    assert "NOT updated" in printed and "gpu_prices.json" in printed


def test_no_api_key_appears_in_logs_records_reports_or_output(tmp_path, server, keys, caplog, capsys):
    config = fake_config_file(tmp_path, server)
    with caplog.at_level(logging.DEBUG):
        main(["fetch", "gpu", "grid", "--config", str(config), "--out", str(tmp_path / "o")])
        main(["report", "--history", str(tmp_path / "data" / "performance_history.jsonl"), "--out", str(tmp_path / "rep")])
    texts = [caplog.text, capsys.readouterr().out]
    for path in list((tmp_path / "data").rglob("*")) + list((tmp_path / "rep").rglob("*")) + list((tmp_path / "o").rglob("*")):
        if path.is_file(): texts.append(path.read_bytes().decode("utf-8", "replace"))
    texts += [json.dumps(r.body) for r in server.requests]
    for secret in keys.values():
        assert not any(secret in t for t in texts), "a key leaked"
    assert server.requests and all(r.auth_present for r in server.requests)   # keys were sent, only as present/absent


def test_missing_key_is_a_clear_error_naming_the_variable(tmp_path, server, monkeypatch, capsys):
    for k in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY"): monkeypatch.delenv(k, raising=False)
    config = fake_config_file(tmp_path, server)
    # issue 16: missing keys are found before any call (one line per variable on stderr, exit 2 with no key at all)
    assert main(["fetch", "token", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert all(err.count(v) == 1 for v in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY")) and not server.requests


def test_report_command_prints_tables_and_writes_files(tmp_path, server, keys, capsys):
    config = fake_config_file(tmp_path, server)
    main(["fetch", "gpu", "token", "--config", str(config), "--out", str(tmp_path / "o")])
    capsys.readouterr()
    assert main(["report", "--history", str(tmp_path / "data" / "performance_history.jsonl"), "--out", str(tmp_path / "rep"),
                 "--period", "h"]) == 0
    out = capsys.readouterr().out
    assert "By model" in out and "p95 (s)" in out     # issue 16: columns carry their units
    assert (tmp_path / "rep" / "report.png").stat().st_size > 1000 and (tmp_path / "rep" / "report.html").exists()
    assert main(["report", "--history", str(tmp_path / "missing.jsonl")]) == 1


def test_demo_json_has_the_promised_fields(tmp_path):
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.run([str(Path(sys.executable).parent / "computepulse-ai"), "demo", "--rounds", "3", "--json", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for field in ("rounds", "cost_usd", "legacy_cost_usd", "accuracy", "legacy_accuracy", "latency_p50_s", "legacy_latency_p50_s"):
        assert field in summary
    assert summary["rounds"] == 3 and summary["legacy_calls_per_fetch"] == 3
    assert summary["cost_usd"] <= summary["legacy_cost_usd"] and summary["calls_per_fetch"] <= 3   # never more than calling everyone
    for kind in FILES.values(): assert (tmp_path / kind).exists()
