"""`oyster serve` (the guardrail proxy; `serve keys add|list|revoke`, `serve migrate`) and
`oyster audit tail|export` (read the decision log).

Databases are named by one string: a SQLite file path, or a `postgresql://` URL."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from oyster.errors import OysterError
from oyster.telemetry import Exporter

DEFAULT_AUDIT_DB = "oyster-audit.db"
DEFAULT_KEYS_DB = "oyster-keys.db"

AuditDbOption = Annotated[str, typer.Option(
    "--db", help="audit log to read: SQLite file or postgresql://USER@HOST/DB",
    envvar="OYSTER_AUDIT_DB")]
KeysDbOption = Annotated[str, typer.Option(
    "--keys-db", help="API key database: SQLite file or postgresql://USER@HOST/DB",
    envvar="OYSTER_KEYS_DB")]
StateOption = Annotated[str | None, typer.Option(
    "--state", help="shared state for replicas: redis://HOST:PORT/DB[?prefix=NAME:] (rate "
                    "limits, key revocations); default: this process only",
    envvar="OYSTER_STATE")]


def _fail(err: OysterError | str) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def _when(value: str | None) -> float | None:
    """Unix seconds from unix seconds or an ISO 8601 date/time (local time if no zone)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give unix seconds or an ISO date/time") from None


def register(app: typer.Typer) -> None:
    _register_serve(app)
    _register_audit(app)


def _register_serve(app: typer.Typer) -> None:
    serve_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring
    app.add_typer(serve_app, name="serve")

    @serve_app.callback()
    def serve(
        ctx: typer.Context,
        upstream: Annotated[str, typer.Option(
            help="the model to steer: embedded, openai:MODEL@URL, hf:PATH; 'none' serves "
                 "decisions only")] = "embedded",
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
        policy: Annotated[Path | None, typer.Option(
            help="policy YAML (default: the packaged policy)", dir_okay=False)] = None,
        assessor: Annotated[str, typer.Option(help="assessor spec")] = "default",
        audit_db: Annotated[str, typer.Option(
            "--audit-db", help="audit log: SQLite file (WAL) or postgresql://USER@HOST/DB",
            envvar="OYSTER_AUDIT_DB")] = DEFAULT_AUDIT_DB,
        keys_db: Annotated[str | None, typer.Option(
            "--keys-db", help="API key database (SQLite file or postgresql:// URL); without "
                              "it authentication is off", envvar="OYSTER_KEYS_DB")] = None,
        state: StateOption = None,
        key_cache: Annotated[float, typer.Option(
            help="with --state: seconds a replica trusts a verified key before asking the "
                 "key database again (revocations through --state apply at once)", min=0.0)
        ] = 30.0,
        traces: Annotated[str, typer.Option(
            help="OpenTelemetry traces: otlp (to OTEL_EXPORTER_OTLP_ENDPOINT), console, or "
                 "none", envvar="OYSTER_TRACES")] = "none",
        fail_mode: Annotated[str | None, typer.Option(
            help="on upstream failure: closed (safe reply) or open (pass the error through);"
                 " default from the policy")] = None,
        rate_limit: Annotated[int | None, typer.Option(
            help="requests per minute per key (default from the policy)")] = None,
        open_scope: Annotated[list[str] | None, typer.Option(
            "--open-scope", help="without --keys-db: what every caller may see besides the "
            "reply (inspect: the decision behind it); default from the policy (none)")] = None,
        upstream_timeout: Annotated[float | None, typer.Option(
            help="seconds the upstream may take per reply (default from the policy)")] = None,
        upstream_concurrency: Annotated[int, typer.Option(
            help="openai upstream: requests in flight at once")] = 64,
        upstream_retries: Annotated[int, typer.Option(
            help="openai upstream: retries on connection errors, 429 and 5xx")] = 1,
        keep_alive: Annotated[int, typer.Option(
            help="seconds an idle client connection stays open; keep it above your load "
                 "balancer's idle timeout")] = 75,
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
        console: Annotated[bool, typer.Option(
            "--console/--no-console", help="serve the review console at /console (keys with "
            "the 'inspect' or 'admin' scope; without keys, on 127.0.0.1 only)")] = True,
        reports_dir: Annotated[Path | None, typer.Option(
            "--reports-dir", help="folder of `oyster report` HTML files the console lists",
            file_okay=False)] = None,
        batch_window_ms: Annotated[float, typer.Option(
            "--batch-window-ms", min=0.0, max=1000.0, envvar="OYSTER_BATCH_WINDOW_MS",
            help="concurrent requests share one assessor call: each waits at most this long "
                 "for others (0: off; see benchmarks/encoder_batching.py)")] = 0.0,
        workers: Annotated[int, typer.Option(
            "--workers", min=1, max=64, help="server processes on this port (uvicorn "
            "workers), each with its own engine; more than 1 needs --state and "
            "--no-console")] = 1,
    ) -> None:
        """Start the proxy: POST /v1/chat/completions (plain and streamed), GET /v1/models,
        POST /v1/decide, GET /healthz, GET /readyz, GET /metrics, and the review console at
        /console. Every request to the chat and decide endpoints gets an audit row, rejected
        ones included; a plain response is sent after its row is committed, a streamed one
        before its final chunk."""
        if ctx.invoked_subcommand is not None:
            return
        import logging

        import uvicorn

        from oyster import telemetry
        from oyster.embeddings import worker_encoder_env

        if traces not in telemetry.EXPORTERS:
            raise _fail(f"--traces {traces!r}: choose {', '.join(telemetry.EXPORTERS)}")

        options = ServeOptions(
            upstream=upstream, host=host, policy=str(policy) if policy else None,
            assessor=assessor, audit_db=audit_db, keys_db=keys_db, state=state,
            key_cache=key_cache, fail_mode=fail_mode, rate_limit=rate_limit,
            open_scope=open_scope, upstream_timeout=upstream_timeout,
            upstream_concurrency=upstream_concurrency, upstream_retries=upstream_retries,
            console=console, reports_dir=str(reports_dir) if reports_dir else None,
            traces=traces, batch_window_ms=batch_window_ms)
        if workers > 1 and state is None:
            raise _fail(f"--workers {workers} needs --state redis://...: without it each "
                        "worker process keeps its own rate-limit buckets (the port would "
                        f"allow {workers}x --rate-limit) and key revocations reach a worker "
                        "only when its cache expires")
        if workers > 1 and console:
            raise _fail(f"--workers {workers}: the review console signs its sessions with a "
                        "secret of its own process, so a sign-in would hold on one worker "
                        "only; add --no-console (run `oyster console` beside it)")
        try:
            # with --workers the processes build their own; this one shows errors first
            app_ = build_app(options)
        except OysterError as e:
            raise _fail(e) from None
        except ValueError as e:  # a bad override (pydantic's ValidationError is one)
            raise _fail(f"invalid setting: {e}") from None
        proxy = app_.state.oyster
        settings, keys, audit, shared = proxy.settings, proxy.keys, proxy.audit, proxy.shared
        # our own warnings (upstream failures, audit errors) yes; a line per HTTP call, no
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("oyster").setLevel(logging.INFO)
        auth = (f"ON ({keys.active_count()} active keys in {keys.location})" if keys
                else "OFF (no --keys-db): anyone who can reach the port can use it")
        typer.echo(f"oyster serve: upstream={upstream} policy={proxy.engine.policy.label} "
                   f"fail_mode={settings.fail_mode} audit={audit.location} "
                   f"state={shared.backend} traces={traces} workers={workers}\n"
                   f"oyster serve: authentication {auth}", err=True)
        if workers == 1:
            try:
                seconds = warm_up(app_)
            except OysterError as e:
                raise _fail(e) from None
            typer.echo(f"oyster serve: models loaded in {seconds:.1f} s", err=True)
        run: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                               "access_log": False, "timeout_keep_alive": keep_alive}
        if workers == 1:
            try:
                uvicorn.run(app_, **run)
            finally:
                if proxy.responder is not None:
                    proxy.responder.backend.close()
            return
        if proxy.responder is not None:
            proxy.responder.backend.close()
        del app_, proxy, settings, keys, audit, shared  # each worker builds its own
        os.environ[OPTIONS_ENV] = options.model_dump_json()
        os.environ.update(worker_encoder_env(workers))  # the workers share the cores
        uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **run)

    keys_app = typer.Typer(help="Manage the proxy's API keys (stored hashed).",
                           no_args_is_help=True)
    serve_app.add_typer(keys_app, name="keys")

    @keys_app.command("add")
    def keys_add(name: Annotated[str, typer.Argument(help="a unique name for the key")],
                 keys_db: KeysDbOption = DEFAULT_KEYS_DB,
                 scope: Annotated[list[str] | None, typer.Option(
                     "--scope", help="what the key may see besides replies: inspect (the "
                     "decision behind each reply, /v1/decide), admin (/metrics, detailed "
                     "/healthz); repeat for both")] = None) -> None:
        """Make a key; it is printed once and only its hash is stored."""
        store = _key_store(keys_db)
        try:
            new = store.add(name, scope or [])
        except OysterError as e:
            raise _fail(e) from None
        finally:
            store.close()
        typer.echo(new.key)
        typer.echo(f"key '{name}' added to {store.location}; store it now, it cannot be shown "
                   "again", err=True)

    @keys_app.command("list")
    def keys_list(keys_db: KeysDbOption = DEFAULT_KEYS_DB,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List key names, creation and revocation times (never the keys)."""

        store = _key_store(keys_db)
        try:
            infos = store.list()
        except OysterError as e:
            raise _fail(e) from None
        finally:
            store.close()
        for info in infos:
            if as_json:
                typer.echo(info.model_dump_json())
            else:
                state = (f"revoked {_iso(info.revoked)}" if info.revoked is not None
                         else "active")
                scopes = ",".join(info.scopes) or "-"
                typer.echo(f"{info.name}\tcreated {_iso(info.created)}\t{state}\t"
                           f"scopes {scopes}")

    @keys_app.command("revoke")
    def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")],
                    keys_db: KeysDbOption = DEFAULT_KEYS_DB, state: StateOption = None) -> None:
        """Revoke a key. Servers reading this key database refuse it from their next
        request; with --state (the replicas' Redis), so do replicas that cached it."""
        from oyster.serve.state import publish_revocation

        store = _key_store(keys_db)
        try:
            store.revoke(name)
            if state is not None:
                publish_revocation(state, name)
        except OysterError as e:
            raise _fail(e) from None
        finally:
            store.close()
        typer.echo(f"key '{name}' revoked" + (" (replicas told through the shared state)"
                                              if state else ""), err=True)

    @serve_app.command("migrate")
    def migrate_command(
        audit_db: Annotated[str | None, typer.Option(
            "--audit-db", help="audit log: SQLite file or postgresql:// URL",
            envvar="OYSTER_AUDIT_DB")] = None,
        keys_db: Annotated[str | None, typer.Option(
            "--keys-db", help="API key database: SQLite file or postgresql:// URL",
            envvar="OYSTER_KEYS_DB")] = None,
        check: Annotated[bool, typer.Option(
            "--check", help="only report; exit 1 if a schema is behind this Oyster")] = False,
    ) -> None:
        """Bring the audit log's and key database's schemas to this Oyster's version (servers
        also do this on start, under a lock), or with --check report where they stand."""
        from oyster.serve import audit, keys
        from oyster.serve.storage import migrate, open_database, parse_location, schema_version

        targets = [(name, loc, mod) for name, loc, mod in (
            ("audit", audit_db, audit), ("keys", keys_db, keys)) if loc is not None]
        if not targets:
            raise _fail("name at least one database: --audit-db and/or --keys-db")
        behind = False
        for name, loc, module in targets:
            try:
                db = open_database(parse_location(loc, f"{name} database"))
                try:
                    before = schema_version(db, module.COMPONENT)
                    latest = len(module.MIGRATIONS)
                    after = before if check else migrate(db, module.COMPONENT,
                                                         module.MIGRATIONS)
                finally:
                    db.close()
            except OysterError as e:
                raise _fail(e) from None
            behind = behind or after < latest
            typer.echo(f"{name}: {db.location}: schema version {before}"
                       + (f" -> {after}" if after != before else "")
                       + f" (this Oyster: {latest})")
        if check and behind:
            raise typer.Exit(1)


OPTIONS_ENV = "OYSTER_SERVE_OPTIONS"  # how `serve --workers N` hands its options on


class ServeOptions(BaseModel):
    """What `oyster serve` builds its app from (JSON: it travels to worker processes)."""

    upstream: str
    host: str
    policy: str | None
    assessor: str
    audit_db: str
    keys_db: str | None
    state: str | None
    key_cache: float
    fail_mode: str | None
    rate_limit: int | None
    open_scope: list[str] | None
    upstream_timeout: float | None
    upstream_concurrency: int
    upstream_retries: int
    console: bool
    reports_dir: str | None
    traces: Exporter
    batch_window_ms: float = 0.0


def build_app(o: ServeOptions) -> Any:
    """The proxy's ASGI app (its `AppState` at `app.state.oyster`); raises OysterError or
    ValueError (a bad setting) with a message for the user."""
    from oyster import telemetry
    from oyster.backends import from_spec
    from oyster.engine import Engine
    from oyster.errors import InputError
    from oyster.policy import ServeSettings
    from oyster.respond import Responder
    from oyster.serve.app import create_app
    from oyster.serve.audit import AuditLog
    from oyster.serve.keys import KeyStore
    from oyster.serve.state import from_url as state_from_url

    overrides: dict[str, Any] = {k: v for k, v in (
        ("fail_mode", o.fail_mode), ("rate_limit_per_minute", o.rate_limit),
        ("upstream_timeout_s", o.upstream_timeout), ("open_scopes", o.open_scope))
        if v is not None}
    engine = Engine(policy=o.policy, assessor=o.assessor)
    engine.batch_concurrent(o.batch_window_ms / 1000)
    settings = ServeSettings.model_validate(engine.policy.serve.model_dump() | overrides)
    keys = None
    if o.keys_db is not None:
        keys = KeyStore(o.keys_db)
        if keys.active_count() == 0:
            raise InputError(f"{keys.location}: no active API keys; add one with `oyster serve "
                             "keys add NAME` or leave out --keys-db to run without auth")
    responder = None
    if o.upstream != "none":
        options: dict[str, Any] = ({"max_concurrency": o.upstream_concurrency,
                                    "max_retries": o.upstream_retries}
                                   if o.upstream.startswith("openai:") else {})
        responder = Responder(engine, from_spec(o.upstream, **options))
    audit = AuditLog(o.audit_db, engine.policy.audit)
    shared = state_from_url(o.state, settings.rate_limit_per_minute, settings.fail_mode,
                            o.key_cache)
    telemetry.configure(o.traces, os.environ.get("OTEL_SERVICE_NAME", "oyster-serve"))
    app = create_app(settings, engine, responder, audit, keys, shared=shared)
    if o.console:
        _mount_console(app, o.audit_db, o.host, Path(o.reports_dir) if o.reports_dir else None,
                       Path(o.policy) if o.policy else None)
    return app


def app_from_environment() -> Any:
    """A `serve --workers N` worker's app, from the options its parent checked, warmed up."""
    app = build_app(ServeOptions.model_validate_json(os.environ[OPTIONS_ENV]))
    warm_up(app)
    return app


def warm_up(app: Any) -> float:
    """Load every model the proxy's requests use (the assessor's, the moderator's, the
    relevance check's) before the port opens, so the first request does not pay for it;
    the seconds it took."""
    import time

    proxy = app.state.oyster
    started = time.perf_counter()
    proxy.engine.warm_up()
    proxy.verifier.warm_up()
    return time.perf_counter() - started


def _key_store(location: str) -> Any:
    from oyster.serve.keys import KeyStore

    try:
        return KeyStore(location)
    except OysterError as e:
        raise _fail(e) from None


def _mount_console(app: Any, audit_db: str, host: str, reports_dir: Path | None,
                   policy: Path | None) -> None:
    from oyster.serve.console.app import ConsoleConfig, mount_console
    from oyster.serve.console.auditquery import audit_query

    state = app.state.oyster
    mount_console(app, ConsoleConfig(
        engine=state.engine, responder=state.responder, audit=audit_query(audit_db),
        audit_source=str(state.audit.location), keys=state.keys, bind_host=host,
        reports_dir=reports_dir,
        policy_source=str(policy) if policy else "the packaged default policy"))


def _iso(t: float | None) -> str:
    return datetime.fromtimestamp(t).isoformat(timespec="seconds") if t is not None else "-"


FOLLOW_WINDOW = 2048  # rows `tail --follow` looks back for late commits


def _register_audit(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="Read the proxy's decision log.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("tail")
    def tail(
        db: AuditDbOption = DEFAULT_AUDIT_DB,
        n: Annotated[int, typer.Option("-n", help="how many rows", min=1)] = 20,
        follow: Annotated[bool, typer.Option("--follow", "-f",
                                             help="keep printing new rows (Ctrl-C stops)")
                          ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="one JSON record per line")
                           ] = False,
    ) -> None:
        """Print the latest decisions, oldest first."""
        from oyster.serve import audit

        try:
            rows = audit.tail(db, n)
            _print_rows(rows, as_json, header=True)
            # Replicas writing to one PostgreSQL commit out of sequence order: a row may
            # appear below the last one printed. Look back a window and skip what was shown.
            shown = {seq for seq, _ in rows}
            last = max(shown, default=0)
            while follow:
                time.sleep(1.0)
                rows = [r for r in audit.tail(db, 5000, after_seq=max(0, last - FOLLOW_WINDOW))
                        if r[0] not in shown]
                _print_rows(rows, as_json, header=False)
                shown.update(seq for seq, _ in rows)
                last = max(shown, default=0)
                shown = {seq for seq in shown if seq > last - FOLLOW_WINDOW}
        except OysterError as e:
            raise _fail(e) from None
        except KeyboardInterrupt:
            pass

    @audit_app.command("export")
    def export(
        db: AuditDbOption = DEFAULT_AUDIT_DB,
        since: Annotated[str | None, typer.Option(help="unix seconds or ISO date/time")] = None,
        until: Annotated[str | None, typer.Option(help="unix seconds or ISO date/time")] = None,
        fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
        out: Annotated[Path | None, typer.Option("--out", "-o", help="file (default: stdout)")
                       ] = None,
    ) -> None:
        """Write every decision (in a time range) as JSONL or CSV."""
        from oyster.serve import audit

        if fmt not in ("jsonl", "csv"):
            raise _fail(f"--format {fmt!r}: choose jsonl or csv")
        try:
            records = audit.export(db, _when(since), _when(until))
            stream = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout  # noqa: SIM115
            try:
                n = audit.write_records(records, stream, fmt)  # type: ignore[arg-type]
            finally:
                if out:
                    stream.close()
        except OysterError as e:
            raise _fail(e) from None
        except OSError as e:
            raise _fail(f"{out}: {e.strerror}") from None
        typer.echo(f"{n} decision(s) exported", err=True)


def _print_rows(rows: list[Any], as_json: bool, header: bool) -> None:
    """Print audit rows."""
    if as_json:
        for _, record in rows:
            typer.echo(record.model_dump_json(exclude_none=True))
    else:
        if header:
            typer.echo("time                 id                              key         "
                       "status level strategy       outcome         verified  ms")
        for _, r in rows:
            verified = "-" if r.verified is None else ("yes" if r.verified else "NO")
            typer.echo(f"{_iso(r.time):20} {r.id:31} {(r.key_id or '-'):11.11} {r.status:6} "
                       f"{r.level or '-':5} {r.strategy or '-':14} {r.outcome:15} "
                       f"{verified:9} {r.latency_ms:.1f}")
    sys.stdout.flush()
