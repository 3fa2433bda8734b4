"""Our `AIOrchestrator.process()` 3-model fan-out against the LiteLLM Router's `asyncio.gather` of three
`acompletion`s, over HTTP, against the same fake OpenAI-compatible server, interleaved in one run.

Install the peer first (a benchmark-only extra, not part of `.[dev]` / `make test`):

    .venv/bin/pip install -e '.[bench]'

Run: .venv/bin/python benchmarks/perf_vs_litellm.py [--rounds 200] [--warmup 20] [--latency-scales 1,0] [--quick]
Prints human-readable lines, then as its LAST line one JSON object: process_p50_ms / _p90_ms, litellm_p50_ms /
_p90_ms, ratio_p50 (process / LiteLLM; target <= 0.6) and ratio_p90, floor_p50_ms / _p90_ms (three bare
`AsyncOpenAI` calls gathered: the HTTP floor both sit on), process_over_floor_p50_ms / litellm_over_floor_p50_ms
(what each framework adds to that floor), the same with the suffix `_no_latency` against a second server whose
models answer at once (the frameworks' overhead alone), litellm_version, and the settings used.

What is measured, and how:
- The fake provider server (`computepulse_ai.fakes.FakeProviderServer`, the demo's three models qwen-max,
  deepseek-chat, doubao-seed-1-6) runs on 127.0.0.1 on a free port in a process of its own, so its CPU is not ours.
  Each model answers after its fixed demo latency (50 / 80 / 40 ms), with no jitter and no faults; a second
  server (own process too) serves the same models with no latency (`--latency-scales` sets the multipliers).
- Ours: `process()` with the shipped default configuration, every setting it depends on written out below
  (`OUR_SETTINGS`) rather than inherited; the script prints any that differ from the shipped defaults (none, unless
  you edit them). The prompt asks to verify GPU prices, which the classifier reads as data_validation, whose default
  strategy is TRIPLE_CONSENSUS: all three models are called and awaited, then the answers are normalised, merged,
  validated, learned from and the request is recorded (default durability "each": the record is fsynced before
  `process()` returns). Every round's prompt carries its own token, so the result cache (enabled by default) never
  serves it. Each request must succeed with three successful calls, or the run stops.
- LiteLLM: `Router(...).acompletion` for the same three models, gathered. Ours speaks each provider's own protocol
  (DashScope's native API to qwen, OpenAI's to deepseek, Ark's Responses API with web search to doubao, as the
  demo config asks); LiteLLM calls all three through the OpenAI-compatible chat routes of the same server (`/v1`
  for qwen and deepseek, Ark's `/api/v3` for doubao) as `openai/<model id>`: the same fake models, the same
  latencies. Its settings are in `LITELLM_SETTINGS`; it only returns the three responses (no merging).
- Every round runs each side of each server once, one request at a time, in an order that rotates from round to
  round (each side takes every position in turn); the first `--warmup` rounds are excluded. Each figure is the
  wall time of one request, p50 and p90 over the rounds. Our orchestrator and LiteLLM share one event loop (and
  their background threads: our storage writer, LiteLLM's logging worker) as an application would.
The machine is shared and loaded: read the ratios, not the times.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")   # LiteLLM: no download of its price table at import
KEY = "sk-bench-placeholder"                                    # the fake server only checks that a key is sent
for _name in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY"): os.environ[_name] = KEY

PROMPT = ("请核实并校验当前主要云厂商的GPU租赁价格（H100/A100/L4等），以JSON数组返回，字段 provider, region, gpu, price, "
          "currency（每GPU每小时，美元） #round-{}")

# Every setting of ours the measured path depends on, written out at its shipped default (see the docstring).
OUR_SETTINGS = {
    "quality_threshold": 0.8, "cost_limit_usd": None, "review_threshold": 0.5,
    "routing": {"strategies": {"simple_query": "SINGLE_FAST", "complex_reasoning": "ADAPTIVE",
                               "data_validation": "TRIPLE_CONSENSUS", "price_extraction": "ADAPTIVE",
                               "historical_analysis": "ADAPTIVE"},
                "task_thresholds": {"price_extraction": 0.95, "data_validation": 0.95},
                "low_confidence": 0.6, "exploration": "epsilon", "epsilon": 0.1, "explore_below_samples": 10,
                "input_tokens": 1500, "output_tokens": 1500, "error_price_usd": 0.15},
    "learning": {"estimator": "agreement", "label_weight": 3.0, "prior": 0.5, "discount": 0.98},
    "classifier": {"low_confidence": 0.6},
    "execution": {"timeout_s": 30.0, "deadline_s": 120.0, "max_attempts": 3, "base_delay_s": 0.5, "max_concurrency": 16,
                  "max_inflight_requests": 16, "max_queued_requests": 10000},
    "merging": {"method": "weighted_vote", "numeric_choice": "mean", "min_supporters": 1, "tolerances": {}},
    "validation": {},
    "feedback": {"correct_share": 0.9, "signal": "binary"},
    "cache": {"enabled": True, "ttl_s": 1800.0, "max_entries": 256},
    "storage": {"durability": "each", "batch_size": 100, "flush_interval_s": 5.0, "save_scores_every": 1,
                "snapshot_interval_s": 30.0, "retention": {"max_age_days": 365, "max_bytes": None, "archive": True}},
    "tracking": {"anomaly_window": 20, "anomaly_threshold": 4.0},
    "logging": {"level": "INFO", "json": False},
}
# The LiteLLM Router's settings that matter here, set explicitly (retries and timeout as ours: 3 attempts, 30 s).
LITELLM_SETTINGS = {"routing_strategy": "simple-shuffle", "num_retries": 2, "timeout": 30.0}


# ---- the fake server, in its own process --------------------------------------------------------------------

def serve(conn, seed: int, latency_scale: float) -> None:
    "Run the fake server (fixed latencies, no faults); send its base URLs and latencies; stop on 'stop'."
    from computepulse_ai.fakes import FakeProviderServer
    from computepulse_ai.jobs import demo_models

    async def main():
        server = FakeProviderServer(seed=seed, models=[m for m, _ in demo_models()])
        latencies = {}
        for fake, _ in demo_models():
            latencies[fake.name] = fake.latency_s * latency_scale
            server.set_model(fake.name, latency_s=latencies[fake.name], latency_jitter_s=0.0)
        await server.astart()
        conn.send({"dashscope": server.dashscope_base_url, "deepseek": server.openai_base_url, "ark": server.ark_base_url,
                   "openai": server.openai_base_url, "latencies": latencies})
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, conn.recv) != "stop": pass
        await server.astop()
    asyncio.run(main())


# ---- the three sides ----------------------------------------------------------------------------------------

def flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in doc.items():
        path = prefix + key
        if isinstance(value, dict) and value and path not in ("routing.strategies", "routing.task_thresholds"):
            out.update(flat(value, path + "."))
        else: out[path] = value
    return out


def our_config(urls: dict, folder: Path, settings: dict):
    from computepulse_ai.config import OPTIONS, Config
    from computepulse_ai.jobs import demo_models
    models = [dict(spec, base_url=urls[spec["provider"]]) for _, spec in demo_models()]
    cfg = Config.from_dict({**settings, "storage": {**settings["storage"], "folder": str(folder)}, "models": models},
                           "<perf_vs_litellm>")
    given = flat(settings)
    defaults = {o.path: o.default for o in OPTIONS}
    differs = {p: v for p, v in given.items() if defaults.get(p) != v}
    unset = sorted(p for p in defaults if p not in given and not p.startswith(("storage.folder", "models")))
    return cfg, differs, unset


def litellm_router(urls: dict):
    import litellm
    from litellm import Router
    litellm.suppress_debug_info = True
    routes = {"qwen-max": urls["openai"], "deepseek-chat": urls["openai"], "doubao-seed-1-6": urls["ark"]}
    model_list = [{"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": base, "api_key": KEY}}
                  for name, base in routes.items()]
    return Router(model_list=model_list, **LITELLM_SETTINGS), list(routes)


def messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def suffix(index: int, scale: float) -> str:
    "Key suffix of a latency world: none for the first (the headline), then by its scale."
    if index == 0: return ""
    return "_no_latency" if scale == 0 else f"_latency_x{scale:g}"


async def run(rounds: int, warmup: int, scales: list[float], seed: int, settings: dict) -> dict:
    "One fake server process per latency world; every side of every world measured in the same rounds."
    ctx = multiprocessing.get_context("spawn")
    servers = []
    try:
        for scale in scales:
            parent, child = ctx.Pipe()
            process = ctx.Process(target=serve, args=(child, seed, scale), daemon=True)
            process.start()
            servers.append((parent, process))
        worlds = [(suffix(i, scale), parent.recv()) for i, (scale, (parent, _)) in enumerate(zip(scales, servers))]
        return await measure(worlds, rounds, warmup, seed, settings)
    finally:
        for parent, process in servers:
            try: parent.send("stop")
            except OSError: pass
            process.join(30)
            if process.is_alive(): process.terminate()


async def sides_of(world: str, urls: dict, folder: Path, seed: int, settings: dict, stack: contextlib.AsyncExitStack,
                   report: dict):
    "The three sides measured against one server: ours, LiteLLM's Router, and bare OpenAI clients (the floor)."
    from openai import AsyncOpenAI
    from computepulse_ai.core import Request, TaskType
    from computepulse_ai.orchestrator import AIOrchestrator

    router, names = litellm_router(urls)
    bare = {"qwen-max": urls["openai"], "deepseek-chat": urls["openai"], "doubao-seed-1-6": urls["ark"]}
    bare = {n: AsyncOpenAI(base_url=base, api_key=KEY, max_retries=2, timeout=30.0) for n, base in bare.items()}
    for client in bare.values(): stack.push_async_callback(client.close)
    cfg, differs, unset = our_config(urls, folder, settings)
    orch = await stack.enter_async_context(AIOrchestrator(cfg, seed=seed))
    report.update(settings_differing_from_defaults=differs, settings_not_set=unset)
    report[f"model_latency_ms{world}"] = {k: round(v * 1000, 1) for k, v in urls["latencies"].items()}

    async def ours(i: int) -> None:
        result = await orch.process(Request(PROMPT.format(i), data_type="gpu"))
        ok = result.request.task_type is TaskType.DATA_VALIDATION and not result.cache_hit and \
            len(result.responses) == 3 and all(r.success for r in result.responses)
        if not ok:
            raise SystemExit(f"round {i}: process() did not make three successful calls: task "
                             f"{result.request.task_type}, cache_hit {result.cache_hit}, "
                             f"{[(r.model, r.success, r.error) for r in result.responses]}, error {result.error}")

    async def theirs(i: int) -> None:
        replies = await asyncio.gather(*(router.acompletion(model=n, messages=messages(PROMPT.format(i))) for n in names))
        if not all(r.choices[0].message.content for r in replies): raise SystemExit(f"round {i}: a LiteLLM reply without content")

    async def floor(i: int) -> None:
        replies = await asyncio.gather(*(bare[n].chat.completions.create(model=n, messages=messages(PROMPT.format(i)))
                                         for n in names))
        if not all(r.choices[0].message.content for r in replies): raise SystemExit(f"round {i}: a bare reply without content")

    return [("process" + world, ours), ("litellm" + world, theirs), ("floor" + world, floor)]


def q(values: list[float], p: int) -> float:
    "The p-th percentile (inclusive method)."
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


async def measure(worlds: list[tuple[str, dict]], rounds: int, warmup: int, seed: int, settings: dict) -> dict:
    report: dict = {}
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:   # on the project's disk, not a tmpfs
        async with contextlib.AsyncExitStack() as stack:
            sides = []
            for k, (world, urls) in enumerate(worlds):
                sides += await sides_of(world, urls, Path(tmp) / f"data{k}", seed, settings, stack, report)
            for name, _ in sides: times[name] = []
            for i in range(warmup + rounds):
                shift = i % len(sides)
                for name, side in sides[shift:] + sides[:shift]:   # each side takes every position in turn
                    t0 = time.perf_counter()
                    await side(i)
                    if i >= warmup: times[name].append((time.perf_counter() - t0) * 1000)
    out: dict = {}
    for world, _ in worlds:
        for side in ("process", "litellm", "floor"):
            for p in (50, 90): out[f"{side}_p{p}_ms{world}"] = round(q(times[side + world], p), 2)
        for p in (50, 90):
            out[f"ratio_p{p}{world}"] = round(out[f"process_p{p}_ms{world}"] / out[f"litellm_p{p}_ms{world}"], 3)
        out[f"process_over_floor_p50_ms{world}"] = round(out[f"process_p50_ms{world}"] - out[f"floor_p50_ms{world}"], 2)
        out[f"litellm_over_floor_p50_ms{world}"] = round(out[f"litellm_p50_ms{world}"] - out[f"floor_p50_ms{world}"], 2)
    out.update(litellm_version=litellm_version(), rounds=rounds, warmup=warmup, **report, litellm_settings=LITELLM_SETTINGS)
    return out


def litellm_version() -> str:
    from importlib.metadata import version
    return version("litellm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="measured rounds (each: one request per side)")
    parser.add_argument("--warmup", type=int, default=20, help="rounds run first and not measured")
    parser.add_argument("--latency-scales", default="1,0",
                        help="comma-separated multipliers of the fake models' latencies, one server each; the first is "
                             "the headline (unsuffixed keys), 0 measures the frameworks' overhead alone (keys _no_latency)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage-durability", choices=["each", "batch", "close"], default="each",
                        help="our storage.durability (shipped default 'each': process() returns once its record is "
                             "fsynced); another value is listed under settings_differing_from_defaults")
    parser.add_argument("--quick", action="store_true", help="30 rounds after 5 of warm-up (a smoke test)")
    args = parser.parse_args()
    if args.quick: args.rounds, args.warmup = 30, 5
    try:
        import litellm  # noqa: F401
    except ImportError:
        sys.exit("perf_vs_litellm needs LiteLLM, a benchmark-only dependency: .venv/bin/pip install -e '.[bench]'")
    scales = [float(x) for x in args.latency_scales.split(",") if x.strip()]
    settings = {**OUR_SETTINGS, "storage": {**OUR_SETTINGS["storage"], "durability": args.storage_durability}}
    results = asyncio.run(run(args.rounds, args.warmup, scales, args.seed, settings))
    results.update(cpu_count=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2))
    for key, value in results.items(): print(f"{key:32s} {value}")
    print(json.dumps({"benchmark": "perf_vs_litellm", **results}, ensure_ascii=False))


if __name__ == "__main__":
    main()
