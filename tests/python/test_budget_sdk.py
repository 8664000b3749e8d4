"""A spent budget through the official SDKs: a 429 `budget_exceeded` that the SDKs do not retry
(the gateway sends `x-should-retry: false`), so a spent budget never becomes a retry storm."""
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
providers:
  - name: sim
    kind: mock
models:
  - name: chat
    deployments: [{{ provider: sim, model: mock-1, price: {{ input_per_mtok: 0, output_per_mtok: 1000 }} }}]
auth:
  api_keys:
    - {{ name: spender, key: "sk-python-budget-key-0001", team: t1 }}
budgets:
  - {{ scope: team:t1, limit: 0.005, period: total }}
telemetry: {{ access_log: off, audit_log: off }}
"""
KEY = "sk-python-budget-key-0001"


@pytest.fixture(scope="module")
def spent_url(processes):
    port = free_port()
    processes.gateway(CONFIG.format(port=port), f"http://127.0.0.1:{port}/v1/health")
    base = f"http://127.0.0.1:{port}/v1"
    # One 5-token answer at $1000 per million output tokens spends the whole $0.005.
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    client.chat.completions.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    return base


def counting_client(sdk):
    """The SDK's own HTTP client, noting the path of every request it sends."""
    sent = []
    return sent, sdk.DefaultHttpxClient(event_hooks={"request": [lambda request: sent.append(request.url.path)]})


def test_openai_sdk_does_not_retry_a_spent_budget(spent_url):
    sent, http = counting_client(openai)
    client = openai.OpenAI(base_url=spent_url, api_key=KEY, max_retries=3, http_client=http)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["type"] == "budget_exceeded"
    assert e.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in e.value.response.headers
    assert sent == ["/v1/chat/completions"], sent


def test_anthropic_sdk_does_not_retry_a_spent_budget(spent_url):
    sent, http = counting_client(anthropic)
    client = anthropic.Anthropic(
        base_url=spent_url.removesuffix("/v1"), api_key=KEY, max_retries=3, http_client=http
    )
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.response.headers["x-should-retry"] == "false"
    assert sent == ["/v1/messages"], sent
