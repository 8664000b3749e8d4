"""Structured output and complete translated output, end to end with the official SDKs (issue 18,
points 7 and 9): `client.chat.completions.parse` with a Pydantic model through Switchyard to providers
that speak another format (the mock answers the schema's smallest instance when structured output is
asked for, see mock_providers.py), `stream_options.include_usage` chunks, and an Anthropic stream built
from an OpenAI upstream carrying the real input tokens.
"""
import json

import pydantic
import pytest

# The translation tests' gateway: model `via-<provider>` for each of the five provider formats,
# served by mock_providers.py, which records what it received.
from test_translation_sdk import ant, env, marker, n_words, oai  # noqa: F401 (fixtures)

TRANSLATED = ["anthropic", "gemini", "cloudflare", "ollama"]


class Contact(pydantic.BaseModel):
    name: str
    words: int
    demo_requested: bool


def upstream_schema(record: dict, provider: str):
    """The schema the gateway sent `provider`, read from that provider's own field."""
    body = record["body"]
    if provider == "anthropic":
        assert body["output_config"]["format"]["type"] == "json_schema"
        return body["output_config"]["format"]["schema"]
    if provider == "gemini":
        assert body["generationConfig"]["responseMimeType"] == "application/json"
        return body["generationConfig"]["responseJsonSchema"]
    if provider == "cloudflare":
        assert body["response_format"]["type"] == "json_schema"
        return body["response_format"]["json_schema"]["schema"]
    return body["format"]  # ollama


@pytest.mark.parametrize("provider", TRANSLATED)
def test_parse_with_a_pydantic_model_through_a_translated_provider(env, oai, provider):
    m = marker()
    completion = oai.chat.completions.parse(
        model=f"via-{provider}",
        messages=[{"role": "user", "content": f"extract {m}"}],
        response_format=Contact,
    )
    msg = completion.choices[0].message
    assert msg.refusal is None
    assert msg.parsed == Contact(name=f"Echo: extract {m}", words=3, demo_requested=True)
    sent = env.sent(m)
    assert len(sent) == 1
    schema = upstream_schema(sent[0], provider)
    assert schema["required"] == ["name", "words", "demo_requested"]
    assert schema["properties"]["words"]["type"] == "integer"


def test_strict_json_schema_answers_are_served_when_valid(env, oai):
    m = marker()
    r = oai.chat.completions.create(
        model="via-anthropic",
        messages=[{"role": "user", "content": f"extract {m}"}],
        response_format={"type": "json_schema", "json_schema": {
            "name": "contact", "strict": True, "schema": Contact.model_json_schema()}},
    )
    assert json.loads(r.choices[0].message.content)["words"] == 3


def test_include_usage_chunks_carry_null_usage_then_the_total(oai):
    m = marker()
    stream = oai.chat.completions.create(
        model="via-anthropic",
        messages=[{"role": "user", "content": f"count {m} words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *before, last = chunks
    assert before and all(c.usage is None for c in before)
    # The raw chunks really carry the member (not just a missing field the SDK defaults).
    assert all("usage" in c.model_dump(exclude_unset=True) for c in before)
    assert last.choices == []
    assert last.usage.prompt_tokens == 3
    text = "".join(c.choices[0].delta.content or "" for c in before if c.choices)
    assert last.usage.completion_tokens == n_words(text)


def test_an_anthropic_stream_from_an_openai_upstream_reports_input_tokens(ant):
    m = marker()
    prompt = f"five words in {m} here"
    with ant.messages.stream(model="via-openai", max_tokens=64,
                             messages=[{"role": "user", "content": prompt}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"Echo: {prompt}"
    assert final.usage.input_tokens == n_words(prompt)
    assert final.usage.output_tokens == n_words(text)
