"""Pipeline speed: the full AIOrchestrator.process() path, its independence of the history size, and 1,000
concurrent requests over HTTP.

Prints human-readable lines, then as its LAST line one JSON object:
pipeline_overhead_ms_p50_scalar (target <= 0.3 ms), pipeline_overhead_ms_p50_lists (target <= 3 ms),
history_1m_ratio (p50 overhead with a 1,000,000-record history / with a 1,000-record one, scalar case; target
within 1 +- 0.10; history_1m_ratio_lists the same for the lists case), pipeline_overhead_ms_p50_scalar_each
(the scalar case with the default durability "each": every process() waits for its group commit),
history_1m_ratio_mean / _mean_lists (the same ratio of mean overheads: a periodic stall, such as re-reading the
history every 50 records, hides from the median but not from the mean), history_1m_ratio_cpu / _cpu_lists (the
ratio of the event-loop thread's mean CPU time per request: what our code costs, without the machine's load),
concurrent_1000_errors (target 0: exceptions, failed calls, requests admitted but answered by no model),
concurrent_1000_shed (requests refused by admission control, reported apart), concurrent_1000_s (reported).

The overhead runs use in-process adapters of zero latency and three models, all called every time: every setting
the measured path depends on is set here (a benchmark must not silently depend on defaults) — a quality bar of 0
for every task type, TRIPLE_CONSENSUS for every task type, no exploration, no cache, history durability "batch"
(or "each" where named) on the project's disk, no retention. The path measured is classify, route, execute,
normalise, merge, validate, feedback, learn, history append, the anomaly check and the request log.

`--quick` runs fewer requests and skips the 1M-record history and the HTTP run (for a smoke test).
`--profile scalar|lists` runs that case under cProfile instead (400 requests, 1,000-record history) and prints the
top functions by own time and the own time per notebook (each exported module names its notebook), then a JSON line.
"""
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
from computepulse_ai.adapters import CallResult, ModelAdapter, RetryPolicy, make_adapter
from computepulse_ai.config import Config
from computepulse_ai.core import Request, TaskType
from computepulse_ai.orchestrator import AIOrchestrator

logging.getLogger("computepulse_ai").setLevel(logging.CRITICAL)

PROVIDERS = ["AWS", "Azure", "GCP", "Lambda", "CoreWeave", "Alibaba Cloud", "Tencent Cloud", "Huawei Cloud", "Volcengine",
             "Oracle", "Vultr", "RunPod", "Paperspace", "Genesis", "Hyperstack", "Nebius", "Crusoe", "Fluidstack",
             "Jarvislabs", "Vast.ai", "TensorDock", "Latitude", "OVH", "Scaleway", "Hetzner"]
GPUS = [("H100", 2.5), ("A100", 1.3), ("L4", 0.7), ("T4", 0.35)]
TRUTH_100 = [{"provider": p, "region": "r1", "gpu": g, "price": round(base * (1 + i % 7 / 20), 3), "currency": "USD"}
             for i, p in enumerate(PROVIDERS) for g, base in GPUS]
GRID = {"annual_twh": 150.0, "estimated_gw": 17.12, "kwh_price": 0.12, "active_gpu_est": 4000000, "source": "bench"}
TASKS = [t.value for t in TaskType]


class FixedAdapter(ModelAdapter):
    "Answers instantly with fixed data (no HTTP, no sleep): measures our overhead only."
    kind = "bench-fixed"

    def __init__(self, spec, data, **kw):
        super().__init__(spec, retry=RetryPolicy(max_attempts=1), **kw)
        self.data = data

    def api_key(self) -> str: return ""

    async def _call_once(self, prompt, *, timeout_s, stream, **kw):
        return CallResult(data=self.data, input_tokens=500, output_tokens=800)


def bench_config(folder, durability: str = "batch") -> Config:
    "Everything the measured path depends on, set explicitly."
    return Config.from_dict({
        "quality_threshold": 0.0,
        "routing": {"task_thresholds": {t: 0.0 for t in TASKS}, "strategies": {t: "TRIPLE_CONSENSUS" for t in TASKS},
                    "exploration": "none", "low_confidence": 0.6},
        "classifier": {"low_confidence": 0.6},
        "cache": {"enabled": False},
        "storage": {"folder": str(folder), "durability": durability, "batch_size": 1000, "flush_interval_s": 5.0,
                    "save_scores_every": 1000, "snapshot_interval_s": 30.0,
                    "retention": {"max_age_days": None, "max_bytes": None}},
        "tracking": {"anomaly_window": 20, "anomaly_threshold": 4.0},
        "feedback": {"correct_share": 0.9, "signal": "binary"},
        "merging": {"method": "weighted_vote", "numeric_choice": "mean", "min_supporters": 1},
        "logging": {"level": "ERROR"},
        "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "abc"]})


def write_history(folder: Path, n: int) -> None:
    "A history of `n` records of the three models (recent timestamps), written fast from a line template."
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime.now(timezone.utc) - timedelta(seconds=n + 60)
    template = ('{"model":"%s","task_type":"%s","timestamp":"%s","was_correct":%s,"response_time":%.3f,"cost":0.0001,'
                '"token_count":1300,"input_tokens":500,"output_tokens":800,"request_id":"h%d","success":true,'
                '"accuracy":null,"source":"validation"}\n')
    with open(folder / "performance_history.jsonl", "w") as f:
        chunk = []
        for i in range(n):
            stamp = (start + timedelta(seconds=i)).isoformat()
            chunk.append(template % ("abc"[i % 3], TASKS[i % 5], stamp, "true" if i % 4 else "false", 0.5 + (i % 50) / 100, i))
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
        f.flush()
        os.fsync(f.fileno())   # on disk like a real history, so its write-back does not land inside a measurement


def case(kind: str):
    if kind == "lists":
        off = [dict(r, price=r["price"] * 2) if i % 20 == 0 else r for i, r in enumerate(TRUTH_100)]   # c differs on 5
        return {"a": TRUTH_100, "b": TRUTH_100, "c": off}, "GPU 租赁价格", "gpu"
    return {"a": GRID, "b": GRID, "c": dict(GRID, kwh_price=0.3)}, "数据中心 年耗电量 估算", "grid_load"


async def overhead(kind: str, folder: Path, n: int = 400, durability: str = "batch") -> tuple[float, float, float]:
    cfg = bench_config(folder, durability)
    data, prompt, data_type = case(kind)
    adapters = {s.name: FixedAdapter(s, data[s.name]) for s in cfg.models}
    async with AIOrchestrator(cfg, adapters=adapters, seed=0) as orch:
        times, cpu = [], []
        for i in range(n):
            req = Request(prompt, data_type=data_type)
            t0, c0 = time.perf_counter(), time.thread_time()
            res = await orch.process(req)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)   # CPU of the event-loop thread only: robust on a loaded machine
            assert res.success and len(res.responses) == 3, (res.error, res.decision)
        steady, steady_cpu = times[n // 10:], cpu[n // 10:]   # skip warm-up
        # the mean sees periodic stalls the median hides
        return statistics.median(steady), statistics.fmean(steady), statistics.fmean(steady_cpu)


def overhead_in(kind: str, history: int, n: int, durability: str = "batch", folder: Path | None = None) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:   # on the project's disk, not a tmpfs
        where = folder or Path(tmp) / "data"
        if folder is None and history: write_history(where, history)
        return asyncio.run(overhead(kind, where, n, durability))


async def concurrent(n: int = 1000):
    from computepulse_ai.fakes import FakeProviderServer
    from computepulse_ai.jobs import PROMPTS, demo_config, demo_models
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp, \
            FakeProviderServer(seed=0, models=[m for m, _ in demo_models()]) as server:
        for fake, _ in demo_models(): server.set_model(fake.name, latency_s=0.05, latency_jitter_s=0.05)
        demo = demo_config(server, Path(tmp)).to_dict()
        # admission control, set here: 16 requests at a time, the rest wait in line, and a deadline long enough for
        # the line (1,000 / 16 rounds of ~0.1-0.3 s), so no request is shed for a deadline it could not meet
        demo["execution"].update(timeout_s=30.0, deadline_s=120.0, max_attempts=2, base_delay_s=0.05, max_concurrency=64,
                                 max_inflight_requests=16, max_queued_requests=10_000)
        cfg = Config.from_dict(demo, "<perf_pipeline concurrent>")
        env = {k: "bench-placeholder" for k in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY")}
        adapters = {s.name: make_adapter(s, env=env, retry=RetryPolicy(max_attempts=2, base_delay_s=0.05), timeout_s=30,
                                         max_concurrency=64) for s in cfg.models}
        async with AIOrchestrator(cfg, adapters=adapters, seed=0) as orch:
            logging.getLogger("computepulse_ai").setLevel(logging.CRITICAL)   # the orchestrator set the config's level
            kinds = ["gpu", "token", "grid_load"]
            t0 = time.perf_counter()
            results = await asyncio.gather(*[orch.process(Request(PROMPTS[kinds[i % 3]], data_type=kinds[i % 3]))
                                             for i in range(n)], return_exceptions=True)
            elapsed = time.perf_counter() - t0
    exceptions = sum(isinstance(r, BaseException) for r in results)
    done = [r for r in results if not isinstance(r, BaseException)]
    shed = sum(r.shed for r in done)   # refused by admission control: reported, not an error of the pipeline
    failed_calls = sum(1 for r in done for resp in r.responses if not resp.success)
    calls = sum(len(r.responses) for r in done)
    no_answer = sum(1 for r in done if not r.shed and not r.responses)
    return exceptions + failed_calls + no_answer, elapsed, calls, exceptions, failed_calls, shed


def notebook_of(filename: str, cache: dict[str, str] = {}) -> str:
    "The notebook a profiled file is exported from (its AUTOGENERATED header), else its top-level package."
    if filename not in cache:
        where = "other"
        path = Path(filename)
        if path.name == Path(__file__).name: where = "the benchmark itself"
        elif path.suffix == ".py" and "computepulse_ai" in path.parts:
            head = path.read_text(errors="replace")[:2000] if path.exists() else ""
            marker = "File to edit: ../nbs/"
            where = head.split(marker, 1)[1].split(".ipynb", 1)[0] if marker in head else path.name
        elif "site-packages" in path.parts:
            where = path.parts[path.parts.index("site-packages") + 1].split(".")[0]
        elif path.suffix == ".py":
            where = "stdlib:" + (path.parent.name if path.parent.name not in ("lib", "python3.11", "python3.12") else path.stem)
        cache[filename] = where
    return cache[filename]


def profile(kind: str, n: int = 400, top: int = 25) -> dict:
    "cProfile one case; print the top functions by own time and own time per notebook."
    import cProfile
    import pstats
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        where = Path(tmp) / "data"
        write_history(where, 1_000)

        async def profiled():
            profiler.enable()
            try: return await overhead(kind, where, n)
            finally: profiler.disable()
        asyncio.run(profiled())
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())
    rows = sorted(((v[2], v[3], v[1], f"{Path(k[0]).name}:{k[1]}({k[2]})", notebook_of(k[0])) for k, v in stats.stats.items()),
                  reverse=True)
    print(f"{kind}: {n} requests, own time {total * 1000 / n:.3f} ms per request under the profiler")
    print(f"{'own ms/req':>10s} {'cum ms/req':>10s} {'calls/req':>9s}  function  [notebook]")
    for own, cum, calls, name, nb in rows[:top]:
        print(f"{own * 1000 / n:10.4f} {cum * 1000 / n:10.4f} {calls / n:9.1f}  {name}  [{nb}]")
    by_nb: dict[str, float] = {}
    for key, (_, _, own, _, callers) in stats.stats.items():
        if key[0] == "~" and callers:    # a built-in (isinstance, json's C encoder, ...): its time goes to its callers
            for caller, (_, _, caller_own, _) in callers.items():
                by_nb[notebook_of(caller[0])] = by_nb.get(notebook_of(caller[0]), 0.0) + caller_own
        else: by_nb[notebook_of(key[0])] = by_nb.get(notebook_of(key[0]), 0.0) + own
    print("own time per notebook / package, built-ins counted in their callers' (ms per request):")
    for nb, own in sorted(by_nb.items(), key=lambda kv: -kv[1])[:20]: print(f"{own * 1000 / n:10.4f}  {nb}")
    result = {"profile": kind, "requests": n, "own_ms_per_request": round(total * 1000 / n, 3),
              "by_notebook_ms": {nb: round(own * 1000 / n, 3) for nb, own in sorted(by_nb.items(), key=lambda kv: -kv[1])[:12]}}
    print(json.dumps(result))
    return result


def main(quick: bool = False) -> dict:
    n = 100 if quick else 400
    rounds = 1 if quick else 3   # interleaved rounds: the machine's load drifts, the medians of both sides see the same
    runs = {"scalar": [], "lists": [], "scalar_1m": [], "lists_1m": []}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:   # one 1M-record history for both cases
        big = Path(tmp) / "data"
        if not quick:
            t0 = time.perf_counter()
            write_history(big, 1_000_000)
            print(f"{'  (wrote 1M history records in s)':38s} {time.perf_counter() - t0:.1f}")
        for _ in range(rounds):
            for kind in ("scalar", "lists"):
                runs[kind].append(overhead_in(kind, 1_000, n))
                if not quick: runs[kind + "_1m"].append(overhead_in(kind, 0, n, folder=big))
    p50 = {k: statistics.median(r[0] for r in v) for k, v in runs.items() if v}
    mean = {k: statistics.median(r[1] for r in v) for k, v in runs.items() if v}
    cpu = {k: statistics.median(r[2] for r in v) for k, v in runs.items() if v}
    results = {"pipeline_overhead_ms_p50_scalar": round(p50["scalar"], 3), "pipeline_overhead_ms_p50_lists": round(p50["lists"], 3),
               "pipeline_cpu_ms_mean_scalar": round(cpu["scalar"], 3), "pipeline_cpu_ms_mean_lists": round(cpu["lists"], 3),
               "pipeline_overhead_ms_p50_scalar_each": round(overhead_in("scalar", 1_000, n, durability="each")[0], 3)}
    if not quick:
        for kind in ("scalar", "lists"):
            results[f"pipeline_overhead_ms_p50_{kind}_1m"] = round(p50[kind + "_1m"], 3)
            results[f"pipeline_overhead_ms_mean_{kind}"] = round(mean[kind], 3)
            results[f"pipeline_overhead_ms_mean_{kind}_1m"] = round(mean[kind + "_1m"], 3)
            results[f"pipeline_cpu_ms_mean_{kind}_1m"] = round(cpu[kind + "_1m"], 3)
        results["history_1m_ratio"] = round(p50["scalar_1m"] / p50["scalar"], 3)
        results["history_1m_ratio_lists"] = round(p50["lists_1m"] / p50["lists"], 3)
        results["history_1m_ratio_mean"] = round(mean["scalar_1m"] / mean["scalar"], 3)
        results["history_1m_ratio_mean_lists"] = round(mean["lists_1m"] / mean["lists"], 3)
        results["history_1m_ratio_cpu"] = round(cpu["scalar_1m"] / cpu["scalar"], 3)
        results["history_1m_ratio_cpu_lists"] = round(cpu["lists_1m"] / cpu["lists"], 3)
        errors, elapsed, calls, exceptions, failed_calls, shed = asyncio.run(concurrent())
        results.update({"concurrent_1000_errors": errors, "concurrent_1000_s": round(elapsed, 2),
                        "concurrent_1000_model_calls": calls, "concurrent_1000_shed": shed})
        print(f"{'  (exceptions, failed model calls)':38s} {exceptions}, {failed_calls}")
    for k, v in results.items(): print(f"{k:38s} {v}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    if "--profile" in sys.argv: profile(sys.argv[sys.argv.index("--profile") + 1])
    else: main(quick="--quick" in sys.argv)
