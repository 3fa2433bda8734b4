"""The decision core against a straightforward reference, and the property the fast paths rely on.

The simulator re-evaluates only the runs that may still call and updates only the rows that got an answer
(`Posterior.rows` / `Posterior.put`); that is exact only if every run's decision depends on that run's inputs alone.
These tests check it on random states, and check `answer_posterior` against a plain per-run, per-class loop.
"""
import math

import numpy as np
import pytest

from computepulse_ai.decision import Posterior, answer_posterior, call_gain, log_odds, next_call, pair_gain


def random_states(seed: int, runs: int = 200, models: int = 5, with_discount: bool = True):
    "Random answer states: labels with ties, some unanswered models, reliabilities, failure rates, K, pair discounts."
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (runs, models))
    answered = rng.random((runs, models)) < 0.6
    reliability = rng.uniform(0.3, 0.99, (runs, models))
    failure = rng.uniform(0.0, 0.3, (runs, models))
    n_classes = rng.choice([2.0, 3.0, 6.0, 20.0], runs)
    discount = None
    if with_discount:
        d = rng.uniform(0.0, 0.5, (runs, models, models))
        discount = (d + d.transpose(0, 2, 1)) / 2 * (1 - np.eye(models))
    return labels, answered, reliability, failure, n_classes, discount


def reference_posterior(labels, answered, weights, n_classes, discount):
    "One run at a time, one class at a time: score(C) = Σ_{j∈C} w_j − ½ Σ_{j,k∈C} d_jk; unseen classes score 0."
    runs, m = labels.shape
    post = np.zeros((runs, m))
    p_right = np.zeros(runs)
    for r in range(runs):
        members: dict[int, list[int]] = {}
        for j in range(m):
            if answered[r, j]: members.setdefault(int(labels[r, j]), []).append(j)
        if not members: continue
        score = {}
        for c, js in members.items():
            s = sum(weights[r, j] for j in js)
            if discount is not None: s -= 0.5 * sum(discount[r, j, k] for j in js for k in js)
            score[c] = s
        top = max(max(score.values()), 0.0)
        n_unseen = max(n_classes[r] - len(members), 0.0)
        total = sum(math.exp(s - top) for s in score.values()) + n_unseen * math.exp(-top)
        for c, js in members.items():
            for j in js: post[r, j] = math.exp(score[c] - top) / total
        p_right[r] = max(math.exp(s - top) / total for s in score.values())
    return post, p_right


@pytest.mark.parametrize("seed,with_discount", [(0, False), (1, True), (2, True)])
def test_answer_posterior_matches_reference(seed, with_discount):
    labels, answered, reliability, _, n_classes, discount = random_states(seed, with_discount=with_discount)
    weights = log_odds(reliability, n_classes)
    got = answer_posterior(labels, answered, weights, n_classes, discount)
    post, p_right = reference_posterior(labels, answered, weights, n_classes, discount)
    np.testing.assert_allclose(got.post, post, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.p_right, p_right, rtol=1e-9, atol=1e-12)
    has = answered.any(-1)
    assert (got.winner[~has] == -1).all()
    # the winner is a model of a most probable class
    w = got.winner[has]
    np.testing.assert_allclose(post[has][np.arange(len(w)), w], p_right[has], rtol=1e-9)


def decide(labels, answered, reliability, failure, n_classes, discount, costs, candidates, spent, target, voi, bar, price):
    "One round of the core: posterior, one-step gains, pair gains, the next call."
    weights = log_odds(reliability, n_classes)
    post = answer_posterior(labels, answered, weights, n_classes, discount)
    gain = call_gain(post, reliability, failure, n_classes)
    pairs = pair_gain(post, reliability, failure, n_classes, gain)
    pick = next_call(gain, costs, candidates, spent, post, 0.02, target, voi, bar, price, reliability, failure, n_classes)
    return post, gain, pairs, pick


@pytest.mark.parametrize("seed", [3, 4])
def test_batch_equals_row_by_row(seed):
    "What the simulator's live-rows loop relies on: each run's decision depends on that run alone."
    labels, answered, reliability, failure, n_classes, discount = random_states(seed, runs=120)
    rng = np.random.default_rng(seed + 100)
    runs, m = labels.shape
    costs = np.array([0.0008, 0.0028, 0.0043, 0.002, 0.009])
    candidates = ~answered & (rng.random((runs, m)) < 0.8)
    spent = np.where(answered, costs, 0.0).sum(-1)
    target = rng.integers(1, 4, runs)
    voi = rng.random(runs) < 0.8
    bar = rng.uniform(0.5, 0.99, runs)
    price = rng.choice([math.inf, 0.05, 1.0], runs)
    args = (costs, candidates, spent, target, voi, bar, price)
    post, gain, pairs, pick = decide(labels, answered, reliability, failure, n_classes, discount, *args)
    assert (pick >= 0).any() and (pick < 0).any()   # the states exercise both outcomes
    rows = np.array([5, 17, 18, 60, 119])
    sub = decide(*(x[rows] for x in (labels, answered, reliability, failure, n_classes, discount)),
                 costs, *(x[rows] for x in args[1:]))
    np.testing.assert_array_equal(sub[3], pick[rows])
    np.testing.assert_allclose(sub[1], gain[rows], rtol=0, atol=0)
    np.testing.assert_allclose(sub[2], pairs[rows], rtol=0, atol=0)
    # Posterior.rows / put round-trip: the rows put back are the rows taken
    fresh = answer_posterior(labels, answered, log_odds(reliability, n_classes), n_classes, discount)
    taken = fresh.rows(rows)
    blank = answer_posterior(labels, np.zeros_like(answered), log_odds(reliability, n_classes), n_classes, discount)
    blank.put(rows, taken)
    for name in Posterior.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(blank, name)[rows], getattr(fresh, name)[rows])


def test_no_candidate_means_stop():
    "What RequestPlan.next_model's shortcut relies on: with no model left to call, the rule always stops."
    labels, answered, reliability, failure, n_classes, discount = random_states(5, runs=150)
    runs, m = labels.shape
    post = answer_posterior(labels, answered, log_odds(reliability, n_classes), n_classes, discount)
    gain = call_gain(post, reliability, failure, n_classes)
    pick = next_call(gain, np.full(m, 0.001), np.zeros((runs, m), bool), np.zeros(runs), post, math.inf,
                     3, True, 0.999, math.inf, reliability, failure, n_classes)
    assert (pick == -1).all()


def test_runs_without_open_questions_stop():
    "What the simulator's and RequestPlan's early exits rely on: a run neither short of answers nor below the bar stops."
    from computepulse_ai.decision import open_questions
    labels, answered, reliability, failure, n_classes, discount = random_states(6, runs=300)
    runs, m = labels.shape
    rng = np.random.default_rng(60)
    post = answer_posterior(labels, answered, log_odds(reliability, n_classes), n_classes, discount)
    gain = call_gain(post, reliability, failure, n_classes)
    target, voi, bar = rng.integers(0, 3, runs), rng.random(runs) < 0.7, rng.uniform(0.3, 0.99, runs)
    fill, short = open_questions(post, target, voi, bar)
    pick = next_call(gain, np.full(m, 0.001), ~answered, np.zeros(runs), post, math.inf, target, voi, bar, math.inf,
                     reliability, failure, n_classes)
    closed = ~(fill | short)
    assert closed.any() and (~closed).any()
    assert (pick[closed] == -1).all()
    assert (pick[~closed] >= 0).any()
