"""Child process for the crash tests: appends records and saves scores in a loop, acknowledging each.

Mode `sync` (default): a HistoryLog with fsync-each appends in this thread. Prints `A <n>` after append n returned
and `S <n>` after the n-th scores save returned, flushing stdout each time.
Mode `group`: a StorageManager whose writer thread group-commits; 16 asyncio tasks append concurrently and print
`A <n>` only once the acknowledgement of record n resolved True; a scores snapshot is taken every 5 records.
"""
import asyncio
import sys
from pathlib import Path

from computepulse_ai.core import PerformanceRecord
from computepulse_ai.storage import HistoryLog, ScoreStore, StorageManager

folder = Path(sys.argv[1])
start = int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "sync"
out = sys.stdout


def record(n: int) -> PerformanceRecord:
    return PerformanceRecord("qwen", "price_extraction", request_id=f"r{n}", was_correct=n % 3 == 0, response_time=n / 1000)


def entries(n: int) -> dict:
    return {(f"m{i}", "simple_query"): {"score": (n % 97) / 97, "sample_count": n, "last_updated": None,
                                         "generation": n} for i in range(50)}


def sync_loop() -> None:
    history = HistoryLog(folder / "history.jsonl", durability="each")
    scores = ScoreStore(folder / "scores.json")
    n = start
    while True:
        n += 1
        history.append(record(n))
        out.write(f"A {n}\n"); out.flush()
        if n % 5 == 0:
            scores.save(entries(n))
            out.write(f"S {n}\n"); out.flush()


async def group_loop() -> None:
    storage = StorageManager(folder, scores_file="scores.json", history_file="history.jsonl", durability="each")
    counter = iter(range(start + 1, 10**12))

    async def worker():
        while True:
            n = next(counter)
            ack = storage.history.append(record(n))
            if n % 5 == 0:
                saved = storage.snapshot(entries(n))
                if await asyncio.wrap_future(saved): out.write(f"S {n}\n")
            if await asyncio.wrap_future(ack): out.write(f"A {n}\n")
            out.flush()

    await asyncio.gather(*[worker() for _ in range(16)])


if mode == "group": asyncio.run(group_loop())
else: sync_loop()
