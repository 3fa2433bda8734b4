"""Child process for the crash test: appends records (fsync each) and saves scores in a loop, acknowledging each.

Prints `A <n>` after append n returned and `S <n>` after the n-th scores save returned, flushing stdout each time.
"""
import sys
from pathlib import Path

from computepulse_ai.core import PerformanceRecord
from computepulse_ai.storage import HistoryLog, ScoreStore

folder = Path(sys.argv[1])
start = int(sys.argv[2])
history = HistoryLog(folder / "history.jsonl", durability="each")
scores = ScoreStore(folder / "scores.json")
out = sys.stdout
n = start
while True:
    n += 1
    history.append(PerformanceRecord("qwen", "price_extraction", request_id=f"r{n}", was_correct=n % 3 == 0,
                                     response_time=n / 1000))
    out.write(f"A {n}\n"); out.flush()
    if n % 5 == 0:
        entries = {(f"m{i}", "simple_query"): {"score": (n % 97) / 97, "sample_count": n, "last_updated": None,
                                               "generation": n} for i in range(50)}
        scores.save(entries)
        out.write(f"S {n}\n"); out.flush()
