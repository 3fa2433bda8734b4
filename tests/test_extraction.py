"""Hypothesis fuzzing and edge cases for computepulse_ai.extraction."""
import json
import math

from hypothesis import HealthCheck, given, settings, strategies as st

from computepulse_ai.extraction import ExtractionError, extract_json, normalize_numbers, parse_number, currency_of

json_scalars = st.none() | st.booleans() | st.integers(-10**9, 10**9) | \
    st.floats(allow_nan=False, allow_infinity=False, width=64) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) |
                           st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)
json_containers = st.lists(json_values, max_size=4) | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
# prose never contains JSON delimiters or fences: otherwise "the JSON in the text" is ambiguous
prose = st.text(st.characters(blacklist_characters="{}[]`", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_extraction_error(text):
    try:
        result = extract_json(text)
    except ExtractionError:
        return
    assert isinstance(result.data, (dict, list))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]",:\'0123456789.-eEtrufalsnNI \n`json', max_size=120))
def test_json_like_noise_raises_only_extraction_error(text):
    try:
        extract_json(text)
    except ExtractionError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_containers, prose, prose, st.booleans(), st.booleans())
def test_valid_json_in_prose_is_recovered_exactly(data, before, after, fenced, indent):
    body = json.dumps(data, ensure_ascii=bool(indent), indent=2 if indent else None)
    text = f"{before}\n```json\n{body}\n```\n{after}" if fenced else f"{before} {body} {after}"
    result = extract_json(text)
    assert result.data == data
    assert result.truncated is False


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({"provider": st.text(max_size=6), "price": st.floats(0.1, 50)}),
                min_size=1, max_size=6), st.data())
def test_truncated_array_keeps_every_complete_record(records, data):
    body = json.dumps(records)
    # cut somewhere inside the last record
    last_start = body.rindex("{")
    cut = data.draw(st.integers(last_start + 1, len(body) - 2))
    result = extract_json("Here you go: " + body[:cut])
    assert result.truncated
    assert result.data == records[:-1] or (result.data == records and cut >= len(body) - 2)
    assert result.issues


def test_repairs_are_reported():
    result = extract_json("```\n{'provider': 'AWS', price: '2.49', 'spot': NaN,}\n```")
    assert result.data == {"provider": "AWS", "price": "2.49", "spot": None}
    assert len(result.issues) >= 3


def test_no_json_names_the_problem():
    try:
        extract_json("Sorry, I cannot browse the web.")
    except ExtractionError as e:
        assert "no JSON" in str(e)
    else:
        raise AssertionError("expected ExtractionError")


def test_never_evaluates_code():
    for text in ["__import__('os').system('echo hi')", "{'a': __import__('os')}", "[1, 2, exec('x=1')]"]:
        try:
            result = extract_json(text)
            assert "os" not in repr(result.data) or isinstance(result.data, (list, dict))
        except ExtractionError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=30), st.floats(), st.integers(), st.none(), st.booleans()))
def test_parse_number_never_raises(value):
    number = parse_number(value)
    assert number is None or math.isfinite(number)
    currency_of(value)


def test_prices_as_text():
    assert parse_number("$2.49/hr") == 2.49 and currency_of("$2.49/hr") == "USD"
    assert parse_number("¥200") == 200 and currency_of("¥200") == "CNY"
    fixed, issues = normalize_numbers([{"price": "US$ 3.10 per hour", "currency": "CNY"}])
    assert fixed[0]["price"] == 3.10 and any("contradict" in i or "record says" in i for i in issues)
