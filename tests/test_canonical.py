"""Canonical names (issue 12 item 4): real-world spellings, collected from cloud price pages, vendor docs, API model ids
and LLM answers of the ComputePulse kind, each mapped to the one entity it names."""
import pytest
from hypothesis import given, settings, strategies as st

from computepulse_ai.canonical import Canonicaliser, compact, parse_gpu, parse_model, placeholder_reason, provider_name
from computepulse_ai.merging import default_merge_spec, merge_records

GPU_SPELLINGS = [
    ("RTX4090", "RTX 4090"), ("RTX 4090", "RTX 4090"), ("GeForce RTX 4090", "RTX 4090"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA RTX 4090 24GB", "RTX 4090"), ("4090", "RTX 4090"), ("rtx-4090", "RTX 4090"), ("RTX 4090 (24 GB)", "RTX 4090"),
    ("RTX 4090D", "RTX 4090D"), ("GeForce RTX 4090 D", "RTX 4090D"), ("RTX 3090", "RTX 3090"), ("RTX 5090 32GB", "RTX 5090"),
    ("A100 80GB", "A100 80GB"), ("A100 (80GB)", "A100 80GB"), ("A100-80GB", "A100 80GB"), ("A100 80G", "A100 80GB"),
    ("NVIDIA A100 80GB", "A100 80GB"), ("Tesla A100 80G", "A100 80GB"), ("A100（80GB）", "A100 80GB"),
    ("A100 40GB", "A100 40GB"), ("A100-40G", "A100 40GB"), ("NVIDIA A100 (40GB)", "A100 40GB"), ("A100 40 GB", "A100 40GB"),
    ("A100-SXM4-80GB", "A100 80GB SXM"), ("NVIDIA A100 80GB SXM4", "A100 80GB SXM"), ("A100 80GB PCIe", "A100 80GB PCIe"),
    ("A100 PCIe 40GB", "A100 40GB PCIe"), ("A100", "A100"), ("nvidia a100", "A100"),
    ("H100", "H100"), ("NVIDIA H100", "H100"), ("H100 80GB", "H100"), ("h100 (80 GB HBM3)", "H100"), ("H100 80GB HBM3", "H100"),
    ("H100 SXM", "H100 SXM"), ("H100 SXM5", "H100 SXM"), ("H100-SXM5-80GB", "H100 SXM"), ("NVIDIA H100 SXM5 80GB", "H100 SXM"),
    ("H100 PCIe", "H100 PCIe"), ("H100 PCI-E 80GB", "H100 PCIe"), ("H100 NVL", "H100 NVL"),
    ("H800", "H800"), ("NVIDIA H800 80GB", "H800"), ("H800 SXM", "H800 SXM"), ("H20", "H20"), ("NVIDIA H20 96GB", "H20"),
    ("H200", "H200"), ("H200 141GB", "H200"), ("L40S", "L40S"), ("NVIDIA L40S 48GB", "L40S"), ("l40s", "L40S"),
    ("L40", "L40"), ("L4", "L4"), ("NVIDIA L4 24GB", "L4"), ("L20", "L20"), ("A10G", "A10G"), ("A10", "A10"),
    ("Tesla T4", "T4"), ("T4 16GB", "T4"), ("V100 32GB", "V100 32GB"), ("Tesla V100-SXM2-16GB", "V100 16GB SXM"),
    ("A800 80GB", "A800 80GB"), ("A800", "A800"), ("RTX A6000", "RTX A6000"), ("A6000", "RTX A6000"),
    ("RTX 6000 Ada", "RTX 6000 Ada"), ("B200", "B200"), ("GH200", "GH200"),
    ("Ascend 910B", "Ascend 910B"), ("ASCEND 910B", "Ascend 910B"), ("华为昇腾910B", "Ascend 910B"), ("昇腾 910B", "Ascend 910B"),
    ("Huawei Ascend 910B", "Ascend 910B"), ("910B", "Ascend 910B"), ("MI300X", "MI300X"), ("AMD Instinct MI300X", "MI300X"),
    ("mi300x 192GB", "MI300X"), ("A10G (24 GiB)", "A10G"), ("A100显存80G", "A100 80GB"), ("8*A100-80G", "A100 80GB"),
    ("A800-SXM4-80GB", "A800 80GB SXM"), ("L40S-48G", "L40S"), ("GeForce RTX 3090 Ti", "RTX 3090 Ti"), ("AMD MI250X", "MI250X"), ("Gaudi2", "Gaudi 2"), ("Intel Gaudi 2", "Gaudi 2"),
]

PROVIDER_SPELLINGS = [
    ("阿里云", "Alibaba Cloud"), ("Aliyun", "Alibaba Cloud"), ("Alibaba Cloud", "Alibaba Cloud"), ("alibaba-cloud", "Alibaba Cloud"),
    ("阿里云 (Alibaba Cloud)", "Alibaba Cloud"), ("Alibaba Cloud / 阿里云", "Alibaba Cloud"), ("阿里云ECS", "Alibaba Cloud"),
    ("Baidu Intelligent Cloud", "Baidu AI Cloud"), ("Baidu Smart Cloud", "Baidu AI Cloud"), ("Baidu AI Cloud", "Baidu AI Cloud"),
    ("百度智能云", "Baidu AI Cloud"), ("百度千帆", "Baidu AI Cloud"), ("商汤", "SenseTime"), ("SenseTime", "SenseTime"),
    ("商汤科技", "SenseTime"), ("SenseCore", "SenseTime"), ("腾讯云", "Tencent Cloud"), ("Tencent Cloud", "Tencent Cloud"),
    ("腾讯云GPU云服务器", "Tencent Cloud"), ("火山引擎", "Volcengine"), ("Volcano Engine", "Volcengine"), ("Volcengine", "Volcengine"),
    ("华为云", "Huawei Cloud"), ("Huawei Cloud", "Huawei Cloud"), ("AWS", "AWS"), ("Amazon Web Services", "AWS"),
    ("AWS EC2", "AWS"), ("Amazon EC2", "AWS"), ("AWS (Amazon Web Services)", "AWS"), ("亚马逊云科技", "AWS"),
    ("GCP", "Google Cloud"), ("Google Cloud", "Google Cloud"), ("Google Cloud Platform", "Google Cloud"), ("谷歌云", "Google Cloud"),
    ("Azure", "Azure"), ("Microsoft Azure", "Azure"), ("微软云", "Azure"), ("Lambda Labs", "Lambda"), ("Lambda", "Lambda"),
    ("Lambda Cloud", "Lambda"), ("CoreWeave", "CoreWeave"), ("Core Weave", "CoreWeave"), ("RunPod", "RunPod"), ("runpod.io", "RunPod"),
    ("Vast.ai", "Vast.ai"), ("vast ai", "Vast.ai"), ("Oracle Cloud Infrastructure", "Oracle Cloud"), ("OCI", "Oracle Cloud"),
    ("深度求索", "DeepSeek"), ("DeepSeek", "DeepSeek"), ("OpenAI", "OpenAI"), ("Open AI", "OpenAI"), ("智谱AI", "Zhipu AI"),
    ("月之暗面", "Moonshot AI"), ("Moonshot", "Moonshot AI"), ("金山云", "Kingsoft Cloud"), ("天翼云", "China Telecom Cloud"),
    ("UCloud优刻得", "UCloud"), ("京东云", "JD Cloud"), ("AutoDL", "AutoDL"),
]

MODEL_SPELLINGS = [
    ("GPT-4o mini", "GPT-4o mini"), ("GPT-4o-mini", "GPT-4o mini"), ("gpt-4o-mini", "GPT-4o mini"),
    ("gpt-4o-mini-2024-07-18", "GPT-4o mini"), ("GPT4o mini", "GPT-4o mini"), ("GPT-4o", "GPT-4o"), ("gpt-4o", "GPT-4o"),
    ("gpt-4o-2024-08-06", "GPT-4o"), ("GPT4o", "GPT-4o"), ("chatgpt-4o-latest", "GPT-4o"), ("GPT-4 Turbo", "GPT-4 Turbo"),
    ("gpt-4-turbo", "GPT-4 Turbo"), ("gpt-3.5-turbo", "GPT-3.5 Turbo"), ("GPT-4.1 mini", "GPT-4.1 mini"),
    ("gpt-4.1-mini", "GPT-4.1 mini"), ("o3-mini", "o3-mini"), ("o1", "o1"), ("o1-mini", "o1-mini"),
    ("Claude3.5 Sonnet", "Claude 3.5 Sonnet"), ("Claude 3.5 Sonnet", "Claude 3.5 Sonnet"),
    ("claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet"), ("claude-3.5-sonnet", "Claude 3.5 Sonnet"),
    ("Claude-3.5-Sonnet", "Claude 3.5 Sonnet"), ("claude-3-5-haiku-20241022", "Claude 3.5 Haiku"),
    ("Claude 3 Opus", "Claude 3 Opus"), ("claude-3-opus-20240229", "Claude 3 Opus"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4"), ("Claude Sonnet 4", "Claude Sonnet 4"),
    ("Llama3-70B", "Llama 3 70B"), ("Llama 3 70B", "Llama 3 70B"), ("llama-3-70b-instruct", "Llama 3 70B"),
    ("Meta-Llama-3-70B-Instruct", "Llama 3 70B"), ("Llama-3.1-405B-Instruct", "Llama 3.1 405B"),
    ("llama3.1-8b", "Llama 3.1 8B"), ("Ernie4.0", "ERNIE-4.0"), ("ERNIE-4.0", "ERNIE-4.0"), ("ernie-4.0", "ERNIE-4.0"),
    ("文心一言4.0", "ERNIE-4.0"), ("ERNIE Bot 4.0", "ERNIE-4.0"), ("ERNIE-4.0-Turbo", "ERNIE-4.0-Turbo"),
    ("ERNIE-4.0-8K", "ERNIE-4.0-8K"), ("Qwen-Max", "Qwen-Max"), ("qwen-max", "Qwen-Max"), ("通义千问Max", "Qwen-Max"),
    ("qwen-max-latest", "Qwen-Max"), ("Qwen-Plus", "Qwen-Plus"), ("qwen-turbo", "Qwen-Turbo"),
    ("Qwen2.5-72B-Instruct", "Qwen2.5-72B"), ("qwen2.5-72b", "Qwen2.5-72B"), ("DeepSeek-V3", "DeepSeek-V3"),
    ("deepseek-v3", "DeepSeek-V3"), ("DeepSeek V3", "DeepSeek-V3"), ("deepseek-chat", "DeepSeek-V3"),
    ("DeepSeek-R1", "DeepSeek-R1"), ("deepseek-reasoner", "DeepSeek-R1"), ("deepseek r1", "DeepSeek-R1"),
    ("Gemini 1.5 Pro", "Gemini 1.5 Pro"), ("gemini-1.5-pro", "Gemini 1.5 Pro"), ("gemini-1.5-flash", "Gemini 1.5 Flash"),
    ("Mixtral-8x7B-Instruct", "Mixtral 8x7B"), ("GLM-4-Plus", "GLM-4-Plus"), ("glm-4-plus", "GLM-4-Plus"),
    ("Doubao-Pro-32k", "Doubao-Pro-32k"), ("doubao-pro-32k", "Doubao-Pro-32k"), ("豆包 Pro 32k", "Doubao-Pro-32k"),
    ("Kimi k1.5", "Kimi k1.5"), ("Qwen2-7B-Instruct", "Qwen2-7B"), ("qwen2.5-7b-instruct", "Qwen2.5-7B"),
    ("llama-3-1-8b", "Llama 3.1 8B"), ("claude-3-haiku-20240307", "Claude 3 Haiku"), ("gemini-2.0-flash", "Gemini 2.0 Flash"),
]

PLACEHOLDERS = ["Unknown", "unknown", "N/A", "n/a", "None", "各大云厂商", "多家云厂商", "主流云厂商", "Various", "various regions",
                "cheapest", "Cheapest region", "Global (Average)", "global average", "Market average", "Multiple", "TBD",
                "未知", "平均", "-", "?", "Other", "Average of major clouds", "US (lowest price)"]


def test_the_table_holds_at_least_100_spellings():
    assert len(GPU_SPELLINGS) + len(PROVIDER_SPELLINGS) + len(MODEL_SPELLINGS) >= 100
    assert len(GPU_SPELLINGS) >= 40 and len(PROVIDER_SPELLINGS) >= 40 and len(MODEL_SPELLINGS) >= 40


@pytest.mark.parametrize("spelling,canonical", GPU_SPELLINGS)
def test_gpu_spelling_to_entity(spelling, canonical):
    assert parse_gpu(spelling).name == canonical


@pytest.mark.parametrize("spelling,canonical", PROVIDER_SPELLINGS)
def test_provider_spelling_to_entity(spelling, canonical):
    assert provider_name(spelling) == canonical


@pytest.mark.parametrize("spelling,canonical", MODEL_SPELLINGS)
def test_model_spelling_to_entity(spelling, canonical):
    assert parse_model(spelling).name == canonical


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholder_is_not_a_name(placeholder):
    assert placeholder_reason(placeholder)


@pytest.mark.parametrize("name", ["AWS", "Global", "us-east-1", "华北2(北京)", "Vast.ai", "US-Texas", "East US", "广州"])
def test_real_names_are_not_placeholders(name):
    assert placeholder_reason(name) is None


def test_memory_variants_stay_distinct():
    assert len({parse_gpu(s).name for s in ("A100 40GB", "A100 80GB", "A100")}) == 3
    assert len({parse_gpu(s).name for s in ("H100 SXM", "H100 PCIe", "H100")}) == 3
    assert len({parse_gpu(s).name for s in ("V100 16GB", "V100 32GB")}) == 2


def test_display_names_keep_the_vendor_case():
    assert {parse_gpu(s).name for s in ("ASCEND 910B", "ascend 910b", "昇腾910B")} == {"Ascend 910B"}
    assert parse_model("QWEN-MAX").name == "Qwen-Max" and parse_model("ernie-4.0").name == "ERNIE-4.0"
    assert parse_gpu("ASCEND 910B").name == "Ascend 910B"
    assert parse_gpu("Brand New XPU-9").name == "Brand New XPU-9"       # unknown names are never re-cased


def test_extra_aliases_from_config_extend_every_table():
    canon = Canonicaliser.from_config({"provider": {"星星云": "StarCloud"}, "gpu": {"A100 SXM4 80G (特供)": "A100 80GB"},
                                       "model": {"our-house-model": "Qwen-Max"}}, {"region": ["总部机房"]})
    assert canon.name("provider", "星星云") == "StarCloud"
    assert canon.name("gpu", "A100 SXM4 80G (特供)") == "A100 80GB"
    assert canon.key_part("model", "our-house-model") == canon.key_part("model", "qwen-max")
    assert canon.placeholder("region", "总部机房") and not canon.placeholder("provider", "AWS")
    with pytest.raises(ValueError): Canonicaliser(aliases={"gpu": "not a table"})


def _variants(table):
    groups = {}
    for spelling, canonical in table: groups.setdefault(canonical, []).append(spelling)
    return groups


GPU_GROUPS = _variants(GPU_SPELLINGS)
PROVIDER_GROUPS = _variants([(s, c) for s, c in PROVIDER_SPELLINGS if c in ("Alibaba Cloud", "AWS", "Tencent Cloud",
                                                                          "Baidu AI Cloud", "Lambda", "SenseTime")])
MODEL_GROUPS = _variants(MODEL_SPELLINGS)


@st.composite
def gpu_answers(draw):
    "Three models' answers over the same entities, each spelling every name its own way (and in its own order)."
    gpus = draw(st.lists(st.sampled_from(sorted(GPU_GROUPS)), min_size=1, max_size=6, unique=True))
    providers = draw(st.lists(st.sampled_from(sorted(PROVIDER_GROUPS)), min_size=1, max_size=3, unique=True))
    entities = [(p, g) for p in providers for g in gpus]
    answers = {}
    for model in ("a", "b", "c"):
        records = [{"provider": draw(st.sampled_from(PROVIDER_GROUPS[p])), "region": draw(st.sampled_from(["us-east-1", "US-East-1", "us east 1"])),
                    "gpu": draw(st.sampled_from(GPU_GROUPS[g])), "price": 2.0} for p, g in entities]
        answers[model] = draw(st.permutations(records))
    return entities, answers


@settings(max_examples=150, deadline=None)
@given(gpu_answers())
def test_merged_output_holds_one_record_per_real_entity(case):
    entities, answers = case
    merged = merge_records(answers, {"a": 0.9, "b": 0.6, "c": 0.5}, default_merge_spec("gpu"))
    assert len(merged.data) == len(entities)
    assert {(r["provider"], r["gpu"]) for r in merged.data} == set(entities)        # canonical names shown


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(MODEL_GROUPS)), st.data())
def test_every_model_spelling_keys_alike(canonical, data):
    spellings = data.draw(st.lists(st.sampled_from(MODEL_GROUPS[canonical]), min_size=2, max_size=4))
    assert len({compact(parse_model(s).name) for s in spellings}) == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_any_text_reads_without_crashing_and_never_loses_an_unknown_name(text):
    canon = Canonicaliser()
    for kind in ("provider", "gpu", "model", "region"):
        name = canon.name(kind, text)
        assert isinstance(name, str)
        if text.strip(): assert name.strip()
    canon.placeholder("region", text)


# ---- a trailing "GPU" is a word, not a count (found by the realistic fake world: "H100 GPU" read as 100× "H") -----------

from computepulse_ai.canonical import GPU_MODELS  # noqa: E402

DATACENTRE_CODES = sorted(m.name for m in GPU_MODELS.values() if any(ch.isdigit() for ch in m.name))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DATACENTRE_CODES), st.sampled_from(["{} GPU", "NVIDIA {} GPU", "Nvidia {} GPU", "NVIDIA {} Tensor Core GPU",
                                                            "{} GPUs", "{} Tensor Core", "{} card", "{}卡"]),
       st.sampled_from([None, 2, 4, 8]))
def test_a_gpu_word_after_the_model_number_is_not_a_count(name, template, count):
    written = template.format(name)
    read = parse_gpu(written)
    assert (read.name, read.count) == (name, None), written
    for counted in (f"{count}x {written}", f"{written} x{count}", f"{count} GPUs {name}", f"{name} ({count} GPUs)") if count else ():
        assert (parse_gpu(counted).name, parse_gpu(counted).count) == (name, count), counted


# ---- the fake world's spelling tables: every variant keys like the name it stands for ---------------------------------

from computepulse_ai.fakes import GPU_SPELLINGS as FAKE_GPUS, MODEL_SPELLINGS as FAKE_MODELS, PROVIDER_SPELLINGS as FAKE_PROVIDERS  # noqa: E402

FAKE_VARIANTS = [(kind, name, variant) for kind, table in (("gpu", FAKE_GPUS), ("provider", FAKE_PROVIDERS), ("model", FAKE_MODELS))
                 for name, variants in table.items() for variant in (*variants, name.upper())]


@pytest.mark.parametrize("kind,name,variant", FAKE_VARIANTS)
def test_every_fake_world_spelling_is_one_entity(kind, name, variant):
    "What the benchmark and the demo write must merge into one record ('腾讯云计算' and 'H100 GPU' did not)."
    canon = Canonicaliser()
    assert canon.key_part(kind, variant) == canon.key_part(kind, name), (variant, canon.name(kind, variant))


@pytest.mark.parametrize("placeholder", ["其他模型", "其它模型", "其他", "Other models", "others (various)", "Unknown model"])
def test_other_and_unknown_models_are_placeholders(placeholder):
    "'其他模型' ('other models') was served as a model name by the realistic fake world."
    assert placeholder_reason(placeholder) is not None
    assert placeholder_reason("Othello GPU Cloud") is None
