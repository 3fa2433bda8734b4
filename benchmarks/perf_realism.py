"""Realism benchmark (issue 12): the extraction → normalise → merge → validate → data-file path on answers from the
package's realistic fake world, scored against that world's truth. Prints one JSON object as its last line.

The answers come from `computepulse_ai.fakes` only — the same world the demo (`demo --messy`) and the tests use:
`fakes.offer_world` draws the true GPU offers, `fakes.ground_truth("token")` is the token world, and each hour each
model answers through `fakes.script_answer(FakeModel(..., defects=DefectRates()), ...)`: right with its accuracy,
otherwise a corruption (`fakes.corrupt`: values scaled ×0.5-×10, strings, CNY, dropped records), and always written
messily at `DefectRates()`' stated rates (spelling variants, CNY and per-instance prices, per-1K token prices, ×10
slips, numbers as strings, upper-cased names, citation markers, cuts anywhere, placeholders, in-answer duplicates,
offers left out). Bad hours (two models fail, the third is cut at 2-10 % of its JSON) are drawn here.

What "implausible" means (a served record counts once, whatever is wrong with it):
  (a) it names no real offer of the world — a placeholder, an invented (provider, region, GPU) or (provider, model); or
  (b) one of its prices is more than 20 % off the true value — which covers every unit, currency and instance slip
      (×7.2, ×8, ×10, ÷1000 are all far beyond 20 %) and every in-band wrong value beyond 20 %.
Served names are mapped back to the world through the fakes' own spelling tables (plus case and separators) —
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
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

from computepulse_ai.compat import file_format
from computepulse_ai.extraction import ExtractionError, extract_json
from computepulse_ai.fakes import (GPU_SPELLINGS, MODEL_SPELLINGS, PROVIDER_SPELLINGS, REGION_SPELLINGS, DefectRates,
                                   FakeModel, ground_truth, messy_answer, offer_world, script_answer)
from computepulse_ai.jobs import read_existing, shrink_reason, update_records, write_data_file
from computepulse_ai.merging import merge_records
from computepulse_ai.validation import ValidationRules, merge_spec, normalise_answers, validate

MODELS = [FakeModel("qwen", {"gpu": 0.9, "token": 0.85}, defects=DefectRates()),        # accuracies as the demo's fakes
          FakeModel("deepseek", {"gpu": 0.85, "token": 0.9}, defects=DefectRates()),
          FakeModel("doubao", {"gpu": 0.8, "token": 0.8}, defects=DefectRates())]
WEIGHTS = {"qwen": 0.8, "deepseek": 0.7, "doubao": 0.6}
PROMPTS = {"gpu": "请给出各云厂商 GPU 租赁价格 (USD/GPU-hour)", "token": "请给出大模型 API token 价格 (USD per 1M tokens)"}
EXAMPLES = 5                                        # implausible records shown in the output
START = datetime(2026, 1, 1, tzinfo=timezone.utc)   # the simulated hours start here (no wall clock)


# --- scoring against the world (through the fakes' spelling tables, never the canonicaliser) ---------------------

def _form(text) -> str:
    return re.sub(r"[\s._\-/()（）]+", "", unicodedata.normalize("NFKC", str(text))).casefold()


def _reverse(table: dict) -> dict:
    return {_form(s): name for name, spellings in table.items() for s in (name, *spellings)}


PROVIDER_OF, GPU_OF, MODEL_OF = _reverse(PROVIDER_SPELLINGS), _reverse(GPU_SPELLINGS), _reverse(MODEL_SPELLINGS)
REGION_OF = _reverse(REGION_SPELLINGS)


def truth_key(kind: str, record: dict) -> tuple:
    "The world's entity a record names (None parts where a name is not in the tables)."
    provider = PROVIDER_OF.get(_form(record.get("provider")))
    if kind == "token": return (provider, MODEL_OF.get(_form(record.get("model"))))
    region = record.get("region")
    return (provider, REGION_OF.get(_form(region), _form(region)), GPU_OF.get(_form(record.get("gpu"))))


def score(kind: str, served: list[dict], truths: list[dict]) -> dict:
    "duplicates (records beyond one per real entity), implausible (see the module doc) and upper-cased names served."
    truth_of = {truth_key(kind, t): t for t in truths}
    seen, out = set(), {"duplicates": 0, "implausible": 0, "upper_cased": 0, "examples": []}
    fields = ("price",) if kind == "gpu" else ("input_price", "output_price")
    for r in served:
        key = truth_key(kind, r)
        true = truth_of.get(key)
        out["upper_cased"] += any(isinstance(r.get(n), str) and r[n] == r[n].upper() != r[n].lower() and
                                  true is not None and true[n] != true[n].upper() for n in ("provider", "gpu", "model"))
        if true is None:
            out["implausible"] += 1
            out["examples"].append({"why": "no such offer", "served": r})
            continue
        out["duplicates"] += key in seen
        seen.add(key)
        off = [f for f in fields if not isinstance(r.get(f), (int, float)) or abs(r[f] - true[f]) > 0.2 * true[f]]
        if off:
            out["implausible"] += 1
            out["examples"].append({"why": f"{off[0]} {r.get(off[0])} vs true {true[off[0]]}", "served": r})
    return out


# --- the run ---------------------------------------------------------------------------------------------------

def pipeline(kind: str, texts: dict, rules: ValidationRules, previous) -> tuple[list, dict, list]:
    "extract → normalise → merge → validate, as the orchestrator does; (accepted, records lost per model, rejections)."
    extracted, lost = {}, {}
    for model, (text, whole) in texts.items():
        if text is None: extracted[model] = None; continue
        try: data = extract_json(text, expected=kind).data    # the data set's fields pick the candidate, as the adapters do
        except ExtractionError: data = None
        got = len(data) if isinstance(data, list) else 0
        lost[model] = max(0, whole - got)
        extracted[model] = data if isinstance(data, list) else None
    normalised, _ = normalise_answers({m: a for m, a in extracted.items() if a is not None}, kind, rules)
    merged = merge_records(normalised, WEIGHTS, merge_spec(kind, rules))
    checked = validate(merged, kind, rules, previous=previous)
    return checked.accepted, lost, checked.rejected


def answer(kind: str, model: FakeModel, truths: list[dict], rng: random.Random) -> tuple[str, int]:
    "One model's answer text from the fake world and how many records it holds whole (before any cut)."
    said = script_answer(model, PROMPTS[kind], rng, truths)
    return said.text, sum(e.complete for e in said.messy.emitted)


def cut_early(kind: str, truths: list[dict], rng: random.Random) -> tuple[str, int]:
    "A bad hour's one answer: cut at 2-10 % of its JSON (an API limit or a dropped stream)."
    text, truth = messy_answer(kind, rng, DefectRates(), truths, cut=rng.uniform(0.02, 0.10))
    return text, sum(e.complete for e in truth.emitted)


def run_rounds(rules: ValidationRules, rounds: int, seed: int) -> dict:
    "The hourly path `rounds` times for gpu and token data; the defect counts against the world's truth."
    rng = random.Random(seed)
    truths = {"gpu": offer_world(rng), "token": ground_truth("token")}
    totals = dict(gpu_entities=len(truths["gpu"]), token_entities=len(truths["token"]), duplicates_after_merge=0,
                  implausible_served=0, records_lost_to_truncation=0, shrunk_files_written=0, files_written=0,
                  records_served=0, records_withheld=0, upper_cased_names_served=0, bad_hours=0, shrinks_refused=0)
    examples, withheld_why = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            bad_hour = rng.random() < 0.08                          # two models fail, the third is cut early
            totals["bad_hours"] += bad_hour
            for kind in ("gpu", "token"):
                path = Path(folder) / f"{kind}_prices.json"
                texts = {}
                for i, model in enumerate(MODELS):
                    if bad_hour and i > 0: texts[model.name] = (None, 0); continue
                    texts[model.name] = cut_early(kind, truths[kind], rng) if bad_hour else answer(kind, model, truths[kind], rng)
                previous = read_existing(path)
                served, lost, rejected = pipeline(kind, texts, rules, previous)
                totals["records_lost_to_truncation"] += sum(lost.values())
                scored = score(kind, served, truths[kind])
                totals["duplicates_after_merge"] += scored["duplicates"]
                totals["implausible_served"] += scored["implausible"]
                totals["upper_cased_names_served"] += scored["upper_cased"]
                examples += [dict(e, round=round_, kind=kind) for e in scored["examples"]]
                totals["records_served"] += len(served)
                for outcome in rejected:                 # only real offers withheld count (placeholders are meant to go)
                    if outcome.record is None or truth_key(kind, outcome.record) not in {truth_key(kind, t) for t in truths[kind]}: continue
                    totals["records_withheld"] += 1
                    reason = next((e for e in outcome.errors if "unconfirmed" in e), outcome.errors[0])
                    label = re.sub(r"[\d.]+", "N", reason.split(";")[0])[:70]
                    withheld_why[label] = withheld_why.get(label, 0) + 1
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
    possible = rounds * (totals["gpu_entities"] + totals["token_entities"])
    totals["served_share_of_true_offers"] = round(totals["records_served"] / possible, 4)
    totals["withheld_reasons"] = dict(sorted(withheld_why.items(), key=lambda kv: -kv[1])[:6])
    totals["implausible_examples"] = examples[:EXAMPLES]
    return totals


def time_3x200(seed: int, repeats: int = 5) -> tuple[float, float, float]:
    "Median ms to merge three 200-record answers (normalised); normalise + merge + validate cold; the same again warm."
    rng = random.Random(seed + 1)
    world = offer_world(rng, size=200)
    raw = {}
    for model in WEIGHTS:
        _, truth = messy_answer("gpu", rng, DefectRates(truncation=0.0), world)
        raw[model] = [e.record for e in truth.emitted][:200]
    merge_times, pipeline_times, warm_times = [], [], []
    for _ in range(repeats):
        rules = ValidationRules()                   # cold: no name or record read before
        started = time.perf_counter()
        normalised, _ = normalise_answers(raw, "gpu", rules)
        merged_at = time.perf_counter()
        merged = merge_records(normalised, WEIGHTS, merge_spec("gpu", rules))
        merged_end = time.perf_counter()
        validate(merged, "gpu", rules)
        ended = time.perf_counter()
        merge_times.append((merged_end - merged_at) * 1000)
        pipeline_times.append((ended - started) * 1000)
        started = time.perf_counter()               # warm: the next hour brings the same records (unchanged offers)
        validate(merge_records(normalise_answers(raw, "gpu", rules)[0], WEIGHTS, merge_spec("gpu", rules)), "gpu", rules)
        warm_times.append((time.perf_counter() - started) * 1000)
    return tuple(round(statistics.median(t), 2) for t in (merge_times, pipeline_times, warm_times))


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    totals = run_rounds(ValidationRules(), args.rounds, args.seed)
    merge_ms, pipeline_ms, warm_ms = time_3x200(args.seed)
    return {"benchmark": "perf_realism", "rounds": args.rounds, "seed": args.seed, **totals,
            "merge_ms_3x200": merge_ms, "pipeline_ms_3x200": pipeline_ms, "pipeline_ms_3x200_warm": warm_ms,
            "world": "fakes.offer_world + fakes.ground_truth('token'), answers by fakes.script_answer at DefectRates()",
            "implausible_means": "names no real offer, or a price > 20 % off the true value",
            "shrink_rule": "jobs.update_records + jobs.shrink_reason (min_keep_share 0.5, max age 24 h), as fetch does",
            "machine": "shared, loaded (2 cores for 5 sessions): read the times as rough"}


if __name__ == "__main__":
    print(json.dumps(main(), ensure_ascii=False))
