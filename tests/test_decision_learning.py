"""Learning must not stall: the stop-or-call decision decides on a posterior draw of each reliability (Thompson
sampling), so a model whose reliability is uncertain keeps being asked until it is known.

Checked where the truth is known: in the simulator (true accuracies) and in the orchestrator with simulated
adapters of known accuracy (fixed seeds; nothing depends on timing).
"""
import asyncio
import json
import logging

import numpy as np

from computepulse_ai.core import Request, TaskType
from computepulse_ai.decision import decision_reliability
from computepulse_ai.learning import TASK_INDEX, AgreementEstimator, evidence_of
from computepulse_ai.orchestrator import AIOrchestrator
from computepulse_ai.simulation import Scenario, SimConfig, SimModel, simulate

PE = TASK_INDEX[TaskType.PRICE_EXTRACTION]


def two_models() -> Scenario:
    "Example 3's world: a strong dear model and a weaker cheap one, one task type."
    return Scenario("two", [SimModel("qwen", 0.8, input_price=1.6, output_price=3.2, latency_s=8.0, failure_rate=0.0),
                            SimModel("doubao", 0.7, input_price=0.8, output_price=1.6, latency_s=6.0, failure_rate=0.0)],
                    {"price_extraction": 1.0}, error_correlation=0.3)


def demo_world() -> Scenario:
    "The demo's price-extraction world: qwen strong and dear, deepseek weak and cheap, doubao in between."
    return Scenario("demo", [SimModel("qwen", 0.92, input_price=2.4 / 7.2, output_price=9.6 / 7.2, input_tokens=900, output_tokens=1400),
                             SimModel("deepseek", 0.62, input_price=0.28, output_price=1.1, input_tokens=900, output_tokens=1500),
                             SimModel("doubao", 0.75, input_price=0.8 / 7.2, output_price=8.0 / 7.2, input_tokens=900, output_tokens=1300)],
                    {"price_extraction": 1.0}, error_correlation=0.3)


def test_a_posterior_draw_is_the_mean_without_rng_and_spreads_with_uncertainty():
    est = AgreementEstimator()
    state = np.zeros((len(est.fields), 2000, 2))
    state[2, :, 0], state[3, :, 0] = 80.0, 20.0        # well known: 0.8 from 100 observations
    state[2, :, 1], state[3, :, 1] = 1.6, 0.4          # 0.8 from 2 observations: barely known
    ev = evidence_of(est, state)
    np.testing.assert_allclose(decision_reliability(ev, None), ev.reliability)
    draw = decision_reliability(ev, np.random.default_rng(0))
    assert (draw >= ev.reliability - 1e-12).all() and abs(draw[:, 0].mean() - ev.reliability[0, 0]) < 0.03   # optimistic: never below the mean
    assert draw[:, 1].std() > 3 * draw[:, 0].std()      # the uncertain model's draws spread: it may be worth asking


def test_a_lone_other_candidate_keeps_being_asked_and_learning_reaches_the_truth():
    # at the default error price a second opinion from the one other model could never change the served answer
    # on the mean reliabilities; decided on draws it is asked while the reliabilities are uncertain
    cfg = SimConfig.from_config()
    on = simulate(two_models(), "per_task", 300, 100, 0, cfg)
    off = simulate(two_models(), "per_task", 300, 100, 0, SimConfig.from_config(sampled_decisions=False))
    learned = on.final_state[0][:, :, PE].mean(0)
    assert np.abs(learned - 0.75).max() < 0.06, learned          # without labels only the pair's mean is identifiable
    assert on.n_models[:, -100:].mean() > 1.2                    # still cross-checking late in the run
    assert on.correct.mean() > off.correct.mean() + 0.02         # and it serves more right answers for it
    assert off.n_models[:, -100:].mean() < 1.1                   # the stall: on the means it stops asking


def test_the_demo_world_learns_the_true_ranking():
    r = simulate(demo_world(), "per_task", 300, 200, 0, SimConfig.from_config())
    learned = r.final_state[0][:, :, PE]
    right = (learned[:, 0] > learned[:, 2]) & (learned[:, 2] > learned[:, 1])   # qwen > doubao > deepseek
    assert right.mean() >= 0.95, right.mean()


def test_example_3s_two_model_world_learns_the_stronger_model_at_the_default_error_price(tmp_path):
    models = [{"name": "qwen", "provider": "simulated", "input_price": 1.6, "output_price": 3.2, "typical_latency_s": 8.0,
               "options": {"accuracy": 0.8, "latency_s": 0.0, "seed": 0}},
              {"name": "doubao", "provider": "simulated", "input_price": 0.8, "output_price": 1.6, "typical_latency_s": 6.0,
               "options": {"accuracy": 0.7, "latency_s": 0.0, "seed": 1}}]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"quality_threshold": 0.9, "routing": {"task_thresholds": {}}, "cache": {"enabled": False},
                                "storage": {"folder": "data"}, "models": models}))

    async def main():
        seen = []
        async with AIOrchestrator(path, seed=0) as orch:
            for n in range(150):
                await orch.process(Request("请返回主要云厂商的GPU租赁价格(JSON)", data_type="gpu"))
                if n + 1 in (30, 150):
                    seen.append(({m: float(orch.engine.score(m, "price_extraction")) for m in ("qwen", "doubao")},
                                 {m: float(orch.engine.sample_count(m, "price_extraction")) for m in ("qwen", "doubao")}))
        return seen

    (early, early_counts), (late, late_counts) = asyncio.run(main())
    assert early["qwen"] > early["doubao"], early                  # the ranking after 30 requests (was 0.34 < 0.48)
    assert abs(early["qwen"] - 0.8) < 0.1 and abs(early["doubao"] - 0.7) < 0.1, early   # near the truth (was 0.34, 0.48)
    assert min(early_counts.values()) >= 20, early_counts          # both keep being cross-checked (was 6 and 9)
    assert late["qwen"] > late["doubao"], late                     # and the ranking holds
    assert min(late_counts.values()) >= 100, late_counts


# ---- merged.confidence is a probability: the posterior that the served answer is right, and calibrated ------------
def test_the_simulated_confidence_is_calibrated():
    from computepulse_ai.simulation import calibration
    ece_oracle, _ = calibration(simulate("computepulse", "oracle", 1000, 40, 0))
    ece, table = calibration(simulate("computepulse", "per_task", 1000, 40, 0, SimConfig.from_config()))
    assert ece_oracle < 0.005, ece_oracle          # on the true accuracies the posterior is exact
    assert ece < 0.035, ece                        # learned from agreement: within 3.5 points on average
    top = table.iloc[-1]
    assert top["bin"] == 0.9 and abs(top["confidence"] - top["accuracy"]) < 0.01 and top["share"] > 0.4


def test_the_orchestrator_stores_the_posterior_and_it_matches_the_served_accuracy(tmp_path):
    from computepulse_ai.jobs import served_accuracy
    models = [{"name": n, "provider": "simulated", "input_price": p, "output_price": 2 * p, "typical_latency_s": 1.0,
               "options": {"accuracy": a, "latency_s": 0.0, "seed": i}}
              for i, (n, a, p) in enumerate([("a", 0.9, 2.0), ("b", 0.8, 0.5), ("c", 0.7, 0.3)])]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"cache": {"enabled": False}, "storage": {"folder": "data"}, "models": models}))

    async def main():
        out = []
        async with AIOrchestrator(path, seed=0) as orch:
            for _ in range(200):
                r = await orch.process(Request("请返回主要云厂商的GPU租赁价格(JSON)", data_type="gpu"))
                assert r.merged is not None and r.confidence == r.merged.confidence and 0.0 <= r.confidence <= 1.0
                assert set(r.posterior) == {x.model for x in r.responses if x.success}
                out.append((r.confidence, served_accuracy(r.data, "gpu", orch.rules) >= 0.999))
        return np.array(out)

    rows = asyncio.run(main())
    confidence, right = rows[:, 0], rows[:, 1]
    # the posterior is the merged answer's; validation (which it does not see) withholds doubtful lone values and so
    # serves a little more often right than it says: measured 0.934 said vs 0.970 served (it was 0.928 vs 0.927 before
    # the realistic-world validation rules); never overconfident, and within 0.05
    assert -0.05 < confidence.mean() - right.mean() < 0.01, (confidence.mean(), right.mean())
    assert right[confidence >= 0.95].mean() > right[confidence < 0.95].mean()   # higher confidence, more often right
