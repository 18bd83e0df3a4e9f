"""Streaming with verification: release the upstream's text in windows, each checked before
it reaches the client. No text leaves unverified:

- every window passes the verifier's partial checks (moderation of the text itself, leaks,
  the length and shape of a refusal, ...) before it is released;
- the last window is held until the whole reply passes the final checks (does a `refuse`
  reply decline, does a `correct` reply correct, ...);
- the opening is held longer for the strategies the policy names
  (`serve.stream_hold_chars`, by default `guide`, `correct` and `refuse`), so it is checked
  as a whole before the client sees a word of it;
- a window that passes but reads as suspicious (`suspicious`: in the proxy, the moderator's
  hold threshold, `Moderator.suspicious`) is held too, until the text after it settles the
  matter: harm that only becomes clear a few sentences on must not have its opening
  already shown.

When a check fails before anything was sent, the reply is written again the way a plain
completion is (`recover`: regenerated under a stricter strategy, or the fallback), and sent
whole. When it fails later, the upstream is stopped and the fallback ends the reply after the
prefix that passed. When the final checks' only problem is a missing crisis resource, the
resources are appended (`repaired`), as the responder does.

The trade-off: holding costs first-token latency, about the time the upstream takes to write
the held characters (`benchmarks/stream_latency.py` measures it per strategy); releasing
early costs the ability to replace a bad opening, since words already shown cannot be
taken back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio

from oyster.errors import BackendError, BackendTimeout
from oyster.respond import Verification

Check = Callable[[str, bool], Verification]
"""`check(text_so_far, final)`: the verifier, bound to the decision."""
StreamOutcome = Literal["passed", "regenerated", "repaired", "fallback", "upstream_error"]


@dataclass(frozen=True)
class Recovery:
    """A reply written again after the streamed one failed before anything was sent."""

    text: str
    outcome: StreamOutcome
    verification: Verification


Recover = Callable[[], Awaitable[Recovery]]

_CLOSE_TIMEOUT_S = 5.0
log = logging.getLogger("oyster.serve")


class VerifiedStream:
    """One streamed reply. Call `start()` (waits for the upstream's first piece), then
    iterate `pieces()`; `aclose()` always, to stop the upstream.

    With `fail_open`, an upstream failure is raised as `BackendError` (from `start()` when
    nothing was sent yet, so the caller can still answer with an HTTP error; from `pieces()`
    later). Otherwise it is recorded in `upstream_error` and the fallback ends the stream.
    `problems` lists every problem found on the way; `verification` is the verdict on what
    the client finally received.
    """

    def __init__(self, upstream: AsyncIterator[str], check: Check, fallback: Callable[[], str],
                 resource_note: Callable[[], str], window_chars: int, timeout_s: float,
                 fail_open: bool, hold_chars: int = 0, recover: Recover | None = None,
                 suspicious: Callable[[str], bool] | None = None) -> None:
        self._upstream = upstream
        self._check = check
        self._fallback = fallback
        self._resource_note = resource_note
        self._window = window_chars
        self._hold = max(window_chars, hold_chars)
        self._recover = recover
        self._suspicious = suspicious
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._fail_open = fail_open
        self._first: str | None = None
        self.sent = ""
        self.verification: Verification | None = None
        self.problems: list[str] = []
        self.outcome: StreamOutcome = "passed"
        self.fallback_used = False
        self.upstream_error: BackendError | None = None
        self.upstream_s: float | None = None
        self._started = time.perf_counter()

    async def _next(self) -> str | None:
        """The upstream's next piece; None at its end."""
        try:
            # a cancel scope in this task (not wait_for's extra task), so a cancellation or
            # timeout unwinds the upstream generator itself, closing its HTTP stream
            with anyio.fail_after(max(0.0, self._deadline - time.monotonic())):
                return await anext(self._upstream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise BackendTimeout(f"upstream: no complete reply within {self._timeout_s:g}s"
                                 ) from None
        except BackendError:
            raise
        except Exception as e:  # a backend that breaks the contract still must not crash us
            raise BackendError(f"upstream: {type(e).__name__}: {e}") from None

    def _fail(self, error: BackendError) -> None:
        self.upstream_error = error
        self.outcome = "upstream_error"
        self.upstream_s = time.perf_counter() - self._started
        if self._fail_open:
            raise error

    def _verdict(self, verdict: Verification) -> Verification:
        self.verification = verdict
        self.problems += [p for p in verdict.problems if p not in self.problems]
        return verdict

    async def start(self) -> None:
        try:
            self._first = await self._next()
        except BackendError as e:
            self._fail(e)

    async def pieces(self) -> AsyncIterator[str]:
        pending = ""
        held = 0  # characters of `pending` kept back as suspicious
        piece = self._first
        try:
            while self.upstream_error is None and piece is not None:
                pending += piece
                if len(pending) >= (self._window if self.sent else self._hold) + held:
                    text = self.sent + pending
                    if not self._verdict(self._check(text, False)).passed:
                        break
                    if self._suspicious is not None and self._suspicious(text):
                        held = len(pending)  # wait for the next window's worth of text
                    else:
                        self.sent += pending
                        yield pending
                        pending, held = "", 0
                piece = await self._next()
            else:
                # the last window waits for the checks that need the whole reply
                if self.upstream_error is None and \
                        self._verdict(self._check(self.sent + pending, True)).passed:
                    self.sent += pending
                    if pending:
                        yield pending
        except BackendError as e:
            self._fail(e)
        else:
            self.upstream_s = time.perf_counter() - self._started
        v = self.verification
        if self.upstream_error is None and v is not None and v.passed:
            return
        await self.aclose()
        if self.upstream_error is None and v is not None and v.final \
                and v.problems == ["missing_resource"]:
            self.outcome = "repaired"
            tail = pending + "\n\n" + self._resource_note()
        elif self.upstream_error is None and not self.sent and self._recover is not None:
            tail = await self._rewrite()
        else:
            if self.upstream_error is None:
                self.outcome = "fallback"
            self.fallback_used = True
            tail = ("\n\n" if self.sent else "") + self._fallback()
        self.sent += tail
        yield tail

    async def _rewrite(self) -> str:
        """Nothing was sent: write the reply again as a plain completion would be."""
        assert self._recover is not None
        try:
            with anyio.fail_after(max(0.0, self._deadline - time.monotonic())):
                recovery = await self._recover()
        except (BackendError, TimeoutError) as e:
            log.warning("rewriting a streamed reply failed: %s", e)
            self.outcome, self.fallback_used = "fallback", True
            return self._fallback()
        self._verdict(recovery.verification)
        self.outcome = recovery.outcome
        self.fallback_used = recovery.outcome == "fallback"
        return recovery.text

    async def aclose(self) -> None:
        """Stop the upstream (closing its HTTP stream), even while being cancelled."""
        aclose = getattr(self._upstream, "aclose", None)
        if aclose is not None:
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                try:
                    await aclose()
                except Exception as e:  # a broken upstream must not hide the real outcome
                    log.debug("closing the upstream stream failed: %s", e)
