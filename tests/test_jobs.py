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


@pytest.fixture(scope="module")
def fresh_demo(tmp_path_factory):
    "`computepulse-ai demo --json` as `make run` runs it (20 rounds, seed 0), once for the tests below."
    out = tmp_path_factory.mktemp("demo") / "out" / "demo"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.run([str(Path(sys.executable).parent / "computepulse-ai"), "demo", "--json", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), out


def test_demo_json_has_the_promised_fields(fresh_demo):
    summary, out = fresh_demo
    for field in ("rounds", "cost_usd", "legacy_cost_usd", "accuracy", "legacy_accuracy", "latency_p50_s", "legacy_latency_p50_s"):
        assert field in summary
    assert summary["rounds"] == 20 and summary["legacy_calls_per_fetch"] == 3
    assert summary["cost_usd"] <= summary["legacy_cost_usd"] and summary["calls_per_fetch"] <= 3   # never more than calling everyone
    for kind in FILES.values(): assert (out / kind).exists()


# ---- each data set is its own unit of work (issue 11) ------------------------------------------------------------------

GPU_PROMPT_WORD = "GPU租赁价格"   # appears only in the gpu prompt
assert "token价格" in PROMPTS["token"]
assert GPU_PROMPT_WORD in PROMPTS["gpu"] and not any(GPU_PROMPT_WORD in PROMPTS[k] for k in ("token", "grid_load"))


def run_fetch(config, out, *kinds, extra=()):
    return main(["fetch", *kinds, "--config", str(config), "--out", str(out), *extra])


@pytest.mark.parametrize("answer", [
    '[{"provider": ["Azure"], "region": "East US", "gpu": "H100", "price": 2.95}]',       # a list where a name belongs
    '[{"provider": "Azure\\ud800", "region": "East US", "gpu": "H100", "price": 2.95, "currency": "USD"}]',  # lone surrogate
    '[{"provider": "Azure", "region": "East US", "gpu": "H100", "price": 2.95, "gpu_count": ' + "9" * 401 + '}]',  # huge int
])
@pytest.mark.parametrize("path", ["shadow", "legacy", "learned"])
def test_one_bad_answer_never_stops_the_other_data_sets(tmp_path, server, keys, capsys, answer, path):
    for fake, _ in demo_models(): server.add_fault("content", model=fake.name, text=answer, prompt_contains=GPU_PROMPT_WORD)
    config = fake_config_file(tmp_path, server, features={"path": path})
    out = tmp_path / "site"
    status = run_fetch(config, out, "gpu", "token", "grid")
    printed = capsys.readouterr().out
    assert (out / FILES["token"]).exists() and (out / FILES["grid_load"]).exists(), printed
    gpu = out / FILES["gpu"]
    if gpu.exists():                                     # accepted (the surrogate replaced): the file is valid UTF-8 JSON
        json.loads(gpu.read_bytes().decode("utf-8"))
        assert status == 0
    else:
        assert status == 1 and "not updated: gpu" in printed


def test_a_data_file_path_that_is_a_directory_is_that_data_sets_error(tmp_path, server, keys, capsys):
    out = tmp_path / "site"
    (out / FILES["token"]).mkdir(parents=True)
    config = fake_config_file(tmp_path, server)
    assert run_fetch(config, out, "gpu", "token", "grid") == 1
    printed = capsys.readouterr().out
    assert "token: NOT updated, no model called" in printed and "is a directory" in printed
    assert (out / FILES["gpu"]).exists() and (out / FILES["grid_load"]).exists()
    assert not any("token价格" in json.dumps(r.body, ensure_ascii=False) for r in server.requests)   # no model paid for it


def test_an_unwritable_output_is_reported_before_any_model_is_called(tmp_path, server, keys, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = fake_config_file(tmp_path, server)
    assert run_fetch(config, blocker / "site", "gpu", "token") == 2        # a usage error: the command line names the folder
    assert "cannot write there" in capsys.readouterr().err
    assert server.requests == []                                          # checked before any model is paid for
    from computepulse_ai.orchestrator import AIOrchestrator
    async def job():                                                         # the job's own check, for callers of the library
        async with AIOrchestrator(str(config)) as orch:
            lines = []
            status = await fetch_data_sets(orch, ["gpu", "token"], blocker / "site", echo=lines.append)
            return status, lines
    status, lines = asyncio.run(job())
    assert status == 1 and all("no model called" in line for line in lines[:2]) and server.requests == []


def test_a_corrupt_previous_file_is_set_aside_and_the_log_says_what_happened(tmp_path, server, keys, caplog, capsys):
    out = tmp_path / "site"
    out.mkdir()
    (out / FILES["gpu"]).write_text('[{"provider": "AWS", "gpu": "H1')
    config = fake_config_file(tmp_path, server)
    with caplog.at_level(logging.INFO, logger="computepulse_ai"):
        assert run_fetch(config, out, "gpu") == 0
    assert isinstance(json.loads((out / FILES["gpu"]).read_text()), list)
    asides = list(out.glob(FILES["gpu"] + ".corrupt-*"))
    assert len(asides) == 1 and asides[0].read_text() == '[{"provider": "AWS", "gpu": "H1'
    assert "left in place" not in caplog.text and asides[0].name in caplog.text


def test_records_that_could_not_be_saved_make_fetch_exit_non_zero_with_an_error(tmp_path, server, keys, caplog):
    config = fake_config_file(tmp_path, server)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "performance_history.jsonl").mkdir()    # the history cannot be written
    with caplog.at_level(logging.INFO, logger="computepulse_ai"):
        status = run_fetch(config, tmp_path / "site", "grid")
    assert (tmp_path / "site" / FILES["grid_load"]).exists()      # the data set itself went fine
    assert status == 1
    assert any(r.levelno == logging.ERROR and "could not all be saved" in r.getMessage() for r in caplog.records)


# ---- the data file is the product (issue 12) ---------------------------------------------------------------------------

def many_records(n, hours_ago):
    from datetime import datetime, timedelta, timezone
    stamp = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"provider": f"Cloud{i}", "region": "Region", "gpu": "H100", "price": 2.0 + i / 100, "currency": "USD",
             "updated_at": stamp} for i in range(n)]


ONE_RECORD = '[{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 2.49, "currency": "USD"}]'


@pytest.mark.parametrize("path", ["learned", "shadow"])
def test_records_not_seen_this_hour_are_kept_with_their_age(tmp_path, server, keys, path):
    for fake, _ in demo_models(): server.add_fault("content", model=fake.name, text=ONE_RECORD)
    out = tmp_path / "site"
    out.mkdir()
    previous = many_records(89, hours_ago=3) + [{"provider": "Amazon Web Services", "region": "US-East-1", "gpu": "H100",
                                                 "price": 2.2, "currency": "USD", "updated_at": "2020-01-01T00:00:00Z"}]
    (out / FILES["gpu"]).write_text(json.dumps(previous))
    config = fake_config_file(tmp_path, server, features={"path": path})
    assert run_fetch(config, out, "gpu") == 0
    written = json.loads((out / FILES["gpu"]).read_text())
    assert len(written) == 90                                        # 1 refreshed (AWS = Amazon Web Services) + 89 kept
    aws = [r for r in written if r["gpu"] == "H100" and r["region"] == "US-East-1"]
    assert len(aws) == 1 and aws[0]["price"] == 2.49 and aws[0]["updated_at"] != "2020-01-01T00:00:00Z"
    kept = [r for r in written if r["provider"].startswith("Cloud")]
    assert {r["updated_at"] for r in kept} == {previous[0]["updated_at"]}   # kept with their age, not made fresh


def test_stale_records_are_dropped_with_a_log_line(tmp_path, server, keys, caplog):
    for fake, _ in demo_models(): server.add_fault("content", model=fake.name, text=ONE_RECORD)
    out = tmp_path / "site"
    out.mkdir()
    (out / FILES["gpu"]).write_text(json.dumps(many_records(3, hours_ago=30) + many_records(2, hours_ago=1)[:0]))
    config = fake_config_file(tmp_path, server, data_files={"max_record_age_h": 24, "min_keep_share": 0})
    with caplog.at_level(logging.INFO, logger="computepulse_ai"):
        assert run_fetch(config, out, "gpu") == 0
    assert len(json.loads((out / FILES["gpu"]).read_text())) == 1
    assert "dropped 3 record(s) not refreshed for over 24 h" in caplog.text


def test_a_file_that_would_shrink_is_not_written_unless_forced(tmp_path, server, keys, capsys):
    for fake, _ in demo_models(): server.add_fault("content", model=fake.name, text=ONE_RECORD)
    out = tmp_path / "site"
    out.mkdir()
    (out / FILES["gpu"]).write_text(json.dumps(many_records(90, hours_ago=48)))   # all stale: the new file would hold 1
    before = (out / FILES["gpu"]).read_bytes()
    config = fake_config_file(tmp_path, server)
    assert run_fetch(config, out, "gpu") == 1
    assert (out / FILES["gpu"]).read_bytes() == before
    printed = capsys.readouterr().out
    assert "would shrink from 90 to 1 record(s)" in printed and "--force" in printed
    assert run_fetch(config, out, "gpu", extra=["--force"]) == 0
    assert len(json.loads((out / FILES["gpu"]).read_text())) == 1


def test_the_energy_file_keeps_exactly_its_five_fields(tmp_path, server, keys):
    config = fake_config_file(tmp_path, server)
    assert run_fetch(config, tmp_path / "site", "grid") == 0
    grid = json.loads((tmp_path / "site" / FILES["grid_load"]).read_text())
    assert set(grid) == {"annual_twh", "estimated_gw", "kwh_price", "active_gpu_est", "source"}


# ---- the demo: deterministic for a seed, fresh unless --resume, README figures reproduced (issue 16) --------------

def _summary_without_timing(summary):
    return {k: v for k, v in summary.items() if "latency" not in k and k != "files"}


def test_the_demo_is_deterministic_and_starts_fresh_unless_resumed(tmp_path):
    from computepulse_ai.jobs import run_demo
    first = asyncio.run(run_demo(rounds=2, out_dir=tmp_path / "a", seed=5, progress=False))
    again = asyncio.run(run_demo(rounds=2, out_dir=tmp_path / "a", seed=5, progress=False))           # same folder: fresh
    elsewhere = asyncio.run(run_demo(rounds=2, out_dir=tmp_path / "b", seed=5, progress=False))
    assert _summary_without_timing(first) == _summary_without_timing(again) == _summary_without_timing(elsewhere)
    resumed = asyncio.run(run_demo(rounds=2, out_dir=tmp_path / "a", seed=5, progress=False, resume=True))
    total = lambda s: sum(n for by_task in s["trust_samples"].values() for n in by_task.values())
    assert total(resumed) > total(first)                       # it continued from the learned state
    assert total(asyncio.run(run_demo(rounds=2, out_dir=tmp_path / "a", seed=5, progress=False))) == total(first)


def test_the_demo_never_removes_a_folder_it_did_not_make(tmp_path):
    from computepulse_ai.core import ComputePulseError
    from computepulse_ai.jobs import run_demo
    precious = tmp_path / "data" / "confidence_scores.json"
    precious.parent.mkdir()
    precious.write_text("{}")
    with pytest.raises(ComputePulseError, match="not made by the demo"):
        asyncio.run(run_demo(rounds=1, out_dir=tmp_path, progress=False))
    assert precious.read_text() == "{}"


def test_the_readme_demo_figures_are_what_a_fresh_run_prints(fresh_demo):
    import re
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### What `make run` does and prints", 1)[1]
    block = section.split("```text\n", 1)[1].split("\n```", 1)[0]
    prose = section.split("\n```", 2)[2].split("\n## ", 1)[0]
    from computepulse_ai.jobs import format_demo
    summary, out = fresh_demo
    printed = format_demo(summary).replace(str(out), "out/demo")   # what `computepulse-ai demo` prints for this run
    untimed = lambda text: [line for line in text.splitlines() if not line.startswith("latency p50")]
    assert untimed(printed) == untimed(block)                  # every figure but the machine-dependent latency
    for figure in re.findall(r"(\d+\.\d) %", prose):           # the prose quotes the block's figures
        assert f"{figure}%" in block, figure
    calls = re.search(r"with (\d\.\d\d) model calls per\s+fetch", prose).group(1)
    assert re.search(rf"model calls per fetch\s+{calls}\s", block)
    cost = re.search(r"cost \(USD\)\s+([\d.]+)\s+([\d.]+)", block)
    share = re.search(r"at (\d+) %\s+of\s+its\s+cost", prose).group(1)
    assert round(100 * float(cost.group(1)) / float(cost.group(2))) == int(share)


def test_fetch_checks_new_values_against_the_previous_file(tmp_path, server, keys, capsys):
    jumped = '[{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 8.5, "currency": "USD"}]'   # ×3.4 in an hour
    for fake, _ in demo_models(): server.add_fault("content", model=fake.name, text=jumped)
    out = tmp_path / "site"
    out.mkdir()
    (out / FILES["gpu"]).write_text(ONE_RECORD)
    config = fake_config_file(tmp_path, server, validation={"jump_action": "reject"})
    assert run_fetch(config, out, "gpu", extra=["--path", "legacy"]) == 1       # no provenance on the legacy path: one voice
    assert "moved ×3.41 since the previous file" in capsys.readouterr().out
    assert json.loads((out / FILES["gpu"]).read_text()) == json.loads(ONE_RECORD)
    assert run_fetch(config, out, "gpu", extra=["--path", "learned"]) == 0      # the learned path: models agree on it
    assert json.loads((out / FILES["gpu"]).read_text())[0]["price"] == 8.5


def test_shadow_fetches_write_their_diffs_on_the_storage_thread_not_the_event_loop(tmp_path, file_io_spy):
    "The shadow log's lines are written and fsynced by the storage writer, and each is on disk when fetch returns."
    import threading
    from computepulse_ai.adapters import SimulatedAdapter
    from computepulse_ai.compat import CollaborationService, ShadowDiff
    from computepulse_ai.config import Config
    from computepulse_ai.storage import parse_history
    folder = tmp_path / "data"
    file_io_spy.match = "shadow_diffs"
    calls, watching = file_io_spy.calls, file_io_spy.watching
    cfg = Config.from_dict({"storage": {"durability": "each"}, "cache": {"enabled": False},
                            "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "abc"]})
    adapters = {s.name: SimulatedAdapter(s, accuracy=0.9, latency_s=0, seed=i) for i, s in enumerate(cfg.models)}

    async def go():
        async with AIOrchestrator(cfg, adapters=adapters, folder=folder, seed=0) as orch:
            service, again = CollaborationService(orch), CollaborationService(orch)
            assert again.shadow_log is service.shadow_log              # one log object per file
            watching.set()
            outcomes = [await service.fetch(f"GPU 租赁价格 {i}", "gpu", path="shadow") for i in range(3)]
            watching.clear()
            on_disk = parse_history((folder / "shadow_diffs.jsonl").read_bytes(), record_type=ShadowDiff).rows
            return threading.get_ident(), orch.storage.writer.thread_id, outcomes, on_disk

    loop_thread, writer_thread, outcomes, on_disk = asyncio.run(go())
    assert {kind for kind, _ in calls} >= {"write", "fsync"}
    assert {thread for _, thread in calls} == {writer_thread} and writer_thread != loop_thread
    assert [row["request_id"] for row in on_disk] == [o.diff.request_id for o in outcomes]
