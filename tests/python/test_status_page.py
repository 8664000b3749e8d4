"""The status page in a real browser: headless Chromium (Debian `chromium`) driven over the Chrome
DevTools Protocol with `websocket-client`. It logs in with the admin token, waits for the page to
draw `GET /admin/status`, and checks that what it shows matches that JSON (a provider pointed at
a refused port, with health checks on, is shown down), that no console error or exception
happened, that nothing was requested outside the gateway, and saves a screenshot.
"""
import base64
import itertools
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websocket

from conftest import _direct, free_port

ADMIN = "adm-browser-0123456789"
KEY = "sk-browser-key-0123456789"

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  admin_token: {admin}
  threads: 1
  grace_period: 1s
providers:
  - name: sim
    kind: mock
    latency: 0ms
  - name: dead
    kind: openai
    base_url: http://127.0.0.1:{dead_port}/v1
    api_key: sk-dead-secret
    health_check: {{ interval: 100ms, timeout: 200ms }}
models:
  - name: chat
    cache: {{ ttl: 10m }}
    guardrails: [greeting]
    deployments:
      - {{ provider: sim, model: mock-1, price: {{ input_per_mtok: 1, output_per_mtok: 2 }} }}
  - name: broken
    deployments:
      - {{ provider: dead, model: gpt-x }}
guardrails:
  - {{ name: greeting, on: [request], words: ["hi"], action: flag }}
cache: {{ kind: memory, ttl: 10m }}
auth:
  api_keys:
    - {{ name: k1, key: {key}, team: t1 }}
budgets:
  - {{ scope: global, limit: 100, period: daily }}
  - {{ scope: key:k1, limit: 50, period: monthly }}
store: {{ kind: sqlite, path: {db}, flush_interval: 50ms }}
telemetry:
  access_log: off
"""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: install the Debian package `chromium` (scripts/test.sh does)",
                pytrace=False)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_json(admin_port: int, path: str):
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}{path}",
                                 headers={"authorization": f"Bearer {ADMIN}"})
    with _direct.open(req, timeout=5) as r:
        return json.loads(r.read())


def chat(port: int, model: str) -> int:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"authorization": f"Bearer {KEY}",
                                          "content-type": "application/json"})
    try:
        with _direct.open(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def until(what: str, fn, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Cdp:
    """A minimal Chrome DevTools Protocol client: commands by id, events collected."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=10, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def eval(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        self.ws.close()


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("w")
    proc = subprocess.Popen(
        [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-proxy-server",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--window-size=1280,1600", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        active = profile / "DevToolsActivePort"
        until("chromium's DevTools port", lambda: active.exists() and active.read_text().strip())
        port = int(active.read_text().split()[0])
        targets = until("a page target", lambda: [
            t for t in json.loads(_direct.open(f"http://127.0.0.1:{port}/json/list", timeout=2).read())
            if t.get("type") == "page"])
        cdp = Cdp(targets[0]["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Network", "Page"):
            cdp.send(f"{domain}.enable")
        yield cdp
        cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_status_page_logs_in_and_shows_what_the_json_says(processes, browser, tmp_path):
    port, admin_port = free_port(), free_port()
    processes.gateway(
        CONFIG.format(port=port, admin_port=admin_port, admin=ADMIN, key=KEY,
                      dead_port=refused_port(), db=tmp_path / "state.db"),
        f"http://127.0.0.1:{admin_port}/status.css",
        serving_port=port,
    )
    for _ in range(3):
        assert chat(port, "chat") == 200
    assert chat(port, "broken") >= 500
    until("the dead provider marked down and k1's spend in the ledger", lambda: (
        lambda s: any(p["name"] == "dead" and p["status"] == "unhealthy" for p in s["providers"])
        and any(k["key"] == "k1" for k in s["top_keys_today"] or []))(admin_json(admin_port, "/admin/status")))

    origin = f"http://127.0.0.1:{admin_port}"
    browser.send("Page.navigate", url=f"{origin}/?refresh=1")
    until("the login form", lambda: browser.eval("!!document.getElementById('token')"))
    assert browser.eval("document.getElementById('providers') === null"), "data before login"
    browser.eval(f"document.getElementById('token').value = {json.dumps(ADMIN)};"
                 "document.getElementById('login').submit(); true")
    until("the page to draw the status", lambda: browser.eval(
        "!!(document.body && document.body.dataset.generated)"))
    # The session cookie is HttpOnly: script cannot read it.
    assert browser.eval("document.cookie") == ""

    # Let it refresh once more, then compare what it shows with the JSON it draws.
    first = int(browser.eval("document.body.dataset.generated"))
    until("a refresh", lambda: int(browser.eval("document.body.dataset.generated")) > first)
    status = admin_json(admin_port, "/admin/status")
    shown = browser.eval("""(() => ({
      overall: document.getElementById('overall').textContent,
      providers: [...document.querySelectorAll('#providers tbody tr[data-provider]')].map((tr) => ({
        name: tr.dataset.provider, status: tr.dataset.status,
        label: tr.querySelector('.state').textContent })),
      models: [...document.querySelectorAll('#models .model')].map((m) => ({
        name: m.dataset.model,
        circuits: [...m.querySelectorAll('li')].map((li) => li.dataset.circuit) })),
      scores: [...document.querySelectorAll('#models li')].map((li) => Number(li.dataset.score)),
      meters: document.querySelectorAll('#models .meter span').length,
      cacheHidden: document.getElementById('cache').hidden,
      hitRate: document.getElementById('cache').dataset.hitRate,
      cacheText: document.getElementById('cache-rate').textContent,
      guardrails: [...document.querySelectorAll('#guardrails tbody tr[data-guardrail]')].map((tr) =>
        [...tr.cells].map((c) => c.textContent)),
      guardrailsHidden: document.getElementById('guardrails').hidden,
      budgets: [...document.querySelectorAll('#budgets .budget')].map((b) => b.dataset.scope),
      bars: [...document.querySelectorAll('#budgets .bar span')].length,
      sparklines: [...document.querySelectorAll('svg.spark polyline')].map((p) =>
        p.getAttribute('points').split(' ').length),
      keys: [...document.querySelectorAll('#top-keys tbody tr')].map((tr) => tr.cells[0].textContent),
      errors: [...document.querySelectorAll('#errors tbody tr')].map((tr) =>
        [...tr.cells].map((c) => c.textContent)),
      requests: document.querySelector('[data-series="rps"] .value').textContent,
      problem: document.getElementById('problem').hidden,
    }))()""")

    assert shown["overall"] == status["status"] == "degraded"
    assert {p["name"]: p["status"] for p in shown["providers"]} == \
        {p["name"]: p["status"] for p in status["providers"]}
    labels = {p["name"]: p["label"] for p in shown["providers"]}
    assert labels == {"sim": "up", "dead": "down"}
    assert shown["models"] == [{"name": m["name"], "circuits": [d["circuit"] for d in m["deployments"]]}
                               for m in status["models"]]
    # Reputation per deployment, as /admin/routing scores it (the failing one lower).
    scores = [d["score"] for m in status["models"] for d in m["deployments"]]
    # (scores decay with time: the page drew them a moment before this JSON was read)
    assert shown["scores"] == pytest.approx(scores, abs=0.05) and shown["meters"] == len(scores) == 2
    routing = {(m["name"], d["provider"]): d["score"] for m in admin_json(admin_port, "/admin/routing")["models"]
               for d in m["deployments"]}
    assert routing[("chat", "sim")] == pytest.approx(scores[0], abs=0.05)
    assert routing[("broken", "dead")] < routing[("chat", "sim")]
    # The cache: 3 identical requests, 1 miss then 2 hits.
    assert shown["cacheHidden"] is False
    assert status["cache"]["hits"] == 2 and status["cache"]["misses"] == 1
    assert float(shown["hitRate"]) == pytest.approx(status["cache"]["hit_rate"]) == pytest.approx(2 / 3)
    assert shown["cacheText"] == "66.7%"
    # Guardrail actions: what switchyard_guardrail_actions_total counts.
    assert shown["guardrailsHidden"] is False
    assert shown["guardrails"] == [[g["guardrail"], g["action"], g["phase"], str(g["count"])]
                                   for g in status["guardrails"]]
    assert [g["guardrail"] for g in status["guardrails"]] == ["greeting"] and status["guardrails"][0]["count"] >= 1
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics",
                                 headers={"authorization": f"Bearer {ADMIN}"})
    metrics = _direct.open(req, timeout=5).read().decode()
    counted = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                  if l.startswith("switchyard_guardrail_actions_total{"))
    assert counted == sum(g["count"] for g in status["guardrails"])
    assert shown["budgets"] == [b["scope"] for b in status["budgets"]]
    assert shown["bars"] == len(status["budgets"]) == 2
    assert shown["sparklines"] and all(n == len(status["traffic"]["rps"]) for n in shown["sparklines"])
    assert shown["keys"] == [k["key"] for k in status["top_keys_today"]]
    assert f"({status['traffic']['window']['requests']} in 15 min)" in shown["requests"]
    assert status["traffic"]["window"]["requests"] == 4
    assert [e[3] for e in shown["errors"]] == [e["model"] for e in status["last_errors"]] == ["broken"]
    assert shown["problem"] is True, "the page reported a refresh problem"

    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = tmp_path / "status-page.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert png.stat().st_size > 10_000

    # Drain pending events, then: no console error, no exception, no request off the gateway.
    browser.eval("true")
    errors = [e for e in browser.events if
              e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == [], json.dumps(errors, indent=1)
    urls = {e["params"]["request"]["url"] for e in browser.events if e["method"] == "Network.requestWillBeSent"}
    assert f"{origin}/admin/status" in urls and f"{origin}/status.js" in urls
    outside = [u for u in urls if not u.startswith(origin + "/")]
    assert outside == [], outside
