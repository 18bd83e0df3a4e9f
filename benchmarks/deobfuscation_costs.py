"""What the deobfuscation stage costs: loading its tables (the English word list alone, then
the rest through `warm_up`) and running it on plain prompts that hide nothing (the common
case). Prints one JSON line; `docs/deobfuscation.md` quotes it.

    python benchmarks/deobfuscation_costs.py
"""

from __future__ import annotations

import json
import time

from oyster.assess.deobfuscate import deobfuscate, warm_up
from oyster.assess.deobfuscate.lang import _english

# written for this measure: ordinary questions in both languages
PLAIN = ["How do I renew my passport?", "What's a good recipe for banana bread?",
         "Explain how vaccines work.", "我的猫不吃东西怎么办？",
         "Write a short poem about autumn leaves."]


def main() -> None:
    start = time.perf_counter()
    _english()
    words_s = time.perf_counter() - start
    start = time.perf_counter()
    warm_up()
    rest_s = time.perf_counter() - start
    texts = PLAIN * 40
    start = time.perf_counter()
    for text in texts:
        deobfuscate(text)
    per_prompt_ms = (time.perf_counter() - start) / len(texts) * 1000
    print(json.dumps({"english_words_load_s": round(words_s, 2),
                      "warm_up_rest_s": round(rest_s, 2),
                      "plain_prompt_ms": round(per_prompt_ms, 3)}))


if __name__ == "__main__":
    main()
