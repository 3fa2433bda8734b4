"""Speed of routing and learning updates. Last line: one JSON object. Times are process CPU time (the machine is shared).

The orchestrator's real per-request path, with the shipped configuration written out below (the script stops if a
shipped default differs from it, so it never measures a path the shipped config does not take). For every request
`AIOrchestrator` routes (`AdaptiveRouter.route_request`), then builds the decision core's plan (`AIOrchestrator._plan`:
the learned evidence of the task type, one posterior draw of every model's reliability because
`routing.sampled_decisions` is on, costs); after each round of answers it asks the decision core whether to stop or
whom to call (`RequestPlan.observe` + `RequestPlan.next_model`). Three models (the shipped ComputePulse table of
config.example.json), learned state after 30 rounds of feedback, the five task types in turn:

route_us_p50         route_request + _plan while no score changed since that task type's last request (a burst of
                     concurrent requests): the router's deterministic part is memoised per (task type, bar, ...)
route_cold_us_p50    the same when a score changed since (sequential requests: each one's feedback moves a score)
decide_round_us_p50  one stop-or-call decision after the first answer (observe + next_model)

The router alone (10 models x 5 task types, ε-greedy, cost limit not binding), as before:
router_us_p50 / router_cold_us_p50 / route_limit_us_p50  memo hit / memo miss / a binding cost limit (budget fitting)
route_thompson_us_p50  exploration "thompson" (not shipped): 64 draws per decision
update_us_p50    one LearningEngine.update (online, EWMA)
batch_update_ms  one LearningEngine.update_batch over 1,000 runs x 10 models x 5 task types (EWMA, dense)
"""
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from computepulse_ai.config import Config
from computepulse_ai.core import ModelSpec, Request, TaskType
from computepulse_ai.learning import BetaEstimator, LearningEngine
from computepulse_ai.orchestrator import AIOrchestrator
from computepulse_ai.routing import AdaptiveRouter, RouterConfig

# every setting the routing path reads, at its shipped value
SHIPPED = {"quality_threshold": 0.8, "cost_limit_usd": None,
           "routing.strategies": {"simple_query": "SINGLE_FAST", "complex_reasoning": "ADAPTIVE",
                                  "data_validation": "DUAL_VALIDATION", "price_extraction": "ADAPTIVE",
                                  "historical_analysis": "ADAPTIVE"},
           "routing.task_thresholds": {"price_extraction": 0.95, "data_validation": 0.95},
           "routing.low_confidence": 0.6, "routing.exploration": "epsilon", "routing.epsilon": 0.1,
           "routing.explore_below_samples": 10, "routing.input_tokens": 1500, "routing.output_tokens": 1500,
           "routing.sampled_decisions": True, "routing.error_price_usd": 0.15,
           "learning.estimator": "agreement", "learning.label_weight": 3.0, "learning.discount": 0.98,
           "classifier.low_confidence": 0.6}


def per_call_us(fn, calls=2000, repeats=15):
    """Median over `repeats` of the mean CPU time per call of `calls` calls, in microseconds."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls): fn()
        times.append((time.process_time() - start) / calls * 1e6)
    return float(np.median(times))


def nested(flat: dict) -> dict:
    "{'a.b': v} -> {'a': {'b': v}}."
    out: dict = {}
    for key, value in flat.items():
        *parents, last = key.split(".")
        node = out
        for p in parents: node = node.setdefault(p, {})
        node[last] = value
    return out


def shipped_orchestrator(folder: str) -> tuple[AIOrchestrator, object]:
    "An orchestrator on the shipped settings (checked against the defaults) and the example's three models."
    models = json.loads((Path(__file__).parents[1] / "config.example.json").read_text())["models"]
    defaults = Config.from_dict({})
    differs = {k: (v, defaults[k]) for k, v in SHIPPED.items() if defaults[k] != v}
    if differs: raise SystemExit(f"the shipped defaults changed, update SHIPPED first: {differs}")
    cfg = Config.from_dict({**nested(SHIPPED), "models": models})
    return AIOrchestrator(cfg, folder=folder, seed=0), cfg


def real_path(folder: str) -> dict:
    "The orchestrator's per-request routing and decision path on the shipped config."
    orchestrator, cfg = shipped_orchestrator(folder)
    engine, router = orchestrator.engine, orchestrator.router
    rng = np.random.default_rng(0)
    for _ in range(30): engine.update_batch(rng.random(engine.state.shape[1:]) < 0.85)
    requests = [Request("benchmark", task_type=t, classification_confidence=0.9,
                        quality_threshold=cfg["routing.task_thresholds"].get(t.value, cfg["quality_threshold"]))
                for t in TaskType]
    counter = iter(range(10**9))

    def route():
        request = requests[next(counter) % len(requests)]
        return orchestrator._plan(request, router.route_request(request), cfg)

    def cold():
        engine.revision += 1   # what the feedback of the previous request does: the memo no longer applies
        return route()

    price = requests[list(TaskType).index(TaskType.PRICE_EXTRACTION)]
    plan = orchestrator._plan(price, router.route_request(price), cfg)
    first = {plan.names[0]: 0}

    def decide():
        plan.called[:] = False
        plan.called[0, :plan.n_first] = True
        return plan.next_model(plan.observe(first))

    figures = {"route_us_p50": round(per_call_us(route), 2), "route_cold_us_p50": round(per_call_us(cold, calls=1000), 2),
               "decide_round_us_p50": round(per_call_us(decide, calls=500), 2)}
    asyncio.run(orchestrator.aclose())
    return figures


def router_only() -> dict:
    rng = np.random.default_rng(0)
    specs = [ModelSpec(f"m{i}", "simulated", input_price=float(rng.uniform(0.1, 5)), output_price=float(rng.uniform(0.1, 10)),
                       typical_latency_s=float(rng.uniform(1, 10))) for i in range(10)]
    engine = LearningEngine()
    router = AdaptiveRouter(specs, engine, RouterConfig(exploration="epsilon", epsilon=0.1, explore_below_samples=10),
                            rng=np.random.default_rng(1))
    for _ in range(30): engine.update_batch(rng.random((10, 5)) < 0.85)
    tasks = list(TaskType)
    counter = iter(range(10**9))
    route_us = per_call_us(lambda: router.route(tasks[next(counter) % 5], 0.9, cost_limit=10.0))
    route_limit_us = per_call_us(lambda: router.route(tasks[next(counter) % 5], 0.9, cost_limit=0.01))

    def cold():
        engine.revision += 1   # what any score update does: the memo no longer applies
        return router.route(tasks[next(counter) % 5], 0.9, cost_limit=10.0)

    route_cold_us = per_call_us(cold, calls=500)
    thompson = AdaptiveRouter(specs, engine, RouterConfig(exploration="thompson"), rng=np.random.default_rng(2))
    route_thompson_us = per_call_us(lambda: thompson.route(tasks[next(counter) % 5], 0.9), calls=300)
    update_us = per_call_us(lambda: engine.update("m3", tasks[next(counter) % 5], True), calls=10000)
    sim = LearningEngine([s.name for s in specs], batch_shape=(1000,))
    observed = (rng.random((1000, 10, 5)) < 0.85).astype(float)
    batch_ms = per_call_us(lambda: sim.update_batch(observed), calls=50) / 1000
    beta_sim = LearningEngine([s.name for s in specs], estimator=BetaEstimator(), batch_shape=(1000,))
    beta_batch_ms = per_call_us(lambda: beta_sim.update_batch(observed), calls=50) / 1000
    return {"router_us_p50": round(route_us, 2), "route_limit_us_p50": round(route_limit_us, 2),
            "router_cold_us_p50": round(route_cold_us, 2), "route_thompson_us_p50": round(route_thompson_us, 2),
            "update_us_p50": round(update_us, 2), "batch_update_ms": round(batch_ms, 3),
            "beta_batch_update_ms": round(beta_batch_ms, 3)}


def main():
    logging.getLogger("computepulse_ai").setLevel(logging.ERROR)   # the below-bar warnings of random scores are not the subject
    with tempfile.TemporaryDirectory() as folder:
        figures = real_path(folder)
    figures.update(router_only())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
