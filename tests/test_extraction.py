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


# --- issue 12 items 1-2, issue 11 (bounded work, numbers) -------------------------------------------------------
import concurrent.futures

import pytest

from computepulse_ai.extraction import EXPECTED_FIELDS, MAX_TEXT_CHARS, ExtractionTooLargeError

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=8)   # quotes, backslashes, CJK
prices = st.one_of(st.floats(1e-9, 1e6), st.integers(0, 10**6), st.none(), st.just(2.95e1), st.just(1.5e-7),
                   st.sampled_from(["$2.49/hr", "¥200", "暂无公开数据", ""]))
gpu_records = st.fixed_dictionaries({"provider": names, "gpu": names, "region": names, "price": prices},
                                    optional={"spot": st.booleans(), "note": st.none(), "gpu_count": st.integers(1, 8)})
token_records = st.fixed_dictionaries({"provider": names, "model": names, "input_price": prices, "output_price": prices},
                                      optional={"cached": st.booleans(), "tier": st.none() | names})
PROSE = ["Here are the prices:", "Based on search results [1], the prices are", "(see [2024]) Sure! [1][2][3]",
         " ".join(f"[{i}]" for i in range(70)) + " the data:", ""]


def _render(records, ensure_ascii, spaced):
    "The JSON text of `records` and, for each record, the offset just after its closing brace."
    item_sep = ",\n  " if spaced else ","
    parts, ends, pos = [], [], 1
    for record in records:
        text = json.dumps(record, ensure_ascii=ensure_ascii, separators=(", ", ": ") if spaced else (",", ":"))
        if parts: pos += len(item_sep)
        parts.append(text)
        pos += len(text)
        ends.append(pos)
    return "[" + item_sep.join(parts) + "]", ends


def _records_of(data):
    if isinstance(data, list): return [x for x in data if isinstance(x, dict)]
    return [data] if isinstance(data, dict) else []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(["gpu", "token"]), st.data(), st.sampled_from(PROSE), st.booleans(), st.booleans(), st.booleans())
def test_truncation_at_every_offset_recovers_every_complete_record(data_type, data, prose, fenced, ensure_ascii, spaced):
    records = data.draw(st.lists(gpu_records if data_type == "gpu" else token_records, min_size=1, max_size=4))
    body, ends = _render(records, ensure_ascii, spaced)
    head = f"{prose}\n```json\n" if fenced else f"{prose} "
    text = head + body + ("\n```\nPrices change often." if fenced else " Hope this helps.")
    body_start, body_end = len(head), len(head) + len(body)
    for cut in range(len(text) + 1):
        complete = [r for r, end in zip(records, ends) if body_start + end <= cut]
        try:
            result = extract_json(text[:cut], data_type)
        except ExtractionError:
            assert cut <= body_start + 1, f"nothing found at cut {cut}: {text[:cut]!r}"
            continue
        if cut >= body_end:                                   # the whole array is there
            assert result.data == records and not result.truncated, cut
        elif cut > body_start + 1:                            # cut inside the array: exactly the complete records
            assert result.data == complete, (cut, text[:cut], result)
            assert result.truncated, cut
        else:                                                 # before the array: prose only, never a record
            assert _records_of(result.data) == [] or all(set(r) == {"note"} for r in _records_of(result.data))


@pytest.mark.parametrize("tail", ['{"a": nu', '{"a": tr', '{"a": fal', '{"a": "Az', '{"a": "\\u00', '{"a": "x\\',
                                  '{"a": 2.', '{"a": 2.9e', '{"a": 2.9e-', '{"a": -', '{"a": Infin', '{"a": Na',
                                  '{"a"', '{"a', '{', '{"a": [1, 2', '{"a": {"b": n'])
def test_cut_inside_any_literal_keeps_the_complete_records(tail):
    records = [{"provider": "AWS", "gpu": "H100", "price": None, "spot": True},
               {"provider": "Azure", "gpu": "A100", "price": 3.4, "spot": False}]
    result = extract_json(json.dumps(records)[:-1] + ", " + tail)
    assert result.data == records
    assert result.truncated is True


@pytest.mark.parametrize("prose", ["Based on search results [1], here are the prices:",
                                   "Prices (see [2024]) are:", "Sources: [1][2][3]. Data:",
                                   " ".join(f"[{i}]" for i in range(100)) + " finally:",
                                   "[" * 70 + " oops. The data:", '{"note": "example"} then'])
def test_citation_markers_never_win_over_the_data(prose):
    records = [{"provider": "AWS", "gpu": "H100", "region": "us-east-1", "price": 2.49},
               {"provider": "Azure", "gpu": "A100", "region": "eastus", "price": 3.4},
               {"provider": "GCP", "gpu": "L4", "region": "us-central1", "price": 0.7}]
    body = json.dumps(records)
    assert extract_json(f"{prose} {body} Hope this helps [1].", "gpu").data == records
    cut = extract_json(f"{prose} {body[:-30]}", "gpu")                # truncated data still beats a complete marker
    assert cut.data == records[:2] and cut.truncated


def test_expected_fields_choose_the_data_sets_records():
    token = [{"provider": "DeepSeek", "model": "deepseek-chat", "input_price": 0.27, "output_price": 1.1}]
    grid = {"annual_twh": 415, "estimated_gw": 47.4, "kwh_price": 0.08, "active_gpu_est": 3_800_000}
    text = f'Example of one entry: {{"provider": "X", "region": "Y"}}. Answer: {json.dumps(token)} Context: {json.dumps(grid)}'
    assert extract_json(text, "token").data == token
    assert extract_json(text, "grid_load").data == grid
    assert extract_json(text, ["model", "output_price"]).data == token
    assert set(EXPECTED_FIELDS) == {"gpu", "token", "grid_load"}


def test_over_the_cap_is_a_typed_rejection_naming_size_and_cap():
    with pytest.raises(ExtractionTooLargeError) as caught:
        extract_json("[" * (MAX_TEXT_CHARS + 1))
    assert caught.value.size == MAX_TEXT_CHARS + 1 and caught.value.cap == MAX_TEXT_CHARS
    assert isinstance(caught.value, ExtractionError) and f"{MAX_TEXT_CHARS:,}" in str(caught.value)
    with pytest.raises(ExtractionTooLargeError):
        extract_json('{"a": 1}' + " " * 100, max_chars=50)
    assert extract_json('{"a": 1}' + " " * 100, max_chars=None).data == {"a": 1}


@pytest.mark.parametrize("text", ["[" * 64 + '"' + "a" * 2_000_000 + '" x', "[" * 2_000_000, "[ " * 200_000,
                                  '{"a":' * 40_000, "[1] " * 50_000 + '[{"gpu": "L4"}]'])
def test_adversarial_texts_finish_with_an_answer_or_an_extraction_error(text):
    # speed is measured in benchmarks/perf_extraction.py; this checks these inputs end in an answer or our error
    try:
        result = extract_json(text, max_chars=None)
    except ExtractionError:
        return
    assert isinstance(result.data, (list, dict))
    if text.endswith('[{"gpu": "L4"}]'): assert result.data == [{"gpu": "L4"}]


def test_json_after_more_than_64_brackets_is_found():
    text = "[" * 64 + '{"provider": "AWS", "gpu": "H100", "price": 2.49} x'
    assert extract_json(text, "gpu").data == {"provider": "AWS", "gpu": "H100", "price": 2.49}


def test_extract_json_is_safe_in_threads():
    texts = [f'Sure [{i}]: ' + json.dumps([{"provider": f"P{i}", "gpu": "H100", "price": i + 0.5}] * (i % 7 + 1))[:-(i % 3)]
             for i in range(200)]
    expected = [extract_json(t, "gpu") for t in texts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: extract_json(t, "gpu"), texts))
    assert [(g.data, g.truncated, g.issues) for g in got] == [(e.data, e.truncated, e.issues) for e in expected]


def test_lone_surrogates_become_replacement_characters():
    raw = extract_json('[{"provider": "Azure\ud800", "gpu": "H100"}]')            # raw surrogate in the text
    escaped = extract_json('[{"provider": "Azure\\ud800", "gpu\\udc00": "H100"}]')  # as a JSON escape
    assert raw.data == [{"provider": "Azure\ufffd", "gpu": "H100"}]
    assert escaped.data == [{"provider": "Azure\ufffd", "gpu\ufffd": "H100"}]
    for result in (raw, escaped):
        json.dumps(result.data, ensure_ascii=False).encode("utf-8")
        assert any("surrogate" in issue for issue in result.issues)
    assert extract_json('["\\ud83d\\ude00"]').data == ["\U0001F600"]                # a valid pair stays


def test_numbers_beyond_float_are_null_not_errors():
    assert extract_json('{"gpu_count": ' + "9" * 401 + "}").data == {"gpu_count": int("9" * 401)}
    assert extract_json('{"gpu_count": ' + "9" * 5000 + "}").data == {"gpu_count": None}
    assert extract_json("{'gpu_count': " + "9" * 5000 + "}").data == {"gpu_count": None}   # tolerant path too
    assert extract_json('{"price": 1e400, "n": 2.95e1}').data == {"price": None, "n": 29.5}


@pytest.mark.parametrize("value, expected", [("2.95e1", 29.5), ("$1.2E-1/hr", 0.12), ("1e400", None),
                                             (10**401, None), (-10**401, None), (float("inf"), None), ("3e", 3.0)],
                         ids=["exponent", "exponent-in-text", "1e400", "401-digit", "-401-digit", "inf", "bare-e"])
def test_parse_number_reads_exponents_and_refuses_what_no_float_holds(value, expected):
    assert parse_number(value) == expected


def test_adapter_passes_the_data_type_so_citations_lose_end_to_end():
    "Through a real SDK over HTTP: a web-search answer with markers before a cut-off array gives the records."
    import asyncio
    import os
    from computepulse_ai.adapters import RetryPolicy, make_adapter
    from computepulse_ai.core import ModelSpec
    from computepulse_ai.fakes import FakeProviderServer
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    records = [{"provider": "AWS", "gpu": "H100", "region": "us-east-1", "price": 2.49},
               {"provider": "Azure", "gpu": "A100", "region": "eastus", "price": 3.4}]
    text = ('Search: {"query": "gpu prices", "results": 3}. Based on search results [1], (see [2024]) the prices are: '
            + json.dumps(records)[:-20])   # without the data type, the complete search object would outrank the cut array
    with FakeProviderServer(seed=3) as server:
        server.add_fault("content", route="openai", model="m-gpu", text=text)
        spec = ModelSpec("cited", "openai_compatible", "m-gpu", base_url=server.openai_base_url, api_key_env="K")
        adapter = make_adapter(spec, env={"K": "sk-test"}, retry=RetryPolicy(max_attempts=1))

        async def go():
            async with adapter:
                return await adapter.call("GPU rental prices", data_type="gpu")
        response = asyncio.run(go())
    assert response.data == records[:1]
    assert response.extra.get("truncated") is True
