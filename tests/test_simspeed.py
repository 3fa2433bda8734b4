"""Speed work on the simulator must not change what it computes.

`tests/simspeed_fingerprints.json` holds a SHA-256 of every array `simulate` returns (per-step results, final learned
state, recorded learning signals, the replay log) for a set of (preset, policy, config, seed, sizes, block) cases,
written by this file from the code *before* a speed change (`python tests/test_simspeed.py --write`). The test
recomputes them: any change of any bit of any result fails it. A change of the decision rule itself (not of its speed)
moves them on purpose: then rewrite the file in the same commit and say so.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from computepulse_ai.learning import AgreementEstimator, BetaEstimator, EwmaEstimator
from computepulse_ai.simulation import SimConfig, simulate

FILE = Path(__file__).with_name("simspeed_fingerprints.json")


def _configs() -> dict:
    return {"default": None,
            "shipped": SimConfig.from_config(),
            "labels": SimConfig(truth_feedback=0.3),   # labelled observations: the copier discount (pair_discount) is live
            "thompson": SimConfig(exploration="thompson", estimator=BetaEstimator(discount=0.95)),
            "ewma": SimConfig(estimator=EwmaEstimator(), sampled_decisions=False, error_price=float("inf")),
            "review": SimConfig(estimator=AgreementEstimator(discount=0.9), review_threshold=0.6, exploration="none")}


# (preset, policy, config, seed, n_requests, n_runs, block)
CASES = [("computepulse", "ADAPTIVE", "default", 0, 120, 40, 1),
         ("computepulse", "per_task", "shipped", 1, 120, 40, 1),
         ("computepulse", "ADAPTIVE", "labels", 2, 100, 30, 1),
         ("computepulse_drift", "per_task", "shipped", 3, 160, 20, 8),
         ("steady", "SINGLE_FAST", "default", 4, 80, 25, 1),
         ("abrupt", "DUAL_VALIDATION", "ewma", 5, 100, 20, 1),
         ("outage", "TRIPLE_CONSENSUS", "default", 6, 100, 20, 1),
         ("join", "ADAPTIVE", "thompson", 7, 100, 20, 1),
         ("remove", "ADAPTIVE", "review", 8, 100, 20, 4),
         ("correlated", "cascade", "default", 9, 80, 20, 1),
         ("gradual", "always_all", "default", 10, 60, 10, 1),
         ("computepulse", "random", "default", 11, 60, 10, 1),
         ("computepulse", "cheapest", "default", 12, 60, 10, 1),
         ("computepulse", "oracle", "default", 13, 100, 20, 1),
         ("computepulse", "ADAPTIVE", "default", 14, 300, 3, 32),
         ("computepulse", "ADAPTIVE", "labels", 15, 1, 5, 1),
         ("computepulse", "per_task", "shipped", 16, 40, 500, 1)]

RESULT_ARRAYS = ("task", "correct", "cost", "latency", "n_models", "rounds", "tracking_error", "chose_best",
                 "final_state", "confidence")


def _digest(arrays) -> str:
    "SHA-256 of arrays by value: dtype-independent (bools and ints as int64, floats as float64), shape included."
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        canon = a.astype(np.float64 if a.dtype.kind == "f" else np.int64)
        h.update(str(canon.shape).encode())
        h.update(np.ascontiguousarray(canon).tobytes())
    return h.hexdigest()


def fingerprint(case) -> dict[str, str]:
    "Digest of each part of one case's results."
    name, policy, config, seed, n_requests, n_runs, block = case
    log: list = []
    result = simulate(name, policy, n_requests, n_runs, seed=seed, config=_configs()[config], record=True, log=log, block=block)
    out = {field: _digest([getattr(result, field)]) for field in RESULT_ARRAYS}
    out["signals"] = _digest([a for task, signal in ((s[0], s.full) for s in result.signals)
                              for a in (task, signal.correct, signal.observed, signal.weight, signal.labelled,
                                        signal.called, signal.failed)])
    out["log"] = _digest([a for step in log for a in (step.chosen, step.propensity, step.called, step.world.labels,
                                                      step.world.latency, step.world.cost, step.world.failed,
                                                      step.correct, step.weights)])
    return out


def _key(case) -> str: return "|".join(map(str, case))


@pytest.mark.parametrize("case", CASES, ids=_key)
def test_results_are_bit_identical_to_the_recorded_ones(case):
    recorded = json.loads(FILE.read_text())
    assert _key(case) in recorded, "run `python tests/test_simspeed.py --write` on the code before the change"
    assert fingerprint(case) == recorded[_key(case)]


def test_the_fingerprint_sees_a_one_bit_change():
    "The digest is not blind: one flipped result or one ulp of one cost changes it."
    result = simulate("computepulse", "ADAPTIVE", 30, 4, seed=0)
    base = _digest([result.correct, result.cost])
    flipped = result.correct.copy(); flipped[2, 7] = ~flipped[2, 7]
    nudged = result.cost.copy(); nudged[1, 3] = np.nextafter(nudged[1, 3], 1.0)
    assert _digest([flipped, result.cost]) != base
    assert _digest([result.correct, nudged]) != base
    assert _digest([result.correct.astype(np.int8), result.cost]) == base   # by value, not by dtype


if __name__ == "__main__" and "--write" in sys.argv:
    FILE.write_text(json.dumps({_key(c): fingerprint(c) for c in CASES}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(CASES)} fingerprints to {FILE}")


def test_keep_holds_only_the_named_results_and_they_are_the_full_runs():
    "A long run keeps what it needs: the kept arrays equal a full run's bit for bit, the others are not held."
    from computepulse_ai.core import InvalidFieldError
    from computepulse_ai.simulation import STEP_FIELDS
    full = simulate("computepulse_drift", "per_task", 90, 12, seed=3, config=SimConfig.from_config())
    lean = simulate("computepulse_drift", "per_task", 90, 12, seed=3, config=SimConfig.from_config(), keep=("n_models", "cost"))
    np.testing.assert_array_equal(lean.n_models, full.n_models)
    np.testing.assert_array_equal(lean.cost, full.cost)
    np.testing.assert_array_equal(lean.final_state, full.final_state)   # the same run, only less of it held
    assert all(getattr(lean, k) is None for k in STEP_FIELDS if k not in ("n_models", "cost"))
    assert lean.summary() == {k: v for k, v in full.summary().items() if k in ("cost", "models_per_request")}
    assert full.n_models.dtype == np.int64 and full.correct.dtype == bool and full.n_models.flags.c_contiguous
    with pytest.raises(InvalidFieldError): simulate("computepulse", "ADAPTIVE", 5, 2, keep=("accuracy",))
