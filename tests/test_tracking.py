"""Tracking properties P20, P22, P23, P24 and the report files."""
import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from computepulse_ai.core import PerformanceRecord, Response, TaskType
from computepulse_ai.storage import HistoryLog
from computepulse_ai.tracking import PerformanceTracker, RequestRecord, detect_anomalies, save_report, summarise

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
models = st.sampled_from(["qwen", "deepseek", "doubao"])
responses = st.builds(Response, model=models, latency_s=st.floats(0, 60), input_tokens=st.integers(0, 10**5),
                      output_tokens=st.integers(0, 10**5), cost_usd=st.floats(0, 1),
                      timestamp=st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s)))
rows = st.lists(st.tuples(models, st.sampled_from(TaskType), st.integers(0, 30 * 24), st.none() | st.booleans(),
                          st.floats(0.01, 30), st.floats(0, 0.1), st.booleans()), min_size=1, max_size=60)
cfg = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def tracker_in(path):
    return PerformanceTracker(HistoryLog(path / "perf.jsonl", durability="close"),
                              HistoryLog(path / "req.jsonl", record_type=RequestRecord, durability="close"))


@cfg
@given(st.lists(responses, min_size=1, max_size=10), st.sampled_from(TaskType))
def test_p20_each_response_records_latency_tokens_cost_timestamp(tmp_path_factory, resps, task):
    tracker = tracker_in(tmp_path_factory.mktemp("t"))
    for r in resps: tracker.record_response(r, task)
    stored = tracker.history.query()
    assert len(stored) == len(resps)
    for rec, resp in zip(stored if len({r.timestamp for r in resps}) == len(resps) else [], sorted(resps, key=lambda r: r.timestamp)):
        assert (rec.response_time, rec.token_count, rec.cost, rec.timestamp) == \
               (resp.latency_s, resp.total_tokens, resp.cost_usd, resp.timestamp)
    df = tracker.frame()
    assert df[["response_time", "token_count", "cost", "timestamp"]].notna().all().all()


def _fill(tracker, data):
    for m, t, h, ok, lat, c, success in data:
        tracker.record(PerformanceRecord(m, t, timestamp=T0 + timedelta(hours=h), was_correct=ok, response_time=lat,
                                         cost=c, success=success))


@cfg
@given(rows, st.none() | models, st.none() | st.sampled_from(TaskType), st.integers(0, 30 * 24), st.integers(1, 30 * 24))
def test_p22_reports_contain_accuracy_speed_and_cost_for_the_filters_asked(tmp_path_factory, data, model, task, start, span):
    tracker = tracker_in(tmp_path_factory.mktemp("t"))
    _fill(tracker, data)
    since, until = T0 + timedelta(hours=start), T0 + timedelta(hours=start + span)
    rep = tracker.report(model=model, task_type=task, since=since, until=until)
    expected = [d for d in data if (model is None or d[0] == model) and (task is None or d[1] == task)
                and since <= T0 + timedelta(hours=d[2]) < until]
    assert rep.overall["calls"][0] == len(expected)
    for col in ["accuracy", "latency_p50", "latency_p95", "latency_p99", "success_rate", "cost_usd"]:
        assert col in rep.by_model.columns and col in rep.by_task_type.columns and col in rep.by_period.columns
    if model is not None: assert set(rep.by_model["model"]) <= {model}
    if expected:
        assert rep.overall["cost_usd"][0] == pytest.approx(sum(d[5] for d in expected))
        judged = [float(d[3]) for d in expected if d[3] is not None]
        if judged: assert rep.overall["accuracy"][0] == pytest.approx(np.mean(judged))


@cfg
@given(rows, st.sampled_from(["h", "D", "W"]))
def test_p24_aggregates_by_task_type_period_and_model_add_up_to_totals(tmp_path_factory, data, period):
    tracker = tracker_in(tmp_path_factory.mktemp("t"))
    _fill(tracker, data)
    rep = tracker.report(period=period)
    total_calls, total_cost = rep.overall["calls"][0], rep.overall["cost_usd"][0]
    for part in (rep.by_model, rep.by_task_type, rep.by_model_task, rep.by_period):
        assert part["calls"].sum() == total_calls
        assert part["cost_usd"].sum() == pytest.approx(total_cost)
        assert part["successes"].sum() == rep.overall["successes"][0]
        assert part["judged"].sum() == rep.overall["judged"][0]


@settings(max_examples=15, deadline=None, derandomize=True)   # the same 15 worlds in every run (the world of seed 1325 is pinned below)
@given(st.floats(3, 10), st.integers(0, 10**6))
def test_p23_a_large_deviation_from_a_models_own_history_is_logged(factor, seed):
    rng = np.random.default_rng(seed)
    recs = []
    for model, base in [("fast", 1.0), ("slow", 20.0)]:     # each compared with itself: 20 s is normal for "slow"
        for i in range(150):
            lat = base * rng.lognormal(0, 0.1) * (factor if model == "fast" and i >= 130 else 1)
            recs.append(PerformanceRecord(model, "simple_query", timestamp=T0 + timedelta(minutes=i), response_time=lat).to_dict())
    df = pd.DataFrame(recs); df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    logger = logging.getLogger("computepulse_ai.tracking")
    seen = []
    handler = logging.Handler(); handler.emit = lambda r: seen.append(r.getMessage())
    logger.addHandler(handler)
    try: found = detect_anomalies(df)
    finally: logger.removeHandler(handler)
    assert [(a.model, a.metric) for a in found] == [("fast", "latency_p50")]
    assert any("anomaly: fast" in m for m in seen)


def test_error_rate_and_accuracy_anomalies():
    recs = []
    for i in range(120):
        late = i >= 100
        recs.append(PerformanceRecord("m", "price_extraction", timestamp=T0 + timedelta(minutes=i), response_time=1.0,
                                      success=not (late and i % 2), was_correct=(i % 10 != 0) and not late).to_dict())
    df = pd.DataFrame(recs); df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    assert {a.metric for a in detect_anomalies(df)} == {"error_rate", "accuracy"}


def test_report_files_are_real_png_and_html(tmp_path):
    tracker = tracker_in(tmp_path)
    _fill(tracker, [("qwen", TaskType.PRICE_EXTRACTION, h, h % 3 != 0, 1.0 + h % 5, 0.001, True) for h in range(48)])
    paths = save_report(tracker.report(period="h"), tmp_path / "out")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert "<table" in page and "qwen" in page and "http" not in page


# ---- issue 15: tracking never re-reads the history on the request path; issue 16: anomalies are degradations only ---

def _windowed(model, base_latency, late_latency, base_ok, late_ok, base_correct, late_correct, n=150, window=20):
    recs = []
    for i in range(n):
        late = i >= n - window
        recs.append(PerformanceRecord(model, "simple_query", timestamp=T0 + timedelta(minutes=i),
                                      response_time=(late_latency if late else base_latency) * (1 + 0.02 * (i % 5)),
                                      success=bool((i % 10) < 10 * (late_ok if late else base_ok)),
                                      was_correct=bool((i % 10) < 10 * (late_correct if late else base_correct))))
    return recs


CHANGES = [   # (case, late latency, (usual, late) success share, (usual, late) correct share, expected anomaly metrics)
    ("three times slower", 6.0, (0.9, 0.9), (0.8, 0.8), {"latency_p50"}),
    ("three times faster", 0.7, (0.9, 0.9), (0.8, 0.8), set()),
    ("many more errors", 2.0, (0.9, 0.3), (0.8, 0.8), {"error_rate"}),
    ("no errors any more", 2.0, (0.5, 1.0), (0.8, 0.8), set()),
    ("far less accurate", 2.0, (0.9, 0.9), (0.8, 0.1), {"accuracy"}),
    ("always right now", 2.0, (0.9, 0.9), (0.3, 1.0), set()),
]


@pytest.mark.parametrize("case,late_latency,ok,correct,expected", CHANGES)
def test_only_degradations_are_anomalies(tmp_path, case, late_latency, ok, correct, expected):
    recs = _windowed("m", 2.0, late_latency, ok[0], ok[1], correct[0], correct[1])
    df = pd.DataFrame([r.to_dict() for r in recs]); df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    assert {a.metric for a in detect_anomalies(df)} == expected, case             # the report's check
    tracker = PerformanceTracker(HistoryLog(tmp_path / "perf.jsonl", durability="close"), anomaly_every=len(recs))
    for r in recs: tracker.record(r)
    assert {a.metric for a in tracker.anomalies} == expected, case               # the running check agrees


def test_the_request_path_never_reads_the_history_file(tmp_path, monkeypatch):
    from computepulse_ai import storage
    def no_reading(*args, **kwargs): raise AssertionError("the history was read on the request path")
    tracker = PerformanceTracker(HistoryLog(tmp_path / "perf.jsonl", durability="close"), anomaly_every=10)
    monkeypatch.setattr(storage, "history_frame", no_reading)
    monkeypatch.setattr(HistoryLog, "read", no_reading)
    monkeypatch.setattr(HistoryLog, "frame", no_reading)
    monkeypatch.setattr(storage, "read_history_bytes", no_reading)
    for r in _windowed("m", 2.0, 6.0, 1.0, 1.0, 0.8, 0.8, n=300): tracker.record(r)
    assert [(a.model, a.metric) for a in tracker.anomalies] == [("m", "latency_p50")]
    assert len(tracker.stats.past["m"]) == 280 and len(tracker.stats.recent["m"]) == 20   # bounded memory per model


def test_the_running_baseline_is_bounded_and_survives_a_restart(tmp_path):
    path = tmp_path / "perf.jsonl"
    first = PerformanceTracker(HistoryLog(path, durability="close"), baseline=100)
    recs = _windowed("m", 2.0, 6.0, 1.0, 1.0, 0.8, 0.8, n=520)
    for r in recs[:500]: first.record(r)
    first.history.close()
    assert len(first.stats.past["m"]) == 100                          # the oldest drop out: memory does not grow
    again = PerformanceTracker(HistoryLog(path, durability="close"), anomaly_every=20, baseline=100)
    assert again.warm_up(again.history.tail(120)) == 120              # read from the end of the file, not all of it
    for r in recs[500:]: again.record(r)                               # the last 20 are three times slower
    assert [(a.model, a.metric) for a in again.anomalies] == [("m", "latency_p50")]


def test_a_new_anomaly_is_logged_once_not_on_every_check(tmp_path, caplog):
    tracker = PerformanceTracker(HistoryLog(tmp_path / "perf.jsonl", durability="close"), anomaly_every=1)
    with caplog.at_level(logging.WARNING, logger="computepulse_ai.tracking"):
        for r in _windowed("m", 2.0, 60.0, 1.0, 1.0, 0.8, 0.8, n=200): tracker.record(r)
    assert sum("anomaly: m: latency_p50" in r.getMessage() for r in caplog.records) == 1


def test_p23_world_1325_a_steady_model_is_not_flagged():
    "The world a random run of P23 once drew (factor 3, seed 1325): pure lognormal noise flagged the steady 'slow' model."
    test_p23_a_large_deviation_from_a_models_own_history_is_logged.hypothesis.inner_test(3.0, 1325)


def test_count_tail_is_the_beta_binomial_upper_tail():
    from scipy.stats import betabinom
    from computepulse_ai.tracking import count_tail
    for k, n, a, b in [(0, 20, 1.5, 30.5), (3, 20, 1.5, 30.5), (9, 20, 10.5, 90.5), (20, 20, 0.5, 200.5), (15, 20, 150.5, 3.5)]:
        assert count_tail(k, n, a, b) == pytest.approx(betabinom.pmf(np.arange(k, n + 1), n, a, b).sum(), rel=1e-9)


def test_noise_alone_raises_almost_no_alarms():
    "A threshold of 4 means ~3 false alarms in 100,000 checks; the old z-scores gave 3-10 per 1,000 on such noise."
    from computepulse_ai.tracking import RunningStats
    rng = np.random.default_rng(7)
    checks = alarms = 0
    for sigma, error, accuracy in [(0.1, 0.02, 0.95), (0.6, 0.3, 0.95), (0.3, 0.1, 0.7)]:
        for _ in range(40):
            stats = RunningStats(20)
            for i in range(400):
                stats.add("m", bool(rng.random() >= error), float(rng.lognormal(0, sigma)), float(rng.random() < accuracy))
                if i % 10 == 9 and i >= 60:
                    checks += 1
                    alarms += len(stats.anomalies())
    assert checks == 3 * 40 * 34
    assert alarms <= 2, f"{alarms} false alarms in {checks} checks"


def test_a_real_slowdown_is_still_found_within_one_window():
    from computepulse_ai.tracking import RunningStats
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(30):
        stats = RunningStats(20)
        for i in range(220):
            stats.add("m", True, float(rng.lognormal(0, 0.3) * (2.0 if i >= 200 else 1.0)), 1.0)
        found += [a.metric for a in stats.anomalies()] == ["latency_p50"]
    assert found == 30
