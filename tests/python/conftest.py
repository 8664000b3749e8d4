"""Starts a mock OpenAI-compatible upstream and the real Switchyard gateway for the SDK tests.

Binaries come from SWITCHYARD_BIN and MOCK_UPSTREAM_BIN (set by scripts/test.sh), defaulting to
the debug build. Only 127.0.0.1 is used.
"""
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()}")


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {timeout}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - name: sim
    kind: mock
    latency: 0ms
  - name: upstream
    kind: openai
    base_url: http://127.0.0.1:{up_port}/v1
    api_key: sk-upstream-secret
models:
  - name: chat
    aliases: ["gpt-4o-mini"]
    deployments:
      - provider: sim
        model: mock-1
  - name: fast
    deployments:
      - provider: upstream
        model: mock-model
telemetry:
  access_log: off
"""


SWITCHYARD = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target/debug/switchyard"))
MOCK_UPSTREAM = os.environ.get("MOCK_UPSTREAM_BIN", str(ROOT / "target/debug/mock-upstream"))


class Processes:
    """Starts the mock upstream and gateways in a temp dir; stops them all at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def upstream(self, chunks: int = 4) -> int:
        port = free_port()
        log = self.tmp / f"upstream-{port}.log"
        p = subprocess.Popen(
            [MOCK_UPSTREAM, "--listen", f"127.0.0.1:{port}", "--chunks", str(chunks)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        wait_for_port(port, p, log)
        return port

    def gateway(self, config: str, health_url: str) -> subprocess.Popen:
        n = len(self.procs)
        conf = self.tmp / f"switchyard-{n}.yaml"
        conf.write_text(config)
        log = self.tmp / f"gateway-{n}.log"
        p = subprocess.Popen(
            [SWITCHYARD, "run", "--conf", str(conf)],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        wait_for(health_url, p, log)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            stop(p)


@pytest.fixture(scope="session")
def processes():
    with tempfile.TemporaryDirectory(prefix="switchyard-py-") as tmp:
        procs = Processes(Path(tmp))
        try:
            yield procs
        finally:
            procs.stop_all()


@pytest.fixture(scope="session")
def gateway_url(processes):
    up_port = processes.upstream()
    port, admin_port = free_port(), free_port()
    processes.gateway(
        CONFIG.format(port=port, admin_port=admin_port, up_port=up_port),
        f"http://127.0.0.1:{port}/v1/health",
    )
    return f"http://127.0.0.1:{port}/v1"
