"""Realism benchmark (issue 12): the extraction → normalise → merge → validate → data-file path on answers from a messy
fake world, scored against that world's truth. Prints one JSON object as its last line.

The world and its defects are generated here (spelling variants, unlabelled CNY, per-instance prices, unit slips,
per-1K token prices, typos, placeholders, in-answer duplicates, citation markers, truncation, bad hours where two of
three models fail). The evaluation maps served names back to the world through this script's own spelling table —
never through `computepulse_ai.canonical` — so the canonicaliser cannot grade itself.

    .venv/bin/python benchmarks/perf_realism.py [--rounds 40] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from computepulse_ai.compat import file_format
from computepulse_ai.extraction import ExtractionError, extract_json
from computepulse_ai.jobs import read_existing, shrink_reason, update_records, write_data_file
from computepulse_ai.merging import merge_records
from computepulse_ai.validation import ValidationRules, merge_spec, normalise_answers, validate

# --- the world: names (canonical first, then the spellings models use) and true prices ---------------------------

PROVIDERS = {
    "AWS": ["AWS", "Amazon Web Services", "AWS EC2", "amazon"], "Azure": ["Azure", "Microsoft Azure", "微软云"],
    "Google Cloud": ["Google Cloud", "GCP", "Google Cloud Platform", "谷歌云"], "Lambda": ["Lambda", "Lambda Labs", "Lambda Cloud"],
    "CoreWeave": ["CoreWeave", "Core Weave"], "RunPod": ["RunPod", "runpod.io", "Run Pod"], "Vast.ai": ["Vast.ai", "Vast AI"],
    "Alibaba Cloud": ["Alibaba Cloud", "阿里云", "Aliyun", "阿里云 (Alibaba Cloud)"],
    "Tencent Cloud": ["Tencent Cloud", "腾讯云", "TencentCloud"], "Volcengine": ["Volcengine", "火山引擎", "Volcano Engine"],
    "Baidu AI Cloud": ["Baidu AI Cloud", "百度智能云", "Baidu Intelligent Cloud", "Baidu Smart Cloud"],
    "Huawei Cloud": ["Huawei Cloud", "华为云"], "SenseTime": ["SenseTime", "商汤", "商汤科技"], "AutoDL": ["AutoDL", "AutoDL算力云"],
}
CHINESE = {"Alibaba Cloud", "Tencent Cloud", "Volcengine", "Baidu AI Cloud", "Huawei Cloud", "SenseTime", "AutoDL"}
GPUS = {   # canonical name: (spellings, typical USD/GPU-h)
    "H100": (["H100", "NVIDIA H100", "H100 80GB", "h100"], 2.6), "H100 SXM": (["H100 SXM", "H100 SXM5", "NVIDIA H100 SXM5 80GB"], 2.9),
    "A100 80GB": (["A100 80GB", "A100 (80GB)", "A100-80GB", "A100 80G"], 1.7), "A100 40GB": (["A100 40GB", "A100-40G", "A100 (40GB)"], 1.25),
    "L40S": (["L40S", "NVIDIA L40S", "l40s"], 1.0), "L4": (["L4", "NVIDIA L4"], 0.62), "T4": (["T4", "Tesla T4"], 0.36),
    "H800": (["H800", "NVIDIA H800"], 2.8), "H20": (["H20", "NVIDIA H20"], 1.4), "Ascend 910B": (["Ascend 910B", "昇腾910B", "华为昇腾 910B"], 1.6),
    "MI300X": (["MI300X", "AMD Instinct MI300X"], 2.6), "RTX 4090": (["RTX 4090", "RTX4090", "GeForce RTX 4090", "4090"], 0.42),
}
CONSUMER = {"RTX 4090"}
NO_CONSUMER = {"AWS", "Azure", "Google Cloud", "Lambda", "CoreWeave"}
CHINA_ONLY = {"H800", "H20", "Ascend 910B"}
REGIONS = {"AWS": ["us-east-1", "us-west-2", "eu-west-1"], "Azure": ["East US", "West Europe"], "Google Cloud": ["us-central1", "europe-west4"],
           "Lambda": ["US-Texas"], "CoreWeave": ["US-East"], "RunPod": ["US", "EU"], "Vast.ai": ["Global"],
           "Alibaba Cloud": ["cn-beijing", "cn-hangzhou"], "Tencent Cloud": ["ap-guangzhou", "ap-shanghai"], "Volcengine": ["cn-beijing"],
           "Baidu AI Cloud": ["bj"], "Huawei Cloud": ["cn-southwest-2"], "SenseTime": ["上海"], "AutoDL": ["内蒙", "西北"]}
MODELS = {   # canonical: (spellings, provider, input, output USD/1M)
    "GPT-4o": (["GPT-4o", "gpt-4o", "gpt-4o-2024-08-06"], "OpenAI", 2.5, 10.0),
    "GPT-4o mini": (["GPT-4o mini", "GPT-4o-mini", "gpt-4o-mini-2024-07-18"], "OpenAI", 0.15, 0.6),
    "Claude 3.5 Sonnet": (["Claude 3.5 Sonnet", "Claude3.5 Sonnet", "claude-3-5-sonnet-20241022"], "Anthropic", 3.0, 15.0),
    "Claude 3.5 Haiku": (["Claude 3.5 Haiku", "claude-3-5-haiku-20241022"], "Anthropic", 0.8, 4.0),
    "DeepSeek-V3": (["DeepSeek-V3", "deepseek-chat", "DeepSeek V3"], "DeepSeek", 0.27, 1.1),
    "DeepSeek-R1": (["DeepSeek-R1", "deepseek-reasoner"], "DeepSeek", 0.55, 2.19),
    "Qwen-Max": (["Qwen-Max", "qwen-max", "通义千问Max"], "Alibaba Cloud", 1.6, 6.4),
    "Qwen-Plus": (["Qwen-Plus", "qwen-plus"], "Alibaba Cloud", 0.4, 1.2),
    "ERNIE-4.0": (["ERNIE-4.0", "Ernie4.0", "文心一言4.0"], "Baidu AI Cloud", 4.2, 12.5),
    "Llama 3 70B": (["Llama 3 70B", "Llama3-70B", "llama-3-70b-instruct"], "Together AI", 0.88, 0.88),
    "Gemini 1.5 Pro": (["Gemini 1.5 Pro", "gemini-1.5-pro"], "Google", 1.25, 5.0),
}
TOKEN_PROVIDERS = {"OpenAI": ["OpenAI", "Open AI"], "Anthropic": ["Anthropic"], "DeepSeek": ["DeepSeek", "深度求索"],
                   "Alibaba Cloud": PROVIDERS["Alibaba Cloud"], "Baidu AI Cloud": PROVIDERS["Baidu AI Cloud"],
                   "Together AI": ["Together AI", "Together"], "Google": ["Google", "Google AI"]}
PLACEHOLDERS = {"provider": ["Unknown", "N/A", "各大云厂商", "Various providers"], "region": ["Various", "cheapest", "Global (Average)"]}


def world(rng: random.Random, size: int | None = None) -> list[dict]:
    "The true GPU offers (canonical names), about 80 by default; `size` repeats regions to reach that many."
    offers = []
    for provider, regions in REGIONS.items():
        for gpu, (_, typical) in GPUS.items():
            if gpu in CONSUMER and provider in NO_CONSUMER: continue
            if gpu in CHINA_ONLY and provider not in CHINESE: continue
            if rng.random() < 0.45: continue
            for region in regions:
                offers.append({"provider": provider, "region": region, "gpu": gpu, "price": round(typical * rng.uniform(0.75, 1.5), 2)})
    while size is not None and len(offers) < size:     # a bigger world for the 3x200 timing: more regions per offer
        base = rng.choice(offers)
        offers.append(dict(base, region=f"{base['region']}-{len(offers)}"))
    return offers[:size] if size else offers


def token_world() -> list[dict]:
    return [{"provider": p, "model": m, "input_price": i, "output_price": o} for m, (_, p, i, o) in MODELS.items()]


# --- one model's messy answer ------------------------------------------------------------------------------------

def messy_gpu_record(truth: dict, rng: random.Random) -> list[dict]:
    "One or two records for a true offer, with the defects real answers carry."
    spell = lambda table, name: rng.choice(table[name]) if rng.random() < 0.6 else name
    record = {"provider": spell(PROVIDERS, truth["provider"]), "region": truth["region"],
              "gpu": rng.choice(GPUS[truth["gpu"]][0]) if rng.random() < 0.6 else truth["gpu"],
              "price": round(truth["price"] * rng.uniform(0.98, 1.02), 3)}
    roll = rng.random()
    if truth["provider"] in CHINESE and roll < 0.30: record["price"] = round(record["price"] * 7.2, 2)               # CNY, unlabelled
    elif truth["provider"] in CHINESE and roll < 0.40: record.update(price=f"¥{record['price'] * 7.2:.1f}/小时")     # CNY, labelled
    elif roll < 0.44: record.update(gpu=f"8x {record['gpu']}", price=round(record["price"] * 8, 2))                  # instance, said so
    elif roll < 0.47: record["price"] = round(record["price"] * 8, 2)                                                # instance, unsaid
    elif roll < 0.49: record["price"] = round(record["price"] * 10, 2)                                               # a typo
    else: record["currency"] = "USD"
    out = [record]
    if rng.random() < 0.05:                                                   # the same offer again, another spelling
        again = dict(record, provider=rng.choice(PROVIDERS[truth["provider"]]))
        if rng.random() < 0.5 and isinstance(again["price"], float): again["price"] = round(again["price"] * 1.9, 2)
        out.append(again)
    return out


def messy_token_record(truth: dict, rng: random.Random) -> list[dict]:
    spellings = MODELS[truth["model"]][0]
    record = {"provider": rng.choice(TOKEN_PROVIDERS[truth["provider"]]), "model": rng.choice(spellings),
              "input_price": truth["input_price"], "output_price": truth["output_price"]}
    roll = rng.random()
    if roll < 0.05: record.update(input_price=truth["input_price"] / 1000, output_price=truth["output_price"] / 1000)  # per 1K
    elif truth["provider"] in CHINESE and roll < 0.35:
        record.update(input_price=round(truth["input_price"] * 7.2, 3), output_price=round(truth["output_price"] * 7.2, 3))
    out = [record]
    if rng.random() < 0.05: out.append(dict(record, model=rng.choice(spellings)))
    return out


def placeholder_record(kind: str, rng: random.Random) -> dict:
    if kind == "token":
        return {"provider": rng.choice(PLACEHOLDERS["provider"]), "model": "GPT-4o", "input_price": 2.5, "output_price": 10.0}
    return {"provider": rng.choice(PLACEHOLDERS["provider"] + ["AWS"]), "region": rng.choice(PLACEHOLDERS["region"]),
            "gpu": "H100", "price": round(rng.uniform(2, 4), 2)}


def render(records: list[dict], rng: random.Random, cut: float | None) -> tuple[str, int]:
    "The answer text (citations, prose, maybe truncated at fraction `cut` of the JSON) and how many records it holds whole."
    parts = [json.dumps(r, ensure_ascii=False) for r in records]
    body = "[" + ", ".join(parts) + "]"
    prose = rng.choice(["", "根据搜索结果 [1][2]，整理如下：\n", "Based on search results [1], [3] (see [2024]):\n"])
    if cut is None: return prose + "```json\n" + body + "\n```", len(records)
    at = int(len(body) * cut)
    ends, offset = [], 1
    for p in parts:
        offset += len(p)
        ends.append(offset)
        offset += 2
    return prose + body[:at], sum(end <= at for end in ends)


def answer(kind: str, truths: list[dict], rng: random.Random, truncate: float = 0.15) -> tuple[str, int]:
    records = []
    for truth in truths:
        if rng.random() < 0.05: continue                                          # not every offer in every answer
        records += messy_gpu_record(truth, rng) if kind == "gpu" else messy_token_record(truth, rng)
    records += [placeholder_record(kind, rng) for _ in range(sum(rng.random() < 0.03 for _ in truths))]
    rng.shuffle(records)
    return render(records, rng, rng.uniform(0.3, 0.98) if rng.random() < truncate else None)


# --- scoring against the world (through this script's own spelling table) -------------------------------------

def _form(text) -> str:
    return re.sub(r"[\s._\-/()（）]+", "", str(text)).casefold()


def _reverse(table: dict) -> dict:
    out = {}
    for name, spellings in table.items():
        for s in [name, *(spellings[0] if isinstance(spellings, tuple) else spellings)]: out[_form(s)] = name
    return out


PROVIDER_OF, GPU_OF = _reverse({**PROVIDERS, **TOKEN_PROVIDERS}), _reverse(GPUS)
MODEL_OF = _reverse({m: (v[0],) for m, v in MODELS.items()})


def score(kind: str, served: list[dict], truths: list[dict]) -> tuple[int, int]:
    "(duplicates, implausible): records beyond one per true entity; records off the truth by >20 % or naming no real one."
    truth_of = {}
    for t in truths:
        key = (t["provider"], t["region"], t["gpu"]) if kind == "gpu" else (t["provider"], t["model"])
        truth_of[key] = t
    seen, duplicates, implausible = {}, 0, 0
    for r in served:
        provider = PROVIDER_OF.get(_form(r.get("provider")))
        key = (provider, r.get("region"), GPU_OF.get(_form(r.get("gpu")))) if kind == "gpu" else (provider, MODEL_OF.get(_form(r.get("model"))))
        true = truth_of.get(key)
        if true is None: implausible += 1; continue
        seen[key] = seen.get(key, 0) + 1
        duplicates += seen[key] > 1
        fields = ("price",) if kind == "gpu" else ("input_price", "output_price")
        if any(abs(r[f] - true[f]) > 0.2 * true[f] for f in fields): implausible += 1
    return duplicates, implausible


# --- the run ---------------------------------------------------------------------------------------------------

def pipeline(kind: str, texts: dict, weights: dict, rules: ValidationRules, previous) -> tuple[list, dict]:
    extracted, lost = {}, {}
    for model, (text, whole) in texts.items():
        if text is None: extracted[model] = None; continue
        try: data = extract_json(text, expected=kind).data    # the data set's fields pick the candidate, as the adapters do
        except ExtractionError: data = None
        got = len(data) if isinstance(data, list) else 0
        lost[model] = max(0, whole - got)
        extracted[model] = data if isinstance(data, list) else None
    normalised, _ = normalise_answers({m: a for m, a in extracted.items() if a is not None}, kind, rules)
    merged = merge_records(normalised, weights, merge_spec(kind, rules))
    checked = validate(merged, kind, rules, previous=previous)
    return checked.accepted, lost


START = datetime(2026, 1, 1, tzinfo=timezone.utc)   # the simulated hours start here (no wall clock)


def run_rounds(rules: ValidationRules, rounds: int, seed: int) -> dict:
    "The hourly path `rounds` times for gpu and token data; the defect counts against the world's truth."
    rng = random.Random(seed)
    weights = {"qwen": 0.8, "deepseek": 0.7, "doubao": 0.6}
    truths = {"gpu": world(rng), "token": token_world()}
    totals = dict(gpu_entities=len(truths["gpu"]), token_entities=len(truths["token"]), duplicates_after_merge=0,
                  implausible_served=0, records_lost_to_truncation=0, shrunk_files_written=0, files_written=0,
                  records_served=0, bad_hours=0, shrinks_refused=0)
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            bad_hour = rng.random() < 0.08                          # two models fail, the third is cut early
            totals["bad_hours"] += bad_hour
            for kind in ("gpu", "token"):
                path = Path(folder) / f"{kind}_prices.json"
                texts = {}
                for i, model in enumerate(weights):
                    if bad_hour and i > 0: texts[model] = (None, 0); continue
                    texts[model] = render_cut_early(kind, truths[kind], rng) if bad_hour else answer(kind, truths[kind], rng)
                previous = read_existing(path)
                served, lost = pipeline(kind, texts, weights, rules, previous)
                totals["records_lost_to_truncation"] += sum(lost.values())
                duplicates, implausible = score(kind, served, truths[kind])
                totals["duplicates_after_merge"] += duplicates
                totals["implausible_served"] += implausible
                totals["records_served"] += len(served)
                if served:                                           # fetch's rule: record-level update, then the shrink guard
                    now = START + timedelta(hours=round_)
                    update = update_records(previous, file_format(kind, served), merge_spec(kind, rules).key, now, 24.0)
                    before = len(previous) if isinstance(previous, list) else 0
                    if shrink_reason(before, len(update.records), 0.5) is not None:
                        totals["shrinks_refused"] += 1
                        continue
                    if len(update.records) < 0.5 * before: totals["shrunk_files_written"] += 1
                    write_data_file(path, update.records)
                    totals["files_written"] += 1
    return totals


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    totals = run_rounds(ValidationRules(), args.rounds, args.seed)
    strict = run_rounds(ValidationRules(max_change_factor=1.3, jump_action="keep_previous"), args.rounds, args.seed)
    merge_ms, pipeline_ms, warm_ms = time_3x200(args.seed)
    return {"benchmark": "perf_realism", "rounds": args.rounds, "seed": args.seed, **totals,
            "merge_ms_3x200": merge_ms, "pipeline_ms_3x200": pipeline_ms, "pipeline_ms_3x200_warm": warm_ms,
            "with_jump_check_1_3x_keep_previous": {k: strict[k] for k in ("duplicates_after_merge", "implausible_served",
                                                                          "records_served", "shrunk_files_written")},
            "shrink_rule": "jobs.update_records + jobs.shrink_reason (min_keep_share 0.5, max age 24 h), as fetch does",
            "machine": "shared, loaded (2 cores for 8 sessions): read the times as rough"}


def render_cut_early(kind: str, truths: list[dict], rng: random.Random) -> tuple[str, int]:
    "A bad hour's one answer: cut at 2-10 % of its JSON (an API limit or a dropped stream)."
    records = []
    for truth in truths: records += messy_gpu_record(truth, rng) if kind == "gpu" else messy_token_record(truth, rng)
    return render(records, rng, rng.uniform(0.02, 0.10))


def time_3x200(seed: int, repeats: int = 5) -> tuple[float, float, float]:
    "Median ms to merge three 200-record answers (normalised); normalise + merge + validate cold; the same again warm."
    rng = random.Random(seed + 1)
    truths = world(rng, size=200)
    raw = {}
    for model in ("qwen", "deepseek", "doubao"):
        records = [r for t in truths for r in messy_gpu_record(t, rng)][:200]
        raw[model] = records
    weights = {"qwen": 0.8, "deepseek": 0.7, "doubao": 0.6}
    merge_times, pipeline_times, warm_times = [], [], []
    for _ in range(repeats):
        rules = ValidationRules()                   # cold: no name or record read before
        started = time.perf_counter()
        normalised, _ = normalise_answers(raw, "gpu", rules)
        merged_at = time.perf_counter()
        merged = merge_records(normalised, weights, merge_spec("gpu", rules))
        merged_end = time.perf_counter()
        validate(merged, "gpu", rules)
        ended = time.perf_counter()
        merge_times.append((merged_end - merged_at) * 1000)
        pipeline_times.append((ended - started) * 1000)
        started = time.perf_counter()               # warm: the next hour brings the same records (unchanged offers)
        validate(merge_records(normalise_answers(raw, "gpu", rules)[0], weights, merge_spec("gpu", rules)), "gpu", rules)
        warm_times.append((time.perf_counter() - started) * 1000)
    return tuple(round(statistics.median(t), 2) for t in (merge_times, pipeline_times, warm_times))


if __name__ == "__main__":
    print(json.dumps(main(), ensure_ascii=False))
