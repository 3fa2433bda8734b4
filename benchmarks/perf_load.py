"""Load: 1,000 and 5,000 concurrent requests through the real orchestrator, against a fake server with 10 % faults.

Run: .venv/bin/python benchmarks/perf_load.py [--sizes 1000,5000] — prints one JSON object as its last line.

Each size runs in a fresh Python process (so the RSS and file-descriptor figures of one run are not the leftovers of
the other). In it, the fake provider server runs in a process of its own (its CPU is not our event loop's), with the
three demo models (answers in ~40-120 ms) and these faults, each on ~1.75 % of requests (10 % in all): HTTP 500,
HTTP 429 with Retry-After 0.2 s, connection reset, garbage body, body cut off / stream closed early, and a delay of
1-3 s. Nothing on the server hangs or waits anywhere near the 30 s call timeout, so a timeout in this run is always
our own doing. `AIOrchestrator.process` is called N times at once (`asyncio.gather`) with the default configuration
— default storage durability ("each"), execution timeout 30 s, deadline 120 s, 3 attempts, 16 calls per provider —
only the model table points at the fake server and the storage folder is a temporary one. Each prompt carries a
token, so every failed call can be matched to what the server received for it.

Figures per size:
  unexpected_errors        process() raised, a stage degraded (merge, validation, classifier, storage), a failed call
                           of an error type the faults cannot produce, or a failed call for which the server saw no
                           fault at all                                                                  (target 0)
  self_timeouts            calls that timed out (any timeout is ours here: the server never waits > 3 s), or whose
                           deadline passed before a request was sent                                     (target 0)
  shed                     calls our own queue refused (OverloadedError)
  shed_requests            requests the orchestrator's admission control refused on arrival (nothing called)
  request_queue_ms_p99     time admitted requests waited for admission (ProcessResult.queue_s)
  loop_lag_p99_ms / _max   how late a 10 ms sleep on the event loop woke up                              (target <= 20)
  call_deadline_overrun_ms_max  the latest model call ended past the request deadline (an upper bound: measured
                           from the request's creation, before classification and routing)               (target <= 100)
  deadline_overrun_ms_max  the longest process() past the 120 s request deadline, counted from arrival (admission
                           queue + calls + merge, validation, storage)                                   (target <= 100)
  queue_ms_p50 / _p99      time calls waited for a provider slot (Response.queue_s), all calls
  rss_growth_mb            RSS after the run, the orchestrator closed and results dropped, minus RSS after start
                           (glibc's malloc_trim first, so freed memory is returned)                     (target < 50)
  result_deep_kb           bytes one held result keeps alive (200 answered results measured together, shared objects
                           counted once), KB
  open_fds_after_close     file descriptors open after aclose() minus before the orchestrator existed    (target 0)
  rss_growth_mb_streamed   the same, for a run (--streamed sizes, default 5000) in which each result is reduced to the few
                           numbers above as it completes instead of being kept until the last request is done, as the
                           hourly job and a server do. The held run keeps all results alive at once (~60 KB each,
                           result_deep_kb, for a 26-record GPU answer: the responses' text and parsed records, the merged records with
                           provenance, the validation outcomes); after they are dropped CPython's small-object allocator
                           cannot hand the arenas back to the system while a few long-lived objects (the `re` and `abc`
                           caches, SDK schema caches) sit in them, so most of that peak stays in RSS. A second burst in
                           the same process reuses it without growing (measured: 310 -> 313 -> 308 MB).
The machine is shared and loaded: read the counts and the ratios, not the times.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
for _name in ("DASHSCOPE_API_KEY", "DEEPSEEK_API_KEY", "ARK_API_KEY"): os.environ.setdefault(_name, "sk-load-bench")

SHARE = 0.0175            # per fault kind: 1 - (1 - 0.0175) ** 6 = 10.0 % of requests hit by one
FAULTS = [("status", {"status": 500}), ("status", {"status": 429, "retry_after": 0.2}), ("reset", {}),
          ("garbage", {}), ("truncate", {}), ("delay", {"delay_range_s": (1.0, 3.0)})]
# what the faults above can make a call fail with, after its retries (anything else is unexpected)
EXPECTED_ERRORS = {"ProviderUnavailableError", "RateLimitedError", "InvalidResponseError", "IncompleteResponseError"}
TIMEOUTS = {"ProviderTimeoutError", "TimeoutError"}
TOKEN = re.compile(r"#load-(\d+)")


def token_of(text: str) -> int | None:
    match = TOKEN.search(text or "")
    return int(match.group(1)) if match else None


# ---- the fake server, in its own process --------------------------------------------------------------------

def serve(conn, seed: int) -> None:
    "Run the fake server with the faults; send its base URLs; on 'log' send what it received, on 'stop' stop."
    from computepulse_ai.fakes import FakeProviderServer, _prompt_of
    from computepulse_ai.jobs import demo_models

    async def main():
        server = FakeProviderServer(seed=seed, models=[m for m, _ in demo_models()])
        await server.astart()
        for kind, options in FAULTS: server.add_fault(kind, probability=SHARE, **options)
        conn.send({"dashscope": server.dashscope_base_url, "deepseek": server.openai_base_url, "ark": server.ark_base_url})
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message == "log":
                conn.send([(e.model, token_of(_prompt_of(e.route, e.body)), e.fault, e.status) for e in server.requests])
            elif message == "stop":
                break
        await server.astop()
    asyncio.run(main())


# ---- measurements -------------------------------------------------------------------------------------------

def rss_mb() -> float:
    "Resident set size of this process, MB (after returning freed heap memory to the system)."
    try: ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError: pass
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return float("nan")


def deep_size(obj) -> int:
    """Bytes reachable from `obj` (each object once; classes, modules and functions not counted): 200 results together
    / 200 is what one more held result costs, strings and records shared between results counted once."""
    import types
    stop = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen, total, stack = set(), 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, stop): continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def percentile(values: list[float], q: float) -> float:
    if not values: return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def watch_loop(stop: asyncio.Event, lags: list[float], every_s: float = 0.01) -> None:
    "How late a sleep of `every_s` wakes up, sampled until `stop`."
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(every_s)
        lags.append(max(0.0, loop.time() - before - every_s))


async def load(n: int, urls: dict[str, str], folder: Path, seed: int, streamed: bool = False):
    from computepulse_ai.config import Config
    from computepulse_ai.core import Request
    from computepulse_ai.jobs import demo_models
    from computepulse_ai.orchestrator import AIOrchestrator

    models = [dict(spec, base_url=urls[spec["provider"]]) for _, spec in demo_models()]
    cfg = Config.from_dict({"storage": {"folder": str(folder)}, "models": models}, "<perf_load>")
    fds_before = open_fds()
    orch = AIOrchestrator(cfg, folder=folder, seed=seed)
    await orch.start()
    rss_started = rss_mb()
    lags: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(stop, lags))
    started = time.perf_counter()
    prompts = [f"请给出最新的 GPU 租赁价格 #load-{i}" for i in range(n)]
    deadline_s = cfg["execution.deadline_s"]
    model_ids = {spec["name"]: spec["model_id"] for spec in _specs()}

    async def one(prompt: str):   # streamed: each result is reduced to its digest as it completes, as a server would
        try: return digest(await orch.process(Request(prompt, data_type="gpu")), deadline_s, model_ids)
        except Exception as e: return digest(e, deadline_s, model_ids)

    result_kb = None
    if streamed: digests = await asyncio.gather(*(one(p) for p in prompts))
    else:        # held: the caller keeps all n results until the last one is done (asyncio.gather of process())
        outcomes = await asyncio.gather(*(orch.process(Request(p, data_type="gpu")) for p in prompts), return_exceptions=True)
        digests = [digest(o, deadline_s, model_ids) for o in outcomes]
        answered = [o for o in outcomes if not isinstance(o, BaseException) and o.responses]
        result_kb = round(deep_size(answered[:200]) / max(1, len(answered[:200])) / 1024, 1)   # what one held result adds
        del outcomes, answered
    wall_s = time.perf_counter() - started
    stop.set()
    await watcher
    summary = summarise(digests, deadline_s)
    closed_ok = await orch.aclose()
    del orch
    gc.collect()
    summary.update(wall_s=round(wall_s, 1), requests_per_s=round(n / wall_s, 1), closed_ok=closed_ok,
                   loop_lag_p50_ms=round(1000 * percentile(lags, 0.5), 1), loop_lag_p99_ms=round(1000 * percentile(lags, 0.99), 1),
                   loop_lag_max_ms=round(1000 * max(lags, default=0.0), 1), loop_lag_samples=len(lags),
                   rss_growth_mb=round(rss_mb() - rss_started, 1), open_fds_after_close=open_fds() - fds_before,
                   result_deep_kb=result_kb)
    return summary


def digest(outcome, deadline_s: float, model_ids: dict[str, str]):
    "What the summary needs of one outcome (a ProcessResult or what process() raised): a few numbers, not the result."
    if isinstance(outcome, BaseException): return f"{type(outcome).__name__}: {outcome}"
    waited = getattr(outcome, "queue_s", 0.0)      # admission wait: total_time_s excludes it
    token = token_of(outcome.request.prompt)
    calls = [((response.timestamp - outcome.request.timestamp).total_seconds() - deadline_s, response.queue_s,
              None if response.success else (model_ids.get(response.model, response.model), token, response.error_type,
                                             response.fault, response.error))
             for response in outcome.responses]
    return ([s for s in outcome.degraded if s != "models"], outcome.error is not None, bool(getattr(outcome, "shed", False)),
            waited, outcome.total_time_s + waited - deadline_s, calls)


def summarise(digests: list, deadline_s: float) -> dict:
    "Counts and timings of one run (failed calls are kept by token for matching with the server's log)."
    raised, degraded, failed_requests, overruns, queue, call_overruns = [], Counter(), 0, [], [], []
    shed_requests, request_queue = 0, []
    calls, failures = 0, []
    for item in digests:
        if isinstance(item, str):
            raised.append(item)
            continue
        stages, failed, shed, waited, overrun, call_rows = item
        for stage in stages: degraded[stage] += 1
        failed_requests += failed
        shed_requests += shed
        if not shed: request_queue.append(waited)
        overruns.append(max(0.0, overrun))
        for call_overrun, queued, failure in call_rows:
            calls += 1
            call_overruns.append(max(0.0, call_overrun))
            queue.append(queued)
            if failure is not None: failures.append(failure)
    return {"requests": len(digests), "calls": calls, "failed_requests": failed_requests, "shed_requests": shed_requests,
            "request_queue_ms_p99": round(1000 * percentile(request_queue, 0.99), 1), "raised": raised[:5],
            "n_raised": len(raised), "degraded": dict(degraded), "_failures": failures,
            "deadline_overrun_ms_max": round(1000 * max(overruns, default=0.0), 1),
            "call_deadline_overrun_ms_max": round(1000 * max(call_overruns, default=0.0), 1),
            "queue_ms_p50": round(1000 * percentile(queue, 0.5), 1), "queue_ms_p99": round(1000 * percentile(queue, 0.99), 1),
            "queued_share": round(sum(q > 0 for q in queue) / max(1, len(queue)), 3)}


def _specs():
    from computepulse_ai.jobs import demo_models
    return [spec for _, spec in demo_models()]


def judge(summary: dict, server_log: list[tuple]) -> dict:
    "Classify the failed calls against what the server did for them."
    faults_for: dict[tuple, list] = defaultdict(list)
    for model, token, fault, status in server_log: faults_for[(model, token)].append(fault)
    unexpected, self_timeouts, shed, kinds, examples = 0, 0, 0, Counter(), []
    for model, token, error_type, fault, error in summary.pop("_failures"):
        kinds[error_type] += 1
        seen = faults_for.get((model, token), [])
        if error_type == "OverloadedError":
            shed += 1
            if "deadline" in (error or ""): self_timeouts += 1
            continue
        if error_type in TIMEOUTS:
            self_timeouts += 1
            continue
        if error_type not in EXPECTED_ERRORS or not any(seen):
            unexpected += 1
            if len(examples) < 5: examples.append({"model": model, "error": error, "server_faults": seen})
    unexpected += summary["n_raised"] + sum(summary["degraded"].values())
    summary.update(unexpected_errors=unexpected, self_timeouts=self_timeouts, shed=shed, failed_calls=dict(kinds),
                   unexpected_examples=examples, server_requests=len(server_log),
                   server_faulted=sum(1 for e in server_log if e[2]))
    return summary


def run_one(n: int, seed: int, streamed: bool = False) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve, args=(child, seed), daemon=True)
    server.start()
    try:
        urls = parent.recv()
        with tempfile.TemporaryDirectory(prefix="perf_load_") as folder:
            summary = asyncio.run(load(n, urls, Path(folder), seed, streamed))
        parent.send("log")
        log = parent.recv()
        parent.send("stop")
    finally:
        server.join(30)
        if server.is_alive(): server.terminate()
    return judge(summary, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated numbers of concurrent requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--streamed", default="5000",
                        help="comma-separated sizes also run with each result dropped as it completes ('' for none)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)    # internal: run one size in this process
    parser.add_argument("--one-streamed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.seed, args.one_streamed), ensure_ascii=False))
        return
    runs = {}
    jobs = [(int(s), False) for s in args.sizes.split(",") if s.strip()] + \
           [(int(s), True) for s in args.streamed.split(",") if s.strip()]
    for n, streamed in jobs:
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed", str(args.seed)] +
                              (["--one-streamed"] if streamed else []), capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        runs[f"{n}_streamed" if streamed else str(n)] = json.loads(lines[-1]) if done.returncode == 0 and lines else \
            {"crashed": done.returncode, "stderr_tail": done.stderr[-2000:]}
    held = {k: r for k, r in runs.items() if not k.endswith("_streamed")}
    good = [r for r in held.values() if "crashed" not in r]
    headline = {key: (sum if key in ("unexpected_errors", "self_timeouts") else max)(r[key] for r in good) if good else None
                for key in ("unexpected_errors", "self_timeouts", "loop_lag_p99_ms", "call_deadline_overrun_ms_max",
                            "deadline_overrun_ms_max", "rss_growth_mb", "open_fds_after_close", "result_deep_kb")}
    streamed_rss = [r["rss_growth_mb"] for k, r in runs.items() if k.endswith("_streamed") and "crashed" not in r]
    headline["rss_growth_mb_streamed"] = max(streamed_rss) if streamed_rss else None
    crashed = sum("crashed" in r for r in runs.values())
    print(json.dumps({"benchmark": "perf_load", **headline, "crashed_runs": crashed, "runs": runs,
                      "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
