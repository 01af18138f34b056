"""Scoring time of very long prompts (the server's body limit is 4 MiB) with the bundled `mf`:
embedding (the first 256 tokens) and the prompt features (over the whole text).

    .venv/bin/python benchmarks/long_prompts.py [LABEL]

One prompt per call, `load_router("mf").strong_win_rate([p])`, best of 3; each repetition gets
a unique suffix, so the embedding cache never answers. To compare two versions of the code, run
it on each (e.g. with the change stashed) and pass a label.
"""

from __future__ import annotations

import base64
import json
import sys
import time

from routellm_lc.routers import load_router

CASES = {
    "1 MB CJK": "数学题" * 350_000,
    "1 MB base64": base64.b64encode(bytes(range(256)) * 3_000).decode()[:1_000_000],
    "200 KB minified JSON": json.dumps(
        [{"k": i, "v": "abc" * 3} for i in range(8000)], separators=(",", ":")
    ),
    "1 MB emoji": "😀" * 1_000_000,
    "1 MB words": " ".join(f"word{i}" for i in range(110_000)),
    "3.9 MB hex dump after a request": "Summarise this: " + "0123456789abcdef" * 243_750,
    "3.9 MB of one letter": "a" * 3_900_000,
    "2.7 MB of 9k-character words": " ".join("a" * 9_000 for _ in range(300)),
    "3.9 MB words": " ".join(f"word{i}" for i in range(430_000)),
}


def main(label: str = "") -> None:
    router = load_router("mf")
    router.strong_win_rate(["warm-up"])
    for name, text in CASES.items():
        times = []
        for k in range(3):
            started = time.perf_counter()
            router.strong_win_rate([f"{text} {k}"])
            times.append(time.perf_counter() - started)
        print(f"{label} {name}: {len(text):,} chars, {min(times) * 1000:.0f} ms (best of 3)")


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]))
