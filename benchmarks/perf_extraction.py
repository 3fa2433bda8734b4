"""Speed and memory of `extract_json` on normal and adversarial model text. Last line: one JSON object.

normal_200_ms          a normal answer: prose + ```json fence + 200 GPU records (~30 KB), gpu field hint; median
normal_200_cut_ms      the same answer cut off inside its last record (strict decoder fails, tolerant parser runs)
adversarial_s          seconds per adversarial shape at 1 MB and 10 MB (cap lifted: max_chars=None), one run each
  brackets_string      '[' * 64 + '"' + 'a' * N + '" x'  (issue 11: 8.4 s at 1 MB, > 60 s at 10 MB before)
  open_brackets        N times '['                       (issue 11: 2.8 s and 426 MB at 10 MB in the old _starts)
  spaced_brackets      '[ ' repeated                      (deeper than the nesting limit everywhere)
  citations            '[1] ' repeated, then the data     (every start is a complete tiny value)
  nested_keys          '{"a":' repeated                   (objects deeper than the nesting limit)
  unclosed_strings     '["a" ' repeated                   (every start fails after a string)
ratio_10mb_over_1mb    10 MB time / 1 MB time per shape: about 10 means linear
peak_mb                tracemalloc peak in MB (separate runs: tracing slows the code), at 1 MB and 10 MB for the two
                       shapes the issue measured, at 1 MB for the others
cap_rejection_ms       a 10 MB text with the default cap (ExtractionTooLargeError before any parsing)
"""
import json
import statistics
import time
import tracemalloc

from computepulse_ai.extraction import ExtractionError, ExtractionTooLargeError, extract_json

MB = 1_000_000
SHAPES = {
    "brackets_string": lambda n: "[" * 64 + '"' + "a" * n + '" x',
    "open_brackets": lambda n: "[" * n,
    "spaced_brackets": lambda n: "[ " * (n // 2),
    "citations": lambda n: "[1] " * (n // 4) + '[{"provider": "AWS", "gpu": "H100", "price": 2.49}]',
    "nested_keys": lambda n: '{"a":' * (n // 5),
    "unclosed_strings": lambda n: '["a" ' * (n // 5),
}


def run(text, **kw):
    try: extract_json(text, "gpu", **kw)
    except ExtractionError: pass


def seconds(text, **kw):
    start = time.perf_counter()
    run(text, **kw)
    return time.perf_counter() - start


def peak_mb(text):
    tracemalloc.start()
    run(text, max_chars=None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def main():
    records = [{"provider": f"Cloud {i % 17}", "gpu": ["H100", "A100", "L4", "RTX 4090"][i % 4], "region": f"region-{i % 9}",
                "price": round(0.5 + i * 0.037, 3), "gpu_count": 1 + i % 8, "spot": i % 3 == 0, "note": None}
               for i in range(200)]
    answer = "Based on search results [1], [2], here are the prices:\n```json\n" + json.dumps(records, indent=2) + "\n```\n"
    cut = answer[:answer.rindex('"price"')]
    normal = [seconds(answer) * 1e3 for _ in range(21)]
    normal_cut = [seconds(cut) * 1e3 for _ in range(21)]
    adversarial, ratio, peaks = {}, {}, {}
    for name, make in SHAPES.items():
        one, ten = seconds(make(MB), max_chars=None), seconds(make(10 * MB), max_chars=None)
        adversarial[name] = {"1mb": round(one, 3), "10mb": round(ten, 3)}
        ratio[name] = round(ten / one, 1) if one > 0 else None
        sizes = (MB, 10 * MB) if name in ("brackets_string", "open_brackets") else (MB,)
        peaks[name] = {f"{n // MB}mb": round(peak_mb(make(n)), 1) for n in sizes}
    big = SHAPES["brackets_string"](10 * MB)
    start = time.perf_counter()
    try: extract_json(big)
    except ExtractionTooLargeError: pass
    rejection_ms = (time.perf_counter() - start) * 1e3
    print(json.dumps({"normal_200_ms": round(statistics.median(normal), 2),
                      "normal_200_cut_ms": round(statistics.median(normal_cut), 2),
                      "normal_200_chars": len(answer), "adversarial_s": adversarial, "ratio_10mb_over_1mb": ratio,
                      "peak_mb": peaks, "cap_rejection_ms": round(rejection_ms, 3)}))


if __name__ == "__main__":
    main()
