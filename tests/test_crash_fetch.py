"""Crash safety of the real `fetch` command (issue 11): SIGKILL it at random moments, many times, on the learned and
shadow paths, against the fake providers with faults on and realistic (messy) answers, and after every kill check
what an operator and the next run depend on: the data files (valid JSON, never shrunk), the history and request
logs (every complete line parses; a torn line only ever as the last line of the moment, isolated by the loader),
the scores file and the classifier state (they load).

Each run is the CLI's `main(["fetch", ...])` in its own process, forked from a helper process that has already
imported the package and the SDKs (a fresh interpreter per run would spend most of the test importing); the
helper kills the child with SIGKILL after a delay chosen here from a seeded generator."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from computepulse_ai.classifier import TaskClassifier
from computepulse_ai.compat import ShadowDiff
from computepulse_ai.fakes import DefectRates, FakeProviderServer
from computepulse_ai.jobs import FILES, demo_config, demo_models
from computepulse_ai.storage import HistoryLog, ScoreStore
from computepulse_ai.tracking import RequestRecord

KILLS = 50

FORK_SERVER = textwrap.dedent('''
    import json, os, signal, sys, time
    import computepulse_ai.cli, computepulse_ai.jobs, computepulse_ai.orchestrator, computepulse_ai.providers  # noqa: F401
    from computepulse_ai.cli import main
    for name in ("openai", "dashscope", "volcenginesdkarkruntime", "httpx", "aiohttp", "numpy", "pandas"):
        try: __import__(name)
        except ImportError: pass
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:                                   # the child: one `computepulse-ai fetch` run
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1); os.dup2(log, 2)
            try: code = main(job["argv"])
            except SystemExit as e: code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                import traceback; traceback.print_exc(); code = 99
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(int(code or 0))
        status, killed = None, False
        deadline = None if job["kill_after"] is None else started + job["kill_after"]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done: break
            if deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL); killed = True
                os.waitpid(pid, 0); status = None
                break
            time.sleep(0.002)
        rc = None if status is None else os.waitstatus_to_exitcode(status)
        print(json.dumps({"killed": killed, "rc": rc, "elapsed": time.monotonic() - started}), flush=True)
''')


class ForkServer:
    "The helper process that forks one fetch per request and kills it on time."

    def __init__(self, env):
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, argv, kill_after, log):
        self.proc.stdin.write(json.dumps({"argv": argv, "kill_after": kill_after, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Checker:
    "What must hold after every kill; remembers torn lines so that, once isolated, they are known (not new damage)."

    def __init__(self, out: Path, data: Path):
        self.out, self.data = out, data
        self.sizes = {kind: 0 for kind in FILES}
        self.torn: dict[str, set[bytes]] = {}

    def data_files(self):
        for kind, name in FILES.items():
            path = self.out / name
            if not path.exists(): continue
            content = json.loads(path.read_bytes().decode("utf-8"))      # valid JSON, never half written
            if kind == "grid_load":
                assert isinstance(content, dict) and {"annual_twh", "kwh_price"} <= set(content)
                size = 1
            else:
                assert isinstance(content, list) and content and all(isinstance(r, dict) and "provider" in r for r in content)
                size = len(content)
            assert size >= self.sizes[kind], f"{name} shrank from {self.sizes[kind]} to {size} records"
            self.sizes[kind] = size

    def jsonl(self, path: Path, record_type=None):
        if not path.exists(): return
        data = path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()
        known = self.torn.setdefault(path.name, set())
        for line in lines:
            if not line.strip(): continue
            try: json.loads(line)
            except ValueError:
                assert line in known, f"{path.name}: a complete line that does not parse and was never a torn tail: {line[:120]!r}"
        if tail: known.add(tail)                                          # at most this one, the last line, is torn
        report = HistoryLog(path, record_type=record_type).read() if record_type else HistoryLog(path).read()   # never raises
        assert not any("invalid record" in issue for issue in report.issues), report.issues[:3]
        assert len(report.issues) <= len(known), report.issues[:3]      # only the torn lines, each isolated

    def state(self):
        scores = self.data / "confidence_scores.json"
        if scores.exists():
            json.loads(scores.read_bytes())                              # an atomic replace: never half
            ScoreStore(scores).load()
        classifier = self.data / "classifier_state.json"
        if classifier.exists(): TaskClassifier.from_state(json.loads(classifier.read_bytes()))

    def all(self):
        self.data_files()
        self.jsonl(self.data / "performance_history.jsonl")
        self.jsonl(self.data / "requests.jsonl", RequestRecord)
        self.jsonl(self.data / "shadow_diffs.jsonl", ShadowDiff)
        self.state()


@pytest.fixture
def world():
    messy = DefectRates(truncation=0.05, citation=0.2)
    fakes = [m for m, _ in demo_models()]
    for fake in fakes:
        fake.defects, fake.latency_s, fake.latency_jitter_s = messy, 0.01, 0.05
    with FakeProviderServer(seed=11, models=fakes) as server:
        server.add_fault("status", status=500, probability=0.1)
        server.add_fault("status", status=429, retry_after=0.05, probability=0.05)
        server.add_fault("delay", delay_range_s=(0.0, 0.15), probability=0.3)
        server.add_fault("garbage", probability=0.04)
        server.add_fault("reset", probability=0.03)
        server.add_fault("content", probability=0.04, text='[{"provider": "AWS", "region": "US-East-1", "gpu": "H100", "price": nu')
        yield server


def test_sigkill_fetch_at_random_moments_leaves_everything_loadable(tmp_path, world):
    cfg = demo_config(world, tmp_path / "data").to_dict()
    cfg["storage"] = {"folder": str(tmp_path / "data"), "durability": "each"}
    cfg["execution"] = {"timeout_s": 3.0, "deadline_s": 6.0, "max_attempts": 2, "base_delay_s": 0.02}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    out = tmp_path / "site"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "DASHSCOPE_API_KEY": "crash-test-key", "DEEPSEEK_API_KEY": "crash-test-key", "ARK_API_KEY": "crash-test-key"}
    rng = random.Random(20261201)
    checker = Checker(out, tmp_path / "data")
    forks = ForkServer(env)
    try:
        argv = lambda path: ["fetch", "gpu", "token", "grid", "--config", str(config), "--out", str(out), "--path", path]
        first = forks.run(argv("learned"), None, tmp_path / "runs.log")      # how long a whole run takes here
        assert first["rc"] in (0, 1), (tmp_path / "runs.log").read_text()[-3000:]
        checker.all()
        whole = [first["elapsed"]]                     # durations of runs that finished: kill moments span a whole run
        kills, runs, paths = 0, 0, {"learned": 0, "shadow": 0}
        while kills < KILLS and runs < 4 * KILLS:
            path = ("learned", "shadow")[runs % 2]
            span = 1.1 * sorted(whole)[len(whole) // 2]    # the first run is cold: follow the median of finished runs
            result = forks.run(argv(path), rng.uniform(0.0, span), tmp_path / "runs.log")
            runs += 1
            if result["killed"]:
                kills += 1
                paths[path] += 1
            else:
                assert result["rc"] in (0, 1), (tmp_path / "runs.log").read_text()[-3000:]   # never a crash
                whole.append(result["elapsed"])
            checker.all()
        final = forks.run(argv("shadow"), None, tmp_path / "runs.log")         # and the job still runs afterwards
        assert final["rc"] in (0, 1), (tmp_path / "runs.log").read_text()[-3000:]
        checker.all()
    finally:
        forks.close()
    print(f"crash test: {kills} kills in {runs} runs {paths}; a whole run took {first['elapsed']:.2f} s")
    assert kills >= KILLS and min(paths.values()) >= KILLS // 2 - 1, (kills, runs, paths)
    assert any((out / name).exists() for name in FILES.values())
    assert world.requests and any(r.fault for r in world.requests)               # faults were on
