"""Speed figures of the execution stage: parallel calls, early stop and merging.

Run: .venv/bin/python benchmarks/perf_execution.py — prints one JSON object as its last line.
Each figure has its own `measure_*` function returning a dict; `main` collects them.

Executor figures: the fake provider server (in its own thread) and the REAL SDKs over HTTP, one model per protocol —
qwen-fast (DashScope SDK, 0.2 s), deepseek-mid (OpenAI SDK, 0.4 s), doubao-slow (Ark SDK, 0.8 s), all answering
correctly. One cold execution first (SDK imports, client creation, first connection), then one with fresh adapters
right after `warm()` (what `AIOrchestrator.start` does: only the first connection is left), then REPEATS executions
with the same adapters (kept-alive connections, as in a long-running service); median and max are reported, plus the
cold and first-after-warm executions separately.
  parallel_latency_ratio     wall time of ParallelExecutor.run over all three / 0.8 s                (target <= 1.05)
  early_stop_latency_ratio   ADAPTIVE: stop_when = two answers agree; qwen and deepseek agree, so doubao is
                             cancelled; wall time / 0.4 s                                              (target <= 1.05)
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from computepulse_ai.adapters import RetryPolicy, make_adapter
from computepulse_ai.core import ModelSpec
from computepulse_ai.execution import ParallelExecutor
from computepulse_ai.fakes import FakeProviderServer, matches_truth
from computepulse_ai.merging import default_merge_spec, merge_records

ENV = {"DASHSCOPE_API_KEY": "sk-bench", "DEEPSEEK_API_KEY": "sk-bench", "ARK_API_KEY": "sk-bench"}
PROMPT = "请给出最新的 GPU 租赁价格"
REPEATS = int(os.environ.get("PERF_EXEC_REPEATS", "7"))
# our model name -> (adapter kind, base-url attribute of the fake server, latency in seconds)
LATENCY_MODELS = {"qwen-fast": ("dashscope", "dashscope_base_url", 0.2),
                  "deepseek-mid": ("deepseek", "openai_base_url", 0.4),
                  "doubao-slow": ("ark", "ark_base_url", 0.8)}

PROVIDERS = ["AWS", "Azure", "GCP", "Lambda", "Tencent Cloud", "Huawei Cloud", "CoreWeave", "RunPod", "Vast.ai", "Paperspace", "OCI", "Alibaba Cloud"]
REGIONS = ["US-East-1", "US-West-2", "EU-West-1", "AP-Southeast-1", "CN-Beijing"]
GPUS = ["H100", "A100", "L40S", "H200"]


def gpu_answers(n_records: int = 200, models=("qwen", "deepseek", "doubao"), seed: int = 0) -> dict[str, list[dict]]:
    "Three models' lists of GPU price records with realistic disagreement."
    rng = random.Random(seed)
    keys = [(p, r, g) for p in PROVIDERS for r in REGIONS for g in GPUS][: int(n_records * 1.15)]
    truth = {k: round(rng.uniform(0.5, 12.0), 2) for k in keys}
    answers = {}
    for m in models:
        records = []
        for (provider, region, gpu) in rng.sample(keys, n_records):        # each model covers a different subset
            price, roll = truth[(provider, region, gpu)], rng.random()
            if roll < 0.25: price = round(price * rng.uniform(0.98, 1.02), 2)   # within tolerance
            elif roll < 0.35: price = round(price * rng.uniform(1.2, 2.0), 2)   # a real disagreement
            spelled = provider.lower() if rng.random() < 0.2 else provider       # spelling variants
            records.append({"provider": spelled, "region": region, "gpu": gpu, "price": price, "currency": "USD"})
        answers[m] = records
    return answers


def measure_merge(repeats: int = 300) -> dict[str, float]:
    "merge_ms_p50_3x200: median wall time of merging three lists of 200 GPU records."
    answers = gpu_answers()
    weights = {"qwen": 0.82, "deepseek": 0.74, "doubao": 0.61}
    spec = default_merge_spec("gpu")
    for _ in range(20): merge_records(answers, weights, spec)            # warm caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        merge_records(answers, weights, spec)
        times.append((time.perf_counter() - start) * 1000)
    return {"merge_ms_p50_3x200": round(statistics.median(times), 3),
            "merge_ms_p95_3x200": round(sorted(times)[int(0.95 * len(times))], 3)}


def two_agree(responses) -> bool:
    "ADAPTIVE's quality bar here: two answers carry the same data."
    data = [r.data for r in responses if r.data is not None]
    return any(matches_truth(a, b) for i, a in enumerate(data) for b in data[i + 1:])


def latency_adapters(server: FakeProviderServer) -> list:
    adapters = []
    for name, (kind, base_attr, _) in LATENCY_MODELS.items():
        spec = ModelSpec(name, kind, name, base_url=getattr(server, base_attr), input_price=1.0, output_price=2.0)
        adapters.append(make_adapter(spec, env=ENV, retry=RetryPolicy(max_attempts=1), timeout_s=30))
    return adapters


async def timed_executions(server: FakeProviderServer, stop_when, repeats: int) -> tuple[list[float], list]:
    """Wall times of one cold execution, one with fresh adapters right after `warm()` (what AIOrchestrator.start does)
    and `repeats` warm executions over the three latency models, and their results."""
    executor, times, results = ParallelExecutor(timeout_s=30), [], []
    adapters, warmed = latency_adapters(server), latency_adapters(server)
    try:
        for run in range(repeats + 2):
            if run == 1:
                for adapter in warmed: await adapter.warm()
            start = time.perf_counter()
            result = await executor.run(warmed if run == 1 else adapters, PROMPT, stop_when=stop_when)
            times.append(time.perf_counter() - start)
            results.append(result)
    finally:
        for adapter in adapters + warmed: await adapter.aclose()
    return times, results


def latency_server() -> FakeProviderServer:
    "The fake server with the three latency models, answering correctly."
    server = FakeProviderServer(seed=0)
    for name, (_, _, latency) in LATENCY_MODELS.items(): server.set_model(name, accuracy=1.0, latency_s=latency)
    return server


def ratios(times: list[float], base_s: float, prefix: str) -> dict[str, float]:
    "Cold (first), first after warm() and steady median/max of `times` / `base_s`."
    steady = times[2:]
    return {f"{prefix}": round(statistics.median(steady) / base_s, 4), f"{prefix}_max": round(max(steady) / base_s, 4),
            f"{prefix}_cold": round(times[0] / base_s, 4), f"{prefix}_first_after_warm": round(times[1] / base_s, 4)}


def measure_parallel(repeats: int = REPEATS) -> dict[str, float]:
    "parallel_latency_ratio: wall time of calling all three models at once / the slowest latency (0.8 s)."
    with latency_server() as server:
        times, results = asyncio.run(timed_executions(server, None, repeats))
    assert all(len(r.successes) == 3 for r in results), [r.failures for r in results]
    return ratios(times, max(l for *_, l in LATENCY_MODELS.values()), "parallel_latency_ratio")


def measure_early_stop(repeats: int = REPEATS) -> dict[str, float]:
    "early_stop_latency_ratio: ADAPTIVE stops once the first two agree; wall time / the second latency (0.4 s)."
    with latency_server() as server:
        times, results = asyncio.run(timed_executions(server, two_agree, repeats))
    assert all(r.early_stopped and r.cancelled == ["doubao-slow"] for r in results), [(r.models, r.cancelled) for r in results]
    return ratios(times, sorted(l for *_, l in LATENCY_MODELS.values())[1], "early_stop_latency_ratio")


def main() -> None:
    figures: dict[str, float] = {}
    for measure in (measure_merge, measure_parallel, measure_early_stop):
        figures.update(measure())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
