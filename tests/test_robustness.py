"""Random JSON-ish model answers through normalise → merge → validate → write never raise anything but our typed
errors, and whatever is written is valid UTF-8 JSON (issue 11: one bad answer must not stop the hourly job).

The answers hold what real models and real files produced: lone surrogates ("Azure\\ud800"), integers of hundreds
of digits, lists and objects where a name or a price belongs, exponents, NaN/Infinity, empty strings, wrong types.
They go both ways a model's answer enters: as data (what an adapter with structured output hands over) and as
text through `extract_json` (what every HTTP model sends)."""
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from computepulse_ai.compat import file_format, legacy_merge
from computepulse_ai.core import ComputePulseError
from computepulse_ai.extraction import ExtractionError, extract_json
from computepulse_ai.jobs import read_existing, write_data_file
from computepulse_ai.merging import merge_answers
from computepulse_ai.validation import ValidationRules, merge_spec, normalise_answers, parse_amount, validate

FIELDS = {"gpu": ["provider", "gpu", "region", "price", "gpu_count", "currency", "unit"],
          "token": ["provider", "model", "input_price", "output_price", "currency"],
          "grid_load": ["annual_twh", "estimated_gw", "kwh_price", "active_gpu_est", "source"]}
SAMPLES = ["Azure", "AWS", "阿里云", "Aliyun", "H100", "A100 80GB", "8x H100", "us-east-1", "cn-beijing", "deepseek-chat",
           "2.95e1", "1e400", "-1e-400", "$2.49/hr", "¥200/小时", "0.5-0.7", "1.2万", "暂无公开数据", "NaN", "Infinity",
           "", " ", "null", "CNY", "USD", "per instance", "/1K tokens", "Azure\ud800", "\udfff", "\ud83d\ude00", "9" * 401]

text = st.one_of(st.sampled_from(SAMPLES), st.text(max_size=12),                     # st.text includes lone surrogates
                 st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3))
number = st.one_of(st.integers(-10, 10**6), st.integers(10**300, 10**500), st.integers(-10**500, -10**300),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([2.95e1, 1e-300, 5e-324, 1e308]))
scalar = st.one_of(st.none(), st.booleans(), text, number)
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=6)


def records(data_type):
    "A record with the data set's fields holding anything, plus odd extra keys."
    return st.builds(lambda known, extra: {**extra, **known},
                     st.dictionaries(st.sampled_from(FIELDS[data_type]), value, max_size=len(FIELDS[data_type])),
                     st.dictionaries(text, value, max_size=2))


def answers(data_type):
    answer = st.one_of(st.lists(records(data_type) | value, max_size=4), records(data_type), value)
    return st.dictionaries(st.sampled_from(["qwen", "deepseek", "doubao"]), answer, min_size=1, max_size=3)


def as_text(answer, ensure_ascii):
    "What a model would have sent: the answer as JSON text (NaN/Infinity as the words), in prose."
    body = json.dumps(answer, ensure_ascii=ensure_ascii, allow_nan=True)
    return f"Based on search results [1], here is the data:\n```json\n{body}\n```"


def served(data_type, check):
    "What fetch writes for a validation result: the accepted records (the one record for grid_load)."
    return check.accepted if data_type != "grid_load" else (check.accepted or [None])[0]


def write_and_check(path: Path, data_type: str, data) -> None:
    "Write like fetch does; the file must be valid UTF-8 and strict JSON (no NaN), and read back as it was meant."
    if not data: return
    write_data_file(path, file_format(data_type, data))
    raw = path.read_bytes()
    loaded = json.loads(raw.decode("utf-8"), parse_constant=lambda word: pytest.fail(f"{word} written to {path.name}"))
    assert isinstance(loaded, (list, dict))
    assert read_existing(path) == loaded


def run_pipeline(data_type, models_answers, weights, folder: Path, existing=None):
    rules = ValidationRules()
    try:
        normalised, _ = normalise_answers(models_answers, data_type, rules)
        merged = merge_answers(normalised, weights, data_type, merge_spec(data_type, rules))
        learned = validate(merged, data_type, rules)
        assert len(learned.outcomes) == (len(merged.data) if isinstance(merged.data, list) else 1)
        write_and_check(folder / f"{data_type}_learned.json", data_type, served(data_type, learned))
        legacy = legacy_merge(normalised, list(models_answers), data_type, existing, rules)
        if legacy is not None:
            write_and_check(folder / f"{data_type}_legacy.json", data_type, served(data_type, validate(legacy, data_type, rules)))
    except ComputePulseError:
        pass                                     # a typed rejection is an allowed outcome; anything else is a bug


weights = st.dictionaries(st.sampled_from(["qwen", "deepseek", "doubao"]), st.floats(0, 1), max_size=3)


@pytest.mark.parametrize("data_type", ["gpu", "token", "grid_load"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_answers_as_data_never_crash_the_pipeline(data_type, data, tmp_path):
    run_pipeline(data_type, data.draw(answers(data_type)), data.draw(weights), tmp_path)


@pytest.mark.parametrize("data_type", ["gpu", "token", "grid_load"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_answers_as_text_never_crash_the_pipeline(data_type, data, tmp_path):
    extracted = {}
    for model, answer in data.draw(answers(data_type)).items():
        try:
            extracted[model] = extract_json(as_text(answer, data.draw(st.booleans())), data_type).data
        except ExtractionError:
            extracted[model] = None
    run_pipeline(data_type, extracted, data.draw(weights), tmp_path)


@pytest.mark.parametrize("data_type, answer", [
    ("gpu", [{"provider": "Azure\ud800", "gpu": "H100", "region": "eastus", "price": 2.5}]),
    ("gpu", [{"provider": ["Azure"], "gpu": "H100", "region": "eastus", "price": 25.0}]),
    ("gpu", [{"provider": {"name": "阿里云"}, "gpu": "A100", "region": "cn-beijing", "price": 60.0}]),
    ("gpu", [{"provider": "AWS", "gpu": "H100", "region": "us-east-1", "price": 2.5, "gpu_count": int("9" * 401)}]),
    ("gpu", [{"provider": "AWS", "gpu": "H100", "region": "us-east-1", "price": "2.95e1"}]),
    ("gpu", [{"provider": "AWS", "gpu": ["H100"], "region": "us-east-1", "price": 2.5, "spot": math.inf}]),
    ("token", [{"provider": "OpenAI", "model": "gpt-4o\udfff", "input_price": 2.5, "output_price": 10.0, "x\ud800": 1}]),
    ("grid_load", {"annual_twh": "4.15e2", "estimated_gw": 47.4, "kwh_price": 0.08, "active_gpu_est": int("9" * 401),
                   "source": "IEA\ud800"}),
    ("gpu", [{"provider": "AWS", "gpu": "H100", "region": "us-east-1", "price": 2.5, "spot": math.nan, "stock": 10**5000}]),
], ids=["surrogate-provider", "list-provider", "dict-provider-cny", "401-digit-count", "exponent-price",
        "list-gpu-inf-extra", "surrogate-model-and-key", "grid-exponent-huge-surrogate", "nan-and-5000-digit-extras"])
def test_known_crashes(data_type, answer, tmp_path):
    "The crashes an adversarial pass found, each on both the learned and the legacy path."
    models_answers = {"qwen": answer, "deepseek": answer}
    rules = ValidationRules()
    normalised, _ = normalise_answers(models_answers, data_type, rules)
    merged = merge_answers(normalised, {"qwen": 0.9, "deepseek": 0.8}, data_type, merge_spec(data_type, rules))
    write_and_check(tmp_path / "learned.json", data_type, served(data_type, validate(merged, data_type, rules)))
    legacy = legacy_merge(normalised, ["qwen", "deepseek"], data_type, None, rules)
    write_and_check(tmp_path / "legacy.json", data_type, served(data_type, validate(legacy, data_type, rules)))


def test_existing_file_with_an_escaped_surrogate_is_rewritten_as_valid_utf8(tmp_path):
    "A data file may hold a lone surrogate as a JSON escape (valid ASCII); merged in as `existing`, it must still write."
    path = tmp_path / "gpu_prices.json"
    path.write_text('[{"provider": "Azure\\ud800", "gpu": "H100", "region": "eastus", "price": 2.5}]', encoding="utf-8")
    rules = ValidationRules()
    legacy = legacy_merge({}, [], "gpu", read_existing(path), rules)
    write_and_check(path, "gpu", served("gpu", validate(legacy, "gpu", rules)))


@pytest.mark.parametrize("raw, expected", [("2.95e1", 29.5), ("$1.2E-1/hr", 0.12), ("1e-3", 0.001), ("1e400", None),
                                           ("9" * 401, None), (int("9" * 401), None), ("-2e2 USD", -200.0)],
                         ids=["exponent", "exponent-in-price", "small-exponent", "1e400", "401-digit-text",
                              "401-digit-int", "negative-exponent-number"])
def test_parse_amount_reads_exponents_and_rejects_non_finite_with_a_reason(raw, expected):
    amount = parse_amount(raw, ValidationRules())
    assert amount.value == expected
    if expected is None: assert amount.reason


BAD_ANSWERS = {   # what each fake model sends over HTTP, through the real SDKs
    "qwen-max": '以下是价格 [1]：\n```json\n[{"provider": "Azure\\ud800", "gpu": "H100", "region": "eastus", "price": 2.5},'
                ' {"provider": "AWS", "gpu": "H100", "region": "us-east-1", "price": "2.95e1"}]\n```',
    "deepseek-chat": '[{"provider": ["Azure"], "gpu": "H100", "region": "eastus", "price": 25},'
                     ' {"provider": "Alibaba Cloud", "gpu": "A100", "region": "cn-beijing", "price": 60, "gpu_count": '
                     + "9" * 401 + "}]",
    "doubao-seed-1-6": '{"annual_twh": 1e400, "estimated_gw": NaN, "kwh_price": "0.08", "active_gpu_est": ' + "9" * 401 +
                       ', "source": "IEA\\udfff"} and [{"provider": {"name": "OpenAI"}, "model": "gpt-4o\\ud800", '
                       '"input_price": 2.5, "output_price": 10}]',
}


@pytest.mark.parametrize("path", ["learned", "legacy", "shadow"])
def test_fetch_survives_the_known_bad_answers_on_every_path(path, tmp_path, monkeypatch, capsys):
    "End to end (fake server, real SDKs, the fetch command): bad answers give rejections, never a traceback."
    from computepulse_ai.cli import main
    from computepulse_ai.fakes import FakeProviderServer
    from computepulse_ai.jobs import FILES, demo_config, demo_models
    for name, key in {"DASHSCOPE_API_KEY": "sk-a", "DEEPSEEK_API_KEY": "sk-b", "ARK_API_KEY": "sk-c"}.items():
        monkeypatch.setenv(name, key)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeProviderServer(seed=5, models=[m for m, _ in demo_models()]) as server:
        for model, answer in BAD_ANSWERS.items(): server.add_fault("content", model=model, text=answer)
        config = tmp_path / "config.json"
        config.write_text(json.dumps(demo_config(server, tmp_path / "data").to_dict()))
        out = tmp_path / "site"
        status = main(["fetch", "gpu", "token", "grid", "--config", str(config), "--out", str(out), "--path", path])
    assert status in (0, 1)
    for kind in ("gpu", "token", "grid_load"):
        file = out / FILES[kind]
        if file.exists():
            data = json.loads(file.read_bytes().decode("utf-8"), parse_constant=lambda w: pytest.fail(f"{w} in {file}"))
            assert data
    printed = capsys.readouterr().out
    assert all(kind in printed for kind in ("gpu", "token", "grid_load"))   # each data set was fetched and reported
