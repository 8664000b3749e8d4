"""The front door through the official SDKs (issue 18): rate-limit windows that mean what users
read (N back-to-back requests admitted, the next a 429 with retry-after that the SDK sees as a
RateLimitError), the tokens-per-minute window spent by what answers used, and an oversized request head refused with
431 in the caller's format while the gateway stays up."""
import anthropic
import openai
import pytest

from conftest import free_port

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  threads: 1
  grace_period: 1s
  public_health: true
  max_header_bytes: 16384
providers:
  - name: sim
    kind: mock
models:
  - name: chat
    deployments: [{{ provider: sim, model: mock-1 }}]
auth:
  api_keys:
    - {{ name: paced, key: "sk-python-paced-key-0001", limits: {{ requests_per_minute: 5 }} }}
    - {{ name: wordy, key: "sk-python-wordy-key-0001", limits: {{ tokens_per_minute: 300 }} }}
    - {{ name: free, key: "sk-python-free-key-0001" }}
telemetry: {{ access_log: off, audit_log: off }}
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def base(processes):
    port = free_port()
    processes.gateway(CONFIG.format(port=port), f"http://127.0.0.1:{port}/v1/health")
    return f"http://127.0.0.1:{port}"


def test_requests_per_minute_admits_exactly_n_back_to_back(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-python-paced-key-0001", max_retries=0)
    for _ in range(5):
        client.chat.completions.create(model="chat", max_tokens=4, messages=HI)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="chat", max_tokens=4, messages=HI)
    assert e.value.body["code"] == "rate_limit_exceeded"
    wait = int(e.value.response.headers["retry-after"])
    # The first of the five leaves the rolling minute within the next 60 s (counted in whole
    # seconds, rounded up: at most 61).
    assert 1 <= wait <= 61
    # The same window through the Anthropic SDK: its own error type, its own format.
    ant = anthropic.Anthropic(base_url=base, api_key="sk-python-paced-key-0001", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        ant.messages.create(model="chat", max_tokens=4, messages=HI)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "rate_limit_error"


def test_tokens_per_minute_admits_until_the_window_is_spent(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-python-wordy-key-0001", max_retries=0)
    # Tokens are charged with what each answer used; a request is admitted while the rolling
    # minute holds fewer than the limit.
    used = []
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(200):
            answer = client.chat.completions.create(model="chat", max_tokens=16, messages=HI)
            used.append(answer.usage.total_tokens)
    assert e.value.body["code"] == "rate_limit_exceeded"
    assert "tokens_per_minute" in e.value.body["message"]
    assert sum(used[:-1]) < 300 <= sum(used), used
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 61


def test_an_oversized_request_head_gets_431_and_the_gateway_stays_up(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-python-free-key-0001", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="chat", max_tokens=4, messages=HI, extra_headers={"x-padding": "a" * 32_000}
        )
    assert e.value.status_code == 431
    assert e.value.body["code"] == "request_header_fields_too_large"
    answer = client.chat.completions.create(model="chat", max_tokens=4, messages=HI)
    assert answer.choices[0].message.content
