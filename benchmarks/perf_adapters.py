"""Adapter speed: overhead of our adapter over the bare SDK call, and how late a deadline-bound call returns.

Prints, as its last line, one JSON object with
  adapter_overhead_ms_p50  - p50(our DeepSeekAdapter.call) - p50(bare AsyncOpenAI chat.completions.create), same client
                             settings, same fake server (in its own thread), interleaved calls; target <= 1 ms
  deadline_overrun_ms_max  - 100 concurrent calls with deadline 0.5 s against a hanging route: the latest return
                             after the deadline, over Qwen, DeepSeek and Doubao adapters; target <= 50 ms
"""
import asyncio
import json
import os
import statistics
import time

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import logging

import openai

from computepulse_ai.adapters import ProviderTimeoutError, RetryPolicy, make_adapter
from computepulse_ai.core import ModelSpec
from computepulse_ai.fakes import FakeProviderServer

ENV = {"DASHSCOPE_API_KEY": "sk-bench", "DEEPSEEK_API_KEY": "sk-bench", "ARK_API_KEY": "sk-bench"}
PROMPT = "请给出最新的 GPU 租赁价格"
ITERATIONS = int(os.environ.get("PERF_ITERATIONS", "400"))


async def overhead(server: FakeProviderServer) -> dict:
    spec = ModelSpec("ds", "deepseek", "deepseek-chat", base_url=server.openai_base_url)
    adapter = make_adapter(spec, env=ENV, timeout_s=30.0, retry=RetryPolicy(max_attempts=1))
    bare = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-bench", max_retries=0, timeout=30.0)
    messages = [{"role": "user", "content": PROMPT}]
    ours, sdk = [], []
    for i in range(ITERATIONS + 30):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            start = time.perf_counter()
            if which == 0: await bare.chat.completions.create(model="deepseek-chat", messages=messages, timeout=30.0)
            else: await adapter.call(PROMPT)
            elapsed = time.perf_counter() - start
            if i >= 30: (sdk if which == 0 else ours).append(elapsed)
    await bare.close()
    await adapter.aclose()
    return {"sdk_ms_p50": statistics.median(sdk) * 1e3, "adapter_ms_p50": statistics.median(ours) * 1e3,
            "adapter_overhead_ms_p50": (statistics.median(ours) - statistics.median(sdk)) * 1e3}


async def deadline_overrun(server: FakeProviderServer, spec: ModelSpec, n: int = 100, deadline: float = 0.5) -> float:
    adapter = make_adapter(spec, env=ENV, timeout_s=30.0, max_concurrency=n, retry=RetryPolicy(max_attempts=3))
    loop = asyncio.get_running_loop()

    async def one() -> float:
        start = loop.time()
        try: await adapter.call(PROMPT, deadline_s=deadline)
        except ProviderTimeoutError: pass
        return loop.time() - start - deadline

    overruns = await asyncio.gather(*(one() for _ in range(n)))
    await adapter.aclose()
    return max(overruns) * 1e3


async def simulated_call_us() -> float:
    adapter = make_adapter(ModelSpec("sim", "simulated", typical_latency_s=0.0, options={"seed": 1}))
    times = []
    for _ in range(2000):
        start = time.perf_counter()
        await adapter.call(PROMPT)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> dict:
    logging.getLogger("computepulse_ai").setLevel(logging.ERROR)   # failed calls are expected here
    with FakeProviderServer(seed=1) as server:
        server.set_model("deepseek-chat", latency_s=0.0)
        figures = asyncio.run(overhead(server))
        server.add_fault("hang", model="hang-model")
        specs = {"qwen": ModelSpec("q", "dashscope", "hang-model", base_url=server.dashscope_base_url),
                 "deepseek": ModelSpec("d", "deepseek", "hang-model", base_url=server.openai_base_url),
                 "doubao_search": ModelSpec("b", "ark", "hang-model", base_url=server.ark_base_url, options={"enable_search": True})}
        per_adapter = {name: asyncio.run(deadline_overrun(server, spec)) for name, spec in specs.items()}
    figures.update({f"deadline_overrun_ms_max_{name}": value for name, value in per_adapter.items()})
    figures["deadline_overrun_ms_max"] = max(per_adapter.values())
    figures["simulated_call_us_p50"] = asyncio.run(simulated_call_us())
    figures["iterations"] = ITERATIONS
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


if __name__ == "__main__":
    print(json.dumps(main()))
