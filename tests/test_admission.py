"""Issue 11, admission control: a bounded number of requests in flight, a bounded line in front of them, early
shedding with a typed reason (nothing called, nothing learned, the record says shed), arrival order, and a deadline
counted from arrival. Calls block on events the test controls: no sleeps, no timing."""
import asyncio

from computepulse_ai.adapters import SimulatedAdapter
from computepulse_ai.config import Config
from computepulse_ai.core import Request
from computepulse_ai.orchestrator import AIOrchestrator
from computepulse_ai.storage import HistoryLog
from computepulse_ai.tracking import RequestRecord

DEADLINE_S = 120.0


def config(inflight, queued):
    return Config.from_dict({"storage": {"durability": "close"}, "cache": {"enabled": False},
                             "execution": {"deadline_s": DEADLINE_S, "max_inflight_requests": inflight,
                                           "max_queued_requests": queued},
                             "models": [{"name": "m", "provider": "simulated", "input_price": 1, "output_price": 2,
                                         "typical_latency_s": 0}]})


class Held(SimulatedAdapter):
    "A simulated model whose call for a prompt waits until the test releases that prompt."

    def __init__(self, spec):
        super().__init__(spec, accuracy=1.0, latency_s=0, seed=0)
        self.release: dict[str, asyncio.Event] = {}
        self.entered: list[str] = []          # prompts whose call started, in order
        self.running, self.most = 0, 0        # calls inside now, most ever at once
        self.deadlines: dict[str, float | None] = {}

    async def call(self, prompt, **kwargs):
        self.entered.append(prompt)
        self.deadlines[prompt] = kwargs.get("deadline_s")
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.setdefault(prompt, asyncio.Event()).wait()
            return await super().call(prompt, **kwargs)
        finally: self.running -= 1


async def until(condition, rounds=10_000):
    "Let the loop run until `condition()` holds (a bounded number of turns, no clock)."
    for _ in range(rounds):
        if condition(): return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def prompt(i): return f"GPU 租赁价格 请求 {i}"


def test_bounded_in_flight_bounded_queue_shed_in_arrival_order(tmp_path):
    n, q = 2, 3
    cfg = config(n, q)
    async def go():
        held = Held(cfg.models[0])
        async with AIOrchestrator(cfg, adapters={"m": held}, folder=tmp_path, seed=0) as orch:
            tasks = [asyncio.create_task(orch.process(Request(prompt(i), data_type="gpu", task_type="price_extraction")))
                     for i in range(n + q)]
            await until(lambda: len(held.entered) == n and orch.admission().waiting == q)
            assert held.entered == [prompt(0), prompt(1)]          # the first N run, the next Q wait
            before = orch.engine.to_entries()
            shed = await orch.process(Request(prompt(99), data_type="gpu", task_type="price_extraction"))   # the N+Q+1-th
            assert shed.shed and not shed.success
            assert shed.error.startswith("OverloadedError:") and "waiting" in shed.error
            assert shed.responses == [] and prompt(99) not in held.entered   # nothing was called
            assert orch.engine.to_entries() == before                       # nothing was learned
            held.release[prompt(1)].set()                                   # one slot frees: the first in line gets it
            await until(lambda: len(held.entered) == n + 1)
            assert held.entered[-1] == prompt(2)
            for i in range(n + q): held.release.setdefault(prompt(i), asyncio.Event()).set()
            results = await asyncio.gather(*tasks)
            return held, results, shed
    held, results, shed = asyncio.run(go())
    assert held.entered == [prompt(i) for i in range(n + q)]                # arrival order
    assert held.most == n                                                   # never more than N at once
    assert all(r.success and not r.shed for r in results)
    assert all(r.queue_s > 0 for r in results[n:]) and all(r.queue_s == 0 for r in results[:n])
    for r in results[n:]:   # the deadline counts from arrival: a queued request's calls get only what is left
        assert held.deadlines[r.request.prompt] <= DEADLINE_S - r.queue_s
    records = {r.request_id: r for r in HistoryLog(tmp_path / "requests.jsonl", record_type=RequestRecord).query()}
    assert records[shed.request.id].shed and records[shed.request.id].models == [] and records[shed.request.id].scores is None
    assert not any(records[r.request.id].shed for r in results)
    assert [records[r.request.id].queue_s for r in results] == [r.queue_s for r in results]
    perf = HistoryLog(tmp_path / "performance_history.jsonl").query()
    assert shed.request.id not in {p.request_id for p in perf}               # no performance record: no call


def test_shed_when_the_expected_wait_exceeds_the_deadline(tmp_path):
    cfg = config(1, 100)
    async def go():
        held = Held(cfg.models[0])
        async with AIOrchestrator(cfg, adapters={"m": held}, folder=tmp_path, seed=0) as orch:
            first = asyncio.create_task(orch.process(Request(prompt(0), data_type="gpu", task_type="price_extraction")))
            await until(lambda: len(held.entered) == 1)
            orch.admission().hold_s = 2 * DEADLINE_S      # requests have been holding their slot twice the deadline
            before = orch.engine.to_entries()
            late = await orch.process(Request(prompt(1), data_type="gpu", task_type="price_extraction"))
            assert orch.engine.to_entries() == before
            held.release[prompt(0)].set()
            return held, await first, late
    held, first, late = asyncio.run(go())
    assert first.success and late.shed and "expected wait" in late.error and late.error.startswith("OverloadedError:")
    assert held.entered == [prompt(0)]


def test_shed_at_the_head_of_the_line_when_too_little_deadline_is_left(tmp_path):
    "A burst: nothing is known at arrival, so a request queues; when its turn comes too late it is shed, the slot goes on."
    cfg = config(1, 10)
    async def go():
        held = Held(cfg.models[0])
        async with AIOrchestrator(cfg, adapters={"m": held}, folder=tmp_path, seed=0) as orch:
            gate = orch.admission()
            first = asyncio.create_task(orch.process(Request(prompt(0), data_type="gpu", task_type="price_extraction")))
            await until(lambda: len(held.entered) == 1)
            second = asyncio.create_task(orch.process(Request(prompt(1), data_type="gpu", task_type="price_extraction")))
            await until(lambda: gate.waiting == 1)          # queued: no service time was known when it arrived
            gate.hold_s = 4 * DEADLINE_S                    # now a request is known to take far longer than its deadline
            before = orch.engine.to_entries()
            held.release[prompt(0)].set()
            first, second = await asyncio.gather(first, second)
            assert orch.engine.to_entries() != before       # the first one taught something ...
            after_first = orch.engine.to_entries()
            assert gate.in_flight == 0 and gate.waiting == 0   # ... the shed one handed its slot back
            gate.hold_s = None
            held.release[prompt(2)] = asyncio.Event()
            held.release[prompt(2)].set()
            third = await orch.process(Request(prompt(2), data_type="gpu", task_type="price_extraction"))
            return held, first, second, third, after_first
    held, first, second, third, after_first = asyncio.run(go())
    assert first.success and third.success
    assert second.shed and second.error.startswith("OverloadedError:") and "deadline left" in second.error
    assert second.responses == [] and prompt(1) not in held.entered and second.queue_s > 0
