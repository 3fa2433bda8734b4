"""Every provider adapter x every failure mode, through the REAL SDKs over HTTP against the fake provider server."""
import asyncio
import json
import logging
import os
import socket

import pytest

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
