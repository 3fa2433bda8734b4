"""Shared test set-up: every test starts with no warning held back by the package's repeat filter.

`computepulse_ai.core.repeats` aggregates a warning repeated within a minute; without this reset, a test that
checks for a warning would depend on whether an earlier test in the same process logged it."""
import pytest


@pytest.fixture(autouse=True)
def _fresh_repeat_filter():
    from computepulse_ai.core import repeats
    repeats.reset()
    yield
    repeats.reset()
