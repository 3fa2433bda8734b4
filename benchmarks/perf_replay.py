"""Replay speed and off-policy accuracy (issue 14). Last line: one JSON object.

- `replay_requests_per_s`: a full-information (shadow-mode) log of 100,000 requests (100 independent logs × 1,000,
  replayed together as the simulator's runs) replayed under ADAPTIVE through the decision core; one core.
  `replay_single_log_requests_per_s`: one log of 5,000 requests alone (no batching across logs).
- `ope_*`: 50 seeds of a partial log (logged under ADAPTIVE with ε-exploration plus shadow mode on 20 % of requests),
  target policies other than the logging one; truth = the simulator running the target online on the same world.
  `ope_abs_error_accuracy` / `ope_rel_error_cost`: |mean DR estimate − truth| (worst over the targets);
  `ope_interval_coverage`: share of seeds whose 95 % DR interval covers that seed's true accuracy (worst target).
"""
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1"); os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

from computepulse_ai.replay import estimate, log_from_simulation, replay
from computepulse_ai.simulation import SimConfig, simulate

quick = "--quick" in sys.argv
steps, logs = (1000, 100) if not quick else (500, 20)

full, _ = log_from_simulation("computepulse", "always_all", steps, logs, seed=0)
start = time.perf_counter()
rep = replay(full, "ADAPTIVE", seed=0)
elapsed = time.perf_counter() - start
assert rep.exact.all()
online = simulate("computepulse", "ADAPTIVE", steps, logs, 0)
exact_equal = bool(np.array_equal(rep.correct, online.correct) and np.allclose(rep.cost, online.cost))

single, _ = log_from_simulation("computepulse", "always_all", 5000 if not quick else 1000, 1, seed=1)
start = time.perf_counter()
replay(single, "ADAPTIVE", seed=1)
single_elapsed = time.perf_counter() - start

n, runs = (1000, 50) if not quick else (400, 20)
logging = SimConfig(epsilon=0.1, explore_below_samples=float("inf"))
partial, _ = log_from_simulation("computepulse", "ADAPTIVE", n, runs, 0, logging, audit_share=0.2)
none = SimConfig(exploration="none")
targets = {"TRIPLE_CONSENSUS": ("TRIPLE_CONSENSUS", none), "DUAL_VALIDATION": ("DUAL_VALIDATION", none),
           "SINGLE_FAST": ("SINGLE_FAST", none), "ADAPTIVE bar=0.95": ("ADAPTIVE", SimConfig(exploration="none", quality_threshold=0.95)),
           "DUAL_VALIDATION +explore": ("DUAL_VALIDATION", SimConfig())}
table = {}
for name, (policy, cfg) in targets.items():
    truth = simulate("computepulse", policy, n, runs, 0, cfg)
    r = replay(partial, policy, cfg, seed=0)
    row = {"exact_share": round(float(r.exact.mean()), 3), "true_accuracy": round(float(truth.correct.mean()), 4),
           "true_cost": float(truth.cost.mean())}
    for method in ("ips", "snips", "dr"):
        est = estimate(partial, r, method)
        acc = np.array([e.value for e in est["accuracy"]]); cost = np.array([e.value for e in est["cost"]])
        low = np.array([e.low for e in est["accuracy"]]); high = np.array([e.high for e in est["accuracy"]])
        per_run = truth.correct.mean(1)
        row[method] = {"accuracy": round(float(acc.mean()), 4), "abs_error_accuracy": round(float(abs(acc.mean() - truth.correct.mean())), 4),
                       "rel_error_cost": round(float(abs(cost.mean() - truth.cost.mean()) / truth.cost.mean()), 4),
                       "coverage_accuracy": float(((low <= per_run) & (per_run <= high)).mean()),
                       "per_seed_mae_accuracy": round(float(np.abs(acc - per_run).mean()), 4)}
    table[name] = row
    print(name, json.dumps(row))

main = [k for k in targets if not k.endswith("+explore")]
print(json.dumps({"replay_requests_per_s": round(steps * logs / elapsed), "replay_seconds_100k": round(elapsed, 2),
                  "replay_single_log_requests_per_s": round(len(single.task[0]) / single_elapsed),
                  "exact_replay_equals_simulator": exact_equal,
                  "ope_abs_error_accuracy": max(table[k]["dr"]["abs_error_accuracy"] for k in main),
                  "ope_rel_error_cost": max(table[k]["dr"]["rel_error_cost"] for k in main),
                  "ope_interval_coverage": min(table[k]["dr"]["coverage_accuracy"] for k in main),
                  "ope_seeds": runs, "ope_requests_per_seed": n, "audit_share": 0.2, "quick": quick,
                  "note": "machine shared and loaded: timings are noisy"}))
