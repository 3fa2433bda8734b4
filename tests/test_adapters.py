"""Every provider adapter x every failure mode, through the REAL SDKs over HTTP against the fake provider server."""
import asyncio
import json
import logging
import os
import socket
import threading

import pytest

from computepulse_ai import adapters as adapters_module
from computepulse_ai.adapters import (AuthenticationError, BadRequestError, InvalidResponseError, MissingApiKeyError,
                                      ProviderTimeoutError, ProviderUnavailableError, RateLimitedError, RetryPolicy,
                                      SimulatedAdapter, make_adapter)
from computepulse_ai.core import ModelSpec
from computepulse_ai.fakes import FakeProviderServer, GPU_PRICES

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

ENV = {"DASHSCOPE_API_KEY": "sk-test-dashscope", "DEEPSEEK_API_KEY": "sk-test-deepseek", "ARK_API_KEY": "sk-test-ark",
       "COMPAT_KEY": "sk-test-compat"}
# adapter name -> (provider kind, fake-server route, base-url attribute, options)
ADAPTERS = {
    "qwen": ("dashscope", "dashscope", "dashscope_base_url", {"enable_search": True}),
    "deepseek": ("deepseek", "openai", "openai_base_url", {}),
    "doubao_search": ("ark", "ark_responses", "ark_base_url", {"enable_search": True}),
    "doubao_chat": ("ark", "ark_chat", "ark_base_url", {}),
    "openai_compatible": ("openai_compatible", "openai", "openai_base_url", {}),
}


async def no_wait(seconds):
    await asyncio.sleep(0)


@pytest.fixture(scope="module")
def server():
    with FakeProviderServer(seed=11) as running:
        yield running


def make(server, name, case, *, base_url=None, max_attempts=3, **options):
    kind, route, base_attr, extra = ADAPTERS[name]
    spec = ModelSpec(f"{name}-{case}", kind, f"model-{name}-{case}", base_url=base_url or getattr(server, base_attr),
                     input_price=1.0, output_price=2.0, search_fee=0.01,
                     api_key_env="COMPAT_KEY" if kind == "openai_compatible" else None, options=dict(extra))
    adapter = make_adapter(spec, env=ENV, retry=RetryPolicy(max_attempts=max_attempts), sleep=no_wait, **options)
    return adapter, route, spec.model_id


def call(adapter, **kw):
    async def go():
        async with adapter:
            return await adapter.call("请给出最新的 GPU 租赁价格", **kw)
    return asyncio.run(go())


def fails(adapter, error_type, **kw):
    with pytest.raises(error_type) as caught:
        call(adapter, **kw)
    return caught.value


names = pytest.mark.parametrize("name", list(ADAPTERS))


@names
def test_success(server, name):
    adapter, route, model = make(server, name, "ok")
    response = call(adapter)
    assert response.success and response.attempts == 1
    assert isinstance(response.data, list) and response.data and response.text
    assert response.cost_usd > 0 and response.input_tokens > 0 and response.output_tokens > 0
    assert [r.route for r in server.requests_for(model=model)] == [route]
    if name in ("qwen", "doubao_search"):
        assert response.sources and response.extra["searches"] == 1
        assert response.cost_usd == pytest.approx((response.input_tokens + 2 * response.output_tokens) / 1e6 + 0.01)


@names
def test_429_then_success(server, name):
    adapter, route, model = make(server, name, "429")
    server.add_fault("status", route=route, model=model, status=429, retry_after=0, times=1)
    response = call(adapter)
    assert response.success and response.attempts == 2
    assert [r.status for r in server.requests_for(model=model)] == [429, 200]


@names
def test_persistent_500_is_retried_exactly_max_attempts(server, name):
    adapter, route, model = make(server, name, "500", max_attempts=3)
    server.add_fault("status", route=route, model=model, status=500)
    error = fails(adapter, ProviderUnavailableError)
    assert error.attempts == 3 and error.status == 500 and error.model.endswith("500")
    assert len(server.requests_for(model=model)) == 3          # no SDK retries on top of ours


@names
@pytest.mark.parametrize("status,error_type", [(400, BadRequestError), (401, AuthenticationError), (403, AuthenticationError)])
def test_client_errors_are_not_retried(server, name, status, error_type):
    adapter, route, model = make(server, name, f"s{status}")
    server.add_fault("status", route=route, model=model, status=status)
    error = fails(adapter, error_type)
    assert error.attempts == 1 and error.status == status
    assert len(server.requests_for(model=model)) == 1


@names
def test_timeout(server, name):
    adapter, route, model = make(server, name, "timeout", max_attempts=2, timeout_s=0.3)
    server.add_fault("hang", route=route, model=model)
    error = fails(adapter, ProviderTimeoutError)
    assert error.attempts == 2
    assert len(server.requests_for(model=model)) == 2


@names
def test_deadline_stops_retries_of_a_hung_server(server, name):
    adapter, route, model = make(server, name, "deadline", max_attempts=5, timeout_s=10)
    server.add_fault("hang", route=route, model=model)
    error = fails(adapter, ProviderTimeoutError, deadline_s=0.3)
    assert "deadline" in str(error) and error.attempts == 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@names
def test_connection_refused(server, name):
    kind, route, base_attr, _ = ADAPTERS[name]
    url = getattr(server, base_attr).replace(f":{server.port}", f":{free_port()}")
    adapter, route, model = make(server, name, "refused", base_url=url, max_attempts=2)
    error = fails(adapter, ProviderUnavailableError)
    assert error.attempts == 2
    # the error names the endpoint it could not reach (issue 16 item 6), never the key
    assert f"connection to {url.split('/api')[0].split('/v1')[0]}" in str(error), str(error)
    assert all(key not in str(error) for key in ENV.values())


@names
def test_connection_reset(server, name):
    adapter, route, model = make(server, name, "reset", max_attempts=2)
    server.add_fault("reset", route=route, model=model)
    error = fails(adapter, ProviderUnavailableError)
    assert error.attempts == 2
    # DashScope resends once on a connection dropped before any response byte (not switchable)
    assert 2 <= len(server.requests_for(model=model)) <= (4 if name == "qwen" else 2)


@names
def test_garbage_body_is_invalid_and_not_retried(server, name):
    adapter, route, model = make(server, name, "garbage")
    server.add_fault("garbage", route=route, model=model)
    error = fails(adapter, InvalidResponseError)
    assert error.attempts == 1 and len(server.requests_for(model=model)) == 1


@names
def test_body_cut_off_in_transit(server, name):
    adapter, route, model = make(server, name, "truncbody", max_attempts=2)
    server.add_fault("truncate", route=route, model=model, times=1)
    response = call(adapter)
    assert response.attempts == 2 and response.success


@names
def test_truncated_json_content_keeps_complete_records(server, name):
    adapter, route, model = make(server, name, "cutjson")
    records = json.dumps(GPU_PRICES[:3], ensure_ascii=False)
    server.add_fault("content", route=route, model=model, text="以下是价格：\n```json\n" + records[:-40])
    response = call(adapter)
    assert response.success and response.data == GPU_PRICES[:2]
    assert response.extra["truncated"] is True and response.extra["extraction_issues"]


@names
def test_no_json_is_data_none_not_a_crash(server, name):
    adapter, route, model = make(server, name, "nojson")
    server.add_fault("content", route=route, model=model, text="I cannot browse the web right now.")
    response = call(adapter)
    assert response.success and response.data is None and "no JSON" in response.extra["extraction_error"]


@names
def test_streaming_records_ttft(server, name):
    adapter, route, model = make(server, name, "stream")
    server.add_fault("slow_sse", route=route, model=model, delay_s=0.01)
    response = call(adapter, stream=True)
    assert response.ttft_s is not None and 0 <= response.ttft_s <= response.latency_s
    assert isinstance(response.data, list) and response.output_tokens > 0
    logged = server.requests_for(model=model)
    assert len(logged) == 1 and logged[0].stream and not logged[0].disconnected


def test_reasoner_keeps_reasoning_apart_and_cache_tokens(server):
    spec = ModelSpec("r1", "deepseek", "deepseek-reasoner", base_url=server.openai_base_url)
    for stream in (False, True):
        response = call(make_adapter(spec, env=ENV), stream=stream)
        assert response.reasoning and response.reasoning not in response.text
        assert response.extra["prompt_cache_hit_tokens"] > 0 and "prompt_cache_miss_tokens" in response.extra


def test_missing_key_names_the_variable(server):
    spec = ModelSpec("q", "dashscope", "qwen-max", base_url=server.dashscope_base_url)
    before = len(server.requests)
    error = fails(make_adapter(spec, env={}), MissingApiKeyError)
    assert "DASHSCOPE_API_KEY" in str(error) and len(server.requests) == before


def test_missing_authorization_is_401_and_logged_as_absent(server):
    import urllib.request, urllib.error
    req = urllib.request.Request(server.openai_base_url + "/chat/completions", data=b'{"model": "noauth"}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=5)
    assert caught.value.code == 401
    assert server.requests_for(model="noauth")[0].auth_present is False


def test_no_key_appears_in_logs_responses_or_errors(server, monkeypatch, caplog):
    secrets = {"DASHSCOPE_API_KEY": "sk-SECRET-dashscope-0123456789", "DEEPSEEK_API_KEY": "sk-SECRET-deepseek-0123456789",
               "ARK_API_KEY": "sk-SECRET-ark-0123456789", "COMPAT_KEY": "sk-SECRET-compat-0123456789"}
    for key, value in secrets.items(): monkeypatch.setenv(key, value)
    caplog.set_level(logging.DEBUG)
    for logger_name in ("", "dashscope", "openai", "httpx", "httpcore", "aiohttp", "computepulse_ai"):
        logging.getLogger(logger_name).setLevel(logging.DEBUG)
    seen: list[str] = []
    for name, (kind, route, base_attr, extra) in ADAPTERS.items():
        for case, fault in [("ok", None), ("e401", ("status", {"status": 401})), ("e500", ("status", {"status": 500})),
                            ("garbage", ("garbage", {})), ("reset", ("reset", {})), ("stream", None)]:
            spec = ModelSpec(f"{name}-leak-{case}", kind, f"leak-{name}-{case}", base_url=getattr(server, base_attr),
                             api_key_env="COMPAT_KEY" if kind == "openai_compatible" else None, options=dict(extra))
            if fault: server.add_fault(fault[0], route=route, model=spec.model_id, **fault[1])
            adapter = make_adapter(spec, retry=RetryPolicy(max_attempts=2), sleep=no_wait)   # keys from os.environ
            try:
                response = call(adapter, stream=case == "stream")
                seen += [response.to_json(), repr(response)]
            except Exception as error:
                seen += [str(error), repr(error), repr(vars(error))]
    seen += [caplog.text] + [repr(vars(r)) for r in caplog.records] + [repr(r) for r in server.requests]
    assert len(caplog.records) > 0
    blob = "\n".join(seen)
    for value in secrets.values():
        assert value not in blob
    assert "SECRET" not in blob


def test_simulated_adapter_zero_latency_and_truth():
    spec = ModelSpec("sim", "simulated", typical_latency_s=0.0, input_price=1, output_price=1)
    adapter = SimulatedAdapter(spec, accuracy={"price_extraction": 1.0}, seed=3)
    response = asyncio.run(adapter.call("GPU 价格", task_type="price_extraction"))
    assert response.extra["correct"] is True and response.data == GPU_PRICES and response.cost_usd > 0


def test_async_server_records_client_disconnect():
    async def scenario():
        async with FakeProviderServer() as server:
            server.add_fault("hang", route="openai")
            spec = ModelSpec("d", "deepseek", "deepseek-chat", base_url=server.openai_base_url)
            async with make_adapter(spec, env=ENV, retry=RetryPolicy(max_attempts=1)) as adapter:
                with pytest.raises(ProviderTimeoutError):
                    await adapter.call("GPU", deadline_s=0.2)
            # the client closed its connection; the server notices when its handler is cancelled
            await server.wait_for(lambda: server.requests[0].finished is not None)
            return server.requests[0]
    entry = asyncio.run(scenario())
    assert entry.disconnected and entry.status is None


# ---- partial and garbage streams, warm clients, extraction off the loop (issue 11) ---------------------------

@names
def test_stream_closed_before_its_final_event_is_retried_not_a_partial_success(server, name):
    # the truncate fault on a stream sends the first half of the events, then closes cleanly
    adapter, route, model = make(server, name, "cutstream", max_attempts=2)
    server.set_model(model, accuracy=1.0)
    server.add_fault("truncate", route=route, model=model, times=1)
    response = call(adapter, stream=True)
    assert response.success and response.attempts == 2
    assert response.data == GPU_PRICES                       # the whole answer, from the retry
    assert [r.stream for r in server.requests_for(model=model)] == [True, True]


@names
def test_stream_closed_before_its_final_event_fails_when_not_retried(server, name):
    from computepulse_ai.adapters import IncompleteResponseError
    adapter, route, model = make(server, name, "cutstream1", max_attempts=1)
    server.add_fault("truncate", route=route, model=model)
    error = fails(adapter, IncompleteResponseError, stream=True)
    assert "incomplete" in str(error) and error.model_fault and error.retryable


@names
def test_garbage_stream_body_is_invalid_not_an_empty_success(server, name):
    adapter, route, model = make(server, name, "garbagestream")
    server.add_fault("garbage", route=route, model=model)
    error = fails(adapter, InvalidResponseError, stream=True)
    assert error.attempts == 1 and len(server.requests_for(model=model)) == 1   # garbage is not retried


@names
def test_warm_builds_the_client_once_before_the_first_call(server, name):
    adapter, route, model = make(server, name, "warm")
    async def go():
        async with adapter:
            await adapter.warm()
            warmed = _client_of(adapter)
            assert warmed is not None and server.requests_for(model=model) == []   # warming sends nothing
            response = await adapter.call("请给出最新的 GPU 租赁价格")
            return warmed, _client_of(adapter), response
    warmed, used, response = asyncio.run(go())
    assert used is warmed and response.success


def _client_of(adapter):
    return getattr(adapter, "_session", None) or getattr(adapter, "_client", None)


def test_warm_without_a_key_names_the_variable_and_sends_nothing(server):
    from computepulse_ai.adapters import warm_adapters
    specs = {"q": ModelSpec("q", "dashscope", "warm-nokey-q", base_url=server.dashscope_base_url),
             "d": ModelSpec("d", "deepseek", "warm-nokey-d", base_url=server.openai_base_url)}
    built = {}
    def adapter_for(name):
        built[name] = make_adapter(specs[name], env={"DEEPSEEK_API_KEY": "sk-test"})
        return built[name]
    async def go():
        outcome = await warm_adapters(adapter_for, ["q", "d", "unknown"])
        for adapter in built.values(): await adapter.aclose()
        return outcome
    outcome = asyncio.run(go())
    assert isinstance(outcome["q"], MissingApiKeyError) and "DASHSCOPE_API_KEY" in str(outcome["q"])
    assert not outcome["q"].model_fault and outcome["d"] is None and isinstance(outcome["unknown"], KeyError)
    assert server.requests_for(model="warm-nokey-q") == server.requests_for(model="warm-nokey-d") == []


class _SlowClientDeepSeek:
    "A DeepSeek adapter whose client takes until `release` is set to build (a cold SDK import, a slow TLS setup)."
    @staticmethod
    def build(server, release):
        from computepulse_ai.providers import DeepSeekAdapter
        class Slow(DeepSeekAdapter):
            def _make_client(self, base_url, key):
                release.wait(5)
                return super()._make_client(base_url, key)
        spec = ModelSpec("cold", "deepseek", "cold-client", base_url=server.openai_base_url)
        return Slow(spec, env=ENV, retry=RetryPolicy(max_attempts=1))


def test_a_deadline_spent_building_the_client_is_not_the_models_timeout(server):
    # issue 11: the first call per provider was reported as a model timeout with zero requests sent
    release = threading.Event()
    adapter = _SlowClientDeepSeek.build(server, release)
    async def go():
        try:
            with pytest.raises(ProviderTimeoutError) as caught:
                await adapter.call("GPU 价格", deadline_s=0.1)
        finally:
            release.set()
            await adapter.aclose()
        return caught.value
    error = asyncio.run(go())
    assert not error.model_fault and "before the request was sent" in str(error)
    assert server.requests_for(model="cold-client") == []


def test_building_the_client_does_not_block_the_event_loop(server):
    # the client is built in a worker thread: the loop stays free to run the task that lets the build finish
    release = threading.Event()
    adapter = _SlowClientDeepSeek.build(server, release)
    async def go():
        call = asyncio.create_task(adapter.call("GPU 价格", timeout_s=20))
        await asyncio.sleep(0.05)
        release.set()
        try: return await call
        finally: await adapter.aclose()
    assert asyncio.run(go()).success


def test_long_answers_are_parsed_off_the_event_loop(server, monkeypatch):
    where = []
    real = adapters_module.extract_json
    def spy(text, *args, **kw):
        where.append((len(text), threading.current_thread() is threading.main_thread()))
        return real(text, *args, **kw)
    monkeypatch.setattr(adapters_module, "extract_json", spy)
    records = json.dumps(GPU_PRICES, ensure_ascii=False)
    long_text = "以下是价格：" + " " * adapters_module.EXTRACT_OFF_LOOP_CHARS + "```json\n" + records + "\n```"
    adapter, route, model = make(server, "deepseek", "longanswer")
    server.add_fault("content", route=route, model=model, text=long_text, times=1)
    assert call(adapter).data == GPU_PRICES
    short, route, model = make(server, "deepseek", "shortanswer")
    assert call(short).data == GPU_PRICES
    assert [on_loop for _, on_loop in where] == [False, True]     # the long one in a worker thread, the short one inline
