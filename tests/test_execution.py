"""Parallel executor properties P10, P11, P12, P14 (in-process adapters; real-SDK tests live in test_execution_http.py)."""
import asyncio
import gc
import time
import warnings
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from computepulse_ai.core import Response
from computepulse_ai.execution import ParallelExecutor, call_model


class Sleepy:
    def __init__(self, name, delay, text="ok", fail=None, log=None):
        self.spec, self.delay, self.text, self.fail, self.log = SimpleNamespace(name=name), delay, text, fail, log
    async def call(self, prompt, *, request_id=None, deadline_s=None, **kw):
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            if self.log is not None: self.log.append(("cancelled", self.spec.name))
            raise
        if self.fail: raise self.fail
        if self.log is not None: self.log.append(("answered", self.spec.name))
        return Response(self.spec.name, self.text, latency_s=self.delay, cost_usd=0.01)


delays = st.lists(st.floats(0.01, 0.12), min_size=2, max_size=5)
prop = settings(max_examples=10, deadline=None)


@prop
@given(delays)
def test_p10_parallel_wall_time_is_below_the_sum_and_close_to_the_slowest(ds):
    async def go():
        models = [Sleepy(f"m{i}", d) for i, d in enumerate(ds)]
        res = await ParallelExecutor().run(models, "p")
        return res
    res = asyncio.run(go())
    assert len(res.successes) == len(ds)
    assert res.wall_time_s < sum(ds)
    assert res.wall_time_s < max(ds) + 0.1       # close to the slowest needed call


@prop
@given(delays)
def test_p11_event_loop_stays_responsive_during_calls(ds):
    async def go():
        ticks, stop = [], asyncio.Event()
        async def ticker():
            while not stop.is_set():
                ticks.append(time.perf_counter()); await asyncio.sleep(0.005)
        t = asyncio.create_task(ticker())
        await ParallelExecutor().run([Sleepy(f"m{i}", d) for i, d in enumerate(ds)], "p")
        stop.set(); await t
        return ticks
    ticks = asyncio.run(go())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 2 and max(gaps) < 0.05   # the ticker kept running while the models were called


distinct = st.lists(st.integers(1, 12), min_size=2, max_size=5, unique=True).map(lambda xs: [x / 100 for x in xs])


@prop
@given(distinct)
def test_p12_first_result_is_processed_before_the_last_arrives(ds):
    async def go():
        events = []
        models = [Sleepy(f"m{i}", d, log=events) for i, d in enumerate(ds)]
        res = await ParallelExecutor().run(models, "p", on_result=lambda r: events.append(("processed", r.model)))
        return events
    events = asyncio.run(go())
    first_processed = events.index(next(e for e in events if e[0] == "processed"))
    last_answer = max(i for i, e in enumerate(events) if e[0] == "answered")
    assert first_processed < last_answer


@prop
@given(st.integers(1, 3), st.floats(0.01, 0.05))
def test_p14_a_timed_out_model_does_not_stop_the_others(n_ok, delay):
    async def go():
        models = [Sleepy(f"ok{i}", delay) for i in range(n_ok)] + [Sleepy("hung", 60)]
        return await ParallelExecutor(timeout_s=0.2).run(models, "p")
    res = asyncio.run(go())
    assert sorted(r.model for r in res.successes) == sorted(f"ok{i}" for i in range(n_ok))
    assert [r.model for r in res.failures] == ["hung"] and "timed out" in res.failures[0].error
    assert res.incomplete and res.wall_time_s < 1


def test_early_stop_cancels_cleanly_without_pending_task_warnings(recwarn):
    events = []
    async def go():
        models = [Sleepy("a", 0.01, "x", log=events), Sleepy("b", 0.02, "x", log=events), Sleepy("c", 30, "x", log=events)]
        res = await ParallelExecutor().run(models, "p", stop_when=lambda rs: len(rs) >= 2)
        assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]   # nothing leaked
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = asyncio.run(go())
        gc.collect()
    assert res.early_stopped and res.cancelled == ["c"] and ("cancelled", "c") in events
    assert res.cost_usd == pytest.approx(0.02)                 # the cancelled call cost nothing


def test_deadline_cuts_per_model_timeout():
    async def go():
        return await ParallelExecutor(timeout_s=10, deadline_s=0.1).run([Sleepy("slow", 5)], "p")
    t0 = time.perf_counter()
    res = asyncio.run(go())
    assert time.perf_counter() - t0 < 1 and "timed out" in res.failures[0].error


def test_failed_model_is_replaced_from_the_reserves():
    async def go():
        return await ParallelExecutor().run([Sleepy("bad", 0, fail=RuntimeError("500"))], "p",
                                            reserves=[Sleepy("good", 0.01)])
    res = asyncio.run(go())
    assert [r.model for r in res.successes] == ["good"] and res.escalations == 1
