"Properties of the confidence-weighted merger (SPEC §8: P13, P30–P34) and its helpers."
import math

import numpy as np
from hypothesis import given, settings, strategies as st

from computepulse_ai.merging import (cluster_numbers, default_merge_spec, majority_vote, merge_answers, merge_records,
                                     merge_scalars, truth_discovery, truth_discovery_labels, weighted_vote)

MODELS = ["qwen", "deepseek", "doubao"]
confidence = st.floats(0.0, 1.0, allow_nan=False)
price = st.floats(0.5, 40.0, allow_nan=False).map(lambda x: round(x, 2))


def gpu(provider, price_value, region="US", gpu_name="H100"):
    return {"provider": provider, "region": region, "gpu": gpu_name, "price": price_value, "currency": "USD"}


@settings(max_examples=200)
@given(a=price, b=price, wa=confidence, wb=confidence)
def test_p13_merged_scalar_leans_toward_higher_confidence(a, b, wa, wb):
    merged = merge_scalars({"a": a, "b": b}, {"a": wa, "b": wb}).data
    if wa > wb and a != b:
        assert abs(merged - a) <= abs(merged - b) + 1e-9
    assert min(a, b) - 1e-9 <= merged <= max(a, b) + 1e-9


@settings(max_examples=200)
@given(a=price, b=price, w=confidence, low=confidence, high=confidence)
def test_p30_higher_confidence_more_influence(a, b, w, low, high):
    "Raising model a's confidence moves the merged value towards a's value (never away)."
    low, high = min(low, high), max(low, high)
    before = merge_scalars({"a": a, "b": b}, {"a": low, "b": w}).data
    after = merge_scalars({"a": a, "b": b}, {"a": high, "b": w}).data
    assert abs(after - a) <= abs(before - a) + 1e-9


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_p31_top_model_wins_more_often_with_very_different_confidences(seed):
    "Three models answer independently; the one with confidence 0.95 is followed more often than one with 0.1."
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=(400, 3))
    winners, _ = weighted_vote(labels, np.array([0.95, 0.4, 0.1]))
    top_wins = (winners == labels[:, 0]).mean()
    bottom_wins = (winners == labels[:, 2]).mean()
    assert top_wins > bottom_wins


@settings(max_examples=150)
@given(weights=st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3), values=st.lists(price, min_size=3, max_size=3))
def test_p32_disagreements_settled_by_weighted_vote(weights, values):
    "The merged price is the value (cluster) with the most confidence behind it; provenance names the rest."
    answers = {m: [gpu("AWS", v)] for m, v in zip(MODELS, values)}
    spec = default_merge_spec("gpu", tolerances={"price": 0.0})
    result = merge_records(answers, dict(zip(MODELS, weights)), spec)
    support = {}
    for v, w in zip(values, weights): support[v] = support.get(v, 0.0) + w
    best = max(support.values())
    assert any(math.isclose(result.data[0]["price"], v) and math.isclose(s, best) for v, s in support.items())
    if len(support) > 1:
        field = {p.key: p for p in result.provenance}["aws|us|h100.price"]
        assert math.isclose(sum(field.supporters.values()), best)
        assert len(field.alternatives) == len(support) - 1


@settings(max_examples=100)
@given(weights=st.lists(confidence, min_size=1, max_size=4), threshold=st.floats(0.05, 0.95))
def test_p33_all_low_confidence_flagged_for_review(weights, threshold):
    models = [f"m{i}" for i in range(len(weights))]
    answers = {m: [gpu("AWS", 2.0 + i)] for i, m in enumerate(models)}
    result = merge_records(answers, dict(zip(models, weights)), default_merge_spec("gpu", review_threshold=threshold))
    all_low = all(w < threshold for w in weights)
    assert result.needs_review == all_low
    assert any("needs review" in n for n in result.notes) == all_low
    scalars = merge_scalars({m: 1.0 for m in models}, dict(zip(models, weights)), review_threshold=threshold)
    assert scalars.needs_review == all_low


record_lists = st.lists(st.tuples(st.sampled_from(["AWS", "aws", "Azure", "GCP"]), st.sampled_from(["H100", "A100"]),
                                  st.one_of(price, st.none(), st.just(float("nan")), st.just("n/a"))), max_size=6)


@settings(max_examples=150)
@given(lists=st.lists(record_lists, min_size=1, max_size=3), weights=st.lists(confidence, min_size=3, max_size=3))
def test_p34_every_data_point_names_its_contributing_models(lists, weights):
    answers = {m: [gpu(p, v, gpu_name=g) for p, g, v in records] for m, records in zip(MODELS, lists)}
    result = merge_records(answers, dict(zip(MODELS, weights)), default_merge_spec("gpu"))
    spec = default_merge_spec("gpu")
    by_key = {p.key: p for p in result.provenance}
    for record in result.data:
        prov = by_key[spec.key(record)]
        reporters = {m for m, records in answers.items() if any(spec.key(r) == prov.key for r in records)}
        assert set(prov.supporters) == reporters and prov.supporters
        assert all(prov.supporters[m] == result.model_confidence[m] for m in prov.supporters)
    for prov in result.provenance:
        named = set(prov.supporters) | {m for alt in prov.alternatives for m in alt["supporters"]}
        assert named <= set(answers) and 0 <= prov.agreement <= 1
    assert len(result.data) == len({spec.key(r) for records in answers.values() for r in records})


def test_tolerance_clusters_near_equal_prices():
    answers = {"qwen": [gpu("AWS", 2.49)], "deepseek": [gpu("AWS", 2.55)], "doubao": [gpu("AWS", 4.10)]}
    weights = {"qwen": 0.5, "deepseek": 0.5, "doubao": 0.9}
    loose = merge_records(answers, weights, default_merge_spec("gpu", tolerances={"price": 0.05}))
    assert math.isclose(loose.data[0]["price"], 2.52)                   # 2.49 and 2.55 pool their weight, 1.0 > 0.9
    exact = merge_records(answers, weights, default_merge_spec("gpu", tolerances={"price": 0.0}))
    assert exact.data[0]["price"] == 4.10
    median = merge_records({**answers, "doubao": [gpu("AWS", 2.51)]}, weights,
                           default_merge_spec("gpu", numeric_choice="median"))
    assert median.data[0]["price"] == 2.51
    assert cluster_numbers([10.0, 10.4, 10.8, 11.2], 0.05) == [0, 0, 1, 1]


def test_support_rule_drops_and_notes_single_model_records():
    answers = {"qwen": [gpu("AWS", 2.49), gpu("Lambda", 2.99)], "deepseek": [gpu("AWS", 2.49)]}
    kept = merge_records(answers, {"qwen": 0.6, "deepseek": 0.6}, default_merge_spec("gpu"))
    assert len(kept.data) == 2
    dropped = merge_records(answers, {"qwen": 0.6, "deepseek": 0.6}, default_merge_spec("gpu", min_support_share=0.6))
    assert [r["provider"] for r in dropped.data] == ["AWS"]
    assert any("lambda" in n and "dropped" in n for n in dropped.notes)


def test_scalars_robust_to_missing_nan_and_text():
    answers = {"qwen": {"annual_twh": 150, "kwh_price": None}, "deepseek": {"annual_twh": float("nan"), "kwh_price": "暂无"},
               "doubao": {"annual_twh": "lots", "kwh_price": 0.1}, "broken": None}
    result = merge_scalars(answers, {"qwen": 0.9, "deepseek": 0.5, "doubao": 0.4})
    assert result.data["annual_twh"] == 150 and result.data["kwh_price"] == 0.1
    assert {p.key: set(p.supporters) for p in result.provenance} == {"annual_twh": {"qwen"}, "kwh_price": {"doubao"}}
    nothing = merge_scalars({"a": {"x": None}, "b": {"x": float("nan")}}, {"a": 1.0, "b": 1.0})
    assert nothing.data == {"x": None}


def test_merge_answers_dispatches_by_shape():
    assert isinstance(merge_answers({"a": [gpu("AWS", 2.0)]}, {"a": 0.9}, "gpu").data, list)
    assert merge_answers({"a": {"kwh_price": 0.1}}, {"a": 0.9}, "grid_load").data == {"kwh_price": 0.1}


def test_majority_vote_is_weighted_vote_with_equal_weights():
    labels = np.random.default_rng(1).integers(-1, 4, size=(50, 5))
    assert np.array_equal(majority_vote(labels)[0], weighted_vote(labels, np.full(5, 0.3))[0])


def test_truth_discovery_recovers_reliabilities_from_wrong_initial_weights():
    rng = np.random.default_rng(3)
    runs, items, accuracy = 8, 200, np.array([0.9, 0.75, 0.6, 0.45, 0.3])
    truth = rng.integers(0, 5, size=(runs, items))
    right = rng.random((runs, items, 5)) < accuracy
    labels = np.where(right, truth[..., None], (truth[..., None] + rng.integers(1, 5, size=(runs, items, 5))) % 5)
    stale = np.broadcast_to(accuracy[::-1], (runs, 5))
    consensus, reliability, _ = truth_discovery_labels(labels, stale, n_classes=5)
    assert (np.argsort(-reliability, axis=-1) == np.arange(5)).mean() >= 0.9
    assert np.abs(reliability - accuracy).mean() < 0.1
    td_accuracy = (consensus == truth).mean()
    assert td_accuracy > (weighted_vote(labels, stale[:, None, :])[0] == truth).mean()
    assert td_accuracy >= (majority_vote(labels)[0] == truth).mean() - 0.01


def test_truth_discovery_on_records_learns_who_agrees():
    rng = np.random.default_rng(0)
    truth = {f"P{i}": round(float(rng.uniform(1, 10)), 2) for i in range(30)}
    answers = {"good": [gpu(k, v) for k, v in truth.items()],                                  # always right
               "fair": [gpu(k, v if rng.random() < 0.8 else round(v * 0.6, 2)) for k, v in truth.items()],
               "bad": [gpu(k, round(v * float(rng.uniform(1.5, 2.0)), 2)) for k, v in truth.items()]}
    stale = {"good": 0.3, "fair": 0.4, "bad": 0.6}          # wrong order, but "bad" alone does not outweigh the rest
    before = merge_records(answers, stale, default_merge_spec("gpu"))
    result, reliability = truth_discovery(answers, stale, default_merge_spec("gpu"))
    assert reliability["good"] >= reliability["fair"] > reliability["bad"]
    assert result.model_confidence == reliability
    right = lambda merged: sum(math.isclose(r["price"], truth[r["provider"]]) for r in merged.data)
    assert right(result) == 30 and right(before) < 30


# --- issue 12: duplicates inside one answer are evidence, not "the first one" ---------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from computepulse_ai.merging import default_merge_spec  # noqa: E402


def test_in_answer_duplicates_are_one_models_vote_not_the_first_record():
    answers = {"qwen": [{"provider": "Aliyun", "region": "cn-beijing", "gpu": "A100", "price": 7.36},
                        {"provider": "阿里云", "region": "cn-beijing", "gpu": "A100", "price": 3.89}],
               "deepseek": [{"provider": "Alibaba Cloud", "region": "cn-beijing", "gpu": "A100", "price": 3.90}]}
    merged = merge_records(answers, {"qwen": 0.9, "deepseek": 0.6}, default_merge_spec("gpu"))
    assert len(merged.data) == 1
    assert abs(merged.data[0]["price"] - 3.9) < 0.01          # the old merger served 7.36
    assert merged.data[0]["provider"] == "Alibaba Cloud"
    assert any("reconciled as one vote" in n for n in merged.notes)
    assert not any("kept the first" in n for n in merged.notes)


def test_a_models_duplicates_count_as_one_vote_not_two():
    # qwen repeats 7.36 three times; deepseek and doubao say 3.9 once each: two models beat one, however often it repeats
    answers = {"qwen": [{"provider": "AWS", "region": "us", "gpu": "H100", "price": 7.36}] * 3,
               "deepseek": [{"provider": "AWS", "region": "us", "gpu": "H100", "price": 3.9}],
               "doubao": [{"provider": "Amazon Web Services", "region": "US", "gpu": "NVIDIA H100", "price": 3.91}]}
    merged = merge_records(answers, {"qwen": 0.7, "deepseek": 0.5, "doubao": 0.5}, default_merge_spec("gpu"))
    assert len(merged.data) == 1 and abs(merged.data[0]["price"] - 3.9) < 0.02


price = st.floats(0.5, 10.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(price, min_size=1, max_size=4), st.lists(price, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_order_of_records_never_decides_the_merge(first_prices, second_prices, rng):
    def answer(prices, spellings):
        return [{"provider": spellings[i % len(spellings)], "region": "cn-beijing", "gpu": "A100", "price": p}
                for i, p in enumerate(prices)]
    answers = {"a": answer(first_prices, ["Aliyun", "阿里云", "Alibaba Cloud"]), "b": answer(second_prices, ["阿里云"])}
    shuffled = {m: rng.sample(records, len(records)) for m, records in answers.items()}
    weights, spec = {"a": 0.8, "b": 0.6}, default_merge_spec("gpu")
    one, two = merge_records(answers, weights, spec).data, merge_records(shuffled, weights, spec).data
    assert len(one) == 1 and len(two) == 1
    assert abs(one[0]["price"] - two[0]["price"]) <= 1e-9 * max(1.0, one[0]["price"])


def test_a_model_that_gave_no_price_does_not_back_the_merged_price():
    "qwen's '暂无公开数据' and doubao's 0.444 served as two models' agreement (issue 12, the realistic fake world)."
    from computepulse_ai.validation import merge_spec as spec, normalise_answers, validate
    answers = {"qwen": [{"provider": "阿里云", "region": "华北2(北京)", "gpu": "T4", "price": "暂无公开数据"}],
               "doubao": [{"provider": "Aliyun", "region": "华北2(北京)", "gpu": "T4", "price": 0.5}]}
    merged = merge_records(normalise_answers(answers, "gpu")[0], {"qwen": 0.8, "doubao": 0.6}, spec("gpu"))
    field = [p for p in merged.provenance if p.key.endswith(".price")]
    assert len(field) == 1 and set(field[0].supporters) == {"doubao"} and field[0].alternatives[0]["value"] is None
    assert validate(merged, "gpu").outcomes[0].supporters == {"doubao": 0.6}
