"""Streaming with verification: release the upstream's text in windows, each checked before
it reaches the client; on a failed check, stop the upstream and finish with the fallback.

Text that fails a check is never sent. What was sent before it passed every check, so the
client ends up with a safe prefix followed by the safe fallback. Checks that need the whole
reply run at the end: when the only problem is a missing crisis resource, the resources are
appended (`repaired`, as the responder does); any other problem appends the fallback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

import anyio

from oyster.errors import BackendError, BackendTimeout
from oyster.respond import Verification

Check = Callable[[str, bool], Verification]
"""`check(text_so_far, final)`: the verifier, bound to the decision."""
StreamOutcome = Literal["passed", "repaired", "fallback", "upstream_error"]

_CLOSE_TIMEOUT_S = 5.0
log = logging.getLogger("oyster.serve")


class VerifiedStream:
    """One streamed reply. Call `start()` (waits for the upstream's first piece), then
    iterate `pieces()`; `aclose()` always, to stop the upstream.

    With `fail_open`, an upstream failure is raised as `BackendError` (from `start()` when
    nothing was sent yet, so the caller can still answer with an HTTP error; from `pieces()`
    later). Otherwise it is recorded in `upstream_error` and the fallback ends the stream.
    """

    def __init__(self, upstream: AsyncIterator[str], check: Check, fallback: Callable[[], str],
                 resource_note: Callable[[], str], window_chars: int, timeout_s: float,
                 fail_open: bool) -> None:
        self._upstream = upstream
        self._check = check
        self._fallback = fallback
        self._resource_note = resource_note
        self._window = window_chars
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._fail_open = fail_open
        self._first: str | None = None
        self.sent = ""
        self.verification: Verification | None = None
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

    async def start(self) -> None:
        try:
            self._first = await self._next()
        except BackendError as e:
            self._fail(e)

    async def pieces(self) -> AsyncIterator[str]:
        pending = ""
        piece = self._first
        try:
            while self.upstream_error is None and piece is not None:
                pending += piece
                if len(pending) >= self._window:
                    verdict = self._check(self.sent + pending, False)
                    if not verdict.passed:
                        self.verification = verdict
                        break
                    self.sent += pending
                    yield pending
                    pending = ""
                piece = await self._next()
            else:
                if self.upstream_error is None:
                    text = self.sent + pending
                    if self._check(text, False).passed:
                        self.sent = text
                        if pending:
                            yield pending
                    self.verification = self._check(text, True)
        except BackendError as e:
            self._fail(e)
        else:
            self.upstream_s = time.perf_counter() - self._started
        if self.upstream_error is not None or not (self.verification and
                                                   self.verification.passed):
            await self.aclose()
            missing = ["missing_resource"]
            if self.verification is not None and self.verification.problems == missing \
                    and self.verification.final:
                self.outcome, ending = "repaired", self._resource_note()
            else:
                if self.upstream_error is None:
                    self.outcome = "fallback"
                self.fallback_used, ending = True, self._fallback()
            tail = ("\n\n" if self.sent else "") + ending
            self.sent += tail
            yield tail

    async def aclose(self) -> None:
        """Stop the upstream (closing its HTTP stream), even while being cancelled."""
        aclose = getattr(self._upstream, "aclose", None)
        if aclose is not None:
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                try:
                    await aclose()
                except Exception as e:  # a broken upstream must not hide the real outcome
                    log.debug("closing the upstream stream failed: %s", e)
