"""Cross-format translation, end to end: the official `openai` and `anthropic` SDKs call Switchyard,
whose upstreams are mock_providers.py speaking each provider's native wire format (OpenAI Chat
Completions, Anthropic Messages, Gemini generateContent, Cloudflare Workers AI /run, Ollama /api/chat).

Every test is parametrized over caller in {openai, anthropic} x provider in {openai, anthropic, gemini,
cloudflare, ollama} (model `via-<provider>`). The mock answers deterministically (see its docstring):
"Echo: <last user text>", one call get_weather({"city": "Paris"}) when tools are declared, "Tool said:
<result>" after a tool result; "fail 429" / "fail midstream" trigger each dialect's own errors. It records
every request it receives, so the tests also assert what the gateway sent upstream.
"""
import gc
import json
import re
import time
import sys
import uuid
from pathlib import Path

import anthropic
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
  - {{name: up-openai, kind: openai, base_url: "http://127.0.0.1:{mp}/v1", api_key: sk-up-openai, timeouts: {{idle: 1s}}}}
  - {{name: up-anthropic, kind: anthropic, base_url: "http://127.0.0.1:{mp}", api_key: sk-up-anthropic, timeouts: {{idle: 1s}}}}
  - {{name: up-gemini, kind: gemini, base_url: "http://127.0.0.1:{mp}/v1beta", api_key: sk-up-gemini, timeouts: {{idle: 1s}}}}
  - {{name: up-cloudflare, kind: cloudflare, base_url: "http://127.0.0.1:{mp}/client/v4/accounts/acc123/ai", api_key: sk-up-cloudflare, timeouts: {{idle: 1s}}}}
  - {{name: up-ollama, kind: ollama, base_url: "http://127.0.0.1:{mp}", timeouts: {{idle: 1s}}}}
models:
  - {{name: via-openai, deployments: [{{provider: up-openai, model: gpt-up}}]}}
  - {{name: via-anthropic, deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
  - {{name: via-gemini, deployments: [{{provider: up-gemini, model: gemini-up}}]}}
  - {{name: via-cloudflare, deployments: [{{provider: up-cloudflare, model: "@cf/meta/llama-3.1-8b-instruct"}}]}}
  - {{name: via-ollama, deployments: [{{provider: up-ollama, model: "llama3.2"}}]}}
  - {{name: lenient-anthropic, strict: false, deployments: [{{provider: up-anthropic, model: claude-up, max_tokens: 256}}]}}
routing: {{retry: {{attempts: 1}}}}
telemetry: {{access_log: off}}
"""

CALLERS = ["openai", "anthropic"]
PROVIDERS = ["openai", "anthropic", "gemini", "cloudflare", "ollama"]
CALLER_KEY = "sk-caller"
UPSTREAM_KEYS = {"openai": "sk-up-openai", "anthropic": "sk-up-anthropic", "gemini": "sk-up-gemini",
                 "cloudflare": "sk-up-cloudflare"}
# Where each provider's chat requests land on the mock.
UPSTREAM_PATH = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini-up:",
    "cloudflare": "/client/v4/accounts/acc123/ai/run/@cf/meta/llama-3.1-8b-instruct",
    "ollama": "/api/chat",
}
MAX_TOKENS = 256  # Anthropic callers must send one

OAI_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ANT_TOOLS = [{"name": "get_weather", "description": "Current weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
PARIS = {"city": "Paris"}


# ------------------------------------------ fixtures -----------------------------------------
class Env:
    def __init__(self, port: int, record: Path):
        self.port = port
        self.record = record

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def sent(self, marker: str, provider: str | None = None) -> list[dict]:
        """Upstream requests whose body mentions `marker` (and that went to `provider`, if given)."""
        out = [r for r in self.records() if marker in json.dumps(r["body"])]
        if provider:
            out = [r for r in out if r["path"].startswith(UPSTREAM_PATH[provider])]
        return out


@pytest.fixture(scope="module")
def env(processes) -> Env:
    """mock_providers.py (recording to a file) and a gateway routing `via-*` to its five dialects."""
    mp = free_port()
    record = processes.tmp / f"upstream-record-{mp}.jsonl"
    log = processes.tmp / f"mock-providers-{mp}.log"
    p = processes._spawn([sys.executable, str(MOCK), "--port", str(mp), "--record", str(record)], log)
    wait_for_port(mp, p, log)
    port, admin_port = free_port(), free_port()
    processes.gateway(CONFIG.format(port=port, admin_port=admin_port, mp=mp), f"http://127.0.0.1:{port}/v1/health")
    return Env(port, record)


@pytest.fixture(scope="module")
def oai(env):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{env.port}/v1", api_key=CALLER_KEY, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def ant(env):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{env.port}", api_key=CALLER_KEY, max_retries=0,
                               timeout=30)


def marker() -> str:
    """A unique word to find a test's own upstream requests in the record file."""
    return f"m{uuid.uuid4().hex[:10]}"


def n_words(s: str) -> int:
    return len(s.split())


def model(provider: str) -> str:
    return f"via-{provider}"


both = pytest.mark.parametrize("caller", CALLERS)
every_provider = pytest.mark.parametrize("provider", PROVIDERS)


# ------------------------------------------ helpers ------------------------------------------
def oai_stream(stream):
    """-> (content deltas, tool_call deltas, finish reasons, chunks)."""
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return texts, calls, finishes, chunks


def ant_blocks_as_params(content) -> list[dict]:
    """An assistant message's content blocks, as request params (empty text blocks dropped)."""
    out = []
    for b in content:
        if b.type == "text" and b.text:
            out.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            out.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
    return out


# ---------------------------------------- plain text -----------------------------------------
@both
@every_provider
def test_text_non_stream(env, oai, ant, caller, provider):
    prompt = f"hello {marker()} world"
    want = f"Echo: {prompt}"
    if caller == "openai":
        r = oai.chat.completions.create(model=model(provider), messages=[{"role": "user", "content": prompt}])
        assert r.object == "chat.completion"
        assert r.choices[0].message.content == want
        assert r.choices[0].finish_reason == "stop"
        assert r.usage.prompt_tokens == n_words(prompt)
        assert r.usage.completion_tokens == n_words(want)
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    else:
        r = ant.messages.create(model=model(provider), max_tokens=MAX_TOKENS,
                                messages=[{"role": "user", "content": prompt}])
        assert r.type == "message" and r.role == "assistant"
        assert [b.type for b in r.content] == ["text"]
        assert r.content[0].text == want
        assert r.stop_reason == "end_turn"
        assert r.usage.input_tokens == n_words(prompt)
        assert r.usage.output_tokens == n_words(want)


@every_provider
@pytest.mark.parametrize("caller,include_usage", [("openai", True), ("openai", False), ("anthropic", None)],
                         ids=["openai-usage", "openai-nousage", "anthropic"])
def test_text_stream(env, oai, ant, caller, provider, include_usage):
    prompt = f"tell me {marker()} about streams"
    want = f"Echo: {prompt}"
    if caller == "openai":
        kw = {"stream_options": {"include_usage": True}} if include_usage else {}
        texts, calls, finishes, chunks = oai_stream(oai.chat.completions.create(
            model=model(provider), messages=[{"role": "user", "content": prompt}], stream=True, **kw))
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert len(texts) > 1, "the answer should arrive in several deltas"
        assert "".join(texts) == want
        assert not calls
        assert finishes == ["stop"]
        if include_usage:
            last = chunks[-1]
            assert last.choices == []
            assert last.usage.prompt_tokens == n_words(prompt)
            assert last.usage.completion_tokens == n_words(want)
            assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
            assert all(c.choices for c in chunks[:-1])
        else:
            assert all(c.choices for c in chunks)
            assert all(c.usage is None for c in chunks)
    else:
        with ant.messages.stream(model=model(provider), max_tokens=MAX_TOKENS,
                                 messages=[{"role": "user", "content": prompt}]) as s:
            texts = list(s.text_stream)
            final = s.get_final_message()
        assert len(texts) > 1, "the answer should arrive in several deltas"
        assert "".join(texts) == want
        assert [b.type for b in final.content] == ["text"]
        assert final.content[0].text == want
        assert final.stop_reason == "end_turn"
        assert final.usage.output_tokens == n_words(want)
        assert final.usage.input_tokens == n_words(prompt)


# ------------------------------------ tool-call round trip -----------------------------------
@both
@every_provider
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_tool_round_trip(env, oai, ant, caller, provider, stream):
    mk = marker()
    question = f"what is the weather {mk}"
    if caller == "openai":
        messages = [{"role": "user", "content": question}]
        if stream:
            texts, calls, finishes, _ = oai_stream(oai.chat.completions.create(
                model=model(provider), messages=messages, tools=OAI_TOOLS, stream=True))
            assert finishes == ["tool_calls"]
            assert calls and all(tc.index == 0 for tc in calls), [tc.index for tc in calls]
            first = calls[0]
            call_id, name = first.id, first.function.name
            assert all(tc.id in (None, call_id) for tc in calls[1:])
            arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
            content = "".join(texts) or None
        else:
            r = oai.chat.completions.create(model=model(provider), messages=messages, tools=OAI_TOOLS)
            choice = r.choices[0]
            assert choice.finish_reason == "tool_calls"
            assert len(choice.message.tool_calls) == 1
            tc = choice.message.tool_calls[0]
            assert tc.type == "function"
            call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
            content = choice.message.content or None
            assert r.usage.completion_tokens > 0
        assert call_id
        assert name == "get_weather"
        assert json.loads(arguments) == PARIS
        messages += [
            {"role": "assistant", "content": content, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        ]
        if stream:
            texts, calls, finishes, _ = oai_stream(oai.chat.completions.create(
                model=model(provider), messages=messages, tools=OAI_TOOLS, stream=True))
            answer = "".join(texts)
            assert not calls and finishes == ["stop"]
        else:
            r = oai.chat.completions.create(model=model(provider), messages=messages, tools=OAI_TOOLS)
            answer = r.choices[0].message.content
            assert r.choices[0].finish_reason == "stop"
        assert answer == "Tool said: sunny"
    else:
        messages = [{"role": "user", "content": question}]
        kw = dict(model=model(provider), max_tokens=MAX_TOKENS, tools=ANT_TOOLS)
        if stream:
            with ant.messages.stream(messages=messages, **kw) as s:
                r = s.get_final_message()
        else:
            r = ant.messages.create(messages=messages, **kw)
        assert r.stop_reason == "tool_use"
        uses = [b for b in r.content if b.type == "tool_use"]
        assert len(uses) == 1
        tu = uses[0]
        assert tu.name == "get_weather" and tu.input == PARIS
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", tu.id), tu.id
        assert r.usage.output_tokens > 0
        messages += [
            {"role": "assistant", "content": ant_blocks_as_params(r.content)},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu.id, "content": "sunny"}]},
        ]
        if stream:
            with ant.messages.stream(messages=messages, **kw) as s:
                r2 = s.get_final_message()
        else:
            r2 = ant.messages.create(messages=messages, **kw)
        assert r2.stop_reason == "end_turn"
        assert "".join(b.text for b in r2.content if b.type == "text") == "Tool said: sunny"

    # Upstream: both turns reached the provider; the second carried the result in the provider's terms.
    sent = env.sent(mk, provider)
    assert len(sent) == 2, [r["path"] for r in sent]
    second = json.dumps(sent[1]["body"])
    assert "sunny" in second
    if provider == "gemini":
        contents = sent[1]["body"]["contents"]
        assert any("functionResponse" in p for c in contents for p in c["parts"])
    if provider == "anthropic":
        msgs = sent[1]["body"]["messages"]
        assert [b["type"] for b in msgs[-1]["content"]][:1] == ["tool_result"]


# ------------------------------------------ errors -------------------------------------------
@both
@every_provider
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_rate_limit_error(env, oai, ant, caller, provider, stream):
    messages = [{"role": "user", "content": "fail 429"}]
    if caller == "openai":
        with pytest.raises(openai.RateLimitError) as ei:
            r = oai.chat.completions.create(model=model(provider), messages=messages, stream=stream)
            if stream:
                list(r)
        assert ei.value.status_code == 429
    else:
        with pytest.raises(anthropic.RateLimitError) as ei:
            if stream:
                with ant.messages.stream(model=model(provider), max_tokens=MAX_TOKENS, messages=messages) as s:
                    s.get_final_message()
            else:
                ant.messages.create(model=model(provider), max_tokens=MAX_TOKENS, messages=messages)
        assert ei.value.status_code == 429
        body = ei.value.body
        assert isinstance(body, dict) and body.get("type") == "error"
        assert body["error"]["type"] == "rate_limit_error"
    if provider in ("openai", "anthropic"):
        # These mocks also answer `*-ratelimit-requests-remaining: 0` (no reset: 1 s): the gateway
        # rightly skips the provider until then. Wait it out so later tests reach it.
        time.sleep(1.1)


@both
@every_provider
def test_midstream_error(env, oai, ant, caller, provider):
    """Two text events, then the provider's mid-stream error: the SDK raises while iterating, and the
    text received before the error is intact."""
    messages = [{"role": "user", "content": "fail midstream"}]
    got = []
    if caller == "openai":
        with pytest.raises(openai.APIError) as ei:
            for c in oai.chat.completions.create(model=model(provider), messages=messages, stream=True):
                if c.choices and c.choices[0].delta.content:
                    got.append(c.choices[0].delta.content)
        assert not isinstance(ei.value, openai.APIConnectionError), "expected an error event, not a cut connection"
    else:
        # anthropic 2.x raises `event: error` as the generic APIStatusError (status_code is the stream's
        # 200; the body is the error event), not as OverloadedError.
        with pytest.raises(anthropic.APIStatusError) as ei:
            with ant.messages.stream(model=model(provider), max_tokens=MAX_TOKENS, messages=messages) as s:
                for t in s.text_stream:
                    got.append(t)
        body = ei.value.body
        assert isinstance(body, dict) and body.get("type") == "error" and body["error"]["type"]
    assert "".join(got) == "Echo: fail"


# ----------------------------------------- capability ----------------------------------------
def test_unsupported_n_is_rejected_for_anthropic(env, oai):
    mk = marker()
    with pytest.raises(openai.BadRequestError) as ei:
        oai.chat.completions.create(model="via-anthropic", n=2, messages=[{"role": "user", "content": mk}])
    msg = str(ei.value)
    assert re.search(r"(?<![A-Za-z0-9_])n(?![A-Za-z0-9_])", msg), msg
    assert "anthropic" in msg.lower(), msg
    assert env.sent(mk) == [], "a rejected request must not reach any upstream"


def test_lenient_model_drops_seed_and_says_so(env, oai):
    mk = marker()
    raw = oai.chat.completions.with_raw_response.create(
        model="lenient-anthropic", seed=1, messages=[{"role": "user", "content": f"hi {mk}"}])
    assert "seed" in raw.headers.get("x-switchyard-dropped", "")
    r = raw.parse()
    assert r.choices[0].message.content == f"Echo: hi {mk}"
    (sent,) = env.sent(mk, "anthropic")
    assert "seed" not in sent["body"]


# ------------------------------------- what went upstream ------------------------------------
def test_openai_caller_to_anthropic_upstream_body(env, oai):
    mk = marker()
    r = oai.chat.completions.create(model="via-anthropic", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"hello {mk}"},
    ])
    assert r.choices[0].message.content == f"Echo: hello {mk}"
    (sent,) = env.sent(mk, "anthropic")
    body, headers = sent["body"], sent["headers"]
    assert body["model"] == "claude-up"
    assert body["max_tokens"] == 256  # the deployment's default; the caller sent none
    system = body.get("system")
    system_text = system if isinstance(system, str) else "".join(b.get("text", "") for b in system or [])
    assert "You are terse." in system_text
    assert all(m["role"] in ("user", "assistant") for m in body["messages"])
    assert headers.get("x-api-key") == "sk-up-anthropic"
    assert headers.get("anthropic-version")


@both
@every_provider
def test_upstream_auth_and_shape(env, oai, ant, caller, provider):
    mk = marker()
    prompt = f"shape {mk}"
    if caller == "openai":
        oai.chat.completions.create(model=model(provider), messages=[{"role": "user", "content": prompt}])
    else:
        ant.messages.create(model=model(provider), max_tokens=MAX_TOKENS,
                            messages=[{"role": "user", "content": prompt}])
    (sent,) = env.sent(mk, provider)
    h, body = sent["headers"], sent["body"]
    assert all(CALLER_KEY not in v for v in h.values()), h
    if provider == "openai":
        assert h.get("authorization") == "Bearer sk-up-openai"
        assert body["model"] == "gpt-up"
    elif provider == "anthropic":
        assert h.get("x-api-key") == "sk-up-anthropic"
        assert body["model"] == "claude-up" and isinstance(body["max_tokens"], int)
    elif provider == "gemini":
        assert h.get("x-goog-api-key") == "sk-up-gemini"
        assert sent["path"].startswith("/v1beta/models/gemini-up:generateContent")
    elif provider == "cloudflare":
        assert h.get("authorization") == "Bearer sk-up-cloudflare"
        assert all(isinstance(m["content"], str) for m in body["messages"])
    elif provider == "ollama":
        assert "authorization" not in h
        assert body["model"] == "llama3.2"
        assert body.get("stream") is False  # Ollama streams unless told not to
        assert all(isinstance(m["content"], str) for m in body["messages"])


@every_provider
def test_stream_reaches_upstream_as_stream(env, oai, provider):
    mk = marker()
    list(oai.chat.completions.create(model=model(provider), stream=True,
                                     messages=[{"role": "user", "content": f"s {mk}"}]))
    (sent,) = env.sent(mk, provider)
    if provider == "gemini":
        assert sent["path"] == "/v1beta/models/gemini-up:streamGenerateContent?alt=sse"
    elif provider == "ollama":
        assert sent["body"].get("stream") is not False
    else:
        assert sent["body"].get("stream") is True


def test_caller_key_never_reaches_upstream(env):
    records = env.records()
    assert records, "no upstream request was recorded"
    for r in records:
        assert CALLER_KEY not in json.dumps(r["headers"]), r["path"]


# ------------------------------------------ latency ------------------------------------------
@both
@every_provider
def test_each_event_is_relayed_as_it_arrives(env, oai, ant, caller, provider):
    """The upstream sends one event every 50 ms; every translated event reaches the SDK within a
    few ms of leaving the upstream (nothing waits for a later event or for the end)."""
    mk = f"paced-50ms-{uuid.uuid4().hex[:10]}"
    messages = [{"role": "user", "content": mk}]
    arrivals: list[tuple[float, str]] = []
    # What is timed is the gateway's relay, not this process: a collection of the suite's
    # accumulated objects can pause the client for tens of ms (seen once in a full run).
    gc.collect()
    gc.disable()
    try:
        if caller == "openai":
            for c in oai.chat.completions.create(model=model(provider), messages=messages, stream=True):
                if c.choices and c.choices[0].delta.content:
                    arrivals.append((time.time(), c.choices[0].delta.content))
        else:
            with ant.messages.stream(model=model(provider), max_tokens=MAX_TOKENS, messages=messages) as s:
                for t in s.text_stream:
                    arrivals.append((time.time(), t))
    finally:
        gc.enable()
    assert "".join(t for _, t in arrivals) == "Echo: " + " ".join(f"w{i}" for i in range(10))
    # The mock writes its send times when it closes the stream, just after the last event.
    deadline = time.monotonic() + 5
    while True:
        sent = [r for r in env.records() if r["method"] == "SENT" and r["body"]["marker"] == mk]
        if sent or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(sent) == 1, "the mock records the send time of each event"
    events = sent[0]["body"]["events"]
    delays = []
    for arrived, text in arrivals:
        word = text.strip()
        if not word.startswith("w"):
            continue
        left = next(t for t, data in events if f" {word}" in data or f'"{word}' in data)
        delays.append(arrived - left)
    assert len(delays) == 10
    delays.sort()
    # Events leave the upstream 50 ms apart: a delay near that would mean events are batched.
    assert delays[-1] < 0.040, f"slowest event took {delays[-1] * 1000:.1f} ms: {delays}"
    assert delays[len(delays) // 2] < 0.015, f"median {delays[len(delays) // 2] * 1000:.1f} ms"


# ------------------------------------ Anthropic ingress errors ------------------------------------
def _post_messages(env, body: bytes) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{env.port}/v1/messages", data=body, method="POST",
                                 headers={"content-type": "application/json", "x-api-key": CALLER_KEY})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body, status, etype, mentions", [
    (b'{"model": "via-openai", "messages": [{"role": "user", "content": "hi"}]}', 400,
     "invalid_request_error", "max_tokens"),
    (b'{"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}', 404,
     "not_found_error", "nope"),
    (b'{"model": "via-openai", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}', 400,
     "invalid_request_error", "role"),
    (b'{"model": "via-openai", "max_tokens": 5, "messages": ', 400, "invalid_request_error", "JSON"),
], ids=["missing-max-tokens", "unknown-model", "system-role", "bad-json"])
def test_messages_errors_are_anthropic_shaped(env, body, status, etype, mentions):
    got, err = _post_messages(env, body)
    assert got == status, err
    assert err["type"] == "error"
    assert err["error"]["type"] == etype
    assert mentions.lower() in err["error"]["message"].lower(), err
    assert err.get("request_id")


def test_messages_reaches_anthropic_byte_for_byte(env, ant):
    """Anthropic caller → anthropic provider: no translation, only the model name changes."""
    mk = marker()
    ant.messages.create(model="via-anthropic", max_tokens=7, extra_body={"top_k": 3},
                        messages=[{"role": "user", "content": [{"type": "text", "text": f"hi {mk}",
                                                                "cache_control": {"type": "ephemeral"}}]}],
                        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    [sent] = env.sent(mk, "anthropic")
    assert sent["body"]["model"] == "claude-up"
    assert sent["body"]["top_k"] == 3
    assert sent["body"]["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent["headers"]["x-api-key"] == "sk-up-anthropic"


# ------------------------------------------ embeddings ------------------------------------------
def test_embeddings_route_to_openai_deployments(env, oai):
    mk = marker()
    r = oai.embeddings.create(model="via-openai", input=[f"one two {mk}", "three"])
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == [3.0, float(len(f"one two {mk}")), 1.0]
    assert r.usage.prompt_tokens == 4
    [sent] = env.sent(mk)
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"]["model"] == "gpt-up"
    assert sent["headers"]["authorization"] == "Bearer sk-up-openai"


def test_embeddings_are_refused_for_providers_without_them(env, oai):
    with pytest.raises(openai.BadRequestError) as ei:
        oai.embeddings.create(model="via-anthropic", input="hello")
    assert "embeddings" in str(ei.value) and "anthropic" in str(ei.value)


@both
@every_provider
def test_a_stalled_stream_ends_with_an_error_event_not_a_hang(env, oai, ant, caller, provider):
    """Two text events, then the provider goes silent for 3 s: past the provider's 1 s idle timeout
    the caller's stream ends with an error event in its own format, with the text so far intact."""
    messages = [{"role": "user", "content": "stall midstream"}]
    got = []
    started = time.monotonic()
    if caller == "openai":
        with pytest.raises(openai.APIError) as ei:
            for c in oai.chat.completions.create(model=model(provider), messages=messages, stream=True):
                if c.choices and c.choices[0].delta.content:
                    got.append(c.choices[0].delta.content)
        assert not isinstance(ei.value, openai.APIConnectionError)
    else:
        with pytest.raises(anthropic.APIStatusError) as ei:
            with ant.messages.stream(model=model(provider), max_tokens=MAX_TOKENS, messages=messages) as s:
                for t in s.text_stream:
                    got.append(t)
        assert ei.value.body["error"]["type"] == "timeout_error", ei.value.body
    elapsed = time.monotonic() - started
    assert "".join(got) == "Echo: stall"
    assert 0.9 < elapsed < 2.9, f"ended after {elapsed:.2f}s"
