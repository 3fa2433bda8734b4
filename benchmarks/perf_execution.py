"""Speed figures of the execution stage: parallel calls, early stop and merging.

Run: .venv/bin/python benchmarks/perf_execution.py — prints one JSON object as its last line.
Each figure has its own `measure_*` function returning a dict; `main` collects them. The executor figures
(`parallel_latency_ratio`, `early_stop_latency_ratio`) are to be added as further `measure_*` functions.
"""
from __future__ import annotations

import json
import random
import statistics
import time

from computepulse_ai.merging import default_merge_spec, merge_records

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


def main() -> None:
    figures: dict[str, float] = {}
    for measure in (measure_merge,):
        figures.update(measure())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
