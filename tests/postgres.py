"""A real PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` on 127.0.0.1, in a folder of its own.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the ``postgres``
system user (Debian's package creates it) through ``runuser``. ``.ci/run`` installs the server where it
is missing; elsewhere the tests that need it skip and say why (or fail under CI, where a skip would hide
the missing part).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.factories import free_port

USER = "leadscore"


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


@dataclass
class PostgresServer:
    """A running server: its data folder, port and the commands to stop and start it again (outage tests)."""

    bin: Path
    data: Path
    port: int
    run_as: str | None

    def url(self, database: str = USER, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='{self.data}' -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; returns its SQLAlchemy URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Initialise a cluster in a fresh folder, start it on a free port on 127.0.0.1, stop and remove it after."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    run_as = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, data, free_port(), run_as)
    try:
        server._run("initdb", "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        server.start()
        server._run("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, USER)
        yield server
    finally:
        server.stop("immediate")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                shutil.rmtree(data)
                break
            except OSError:
                time.sleep(0.2)
