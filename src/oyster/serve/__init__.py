"""The guardrail proxy: an OpenAI-compatible server that decides, steers and verifies every
chat completion it forwards to an upstream model, and logs every decision.

    from oyster.serve import create_app, AuditLog, RedisState
    app = create_app(policy.serve, engine, responder, AuditLog("audit.db", policy.audit))
    # replicas: AuditLog("postgresql://..."), KeyStore("postgresql://..."),
    #           shared=RedisState("redis://...", per_minute, fail_mode)

Run it from the command line with `oyster serve --upstream BACKEND`. The names below load on
first use, so `oyster.serve.cli` (and so the `oyster` command) works without the `serve`
extra installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"AppState": "app", "create_app": "app", "AuditLog": "audit",
            "AuditRecord": "audit", "KeyStore": "keys", "LocalState": "state",
            "RedisState": "state"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'oyster.serve' has no attribute {name!r}")
    return getattr(import_module(f"oyster.serve.{_EXPORTS[name]}"), name)
