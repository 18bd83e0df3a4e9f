"""A Lingo-BP run with a canned chat backend, as a script (the kill-and-resume test runs it
in a subprocess) and as a module (the tests' fixtures load `CannedBackend` from here).

`CannedBackend` is a real `ChatBackend` subclass that returns canned text chosen from the
system instructions, after an optional delay: the embedded model is too slow to kill a run
at a chosen point reliably, and its text cannot be steered to exercise every branch. The
engine, responder, verifier and judges are the real ones.

    python canned_run.py DATA RUN_DIR [--resume] [--delay SECONDS] [--rounds N]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.types import Message

DECLINE = "I can't help with that."
HELPFUL = ("Here is what matters most about your question, in plain words. First, the key "
           "facts as they are generally understood. Second, two practical steps you can take "
           "today. Third, where to get reliable help if you need more.")
RELAXED = ("I won't help with the harmful part, and I want to explain why kindly. What I can "
           "do is help with the safe side of this: the facts, the risks, and a safe "
           "alternative that meets the same need, plus people who can help.")


class CannedBackend(ChatBackend):
    """Canned replies by the steering in the system message; records every prompt."""

    kind = "canned"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.prompts: list[list[Message]] = []

    @property
    def spec(self) -> str:
        return "canned"

    def complete(self, messages: Sequence[Message], params: GenerationParams | None = None
                 ) -> Completion:
        self.prompts.append(list(messages))
        time.sleep(self.delay)
        system = messages[0].content if messages and messages[0].role == "system" else ""
        if "decline only the harmful part" in system:
            text = RELAXED
        elif "Decline in one or two short sentences" in system:
            text = DECLINE
        else:
            text = HELPFUL
        return Completion(text=text, model="canned")


def main(argv: list[str]) -> None:
    from oyster.engine import Engine
    from oyster.judges import RefusalClassifier, SafetyJudge, SatisfactionJudge
    from oyster.lingobp import LingoBP, RunStore, load_queries, run_queries
    from oyster.lingobp.records import RunManifest
    from oyster.respond import Responder

    data, run_dir = argv[0], argv[1]
    resume = "--resume" in argv
    delay = float(argv[argv.index("--delay") + 1]) if "--delay" in argv else 0.0
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 3
    engine = Engine()
    responder = Responder(engine, CannedBackend(delay))
    lingo = LingoBP(responder, SatisfactionJudge.from_spec("local"),
                    SafetyJudge.from_spec("local", policy=engine.policy),
                    RefusalClassifier.from_spec("local"), rounds=rounds)
    store = RunStore(run_dir)
    store.start(RunManifest(data=data, data_sha256="test", backend="canned", judge="local",
                            editor="rule", rounds=rounds, mode="both", policy=engine.policy.label,
                            policy_fingerprint=engine.policy.fingerprint(), assessor="default",
                            generation=responder.params), resume)
    report = run_queries(lingo, load_queries(data), store,
                         on_done=lambda qid: print(f"done {qid}", flush=True))
    print(report.model_dump_json(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
