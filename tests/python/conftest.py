"""Starts a mock OpenAI-compatible upstream and the real Switchyard gateway for the SDK tests.

Binaries come from SWITCHYARD_BIN and MOCK_UPSTREAM_BIN (set by scripts/test.sh), defaulting to
the debug build. Only 127.0.0.1 is used: proxies from the environment are bypassed for it.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SWITCHYARD = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target/debug/switchyard"))
MOCK_UPSTREAM = os.environ.get("MOCK_UPSTREAM_BIN", str(ROOT / "target/debug/mock-upstream"))

# The SDK's HTTP client honours HTTP(S)_PROXY from the environment (CI runners often set one):
# loopback must never go through it.
for _var in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_var, "").split(",") if h]
    os.environ[_var] = ",".join(_hosts + [h for h in ("127.0.0.1", "localhost") if h not in _hosts])

# Readiness probes: plain urllib with no proxy at all.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

READY_TIMEOUT_S = 30.0
POLL_S = 0.1


def free_port() -> int:
    """A free loopback port (bound then released; the child binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exited(proc: subprocess.Popen, log: Path) -> RuntimeError:
    return RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before it was ready:\n{log.read_text()}")


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Polls `url` until it answers 200; fails with the process's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(proc, log)
        try:
            with _direct.open(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()}")


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Polls until 127.0.0.1:`port` accepts connections; fails with the log as wait_for does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(proc, log)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(POLL_S)
    raise RuntimeError(f"port {port} not open after {timeout}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
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

# Logs of the session's processes, kept when a test failed so the terminal summary can show them
# after the temporary directory is gone.
_failure_logs: list[tuple[str, str]] = []


class Processes:
    """Starts the mock upstream and gateways in a temp dir; stops them all at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen:
        with log.open("w") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((p, log))
        return p

    def upstream(self, chunks: int = 4) -> int:
        """Starts mock-upstream on a free port; returns the port once it accepts connections."""
        port = free_port()
        log = self.tmp / f"upstream-{port}.log"
        p = self._spawn([MOCK_UPSTREAM, "--listen", f"127.0.0.1:{port}", "--chunks", str(chunks)], log)
        wait_for_port(port, p, log)
        return port

    def gateway(self, config: str, health_url: str, serving_port: int | None = None) -> subprocess.Popen:
        """Writes `config` and runs `switchyard run --conf` on it until `health_url` answers 200
        and, when given, `serving_port` accepts connections: the admin listener opens before the
        inference one (which waits for the background services), so a test that waits on an
        admin URL names the inference port too."""
        n = len(self.procs)
        conf = self.tmp / f"switchyard-{n}.yaml"
        conf.write_text(config)
        log = self.tmp / f"gateway-{n}.log"
        p = self._spawn([SWITCHYARD, "run", "--conf", str(conf)], log)
        wait_for(health_url, p, log)
        if serving_port is not None:
            wait_for_port(serving_port, p, log)
        return p

    def stop_all(self, keep_logs: bool) -> None:
        for p, log in reversed(self.procs):
            died = p.poll()
            stop(p)
            if keep_logs or died is not None:
                status = f"exited early with {died}" if died is not None else "stopped at the end"
                _failure_logs.append((f"{log.name} ({' '.join(map(str, p.args))}; {status})", log.read_text()))


@pytest.fixture(scope="session")
def processes(request):
    for binary, var in ((SWITCHYARD, "SWITCHYARD_BIN"), (MOCK_UPSTREAM, "MOCK_UPSTREAM_BIN")):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is not an executable: build it (cargo build -p switchyard -p "
                        f"switchyard-benches --bins) or set {var}", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="switchyard-py-") as tmp:
        procs = Processes(Path(tmp))
        try:
            yield procs
        finally:
            procs.stop_all(keep_logs=request.session.testsfailed > 0)


@pytest.fixture(scope="session")
def gateway_url(processes):
    """The main gateway (mock provider `sim` and the mock upstream behind `upstream`)."""
    up_port = processes.upstream(chunks=4)
    port, admin_port = free_port(), free_port()
    processes.gateway(
        CONFIG.format(port=port, admin_port=admin_port, up_port=up_port),
        f"http://127.0.0.1:{port}/v1/health",
    )
    return f"http://127.0.0.1:{port}/v1"


class MockProvidersEnv:
    """mock_providers.py (recording every request it receives) and a gateway configured against it."""

    def __init__(self, port: int, record: Path):
        self.port = port
        self.record = record

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.record.read_text().splitlines() if x.strip()]

    def sent(self, marker: str) -> list[dict]:
        """Upstream requests whose body mentions `marker`."""
        return [r for r in self.records() if marker in json.dumps(r.get("body"))]


def start_mock_providers(processes, config: str, name: str) -> MockProvidersEnv:
    """Starts mock_providers.py and a gateway from `config` (a template with {port}, {admin_port} and
    {mp}, the mock's port)."""
    mp = free_port()
    record = processes.tmp / f"{name}-record-{mp}.jsonl"
    log = processes.tmp / f"{name}-mock-providers-{mp}.log"
    mock = Path(__file__).resolve().parent / "mock_providers.py"
    p = processes._spawn([sys.executable, str(mock), "--port", str(mp), "--record", str(record)], log)
    wait_for_port(mp, p, log)
    port, admin_port = free_port(), free_port()
    processes.gateway(config.format(port=port, admin_port=admin_port, mp=mp), f"http://127.0.0.1:{port}/v1/health")
    return MockProvidersEnv(port, record)


def pytest_terminal_summary(terminalreporter):
    for name, text in _failure_logs:
        terminalreporter.section(f"log: {name}")
        terminalreporter.write(text if text.endswith("\n") or not text else text + "\n")
