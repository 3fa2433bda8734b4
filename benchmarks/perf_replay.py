"""Replay speed and off-policy accuracy (issue 14). Last line: one JSON object.

- `replay_requests_per_s`: ONE full-information (shadow-mode) log of 100,000 requests replayed under ADAPTIVE
  through the decision core, one core, with `block=64` (up to 64 consecutive requests decided on one learned state,
  as concurrent requests are; `replay_block`). Beside it, on the same log: `replay_sequential_requests_per_s`
  (`block=1`, each request on the state the previous one left) and how far the blocked figures are from the
  sequential ones (`block_vs_sequential_*`, with the sampling standard error of the sequential figure as the yardstick).
  `replay_many_logs_requests_per_s`: 100 independent logs × 1,000 requests replayed together (the runs axis).
- `ope_*`: 50 seeds of a partial log (logged under ADAPTIVE with ε-exploration plus shadow mode on 20 % of requests),
  target policies other than the logging one; truth = the simulator running the target online on the same world.
  `ope_abs_error_accuracy` / `ope_rel_error_cost`: |mean estimate − truth| (worst over the targets);
  `ope_interval_coverage`: share of seeds whose 95 % interval covers that seed's true accuracy (worst target;
  `_cost`: true cost). Headline method `mi` (multiple imputation from the shadow rows, `replay.multiple_imputation`),
  which replays the target's learning too; the doubly robust figures beside as `ope_dr_*`.
"""
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1"); os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

from computepulse_ai.replay import estimate, log_from_simulation, multiple_imputation, replay
from computepulse_ai.simulation import SimConfig, simulate

quick = "--quick" in sys.argv
steps, logs = (1000, 100) if not quick else (500, 20)

BLOCK = 64
full, _ = log_from_simulation("computepulse", "always_all", steps, logs, seed=0)
start = time.perf_counter()
rep = replay(full, "ADAPTIVE", seed=0)
many_elapsed = time.perf_counter() - start
assert rep.exact.all()
online = simulate("computepulse", "ADAPTIVE", steps, logs, 0)
exact_equal = bool(np.array_equal(rep.correct, online.correct) and np.allclose(rep.cost, online.cost))

one = 100_000 if not quick else 10_000
single, _ = log_from_simulation("computepulse", "always_all", one, 1, seed=1, block=BLOCK)   # always_all: the same log for any block
start = time.perf_counter()
blocked = replay(single, "ADAPTIVE", seed=1, block=BLOCK)
single_elapsed = time.perf_counter() - start
twin = simulate("computepulse", "ADAPTIVE", one, 1, 1, block=BLOCK)
exact_block_equal = bool(np.array_equal(blocked.correct, twin.correct) and np.array_equal(blocked.cost, twin.cost))
start = time.perf_counter()
sequential = replay(single, "ADAPTIVE", seed=1)
sequential_elapsed = time.perf_counter() - start
seq_acc, blk_acc = float(sequential.correct.mean()), float(blocked.correct.mean())
seq_cost, blk_cost = float(sequential.cost.mean()), float(blocked.cost.mean())
agreement = {"block_vs_sequential_accuracy": [round(blk_acc, 4), round(seq_acc, 4)],
             "block_vs_sequential_accuracy_se": round(float(sequential.correct.std() / np.sqrt(one)), 4),
             "block_vs_sequential_cost_rel": round((blk_cost - seq_cost) / seq_cost, 4),
             "block_vs_sequential_cost_rel_se": round(float(sequential.cost.std() / np.sqrt(one)) / seq_cost, 4),
             "block_vs_sequential_models_per_request": [round(float(blocked.n_models.mean()), 4), round(float(sequential.n_models.mean()), 4)]}
# the same comparison over many runs (short runs: the learning transient, where a block's staleness matters most)
paired_runs, paired_n = (16, 10_000) if not quick else (8, 2000)
seq_runs = simulate("computepulse", "ADAPTIVE", paired_n, paired_runs, 2)
blk_runs = simulate("computepulse", "ADAPTIVE", paired_n, paired_runs, 2, block=BLOCK)
d_acc = blk_runs.correct.mean(1) - seq_runs.correct.mean(1)
d_cost = (blk_runs.cost.mean(1) - seq_runs.cost.mean(1)) / seq_runs.cost.mean()
agreement.update({f"block_vs_sequential_{paired_runs}x{paired_n}_accuracy_diff": round(float(d_acc.mean()), 4),
                  f"block_vs_sequential_{paired_runs}x{paired_n}_accuracy_diff_se": round(float(d_acc.std(ddof=1) / np.sqrt(paired_runs)), 4),
                  f"block_vs_sequential_{paired_runs}x{paired_n}_cost_rel_diff": round(float(d_cost.mean()), 4),
                  f"block_vs_sequential_{paired_runs}x{paired_n}_cost_rel_diff_se": round(float(d_cost.std(ddof=1) / np.sqrt(paired_runs)), 4)})
print("one log", json.dumps(agreement))

n, runs = (1000, 50) if not quick else (400, 20)
IMPUTATIONS = 5
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
    per_run = {"accuracy": truth.correct.mean(1), "cost": truth.cost.mean(1)}
    for method in ("ips", "snips", "dr", "mi"):
        est = multiple_imputation(partial, policy, cfg, seed=0, imputations=IMPUTATIONS) if method == "mi" else estimate(partial, r, method)
        figures = {}
        for metric in ("accuracy", "cost"):
            value = np.array([e.value for e in est[metric]])
            low = np.array([e.low for e in est[metric]]); high = np.array([e.high for e in est[metric]])
            figures[metric] = (value, ((low <= per_run[metric]) & (per_run[metric] <= high)).mean())
        acc, cost = figures["accuracy"][0], figures["cost"][0]
        row[method] = {"accuracy": round(float(acc.mean()), 4), "abs_error_accuracy": round(float(abs(acc.mean() - truth.correct.mean())), 4),
                       "rel_error_cost": round(float(abs(cost.mean() - truth.cost.mean()) / truth.cost.mean()), 4),
                       "coverage_accuracy": float(figures["accuracy"][1]), "coverage_cost": float(figures["cost"][1]),
                       "per_seed_mae_accuracy": round(float(np.abs(acc - per_run["accuracy"]).mean()), 4)}
    table[name] = row
    print(name, json.dumps(row))

main = [k for k in targets if not k.endswith("+explore")]
print(json.dumps({"replay_requests_per_s": round(one / single_elapsed), "replay_seconds_one_log": round(single_elapsed, 2),
                  "replay_one_log_requests": one, "replay_block": BLOCK,
                  "replay_sequential_requests_per_s": round(one / sequential_elapsed),
                  "replay_many_logs_requests_per_s": round(steps * logs / many_elapsed),
                  "exact_replay_equals_simulator": exact_equal, "exact_block_replay_equals_simulator": exact_block_equal,
                  **agreement,
                  "ope_method": "mi",   # multiple imputation: the estimator for policies that learn (the DR figures beside)
                  "ope_abs_error_accuracy": max(table[k]["mi"]["abs_error_accuracy"] for k in main),
                  "ope_rel_error_cost": max(table[k]["mi"]["rel_error_cost"] for k in main),
                  "ope_interval_coverage": min(table[k]["mi"]["coverage_accuracy"] for k in main),
                  "ope_interval_coverage_cost": min(table[k]["mi"]["coverage_cost"] for k in main),
                  "ope_dr_abs_error_accuracy": max(table[k]["dr"]["abs_error_accuracy"] for k in main),
                  "ope_dr_rel_error_cost": max(table[k]["dr"]["rel_error_cost"] for k in main),
                  "ope_dr_interval_coverage": min(table[k]["dr"]["coverage_accuracy"] for k in main),
                  "ope_imputations": IMPUTATIONS,
                  "ope_seeds": runs, "ope_requests_per_seed": n, "audit_share": 0.2, "quick": quick,
                  "note": "machine shared and loaded: timings are noisy"}))
