"""Steering routing from the official `openai` SDK: `model: "auto"` with a `routingStrategy` and a
`task` in `extra_body` or an `x-switchyard-strategy` header, `maxCostPerRequest`, `fallbackProviders`,
a model fallback after failures and after a content-policy refusal. Two small in-process OpenAI-compatible upstreams record what they received, so the tests
also check that the hint fields never reach a provider.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import free_port

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - {{name: cheap, kind: openai, base_url: "http://127.0.0.1:{cheap}/v1", api_key: sk-cheap}}
  - {{name: premium, kind: openai, base_url: "http://127.0.0.1:{premium}/v1", api_key: sk-premium}}
  - {{name: gone, kind: openai, base_url: "http://127.0.0.1:{gone}/v1", api_key: sk-gone}}
  - {{name: strict-filter, kind: openai, base_url: "http://127.0.0.1:{refusing}/v1", api_key: sk-refusing}}
models:
  - name: chat
    deployments:
      - {{provider: premium, model: p1, quality: 90, price: {{input_per_mtok: 10, output_per_mtok: 30}}}}
  - name: chat-cheap
    deployments:
      - {{provider: cheap, model: c1, quality: 40, price: {{input_per_mtok: 0.1, output_per_mtok: 0.1}}}}
  - name: auto
    candidates: [chat, chat-cheap]
    tasks: {{summarize: [chat-cheap], reasoning: [chat]}}
  - name: fragile
    fallbacks: [chat-cheap]
    retry: {{attempts: 1}}
    deployments: [{{provider: gone, model: g1}}]
  - name: filtered
    fallbacks: [chat-cheap]
    deployments: [{{provider: strict-filter, model: f1}}, {{provider: premium, model: p1}}]
  - name: lonely
    retry: {{attempts: 1}}
    deployments: [{{provider: gone, model: p1}}]
telemetry: {{access_log: off}}
"""


class Upstream:
    """Answers chat completions as `name`; records every request body."""

    def __init__(self, name: str, refuse: bool = False):
        """`refuse`: answer every request with OpenAI's 400 content-policy refusal."""
        self.bodies: list[dict] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                rec.bodies.append(body)
                answer = {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": f"from {name}"}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                }
                status = 200
                if refuse:
                    status, answer = 400, {"error": {"message": "Your request was rejected by the safety system.",
                                                     "type": "invalid_request_error", "param": None,
                                                     "code": "content_policy_violation"}}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def setup(processes):
    cheap, premium, refusing = Upstream("cheap"), Upstream("premium"), Upstream("refusing", refuse=True)
    port, admin_port = free_port(), free_port()
    processes.gateway(
        CONFIG.format(port=port, admin_port=admin_port, cheap=cheap.port, premium=premium.port,
                      gone=free_port(), refusing=refusing.port),
        f"http://127.0.0.1:{port}/v1/health",
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-any", max_retries=0)
    yield client, cheap, premium
    for u in (cheap, premium, refusing):
        u.server.shutdown()


MESSAGES = [{"role": "user", "content": "hi"}]
HINTS = ("routingStrategy", "task", "retryAttempts", "maxCostPerRequest", "fallbackProviders")


def test_auto_with_a_strategy_in_the_body_picks_the_cheapest_and_strips_the_hint(setup):
    client, cheap, _ = setup
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, max_tokens=50, extra_body={"routingStrategy": "cheapest"})
    answer = raw.parse()
    assert answer.choices[0].message.content == "from cheap"
    assert raw.headers["x-switchyard-provider"] == "cheap"
    assert raw.headers["x-switchyard-model"] == "c1"
    sent = cheap.bodies[-1]
    assert sent["model"] == "c1"
    assert not any(h in sent for h in HINTS), sent


def test_auto_with_a_strategy_header_picks_by_quality(setup):
    client, _, premium = setup
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, extra_headers={"x-switchyard-strategy": "quality"})
    assert raw.parse().choices[0].message.content == "from premium"
    assert raw.headers["x-switchyard-model"] == "p1"
    assert premium.bodies[-1]["model"] == "p1"


def test_a_task_narrows_the_candidates(setup):
    client, cheap, _ = setup
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES,
        extra_body={"task": "summarize", "routingStrategy": "quality", "retryAttempts": 1})
    assert raw.headers["x-switchyard-provider"] == "cheap"
    assert not any(h in cheap.bodies[-1] for h in HINTS), cheap.bodies[-1]


def test_a_max_cost_no_deployment_fits_is_a_400_naming_the_limit(setup):
    client, _, _ = setup
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="chat", messages=MESSAGES, max_tokens=1000, extra_body={"maxCostPerRequest": 0.000001})
    err = e.value.body
    assert e.value.code == "max_cost_exceeded"
    assert err["param"] == "maxCostPerRequest"
    assert "0.000001" in err["message"]


def test_a_model_whose_deployments_fail_falls_back(setup):
    client, cheap, _ = setup
    raw = client.chat.completions.with_raw_response.create(model="fragile", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "from cheap"
    assert raw.headers["x-switchyard-fallback"] == "chat-cheap"
    assert cheap.bodies[-1]["model"] == "c1"


def test_a_content_policy_refusal_falls_back_to_the_next_model_not_another_deployment(setup):
    client, cheap, premium = setup
    before = len(premium.bodies)
    raw = client.chat.completions.with_raw_response.create(model="filtered", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "from cheap"
    assert raw.headers["x-switchyard-fallback"] == "chat-cheap"
    # `filtered`'s other deployment (premium) would refuse the same prompt: it is not asked.
    assert len(premium.bodies) == before


def test_an_unknown_task_is_a_400_listing_the_known_ones(setup):
    client, _, _ = setup
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="auto", messages=MESSAGES, extra_body={"task": "poetry"})
    assert e.value.body["param"] == "task"
    assert "reasoning, summarize" in e.value.body["message"]


def test_fallback_providers_serve_after_the_models_own_deployments(setup):
    client, _, premium = setup
    # `lonely` runs p1 on a provider that is down; premium serves p1 for `chat`: asked for p1.
    raw = client.chat.completions.with_raw_response.create(
        model="lonely", messages=MESSAGES, extra_body={"fallbackProviders": ["premium"]})
    assert raw.parse().choices[0].message.content == "from premium"
    assert raw.headers["x-switchyard-provider"] == "premium"
    assert premium.bodies[-1]["model"] == "p1"
    assert not any(h in premium.bodies[-1] for h in HINTS), premium.bodies[-1]
    raw = client.chat.completions.with_raw_response.create(
        model="lonely", messages=MESSAGES, extra_headers={"x-switchyard-fallback-providers": "premium"})
    assert raw.headers["x-switchyard-provider"] == "premium"
