"""The fake world and the fake provider server: determinism, corruption, detection, faults, CLI."""
import asyncio
import json
import os
import random
import subprocess
import sys
import urllib.error
import urllib.request

from hypothesis import given, settings, strategies as st

from computepulse_ai.extraction import extract_json
from computepulse_ai.fakes import (CORRUPTIONS, DATA_TYPES, FakeModel, FakeProviderServer, GRID_RECORD, corrupt,
                                   detect_data_type, ground_truth, matches_truth, render_answer, script_answer)

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def test_grid_record_is_consistent():
    assert abs(GRID_RECORD["estimated_gw"] - GRID_RECORD["annual_twh"] / 8.76) < 0.01
    assert 0.01 <= GRID_RECORD["kwh_price"] <= 1.0


def test_ground_truth_in_spec_ranges():
    assert all(0.1 <= r["price"] <= 50 and r["currency"] == "USD" for r in ground_truth("gpu"))
    assert all(0.001 <= r["input_price"] <= 100 and 1.5 <= r["output_price"] / r["input_price"] <= 5 or r["model"].startswith("GLM")
               for r in ground_truth("token"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DATA_TYPES), st.integers(0, 10**6), st.sampled_from((None,) + CORRUPTIONS))
def test_corrupt_is_always_wrong_and_seeded(data_type, seed, kind):
    if kind == "drop" and data_type == "grid_load": kind = None
    truth = ground_truth(data_type)
    wrong = corrupt(truth, random.Random(seed), kind)
    assert not matches_truth(wrong, truth)
    assert wrong == corrupt(truth, random.Random(seed), kind)
    assert truth == ground_truth(data_type)   # input untouched


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DATA_TYPES), st.integers(0, 10**6))
def test_rendered_answers_extract_back(data_type, seed):
    data = ground_truth(data_type)
    assert extract_json(render_answer(data, random.Random(seed))).data == data


def test_detect_data_type():
    assert detect_data_type("H100 rental price") == "gpu"
    assert detect_data_type("各大模型 token 价格") == "token"
    assert detect_data_type("数据中心能耗 TWh") == "grid_load"


def test_script_is_deterministic_per_seed():
    model = FakeModel("m", {"gpu": 0.5})
    first = [script_answer(model, "GPU", random.Random(f"1:m:{n}")).text for n in range(20)]
    again = [script_answer(model, "GPU", random.Random(f"1:m:{n}")).text for n in range(20)]
    assert first == again


def post(url, body, headers=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "Authorization": "Bearer t", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_error_rates_follow_model_accuracy():
    with FakeProviderServer(seed=5) as server:
        server.set_model("half", accuracy={"gpu": 0.5})
        for _ in range(60):
            post(server.openai_base_url + "/chat/completions", {"model": "half", "messages": [{"role": "user", "content": "GPU"}]})
        share = sum(r.correct for r in server.requests) / 60
    assert 0.3 < share < 0.7


def test_status_fault_with_retry_after_and_dashscope_error_shape():
    with FakeProviderServer() as server:
        fault = server.add_fault("status", route="dashscope", status=429, retry_after=2, times=1)
        body = {"model": "qwen-max", "input": {"messages": [{"role": "user", "content": "GPU"}]}, "parameters": {}}
        status, headers, text = post(server.dashscope_base_url + "/services/aigc/text-generation/generation", body)
        assert status == 429 and headers["Retry-After"] == "2" and fault.hits == 1
        assert set(json.loads(text)) == {"code", "message", "request_id"}
        status, headers, text = post(server.dashscope_base_url + "/services/aigc/text-generation/generation", body,
                                     {"X-DashScope-SSE": "enable"})
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream") and "data:" in text


def test_probabilistic_faults_are_seeded():
    def run():
        with FakeProviderServer(seed=9) as server:
            server.add_fault("status", status=503, probability=0.5)
            return [post(server.openai_base_url + "/chat/completions", {"model": "x", "messages": []})[0] for _ in range(20)]
    first, second = run(), run()
    assert first == second and 503 in first and 200 in first


def test_async_context_manager_and_hang_released_on_stop():
    async def scenario():
        server = FakeProviderServer()
        async with server:
            server.add_fault("hang")
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            await server.wait_for(lambda: len(server.requests) == 1)
        writer.close()
        return server.requests[0]
    entry = asyncio.run(scenario())
    assert entry.fault == "hang" and entry.finished is not None


def test_cli_help_is_fast_and_lists_fake_providers():
    out = subprocess.run([sys.executable, "-c", "import sys; from computepulse_ai.cli import main; "
                          "sys.exit(main(['--help']))"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "fake-providers" in out.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, computepulse_ai.cli; "
                            "print('aiohttp' in sys.modules, 'openai' in sys.modules)"], capture_output=True, text=True, timeout=30)
    assert probe.stdout.split() == ["False", "False"]
