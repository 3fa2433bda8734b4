"""JSON round trips of every core model (Hypothesis) and the errors they raise."""
from datetime import timezone

import pytest
from hypothesis import given, strategies as st

from computepulse_ai.core import (InvalidFieldError, MergedResult, ModelSpec, PerformanceRecord, Provenance, Request,
                                  Response, RoutingStrategy, TaskType)

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
small = st.floats(min_value=0, max_value=1e6, allow_nan=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
times = st.datetimes(timezones=st.just(timezone.utc))
tokens = st.integers(min_value=0, max_value=10**9)
json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)

requests = st.builds(Request, prompt=text, context=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
                     timestamp=times, quality_threshold=unit, cost_limit=st.none() | small,
                     task_type=st.none() | st.sampled_from(TaskType), classification_confidence=st.none() | unit,
                     data_type=st.none() | st.sampled_from(["gpu", "token", "grid_load"]))
specs = st.builds(ModelSpec, name=text, provider=text, input_price=small, output_price=small,
                  usd_rate=st.floats(min_value=1e-3, max_value=1e3), search_fee=small, typical_latency_s=small,
                  enabled=st.booleans(), options=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
responses = st.builds(Response, model=text, text=st.text(max_size=50), data=json_values, latency_s=small,
                      ttft_s=st.none() | small, input_tokens=tokens, output_tokens=tokens, reasoning_tokens=tokens,
                      cost_usd=small, timestamp=times, success=st.just(True), sources=st.lists(json_values, max_size=2))
failed = st.builds(Response, model=text, success=st.just(False), error=text, timestamp=times)
records = st.builds(PerformanceRecord, model=text, task_type=st.sampled_from(TaskType), timestamp=times,
                    was_correct=st.none() | st.booleans(), response_time=small, cost=small, token_count=tokens,
                    input_tokens=tokens, output_tokens=tokens, request_id=st.none() | text, success=st.booleans(),
                    accuracy=st.none() | unit)
provenances = st.builds(Provenance, key=st.text(max_size=20), supporters=st.dictionaries(text, unit, max_size=3),
                        alternatives=st.lists(st.fixed_dictionaries({"value": json_values, "supporters": st.dictionaries(text, unit, max_size=2)}), max_size=2),
                        agreement=unit)
merged = st.builds(MergedResult, data=json_values, contributing_models=st.lists(text, max_size=3),
                   model_confidence=st.dictionaries(text, unit, max_size=3), provenance=st.lists(provenances, max_size=3),
                   confidence=unit, needs_review=st.booleans(), incomplete=st.booleans(), notes=st.lists(st.text(max_size=10), max_size=2))


@pytest.mark.parametrize("cls,strategy", [(Request, requests), (ModelSpec, specs), (Response, responses),
                                          (Response, failed), (PerformanceRecord, records), (Provenance, provenances),
                                          (MergedResult, merged)])
def test_json_round_trip(cls, strategy):
    @given(strategy)
    def check(obj):
        assert cls.from_json(obj.to_json()) == obj
        assert cls.from_dict(obj.to_dict()) == obj
    check()


@given(st.floats().filter(lambda x: not (0 <= x <= 1)))
def test_quality_threshold_outside_unit_interval_is_rejected(x):
    with pytest.raises(InvalidFieldError, match="quality_threshold"):
        Request("p", quality_threshold=x)


def test_enum_values():
    assert [t.value for t in TaskType] == ["simple_query", "complex_reasoning", "data_validation",
                                           "price_extraction", "historical_analysis"]
    assert [s.value for s in RoutingStrategy] == ["SINGLE_FAST", "DUAL_VALIDATION", "TRIPLE_CONSENSUS", "ADAPTIVE"]
