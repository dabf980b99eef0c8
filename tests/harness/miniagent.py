"""Datadog's Rust serverless mini-agent (PyPI ``datadog-serverless-compat``) as a test judge.

The mini-agent is built on libdatadog: the Agent's v0.4/v0.5 decoder, normalizer, SQL / Redis /
Memcached obfuscator and stats concentrator. It forwards to an intake exactly as an Agent does
(gzip protobuf ``AgentPayload`` to ``<DD_APM_DD_URL>/api/v0.2/traces``, gzip msgpack stats to
``/api/v0.2/stats``), which makes it the reference for our agentless mode (``oracles.md`` §2).

**Safety.** It only runs when it believes it is a cloud function, and then asks that cloud's
metadata server for its identity. :meth:`MiniAgent.start` therefore refuses to start unless the
calling process is in a network namespace other than the host's whose only link is ``lo`` (the
check runs every time, just before ``Popen``), and the namespace itself is created and deleted
by :class:`tests.harness.netns.NetNamespace`. The parity driver (``parity_driver.py``) runs
inside that namespace and starts this class from there. Never start the binary any other way.

Settings (``oracles.md``): ``DD_API_KEY``, ``DD_APM_DD_URL=http://127.0.0.1:<intake>``,
``DD_APM_RECEIVER_PORT=<free>``, ``DD_DOGSTATSD_PORT=<free>``, ``DD_USE_DOGSTATSD=false``,
``DD_LOG_LEVEL=debug``, ``K_SERVICE`` + ``FUNCTION_TARGET`` (a Cloud Run function). Its
environment is otherwise scrubbed of every ``DD_*``/``OTEL_*`` variable of the caller.

The binary comes from the wheel installed in its own venv (``OTEL_DD_BRIDGE_MINIAGENT_VENV``,
default ``<repo>/.venvs/miniagent``, made by ``scripts/run.sh``), pinned to
:data:`MINIAGENT_VERSION`. A missing venv, a different version or a start failure raises
:class:`MiniAgentError` (a test error, never a skip). Stdlib only.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path

from tests.harness.netns import HOST_NETNS_ENV, NETNS_ENV

__all__ = [
    "MINIAGENT_VERSION",
    "SERVERLESS_TAGS",
    "MiniAgent",
    "MiniAgentError",
    "assert_isolated",
    "find_binary",
]

REPO = Path(__file__).resolve().parents[2]
VENV_ENV = "OTEL_DD_BRIDGE_MINIAGENT_VENV"
MINIAGENT_VERSION = "0.19.0"  # keep in step with MINIAGENT_VERSION in scripts/run.sh
START_TIMEOUT = 15.0
_REL_BIN = Path("datadog_serverless_compat", "bin", "linux-amd64", "datadog-serverless-compat")

#: What the mini-agent adds because it believes it runs in a Cloud Run function; ignored when
#: comparing (``oracles.md``). Keys, or key prefixes ending in ".".
SERVERLESS_TAGS = ("gcrfx.", "functionname", "origin", "_dd.origin")


class MiniAgentError(RuntimeError):
    """The mini-agent is not installed as pinned, or could not start."""


def find_binary(venv: str | None = None) -> Path:
    """The pinned ``datadog-serverless-compat`` binary in its venv, made executable.

    Raises:
        MiniAgentError: no such venv, package or binary, or another version.
    """
    root = Path(venv or os.environ.get(VENV_ENV) or REPO / ".venvs" / "miniagent")
    hint = (f"install it with `bash scripts/run.sh test` (or `python -m venv {root} && "
            f"{root}/bin/pip install datadog-serverless-compat=={MINIAGENT_VERSION}`), "
            f"or point {VENV_ENV} at a venv that has it")
    sites = sorted(root.glob("lib/python*/site-packages"))
    if not sites:
        raise MiniAgentError(f"mini-agent venv not found at {root}: {hint}")
    for site in sites:
        binary = site / _REL_BIN
        if not binary.is_file():
            continue
        dist = site / f"datadog_serverless_compat-{MINIAGENT_VERSION}.dist-info"
        if not dist.is_dir():
            found = sorted(p.name for p in site.glob("datadog_serverless_compat-*.dist-info"))
            raise MiniAgentError(
                f"datadog-serverless-compat {MINIAGENT_VERSION} expected in {site}, found {found}: "
                f"{hint}")
        mode = binary.stat().st_mode
        if not mode & stat.S_IXUSR:  # the wheel does not keep the run bit
            binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return binary
    raise MiniAgentError(f"datadog-serverless-compat binary ({_REL_BIN}) not found in {root}: {hint}")


def assert_isolated(netns: str | None = None) -> None:
    """Raise unless this process runs in the loopback-only namespace ``netns``.

    ``netns`` defaults to ``$OTEL_DD_BRIDGE_NETNS`` (set by the harness). Three independent
    checks: this process's network namespace is the one ``ip netns add`` pinned at
    ``/run/netns/<netns>`` (same nsfs inode), it is not the namespace the harness started from
    (``$OTEL_DD_BRIDGE_HOST_NETNS``, an inode, when given), and ``/proc/self/net/dev`` and
    ``/sys/class/net`` (remounted per namespace by ``ip netns exec``) list nothing but ``lo``.
    """
    name = netns or os.environ.get(NETNS_ENV)
    if not name:
        raise MiniAgentError(f"refusing to start the mini-agent: no namespace named ({NETNS_ENV} "
                             "unset); run it only through tests.harness.netns.NetNamespace")
    try:
        own = os.stat("/proc/self/ns/net")
        pinned = os.stat(os.path.join("/run/netns", name))
    except OSError as exc:
        raise MiniAgentError(f"refusing to start the mini-agent: {exc}") from exc
    if (own.st_dev, own.st_ino) != (pinned.st_dev, pinned.st_ino):
        raise MiniAgentError(f"refusing to start the mini-agent: not inside namespace {name!r}")
    host = os.environ.get(HOST_NETNS_ENV, "")
    if host and host == str(own.st_ino):
        raise MiniAgentError("refusing to start the mini-agent in the host network namespace")
    with open("/proc/self/net/dev") as f:
        devs = sorted(line.split(":")[0].strip() for line in f.readlines()[2:] if ":" in line)
    sys_devs = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else devs
    if devs != ["lo"] or sys_devs != ["lo"]:
        raise MiniAgentError(f"refusing to start the mini-agent: this network namespace has links "
                             f"{devs} / {sys_devs}, expected only ['lo']")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (of the current namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MiniAgent:
    """A running mini-agent process forwarding to ``intake_url`` (started inside the namespace)."""

    def __init__(self, intake_url: str, log_path: str, *, api_key: str = "parity-test-key",
                 service: str = "parity-fn", venv: str | None = None) -> None:
        self.intake_url = intake_url
        self.log_path = log_path
        self.api_key = api_key
        self.service = service
        self.venv = venv
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """Its trace API (``/v0.4/traces`` ...)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MiniAgent:
        """Start it and wait until its trace API port answers.

        Raises:
            MiniAgentError: not isolated, binary missing, or it exited / stayed silent.
        """
        binary = find_binary(self.venv)
        assert_isolated()
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_"))}
        env.update({
            "DD_API_KEY": self.api_key,
            "DD_APM_DD_URL": self.intake_url,
            "DD_APM_RECEIVER_PORT": str(self.port),
            "DD_DOGSTATSD_PORT": str(free_port()),
            "DD_USE_DOGSTATSD": "false",
            "DD_LOG_LEVEL": "debug",
            "K_SERVICE": self.service,
            "FUNCTION_TARGET": self.service,
        })
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(binary)], env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = t0 + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise MiniAgentError(f"mini-agent exited with {rc} at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    self.startup_seconds = time.monotonic() - t0
                    return self
            except OSError:
                time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise MiniAgentError(
            f"mini-agent trace API not answering on {self.url} within {START_TIMEOUT:.0f} s:\n{tail}")

    def stop(self) -> None:
        """Terminate it (kill after 5 s). Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log_tail(self, n: int = 6000) -> str:
        """The end of its combined stdout/stderr."""
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> MiniAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
