"""`oyster console`: the review console on its own, over an existing audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from oyster.errors import OysterError


def register(app: typer.Typer) -> None:
    @app.command("console")
    def console(
        audit_db: Annotated[str | None, typer.Option(
            "--audit-db", help="audit log to browse, read-only: SQLite file or "
            "postgresql://USER@HOST/DB", envvar="OYSTER_AUDIT_DB")] = None,
        upstream: Annotated[str, typer.Option(
            help="model for playground replies: embedded, openai:MODEL@URL, hf:PATH, or none"
        )] = "none",
        policy: Annotated[Path | None, typer.Option(
            help="policy YAML (default: the packaged policy)", dir_okay=False)] = None,
        assessor: Annotated[str, typer.Option(help="assessor spec")] = "default",
        keys_db: Annotated[str | None, typer.Option(
            "--keys-db", help="API key database (SQLite file or postgresql:// URL); without "
            "it the console is served on 127.0.0.1 only, with no sign-in",
            envvar="OYSTER_KEYS_DB")] = None,
        reports_dir: Annotated[Path | None, typer.Option(
            "--reports-dir", help="folder holding `oyster report` HTML files", file_okay=False
        )] = None,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port to listen on")] = 8090,
    ) -> None:
        """Serve the review console alone: playground, audit browser, policy view and
        benchmark reports at http://HOST:PORT/console. Without --keys-db it listens on
        loopback only; with it, sign in with a key that has the 'inspect' or 'admin' scope."""
        import uvicorn

        from oyster.backends import from_spec
        from oyster.engine import Engine
        from oyster.respond import Responder
        from oyster.serve.console.access import is_loopback
        from oyster.serve.console.app import ConsoleConfig, create_console_app
        from oyster.serve.console.auditquery import audit_query
        from oyster.serve.keys import KeyStore
        from oyster.serve.storage import parse_location

        if keys_db is None and not is_loopback(host):
            typer.echo(f"error: without --keys-db the console listens on 127.0.0.1 only, not "
                       f"{host}", err=True)
            raise typer.Exit(2)
        backend: Any = None
        try:
            # never the password of a PostgreSQL URL
            shown_audit = str(parse_location(audit_db, "audit log")) if audit_db else ""
            engine = Engine(policy=str(policy) if policy else None, assessor=assessor)
            keys = KeyStore(keys_db) if keys_db is not None else None
            if upstream != "none":
                backend = from_spec(upstream)
            config = ConsoleConfig(
                engine=engine, responder=Responder(engine, backend) if backend else None,
                audit=audit_query(audit_db) if audit_db else None,
                audit_source=shown_audit, keys=keys, bind_host=host,
                reports_dir=reports_dir,
                policy_source=str(policy) if policy else "the packaged default policy")
            app_ = create_console_app(config)
        except OysterError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"oyster console: http://{host}:{port}/console  policy={engine.policy.label}"
                   f" upstream={upstream} audit={shown_audit or '-'} "
                   f"auth={'keys (inspect/admin scope)' if keys else 'off (loopback only)'}",
                   err=True)
        try:
            uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False)
        finally:
            if backend is not None:
                backend.close()
