"""The responder: a decision becomes the reply that carries it out, checked before it leaves.

    from oyster import Engine
    from oyster.backends import from_spec
    from oyster.respond import Responder

    reply = Responder(Engine(), from_spec("embedded")).respond("I feel like ending it all.")
    reply.decision.strategy      # 'guide'
    reply.text                   # supportive, with a crisis resource
    reply.verification.passed    # True
    reply.outcome                # 'passed' | 'regenerated' | 'repaired' | 'fallback'
"""

from oyster.respond.fallback import fallback_reply
from oyster.respond.instructions import instructions_for
from oyster.respond.responder import Attempt, Reply, Responder
from oyster.respond.verify import Verification, Verifier

__all__ = ["Attempt", "Reply", "Responder", "Verification", "Verifier", "fallback_reply",
           "instructions_for"]
