"""A real Ray cluster on 127.0.0.1 for the tests: a head and worker nodes, each its own `ray start --block`
process (its own raylet, as on separate machines), with token authentication as Ray 2.60 starts it by default.

Every process of the cluster carries the cluster's token in its environment; :meth:`LocalCluster.stop` ends
them all by that mark (also the task workers, which Ray puts in process groups of their own), so nothing
outlives the test, and it never runs ``ray stop`` (which would end every Ray on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``start_head(cpus)``, ``add_worker(cpus)``, ``kill(node)``, ``stop()``; ``env`` is what a driver needs."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="er-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0"}
        self.nodes: list[subprocess.Popen] = []

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(Path(self.temp) / f"{name}.log", "wb")
        p = subprocess.Popen([RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                              "--object-store-memory", str(80 * 2**20), *args],
                             env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        log.close()
        self.nodes.append(p)
        return p

    def start_head(self, cpus: int) -> subprocess.Popen:
        p = self._start(["--head", "--port", str(self.port), "--num-cpus", str(cpus), "--include-dashboard=false",
                         "--dashboard-port", str(free_port()), "--temp-dir", self.temp], "head")  # fmt: skip
        self.wait_nodes(1)
        return p

    def add_worker(self, cpus: int) -> subprocess.Popen:
        n = self.alive()
        p = self._start(["--address", self.address, "--num-cpus", str(cpus)], f"worker{len(self.nodes)}")
        self.wait_nodes(n + 1)
        return p

    def alive(self) -> int:
        """Live nodes, as `ray status` lists them."""
        r = subprocess.run([RAY, "status", "--address", self.address], env=self.env, capture_output=True, text=True, timeout=60)
        lines = r.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0].splitlines() if "Active:" in r.stdout else []
        return sum(" node_" in ln for ln in lines)

    def wait_nodes(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() not in (None, -9) for p in self.nodes):  # a node ended by itself (-9: killed by us)
                raise RuntimeError(f"a Ray node ended: see {self.temp}/*.log")
            if self.alive() == n:
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster did not reach {n} live nodes in {timeout} s (logs in {self.temp})")

    def kill(self, node: subprocess.Popen) -> None:
        """The node dies at once, as a machine that loses power: its `ray start`, raylet and agents (kill -9)."""
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait(10)

    def pids(self) -> list[int]:
        """Every process that carries this cluster's token (nodes, their agents and task workers)."""
        mark = f"RAY_AUTH_TOKEN={self.token}".encode()
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    if mark in (d / "environ").read_bytes().split(b"\0"):
                        out.append(int(d.name))
                except OSError:
                    pass
        return out

    def stop(self) -> None:
        for p in self.nodes:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.pids():
            time.sleep(0.5)
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.nodes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)
