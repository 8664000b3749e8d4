"""Guardrails (issue 23) end to end with the official SDKs: what the provider received after a
request guardrail redacted it (mock_providers.py records every request), a block as the SDK's own
error type, and answers (whole and streamed) redacted in each caller's format. The mock answers
"Echo: <last user text>", so a response-only guardrail sees the caller's own text come back.
"""
import json
import uuid

import anthropic
import openai
import pytest

from conftest import start_mock_providers

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - {{name: up-openai, kind: openai, base_url: "http://127.0.0.1:{mp}/v1", api_key: sk-up-openai}}
  - {{name: up-anthropic, kind: anthropic, base_url: "http://127.0.0.1:{mp}", api_key: sk-up-anthropic}}
models:
  - {{name: redact-in, guardrails: [pii-in], deployments: [{{provider: up-openai, model: gpt-up}}]}}
  - {{name: block-in, guardrails: [cards-block], deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
  - {{name: redact-out, guardrails: [pii-out], deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
  - {{name: tools-ant, guardrails: [no-paris], deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
  - {{name: tools-oai, guardrails: [no-paris], deployments: [{{provider: up-openai, model: gpt-up}}]}}
guardrails:
  - {{name: pii-in, on: [request], pii: [email, credit_card], action: redact}}
  - {{name: cards-block, pii: [credit_card], action: block}}
  - {{name: pii-out, on: [response], pii: [email], action: redact}}
  - {{name: no-paris, on: [response], words: [paris], action: redact}}
telemetry: {{access_log: off}}
"""


@pytest.fixture(scope="module")
def env(processes):
    return start_mock_providers(processes, CONFIG, "guardrails")


@pytest.fixture(scope="module")
def oai(env):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key="sk-caller", max_retries=0)


@pytest.fixture(scope="module")
def ant(env):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{env.port}", api_key="sk-caller", max_retries=0)


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def test_the_provider_receives_the_request_redacted(env, oai):
    m = marker()
    raw = oai.chat.completions.with_raw_response.create(
        model="redact-in",
        messages=[{"role": "user", "content": f"{m} mail jane@corp.example card 4111 1111 1111 1111"}],
    )
    assert raw.headers.get("x-switchyard-guardrails") == "pii-in:redact:request"
    sent = env.sent(m)
    assert len(sent) == 1
    assert sent[0]["body"]["messages"][0]["content"] == f"{m} mail [REDACTED:EMAIL] card [REDACTED:CREDIT_CARD]"
    # The answer echoes what the provider saw.
    assert "[REDACTED:EMAIL]" in raw.parse().choices[0].message.content


def test_a_block_is_the_sdks_bad_request_error(env, oai, ant):
    m = marker()
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="block-in",
                                    messages=[{"role": "user", "content": f"{m} pay 4111-1111-1111-1111"}])
    assert e.value.code == "content_blocked"
    assert "cards-block" in e.value.message
    with pytest.raises(anthropic.BadRequestError) as e:
        ant.messages.create(model="block-in", max_tokens=64,
                            messages=[{"role": "user", "content": f"{m} pay 4111-1111-1111-1111"}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert env.sent(m) == []


def test_answers_are_redacted_whole_and_streamed_in_both_formats(env, oai, ant):
    m = marker()
    text = f"{m} write to jane@corp.example soon"
    whole = oai.chat.completions.create(model="redact-out", messages=[{"role": "user", "content": text}])
    assert whole.choices[0].message.content == f"Echo: {m} write to [REDACTED:EMAIL] soon"
    # The provider got the original: this guardrail looks at answers only.
    assert env.sent(m)[0]["body"]["messages"][0]["content"] == [{"type": "text", "text": text}]

    with ant.messages.stream(model="redact-out", max_tokens=64,
                             messages=[{"role": "user", "content": text}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == f"Echo: {m} write to [REDACTED:EMAIL] soon"
    assert final.stop_reason == "end_turn"

    chunks = oai.chat.completions.create(model="redact-out", stream=True,
                                         messages=[{"role": "user", "content": text}])
    said = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert said == f"Echo: {m} write to [REDACTED:EMAIL] soon"


WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def test_streamed_tool_call_arguments_are_redacted_and_still_parse(oai, ant):
    # The mock calls the first tool with {"city": "Paris"}; the guardrail redacts the word in the
    # argument deltas, and each SDK still assembles and parses the arguments.
    with ant.messages.stream(model="tools-ant", max_tokens=64,
                             tools=[{"name": "get_weather", "description": "Weather of a city",
                                     "input_schema": WEATHER[0]["function"]["parameters"]}],
                             messages=[{"role": "user", "content": f"{marker()} weather?"}]) as s:
        final = s.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "[REDACTED:WORD]"}]
    assert final.stop_reason == "tool_use"

    chunks = oai.chat.completions.create(model="tools-oai", stream=True, tools=WEATHER,
                                         messages=[{"role": "user", "content": f"{marker()} weather?"}])
    args = "".join(tc.function.arguments or "" for c in chunks if c.choices
                   for tc in c.choices[0].delta.tool_calls or [])
    assert json.loads(args) == {"city": "[REDACTED:WORD]"}
