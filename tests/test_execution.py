"""Parallel executor properties P10, P11, P12, P14 and admission control (in-process adapters; real SDKs in test_execution_http.py).

Nothing here depends on how fast the machine is: every stand-in model answers when its gate (an asyncio.Event) is
opened, and the tests open the gates in the order they need. Where time must pass (a call that waits in our queue
longer than its own timeout), the test lets it pass and then checks what happened, never how long it took.
"""
import asyncio
import gc
import warnings
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from computepulse_ai.adapters import CallResult, ModelAdapter, OverloadedError, ProviderGate, RetryPolicy
from computepulse_ai.core import ModelSpec, Response
from computepulse_ai.execution import ParallelExecutor, call_model


class Gated:
    "A test double (no admission of its own): answers `text` when its gate opens; a gate never opened is a hung model."
    def __init__(self, name, text="ok", fail=None, log=None, gate=None):
        self.spec, self.text, self.fail, self.log = SimpleNamespace(name=name), text, fail, log
        self.gate = gate or asyncio.Event()
        self.started = asyncio.Event()
    async def call(self, prompt, *, request_id=None, deadline_s=None, **kw):
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            if self.log is not None: self.log.append(("cancelled", self.spec.name))
            raise
        if self.fail: raise self.fail
        if self.log is not None: self.log.append(("answered", self.spec.name))
        return Response(self.spec.name, self.text, cost_usd=0.01)


def opened(*names, **kw):
    "Doubles whose gates are open already (they answer at their first step)."
    doubles = [Gated(n, **kw) for n in names]
    for d in doubles: d.gate.set()
    return doubles


class GatedModel(ModelAdapter):
    "A real ModelAdapter (admission, timeouts, faults) whose one attempt answers when `go` is set."
    kind = "gated"
    def __init__(self, provider, *, go=None, **options):
        super().__init__(ModelSpec(f"m-{provider}", provider), retry=RetryPolicy(max_attempts=1), **options)
        self.go, self.started = go or asyncio.Event(), asyncio.Event()
    def api_key(self): return ""
    async def _call_once(self, prompt, *, timeout_s, stream, **kw):
        self.started.set()
        if not self.go.is_set(): await self.go.wait()
        return CallResult(text='{"answer": 42}', input_tokens=3, output_tokens=2)


prop = settings(max_examples=10, deadline=None)
sizes = st.integers(2, 5)


@prop
@given(sizes)
def test_p10_every_selected_model_is_called_at_once(n):
    # no answer is released until every call has started: a sequential executor would never get past the first
    async def go():
        models = [Gated(f"m{i}") for i in range(n)]
        async def release_when_all_started():
            for m in models: await m.started.wait()
            for m in models: m.gate.set()
        opener = asyncio.create_task(release_when_all_started())
        res = await ParallelExecutor(timeout_s=60).run(models, "p")
        await opener
        return res
    res = asyncio.run(go())
    assert len(res.successes) == n and not res.failures


@prop
@given(sizes, st.integers(1, 5))
def test_p11_event_loop_stays_responsive_during_calls(n, ticks_wanted):
    # a ticker runs (and is the one that releases the answers) while every call is in flight
    async def go():
        models = [Gated(f"m{i}") for i in range(n)]
        ticks = []
        async def ticker():
            while len(ticks) < ticks_wanted:
                await asyncio.sleep(0)
                ticks.append(sum(m.started.is_set() and not m.gate.is_set() for m in models))
            for m in models: m.gate.set()
        t = asyncio.create_task(ticker())
        res = await ParallelExecutor(timeout_s=60).run(models, "p")
        await t
        return res, ticks
    res, ticks = asyncio.run(go())
    assert len(res.successes) == n
    assert len(ticks) == ticks_wanted and ticks[-1] == n   # the loop kept ticking with all n calls pending


@prop
@given(st.permutations(range(4)))
def test_p12_each_result_is_processed_before_the_next_arrives(order):
    # the answers are released one at a time by the result callback itself, in a chosen order
    async def go():
        events = []
        models = [Gated(f"m{i}", log=events) for i in range(4)]
        queue = [models[i] for i in order]
        def processed(response):
            events.append(("processed", response.model))
            if queue: queue.pop(0).gate.set()
        queue.pop(0).gate.set()
        res = await ParallelExecutor(timeout_s=60).run(models, "p", on_result=processed)
        return res, events
    res, events = asyncio.run(go())
    names = [f"m{i}" for i in order]
    assert res.models == names
    assert events == [e for name in names for e in (("answered", name), ("processed", name))]


@prop
@given(st.integers(1, 3))
def test_p14_a_timed_out_model_does_not_stop_the_others(n_ok):
    async def go():
        models = opened(*[f"ok{i}" for i in range(n_ok)]) + [Gated("hung")]
        return await ParallelExecutor(timeout_s=0.2).run(models, "p")
    res = asyncio.run(go())
    assert sorted(r.model for r in res.successes) == sorted(f"ok{i}" for i in range(n_ok))
    assert [r.model for r in res.failures] == ["hung"] and "timed out" in res.failures[0].error
    assert res.failures[0].fault == "model" and res.incomplete


def test_early_stop_cancels_cleanly_without_pending_task_warnings(recwarn):
    events = []
    async def go():
        models = opened("a", "b", text="x", log=events) + [Gated("c", "x", log=events)]
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
        return await ParallelExecutor(timeout_s=10, deadline_s=0.1).run([Gated("slow")], "p")
    res = asyncio.run(go())
    assert res.failures[0].error == "timed out after 0.1 s"    # the deadline, not the 10 s timeout, ended it


def test_failed_model_is_replaced_from_the_reserves():
    async def go():
        return await ParallelExecutor().run(opened("bad", fail=RuntimeError("500")), "p", reserves=opened("good"))
    res = asyncio.run(go())
    assert [r.model for r in res.successes] == ["good"] and res.escalations == 1
    assert res.failures[0].error_type == "RuntimeError" and res.failures[0].model_at_fault


def test_answers_that_arrive_together_keep_the_order_the_calls_started_in():
    # regression: several calls finishing in one loop step were handed on in set (hash) order
    async def go():
        return await ParallelExecutor().run(opened(*[f"m{i}" for i in range(8)]), "p")
    assert asyncio.run(go()).models == [f"m{i}" for i in range(8)]


# ---- admission control: our queue is never the model's fault --------------------------------------------------

def test_time_waiting_for_a_provider_slot_does_not_count_against_the_calls_timeout():
    # regression: the executor's per-model timeout ran while the call waited behind the provider's semaphore
    async def go():
        holder = GatedModel("p-queue", max_concurrency=1)
        waiter = GatedModel("p-queue", max_concurrency=1)
        waiter.go.set()
        first = asyncio.create_task(holder.call("p"))
        await holder.started.wait()                                          # the only slot is taken
        second = asyncio.create_task(ParallelExecutor(timeout_s=0.01).run([waiter], "p"))
        await asyncio.sleep(0.05)                                            # the waiter queues 5x its own timeout
        holder.go.set()
        return await first, await second
    first, result = asyncio.run(go())
    (response,) = result.responses
    assert response.success and response.data == {"answer": 42}
    assert response.queue_s >= 0.04 and first.queue_s == 0.0


def test_a_full_queue_sheds_at_once_as_our_fault():
    async def go():
        holder = GatedModel("p-full", max_concurrency=1, max_queue=1)
        first = asyncio.create_task(holder.call("p"))
        await holder.started.wait()
        queued = asyncio.create_task(GatedModel("p-full", go=holder.go).call("p"))
        await asyncio.sleep(0)
        shed = await ParallelExecutor(timeout_s=30).run([GatedModel("p-full")], "p")
        holder.go.set()
        return shed, await first, await queued
    shed, first, queued = asyncio.run(go())
    (response,) = shed.responses
    assert not response.success and response.error_type == "OverloadedError" and response.fault == "ours"
    assert not response.model_at_fault and "max_queue=1" in response.error
    assert first.success and queued.success and queued.queue_s > 0


def test_a_deadline_reached_while_queued_is_ours_and_sends_nothing():
    async def go():
        holder = GatedModel("p-deadline", max_concurrency=1)
        first = asyncio.create_task(holder.call("p"))
        await holder.started.wait()
        late = GatedModel("p-deadline")
        result = await ParallelExecutor(timeout_s=30, deadline_s=0.05).run([late], "p")
        holder.go.set()
        await first
        return result, late
    result, late = asyncio.run(go())
    (response,) = result.responses
    assert response.error_type == "OverloadedError" and response.fault == "ours" and not response.model_at_fault
    assert "while waiting for a p-deadline slot" in response.error and response.queue_s > 0
    assert not late.started.is_set()                                          # nothing was sent


def test_a_hung_model_timing_out_on_the_wire_is_the_models_fault():
    async def go():
        return await ParallelExecutor(timeout_s=0.05).run([GatedModel("p-hung")], "p")
    (response,) = asyncio.run(go()).responses
    assert response.error_type == "ProviderTimeoutError" and "no answer within 0.05 s" in response.error
    assert response.fault == "model" and response.model_at_fault


def test_the_deadline_is_enforced_by_the_adapter_not_the_backstop():
    # the adapter stops at the request deadline itself (a typed error), well before the executor's backstop
    async def go():
        return await call_model(GatedModel("p-dl"), "p", timeout_s=30, deadline_s=0.05)
    response = asyncio.run(go())
    assert response.error_type == "ProviderTimeoutError" and "deadline of 0.05 s exceeded" in response.error
    assert response.model_at_fault                                            # it had the whole deadline on the wire


def test_gate_sheds_early_when_the_expected_wait_outlasts_the_deadline():
    async def go():
        gate = ProviderGate("p", limit=2)
        await gate.acquire()
        await gate.acquire()
        gate.release(held_s=4.0)
        await gate.acquire()                                # both slots busy; a call holds a slot ~4 s
        with pytest.raises(OverloadedError, match="expected wait of 2 s exceeds the 1 s left"):
            await gate.acquire(time_left_s=1.0)             # 1 ahead x 4 s / 2 slots = 2 s > 1 s
        waiting = asyncio.create_task(gate.acquire(time_left_s=3.0))   # 2 s < 3 s: it may wait
        await asyncio.sleep(0)
        assert gate.waiting == 1
        gate.release()
        await waiting
        return gate
    gate = asyncio.run(go())
    assert gate.shed == 1 and gate.in_flight == 2 and gate.waiting == 0


def test_gate_cancelled_waiters_leave_the_line_and_pass_on_a_slot_handed_to_them():
    async def go():
        gate = ProviderGate("p", limit=1)
        await gate.acquire()
        gone = asyncio.create_task(gate.acquire())
        handed = asyncio.create_task(gate.acquire())
        last = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gone.cancel()                                       # gives up while waiting
        await asyncio.gather(gone, return_exceptions=True)
        assert gate.waiting == 2
        gate.release()                                      # the slot goes to `handed`...
        handed.cancel()                                     # ...which is cancelled before it could run
        await asyncio.gather(handed, return_exceptions=True)
        await last                                          # the slot was passed on, not lost
        return gate
    gate = asyncio.run(go())
    assert gate.in_flight == 1 and gate.waiting == 0


def test_gate_rejects_nonsense_limits():
    from computepulse_ai.core import InvalidFieldError
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidFieldError, match="limit"):
            ProviderGate("p", bad)
    with pytest.raises(InvalidFieldError, match="max_queue"):
        ProviderGate("p", 1, -1)
