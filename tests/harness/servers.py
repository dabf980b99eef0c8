"""Real Redis and PostgreSQL servers for the integration tests, from the system packages.

Each server runs on a free 127.0.0.1 port with its data in a fresh temporary directory and is
stopped (and the directory removed) by ``stop()``. They are used as session-scoped fixtures, so
one pair serves the whole run.

A server that cannot start raises :class:`ServerUnavailable` with the reason and the server's
own output: the tests that need it then fail loudly instead of being skipped, because a
missing ``redis-server`` or ``postgresql`` package is an installation bug (``scripts/run.sh
test`` installs both).

PostgreSQL refuses to run as root. When the tests run as root, ``initdb`` and ``postgres`` run
as an unprivileged account (``postgres`` if it exists, else ``nobody``; the child process drops
privileges itself, so no runuser/su sits between us and postgres' signal handling), and the
data directory is handed to that account first.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 20.0


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not come up."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (closed again, so a tiny race is possible)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not listen on 127.0.0.1:{port} within "
                            f"{START_TIMEOUT_S:.0f}s: {_tail(log)}")


def _tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RedisServer:
    """``redis-server`` without persistence on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("redis-server is not installed (apt-get install redis-server; "
                                    "`bash scripts/run.sh test` does it)")
        self._dir = tempfile.mkdtemp(prefix="otel-dd-redis-")
        log = Path(self._dir) / "redis.log"
        with open(log, "wb") as out:
            self._proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir,
                 "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_port(self.port, self._proc, "redis-server", log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop_proc(self._proc)
        self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` of the newest installed server.

    ``/usr/local/bin/pg_ctl`` may exist without a server, so the Debian layout
    (``/usr/lib/postgresql/<major>/bin``) is searched first and a ``PATH`` hit only counts
    when ``postgres`` sits next to ``initdb``.
    """
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name)
                        if Path(p).parent.parent.name.isdigit() else 0)
    for initdb in reversed(candidates):
        bindir = Path(initdb).parent
        if (bindir / "postgres").exists():
            return bindir
    found = shutil.which("initdb")
    if found:
        bindir = Path(os.path.realpath(found)).parent
        if (bindir / "postgres").exists():
            return bindir
    raise ServerUnavailable("no PostgreSQL server found (initdb and postgres); install the "
                            "`postgresql` package (`bash scripts/run.sh test` does it)")


def _unprivileged_user() -> str | None:
    """The account to run PostgreSQL as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServerUnavailable("running as root and neither a `postgres` nor a `nobody` account "
                            "exists to run PostgreSQL as")


def _drop_privileges(user: str | None) -> dict[str, object]:
    """Popen keyword arguments that run the child as ``user`` (no runuser/su in between, so
    signals reach postgres itself and nothing forwards or swallows them)."""
    if user is None:
        return {}
    info = pwd.getpwnam(user)
    return {"user": info.pw_uid, "group": info.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": info.pw_dir or "/", "USER": user}}


class PostgresServer:
    """A throw-away PostgreSQL cluster (trust auth, fsync off) on a free loopback port.

    ``dsn`` is a libpq URL for the ``postgres`` superuser role ``bridge`` and database
    ``postgres``; ``sqlalchemy_url`` is the same for SQLAlchemy's psycopg (v3) dialect.
    """

    user = "bridge"
    dbname = "postgres"

    def __init__(self) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def start(self) -> PostgresServer:
        bindir = _postgres_bindir()
        runas = _unprivileged_user()
        self._dir = tempfile.mkdtemp(prefix="otel-dd-pg-")
        data = Path(self._dir) / "data"
        sock = Path(self._dir) / "sock"
        data.mkdir()
        sock.mkdir()
        log = Path(self._dir) / "postgres.log"
        if runas is not None:
            info = pwd.getpwnam(runas)
            for p in (Path(self._dir), data, sock):
                os.chown(p, info.pw_uid, info.pw_gid)
        try:
            init = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
                 "--no-sync", "-E", "UTF8", "--locale=C"],
                capture_output=True, timeout=120, cwd=self._dir,
                **_drop_privileges(runas))  # type: ignore[call-overload]
            if init.returncode != 0:
                raise ServerUnavailable(
                    f"initdb failed ({init.returncode}): "
                    f"{(init.stdout + init.stderr).decode(errors='replace')[-3000:]}")
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(  # type: ignore[call-overload]
                    [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                     "-p", str(self.port), "-k", str(sock), "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self._dir, **_drop_privileges(runas))
            _wait_port(self.port, self._proc, "postgres", log)
            self._wait_ready(log)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log: Path) -> None:
        """The port opens before the cluster accepts queries; poll with a real connection."""
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"postgres not ready: {exc}; {_tail(log)}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        # SIGTERM is postgres' "smart" shutdown (waits for clients); SIGINT is "fast".
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(2)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                _stop_proc(self._proc)
        self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
