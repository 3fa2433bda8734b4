"""Orchestrator: P1, P38, P39-P42 end to end, degraded stages, cost/quality warnings, and shutdown/kill safety."""
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from computepulse_ai.adapters import SimulatedAdapter
from computepulse_ai.config import Config, ConfigManager
from computepulse_ai.core import ModelSpec, Request, TaskType
from computepulse_ai.orchestrator import AIOrchestrator
from computepulse_ai.storage import HistoryLog
from computepulse_ai.tracking import RequestRecord

HERE = Path(__file__).parent


def config(names=("a", "b", "c"), **extra):
    doc = {"storage": {"durability": "close"}, "cache": {"enabled": False},
           "models": [{"name": n, "provider": "simulated", "input_price": 1 + i, "output_price": 2 + i,
                       "typical_latency_s": 0} for i, n in enumerate(names)]}
    for k, v in extra.items(): doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return Config.from_dict(doc)


def adapters_for(cfg, accuracy=0.9):
    return {s.name: SimulatedAdapter(s, accuracy=accuracy if not isinstance(accuracy, dict) else accuracy[s.name],
                                     latency_s=0, seed=i) for i, s in enumerate(cfg.models)}


def run(coro):
    return asyncio.run(coro)


prompts = st.sampled_from(["GPU 租赁价格", "token 价格 每百万", "数据中心 年耗电量 估算", "what is 2+2?", "验证以下GPU价格数据"])
data_types = st.sampled_from([None, "gpu", "token", "grid_load"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(prompts, data_types), min_size=1, max_size=6))
def test_p01_every_processed_request_leaves_a_complete_performance_record(tmp_path_factory, batch):
    folder = tmp_path_factory.mktemp("o")
    cfg = config()
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=folder, seed=0) as orch:
            return [await orch.process(Request(p, data_type=d)) for p, d in batch]
    results = run(go())
    perf = HistoryLog(folder / "performance_history.jsonl").query()
    reqs = HistoryLog(folder / "requests.jsonl", record_type=RequestRecord).query()
    assert [r.request_id for r in reqs] == [res.request.id for res in results]
    for res in results:
        assert res.request.task_type is not None                     # P6/P7 at the orchestrator level
        mine = [p for p in perf if p.request_id == res.request.id]
        assert sorted(p.model for p in mine) == sorted(res.models)   # one record per model response
        for p in mine:
            assert p.task_type == res.request.task_type and p.response_time >= 0 and p.cost >= 0
            assert p.token_count == p.input_tokens + p.output_tokens


def test_p38_a_changed_threshold_applies_to_the_next_request_without_restart(tmp_path):
    path = tmp_path / "config.json"
    doc = config().to_dict()
    doc["quality_threshold"] = 0.4                        # every new model (0.5) meets it
    doc["routing"]["strategies"]["simple_query"] = "SINGLE_FAST"
    path.write_text(json.dumps(doc))
    manager = ConfigManager(path)
    async def go():
        async with AIOrchestrator(manager, adapters=adapters_for(manager.current()), folder=tmp_path / "d", seed=0) as orch:
            first = await orch.process(Request("what is 2+2?", task_type="simple_query"))
            doc["quality_threshold"] = 0.9                # nobody meets it any more
            doc["routing"]["strategies"]["simple_query"] = "TRIPLE_CONSENSUS"
            path.write_text(json.dumps(doc)); os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
            second = await orch.process(Request("what is 2+2?", task_type="simple_query"))
            return first, second
    first, second = run(go())
    assert first.request.quality_threshold == 0.4 and not first.decision.below_bar
    assert first.decision.strategy.value == "SINGLE_FAST" and len(first.decision.models) == 1
    assert second.request.quality_threshold == 0.9 and second.decision.below_bar
    assert second.decision.strategy.value == "TRIPLE_CONSENSUS" and len(second.decision.models) >= 2


def test_p39_p40_p41_a_registered_adapter_is_routable_at_once_starts_neutral_and_learns(tmp_path):
    cfg = config(names=("a", "b"), routing={"strategies": {"data_validation": "TRIPLE_CONSENSUS"}})
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            spec = ModelSpec("newbie", "simulated", typical_latency_s=0)
            orch.register_model(spec, SimulatedAdapter(spec, accuracy=0.95, latency_s=0, seed=9))
            assert all(orch.engine.score("newbie", t) == 0.5 for t in TaskType)            # P40
            res = await orch.process(Request("验证以下GPU价格数据", data_type="gpu", task_type="data_validation"))
            assert "newbie" in res.decision.models                                         # P39: TRIPLE uses all 3
            return orch.engine.score("newbie", "data_validation"), orch.engine.sample_count("newbie", "data_validation")
    score, count = run(go())
    perf = HistoryLog(tmp_path / "performance_history.jsonl").query(model="newbie")
    assert len(perf) == 1 and count == 1 and score != 0.5                                  # P41


def test_p42_a_removed_model_never_breaks_routing_even_mid_flight(tmp_path):
    cfg = config()
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            pending = asyncio.create_task(orch.process(Request("验证以下GPU价格数据", data_type="gpu", task_type="data_validation")))
            await asyncio.sleep(0)
            orch.remove_model("b")
            first = await pending
            second = await orch.process(Request("验证以下GPU价格数据", data_type="gpu", task_type="data_validation"))
            orch.remove_model("a"); orch.remove_model("c")
            third = await orch.process(Request("GPU 租赁价格", data_type="gpu"))
            return first, second, third
    first, second, third = run(go())
    assert first.success and second.success and "b" not in second.decision.models
    assert not third.success and "no model could be routed" in third.error


def test_cost_limit_is_kept_unless_quality_forces_it_with_a_warning(tmp_path, caplog):
    cfg = config()
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            cheap = await orch.process(Request("GPU 租赁价格", data_type="gpu", task_type="price_extraction", cost_limit=1.0))
            forced = await orch.process(Request("验证GPU价格", data_type="gpu", task_type="data_validation", cost_limit=1e-9))
            return cheap, forced
    with caplog.at_level(logging.WARNING, logger="computepulse_ai"):
        cheap, forced = run(go())
    assert cheap.decision.expected_cost <= 1.0 and not cheap.decision.quality_forced
    assert forced.decision.quality_forced and forced.warnings
    assert any("cost" in r.getMessage().lower() or "quality" in r.getMessage().lower()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_failed_models_degrade_not_fail_and_all_failing_lists_each_error(tmp_path):
    cfg = config()
    adapters = adapters_for(cfg)
    adapters["a"].failure_rate = 1.0
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters, folder=tmp_path, seed=0) as orch:
            some = await orch.process(Request("验证GPU价格", data_type="gpu", task_type="data_validation"))
            for a in adapters.values(): a.failure_rate = 1.0
            none = await orch.process(Request("验证GPU价格", data_type="gpu", task_type="data_validation"))
            return some, none
    some, none = run(go())
    assert some.success and "models" in some.degraded and some.merged.incomplete
    assert not none.success and len(none.models) >= 2 and all(f"{m}:" in none.error for m in none.models)


def test_classifier_failure_falls_back_to_rules_and_several_models(tmp_path):
    cfg = config()
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            def broken(*a, **k): raise RuntimeError("classifier exploded")
            orch.classifier.annotate = broken
            return await orch.process(Request("GPU 租赁价格", data_type="gpu"))
    res = run(go())
    assert res.success and "classifier" in res.degraded and len(res.decision.models) >= 2


def test_storage_failure_keeps_running_and_writes_later(tmp_path):
    cfg = config()
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "performance_history.jsonl").symlink_to("/dev/full")
    async def go():
        async with AIOrchestrator(config(storage={"durability": "each"}), adapters=adapters_for(cfg), folder=folder, seed=0) as orch:
            res = await orch.process(Request("GPU 租赁价格", data_type="gpu", task_type="price_extraction"))
            pending = orch.storage.history.pending
            (folder / "performance_history.jsonl").unlink()
            return res, pending
    res, pending = run(go())
    assert res.success and "storage" in res.degraded and pending >= 1
    assert len(HistoryLog(folder / "performance_history.jsonl").query()) >= pending   # written at shutdown


def test_user_correction_lowers_scores_and_invalidates_the_cache(tmp_path):
    cfg = config(cache={"enabled": True}, routing={"strategies": {"data_validation": "TRIPLE_CONSENSUS"}})   # the same models each time
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg, 1.0), folder=tmp_path, seed=0) as orch:
            req = Request("验证GPU价格", data_type="gpu", task_type="data_validation")
            first = await orch.process(req)
            hit = await orch.process(Request("验证GPU价格", data_type="gpu", task_type="data_validation"))
            before = {m: orch.engine.score(m, "data_validation") for m in first.models}
            wrong = [dict(r, price=r["price"] * 2) for r in first.data]
            orch.correct(first.request.id, wrong, kind="wrong_value")
            after = {m: orch.engine.score(m, "data_validation") for m in first.models}
            miss = await orch.process(Request("验证GPU价格", data_type="gpu", task_type="data_validation"))
            return hit, before, after, miss
    hit, before, after, miss = run(go())
    assert hit.cache_hit and hit.cost_usd == 0
    assert all(after[m] < before[m] for m in before)
    assert not miss.cache_hit


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_restart_after_sigterm_or_kill_loses_nothing_acknowledged(tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    child = subprocess.Popen([sys.executable, str(HERE / "orchestrator_child.py"), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, env=env)
    acked = []
    for line in child.stdout:
        if line.startswith("ACK"): acked.append(line.split()[1])
        if len(acked) >= 15: break
    child.send_signal(sig)
    rest = child.stdout.read()
    child.wait(timeout=30)
    acked += [l.split()[1] for l in rest.splitlines() if l.startswith("ACK")]
    if sig == signal.SIGTERM: assert "STOPPED" in rest and child.returncode == 143
    reqs = {r.request_id for r in HistoryLog(tmp_path / "requests.jsonl", record_type=RequestRecord).query()}
    perf = {r.request_id for r in HistoryLog(tmp_path / "performance_history.jsonl").query()}
    assert set(acked) <= reqs and set(acked) <= perf
    scores = json.loads((tmp_path / "confidence_scores.json").read_text())
    assert scores["version"] == "2.0" and scores["scores"]
    cfg = config()
    async def restart():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path) as orch:
            return orch.engine.sample_count("a", "price_extraction") + orch.engine.sample_count("b", "price_extraction")
    assert run(restart()) > 0


def test_classifier_feedback_survives_a_restart(tmp_path):
    cfg = config()
    prompt = "请给出下个季度H100租赁价格的走势判断"
    async def first():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            res = await orch.process(Request(prompt))
            wrong = res.request.task_type
            right = next(t for t in TaskType if t != wrong)
            orch.correct(res.request.id, prompt, kind="wrong_task_type", task_type=right)
            return right
    right = run(first())
    async def second():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            return orch.classifier.classify(prompt).task_type
    assert run(second()) == right


def test_a_missing_key_teaches_nothing_about_the_model(tmp_path):
    from computepulse_ai.core import Response
    cfg = config()
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0) as orch:
            before = orch.engine.score("a", "price_extraction")
            verdicts = orch.feedback.after_validation(
                "r", "price_extraction", [Response("a", success=False, error="MissingApiKeyError: set DASHSCOPE_API_KEY")],
                {}, None)
            return before, orch.engine.score("a", "price_extraction"), verdicts
    before, after, verdicts = run(go())
    assert before == after and verdicts[0].accuracy is None and not verdicts[0].learned


def test_retention_runs_at_start(tmp_path):
    from datetime import datetime, timedelta, timezone
    from computepulse_ai.core import PerformanceRecord
    old = datetime.now(timezone.utc) - timedelta(days=30)
    history = HistoryLog(tmp_path / "performance_history.jsonl", durability="each")
    for i in range(5): history.append(PerformanceRecord("a", "simple_query", timestamp=old + timedelta(minutes=i)))
    cfg = config(storage={"retention": {"max_age_days": 7}})
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0):
            pass
    run(go())
    assert HistoryLog(tmp_path / "performance_history.jsonl").query() == []
    assert len(HistoryLog(tmp_path / "performance_history.jsonl").query(include_archives=True)) == 5


# --- the decision core in the orchestrator (issue 13) --------------------------------------------------------------

class FixedAnswer:
    "An adapter that always gives the same answer (the executor needs only `spec` and `call`)."
    def __init__(self, spec, text):
        self.spec, self.text, self.calls = spec, text, 0

    async def call(self, prompt, *, request_id=None, deadline_s=None, **kwargs):
        from computepulse_ai.core import Response
        self.calls += 1
        return Response(self.spec.name, self.text, cost_usd=self.spec.cost_usd(1500, 1500), request_id=request_id)


def _trained(orch, reliabilities, task="simple_query", n=40):
    for model, p in reliabilities.items():
        for k in range(n): orch.engine.update(model, task, 1.0 if k < round(p * n) else 0.0, labelled=True)


@pytest.mark.parametrize("price, third", [(None, True), (0.0, False)])
def test_a_two_model_disagreement_is_settled_by_a_third_or_by_the_posterior(tmp_path, price, third):
    # DUAL: a (0.92) says 4, the dearer b (0.85) says 5. Worth it: the third model is asked and sides with a.
    # Not worth it (an error costs nothing): no third call, and the posterior picks a — not the heavier model
    cfg = config(routing={"strategies": {"simple_query": "DUAL_VALIDATION"}, "exploration": "none",
                          "error_price_usd": price, "task_thresholds": {"simple_query": 0.95}})
    answers = {"a": "4", "b": "5", "c": "4"}
    adapters = {s.name: FixedAnswer(s, answers[s.name]) for s in cfg.models}
    async def go():
        async with AIOrchestrator(cfg, adapters=adapters, folder=tmp_path, seed=0) as orch:
            _trained(orch, {"a": 0.92, "b": 0.85, "c": 0.8})
            return await orch.process(Request("what is 2+2?", task_type="simple_query"))
    res = run(go())
    assert res.decision.models == ["a", "b"] or sorted(res.decision.models) == ["a", "b"]
    assert ("c" in res.models) == third
    assert res.data == "4" and res.cancelled == []


def test_an_explored_call_is_awaited_and_observed_never_cancelled(tmp_path):
    # the simulator learns from every model it called; so must the orchestrator (issue 13: 20 of 23 were cancelled)
    cfg = config(routing={"epsilon": 1.0, "explore_below_samples": 1000})
    async def go():
        explored = 0
        async with AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=1) as orch:
            for _ in range(20):
                res = await orch.process(Request("GPU 租赁价格", data_type="gpu", task_type="price_extraction"))
                assert res.cancelled == []
                if res.decision.explored is not None:
                    explored += 1
                    assert res.decision.explored in res.models
        return explored
    assert run(go()) >= 10


def test_the_plans_learned_arrays_are_shared_until_a_score_changes(tmp_path):
    "A burst of requests shares one plan's learned arrays (read-only); any learning makes the next plan read them afresh."
    cfg = config()
    orch = AIOrchestrator(cfg, adapters=adapters_for(cfg), folder=tmp_path, seed=0)
    request = Request("GPU 租赁价格", task_type="price_extraction", quality_threshold=0.95)
    decision = orch.router.route_request(request)
    first, second = orch._plan(request, decision, cfg), orch._plan(request, decision, cfg)
    assert first.reliability is second.reliability and not first.reliability.flags.writeable
    with pytest.raises(ValueError): first.reliability[0] = 0.0   # no plan can alter what the others read
    model = first.names[0]
    before = float(first.reliability[0])
    orch.engine.update(model, TaskType.PRICE_EXTRACTION, 1.0, weight=5.0, labelled=True)
    third = orch._plan(request, decision, cfg)
    assert third.reliability is not first.reliability
    assert float(third.reliability[0]) > before
    assert third.reliability[0] == orch.engine.evidence(TaskType.PRICE_EXTRACTION).reliability[orch.engine.index(model)]
