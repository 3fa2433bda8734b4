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


@pytest.fixture
def file_io_spy(monkeypatch):
    """Records (kind, thread id) of every `os.open`/`os.write`/`os.fsync` on a path containing `spy.match`, while
    `spy.watching` is set: which thread does a component's file I/O."""
    import os
    import threading
    from pathlib import Path
    from types import SimpleNamespace
    spy = SimpleNamespace(calls=[], watching=threading.Event(), match="")

    def wrap(kind, real):
        def wrapper(target, *args, **kwargs):
            if spy.watching.is_set():
                try: name = target if isinstance(target, (str, Path)) else os.readlink(f"/proc/self/fd/{target}")
                except OSError: name = ""
                if spy.match in str(name): spy.calls.append((kind, threading.get_ident()))
            return real(target, *args, **kwargs)
        return wrapper

    for kind in ("open", "write", "fsync"): monkeypatch.setattr(os, kind, wrap(kind, getattr(os, kind)))
    return spy
