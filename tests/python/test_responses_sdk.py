"""The Responses API through Switchyard with the official `openai` SDK (`client.responses`): create,
stream (the SDK's stream helper and stream=True), `output_text`, a function tool round trip through
`previous_response_id`, `text.format` json_schema, retrieve / input_items / delete, `store: false`, TTL
expiry, fields the capability table drops or refuses, a provider failing mid-stream — against the built-in
mock provider and mock_providers.py speaking each provider's own wire format (the gateway translates).
The built-in mock has no structured output (its answers are words of a fixed vocabulary), so json_schema
runs on the five wire formats only.
A conversation hops providers turn by turn; the OpenAI Agents SDK runs an agent with one function tool.

mock_providers.py answers deterministically: "Echo: <last user text>", one call get_weather({"city":
"Paris"}) when tools are declared, "Tool said: <result>" after a tool result (see its docstring).
"""
import json
import time
import uuid

import openai
import pytest

from conftest import MockProvidersEnv, start_mock_providers

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - {{name: sim, kind: mock}}
  - {{name: up-openai, kind: openai, base_url: "http://127.0.0.1:{mp}/v1", api_key: sk-up-openai, timeouts: {{idle: 2s}}}}
  - {{name: up-anthropic, kind: anthropic, base_url: "http://127.0.0.1:{mp}", api_key: sk-up-anthropic, timeouts: {{idle: 2s}}}}
  - {{name: up-gemini, kind: gemini, base_url: "http://127.0.0.1:{mp}/v1beta", api_key: sk-up-gemini, timeouts: {{idle: 2s}}}}
  - {{name: up-cloudflare, kind: cloudflare, base_url: "http://127.0.0.1:{mp}/client/v4/accounts/acc123/ai", api_key: sk-up-cloudflare, timeouts: {{idle: 2s}}}}
  - {{name: up-ollama, kind: ollama, base_url: "http://127.0.0.1:{mp}", timeouts: {{idle: 2s}}}}
models:
  - {{name: via-mock, deployments: [{{provider: sim, model: mock-1}}]}}
  - {{name: via-openai, deployments: [{{provider: up-openai, model: gpt-up}}]}}
  - {{name: via-anthropic, deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
  - {{name: via-gemini, deployments: [{{provider: up-gemini, model: gemini-up}}]}}
  - {{name: via-cloudflare, deployments: [{{provider: up-cloudflare, model: "@cf/meta/llama-3.1-8b-instruct"}}]}}
  - {{name: via-ollama, deployments: [{{provider: up-ollama, model: "llama3.2"}}]}}
  - {{name: lenient-anthropic, strict: false, deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
routing: {{retry: {{attempts: 1}}}}
telemetry: {{access_log: off}}
"""

PROVIDERS = ["openai", "anthropic", "gemini", "cloudflare", "ollama"]
TOOL = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def env(processes) -> MockProvidersEnv:
    return start_mock_providers(processes, CONFIG, "responses")


@pytest.fixture(scope="module")
def oai(env):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key="sk-caller", max_retries=0, timeout=30)


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


every_provider = pytest.mark.parametrize("provider", PROVIDERS)
# The built-in mock answers words of its own vocabulary, not an echo.
every_kind = pytest.mark.parametrize("provider", PROVIDERS + ["mock"])


@every_kind
def test_create_answers_a_response_object(env, oai, provider):
    prompt = f"hello {marker()} responses"
    r = oai.responses.create(model=f"via-{provider}", input=prompt, instructions="Be helpful.")
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.instructions == "Be helpful."
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if provider == "mock":
        assert r.output_text and r.usage.output_tokens > 0
        return
    assert r.output_text == f"Echo: {prompt}"
    assert r.usage.output_tokens == len(f"Echo: {prompt}".split())


@every_kind
def test_the_sdk_stream_helper_sees_every_delta(env, oai, provider):
    prompt = f"stream {marker()} please"
    with oai.responses.stream(model=f"via-{provider}", input=prompt) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == final.output_text
    if provider != "mock":
        assert final.output_text == f"Echo: {prompt}"


def test_stream_true_on_the_mock_provider(env, oai):
    events = list(oai.responses.create(model="via-mock", input="a streamed mock answer", stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == events[-1].response.output_text


@pytest.mark.parametrize("provider", PROVIDERS + ["mock"])
def test_a_function_tool_round_trip(env, oai, provider):
    # The built-in mock calls a tool when forced; mock_providers.py whenever tools are declared (and
    # Cloudflare / Ollama cannot honour `tool_choice: required`: the capability table refuses it).
    forced = {"tool_choice": "required"} if provider == "mock" else {}
    first = oai.responses.create(model=f"via-{provider}", input=f"weather {marker()}?", tools=[TOOL], **forced)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    args = json.loads(calls[0].arguments)
    assert isinstance(args["city"], str)
    second = oai.responses.create(model=f"via-{provider}", previous_response_id=first.id, tools=[TOOL],
                                  input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                          "output": "sunny"}])
    assert second.previous_response_id == first.id
    if provider != "mock":
        assert second.output_text == "Tool said: sunny"
    else:
        assert second.output_text


@every_provider
def test_text_format_json_schema(env, oai, provider):
    r = oai.responses.create(model=f"via-{provider}", input=f"a person {marker()}",
                             text={"format": {"type": "json_schema", "name": "person", "schema": SCHEMA,
                                              "strict": True}})
    person = json.loads(r.output_text)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)
    assert r.text.format.type == "json_schema"


@every_provider
def test_a_provider_failing_mid_stream_ends_with_response_failed(env, oai, provider):
    # The provider's own mid-stream error event (mock_providers.py "fail midstream"): the stream ends
    # with a typed `response.failed` carrying the error, never a chat-style error chunk.
    events = list(oai.responses.create(model=f"via-{provider}", input="fail midstream", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.failed", [e.type for e in events]
    assert last.response.status == "failed"
    assert last.response.error.message and last.response.error.code
    assert any(e.type == "response.output_text.delta" for e in events)


def test_store_false_keeps_nothing(env, oai):
    r = oai.responses.create(model="via-openai", input=f"forget {marker()}", store=False)
    assert r.store is False and r.output_text
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        oai.responses.create(model="via-openai", input="and?", previous_response_id=r.id)
    assert e.value.body["code"] == "previous_response_not_found"


def test_fields_a_provider_cannot_honour_follow_the_capability_table(env, oai):
    extra = {"include": ["reasoning.encrypted_content"], "truncation": "auto", "top_logprobs": 2}
    raw = oai.responses.with_raw_response.create(model="lenient-anthropic", input=f"hi {marker()}", **extra)
    # Named in the order the request has them (the SDK's).
    assert sorted(raw.headers["x-switchyard-dropped"].split(", ")) == ["include", "top_logprobs", "truncation"]
    assert raw.parse().output_text.startswith("Echo: hi")
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="via-anthropic", input="hi", **extra)
    assert e.value.body["param"] == "include"
    assert e.value.body["code"] == "unsupported_field"


@pytest.fixture(scope="module")
def short_ttl(processes):
    env = start_mock_providers(processes, CONFIG + "responses: {{ttl: 1s}}\n", "responses-ttl")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key="sk-caller", max_retries=0,
                         timeout=30)


def test_stored_responses_expire_after_the_ttl(short_ttl):
    r = short_ttl.responses.create(model="via-gemini", input=f"brief {marker()}")
    assert short_ttl.responses.retrieve(r.id).id == r.id
    time.sleep(1.3)
    with pytest.raises(openai.NotFoundError):
        short_ttl.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        short_ttl.responses.create(model="via-gemini", input="more", previous_response_id=r.id)
    assert e.value.body["code"] == "previous_response_not_found"


def test_retrieve_input_items_and_delete(env, oai):
    prompt = f"keep {marker()} this"
    r = oai.responses.create(model="via-anthropic", input=prompt)
    got = oai.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    items = oai.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == prompt
    oai.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)


def test_a_conversation_hops_providers(env, oai):
    m = marker()
    r1 = oai.responses.create(model="via-openai", input=f"one {m}")
    r2 = oai.responses.create(model="via-anthropic", input=f"two {m}", previous_response_id=r1.id)
    r3 = oai.responses.create(model="via-gemini", input=f"three {m}", previous_response_id=r2.id)
    assert r3.output_text == f"Echo: three {m}"
    gemini = [r for r in env.sent(f"three {m}") if "/v1beta/" in r["path"]]
    assert len(gemini) == 1
    sent = json.dumps(gemini[0]["body"])
    for part in (f"one {m}", f"Echo: one {m}", f"two {m}", f"Echo: two {m}"):
        assert part in sent


def test_an_unknown_previous_response_is_a_404(env, oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.responses.create(model="via-mock", input="x", previous_response_id="resp_missing")
    assert e.value.body["code"] == "previous_response_not_found"
    assert e.value.body["param"] == "previous_response_id"


def test_built_in_tools_are_refused_naming_the_field(env, oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model="via-openai", input="x", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_agents_sdk_runs_an_agent_with_a_function_tool(env, provider):
    """The OpenAI Agents SDK's default model (Responses) through the gateway: the model calls the tool,
    the SDK runs it and sends its output back, the model answers from it."""
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    ran = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        ran.append(city)
        return f"sunny in {city}"

    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key="sk-caller", max_retries=0,
                                timeout=30)
    agent = agents.Agent(name="weather", instructions="Answer with the tool.", tools=[get_weather],
                         model=agents.OpenAIResponsesModel(model=f"via-{provider}", openai_client=client))
    result = agents.Runner.run_sync(agent, f"What is the weather in Paris? {marker()}")
    assert ran == ["Paris"]
    assert result.final_output == "Tool said: sunny in Paris"
