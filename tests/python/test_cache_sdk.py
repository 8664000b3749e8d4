"""The response cache with the official SDKs (issue #22): a repeated request is answered by the
gateway without a provider call (`x-switchyard-cache: hit`, `age`), whole or streamed, in the
caller's format. mock_providers.py records every request it gets, so each test counts the provider
calls for its own unique prompt.
"""
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
  - {{name: cached, cache: {{ttl: 10m}}, deployments: [{{provider: up-openai, model: gpt-up}}]}}
  - {{name: cached-claude, cache: {{}}, deployments: [{{provider: up-anthropic, model: claude-up}}]}}
  - {{name: plain, deployments: [{{provider: up-openai, model: gpt-up}}]}}
cache: {{kind: memory, max_bytes: 1048576, ttl: 5m, scope: team}}
routing: {{retry: {{attempts: 1}}}}
telemetry: {{access_log: off}}
"""


@pytest.fixture(scope="module")
def env(processes):
    return start_mock_providers(processes, CONFIG, "cache")


@pytest.fixture(scope="module")
def oai(env):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key="sk-caller", max_retries=0)


@pytest.fixture(scope="module")
def ant(env):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{env.port}", api_key="sk-caller", max_retries=0)


def marker() -> str:
    return f"cache-{uuid.uuid4().hex[:10]}"


def ask(oai, model: str, prompt: str, **kw):
    return oai.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], **kw)


def test_a_repeat_is_a_hit_with_the_same_answer_and_no_provider_call(env, oai):
    m = marker()
    first = ask(oai, "cached", f"Tell me about {m}", temperature=0.1)
    assert first.headers["x-switchyard-cache"] == "miss"
    again = ask(oai, "cached", f"Tell me about {m}", temperature=0.1, user="someone-else")
    assert again.headers["x-switchyard-cache"] == "hit"
    assert int(again.headers["age"]) >= 0
    a, b = first.parse(), again.parse()
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.usage.total_tokens == a.usage.total_tokens
    assert len(env.sent(m)) == 1


def test_other_parameters_miss_and_uncached_models_bypass(env, oai):
    m = marker()
    assert ask(oai, "cached", m, temperature=0.1).headers["x-switchyard-cache"] == "miss"
    assert ask(oai, "cached", m, temperature=0.9).headers["x-switchyard-cache"] == "miss"
    assert ask(oai, "plain", m).headers["x-switchyard-cache"] == "bypass"
    assert ask(oai, "plain", m).headers["x-switchyard-cache"] == "bypass"
    assert len(env.sent(m)) == 4


def test_cache_control_headers(env, oai):
    m = marker()
    r = ask(oai, "cached", m, extra_headers={"cache-control": "no-store"})
    assert r.headers["x-switchyard-cache"] == "bypass"
    r = ask(oai, "cached", m, extra_headers={"cache-control": "no-cache"})
    assert r.headers["x-switchyard-cache"] == "miss"
    assert ask(oai, "cached", m).headers["x-switchyard-cache"] == "hit"
    assert len(env.sent(m)) == 2


def test_a_stream_is_stored_and_replayed_with_usage(env, oai):
    m = marker()
    opts = {"include_usage": True}
    first = oai.chat.completions.create(model="cached", messages=[{"role": "user", "content": m}],
                                        stream=True, stream_options=opts)
    text = "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    assert text
    raw = oai.chat.completions.with_raw_response.create(
        model="cached", messages=[{"role": "user", "content": m}], stream=True, stream_options=opts)
    assert raw.headers["x-switchyard-cache"] == "hit"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    whole = ask(oai, "cached", m)
    assert whole.headers["x-switchyard-cache"] == "hit"
    assert whole.parse().choices[0].message.content == text
    assert len(env.sent(m)) == 1


def test_anthropic_messages_hit_whole_and_streamed(env, ant):
    m = marker()
    msgs = [{"role": "user", "content": f"Say {m}"}]
    first = ant.messages.with_raw_response.create(model="cached-claude", max_tokens=64, messages=msgs)
    assert first.headers["x-switchyard-cache"] == "miss"
    again = ant.messages.with_raw_response.create(model="cached-claude", max_tokens=64, messages=msgs)
    assert again.headers["x-switchyard-cache"] == "hit"
    text = first.parse().content[0].text
    assert again.parse().content[0].text == text
    with ant.messages.stream(model="cached-claude", max_tokens=64, messages=msgs) as s:
        assert s.get_final_text() == text
        assert s.response.headers["x-switchyard-cache"] == "hit"
    assert len(env.sent(m)) == 1


def test_embeddings_hit(env, oai):
    m = marker()
    first = oai.embeddings.with_raw_response.create(model="cached", input=[m, "two"])
    again = oai.embeddings.with_raw_response.create(model="cached", input=[m, "two"])
    assert (first.headers["x-switchyard-cache"], again.headers["x-switchyard-cache"]) == ("miss", "hit")
    assert again.parse().data[0].embedding == first.parse().data[0].embedding
    assert len(env.sent(m)) == 1


def test_responses_hit_whole_and_streamed_with_the_first_ids(env, oai):
    # A whole miss, then a whole hit and a streamed hit replayed from it.
    m = marker()
    first = oai.responses.with_raw_response.create(model="cached", input=f"Say {m}")
    assert first.headers["x-switchyard-cache"] == "miss"
    answer = first.parse()
    assert answer.output_text
    again = oai.responses.with_raw_response.create(model="cached", input=f"Say {m}")
    assert again.headers["x-switchyard-cache"] == "hit"
    assert (again.parse().id, again.parse().output_text) == (answer.id, answer.output_text)
    raw = oai.responses.with_raw_response.create(model="cached", input=f"Say {m}", stream=True)
    assert raw.headers["x-switchyard-cache"] == "hit"
    events = list(raw.parse())
    assert events[0].type == "response.created"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == answer.output_text
    assert events[-1].type == "response.completed"
    assert events[-1].response.id == answer.id
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert len(env.sent(m)) == 1

    # A streamed miss is stored when it completes: it then answers whole and streamed requests.
    m = marker()
    raw = oai.responses.with_raw_response.create(model="cached", input=f"Say {m}", stream=True)
    assert raw.headers["x-switchyard-cache"] == "miss"
    completed = [e for e in raw.parse() if e.type == "response.completed"][0].response
    whole = oai.responses.with_raw_response.create(model="cached", input=f"Say {m}")
    assert whole.headers["x-switchyard-cache"] == "hit"
    assert (whole.parse().id, whole.parse().output_text) == (completed.id, completed.output_text)
    with oai.responses.stream(model="cached", input=f"Say {m}") as s:
        final = s.get_final_response()
    assert (final.id, final.output_text) == (completed.id, completed.output_text)
    assert final.usage.output_tokens == completed.usage.output_tokens
    assert len(env.sent(m)) == 1
