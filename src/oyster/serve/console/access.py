"""Who may open the console.

With API keys configured, a person signs in once with a key that carries the `inspect` or
`admin` scope; the console then keeps a signed session cookie (HttpOnly, SameSite=Strict,
scoped to the console's path, 8 hours), and checks on every request that the key is still
active, so revoking it ends the session. Scripts may send `Authorization: Bearer KEY`
instead (e.g. to download an export).

Without keys the console answers only when the server is bound to a loopback address, and
then only requests addressed to a loopback host name (a page elsewhere cannot reach it
through DNS rebinding).

The console changes nothing on the server (no form saves anything), and its POST forms are
also refused when their Origin is another site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request

from oyster.serve.keys import KeyStore

CONSOLE_SCOPES = frozenset({"inspect", "admin"})
SESSION_COOKIE = "oyster_console"
SESSION_SECONDS = 8 * 3600
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class Identity:
    name: str
    scopes: frozenset[str]


class Denied(Exception):
    """The console refuses this request (who is asking, where from, or its size); `login`
    says whether signing in could help."""

    def __init__(self, reason: str, status: int = 403, login: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.login = login


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleAccess:
    """Decides, per request, who is asking (see the module docstring)."""

    def __init__(self, keys: KeyStore | None, bind_host: str) -> None:
        self.keys = keys
        self.bind_host = bind_host
        self._secret = secrets.token_bytes(32)  # sessions end when the server restarts

    @property
    def open_without_keys(self) -> bool:
        return self.keys is None and is_loopback(self.bind_host)

    def check_key(self, key: str) -> Identity:
        """The identity of a console-capable key, or `Denied` saying why not."""
        if self.keys is None:
            raise Denied("this server has no API keys; the console is open on loopback only")
        found = self.keys.verify(key.strip())
        if found is None:
            raise Denied("unknown or revoked API key", 401, login=True)
        scopes = frozenset[str](found.scopes)
        if not scopes & CONSOLE_SCOPES:
            raise Denied(f"key '{found.name}' has no 'inspect' or 'admin' scope; the console "
                         "needs one of them", 403, login=True)
        return Identity(name=found.name, scopes=scopes)

    def identify(self, request: Request) -> Identity:
        """Who is asking, or `Denied`."""
        if self.keys is None:
            if not is_loopback(self.bind_host):
                raise Denied("the console needs API keys (--keys-db) when the server listens "
                             f"on {self.bind_host}; without keys it is served on 127.0.0.1 "
                             "only")
            host = (request.headers.get("host") or "").rsplit(":", 1)[0]
            client = request.client.host if request.client else ""
            if not (is_loopback(host) and is_loopback(client)):
                raise Denied("without API keys the console answers loopback requests only")
            return Identity(name="local", scopes=frozenset({"admin"}))
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.check_key(token)
        session = self._read_session(request.cookies.get(SESSION_COOKIE, ""))
        if session is None:
            raise Denied("sign in with an API key that has the 'inspect' or 'admin' scope",
                         401, login=True)
        if not self._still_active(session.name):
            raise Denied(f"key '{session.name}' was revoked; sign in again", 401, login=True)
        return session

    def check_origin(self, request: Request) -> None:
        """Refuse a form posted from another site."""
        origin = request.headers.get("origin")
        if origin and origin != "null":
            host = origin.split("://", 1)[-1]
            if host != request.headers.get("host"):
                raise Denied("cross-site form posts are refused")

    def _still_active(self, name: str) -> bool:
        assert self.keys is not None
        return any(k.name == name and k.revoked is None for k in self.keys.list())

    # -- the session cookie: payload.signature, both URL-safe base64 --------------------

    def session_cookie(self, identity: Identity) -> str:
        payload = json.dumps({"n": identity.name, "s": sorted(identity.scopes),
                              "e": int(time.time()) + SESSION_SECONDS}).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _read_session(self, cookie: str) -> Identity | None:
        body, _, signature = cookie.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            if int(data["e"]) < time.time():
                return None
            return Identity(name=str(data["n"]), scopes=frozenset(data["s"]))
        except (ValueError, KeyError, TypeError):
            return None
