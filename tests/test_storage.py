"""Storage properties (P2, P3, P43–P47), legacy files, concurrency and a SIGKILL crash test."""
import gzip
import json
import logging
import os
import random
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from computepulse_ai.core import PerformanceRecord, TaskType
from computepulse_ai.storage import (HistoryLog, RetentionPolicy, ScoreStore, StorageError, StorageManager,
                                     atomic_write_bytes, parse_history)

HERE = Path(__file__).parent
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(str.strip)
tasks = st.sampled_from([t.value for t in TaskType])
entry = st.fixed_dictionaries({"score": st.floats(0, 1), "sample_count": st.integers(0, 10**6),
                               "last_updated": st.none() | st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat)})
score_tables = st.dictionaries(st.tuples(names, tasks), entry, max_size=20)
records = st.builds(PerformanceRecord, model=names, task_type=st.sampled_from(TaskType),
                    timestamp=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(timezone.utc)),
                    was_correct=st.none() | st.booleans(), response_time=st.floats(0, 100), cost=st.floats(0, 1),
                    token_count=st.integers(0, 10**6), request_id=st.none() | st.uuids().map(str))
fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fast
@given(score_tables, st.floats(allow_nan=True) | st.integers(-5, 5))
def test_p02_every_stored_score_is_in_unit_interval(tmp_path, table, bad):
    store = ScoreStore(tmp_path / "s.json")
    if table:
        store.save(table)
        assert all(0 <= e["score"] <= 1 for e in store.load().values())
    key = ("m", "simple_query")
    if not (isinstance(bad, (int, float)) and 0 <= bad <= 1):
        with pytest.raises(ValueError, match="score"):
            store.save({key: {"score": bad}})
        # a file written by someone else with an out-of-range score: that entry is rejected, the rest load
        (tmp_path / "x.json").write_text(json.dumps({"version": "1.0", "scores": {"m_simple_query": bad if bad == bad else 2,
                                                                                     "n_simple_query": 0.5}}))
        loaded = ScoreStore(tmp_path / "x.json").load()
        assert list(loaded) == [("n", "simple_query")]


@fast
@given(score_tables)
def test_p03_scores_survive_save_load_unchanged(tmp_path, table):
    store = ScoreStore(tmp_path / "s.json")
    store.save(table)
    loaded = store.load()
    assert set(loaded) == set(table)
    for key, e in table.items():
        assert loaded[key]["score"] == e["score"] and loaded[key]["sample_count"] == e["sample_count"]
        if e["last_updated"]: assert datetime.fromisoformat(loaded[key]["last_updated"]) == datetime.fromisoformat(e["last_updated"])


@fast
@given(score_tables, score_tables)
def test_p43_updated_scores_are_on_disk(tmp_path, first, second):
    sm = StorageManager(tmp_path)
    sm.save_scores(first)
    sm.save_scores(second)
    on_disk = json.loads((tmp_path / "confidence_scores.json").read_text())
    assert on_disk["version"] == "2.0"
    assert {(v["model"], v["task_type"]): v["score"] for v in on_disk["scores"].values()} == {k: v["score"] for k, v in second.items()}
    sm.close()


@fast
@given(st.lists(st.lists(records, min_size=1, max_size=5), min_size=1, max_size=5),
       st.sampled_from(["each", "batch", "close"]))
def test_p44_history_only_grows_by_appending(tmp_path, batches, durability):
    path = tmp_path / f"h-{durability}-{os.urandom(4).hex()}.jsonl"
    history = HistoryLog(path, durability=durability, batch_size=3)
    previous = b""
    for batch in batches:
        history.append_many(batch)
        history.flush()
        now = path.read_bytes()
        assert now.startswith(previous)      # earlier bytes never change
        previous = now
    lines = previous.decode().split("\n")[:-1]
    assert [PerformanceRecord.from_json(l) for l in lines] == [r for b in batches for r in b]


@fast
@given(score_tables, st.lists(records, max_size=10))
def test_p45_a_restart_loads_scores_and_history(tmp_path, table, recs):
    folder = tmp_path / os.urandom(4).hex()
    sm = StorageManager(folder, durability="close")
    sm.save_scores(table)
    for r in recs: sm.append(r)
    assert sm.close()
    again = StorageManager(folder)
    assert {k: v["score"] for k, v in again.load_scores().items()} == {k: v["score"] for k, v in table.items()}
    assert sorted(again.history.query(), key=lambda r: r.to_json()) == sorted(recs, key=lambda r: r.to_json())
    again.close()


def test_p46_history_failure_keeps_running_in_memory_and_logs_once(tmp_path, caplog):
    path = tmp_path / "h.jsonl"
    path.symlink_to("/dev/full")                  # every write: ENOSPC, a real full-device error
    history = HistoryLog(path, durability="each", retry_interval_s=0)
    recs = [PerformanceRecord("qwen", "simple_query", response_time=i) for i in range(20)]
    with caplog.at_level(logging.ERROR, logger="computepulse_ai"):
        for r in recs: history.append(r)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "No space left" in errors[0].getMessage()
    assert history.pending == 20 and history.failed
    assert [r.response_time for r in history.query()] == list(range(20))   # still queryable from memory
    path.unlink()                                                          # storage works again
    assert history.flush() and history.pending == 0 and history.failed is None
    assert [PerformanceRecord.from_json(l) for l in path.read_text().split("\n")[:-1]] == recs


def test_p46_scores_failure_keeps_latest_in_memory(tmp_path, caplog):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    sm = StorageManager(blocker)
    table = {("qwen", "simple_query"): {"score": 0.9, "sample_count": 3}}
    with caplog.at_level(logging.ERROR, logger="computepulse_ai"):
        assert sm.save_scores(table) is False
        assert sm.save_scores(table) is False
    assert sum(r.levelno >= logging.ERROR and "scores not saved" in r.getMessage() for r in caplog.records) == 1
    assert sm.degraded
    blocker.unlink()
    assert sm.flush() and not sm.degraded
    assert ScoreStore(blocker / "confidence_scores.json").load()[("qwen", "simple_query")]["score"] == 0.9


def test_p46_real_full_filesystem(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a small tmpfs")
    try:
        (mnt / "filler").write_bytes(b"x" * 60_000)
        history = HistoryLog(mnt / "h.jsonl", durability="each", retry_interval_s=0)
        recs = [PerformanceRecord("m" * 50, "simple_query", response_time=i) for i in range(60)]
        for r in recs: history.append(r)
        assert history.failed and history.pending > 0
        (mnt / "filler").unlink()
        assert history.flush()
        assert history.query() == recs           # no record lost, none duplicated by the partial write
    finally:
        subprocess.run(["umount", str(mnt)])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(records, min_size=1, max_size=40), st.integers(1, 40), st.sampled_from([None, 1500, 4000]))
def test_p47_retention_prunes_into_archives_and_loses_nothing(tmp_path, recs, days, max_bytes):
    folder = tmp_path / os.urandom(4).hex()
    now = datetime(2030, 1, 2, tzinfo=timezone.utc)
    history = HistoryLog(folder / "h.jsonl", durability="close",
                         retention=RetentionPolicy(max_age_days=days * 30, max_bytes=max_bytes), clock=lambda: now)
    history.append_many(recs)
    history.flush()
    moved = history.apply_retention()
    live = history.query()
    cutoff = now - timedelta(days=days * 30)
    assert all(r.timestamp >= cutoff for r in live)
    if max_bytes: assert (folder / "h.jsonl").stat().st_size <= max_bytes
    assert moved == len(recs) - len(live)
    everything = history.query(include_archives=True)
    assert sorted(r.to_json() for r in everything) == sorted(r.to_json() for r in recs)


def test_p47_retention_without_archive_deletes_only_what_the_policy_says(tmp_path):
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    history = HistoryLog(tmp_path / "h.jsonl", durability="each",
                         retention=RetentionPolicy(max_age_days=10, archive=False), clock=lambda: now)
    for d in range(20): history.append(PerformanceRecord("q", "simple_query", timestamp=now - timedelta(days=d, hours=1)))
    assert history.apply_retention() == 10
    assert len(history.query(include_archives=True)) == 10 and not history.archives()


def test_legacy_files_of_the_first_system_load(tmp_path):
    (tmp_path / "v10.json").write_text('{"version": "1.0", "last_updated": "2025-12-05T11:40:04.667435", '
                                       '"scores": {"qwen_simple_query": 0.675, "deepseek_price_extraction": 0.8}}')
    (tmp_path / "v11.json").write_text('{"version": "1.1", "last_updated": "2025-12-05T11:40:04.667435", "scores": '
                                       '{"qwen_simple_query": {"score": 0.5875, "sample_count": 10, "last_updated": "2025-12-05T11:40:04.667435"}}}')
    assert ScoreStore(tmp_path / "v10.json").load()[("deepseek", "price_extraction")]["score"] == 0.8
    assert ScoreStore(tmp_path / "v11.json").load()[("qwen", "simple_query")]["sample_count"] == 10
    (tmp_path / "performance_history.jsonl").write_text(
        '{"timestamp": "2025-12-05T11:40:04.667435", "model": "qwen", "task_type": "simple_query", "was_correct": true, '
        '"response_time": 2.5, "cost": 0.0006, "token_count": 0}\n' * 3)
    history = HistoryLog(tmp_path / "performance_history.jsonl")
    assert len(history.query(model="qwen")) == 3
    df = history.frame()
    assert len(df) == 3 and df["cost"].sum() == pytest.approx(0.0018)


def test_malformed_middle_line_is_reported_with_its_number_and_nothing_else_is_lost(tmp_path, caplog):
    path = tmp_path / "h.jsonl"
    good = [PerformanceRecord("q", "simple_query", response_time=i).to_json() for i in range(5)]
    path.write_text("\n".join(good[:2] + ["{oops"] + good[2:]) + "\n" + good[0][:15])
    history = HistoryLog(path)
    with caplog.at_level(logging.WARNING, logger="computepulse_ai"):
        assert [r.response_time for r in history.query()] == [0, 1, 2, 3, 4]
        assert len(history.frame()) == 5
    text = caplog.text
    assert "h.jsonl:3: malformed" in text and "torn last line" in text
    history.append(PerformanceRecord("q", "simple_query", response_time=9))   # append after a torn line
    history.flush()
    assert [r.response_time for r in history.query()] == [0, 1, 2, 3, 4, 9]


def test_corrupt_scores_file_is_moved_aside_not_overwritten(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(b"\x00\x01 not json")
    store = ScoreStore(path)
    assert store.load() == {}
    aside = list(tmp_path.glob("s.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"\x00\x01 not json"
    store.save({("q", "simple_query"): {"score": 0.5}})
    assert aside[0].read_bytes() == b"\x00\x01 not json"


def _append_many(args):
    path, worker, n = args
    h = HistoryLog(path, durability="batch", batch_size=7)
    for i in range(n): h.append(PerformanceRecord(f"w{worker}", "simple_query", request_id=f"{worker}-{i}", response_time=i))
    h.close()


def test_concurrent_processes_never_interleave_lines(tmp_path):
    path = tmp_path / "h.jsonl"
    with ProcessPoolExecutor(4) as pool: list(pool.map(_append_many, [(path, w, 300) for w in range(4)]))
    report = parse_history(path.read_bytes())
    assert report.issues == []
    assert sorted(r["request_id"] for r in report.rows) == sorted(f"{w}-{i}" for w in range(4) for i in range(300))


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    atomic_write_bytes(tmp_path / "a", b"old")
    (tmp_path / "sub").write_text("file")
    with pytest.raises(StorageError): atomic_write_bytes(tmp_path / "sub" / "x", b"new")
    assert (tmp_path / "a").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "sub"]


@pytest.mark.parametrize("mode,kills", [("sync", 60), ("group", 40)])
def test_crash_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path, mode, kills):
    """A child appends and saves scores in a loop (in its thread, or 16 tasks on the group-commit writer); SIGKILLed at random moments."""
    rng = random.Random(1234)
    acked_appends: set[int] = set()
    last_acked_save = 0
    start = 0
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    for kill in range(kills):
        child = subprocess.Popen([sys.executable, str(HERE / "storage_child.py"), str(tmp_path), str(start), mode],
                                 stdout=subprocess.PIPE, text=True, env=env)
        target = rng.randint(1, 40)
        seen = 0
        for line in child.stdout:                         # wait on the child's own acknowledgements, not on time
            kind, n = line.split()
            if kind == "A":
                acked_appends.add(int(n))
                seen += 1
            else: last_acked_save = max(last_acked_save, int(n))
            if seen >= target: break
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        # every file loads; every acknowledged append is present; the scores file is one complete version
        report = parse_history((tmp_path / "history.jsonl").read_bytes())
        assert all("torn" in issue or "malformed" in issue for issue in report.issues)
        present = {int(r["request_id"][1:]) for r in report.rows}
        assert acked_appends <= present, f"kill {kill}: lost {sorted(acked_appends - present)[:5]}"
        if last_acked_save:
            doc = json.loads((tmp_path / "scores.json").read_text())
            generations = {v["generation"] for v in doc["scores"].values()}
            assert len(generations) == 1 and len(doc["scores"]) == 50
            assert generations.pop() >= last_acked_save
        start = max(present) + 1000 if present else start + 1000
    assert len(acked_appends) > 500


# ---- issue 11: everything read from disk is checked at load, and nothing learned is ever lost ----------------------

GOOD_ENTRY = {"model": "good", "task_type": "simple_query", "score": 0.7, "sample_count": 4, "last_updated": None}


def scores_doc(bad_entry: dict) -> str:
    return json.dumps({"version": "2.0", "scores": {"good/simple_query": GOOD_ENTRY,
                                                    "bad/simple_query": {"model": "bad", "task_type": "simple_query", **bad_entry}}},
                      allow_nan=True)


@pytest.mark.parametrize("case,bad_entry", [
    ("sample_count Infinity", {"score": 0.5, "sample_count": float("inf")}),
    ("sample_count NaN", {"score": 0.5, "sample_count": float("nan")}),
    ("sample_count -Infinity", {"score": 0.5, "sample_count": float("-inf")}),
    ("score NaN", {"score": float("nan"), "sample_count": 3}),
    ("estimator field Infinity", {"score": 0.5, "sample_count": 3, "ewma": float("inf")}),
    ("sample_count a string", {"score": 0.5, "sample_count": "many"}),
    ("sample_count 401 digits", {"score": 0.5, "sample_count": 10**400}),
])
def test_a_poisoned_score_cell_is_quarantined_at_load_and_every_later_save_works(tmp_path, caplog, case, bad_entry):
    from computepulse_ai.learning import LearningEngine
    path = tmp_path / "confidence_scores.json"
    original = scores_doc(bad_entry)
    path.write_text(original)
    sm = StorageManager(tmp_path)
    with caplog.at_level(logging.WARNING, logger="computepulse_ai"):
        entries = sm.load_scores()
    assert list(entries) == [("good", "simple_query")], case           # the bad cell is left out, the good one loads
    assert "bad/simple_query" in caplog.text and "rejected" in caplog.text
    kept = list(tmp_path.glob("confidence_scores.json.rejected-*"))
    assert len(kept) == 1 and kept[0].read_text() == original         # the original is kept before a save drops the cell
    engine = LearningEngine(["good", "bad"])
    engine.load_entries(entries)
    engine.update("bad", "simple_query", 1.0)
    for _ in range(2): assert sm.save_scores(engine.to_entries())    # every later save works (it used to crash forever)
    assert ScoreStore(path).load()[("good", "simple_query")]["score"] == 0.7


def _unreadable(monkeypatch, path: Path):
    "Make reading `path` fail with EACCES (root ignores file modes, so the permission error is injected)."
    real = Path.read_bytes
    def read_bytes(self):
        if self == path: raise PermissionError(13, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)


@pytest.mark.parametrize("case", ["permission denied", "a folder"])
def test_an_unreadable_scores_file_is_never_replaced(tmp_path, monkeypatch, caplog, case):
    path = tmp_path / "confidence_scores.json"
    if case == "a folder": path.mkdir()
    else:
        path.write_text(json.dumps({"version": "2.0", "scores": {"q/simple_query": {**GOOD_ENTRY, "model": "q"}}}))
        _unreadable(monkeypatch, path)
    before = None if case == "a folder" else os.stat(path).st_mtime_ns
    sm = StorageManager(tmp_path)
    with caplog.at_level(logging.ERROR, logger="computepulse_ai"):
        assert sm.load_scores() == {}
        assert sm.save_scores({("q", "simple_query"): {"score": 0.1, "sample_count": 1}}) is False
        assert sm.close() is False                                      # unsaved learned state: the run must fail
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("unreadable" in m for m in errors) and any("could not be written" in m for m in errors)
    if case == "a folder": assert path.is_dir()
    else:
        monkeypatch.undo()
        assert os.stat(path).st_mtime_ns == before and ScoreStore(path).load()[("q", "simple_query")]["score"] == 0.7


@pytest.mark.parametrize("case,blocker", [
    ("history path is a folder", "performance_history.jsonl"),
    ("lock file is a folder", "performance_history.jsonl.lock"),
])
@pytest.mark.parametrize("durability", ["each", "batch", "close"])
def test_records_that_cannot_be_written_at_exit_are_an_error_not_info(tmp_path, caplog, case, blocker, durability):
    (tmp_path / blocker).mkdir()
    sm = StorageManager(tmp_path, durability=durability)
    ack = sm.append(PerformanceRecord("q", "simple_query"))
    if ack is not None: assert ack.result(timeout=30) is False          # not acknowledged: it is not on disk
    with caplog.at_level(logging.INFO, logger="computepulse_ai"):
        assert sm.close() is False
    closing = [r for r in caplog.records if "closed with data that could not be written" in r.getMessage()]
    assert closing and closing[0].levelno == logging.ERROR and "1 record(s)" in closing[0].getMessage()


LEGACY = {"timestamp": "2025-12-05T11:40:04.667435", "model": "qwen", "task_type": "simple_query", "was_correct": True,
          "response_time": 2.5, "cost": 0.0006, "token_count": 0}


@pytest.mark.parametrize("case,change", [
    ("was_correct a string", {"was_correct": "yes"}),
    ("response_time NaN", {"response_time": float("nan")}),
    ("response_time a word", {"response_time": "fast"}),
    ("response_time Infinity", {"response_time": float("inf")}),
    ("negative cost", {"cost": -1}),
    ("cost a string", {"cost": "0.1"}),
    ("fractional token count", {"token_count": 1.5}),
    ("success a string", {"success": "no"}),
    ("accuracy above 1", {"accuracy": 1.5}),
    ("unknown task type", {"task_type": "poetry"}),
    ("empty model", {"model": " "}),
    ("unknown field", {"confidence": 0.9}),
])
def test_odd_legacy_history_rows_are_rejected_by_line_at_load(tmp_path, caplog, case, change):
    from computepulse_ai.tracking import PerformanceTracker, summarise
    path = tmp_path / "performance_history.jsonl"
    lines = [json.dumps(LEGACY), json.dumps({**LEGACY, **change}), json.dumps(LEGACY)]
    path.write_text("\n".join(lines) + "\n")
    history = HistoryLog(path)
    with caplog.at_level(logging.WARNING, logger="computepulse_ai"):
        assert len(history.query()) == 2, case
        df = history.frame()
        tail = history.tail(10)
    assert len(df) == 2 and len(tail) == 2
    assert "performance_history.jsonl:2: invalid record skipped" in caplog.text
    assert summarise(df)["cost_usd"][0] == pytest.approx(0.0012)          # never a negative or non-numeric cost
    PerformanceTracker(history).report()                                  # the report no longer trips over the row


def test_a_config_file_with_a_utf8_bom_loads(tmp_path):
    from computepulse_ai.config import Config, ConfigError
    path = tmp_path / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"quality_threshold": 0.8}).encode())
    assert Config.load(path)["quality_threshold"] == 0.8
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ConfigError, match="folder.json"): Config.load(tmp_path / "folder.json")


def test_orphaned_temporary_files_are_removed_at_start(tmp_path):
    import asyncio
    from computepulse_ai.config import Config
    from computepulse_ai.orchestrator import AIOrchestrator
    orphan = tmp_path / ".confidence_scores.json.0123456789ab.tmp"
    orphan.write_bytes(b'{"version": "2.0", "sco')                      # what a SIGKILL mid-write leaves
    os.utime(orphan, (1_000_000_000, 1_000_000_000))
    keep = tmp_path / ".notes.tmp"                                        # not ours: left alone
    keep.write_text("x")
    cfg = Config.from_dict({"models": [{"name": "a", "provider": "simulated"}]})
    async def start_and_stop():
        async with AIOrchestrator(cfg, adapters={}, folder=tmp_path): pass
    asyncio.run(start_and_stop())
    assert not orphan.exists() and keep.exists()


# ---- group commit, snapshots and the write-ahead log ----------------------------------------------------------------

def test_group_commit_acknowledges_only_what_is_on_disk_and_batches_concurrent_records(tmp_path):
    import asyncio
    import threading
    sm = StorageManager(tmp_path, durability="each")
    busy, release = threading.Event(), threading.Event()
    sm.writer.call(lambda: (busy.set(), release.wait()))
    assert busy.wait(30)

    async def requests():
        acks = [sm.append(PerformanceRecord("q", "simple_query", request_id=f"r{i}")) for i in range(100)]
        assert not any(a.done() for a in acks)          # queued; the writer is busy: nothing is acknowledged yet
        release.set()
        return await asyncio.gather(*[asyncio.wrap_future(a) for a in acks])

    assert all(asyncio.run(requests()))
    on_disk = {r["request_id"] for r in parse_history((tmp_path / "performance_history.jsonl").read_bytes()).rows}
    assert on_disk == {f"r{i}" for i in range(100)}
    assert sm.writer.fsyncs == 1                        # 100 records of 100 "requests": one write, one fsync
    assert sm.close()


def test_a_crash_between_snapshots_loses_no_acknowledged_learning(tmp_path):
    """Learned outcomes after the last snapshot are replayed from the history: the restart has exactly the same scores."""
    import asyncio
    from computepulse_ai.adapters import SimulatedAdapter
    from computepulse_ai.config import Config
    from computepulse_ai.core import Request
    from computepulse_ai.orchestrator import AIOrchestrator
    cfg = Config.from_dict({"storage": {"durability": "each", "save_scores_every": 10**6}, "cache": {"enabled": False},
                            "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "abc"]})
    adapters = lambda: {s.name: SimulatedAdapter(s, accuracy=0.5 + 0.2 * i, latency_s=0, seed=i) for i, s in enumerate(cfg.models)}

    async def run_and_crash():
        orch = await AIOrchestrator(cfg, adapters=adapters(), folder=tmp_path, seed=0).start()
        for i in range(12):
            await orch.process(Request(f"GPU 租赁价格 {i}", data_type="gpu", task_type="price_extraction"))
        return orch.engine.state.copy()                 # no aclose: the process "dies" here

    async def restart():
        async with AIOrchestrator(cfg, adapters=adapters(), folder=tmp_path) as again:
            return again.engine.state.copy(), again.engine.models

    import numpy as np
    before = asyncio.run(run_and_crash())
    assert np.abs(before[1]).sum() > 0                  # something was learned
    after, models = asyncio.run(restart())
    assert models[:3] == ["a", "b", "c"]
    np.testing.assert_allclose(after[:, :3], before, rtol=0, atol=1e-12)
    doc = json.loads((tmp_path / "confidence_scores.json").read_text())   # the restart took a snapshot after replaying
    assert doc["meta"]["epoch"] >= 1


def test_a_snapshot_is_never_replayed_twice(tmp_path):
    import asyncio
    from computepulse_ai.adapters import SimulatedAdapter
    from computepulse_ai.config import Config
    from computepulse_ai.core import Request
    from computepulse_ai.orchestrator import AIOrchestrator
    cfg = Config.from_dict({"storage": {"durability": "each", "save_scores_every": 3}, "cache": {"enabled": False},
                            "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "ab"]})
    adapters = lambda: {s.name: SimulatedAdapter(s, accuracy=0.8, latency_s=0, seed=i) for i, s in enumerate(cfg.models)}

    async def session(n):
        async with AIOrchestrator(cfg, adapters=adapters(), folder=tmp_path, seed=n) as orch:
            for i in range(n): await orch.process(Request(f"GPU 租赁价格 {i}", data_type="gpu", task_type="price_extraction"))
            return orch.engine.sample_count("a", "price_extraction")

    first = asyncio.run(session(7))
    again = asyncio.run(session(0))                       # a clean restart replays nothing (the close snapshot has it all)
    assert again == first


def test_process_does_no_file_io_on_the_event_loop_thread(tmp_path, file_io_spy):
    """Every open/write/fsync of the storage folder made while requests run happens on the storage thread, and each
    request's records are on disk when process() returns (default durability: each)."""
    import asyncio
    import threading
    from computepulse_ai.adapters import SimulatedAdapter
    from computepulse_ai.config import Config
    from computepulse_ai.core import Request
    from computepulse_ai.orchestrator import AIOrchestrator
    from computepulse_ai.tracking import RequestRecord
    folder = tmp_path / "data"
    file_io_spy.match = str(folder)
    calls, watching = file_io_spy.calls, file_io_spy.watching
    cfg = Config.from_dict({"storage": {"durability": "each"}, "cache": {"enabled": False},
                            "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "abc"]})
    adapters = {s.name: SimulatedAdapter(s, accuracy=0.9, latency_s=0, seed=i) for i, s in enumerate(cfg.models)}

    async def go():
        loop_thread = threading.get_ident()
        async with AIOrchestrator(cfg, adapters=adapters, folder=folder, seed=0) as orch:
            watching.set()
            results = await asyncio.gather(*[orch.process(Request(f"GPU 租赁价格 {i}", data_type="gpu", task_type="price_extraction"))
                                             for i in range(20)])
            watching.clear()
            on_disk = {r["request_id"] for r in parse_history((folder / "requests.jsonl").read_bytes(), record_type=RequestRecord).rows}
            perf = {r["request_id"] for r in parse_history((folder / "performance_history.jsonl").read_bytes()).rows}
            return loop_thread, orch.storage, results, on_disk, perf

    loop_thread, storage, results, on_disk, perf = asyncio.run(go())
    assert {kind for kind, _ in calls} >= {"open", "write", "fsync"}      # the records and snapshots were written...
    assert all(thread != loop_thread for _, thread in calls)               # ...never on the event-loop thread
    assert {thread for _, thread in calls} == {storage.writer.thread_id}
    assert {r.request.id for r in results} <= on_disk and {r.request.id for r in results} <= perf   # acknowledged = on disk


@pytest.mark.parametrize("case,content", [
    ("a list", "[1, 2, 3]"),
    ("weights a string", '{"weights": "nope"}'),
    ("a weight a string", '{"weights": {"gpu": {"price_extraction": "high"}}}'),
    ("an unknown task type", '{"weights": {"gpu": {"poetry": 1.0}}}'),
    ("memory of floats", '{"memory": {"k": {"simple_query": 0.5}}}'),
    ("an example of two fields", '{"examples": [["prompt", "simple_query"]]}'),
    ("not JSON", '{"weights": {'),
    ("NaN weight", '{"weights": {"gpu": {"price_extraction": NaN}}}'),
])
def test_a_classifier_state_of_the_wrong_shape_is_moved_aside_and_the_rules_are_used(tmp_path, caplog, case, content):
    import asyncio
    from computepulse_ai.adapters import SimulatedAdapter
    from computepulse_ai.classifier import TaskClassifier
    from computepulse_ai.config import Config
    from computepulse_ai.core import Request
    from computepulse_ai.orchestrator import AIOrchestrator
    path = tmp_path / "classifier_state.json"
    path.write_text(content)
    cfg = Config.from_dict({"storage": {"durability": "each"}, "cache": {"enabled": False},
                            "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "ab"]})
    adapters = {s.name: SimulatedAdapter(s, accuracy=0.9, latency_s=0, seed=i) for i, s in enumerate(cfg.models)}

    async def go():
        async with AIOrchestrator(cfg, adapters=adapters, folder=tmp_path, seed=0) as orch:
            fresh = TaskClassifier(low_confidence=orch.classifier.low_confidence)
            same = orch.classifier.to_state() == fresh.to_state()
            return same, await orch.process(Request("GPU 租赁价格", data_type="gpu"))

    with caplog.at_level(logging.ERROR, logger="computepulse_ai"):
        rules_only, result = asyncio.run(go())
    assert rules_only and result.success, case                          # started, on the rules, and served
    assert any("classifier state" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    aside = list(tmp_path.glob("classifier_state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content          # kept for inspection, not overwritten
    json.loads(path.read_text())                                        # a good state was written at close


def test_an_unreadable_classifier_state_is_not_replaced(tmp_path, caplog):
    import asyncio
    from computepulse_ai.config import Config
    from computepulse_ai.orchestrator import AIOrchestrator
    (tmp_path / "classifier_state.json").mkdir()
    cfg = Config.from_dict({"models": [{"name": "a", "provider": "simulated"}]})
    async def go():
        async with AIOrchestrator(cfg, adapters={}, folder=tmp_path) as orch: pass
        return orch.saved
    with caplog.at_level(logging.ERROR, logger="computepulse_ai"):
        assert asyncio.run(go()) is False                               # the run reports that state was not saved
    assert (tmp_path / "classifier_state.json").is_dir()
    assert any("not replaced" in r.getMessage() for r in caplog.records)
