"""Simulator throughput on the real `simulate` path; the last line printed is one JSON object.

sim_calls_per_s: simulated model calls per second of `simulation.simulate` — the code every benchmark and the
    `simulate` command run (routing, stop rule, merging and learning of the decision loop, the world's draws) —
    ADAPTIVE on the ComputePulse scenario, 10,000 runs × 300 requests at once, one process, one core.
sim_calls_per_s_shipped: the same with the shipped configuration (per-task strategies and per-task bars).
ns_per_call_by_requests: CPU cost of one simulated call (process CPU time: a minutes-long run on a shared machine
    is not slowed by the other processes' share of the cores) for 100 runs × 1,000 / 10,000 requests (and 100,000
    and 1,000,000 with --full): a long run must cost the same per call as a short one (flat), not more. These runs keep
    only the per-step result they report (`simulate(..., keep=("n_models",))`: with the task draw 1.6 GB at
    1,000,000 × 100, where all eight per-step results add ~4.2 GB more), at every length alike. The 1,000,000 point runs once (it takes tens of minutes
    on one core); the shorter ones twice, interleaved, and the least disturbed run counts.
peak_rss_mb: the process's peak resident memory after the length sweep (the longest run dominates it).
flatness: ns per call of the longest run / of the shortest (1.0 = flat).
simulate_default_s: wall time of the default `computepulse-ai simulate --json` (exact frontier and bar sweeps
    included); skipped with --quick.

Figures on a shared, loaded machine are noisy: compare ratios, and say how loaded the machine was (load average
is printed).
"""
import argparse
import contextlib
import io
import json
import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from computepulse_ai.frontier import main
from computepulse_ai.simulation import SimConfig, simulate


def calls_per_second(policy: str, n_runs: int, n_requests: int, config: SimConfig | None = None,
                     keep: tuple[str, ...] | None = None, cpu: bool = False) -> tuple[float, float]:
    "(calls per second, seconds) of one `simulate` call, after a short warm-up; `cpu`: of this process's CPU time, not wall."
    simulate("computepulse", policy, 5, n_runs, seed=1, config=config)
    clock = time.process_time if cpu else time.perf_counter
    started = clock()
    result = simulate("computepulse", policy, n_requests, n_runs, seed=1, config=config, keep=keep)
    elapsed = clock() - started
    return float(result.n_models.sum()) / elapsed, elapsed


def default_simulate_seconds() -> float:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()): main(["--json"])
    elapsed = time.perf_counter() - started
    json.loads(out.getvalue())   # it really produced its payload
    return elapsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="add the 1,000,000-request × 100-run point (minutes, GBs)")
    parser.add_argument("--quick", action="store_true", help="skip the default `simulate` timing")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    adaptive, _ = calls_per_second("ADAPTIVE", 10_000, 300)
    shipped, _ = calls_per_second("per_task", 10_000, 300, SimConfig.from_config())
    print(f"ADAPTIVE {adaptive:,.0f} calls/s; shipped per_task {shipped:,.0f} calls/s (10,000 runs × 300 requests)", flush=True)
    lengths = [1_000, 10_000] + ([100_000, 1_000_000] if args.full else [])
    per_call = {n: float("inf") for n in lengths}
    for repeat in range(2):   # interleaved and repeated: the least disturbed run of each length counts
        for n in lengths:
            if repeat and n >= 1_000_000: continue   # once: ~half an hour on one core
            rate, seconds = calls_per_second("ADAPTIVE", 100, n, keep=("n_models",), cpu=True)
            per_call[n] = min(per_call[n], 1e9 / rate)
            print(f"100 runs × {n:,} requests: {seconds:.1f} s CPU, {1e9 / rate:,.0f} ns per call", flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = None if args.quick else default_simulate_seconds()
    if seconds is not None: print(f"default simulate --json: {seconds:.1f} s")
    print(f"load average at start: {load:.2f} on {os.cpu_count()} cores")
    print(json.dumps({"sim_calls_per_s": round(adaptive), "sim_calls_per_s_shipped": round(shipped),
                      "ns_per_call_by_requests": {str(n): round(v) for n, v in per_call.items()},
                      "flatness": round(per_call[lengths[-1]] / per_call[lengths[0]], 3), "peak_rss_mb": round(peak_rss_mb),
                      "simulate_default_s": None if seconds is None else round(seconds, 1),
                      "load_average": round(load, 2)}))
