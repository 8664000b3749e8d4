"""Provider prompt caching with the official SDKs (issue #22 point 7) against the Rust
mock-upstream, which simulates Anthropic's prompt cache: a Messages request with `cache_control`
has a 1,000-token cached prefix keyed by its system prompt and tools, written the first time it is
seen and read after. Each test uses its own system prompt, so its first request writes.
"""
import uuid

import anthropic
import openai
import pytest

from conftest import free_port

CACHED = 1000  # benches/src/upstream.rs PROMPT_CACHE_TOKENS

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
providers:
  - {{name: anth, kind: anthropic, base_url: "http://127.0.0.1:{up}", api_key: sk-up-anthropic}}
models:
  - name: claude
    deployments:
      - {{provider: anth, model: claude-up, price: {{input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, cache_write_input_per_mtok: 3.75}}}}
  - name: claude-auto
    prompt_cache: auto
    deployments:
      - {{provider: anth, model: claude-up, price: {{input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, cache_write_input_per_mtok: 3.75}}}}
telemetry: {{access_log: off}}
"""


@pytest.fixture(scope="module")
def port(processes):
    up = processes.upstream()
    port, admin_port = free_port(), free_port()
    processes.gateway(CONFIG.format(port=port, admin_port=admin_port, up=up),
                      f"http://127.0.0.1:{port}/v1/health")
    return port


def system_prompt() -> str:
    return f"You know the manual {uuid.uuid4().hex[:10]} by heart."


def test_anthropic_sdk_cache_control_reports_writes_then_reads_priced_apart(port):
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="sk-caller", max_retries=0)
    system = [{"type": "text", "text": system_prompt(), "cache_control": {"type": "ephemeral"}}]

    def ask():
        return client.messages.with_raw_response.create(
            model="claude", max_tokens=32, system=system,
            messages=[{"role": "user", "content": "Page 3?"}])

    first = ask()
    u = first.parse().usage
    assert (u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (10, CACHED, 0)
    # 10 × $3 + 1000 × $3.75 + 8 × $15 per million.
    assert float(first.headers["x-switchyard-cost-usd"]) == pytest.approx(3900e-6, abs=1e-9)
    second = ask()
    u = second.parse().usage
    assert (u.cache_creation_input_tokens, u.cache_read_input_tokens) == (0, CACHED)
    # 10 × $3 + 1000 × $0.30 + 8 × $15 per million.
    assert float(second.headers["x-switchyard-cost-usd"]) == pytest.approx(450e-6, abs=1e-9)


def test_openai_sdk_on_prompt_cache_auto_sees_cached_tokens(port):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-caller", max_retries=0)
    messages = [{"role": "system", "content": system_prompt()},
                {"role": "user", "content": "Page 1?"}]
    first = client.chat.completions.create(model="claude-auto", max_tokens=32, messages=messages)
    assert first.usage.prompt_tokens == 10 + CACHED
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    second = client.chat.completions.create(model="claude-auto", max_tokens=32, messages=messages)
    assert second.usage.prompt_tokens_details.cached_tokens == CACHED
    # Without prompt_cache: auto the gateway adds no breakpoint, so nothing is cached.
    plain = client.chat.completions.create(model="claude", max_tokens=32, messages=messages)
    assert plain.usage.prompt_tokens == 10
