"ComputePulse validation rules (SPEC §5, R11) on messy, real-looking model output."
import math

from hypothesis import given, settings, strategies as st

from computepulse_ai.merging import merge_records
from computepulse_ai.validation import (ValidationRules, merge_spec, normalise_answers, normalise_record, record_key,
                                        validate)


def test_gpu_required_fields_and_range():
    data = [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 2.49, "currency": "USD"},
            {"region": "US", "gpu": "H100", "price": 2.0},
            {"provider": "AWS", "region": "US", "price": 2.0},
            {"provider": "AWS", "region": "US", "gpu": "H100"},
            {"provider": "AWS", "region": "US", "gpu": "H100", "price": 0.09},
            {"provider": "AWS", "region": "US", "gpu": "H100", "price": 50.01},
            {"provider": "AWS", "region": "US", "gpu": "Mystery X9", "price": 50}]   # no band: the global range
    result = validate(data, "gpu")
    assert [o.accepted for o in result.outcomes] == [True, False, False, False, False, False, True]
    assert "provider missing" in result.outcomes[1].errors[0]
    assert "gpu missing" in result.outcomes[2].errors[0]
    assert "price missing" in result.outcomes[3].errors[0]
    assert "price=0.09" in result.outcomes[4].errors[0]
    no_region = {"provider": "AWS", "gpu": "H100", "price": 2.0}
    assert not validate([no_region], "gpu").outcomes[0].accepted
    assert validate([no_region], "gpu", ValidationRules(require_region=False)).outcomes[0].accepted


def test_gpu_cny_prices_converted():
    data = [{"provider": "阿里云", "region": "cn-beijing", "gpu": "H100", "price": 30, "currency": "CNY"},
            {"provider": "Huawei Cloud", "region": "cn-north-4", "gpu": "A800", "price": "￥25.5/卡/小时"},
            {"provider": "AutoDL", "region": "内蒙", "gpu": "RTX 4090", "price": "1.98元/时"},
            {"provider": "腾讯云", "region": "ap-guangzhou", "gpu": "H800", "price": 28, "currency": "人民币"}]
    result = validate(data, "gpu", ValidationRules(cny_per_usd=7.0))
    assert len(result.accepted) == 4
    prices = [r["price"] for r in result.accepted]
    for got, expected in zip(prices, [30 / 7, 25.5 / 7, 1.98 / 7, 28 / 7]): assert math.isclose(got, expected)
    assert all(r["currency"] == "USD" for r in result.accepted)
    assert [r["provider"] for r in result.accepted] == ["Alibaba Cloud", "Huawei Cloud", "AutoDL", "Tencent Cloud"]
    assert all(result.normalisation_notes[i] for i in range(4))


def test_gpu_per_instance_prices():
    data = [{"provider": "AWS", "region": "us-east-1", "gpu": "8x H100", "price": 98.32},
            {"provider": "Azure", "region": "eastus", "gpu": "H100", "gpu_count": 8, "price": "$88.49/instance/hr"},
            {"provider": "GCP", "region": "us-central1", "gpu": "A100", "gpu_count": 8, "price": 3.67},
            {"provider": "Lambda", "region": "US", "gpu": "H100 x8", "price": 600}]
    result = validate(data, "gpu")
    assert math.isclose(result.outcomes[0].record["price"], 98.32 / 8)
    assert math.isclose(result.outcomes[1].record["price"], 88.49 / 8)
    assert result.outcomes[2].record["price"] == 3.67 and "kept as per-GPU" in result.outcomes[2].notes[-1]
    assert not result.outcomes[3].accepted                       # 600/8 = 75 is still out of range: rejected
    assert "per-instance price detected" in result.outcomes[0].warnings[0]


def test_token_rules():
    data = [{"provider": "OpenAI", "model": "GPT-4o", "input_price": 2.5, "output_price": 10.0, "currency": "USD"},
            {"provider": "阿里云", "model": "qwen-max", "input_price": "暂无公开数据", "output_price": 9.6},
            {"provider": "DeepSeek", "model": "deepseek-chat", "input_price": 0, "output_price": 1.1},
            {"provider": "Google", "model": "gemini", "input_price": 1.25, "output_price": 1.25},
            {"provider": "X", "model": "cheap", "input_price": 0.0005, "output_price": 0.002},
            {"provider": "Y", "model": "dear", "input_price": 150, "output_price": 600},
            {"provider": "OpenAI", "model": "gpt-4", "input_price": "$0.03 / 1K tokens", "output_price": "$0.06/1K tokens"},
            {"provider": "OpenAI", "input_price": 1, "output_price": 2}]
    result = validate(data, "token")
    assert [o.accepted for o in result.outcomes] == [True, False, False, True, False, False, True, False]
    assert "暂无公开数据" in result.outcomes[1].errors[0]
    assert "0 means unknown" in result.outcomes[2].errors[0]
    assert not result.outcomes[3].warnings                       # output = input is normal, not a warning
    assert math.isclose(result.outcomes[6].record["input_price"], 30.0)
    assert "model missing" in result.outcomes[7].errors[0]
    assert 0 not in result.warnings


def test_grid_rules_and_consistency():
    ok = validate({"annual_twh": 150, "estimated_gw": 17.12, "kwh_price": 0.12, "active_gpu_est": 4000000,
                   "source": "IEA 2025"}, "grid_load")
    assert len(ok.accepted) == 1 and not ok.warnings
    warn = validate({"annual_twh": "150 TWh", "estimated_gw": 20, "kwh_price": 0.12}, "grid_load")
    assert warn.accepted and "estimated_gw=20" in warn.warnings[0][0]
    error = validate({"annual_twh": 150, "estimated_gw": 0.0171, "kwh_price": 0.12}, "grid_load")
    assert not error.accepted and "unit error" in error.rejected[0].errors[0]
    lenient = validate({"annual_twh": 150, "estimated_gw": 0.0171, "kwh_price": 0.12}, "grid_load",
                       ValidationRules(gw_error_tolerance=None))
    assert lenient.accepted and lenient.warnings
    price = validate({"annual_twh": 150, "kwh_price": 1.5}, "grid_load")
    assert "kwh_price=1.5" in price.rejected[0].errors[0]
    cny = validate([{"annual_twh": 150, "kwh_price": "0.6元/kWh"}], "grid_load")
    assert math.isclose(cny.accepted[0]["kwh_price"], 0.6 / 7.2) and cny.notes


def test_provider_aliases_group_before_merging():
    key = record_key("gpu")
    spellings = ["阿里云", "Aliyun", "Alibaba Cloud", "阿里云计算", "alibaba-cloud"]
    assert len({key({"provider": p, "region": "cn-beijing", "gpu": "H100"}) for p in spellings}) == 1
    custom = ValidationRules(provider_aliases={"aws": "Amazon"})
    assert normalise_record({"provider": "AWS"}, "gpu", custom)[0]["provider"] == "Amazon"
    assert normalise_record({"provider": "阿里云"}, "gpu", custom)[0]["provider"] == "阿里云"   # table replaced


def test_validation_names_the_models_whose_values_were_accepted():
    raw = {"qwen": [{"provider": "Aliyun", "region": "cn-beijing", "gpu": "H100", "price": "¥28"},
                    {"provider": "AWS", "region": "US", "gpu": "H100", "price": 2.49}],
           "deepseek": [{"provider": "阿里云", "region": "cn-beijing", "gpu": "H100", "price": 3.9},
                        {"provider": "AWS", "region": "US", "gpu": "H100", "price": 0.02}],
           "doubao": [{"provider": "AWS", "region": "US", "gpu": "H100", "price": 0.02}]}
    normalised, notes = normalise_answers(raw, "gpu")
    assert notes
    merged = merge_records(normalised, {"qwen": 0.5, "deepseek": 0.5, "doubao": 0.4}, merge_spec("gpu"))
    result = validate(merged, "gpu")
    # AWS: two models' 0.02 typo is outside the H100 band, so it does not vote against qwen's 2.49 (issue 12)
    assert len(result.accepted) == 2 and result.accepted[1]["price"] == 2.49
    assert result.accepted_models == {"qwen": 2, "deepseek": 1}            # deepseek and doubao dissent on the AWS price
    assert result.outcomes[1].supporters == {"qwen": 0.5}


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                      st.sampled_from(["暂无公开数据", "¥200", "$2.49/hr", "8x H100", "阿里云", "0.5-0.7", "1e999", "-", "400万"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=8)
field_names = st.sampled_from(["provider", "region", "gpu", "price", "currency", "gpu_count", "unit", "model",
                               "input_price", "output_price", "annual_twh", "estimated_gw", "kwh_price",
                               "active_gpu_est", "price_unit"])
garbage_record = st.one_of(json_value, st.dictionaries(field_names, json_value, max_size=8))


@settings(max_examples=300, deadline=None)
@given(records=st.lists(garbage_record, max_size=6), data_type=st.sampled_from(["gpu", "token"]))
def test_garbage_never_crashes_and_nothing_is_dropped(records, data_type):
    result = validate(records, data_type)
    assert len(result.accepted) + len(result.rejected) == len(records)
    assert [o.index for o in result.outcomes] == list(range(len(records)))
    assert all(o.errors for o in result.rejected)
    for o in result.outcomes:
        if o.accepted and "currency" in o.record:
            assert o.record["currency"] == "USD" or o.record["currency"] == o.original.get("currency")


@settings(max_examples=200, deadline=None)
@given(record=garbage_record)
def test_garbage_grid_record_is_one_outcome_with_reasons(record):
    result = validate(record, "grid_load")
    assert len(result.outcomes) == 1
    assert result.outcomes[0].accepted or result.outcomes[0].errors


# --- issue 12: placeholders, plausibility, unit slips, consistency, meaningful warnings, cosmetics -------------------

from computepulse_ai.validation import GPU_PRICE_BANDS, reconcile_units  # noqa: E402

PLACEHOLDER_PROVIDERS = ["Unknown", "N/A", "各大云厂商", "Various", "多家云厂商", "Market average"]
PLACEHOLDER_REGIONS = ["Various", "cheapest", "Global (Average)", "global average", "all regions", "最低价地区"]


@settings(max_examples=60, deadline=None)
@given(provider=st.sampled_from(PLACEHOLDER_PROVIDERS + ["AWS"]), region=st.sampled_from(PLACEHOLDER_REGIONS + ["us-east-1"]))
def test_placeholders_are_rejected_as_names_with_their_reason(provider, region):
    outcome = validate([{"provider": provider, "region": region, "gpu": "H100", "price": 2.49}], "gpu").outcomes[0]
    placeholders = (provider != "AWS") + (region != "us-east-1")
    assert sum("placeholder" in e for e in outcome.errors) == placeholders
    assert outcome.accepted == (placeholders == 0)


def test_token_placeholders_rejected():
    outcome = validate([{"provider": "Unknown", "model": "GPT-4o", "input_price": 2.5, "output_price": 10}], "token").outcomes[0]
    assert not outcome.accepted and "'Unknown' is a placeholder" in outcome.errors[0]


def test_implausible_values_from_the_issue_are_rejected():
    data = [{"provider": "Azure", "region": "East US", "gpu": "H100", "price": 39.93},
            {"provider": "CoreWeave", "region": "US-East", "gpu": "H100", "price": 44.19},
            {"provider": "AWS", "region": "us-east-1", "gpu": "A100 40GB", "price": 32.77},     # the p4d instance price
            {"provider": "AWS", "region": "us-east-1", "gpu": "RTX 4090", "price": 0.69},      # AWS rents no RTX 4090
            {"provider": "OpenAI", "model": "GPT-4o", "input_price": 0.03, "output_price": 0.06}]
    gpu = validate(data[:4], "gpu")
    assert not gpu.accepted, [o.record for o in gpu.outcomes if o.accepted]
    assert "÷8 = 4.096 would fit" in gpu.outcomes[2].errors[0]
    assert "data-centre GPUs only" in gpu.outcomes[3].errors[0]
    token = validate(data[4:], "token")
    assert not token.accepted and "outside the GPT-4o band" in token.outcomes[0].errors[0]


@settings(max_examples=150, deadline=None)
@given(gpu=st.sampled_from(sorted(GPU_PRICE_BANDS)), where=st.floats(0.05, 0.95), slip=st.sampled_from([7.2, 8]),
       spelling=st.sampled_from(["{}", "NVIDIA {}", "{} "]))
def test_unit_slips_are_undone_by_ratio_to_the_other_models(gpu, where, slip, spelling):
    lo, hi = GPU_PRICE_BANDS[gpu]
    true = lo + where * (hi - lo)
    provider = "RunPod"                                   # rents data-centre and consumer cards alike
    answers = {"trusted": [{"provider": provider, "region": "us-east", "gpu": spelling.format(gpu), "price": true * slip}],
               "other": [{"provider": provider, "region": "US-East", "gpu": gpu, "price": true * 1.01}]}
    normalised, _ = normalise_answers(answers, "gpu")
    merged = merge_records(normalised, {"trusted": 0.9, "other": 0.5}, merge_spec("gpu"))
    served = validate(merged, "gpu").accepted
    assert len(served) == 1 and abs(served[0]["price"] - true) <= 0.03 * true, (served, merged.notes)


def test_per_1k_token_prices_undone_by_ratio_to_the_other_models():
    answers = {"a": [{"provider": "OpenAI", "model": "gpt-4o", "input_price": 0.0025, "output_price": 0.01}],
               "b": [{"provider": "OpenAI", "model": "GPT-4o", "input_price": 2.5, "output_price": 10.0}]}
    fixed, notes, _ = reconcile_units(answers, "token", ValidationRules())
    assert fixed["a"][0]["input_price"] == 2.5 and abs(fixed["a"][0]["output_price"] - 10.0) < 1e-9
    assert len(notes) == 2 and "per-1K-token" in notes[0]


def test_a_value_that_jumps_needs_two_models_or_is_flagged():
    previous = [{"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 2.49, "currency": "USD"}]
    alone = {"qwen": [{"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 9.9}]}
    both = {**alone, "deepseek": [{"provider": "Amazon Web Services", "region": "US-East-1", "gpu": "H100", "price": 9.8}]}
    for answers, flagged in ((alone, True), (both, False)):
        merged = merge_records(normalise_answers(answers, "gpu")[0], {"qwen": 0.8, "deepseek": 0.7}, merge_spec("gpu"))
        outcome = validate(merged, "gpu", previous=previous).outcomes[0]
        assert any("needs two models' agreement" in w for w in outcome.warnings) == flagged
    strict = validate(merge_records(alone, {"qwen": 0.8}, merge_spec("gpu")), "gpu",
                      ValidationRules(jump_action="reject", max_change_factor=2.0), previous=previous)
    assert not strict.accepted and "needs two models' agreement" in strict.rejected[0].errors[0]
    calm = validate([{"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 2.6}], "gpu", previous=previous)
    assert calm.accepted and not calm.warnings


def test_output_equal_to_input_is_not_a_warning():
    # hosted open models (Together, Groq, DeepSeek's cache tiers …) price output = input: the old rule warned on a third
    data = [{"provider": "Together AI", "model": "Llama 3 70B", "input_price": 0.88, "output_price": 0.88},
            {"provider": "Zhipu AI", "model": "GLM-4-Plus", "input_price": 0.69, "output_price": 0.69}]
    assert validate(data, "token").warnings == {}
    swapped = validate([{"provider": "OpenAI", "model": "GPT-4o", "input_price": 10.0, "output_price": 2.5}], "token")
    assert "below the input price" in swapped.warnings[0][0]


def test_names_are_not_upper_cased_and_no_currency_is_invented():
    record, notes = normalise_record({"provider": "华为云", "region": "贵阳", "gpu": "ascend 910b", "price": 2.1}, "gpu")
    assert record["gpu"] == "Ascend 910B" and "currency" not in record
    converted, notes = normalise_record({"provider": "阿里云", "region": "杭州", "gpu": "A100", "price": "¥15"}, "gpu")
    assert converted["currency"] == "USD" and any("CNY → " in n for n in notes)
    decided, notes = normalise_record({"provider": "阿里云", "region": "杭州", "gpu": "A100", "price": 15}, "gpu")
    assert decided["currency"] == "USD" and any("taken as CNY" in n for n in notes)
    kept, _ = normalise_record({"provider": "AWS", "region": "us", "gpu": "H100", "price": 2.5, "currency": "USD"}, "gpu")
    assert kept["currency"] == "USD"


def test_bands_and_aliases_come_from_the_config_section():
    rules = ValidationRules.from_config({"extra_gpu_price_bands": {"H100": [1.0, 8.0]},
                                         "aliases": {"provider": {"星星云": "StarCloud"}},
                                         "placeholders": {"region": ["机房A"]}})
    result = validate([{"provider": "星星云", "region": "机房A", "gpu": "H100", "price": 9.0}], "gpu", rules)
    errors = result.outcomes[0].errors
    assert result.outcomes[0].record["provider"] == "StarCloud"
    assert any("placeholder" in e for e in errors) and any("H100 band [1, 8]" in e for e in errors)
    for bad in ({"extra_gpu_price_bands": {"H100": "cheap"}}, {"aliases": {"colour": {}}}, {"jump_action": "shout"}):
        try: ValidationRules.from_config(bad)
        except ValueError as e: assert str(e)
        else: raise AssertionError(f"{bad} accepted")


def test_an_out_of_band_value_does_not_outvote_an_in_band_one():
    answers = {"trusted": [{"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 31.7}],   # no slip explains it
               "other": [{"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 2.49}]}
    merged = merge_records(normalise_answers(answers, "gpu")[0], {"trusted": 0.9, "other": 0.5}, merge_spec("gpu"))
    assert merged.data[0]["price"] == 2.49 and any("not voted" in n for n in merged.notes)
    previous = [{"provider": "AWS", "region": "us-east-1", "gpu": "H100", "price": 2.49}]
    result = validate(merged, "gpu", previous=previous)                          # the previous file confirms the lone 2.49
    assert result.accepted and result.outcomes[0].supporters == {"other": 0.5}   # the set-aside value is a dissent
    alone = validate(merged, "gpu")            # without it, 31.7 (3.17? 3.96?) still disputes 2.49: withheld, with why
    assert alone.accepted == [] and "disputed by another model's 31.7" in alone.rejected[0].errors[0]
    slipped = {**answers, "trusted": [dict(answers["trusted"][0], price=24.9)]}      # a decimal-point slip: corrected
    fixed = merge_records(normalise_answers(slipped, "gpu")[0], {"trusted": 0.9, "other": 0.5}, merge_spec("gpu"))
    assert abs(fixed.data[0]["price"] - 2.49) < 1e-9 and any("decimal-point slip" in n for n in fixed.notes)


def test_a_token_records_prices_share_one_currency():
    # Qwen-Max in unlabelled CNY: 11.52 fits the USD band on its own, 46.08 does not; both are CNY
    record, notes = normalise_record({"provider": "阿里云", "model": "qwen-max", "input_price": 11.52, "output_price": 46.08},
                                     "token")
    assert abs(record["input_price"] - 1.6) < 1e-9 and abs(record["output_price"] - 6.4) < 1e-9
    assert record["currency"] == "USD" and any("taken as CNY" in n for n in notes)


SLIP_FACTORS = (7.2, 10.0, 10 / 7.2, 2, 4, 8, 8 * 7.2)


@settings(max_examples=200, deadline=None)
@given(true=st.floats(0.9, 12.0), ratio=st.floats(1.05, 80.0).filter(
    lambda r: all(abs(r / f - 1) > 0.12 for f in SLIP_FACTORS)))
def test_a_disagreement_no_slip_explains_is_never_rewritten(true, ratio):
    answers = {"a": [{"provider": "RunPod", "region": "US", "gpu": "H100", "price": true * ratio}],
               "b": [{"provider": "RunPod", "region": "US", "gpu": "H100", "price": true}]}
    fixed, notes, _ = reconcile_units(answers, "gpu", ValidationRules())
    assert fixed["a"][0]["price"] in (true * ratio, None)          # left alone, or set aside when outside the band
    assert fixed["b"][0]["price"] == true
    assert not any("corrected" in n for n in notes)


@settings(max_examples=300, deadline=None)
@given(answers=st.dictionaries(st.sampled_from(["qwen", "deepseek", "doubao"]),
                               st.one_of(st.none(), json_value, st.lists(garbage_record, max_size=5)), max_size=3),
       data_type=st.sampled_from(["gpu", "token"]))
def test_garbage_answers_never_crash_the_merge_with_its_unit_reconciliation(answers, data_type):
    normalised, _ = normalise_answers(answers, data_type)
    merged = merge_records(normalised, {"qwen": 0.8, "deepseek": 0.6}, merge_spec(data_type))
    result = validate(merged, data_type)
    assert len(result.outcomes) == len(merged.data)


def test_normalising_the_same_record_again_is_memoised_but_never_shared():
    rules = ValidationRules()
    raw = {"provider": "阿里云", "region": "杭州", "gpu": "A100 (80GB)", "price": "¥15"}
    first, first_notes = normalise_record(raw, "gpu", rules)
    first["price"] = -1.0
    first_notes.append("changed by the caller")
    again, again_notes = normalise_record(raw, "gpu", rules)
    assert again["price"] == 15 / 7.2 and "changed by the caller" not in again_notes
    assert again == normalise_record(raw, "gpu", ValidationRules())[0]          # the memo changes nothing
    unhashable = {"provider": "AWS", "region": "us", "gpu": "H100", "price": 2.5, "tags": ["a"]}
    assert normalise_record(unhashable, "gpu", rules)[0]["tags"] == ["a"]


# ---- issue 12, round 3: what the realistic fake world (perf_realism on fakes) still served wrongly -------------------

import pytest  # noqa: E402
from computepulse_ai.merging import merge_records as _merge  # noqa: E402
from computepulse_ai.validation import ValidationRules as _Rules, merge_spec as _spec, normalise_answers as _norm, validate as _validate  # noqa: E402

_W = {"qwen": 0.8, "deepseek": 0.7, "doubao": 0.6}


def _served(answers, kind="gpu", previous=None, rules=None):
    rules = rules or _Rules()
    merged = _merge(_norm(answers, kind, rules)[0], _W, _spec(kind, rules))
    return _validate(merged, kind, rules, previous=previous)


@settings(max_examples=150, deadline=None)
@given(st.floats(0.4, 5.5), st.sampled_from([0.5, 0.6, 1.5, 2.0]), st.permutations(["qwen", "deepseek", "doubao"]))
def test_two_agreeing_models_are_never_corrected_toward_a_third(true, scale, order):
    "2.38, 2.38 and a wrong 1.428 served 1.7136: the agreeing values were 'corrected' by ×10/7.2 toward the median."
    wrong = round(true * scale, 4)
    answers = {order[0]: [{"provider": "阿里云", "region": "cn-hangzhou", "gpu": "Ascend 910B", "price": true, "currency": "USD"}],
               order[1]: [{"provider": "Aliyun", "region": "cn-hangzhou", "gpu": "Ascend 910B", "price": true, "currency": "USD"}],
               order[2]: [{"provider": "阿里云", "region": "cn-hangzhou", "gpu": "Ascend 910B", "price": wrong, "currency": "USD"}]}
    result = _served(answers)
    assert len(result.accepted) == 1 and abs(result.accepted[0]["price"] - true) <= 1e-3 * true


def test_a_lone_value_that_moved_since_the_previous_file_is_withheld_with_its_reason():
    previous = [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 2.49, "currency": "USD"}]
    moved = {"qwen": [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 3.74}]}      # ×1.5: in band
    result = _served(moved, previous=previous)
    assert result.accepted == [] and "unconfirmed" in result.rejected[0].errors[0] and "previous file" in result.rejected[0].errors[0]
    same = {"qwen": [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 2.55}]}       # the previous file confirms it
    assert len(_served(same, previous=previous).accepted) == 1
    two = {"qwen": moved["qwen"], "deepseek": [{"provider": "Amazon", "region": "us-east-1", "gpu": "H100", "price": 3.74}]}
    assert len(_served(two, previous=previous).accepted) == 1                                        # two models: a real move
    flagged = _served(moved, previous=previous, rules=_Rules(unconfirmed_action="flag"))
    assert len(flagged.accepted) == 1 and "unconfirmed" in flagged.outcomes[0].warnings[-1]


def test_a_one_against_one_dispute_without_a_previous_value_is_withheld():
    answers = {"qwen": [{"provider": "Lambda", "region": "US-Texas", "gpu": "H100", "price": 2.49}],
               "deepseek": [{"provider": "Lambda", "region": "US-Texas", "gpu": "H100", "price": 3.74}]}   # ×1.5: no unit explains it
    result = _served(answers)
    assert result.accepted == [] and "disputed" in result.rejected[0].errors[0]
    out_of_band = {"qwen": answers["qwen"], "deepseek": [{"provider": "Lambda", "region": "US-Texas", "gpu": "H100", "price": 0.02}]}
    assert len(_served(out_of_band).accepted) == 1              # an out-of-band rival is no dispute (it has no vote)


def test_a_lone_price_far_from_the_same_gpus_other_offers_is_withheld():
    offers = [("AWS", 2.5), ("Azure", 2.9), ("Lambda", 2.49), ("CoreWeave", 2.23), ("RunPod", 2.69), ("Vast.ai", 1.9)]
    answers = {"qwen": [{"provider": p, "region": "r", "gpu": "H100", "price": v} for p, v in offers],
               "deepseek": [{"provider": p, "region": "r", "gpu": "H100", "price": v} for p, v in offers]}
    answers["qwen"].append({"provider": "Nebius", "region": "r", "gpu": "H100", "price": 11.9})   # in band, ×5 the market
    result = _served(answers)
    assert len(result.accepted) == len(offers) and "robust z-scores" in result.rejected[0].errors[0]


def test_a_stamped_usd_on_a_chinese_clouds_cny_price_is_read_as_cny():
    "Models stamp the USD the prompt asked for on a CNY figure: currency 'USD' beside 17.14 for an Ascend 910B."
    record, notes = normalise_record({"provider": "阿里云", "region": "x", "gpu": "Ascend 910B", "price": 17.14, "currency": "USD"}, "gpu")
    assert abs(record["price"] - 17.14 / 7.2) < 1e-9 and any("stamped USD" in n for n in notes)
    record, _ = normalise_record({"provider": "AWS", "region": "x", "gpu": "H100", "price": 17.14, "currency": "USD"}, "gpu")
    assert record["price"] == 17.14                          # not a Chinese cloud: no guess (rejected by its band later)
    record, _ = normalise_record({"provider": "DeepSeek", "model": "DeepSeek-R1", "input_price": 3.96, "output_price": 15.77,
                                  "currency": "USD"}, "token")
    assert abs(record["input_price"] - 0.55) < 1e-9 and abs(record["output_price"] - 15.77 / 7.2) < 1e-9


@pytest.mark.parametrize("model,true_in,true_out", [("Doubao-Pro-32k", 0.11, 0.28), ("Kimi k1.5", 0.83, 3.33), ("GLM-4-Plus", 0.69, 1.035)])
def test_chinese_models_have_bands_that_catch_their_cny_prices(model, true_in, true_out):
    "Without a band, 0.79/2.02 (Doubao in CNY) fitted the global 0.001–100 range and was served."
    provider = {"Doubao-Pro-32k": "火山引擎", "Kimi k1.5": "月之暗面", "GLM-4-Plus": "智谱"}[model]
    record, _ = normalise_record({"provider": provider, "model": model, "input_price": round(true_in * 7.2, 2),
                                  "output_price": round(true_out * 7.2, 2)}, "token")
    assert abs(record["input_price"] - true_in) < 0.01 and abs(record["output_price"] - true_out) < 0.01


import random  # noqa: E402
from dataclasses import replace  # noqa: E402

from computepulse_ai.fakes import DefectRates as _Rates, messy_answer as _messy, offer_world as _world  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["gpu", "token"]), st.integers(0, 10**9))
def test_normalising_twice_is_normalising_once(kind, seed):
    "A merged record is normalised again by validate: a spent unit ('USD per 1K tokens', 'per instance') must not apply twice (served 1250 for 1.25)."
    data = _world(random.Random(seed % 5)) if kind == "gpu" else None
    _, truth = _messy(kind, random.Random(seed), replace(_Rates(), per_instance=0.5, per_1k=0.5, cny=0.6), data)
    for e in truth.emitted:
        once, _ = normalise_record(e.record, kind)
        twice, _ = normalise_record(once, kind)
        assert twice == once, (e.record, once, twice)


def test_a_slipped_rival_still_disputes_a_lone_value_it_cannot_agree_with():
    "qwen's 29.5 (×10 of the true 2.95) is out of band, yet no reading of it is doubao's wrong 5.9: served 5.9 before."
    answers = {"qwen": [{"provider": "Azure", "region": "East US", "gpu": "H100", "price": 29.5}],
               "doubao": [{"provider": "Azure", "region": "east us", "gpu": "H100", "price": 5.9}]}
    result = _served(answers)
    assert result.accepted == [] and "disputed by another model's 29.5" in result.rejected[0].errors[0]
    agreeing = {"qwen": answers["qwen"], "doubao": [{"provider": "Azure", "region": "East US", "gpu": "H100", "price": 2.95}]}
    assert [r["price"] for r in _served(agreeing).accepted] == [2.95]        # ÷10 reads it as 2.95: no dispute



@settings(max_examples=100, deadline=None)
@given(gpu=st.sampled_from(sorted(GPU_PRICE_BANDS)), where=st.floats(0.05, 0.95), factor=st.sampled_from([2.0, 4.0, 0.5]))
def test_a_small_ratio_against_one_other_model_is_a_dispute_not_a_slip(gpu, where, factor):
    "2.61 and a wrong 1.305 served 1.305: the right value was 'corrected' as a 2-GPU instance price."
    lo, hi = GPU_PRICE_BANDS[gpu]
    true = lo + where * (hi - lo)
    other = true * factor
    if not lo <= other <= hi: return                    # out of band the band decides (tested above)
    answers = {"trusted": [{"provider": "RunPod", "region": "US", "gpu": gpu, "price": true}],
               "other": [{"provider": "RunPod", "region": "US", "gpu": gpu, "price": other}]}
    merged = merge_records(normalise_answers(answers, "gpu")[0], {"trusted": 0.9, "other": 0.5}, merge_spec("gpu"))
    assert not any("corrected" in n for n in merged.notes)
    assert validate(merged, "gpu").accepted == []                           # disputed, no previous value: withheld
    previous = [{"provider": "RunPod", "region": "US", "gpu": gpu, "price": true}]
    assert [round(r["price"], 6) for r in validate(merged, "gpu", previous=previous).accepted] == [round(true, 6)]


def test_no_slip_is_undone_toward_a_median_nobody_gave():
    "5.98 ÷10 = 0.598 matched the median of 0.498 and 0.83 (which disagree): served 0.598 for a true 0.83."
    answers = {"qwen": [{"provider": "Alibaba", "region": "华东1(杭州)", "gpu": "L40S", "price": 43.06, "currency": "CNY"}],
               "deepseek": [{"provider": "Alibaba Cloud", "region": "华东1(杭州)", "gpu": "L40S", "price": 0.498}],
               "doubao": [{"provider": "ALIBABA CLOUD", "region": "华东1(杭州)", "gpu": "L40S", "price": 0.83}]}
    merged = merge_records(normalise_answers(answers, "gpu")[0], {"qwen": 0.8, "deepseek": 0.7, "doubao": 0.6}, merge_spec("gpu"))
    assert not any("corrected" in n for n in merged.notes)
    assert not any(abs(r["price"] - 0.598) < 0.01 for r in validate(merged, "gpu").accepted)


def test_a_zero_gpu_price_is_missing_and_does_not_outvote_a_real_one():
    "qwen's 0 outvoted doubao's 2.49 in the messy demo (a 0 was a vote; for GPUs it means 'unknown')."
    answers = {"qwen": [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 0}],
               "doubao": [{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": 2.49}]}
    merged = merge_records(normalise_answers(answers, "gpu")[0], {"qwen": 0.8, "doubao": 0.6}, merge_spec("gpu"))
    assert [r["price"] for r in validate(merged, "gpu").accepted] == [2.49]
    record, notes = normalise_record({"provider": "AWS", "region": "x", "gpu": "H100", "price": 0}, "gpu")
    assert record["price"] is None and any("0 → missing" in n for n in notes)


def test_a_true_but_dear_offer_is_not_withheld_as_an_outlier():
    "Paperspace's A100 at 3.09 (true, the fake world's dearest A100) was withheld at a robust-z limit of 3.5."
    from computepulse_ai.fakes import GPU_PRICES
    lone = [r for r in GPU_PRICES if r["provider"] != "Paperspace"]
    merged = merge_records(normalise_answers({"a": GPU_PRICES, "b": lone}, "gpu")[0], {"a": 0.8, "b": 0.6}, merge_spec("gpu"))
    result = validate(merged, "gpu")
    assert len(result.accepted) == len(GPU_PRICES), [o.errors for o in result.rejected]
