"""Issue 15: the request's shared tables (each answer keyed once), the validation memo and the records a held result
shares give exactly the outcomes of the plain path, on the fakes' messy answers (spellings, CNY, per-instance and
per-1K prices, duplicates, placeholders, text numbers) plus values the fast paths must not take (bools, ints beside
floats, nested values)."""
import asyncio
import random
from collections.abc import Mapping

import pytest

from computepulse_ai.adapters import CallResult, ModelAdapter, RetryPolicy
from computepulse_ai.config import Config
from computepulse_ai.core import Request, TaskType
from computepulse_ai.fakes import ground_truth, messy_answer
from computepulse_ai.feedback import answer_accuracy, answer_agreement, record_agrees
from computepulse_ai.merging import KeyedAnswer, merge_answers, same_record, shared_answer_tables
from computepulse_ai.orchestrator import AIOrchestrator, AnswerGroups, agreement_groups
from computepulse_ai.validation import ValidationRules, merge_spec, normalise_answers, validate

WEIGHTS = {"a": 0.8, "b": 0.6, "c": 0.4}


def reference_accuracy(answer, truth, spec):
    "answer_accuracy's list branch as it was before the shared tables (re-keys every record on every call)."
    points = [t for t in truth if isinstance(t, Mapping)]
    if not points: return 0.0, 0
    if not isinstance(answer, (list, tuple)): return 0.0, len(points)
    mine = {}
    for record in answer:
        if isinstance(record, Mapping):
            k = spec.key(record)
            if k is not None: mine.setdefault(k, record)
    right = sum(1 for t in points if (k := spec.key(t)) is not None and k in mine and record_agrees(mine[k], t, spec))
    return right / len(points), len(points)


def messy_world(data_type, seed):
    "Three models' normalised messy answers; some seeds add bools, ints beside floats and nested values."
    rng = random.Random(seed)
    raw = {m: [e.record for e in messy_answer(data_type, rng)[1].emitted] for m in "abc"}
    price = "price" if data_type == "gpu" else "input_price"
    if seed % 3 == 0: raw["c"] = [dict(r, **{price: True}) if i % 3 == 0 else r for i, r in enumerate(raw["c"])]
    if seed % 4 == 0: raw["b"] = [dict(r, note={"tier": i % 2}) for i, r in enumerate(raw["b"])]
    if seed % 5 == 0: raw["a"] = [dict(r, **{price: int(r[price])}) if isinstance(r.get(price), float) else r for r in raw["a"]]
    rules = ValidationRules()
    return normalise_answers(raw, data_type, rules)[0], rules


def outcomes(answers, data_type, rules, spec):
    "Everything the stages decide: groups, merged data and provenance, validation outcomes, accuracies both ways."
    groups = agreement_groups(list(answers.items()), spec, 0.9)
    merged = merge_answers(answers, WEIGHTS, data_type, spec)
    checked = validate(merged, data_type, rules)
    accepted = checked.accepted
    return {"groups": groups, "merged": merged.to_dict(),
            "validation": [(o.record, o.errors, o.warnings, o.notes, o.supporters) for o in checked.outcomes],
            "feedback": {m: answer_accuracy(a, accepted, spec) for m, a in answers.items()},
            "pairs": {(m, n): answer_accuracy(answers[m], answers[n], spec) for m in answers for n in answers},
            "both_ways": {(m, n): answer_agreement(answers[m], answers[n], spec) for m in answers for n in answers}}


@pytest.mark.parametrize("data_type", ["gpu", "token"])
def test_shared_tables_give_the_plain_outcomes_on_messy_answers(data_type):
    duplicates = 0
    for seed in range(30):
        answers, rules = messy_world(data_type, seed)
        spec = merge_spec(data_type, rules)
        plain = outcomes(answers, data_type, rules, spec)
        with shared_answer_tables():
            shared = outcomes(answers, data_type, rules, spec)
            duplicates += sum(not KeyedAnswer(a, spec).unique for a in answers.values())
        assert shared == plain, seed
        for (m, n), accuracy in plain["pairs"].items():       # and as answer_accuracy judged before the tables
            assert accuracy == reference_accuracy(answers[m], answers[n], spec)
            assert plain["both_ways"][(m, n)] == (accuracy[0], plain["pairs"][(n, m)][0])
    assert duplicates > 0                                        # the messy world exercised the two-pass path too


def test_grouping_compares_a_pair_once_for_both_directions_and_counts_as_before():
    spec = merge_spec("gpu")
    a = [{"provider": "AWS", "region": "us", "gpu": "H100", "price": 2.49}]
    far = [{"provider": "AWS", "region": "us", "gpu": "H100", "price": 9.99}]
    with shared_answer_tables():
        groups = AnswerGroups(spec, 0.9)
        groups.add("q", a); groups.add("d", list(a)); groups.add("x", far)
    assert groups.labels() == {"q": 0, "d": 0, "x": 1} and groups.comparisons == 3


def test_the_validation_memo_gives_what_a_fresh_check_gives():
    for data_type in ("gpu", "token", "grid_load"):
        for seed in range(12):
            if data_type == "grid_load":
                rng = random.Random(seed)
                answers = {m: messy_answer("grid_load", rng)[1].emitted[0].record for m in "abc"}
            else: answers, _ = messy_world(data_type, seed)
            warm = ValidationRules()
            merged = merge_answers(normalise_answers(answers, data_type, warm)[0], WEIGHTS, data_type,
                                   merge_spec(data_type, warm))
            first, again = validate(merged, data_type, warm), validate(merged, data_type, warm)   # the second is memo hits
            fresh = validate(merged, data_type, ValidationRules())
            for run in (first, again):
                assert [(o.record, o.errors, o.warnings, o.notes) for o in run.outcomes] == \
                       [(o.record, o.errors, o.warnings, o.notes) for o in fresh.outcomes], (data_type, seed)


def test_same_record_is_strict_about_types_and_order():
    base = {"provider": "AWS", "price": 2.0}
    assert same_record(base, dict(base))
    assert not same_record(base, {"provider": "AWS", "price": 2})          # 2 == 2.0, but they write differently
    assert not same_record({"ok": 1}, {"ok": True})
    assert not same_record(base, {"price": 2.0, "provider": "AWS"})       # field order is part of the JSON
    assert not same_record({"x": float("nan")}, {"x": float("nan")})
    assert not same_record({"x": 0.0}, {"x": -0.0}) and same_record({"x": 0.0, "n": 0}, {"x": 0.0, "n": 0})
    assert not same_record({"tier": {"a": 1}}, {"tier": {"a": 1}})        # nested values: never shared


def test_a_shared_record_is_never_changed_by_validation():
    "Unchanged records are the input's own objects; keep_previous changes a copy, not the merged record."
    record = {"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 9.5, "currency": "USD"}
    data = [record]
    plain = validate(data, "gpu", ValidationRules())
    assert plain.outcomes[0].record is record
    rules = ValidationRules(jump_action="keep_previous", max_change_factor=2.0)
    kept = validate(data, "gpu", rules, previous=[dict(record, price=3.0)])
    assert kept.outcomes[0].record["price"] == 3.0 and record["price"] == 9.5 and kept.outcomes[0].record is not record


class _Fixed(ModelAdapter):
    "Answers at once with a fixed list of records (no HTTP)."
    kind = "test-fixed"

    def __init__(self, spec, records, **kw):
        super().__init__(spec, retry=RetryPolicy(max_attempts=1), **kw)
        self.records = records

    def api_key(self) -> str: return ""

    async def _call_once(self, prompt, *, timeout_s, stream, **kw):
        return CallResult(data=[dict(r) for r in self.records], input_tokens=10, output_tokens=10)


def test_a_held_result_keeps_one_copy_of_each_unchanged_record(tmp_path):
    truth = ground_truth("gpu")
    tasks = [t.value for t in TaskType]
    cfg = Config.from_dict({"quality_threshold": 0.0, "cache": {"enabled": False}, "storage": {"durability": "close"},
                            "routing": {"strategies": {t: "TRIPLE_CONSENSUS" for t in tasks},
                                        "task_thresholds": {t: 0.0 for t in tasks}, "exploration": "none"},
                            "models": [{"name": n, "provider": "simulated", "typical_latency_s": 0} for n in "abc"]})

    async def go():
        adapters = {s.name: _Fixed(s, truth) for s in cfg.models}
        async with AIOrchestrator(cfg, adapters=adapters, folder=tmp_path, seed=0) as orch:
            return await orch.process(Request("GPU 租赁价格", data_type="gpu"))
    result = asyncio.run(go())
    assert result.success and len(result.responses) == 3
    served = {id(r) for r in result.data}
    given = {id(r) for response in result.responses for r in response.data}
    unchanged = [r for r in result.data if any(same_record(r, t) for t in truth)]
    assert unchanged and all(id(r) in given for r in unchanged)      # served records are the models' own objects
    assert all(id(r) in served or id(r) in given for r in result.merged.data)
    assert result.data == validate(result.merged.data, "gpu", ValidationRules()).accepted   # and the same values


@pytest.mark.parametrize("data_type", ["gpu", "token", "grid_load"])
def test_normalised_answer_is_normalise_answers_without_the_copies(data_type):
    import json
    from computepulse_ai.validation import normalised_answer
    rules = ValidationRules()
    for seed in range(25):
        emitted = messy_answer(data_type, random.Random(seed))[1].emitted
        raw = [e.record for e in emitted] if data_type != "grid_load" else emitted[0].record
        if seed % 6 == 0 and data_type != "grid_load": raw = raw + ["not a record", None]
        made = normalised_answer(raw, data_type, rules)
        plain = normalise_answers({"m": raw}, data_type, rules)[0]["m"]
        assert json.dumps(made, ensure_ascii=False) == json.dumps(plain, ensure_ascii=False), seed   # types included
        for given, record in zip(raw if isinstance(raw, list) else [raw], made if isinstance(made, list) else [made]):
            if isinstance(given, dict): assert (record is given) == same_record(record, given)   # own object when unchanged


@pytest.mark.parametrize("data_type", ["gpu", "token"])
@pytest.mark.parametrize("seed", range(12))
def test_record_classes_are_the_same_with_the_shared_tables(data_type, seed):
    "Record-by-record learning judges equal signatures as agreeing without comparing fields: the classes must not move."
    import numpy as np
    from computepulse_ai.feedback import record_classes
    answers, rules = messy_world(data_type, seed)
    answers = dict(answers, d=[dict(r) for r in answers["a"]])   # an exact copy: every signature equal to a's
    spec = merge_spec(data_type, rules)
    plain = record_classes(answers, spec)
    with shared_answer_tables():
        shared = record_classes(answers, spec)
    assert plain[0] == shared[0] and np.array_equal(plain[1], shared[1])
    assert (plain[1][:, 0] == plain[1][:, 3]).all()
