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
    assert len(result.accepted) == 1 and len(result.rejected) == 1            # AWS: the 0.02 typo won the vote
    assert result.accepted_models == {"qwen": 1, "deepseek": 1}
    assert result.rejected_models == {"deepseek": 1, "doubao": 1}


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
