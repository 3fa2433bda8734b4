"""Classifier properties (SPEC §8: P6, P7, P8, P9) and the ComputePulse prompts."""
from hypothesis import given, settings, strategies as st

from computepulse_ai.classifier import TaskClassifier
from computepulse_ai.core import Request, TaskType

words = ["price", "价格", "租赁", "验证", "核实", "历史", "趋势", "分析", "推理", "what is", "GPU", "H100", "token",
         "估算", "verify", "trend", "explain", "？", "JSON", "数据", "云厂商", "electricity", "电费"]
prompts = st.one_of(st.text(min_size=1, max_size=120).filter(str.strip),
                    st.lists(st.sampled_from(words), min_size=1, max_size=12).map(" ".join))
labelled = st.lists(st.tuples(prompts, st.sampled_from(list(TaskType))), min_size=1, max_size=25)


@settings(max_examples=100, deadline=None)
@given(prompts)
def test_p6_every_request_gets_a_valid_task_type(prompt):
    result = TaskClassifier().classify(prompt)
    assert isinstance(result.task_type, TaskType)
    assert 0 <= result.confidence <= 1
    assabs = abs(sum(result.scores.values()) - 1)
    assert assabs < 1e-9


@settings(max_examples=50, deadline=None)
@given(prompts, st.sampled_from([None, "gpu", "token", "grid_load"]))
def test_p7_the_request_carries_its_task_type(prompt, data_type):
    request = Request(prompt=prompt, data_type=data_type)
    result = TaskClassifier().annotate(request)
    assert request.task_type is result.task_type and isinstance(request.task_type, TaskType)
    assert request.classification_confidence == result.confidence


@settings(max_examples=100, deadline=None)
@given(prompts, st.floats(0, 1))
def test_p8_below_the_threshold_the_multi_model_path_is_taken(prompt, threshold):
    result = TaskClassifier(low_confidence=threshold).classify(prompt)
    assert result.multi_model == (result.confidence < threshold)


@settings(max_examples=60, deadline=None)
@given(labelled)
def test_p9_accuracy_on_seen_feedback_never_drops(feedback):
    classifier = TaskClassifier()
    seen = []
    for prompt, label in feedback:
        seen.append((prompt, label))
        before = classifier.accuracy(seen)
        classifier.learn(prompt, label)
        assert classifier.accuracy(seen) >= before
        assert classifier.weights_accuracy() >= 0  # weights-only accuracy is tracked too


@settings(max_examples=30, deadline=None)
@given(labelled)
def test_learned_state_round_trips(feedback):
    classifier = TaskClassifier()
    for prompt, label in feedback: classifier.learn(prompt, label)
    restored = TaskClassifier.from_state(classifier.to_state())
    for prompt, _ in feedback: assert restored.classify(prompt) == classifier.classify(prompt)


def test_computepulse_prompts():
    c = TaskClassifier()
    gpu = "请搜索并返回当前主要云厂商的GPU租赁价格（H100/A100等），以JSON数组返回，字段 provider, region, gpu, price, currency"
    token = "请列出主流大模型API的token价格（每百万token输入/输出价格，美元）以JSON返回"
    energy = "估算全球AI数据中心年耗电量(TWh)、平均功率(GW)、电价和在用GPU数量，以JSON返回"
    check = '验证以下GPU价格数据是否准确 [{"provider": "AWS", "gpu": "H100", "price": 2.49}]'
    assert c.classify(gpu).task_type is TaskType.PRICE_EXTRACTION and not c.classify(gpu).multi_model
    assert c.classify(token).task_type is TaskType.PRICE_EXTRACTION
    assert c.classify(energy).task_type is TaskType.COMPLEX_REASONING
    assert c.classify(check).task_type is TaskType.DATA_VALIDATION
    assert c.classify("核实这些租赁价格").task_type is TaskType.DATA_VALIDATION
    assert c.classify("分析过去三年H100价格的历史趋势").task_type is TaskType.HISTORICAL_ANALYSIS


def test_caller_task_type_is_kept():
    request = Request(prompt="anything", task_type="data_validation")
    TaskClassifier().annotate(request)
    assert request.task_type is TaskType.DATA_VALIDATION and request.classification_confidence == 1.0
