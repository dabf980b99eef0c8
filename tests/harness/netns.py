"""A throw-away Linux network namespace that has nothing but loopback.

Datadog's serverless mini-agent (:mod:`tests.harness.miniagent`) believes it runs in a cloud
function and asks that cloud's metadata server for its identity; ``oracles.md`` therefore allows
it to run **only** inside a namespace whose one interface is ``lo``. There no route leaves the
machine: the metadata request fails at once ("Network is unreachable") and nothing the agent
forwards can reach anything but the fake intake started in the same namespace.

Contract of :class:`NetNamespace`:

* the name is unique per instance (``otel-dd-<pid>-<random>``); a namespace with that name that
  already exists is **never reused** (:class:`NetnsError`, nothing started);
* after ``ip netns add`` and ``ip link set lo up`` the namespace is checked: exactly one link,
  ``lo``, UP, no route other than loopback's; anything else deletes it and raises;
* :meth:`run` / :meth:`popen` run a command with ``ip netns exec`` and refuse to run before the
  check passed;
* :meth:`delete` kills every process still inside (by the pids ``ip netns pids`` lists, all of
  them started by us), then ``ip netns delete``; it runs from ``__exit__`` and from an ``atexit``
  hook, so a crashed test session leaves no namespace behind.

Needs root and iproute2 (``scripts/run.sh`` installs it when ``ip`` is missing). Stdlib only.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["HOST_NETNS_ENV", "NETNS_ENV", "NetNamespace", "NetnsError"]

_IP_TIMEOUT = 10.0
#: Set for every command run inside: the namespace's name and the inode of the namespace we
#: started from, so that code inside can prove where it runs (``miniagent.assert_isolated``).
NETNS_ENV = "OTEL_DD_BRIDGE_NETNS"
HOST_NETNS_ENV = "OTEL_DD_BRIDGE_HOST_NETNS"


class NetnsError(RuntimeError):
    """The namespace could not be created, verified or used safely."""


def _ip() -> str:
    path = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None)
    if path is None:
        raise NetnsError("`ip` (iproute2) not found: `scripts/run.sh test` installs it "
                         "(apt-get install iproute2)")
    return path


class NetNamespace:
    """One loopback-only network namespace, created by :meth:`create`, removed by :meth:`delete`."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"otel-dd-{os.getpid()}-{secrets.token_hex(4)}"
        self._ip = _ip()
        self.created = False
        self.verified = False

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self) -> NetNamespace:
        """Create, bring ``lo`` up and verify; raise :class:`NetnsError` on any doubt."""
        if os.geteuid() != 0:
            raise NetnsError("creating a network namespace needs root")
        if self.name in self.existing():
            raise NetnsError(f"network namespace {self.name!r} already exists: refusing to reuse it")
        res = self._run_ip(["netns", "add", self.name])
        if res.returncode != 0:
            raise NetnsError(f"`ip netns add {self.name}` failed: {res.stderr.strip()}")
        self.created = True
        atexit.register(self.delete)
        try:
            res = self._run_ip(["netns", "exec", self.name, self._ip, "link", "set", "lo", "up"])
            if res.returncode != 0:
                raise NetnsError(f"`ip link set lo up` failed in {self.name}: {res.stderr.strip()}")
            self.verify()
        except BaseException:
            self.delete()
            raise
        return self

    def verify(self) -> None:
        """Check that ``lo`` (UP) is the only link and loopback the only route."""
        links = self._json(["-j", "link", "show"])
        names = sorted(str(link.get("ifname")) for link in links)
        if names != ["lo"]:
            raise NetnsError(f"namespace {self.name} has links {names}, expected only ['lo']")
        flags = links[0].get("flags", [])
        if "UP" not in flags:
            raise NetnsError(f"loopback is not up in {self.name}: flags {flags}")
        for family in ("-4", "-6"):
            for route in self._json([family, "-j", "route", "show", "table", "all"]):
                dev = route.get("dev")
                if dev not in (None, "lo") or route.get("gateway"):
                    raise NetnsError(f"namespace {self.name} has a non-loopback route: {route}")
        self.verified = True

    def delete(self) -> None:
        """Kill what still runs inside, delete the namespace. Idempotent; never raises."""
        if not self.created:
            return
        try:
            self._kill_inside()
            res = self._run_ip(["netns", "delete", self.name])
            if res.returncode == 0 or self.name not in self.existing():
                self.created = False
                self.verified = False
        except Exception:  # noqa: BLE001 - cleanup must not mask the test's own error
            pass

    def __enter__(self) -> NetNamespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()

    # -- running things inside ---------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped in ``ip netns exec <name>``; only for a verified namespace."""
        if not (self.created and self.verified):
            raise NetnsError("namespace not created and verified: refusing to run anything")
        return [self._ip, "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside and wait (at most ``timeout`` s); output captured as text."""
        return subprocess.run(self.command(argv), env=self.env(env), cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside (``subprocess.Popen`` keywords pass through)."""
        kwargs["env"] = self.env(kwargs.get("env"))
        return subprocess.Popen(self.command(argv), **kwargs)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: ours) plus :data:`NETNS_ENV` and :data:`HOST_NETNS_ENV`."""
        out = dict(os.environ if base is None else base)
        out[NETNS_ENV] = self.name
        out[HOST_NETNS_ENV] = str(os.stat("/proc/self/ns/net").st_ino)
        return out

    def pids(self) -> list[int]:
        """Pids of the processes inside the namespace."""
        res = self._run_ip(["netns", "pids", self.name])
        return [int(p) for p in res.stdout.split() if p.strip().isdigit()]

    # -- helpers -----------------------------------------------------------------------------

    def existing(self) -> set[str]:
        """Names of the namespaces that exist now."""
        res = self._run_ip(["netns", "list"])
        return {line.split()[0] for line in res.stdout.splitlines() if line.strip()}

    def _kill_inside(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and self.pids():
                time.sleep(0.05)

    def _json(self, args: list[str]) -> list[dict[str, Any]]:
        res = self._run_ip(["netns", "exec", self.name, self._ip, *args])
        if res.returncode != 0:
            raise NetnsError(f"`ip {' '.join(args)}` failed in {self.name}: {res.stderr.strip()}")
        out: list[dict[str, Any]] = json.loads(res.stdout or "[]")
        return out

    def _run_ip(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self._ip, *args], capture_output=True, text=True,
                              timeout=_IP_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
