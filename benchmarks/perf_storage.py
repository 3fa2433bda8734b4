"""Storage speed: batched and fsync-each appends, loading a 1M-record history, atomic score saves.

Prints human-readable lines, then as its LAST line one JSON object:
append_batched_per_s (target >= 50,000), append_fsync_each_per_s (reported), load_1m_s (target <= 3 s),
scores_save_ms_p50 (1,000 model x task entries, atomic, target <= 10 ms).
"""
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from computepulse_ai.core import PerformanceRecord, TaskType
from computepulse_ai.storage import HistoryLog, ScoreStore, history_frame

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
        results = {
            "append_batched_per_s": round(bench_append_batched(folder)),
            "append_fsync_each_per_s": round(bench_append_fsync_each(folder)),
            "load_1m_s": round(bench_load_1m(folder), 3),
            "scores_save_ms_p50": round(bench_scores_save(folder), 3),
        }
    for k, v in results.items(): print(f"{k:28s} {v}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
