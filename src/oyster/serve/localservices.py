"""Throw-away PostgreSQL and Redis servers on 127.0.0.1, for tests, benchmarks and trying
replicas on one machine. Never for production: data lives in a temporary folder, PostgreSQL
trusts local connections without a password, Redis keeps nothing on disk.

    python -m oyster.serve.localservices up --dir /tmp/svc     # prints `export ...` lines
    python -m oyster.serve.localservices down --dir /tmp/svc

`up` starts both servers as daemons on free ports and prints `OYSTER_TEST_PG_URL` and
`OYSTER_TEST_REDIS_URL`; `down` stops them and removes the folder. From Python,
`LocalPostgres(dir).start()` and `LocalRedis(dir).start()` do the same for one server.

PostgreSQL comes from the Debian package (`/usr/lib/postgresql/*/bin`) or `PATH`; `initdb`
refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from oyster.errors import OysterError
from oyster.serve.testing import free_port

PG_DB = "oyster"
PG_USER = "oyster"
START_TIMEOUT_S = 60.0


class ServiceError(OysterError):
    """A local service could not be found, started or stopped."""


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _as_service_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServiceError("running as root without `runuser`: cannot start PostgreSQL")
    return [runuser, "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    if done.returncode != 0:
        raise ServiceError(f"{what} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-800:]}")


class LocalPostgres:
    """A PostgreSQL cluster in `folder/pg`, listening on 127.0.0.1:`port` (and a socket in
    the data folder), with database `oyster` owned by the trusted user `oyster`."""

    def __init__(self, folder: str | Path, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.data = self.folder / "pg"
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DB}"

    @staticmethod
    def available() -> bool:
        return _which("initdb") is not None and _which("pg_ctl") is not None

    def start(self) -> LocalPostgres:
        initdb, pg_ctl = _which("initdb"), _which("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise ServiceError("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in "
                               "/usr/lib/postgresql/*/bin); apt-get install postgresql")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # the postgres user must be able to reach its data folder
            os.chmod(self.folder, 0o755)
            self.data.mkdir(exist_ok=True)
            shutil.chown(self.data, "postgres", "postgres")
        _run(_as_service_user([initdb, "-D", str(self.data), "-U", PG_USER, "-A", "trust",
                               "-E", "UTF8", "--no-sync"]), "initdb")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.data} -c max_connections=200")
        _run(_as_service_user([pg_ctl, "-D", str(self.data), "-o", options, "-l",
                               str(self.data / "server.log"), "-w", "-t",
                               str(int(START_TIMEOUT_S)), "start"]), "pg_ctl start")
        self._create_database()
        return self

    def _create_database(self) -> None:
        createdb = _which("createdb")
        if createdb is None:
            raise ServiceError("createdb not found next to initdb")
        _run(_as_service_user([createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER,
                               PG_DB]), "createdb")

    def stop(self) -> None:
        pg_ctl = _which("pg_ctl")
        if pg_ctl and (self.data / "postmaster.pid").exists():
            subprocess.run(_as_service_user([pg_ctl, "-D", str(self.data), "-m", "immediate",
                                             "-w", "stop"]), capture_output=True, timeout=60)


class LocalRedis:
    """`redis-server` on 127.0.0.1:`port`, no persistence, daemonised with a pid file."""

    def __init__(self, folder: str | Path, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"redis-{self.port}.pid"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> LocalRedis:
        server = shutil.which("redis-server")
        if server is None:
            raise ServiceError("redis-server is not installed; apt-get install redis-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        _run([server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(self.pidfile),
              "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
             "redis-server")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if time.monotonic() > deadline:
                raise ServiceError(f"redis-server on port {self.port} did not come up")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _state_file(folder: Path) -> Path:
    return folder / "services.env"


def up(folder: Path) -> dict[str, str]:
    """Start both servers; their URLs by environment variable name (also written to
    `folder/services.env`, which `down` reads)."""
    pg = LocalPostgres(folder)
    redis = LocalRedis(folder)
    try:
        pg.start()
        redis.start()
    except BaseException:
        pg.stop()
        redis.stop()
        raise
    env = {"OYSTER_TEST_PG_URL": pg.url, "OYSTER_TEST_REDIS_URL": redis.url,
           "OYSTER_LOCAL_PG_PORT": str(pg.port), "OYSTER_LOCAL_REDIS_PORT": str(redis.port)}
    _state_file(folder).write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env


def down(folder: Path) -> None:
    """Stop what `up` started in `folder` and remove the folder."""
    state = _state_file(folder)
    if state.exists():
        env = dict(line.split("=", 1) for line in state.read_text().split())
        LocalPostgres(folder, int(env["OYSTER_LOCAL_PG_PORT"])).stop()
        LocalRedis(folder, int(env["OYSTER_LOCAL_REDIS_PORT"])).stop()
    shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--dir", type=Path, required=True, help="folder for data, logs, pids")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            for name, value in up(args.dir).items():
                print(f"export {name}={value}")
        else:
            down(args.dir)
    except (OysterError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
