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


@pytest.fixture(scope="session")
def gateway_url():
    switchyard = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target/debug/switchyard"))
    mock_upstream = os.environ.get("MOCK_UPSTREAM_BIN", str(ROOT / "target/debug/mock-upstream"))
    with tempfile.TemporaryDirectory(prefix="switchyard-py-") as tmp:
        tmp = Path(tmp)
        port, admin_port, up_port = free_port(), free_port(), free_port()
        up_log = tmp / "upstream.log"
        up = subprocess.Popen(
            [mock_upstream, "--listen", f"127.0.0.1:{up_port}", "--chunks", "4"],
            stdout=up_log.open("w"),
            stderr=subprocess.STDOUT,
        )
        procs = [up]
        try:
            wait_for_port(up_port, up, up_log)
            conf = tmp / "switchyard.yaml"
            conf.write_text(CONFIG.format(port=port, admin_port=admin_port, up_port=up_port))
            gw_log = tmp / "gateway.log"
            gw = subprocess.Popen(
                [switchyard, "run", "--conf", str(conf)],
                stdout=gw_log.open("w"),
                stderr=subprocess.STDOUT,
            )
            procs.append(gw)
            wait_for(f"http://127.0.0.1:{port}/v1/health", gw, gw_log)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            for p in reversed(procs):
                stop(p)
