"""False alarms and detection of the anomaly detector, on simulated call streams. Last line: one JSON object.

The tracker keeps each model's last `window` calls and up to `baseline` calls before them (`RunningStats`) and
compares the two every `every` records (`compare_windows`). Here each model is a stream of calls whose latency is
lognormal around its own median, whose errors and judged correctness are Bernoulli:

false_alarms_per_1000_checks   noise only (no change anywhere), per metric and in total, for several noise levels
                               (lognormal sigma 0.1 / 0.3 / 0.6, error rate 0.02 / 0.1 / 0.3, accuracy 0.95 / 0.7).
                               One check of one model is one comparison of its windows.
detected_within_window         after a real change (latency x1.5 / x2 / x3, error rate +0.3, accuracy -0.3), the share
                               of streams in which an alarm on that metric is raised within `window` calls of it.

Deterministic for --seed. No timing here: this measures the statistics, not the speed.
"""
import argparse
import json
import logging

import numpy as np

from computepulse_ai.tracking import RunningStats

NOISE = [dict(sigma=s, error=e, accuracy=a) for s, e, a in [(0.1, 0.02, 0.95), (0.3, 0.1, 0.7), (0.6, 0.3, 0.95)]]


def stream(rng, n, sigma, error, accuracy, change_at=None, latency_factor=1.0, error_step=0.0, accuracy_step=0.0):
    "n calls of one model: (success, latency, correct); after `change_at` the change applies."
    after = np.arange(n) >= (n if change_at is None else change_at)
    latency = rng.lognormal(0.0, sigma, n) * np.where(after, latency_factor, 1.0)
    success = rng.random(n) >= np.clip(error + np.where(after, error_step, 0.0), 0, 1)
    correct = (rng.random(n) < np.clip(accuracy + np.where(after, accuracy_step, 0.0), 0, 1)).astype(float)
    return success, latency, correct


def alarms(success, latency, correct, window, every, threshold, first_check=0):
    "Run one model's stream through RunningStats, checking every `every` calls from `first_check`; metrics alarmed per check."
    stats = RunningStats(window)
    found = []
    for i in range(len(latency)):
        stats.add("m", bool(success[i]), float(latency[i]), float(correct[i]))
        if (i + 1) % every == 0 and i >= first_check:
            found.append({a.metric for a in stats.anomalies(threshold=threshold)})
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400, help="streams per noise level")
    parser.add_argument("--calls", type=int, default=1000, help="calls per stream")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--every", type=int, default=10, help="check every this many calls (the tracker: 50 records over all models)")
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("computepulse_ai").setLevel(logging.ERROR)
    rng = np.random.default_rng(args.seed)
    metrics = ("latency_p50", "error_rate", "accuracy")
    false = {}
    for noise in NOISE:
        counts, checks = dict.fromkeys(metrics, 0), 0
        for _ in range(args.streams):
            for found in alarms(*stream(rng, args.calls, **noise), args.window, args.every, args.threshold):
                checks += 1
                for m in found: counts[m] += 1
        key = f"sigma{noise['sigma']}_error{noise['error']}_accuracy{noise['accuracy']}"
        false[key] = {m: round(1000 * c / checks, 3) for m, c in counts.items()} | {"total": round(1000 * sum(counts.values()) / checks, 3)}
        print(key, false[key], f"({checks} checks)", flush=True)
    changes = {"latency_x1.5": dict(latency_factor=1.5), "latency_x2": dict(latency_factor=2.0),
               "latency_x3": dict(latency_factor=3.0), "error_rate_+0.3": dict(error_step=0.3),
               "accuracy_-0.3": dict(accuracy_step=-0.3)}
    metric_of = {"latency": "latency_p50", "error": "error_rate", "accuracy": "accuracy"}
    detected = {}
    change_at = 500
    for name, change in changes.items():
        metric = metric_of[name.split("_")[0]]
        for noise in NOISE[:2]:
            hits = 0
            for _ in range(args.streams // 4):
                found = alarms(*stream(rng, change_at + args.window, **noise, change_at=change_at, **change),
                               args.window, 1, args.threshold, first_check=change_at + args.window - 1)
                hits += any(metric in f for f in found)
            detected[f"{name}@sigma{noise['sigma']}_error{noise['error']}_accuracy{noise['accuracy']}"] = round(hits / (args.streams // 4), 3)
    print("detected within one window:", detected, flush=True)
    print(json.dumps({"false_alarms_per_1000_checks": false, "detected_within_window": detected,
                      "streams": args.streams, "calls": args.calls, "window": args.window, "threshold": args.threshold,
                      "seed": args.seed}))


if __name__ == "__main__":
    main()
