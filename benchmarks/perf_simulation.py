"""Simulator throughput and the default `simulate` time; last line is one JSON object.

sim_calls_per_s: simulated model calls per second through the real routing (select/explore), merging (weighted_vote)
and learning (update_state) code, ADAPTIVE on the ComputePulse scenario, 10,000 runs × 300 requests at once, one process.
simulate_default_s: wall time of the default `computepulse-ai simulate` (python -m computepulse_ai.simulation --json).
"""
import contextlib
import io
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core

from computepulse_ai.simulation import main, simulate


def calls_per_second(policy: str, n_runs: int = 10_000, n_requests: int = 300) -> float:
    simulate("computepulse", policy, 5, n_runs, seed=1)                       # warm up
    started = time.perf_counter()
    result = simulate("computepulse", policy, n_requests, n_runs, seed=1)
    elapsed = time.perf_counter() - started
    return float(result.n_models.sum()) / elapsed


def default_simulate_seconds() -> tuple[float, dict]:
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out): main(["--json"])
    return time.perf_counter() - started, json.loads(out.getvalue())


if __name__ == "__main__":
    adaptive = calls_per_second("ADAPTIVE")
    always_all = calls_per_second("always_all")
    seconds, payload = default_simulate_seconds()
    s = payload["strategies"]
    print(f"ADAPTIVE {adaptive:,.0f} calls/s; always_all {always_all:,.0f} calls/s; default simulate {seconds:.1f} s")
    print(json.dumps({"sim_calls_per_s": round(adaptive), "sim_calls_per_s_always_all": round(always_all),
                      "simulate_default_s": round(seconds, 2),
                      "adaptive_accuracy_share_of_all": round(s["ADAPTIVE"]["accuracy_share_of_all"], 4),
                      "adaptive_cost_share_of_all": round(s["ADAPTIVE"]["cost_share_of_all"], 4)}))
