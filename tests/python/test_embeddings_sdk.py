"""`/v1/embeddings` through every provider that has them, with the official `openai` SDK: Gemini
(embedContent / batchEmbedContents), Ollama (/api/embed) and Cloudflare Workers AI embedding models,
translated by the gateway from mock_providers.py's native answers. The SDK asks for base64 by default
and decodes it itself, so every test without `encoding_format` checks the gateway's base64 encoding;
`dimensions` is honoured where the provider can and refused by name where it cannot. Also the built-in
mock provider's embeddings options, logprobs and tool_choice through the SDK.
"""
import json
import sys
from pathlib import Path

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
  - {{name: up-gemini, kind: gemini, base_url: "http://127.0.0.1:{mp}/v1beta", api_key: sk-up-gemini}}
  - {{name: up-cloudflare, kind: cloudflare, base_url: "http://127.0.0.1:{mp}/client/v4/accounts/acc123/ai", api_key: sk-up-cloudflare}}
  - {{name: up-ollama, kind: ollama, base_url: "http://127.0.0.1:{mp}"}}
  - {{name: sim, kind: mock, chunks: 3}}
models:
  - {{name: emb-gemini, deployments: [{{provider: up-gemini, model: text-embedding-004}}]}}
  - {{name: emb-cloudflare, deployments: [{{provider: up-cloudflare, model: "@cf/baai/bge-base-en-v1.5"}}]}}
  - {{name: emb-ollama, deployments: [{{provider: up-ollama, model: all-minilm}}]}}
  - {{name: sim, deployments: [{{provider: sim, model: mock-1}}]}}
routing: {{retry: {{attempts: 1}}}}
telemetry: {{access_log: off}}
"""

PROVIDERS = ["gemini", "ollama", "cloudflare"]


@pytest.fixture(scope="module")
def env(processes):
    mp = free_port()
    record = processes.tmp / f"embeddings-record-{mp}.jsonl"
    log = processes.tmp / f"mock-providers-emb-{mp}.log"
    p = processes._spawn([sys.executable, str(MOCK), "--port", str(mp), "--record", str(record)], log)
    wait_for_port(mp, p, log)
    port, admin_port = free_port(), free_port()
    processes.gateway(CONFIG.format(port=port, admin_port=admin_port, mp=mp), f"http://127.0.0.1:{port}/v1/health")
    return port, record


@pytest.fixture(scope="module")
def client(env):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env[0]}/v1", api_key="sk-caller", max_retries=0, timeout=30)


def sent(env, path_part):
    lines = [json.loads(line) for line in env[1].read_text().splitlines() if line.strip()]
    return [r for r in lines if path_part in r["path"]]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_embeddings_through_each_translated_provider_in_the_sdks_default_base64(client, provider):
    texts = ["the quick brown fox", "hi"]
    r = client.embeddings.create(model=f"emb-{provider}", input=texts)
    assert r.object == "list"
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == [4.0, 19.0, 1.0]
    assert r.data[1].embedding == [1.0, 2.0, 1.0]
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0
    # What went over the wire: base64 text, as the SDK asked by default.
    raw = client.embeddings.with_raw_response.create(model=f"emb-{provider}", input=texts)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_float_encoding_gives_the_same_vectors(client, provider):
    r = client.embeddings.create(model=f"emb-{provider}", input="one two", encoding_format="float")
    assert r.data[0].embedding == [2.0, 7.0, 1.0]


def test_gemini_uses_embed_content_for_one_input_and_a_batch_for_several(client, env):
    client.embeddings.create(model="emb-gemini", input="single-input-marker")
    client.embeddings.create(model="emb-gemini", input=["batch-marker-a", "batch-marker-b"])
    [one] = [r for r in sent(env, ":embedContent") if "single-input-marker" in json.dumps(r["body"])]
    assert one["path"] == "/v1beta/models/text-embedding-004:embedContent"
    [batch] = [r for r in sent(env, ":batchEmbedContents") if "batch-marker-a" in json.dumps(r["body"])]
    assert [q["model"] for q in batch["body"]["requests"]] == ["models/text-embedding-004"] * 2


@pytest.mark.parametrize("provider", ["gemini", "ollama"])
def test_dimensions_are_honoured_where_the_provider_can(client, provider):
    r = client.embeddings.create(model=f"emb-{provider}", input="a b", dimensions=5)
    assert r.data[0].embedding == [2.0, 3.0, 1.0, 0.5, 0.5]


def test_dimensions_are_refused_by_name_where_the_provider_cannot(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model="emb-cloudflare", input="a b", dimensions=5)
    assert ei.value.param == "dimensions"
    assert "cloudflare" in ei.value.message


def test_the_mock_produces_the_asked_dimensions_in_base64_and_float(client):
    b = client.embeddings.create(model="sim", input="hello there", dimensions=7)
    f = client.embeddings.create(model="sim", input="hello there", dimensions=7, encoding_format="float")
    assert len(b.data[0].embedding) == 7
    assert b.data[0].embedding == pytest.approx(f.data[0].embedding, abs=1e-6)
    assert sum(x * x for x in f.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


def test_mock_logprobs_through_the_sdk(client):
    r = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "hi"}],
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token for t in content)
    streamed = []
    for chunk in client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "hi"}],
                                                logprobs=True, top_logprobs=3, stream=True):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed.extend(t.token for t in chunk.choices[0].logprobs.content)
    assert streamed == [t.token for t in content]


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"]}}}]


def test_mock_tool_choice_through_the_sdk(client):
    r = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args["city"], str) and isinstance(args["days"], int)
    name, arguments, finish = "", "", None
    for chunk in client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS,
            tool_choice="required", stream=True):
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name += tc.function.name or ""
            arguments += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, finish) == ("get_weather", "tool_calls")
    assert json.loads(arguments) == args
