"""The parallel executor over HTTP: the REAL provider SDKs (DashScope, OpenAI, Ark) against the fake provider server.

Every scenario runs the server and the executor in one event loop, so the server's request log can be awaited
(`server.wait_for`) instead of slept on. `run_clean` runs a scenario and fails on anything a leaky cancellation
leaves behind: warnings (ResourceWarning, "coroutine was never awaited"), unraisable exceptions from `__del__`, and
asyncio's error log ("Task was destroyed but it is pending!", "Unclosed client session", "Unclosed connector").
"""
import asyncio
import contextlib
import gc
import logging
import os
import sys
import warnings

import pytest

from computepulse_ai.adapters import RetryPolicy, make_adapter
from computepulse_ai.core import ModelSpec
from computepulse_ai.execution import AllModelsFailedError, ExecutionResult, ParallelExecutor
from computepulse_ai.fakes import GPU_PRICES as GPU_TRUTH, FakeProviderServer, matches_truth

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

ENV = {"DASHSCOPE_API_KEY": "sk-test-dashscope", "DEEPSEEK_API_KEY": "sk-test-deepseek", "ARK_API_KEY": "sk-test-ark"}
PROMPT = "请给出最新的 GPU 租赁价格"
# protocol name -> (adapter kind, fake-server route, base-url attribute, ModelSpec options)
PROTOCOLS = {
    "qwen": ("dashscope", "dashscope", "dashscope_base_url", {}),
    "deepseek": ("deepseek", "openai", "openai_base_url", {}),
    "doubao": ("ark", "ark_chat", "ark_base_url", {}),
    "doubao_search": ("ark", "ark_responses", "ark_base_url", {"enable_search": True}),
}


@pytest.fixture(scope="module", autouse=True)
def sdks_imported():
    "Import the SDKs up front: the QwenAdapter imports dashscope lazily, which would otherwise eat the first timeout."
    import dashscope, openai, volcenginesdkarkruntime  # noqa: F401


HUNG_TIMEOUT_S = 2.0   # the per-attempt timeout of a model that hangs (the answering ones keep 20 s: no race)


def build(server, protocol, name, *, stream=False, timeout_s=20):
    "A real-SDK adapter for `protocol` talking to `server`, model id `name`, no retries (the executor is under test)."
    kind, route, base_attr, options = PROTOCOLS[protocol]
    spec = ModelSpec(name, kind, name, base_url=getattr(server, base_attr), input_price=1.0, output_price=2.0,
                     options={**options, "stream": stream})
    return make_adapter(spec, env=ENV, retry=RetryPolicy(max_attempts=1), timeout_s=timeout_s)


def route_of(protocol): return PROTOCOLS[protocol][1]


def agree(responses) -> bool:
    "Two successful answers carry the same data (up to order and 5 % on numbers)."
    data = [r.data for r in responses if r.data is not None]
    return any(matches_truth(a, b) for i, a in enumerate(data) for b in data[i + 1:])


def disagree(responses) -> bool:
    "At least two answers are in and no two of them agree."
    return len(responses) >= 2 and not agree(responses)


async def opened(stack, adapters):
    "Enter every adapter in `stack` (they close their SDK clients on exit), return them."
    return [await stack.enter_async_context(a) for a in adapters]


async def checked(scenario):
    "Run `scenario()`, then name every task it left running (asyncio.run would cancel them silently)."
    outcome = await scenario()
    return outcome, sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())


def run_clean(scenario, caplog):
    "Run `scenario()` in a fresh loop; fail if it left tasks running or leaked sessions, connections or coroutines."
    unraisable, previous_hook = [], sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="asyncio"):
            warnings.simplefilter("always")
            outcome, leftover = asyncio.run(checked(scenario))
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    leaks = [f"task still pending after the scenario: {name}" for name in leftover]
    leaks += [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]
    leaks += [f"unraisable: {u.exc_value!r} in {u.object!r}" for u in unraisable]
    leaks += [f"asyncio log: {r.getMessage()}" for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert not leaks, "\n".join(leaks)
    return outcome


def pending_calls() -> list[str]:
    "Executor call tasks still alive in the running loop (there should be none once `run` returns)."
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("call:") and not t.done()]


def test_hung_and_erroring_models_do_not_sink_the_good_answer(caplog):
    # one of each protocol: Qwen hangs (DashScope), Doubao errors (Ark), DeepSeek answers (OpenAI)
    async def scenario():
        async with FakeProviderServer(seed=1) as server, contextlib.AsyncExitStack() as stack:
            server.set_model("qwen-hung", accuracy=1.0)
            server.set_model("doubao-500", accuracy=1.0)
            server.set_model("deepseek-good", accuracy=1.0, latency_s=0.05)
            server.add_fault("hang", route="dashscope", model="qwen-hung")
            server.add_fault("status", route="ark_chat", model="doubao-500", status=500)
            adapters = await opened(stack, [build(server, "qwen", "qwen-hung", timeout_s=HUNG_TIMEOUT_S),
                                            build(server, "doubao", "doubao-500"), build(server, "deepseek", "deepseek-good")])
            # timeout_s=None: each adapter keeps its own per-attempt timeout (2 s for the hung one, 20 s for the others)
            result = await ParallelExecutor(timeout_s=None).run(adapters, PROMPT, request_id="r-hung")
            assert pending_calls() == []
            hung = server.requests_for(model="qwen-hung")[0]
            await server.wait_for(lambda: hung.finished is not None)   # the timed-out call hung up on the server
            return result, server.requests_for(model="qwen-hung"), server.requests_for(model="doubao-500")
    result, hung_log, error_log = run_clean(scenario, caplog)
    assert [r.model for r in result.successes] == ["deepseek-good"]
    assert matches_truth(result.successes[0].data, result.successes[0].data) and result.successes[0].cost_usd > 0
    assert result.incomplete and not result.early_stopped and result.cancelled == []
    failures = {r.model: r.error for r in result.failures}
    assert set(failures) == {"qwen-hung", "doubao-500"}
    assert "timed out" in failures["qwen-hung"]
    assert "ProviderUnavailableError" in failures["doubao-500"] and "status=500" in failures["doubao-500"]
    assert all(r.request_id == "r-hung" for r in result.responses)
    assert [e.status for e in error_log] == [500]                       # no retries, a single request
    assert len(hung_log) == 1 and hung_log[0].disconnected and hung_log[0].status is None
    assert result.cost_usd == pytest.approx(result.successes[0].cost_usd)


@pytest.mark.parametrize("slow,stream", [("qwen", False), ("deepseek", False), ("doubao", False),
                                         ("doubao_search", False), ("deepseek", True), ("qwen", True)])
def test_early_stop_cancels_the_slow_model_and_closes_its_connection(caplog, slow, stream):
    # the first two (other protocols) agree; the slow third is cancelled while the server is still 'thinking'
    fast = [p for p in ("qwen", "deepseek", "doubao") if p != slow][:2]
    arrived = []

    async def scenario():
        async with FakeProviderServer(seed=2) as server, contextlib.AsyncExitStack() as stack:
            server.set_model("fast-a", accuracy=1.0, latency_s=0.02)
            server.set_model("fast-b", accuracy=1.0, latency_s=0.05)
            server.set_model("slow-c", accuracy=1.0, latency_s=60)
            adapters = await opened(stack, [build(server, fast[0], "fast-a"), build(server, fast[1], "fast-b"),
                                            build(server, slow, "slow-c", stream=stream)])
            # on_result runs before stop_when is checked: it waits until the slow request is on the wire, so the
            # early stop always has a live HTTP request to cancel (no sleeps, no race)
            async def on_result(response):
                arrived.append(response.model)
                await server.wait_for(lambda: bool(server.requests_for(model="slow-c")))
            result = await ParallelExecutor(timeout_s=30).run(adapters, PROMPT, stop_when=agree, on_result=on_result)
            assert pending_calls() == []
            cancelled = server.requests_for(model="slow-c")
            await server.wait_for(lambda: all(e.finished is not None for e in cancelled))
            return result, cancelled
    result, cancelled = run_clean(scenario, caplog)
    assert result.early_stopped and result.cancelled == ["slow-c"] and not result.incomplete
    # the two fast answers in whichever order they arrived (their latencies differ, but wall-clock order is not a contract)
    assert sorted(arrived) == ["fast-a", "fast-b"] and sorted(result.models) == ["fast-a", "fast-b"]   # no Response for slow-c
    assert result.cost_usd == pytest.approx(sum(r.cost_usd for r in result.successes)) and result.cost_usd > 0
    assert len(cancelled) == 1 and cancelled[0].route == route_of(slow) and cancelled[0].stream == stream
    assert cancelled[0].disconnected                   # the client closed the connection
    assert cancelled[0].status is None                 # the provider never answered: nothing to bill


@pytest.mark.parametrize("first_two_agree", [False, True])
def test_disagreement_escalates_into_the_reserve(caplog, first_two_agree):
    # Qwen is always right, DeepSeek right or scripted wrong, the reserve Doubao is right
    async def scenario():
        async with FakeProviderServer(seed=3) as server, contextlib.AsyncExitStack() as stack:
            server.set_model("qwen-right", accuracy=1.0, latency_s=0.02)
            server.set_model("deepseek-maybe", accuracy=1.0 if first_two_agree else 0.0, latency_s=0.04)
            server.set_model("doubao-reserve", accuracy=1.0)
            initial = await opened(stack, [build(server, "qwen", "qwen-right"), build(server, "deepseek", "deepseek-maybe")])
            reserves = await opened(stack, [build(server, "doubao", "doubao-reserve")])
            result = await ParallelExecutor(timeout_s=None).run(initial, PROMPT, reserves=reserves,
                                                             stop_when=agree, escalate_when=disagree)
            assert pending_calls() == []
            return result, server.requests_for(model="doubao-reserve")
    result, reserve_log = run_clean(scenario, caplog)
    if first_two_agree:
        assert result.escalations == 0 and result.not_started == ["doubao-reserve"] and reserve_log == []
        assert result.models == ["qwen-right", "deepseek-maybe"]
    else:
        assert result.escalations == 1 and result.not_started == []
        assert [(e.route, e.status) for e in reserve_log] == [("ark_chat", 200)]      # the reserve really was called
        assert result.models == ["qwen-right", "deepseek-maybe", "doubao-reserve"]
        assert agree([result.responses[0], result.responses[2]]) and not agree(result.responses[:2])
    assert not result.incomplete and result.cancelled == []


def test_scripted_contradiction_through_the_content_fault_also_escalates(caplog):
    # the same escalation when the disagreeing answer is a scripted text (content fault) rather than a corruption
    async def scenario():
        async with FakeProviderServer(seed=4) as server, contextlib.AsyncExitStack() as stack:
            for name in ("doubao-a", "qwen-b", "deepseek-c"): server.set_model(name, accuracy=1.0)
            server.add_fault("content", route="dashscope", model="qwen-b",
                             text='```json\n[{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 9.99}]\n```')
            initial = await opened(stack, [build(server, "doubao_search", "doubao-a"), build(server, "qwen", "qwen-b")])
            reserves = await opened(stack, [build(server, "deepseek", "deepseek-c")])
            return await ParallelExecutor(timeout_s=None).run(initial, PROMPT, reserves=reserves,
                                                           stop_when=agree, escalate_when=disagree)
    result = run_clean(scenario, caplog)
    by_model = {r.model: r for r in result.responses}
    assert by_model["qwen-b"].data == [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 9.99}]
    assert result.escalations == 1 and "deepseek-c" in by_model and agree([by_model["doubao-a"], by_model["deepseek-c"]])


def test_all_models_failing_lists_every_models_error(caplog):
    # Qwen answers 503, DeepSeek hangs past the timeout, Doubao sends garbage, Doubao-search resets the connection
    async def scenario():
        async with FakeProviderServer(seed=5) as server, contextlib.AsyncExitStack() as stack:
            server.add_fault("status", route="dashscope", status=503)
            server.add_fault("hang", route="openai")
            server.add_fault("garbage", route="ark_chat")
            server.add_fault("reset", route="ark_responses")
            adapters = await opened(stack, [build(server, "qwen", "q"), build(server, "deepseek", "d", timeout_s=HUNG_TIMEOUT_S),
                                            build(server, "doubao", "b"), build(server, "doubao_search", "s")])
            result = await ParallelExecutor(timeout_s=None).run(adapters, PROMPT)
            assert pending_calls() == []
            hung = server.requests_for(model="d")
            await server.wait_for(lambda: all(e.finished is not None for e in hung))
            return result
    with caplog.at_level(logging.ERROR, logger="computepulse_ai.execution"):
        result = run_clean(scenario, caplog)
    assert result.successes == [] and result.incomplete and result.cost_usd == 0
    errors = {r.model: r.error for r in result.failures}
    assert set(errors) == {"q", "d", "b", "s"}
    assert "ProviderUnavailableError" in errors["q"] and "status=503" in errors["q"]
    assert "timed out" in errors["d"]
    assert "InvalidResponseError" in errors["b"]
    assert "ProviderUnavailableError" in errors["s"]
    message = str(AllModelsFailedError({r.model: r.error for r in result.failures}))   # what the orchestrator raises
    assert "all 4 selected model(s) failed" in message and all(f"{m}: {e}" in message for m, e in errors.items())
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("computepulse_ai.execution") and r.levelno >= logging.ERROR]
    assert any("all models failed" in m and all(name in m for name in errors) for m in logged)
    assert all(key not in m for m in logged + [message] for key in ENV.values())   # no key leaks into errors


def test_stream_hands_each_answer_on_before_the_slowest_finishes(caplog):
    # `.stream` yields the fast answer while the slow request is demonstrably still open on the server
    async def scenario():
        async with FakeProviderServer(seed=6) as server, contextlib.AsyncExitStack() as stack:
            server.set_model("fast", accuracy=1.0)
            server.set_model("slow", accuracy=1.0, latency_s=60)
            adapters = await opened(stack, [build(server, "deepseek", "slow"), build(server, "qwen", "fast")])
            seen = []
            stream = ParallelExecutor(timeout_s=30).stream(adapters, PROMPT)
            async for response in stream:
                await server.wait_for(lambda: bool(server.requests_for(model="slow")))
                slow = server.requests_for(model="slow")
                seen.append((response.model, bool(slow) and slow[0].finished is None))
                break                                   # the caller loses interest: the slow call must be cancelled
            await stream.aclose()
            assert pending_calls() == []
            slow = server.requests_for(model="slow")
            await server.wait_for(lambda: all(e.finished is not None for e in slow))
            return seen, slow
    seen, slow = run_clean(scenario, caplog)
    assert seen == [("fast", True)]
    assert len(slow) == 1 and slow[0].disconnected and slow[0].status is None


def test_a_failing_result_callback_cancels_the_calls_still_in_flight(caplog):
    # regression: `run` left the in-flight calls to the garbage collector when on_result raised
    async def scenario():
        async with FakeProviderServer(seed=7) as server, contextlib.AsyncExitStack() as stack:
            server.set_model("fast", accuracy=1.0)
            server.set_model("slow", accuracy=1.0, latency_s=60)
            adapters = await opened(stack, [build(server, "doubao", "slow"), build(server, "deepseek", "fast")])

            async def consumer_fails(response):
                await server.wait_for(lambda: bool(server.requests_for(model="slow")))
                raise LookupError("the consumer broke")
            with pytest.raises(LookupError):
                await ParallelExecutor(timeout_s=30).run(adapters, PROMPT, on_result=consumer_fails)
            assert pending_calls() == []
            slow = server.requests_for(model="slow")
            await server.wait_for(lambda: all(e.finished is not None for e in slow))
            return slow
    slow = run_clean(scenario, caplog)
    assert len(slow) == 1 and slow[0].disconnected and slow[0].status is None


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_a_hang_is_a_typed_provider_timeout_on_every_protocol(caplog, protocol):
    # issue 11: hangs on OpenAI and Ark surfaced as a plain "timed out" string from the executor's own timer
    async def scenario():
        async with FakeProviderServer(seed=8) as server, contextlib.AsyncExitStack() as stack:
            server.add_fault("hang", route=route_of(protocol))
            (adapter,) = await opened(stack, [build(server, protocol, f"hang-{protocol}", timeout_s=HUNG_TIMEOUT_S)])
            result = await ParallelExecutor(timeout_s=None).run([adapter], PROMPT)
            hung = server.requests_for(model=f"hang-{protocol}")
            await server.wait_for(lambda: all(e.finished is not None for e in hung))
            return result, hung
    result, hung = run_clean(scenario, caplog)
    (failure,) = result.failures
    assert failure.error_type == "ProviderTimeoutError" and "ProviderTimeoutError" in failure.error
    assert failure.fault == "model" and failure.model_at_fault and failure.queue_s == 0.0
    assert len(hung) == 1 and hung[0].disconnected          # the request was sent, and hung up on when it timed out


def test_a_partial_stream_is_retried_by_the_executor_not_merged_as_half_an_answer(caplog):
    # issue 11: a DashScope stream closing before its finish_reason gave success=True with half the records
    async def scenario():
        async with FakeProviderServer(seed=9) as server, contextlib.AsyncExitStack() as stack:
            server.set_model("qwen-cut", accuracy=1.0)
            server.add_fault("truncate", route="dashscope", model="qwen-cut", times=1)
            spec = ModelSpec("qwen-cut", "dashscope", "qwen-cut", base_url=server.dashscope_base_url,
                             options={"stream": True})
            adapter = await stack.enter_async_context(make_adapter(spec, env=ENV, retry=RetryPolicy(max_attempts=2, base_delay_s=0)))
            result = await ParallelExecutor(timeout_s=20).run([adapter], PROMPT)
            return result, server.requests_for(model="qwen-cut")
    result, log = run_clean(scenario, caplog)
    (response,) = result.responses
    assert response.success and response.attempts == 2 and len(log) == 2
    assert matches_truth(response.data, response.data) and len(response.data) == len(GPU_TRUTH)


def test_orchestrator_start_warms_the_client_of_every_enabled_model(tmp_path, monkeypatch):
    # issue 11: the first call per provider paid for client creation and SDK imports inside its own timeout
    from computepulse_ai.config import Config
    from computepulse_ai.orchestrator import AIOrchestrator
    for name, value in ENV.items(): monkeypatch.setenv(name, value)
    async def go():
        async with FakeProviderServer(seed=10) as server:
            cfg = Config.from_dict({"storage": {"folder": str(tmp_path)}, "models": [
                {"name": "q", "provider": "dashscope", "base_url": server.dashscope_base_url},
                {"name": "d", "provider": "deepseek", "base_url": server.openai_base_url},
                {"name": "off", "provider": "ark", "base_url": server.ark_base_url, "enabled": False}]})
            async with AIOrchestrator(cfg, folder=tmp_path, seed=0) as orch:
                ready = {name: (getattr(a, "_session", None) or getattr(a, "_client", None)) is not None
                         for name, a in orch.adapters.items()}
                return ready, len(server.requests)
    ready, sent = asyncio.run(go())
    assert ready == {"q": True, "d": True} and sent == 0      # made at start, disabled model skipped, nothing sent
