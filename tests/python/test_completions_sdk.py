"""Legacy completions and token counting through Switchyard, with the official SDKs.

`openai`'s `client.completions.create` (whole and streamed) against an OpenAI-compatible upstream
(passed through), an Anthropic and a Gemini upstream (translated) and the built-in mock provider;
`anthropic`'s `client.messages.count_tokens` against an Anthropic upstream (forwarded, exact) and a
Gemini one (estimated by the gateway). The upstreams are mock_providers.py, which answers
"Echo: <prompt>" with word-count usage and records what it received.
"""
import json
import sys
import uuid
from pathlib import Path

import anthropic
import openai
import pytest

from conftest import free_port, wait_for_port

MOCK = Path(__file__).resolve().parent / "mock_providers.py"

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - {{name: up-openai, kind: openai, base_url: "http://127.0.0.1:{mp}/v1", api_key: sk-up-openai}}
  - {{name: up-anthropic, kind: anthropic, base_url: "http://127.0.0.1:{mp}", api_key: sk-up-anthropic}}
  - {{name: up-gemini, kind: gemini, base_url: "http://127.0.0.1:{mp}/v1beta", api_key: sk-up-gemini}}
  - {{name: sim, kind: mock}}
models:
  - {{name: via-openai, deployments: [{{provider: up-openai, model: gpt-up}}]}}
  - {{name: via-anthropic, deployments: [{{provider: up-anthropic, model: claude-up}}]}}
  - {{name: via-gemini, deployments: [{{provider: up-gemini, model: gemini-up}}]}}
  - {{name: via-mock, deployments: [{{provider: sim, model: mock-1}}]}}
routing: {{retry: {{attempts: 1}}}}
telemetry: {{access_log: off}}
"""

UPSTREAM_PATH = {"openai": "/v1/completions", "anthropic": "/v1/messages", "gemini": "/v1beta/models/gemini-up:"}
UPSTREAM_MODEL = {"openai": "gpt-up", "anthropic": "claude-up", "gemini": "gemini-up"}


class Env:
    def __init__(self, port: int, record: Path):
        self.port = port
        self.record = record

    def sent(self, marker: str) -> list[dict]:
        lines = [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
        return [r for r in lines if marker in json.dumps(r["body"])]


@pytest.fixture(scope="module")
def env(processes) -> Env:
    mp = free_port()
    record = processes.tmp / f"completions-record-{mp}.jsonl"
    log = processes.tmp / f"completions-mock-{mp}.log"
    p = processes._spawn([sys.executable, str(MOCK), "--port", str(mp), "--record", str(record)], log)
    wait_for_port(mp, p, log)
    port, admin_port = free_port(), free_port()
    processes.gateway(CONFIG.format(port=port, admin_port=admin_port, mp=mp), f"http://127.0.0.1:{port}/v1/health")
    return Env(port, record)


@pytest.fixture(scope="module")
def oai(env):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key="sk-caller", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def ant(env):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{env.port}", api_key="sk-caller", max_retries=0,
                               timeout=30)


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_completion_whole(env, oai, provider):
    prompt = f"say {marker()} please"
    r = oai.completions.create(model=f"via-{provider}", prompt=prompt, max_tokens=64)
    assert r.object == "text_completion"
    assert r.id.startswith("cmpl-")
    assert len(r.choices) == 1
    assert r.choices[0].text == f"Echo: {prompt}"
    assert r.choices[0].index == 0
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 3
    assert r.usage.completion_tokens == 4
    assert r.usage.total_tokens == 7
    sent = env.sent(prompt.split()[1])
    assert len(sent) == 1
    assert sent[0]["path"].startswith(UPSTREAM_PATH[provider])
    if provider == "gemini":
        assert UPSTREAM_MODEL[provider] in sent[0]["path"]
    else:
        assert sent[0]["body"]["model"] == UPSTREAM_MODEL[provider]
    if provider == "openai":
        # Passed through as sent: the prompt field itself, no chat messages.
        assert sent[0]["body"]["prompt"] == prompt
        assert "messages" not in sent[0]["body"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_completion_stream_with_usage(env, oai, provider):
    prompt = f"stream {marker()} words"
    chunks = list(oai.completions.create(model=f"via-{provider}", prompt=prompt, stream=True,
                                         stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len([t for t in texts if t]) > 1, "the answer should arrive in several chunks"
    assert "".join(texts) == f"Echo: {prompt}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == 3
    assert last.usage.completion_tokens == 4


def test_completion_stream_without_usage_on_the_mock_provider(oai):
    whole = oai.completions.create(model="via-mock", prompt="same words", max_tokens=5)
    chunks = list(oai.completions.create(model="via-mock", prompt="same words", max_tokens=5, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5


@pytest.mark.parametrize("kwargs,param", [
    ({"echo": True}, "echo"),
    ({"suffix": "!"}, "suffix"),
    ({"best_of": 2}, "best_of"),
    ({"logprobs": 1}, "logprobs"),
    ({"prompt": ["one", "two"]}, "prompt"),
])
def test_completion_fields_a_translation_cannot_honour(oai, kwargs, param):
    args = {"model": "via-anthropic", "prompt": "x", **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(**args)
    assert e.value.status_code == 400
    assert e.value.param == param
    assert e.value.type == "invalid_request_error"


def test_count_tokens_forwarded_to_anthropic(env, ant):
    m = marker()
    raw = ant.messages.with_raw_response.count_tokens(
        model="via-anthropic", system="You are terse",
        messages=[{"role": "user", "content": f"count these {m} words"}])
    assert raw.headers.get("x-switchyard-token-count") == "exact"
    assert raw.headers.get("x-switchyard-cost-usd") is None
    r = raw.parse()
    assert r.input_tokens == 7  # the mock's word count: 3 of system, 4 of the message
    sent = env.sent(m)
    assert len(sent) == 1
    assert sent[0]["path"] == "/v1/messages/count_tokens"
    assert sent[0]["headers"]["x-api-key"] == "sk-up-anthropic"
    assert sent[0]["headers"].get("anthropic-version")
    assert sent[0]["body"]["model"] == "claude-up"
    assert "sk-caller" not in json.dumps(sent[0]["headers"])


def test_count_tokens_estimated_for_other_providers(env, ant):
    m = marker()
    raw = ant.messages.with_raw_response.count_tokens(
        model="via-gemini", messages=[{"role": "user", "content": f"an estimate {m} of these words"}])
    assert raw.headers.get("x-switchyard-token-count") == "estimated"
    assert raw.parse().input_tokens > 0
    assert env.sent(m) == [], "nothing asked of a provider that cannot count"


def test_count_tokens_unknown_model_is_an_anthropic_404(ant):
    with pytest.raises(anthropic.NotFoundError) as e:
        ant.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
