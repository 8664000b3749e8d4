"""The local ONNX pool through the official SDKs: the committed tiny LM (conf/models/tiny-lm, greedy
answer known: "Hello" -> "pqrstuvwxyz") served by a `kind: local` provider, called with the `openai`
and `anthropic` clients, streamed and not; embeddings from all-MiniLM-L6-v2 through `openai`.

Needs target/onnx (scripts/fetch-models.sh, run by scripts/test.sh before the tests).
"""
from pathlib import Path

import anthropic
import openai
import pytest

from conftest import ROOT, free_port

LIB = ROOT / "target/onnx/lib/libonnxruntime.so.1.31.1"
MINILM = ROOT / "target/onnx/minilm/model.onnx"
TINY_LM = ROOT / "conf/models/tiny-lm/model.onnx"

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - {{name: cpu0, kind: local, device: auto, workers: 1, queue: 8, library: "{lib}"}}
models:
  - {{name: tiny, deployments: [{{provider: cpu0, model: "{lm}"}}]}}
  - {{name: minilm, deployments: [{{provider: cpu0, model: "{minilm}"}}]}}
telemetry: {{access_log: off}}
"""


@pytest.fixture(scope="module")
def local_url(processes):
    for f in (LIB, MINILM):
        if not f.is_file():
            pytest.fail(f"{f} missing: run scripts/fetch-models.sh", pytrace=False)
    port, admin_port = free_port(), free_port()
    processes.gateway(
        CONFIG.format(port=port, admin_port=admin_port, lib=LIB, lm=TINY_LM, minilm=MINILM),
        f"http://127.0.0.1:{port}/v1/health",
    )
    return f"http://127.0.0.1:{port}"


def test_openai_sdk_non_stream_and_stream(local_url):
    client = openai.OpenAI(base_url=f"{local_url}/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}])
    assert r.choices[0].message.content == "pqrstuvwxyz"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 12)

    chunks = list(client.chat.completions.create(
        model="tiny", stream=True, stream_options={"include_usage": True}, max_tokens=6, seed=1,
        messages=[{"role": "user", "content": "Hello"}],
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "pqrstu"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 6


def test_openai_sdk_seeded_sampling_repeats(local_url):
    client = openai.OpenAI(base_url=f"{local_url}/v1", api_key="unused", max_retries=0)

    def sample(seed):
        r = client.chat.completions.create(model="tiny", temperature=20, seed=seed, max_tokens=10,
                                           messages=[{"role": "user", "content": "abc"}])
        return r.choices[0].message.content

    assert sample(11) == sample(11)
    assert sample(11) != sample(12)


def test_anthropic_sdk_non_stream_and_stream(local_url):
    client = anthropic.Anthropic(base_url=local_url, api_key="unused", max_retries=0)
    m = client.messages.create(model="tiny", max_tokens=64, stop_sequences=["xy"],
                               messages=[{"role": "user", "content": "Hello"}])
    assert m.content[0].text == "pqrstuvw"
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "xy"
    assert m.usage.input_tokens == 5

    with client.messages.stream(model="tiny", max_tokens=64,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "pqrstuvwxyz"
    assert len(pieces) == 11  # one event per generated character
    assert final.stop_reason == "end_turn"


def test_openai_sdk_embeddings(local_url):
    client = openai.OpenAI(base_url=f"{local_url}/v1", api_key="unused", max_retries=0)
    r = client.embeddings.create(model="minilm", input=["A man is eating food.", "A man is riding a horse."])
    assert [len(d.embedding) for d in r.data] == [384, 384]
    assert r.usage.prompt_tokens > 5


def test_errors_come_in_each_sdks_format(local_url):
    client = openai.OpenAI(base_url=f"{local_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 600}])
    assert "context" in str(e.value)
    claude = anthropic.Anthropic(base_url=local_url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="tiny", max_tokens=5, tools=[{"name": "f", "input_schema": {"type": "object"}}],
                               messages=[{"role": "user", "content": "Hello"}])
    assert "tools" in str(e.value)
