"""The official `openai` SDK talking to Switchyard: only base_url changes.

`fast` goes to the mock OpenAI-compatible upstream (provider `upstream`, model `mock-model`);
`chat` and its alias `gpt-4o-mini` are answered by the built-in mock provider (`sim`, `mock-1`).
"""
import openai
import pytest


@pytest.fixture()
def client(gateway_url):
    return openai.OpenAI(base_url=gateway_url, api_key="sk-caller-anything", max_retries=0)


def ask(client, model, prompt="hello", **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], **kw
    )


@pytest.mark.parametrize("model", ["fast", "chat", "gpt-4o-mini"])
def test_non_stream(client, model):
    r = ask(client, model)
    assert isinstance(r, openai.types.chat.ChatCompletion)
    assert r.object == "chat.completion"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_mock_answers_are_deterministic(client):
    a = ask(client, "chat", "what is a switchyard?").choices[0].message.content
    b = ask(client, "chat", "what is a switchyard?").choices[0].message.content
    c = ask(client, "chat", "something else entirely").choices[0].message.content
    assert a
    assert a == b
    assert a != c
    # The alias reaches the same deployment, so the same prompt gets the same answer.
    assert ask(client, "gpt-4o-mini", "what is a switchyard?").choices[0].message.content == a


@pytest.mark.parametrize("model", ["fast", "chat"])
def test_stream(client, model):
    chunks = list(ask(client, model, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    with_content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(with_content) > 1
    text = "".join(c.choices[0].delta.content for c in with_content)
    assert text
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"
    # The caller did not ask for usage: the chunk the gateway requested for metering is hidden.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    if model == "chat":
        assert text == ask(client, model).choices[0].message.content


@pytest.mark.parametrize("model", ["fast", "chat"])
def test_stream_with_usage(client, model):
    chunks = list(ask(client, model, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.total_tokens > 0
    # Only the final chunk carries usage; the content still streamed before it.
    assert all(c.usage is None and c.choices for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "model,provider,upstream_model",
    [("fast", "upstream", "mock-model"), ("chat", "sim", "mock-1"), ("gpt-4o-mini", "sim", "mock-1")],
)
def test_gateway_headers(client, model, provider, upstream_model):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-switchyard-provider") == provider
    assert raw.headers.get("x-switchyard-model") == upstream_model
    assert raw.parse().choices[0].message.content


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        ask(client, "no-such-model")
    assert e.value.status_code == 404
    # The SDK unwraps OpenAI's {"error": {...}} envelope into `body`.
    assert e.value.body["code"] == "model_not_found"
    assert e.value.body["message"]
    assert e.value.code == "model_not_found"


def test_models_list(client):
    ids = {m.id for m in client.models.list()}
    assert {"chat", "gpt-4o-mini", "fast"} <= ids


def test_embeddings_from_the_mock_provider(client):
    r = client.embeddings.create(model="chat", input=["the same text", "other text", "the same text"])
    vectors = [d.embedding for d in r.data]
    assert len(vectors) == 3 and all(len(v) == 16 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    # f32 values, as OpenAI's (the SDK asks for base64 by default, which is f32).
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-6 for v in vectors)
    assert r.usage.prompt_tokens == 8
