"""Storage speed: batched and fsync-each appends, group commit under concurrency, loading a 1M-record history,
atomic score saves.

Prints human-readable lines, then as its LAST line one JSON object:
append_batched_per_s (target >= 50,000), append_fsync_each_per_s (one fsync per record, in the caller: reported),
group_commit_per_s (durability "each" through the group-commit writer: 1,000 concurrent asyncio "requests", each
appending 3 performance records and 1 request record and waiting for the acknowledgement — every acknowledged
record is on disk; reported with group_commit_records_per_fsync and group_commit_loop_lag_p99_ms, how late a 1 ms sleep of the
event loop woke while the writer fsynced: the appending itself runs on the loop, the disk work does not), load_1m_s (target <= 3 s),
scores_save_ms_p50 (1,000 model x task entries, atomic, target <= 10 ms).
"""
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from computepulse_ai.core import PerformanceRecord, TaskType
from computepulse_ai.storage import HistoryLog, ScoreStore, StorageManager, history_frame
from computepulse_ai.tracking import RequestRecord

TASKS = list(TaskType)


def make_records(n: int, start: datetime) -> list[PerformanceRecord]:
    return [PerformanceRecord(f"model{i % 10}", TASKS[i % 5], timestamp=start + timedelta(seconds=i),
                              was_correct=i % 3 != 0, response_time=1 + (i % 50) / 10, cost=0.0001 * (i % 7),
                              token_count=500 + i % 300, input_tokens=300, output_tokens=200 + i % 300,
                              request_id=f"req{i}") for i in range(n)]


def bench_append_batched(folder: Path, n: int = 200_000) -> float:
    records = make_records(n, datetime(2026, 1, 1, tzinfo=timezone.utc))
    history = HistoryLog(folder / "batched.jsonl", durability="batch", batch_size=1000)
    t0 = time.perf_counter()
    for r in records: history.append(r)
    history.close()
    return n / (time.perf_counter() - t0)


def bench_append_fsync_each(folder: Path, n: int = 2_000) -> float:
    records = make_records(n, datetime(2026, 1, 1, tzinfo=timezone.utc))
    history = HistoryLog(folder / "each.jsonl", durability="each")
    t0 = time.perf_counter()
    for r in records: history.append(r)
    history.close()
    return n / (time.perf_counter() - t0)


async def _group_commit(folder: Path, requests: int, rounds: int):
    storage = StorageManager(folder / "group", durability="each")
    request_log = storage.log("requests.jsonl", RequestRecord)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    records = make_records(3 * requests * rounds, start)
    lags, stop = [], asyncio.Event()

    async def monitor():   # how late does a 1 ms sleep wake up while the writer works?
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t0 - 0.001)

    async def request(i: int):
        for r in range(rounds):
            k = 3 * (r * requests + i)
            for rec in records[k:k + 3]: storage.history.append(rec)
            request_log.append(RequestRecord(f"q{i}-{r}", "price_extraction", models=["a", "b", "c"]))
            assert await asyncio.wrap_future(storage.commit())

    watcher = asyncio.create_task(monitor())
    t0 = time.perf_counter()
    await asyncio.gather(*[request(i) for i in range(requests)])
    elapsed = time.perf_counter() - t0
    stop.set()
    await watcher
    fsyncs = storage.writer.fsyncs
    assert await storage.aclose()
    written = 4 * requests * rounds
    lags.sort()
    return written / elapsed, written / max(fsyncs, 1), lags[int(0.99 * (len(lags) - 1))] * 1000


def bench_group_commit(folder: Path, requests: int = 1000, rounds: int = 5):
    return asyncio.run(_group_commit(folder, requests, rounds))


def bench_load_1m(folder: Path, n: int = 1_000_000) -> float:
    path = folder / "big.jsonl"
    line = make_records(1, datetime(2026, 1, 1, tzinfo=timezone.utc))[0].to_dict()
    with path.open("w") as f:   # write 1M distinct lines quickly (vary timestamp/model/task/request id)
        base = datetime(2025, 1, 1, tzinfo=timezone.utc)
        for i in range(n):
            line["timestamp"] = (base + timedelta(seconds=i)).isoformat()
            line["model"], line["task_type"], line["request_id"] = f"model{i % 10}", TASKS[i % 5].value, f"r{i}"
            line["was_correct"] = i % 3 != 0
            f.write(json.dumps(line) + "\n")
    history = HistoryLog(path)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        df = history_frame(history)
        times.append(time.perf_counter() - t0)
        assert len(df) == n, len(df)
    return min(times)


def bench_scores_save(folder: Path, n_models: int = 200, repeats: int = 50) -> float:
    store = ScoreStore(folder / "scores.json")
    entries = {(f"model{m}", t.value): {"score": (m % 100) / 100, "sample_count": m, "last_updated": "2026-01-01T00:00:00+00:00",
                                        "ewma": 0.5, "alpha": 1.0, "beta": 1.0}
               for m in range(n_models) for t in TASKS}   # 200 models x 5 task types = 1,000 entries
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        store.save(entries)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> dict:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:   # on the project's disk, not a tmpfs
        folder = Path(tmp)
        per_s, per_fsync, lag_ms = bench_group_commit(folder)
        results = {
            "append_batched_per_s": round(bench_append_batched(folder)),
            "append_fsync_each_per_s": round(bench_append_fsync_each(folder)),
            "group_commit_per_s": round(per_s),
            "group_commit_records_per_fsync": round(per_fsync, 1),
            "group_commit_loop_lag_p99_ms": round(lag_ms, 2),
            "load_1m_s": round(bench_load_1m(folder), 3),
            "scores_save_ms_p50": round(bench_scores_save(folder), 3),
        }
    for k, v in results.items(): print(f"{k:32s} {v}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
