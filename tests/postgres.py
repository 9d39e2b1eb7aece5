"""A throwaway PostgreSQL server for the tests and `make bench`: initdb into a temporary folder,
pg_ctl start on a free port of 127.0.0.1 (no Unix socket elsewhere, trust authentication), stop
at the end. Debian's `postgresql` package provides the binaries (`.ci/run` installs it).

initdb refuses to run as root: as root the server is created and run as the `postgres` user
(the Debian package creates it; `runuser` switches to it), and its folder is handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
REQUIRED_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` "
    "package (`.ci/run` does: `make postgres`)"
)


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian cluster version), or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    """One running server; `url(db)` names a database on it."""

    bin: Path
    data: Path
    port: int
    as_user: str | None
    durable: bool = False  # fsync on: what a deployment runs (the bench); off: fast tests

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> None:
        fsync = "on" if self.durable else "off"
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync={fsync} -c max_connections=200"
        )
        log = str(self.data / "server.log")
        self._run("pg_ctl", "-D", str(self.data / "db"), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data / "db"), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url()) as con:
            con.autocommit = True
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_local_postgres(root: Path | None = None, durable: bool = False) -> LocalPostgres:
    """initdb and start a server in a new temporary folder; raises RuntimeError without binaries."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError(REQUIRED_HINT)
    data = Path(tempfile.mkdtemp(prefix="nextbest-pg-", dir=root))
    as_user = None
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)  # KeyError: no such user; the package creates it
        os.chown(data, entry.pw_uid, entry.pw_gid)
        data.chmod(0o700)
        as_user = SERVER_USER
    server = LocalPostgres(bin_dir, data, _free_port(), as_user, durable)
    server._run(
        "initdb", "-D", str(data / "db"), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8",
        "--no-sync",
    )  # fmt: skip
    server.start()
    return server


def remove(server: LocalPostgres) -> None:
    """Stop the server (if running) and delete its folder."""
    with contextlib.suppress(RuntimeError):  # already stopped
        server.stop("immediate")
    shutil.rmtree(server.data, ignore_errors=True)
