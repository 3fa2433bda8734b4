"""Speed of routing and learning updates. Last line: one JSON object.

route_us_p50     one AdaptiveRouter.route decision, 10 models x 5 task types (ε-greedy, cost limit not binding); the
                 deterministic part is memoised per (task type, bar, limit, ...) under the engine's score revision
route_cold_us_p50  the same when a score changed since the last call (memo miss: the whole plan is computed)
route_limit_us_p50  the same with a binding cost limit (the budget-fitting path)
update_us_p50    one LearningEngine.update (online, EWMA)
batch_update_ms  one LearningEngine.update_batch over 1,000 runs x 10 models x 5 task types (EWMA, dense)
"""
import json
import logging
import time

import numpy as np

from computepulse_ai.core import ModelSpec, TaskType
from computepulse_ai.learning import BetaEstimator, LearningEngine
from computepulse_ai.routing import AdaptiveRouter, RouterConfig


def per_call_us(fn, calls=2000, repeats=15):
    """Median over `repeats` of the mean time per call of `calls` calls, in microseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls): fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return float(np.median(times))


def main():
    logging.getLogger("computepulse_ai").setLevel(logging.ERROR)   # the below-bar warnings of random scores are not the subject
    rng = np.random.default_rng(0)
    specs = [ModelSpec(f"m{i}", "simulated", input_price=float(rng.uniform(0.1, 5)), output_price=float(rng.uniform(0.1, 10)),
                       typical_latency_s=float(rng.uniform(1, 10))) for i in range(10)]
    engine = LearningEngine()
    router = AdaptiveRouter(specs, engine, RouterConfig(), rng=np.random.default_rng(1))
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
    figures = {"route_us_p50": round(route_us, 2), "route_limit_us_p50": round(route_limit_us, 2),
               "route_cold_us_p50": round(route_cold_us, 2),
               "route_thompson_us_p50": round(route_thompson_us, 2), "update_us_p50": round(update_us, 2),
               "batch_update_ms": round(batch_ms, 3), "beta_batch_update_ms": round(beta_batch_ms, 3)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
