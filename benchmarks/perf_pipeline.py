"""Pipeline speed: the full AIOrchestrator.process() path, and 1,000 concurrent requests over HTTP.

Prints human-readable lines, then as its LAST line one JSON object:
pipeline_overhead_ms_p50_scalar (target <= 0.5 ms), pipeline_overhead_ms_p50_lists (target <= 2 ms),
concurrent_1000_errors (target 0), concurrent_1000_s (reported).

The overhead runs use in-process adapters of zero latency and three models, all called every time
(TRIPLE_CONSENSUS), history durability "batch" on the project's disk: the path measured is classify,
route, execute, normalise, merge, validate, feedback, learn, history append and request log.
"""
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
from computepulse_ai.adapters import CallResult, ModelAdapter, RetryPolicy, make_adapter
from computepulse_ai.config import Config
from computepulse_ai.core import Request
from computepulse_ai.orchestrator import AIOrchestrator

logging.getLogger("computepulse_ai").setLevel(logging.CRITICAL)

PROVIDERS = ["AWS", "Azure", "GCP", "Lambda", "CoreWeave", "Alibaba Cloud", "Tencent Cloud", "Huawei Cloud", "Volcengine",
             "Oracle", "Vultr", "RunPod", "Paperspace", "Genesis", "Hyperstack", "Nebius", "Crusoe", "Fluidstack",
             "Jarvislabs", "Vast.ai", "TensorDock", "Latitude", "OVH", "Scaleway", "Hetzner"]
GPUS = [("H100", 2.5), ("A100", 1.3), ("L4", 0.7), ("T4", 0.35)]
TRUTH_100 = [{"provider": p, "region": "r1", "gpu": g, "price": round(base * (1 + i % 7 / 20), 3), "currency": "USD"}
             for i, p in enumerate(PROVIDERS) for g, base in GPUS]
GRID = {"annual_twh": 150.0, "estimated_gw": 17.12, "kwh_price": 0.12, "active_gpu_est": 4000000, "source": "bench"}


class FixedAdapter(ModelAdapter):
    "Answers instantly with fixed data (no HTTP, no sleep): measures our overhead only."
    kind = "bench-fixed"

    def __init__(self, spec, data, **kw):
        super().__init__(spec, retry=RetryPolicy(max_attempts=1), **kw)
        self.data = data

    def api_key(self) -> str: return ""

    async def _call_once(self, prompt, *, timeout_s, stream, **kw):
        return CallResult(data=self.data, input_tokens=500, output_tokens=800)


def bench_config(folder):
    return Config.from_dict({"quality_threshold": 0.0, "storage": {"folder": str(folder), "durability": "batch", "batch_size": 1000,
                                         "save_scores_every": 1000},
                             "cache": {"enabled": False}, "routing": {"exploration": "none", "strategies": {
                                 t: "TRIPLE_CONSENSUS" for t in ("simple_query", "complex_reasoning", "data_validation",
                                                                 "price_extraction", "historical_analysis")}},
                             "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "abc"]})


async def overhead(kind: str, n: int = 400) -> float:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        cfg = bench_config(tmp)
        if kind == "lists":
            off = [dict(r, price=r["price"] * 2) if i % 20 == 0 else r for i, r in enumerate(TRUTH_100)]   # c differs on 5
            data, prompt, data_type = {"a": TRUTH_100, "b": TRUTH_100, "c": off}, "GPU 租赁价格", "gpu"
        else:
            data, prompt, data_type = {"a": GRID, "b": GRID, "c": dict(GRID, kwh_price=0.3)}, "数据中心 年耗电量 估算", "grid_load"
        adapters = {s.name: FixedAdapter(s, data[s.name]) for s in cfg.models}
        async with AIOrchestrator(cfg, adapters=adapters, seed=0) as orch:
            times = []
            for i in range(n):
                req = Request(prompt, data_type=data_type)
                t0 = time.perf_counter()
                res = await orch.process(req)
                times.append((time.perf_counter() - t0) * 1000)
                assert res.success and len(res.responses) == 3, (res.error, res.decision)
            return statistics.median(times[n // 10:])   # skip warm-up


async def concurrent(n: int = 1000):
    from computepulse_ai.fakes import FakeProviderServer
    from computepulse_ai.jobs import PROMPTS, demo_config, demo_models
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp, \
            FakeProviderServer(seed=0, models=[m for m, _ in demo_models()]) as server:
        for fake, _ in demo_models(): server.set_model(fake.name, latency_s=0.05, latency_jitter_s=0.05)
        cfg = demo_config(server, Path(tmp))
        env = {k: "bench-placeholder" for k in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY")}
        adapters = {s.name: make_adapter(s, env=env, retry=RetryPolicy(max_attempts=2, base_delay_s=0.05), timeout_s=30,
                                         max_concurrency=64) for s in cfg.models}
        async with AIOrchestrator(cfg, adapters=adapters, seed=0) as orch:
            kinds = ["gpu", "token", "grid_load"]
            t0 = time.perf_counter()
            results = await asyncio.gather(*[orch.process(Request(PROMPTS[kinds[i % 3]], data_type=kinds[i % 3]))
                                             for i in range(n)], return_exceptions=True)
            elapsed = time.perf_counter() - t0
    exceptions = sum(isinstance(r, BaseException) for r in results)
    failed_calls = sum(1 for r in results if not isinstance(r, BaseException) for resp in r.responses if not resp.success)
    calls = sum(len(r.responses) for r in results if not isinstance(r, BaseException))
    no_answer = sum(1 for r in results if not isinstance(r, BaseException) and not r.responses)
    return exceptions + failed_calls + no_answer, elapsed, calls, exceptions, failed_calls


def main() -> dict:
    scalar = asyncio.run(overhead("scalar"))
    lists = asyncio.run(overhead("lists"))
    errors, elapsed, calls, exceptions, failed_calls = asyncio.run(concurrent())
    results = {"pipeline_overhead_ms_p50_scalar": round(scalar, 3), "pipeline_overhead_ms_p50_lists": round(lists, 3),
               "concurrent_1000_errors": errors, "concurrent_1000_s": round(elapsed, 2),
               "concurrent_1000_model_calls": calls}
    for k, v in results.items(): print(f"{k:34s} {v}")
    print(f"{'  (exceptions, failed model calls)':34s} {exceptions}, {failed_calls}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
