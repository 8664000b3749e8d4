"""Self-test of mock_providers.py: each dialect spoken directly, with plain http.client (no gateway).

Also points the official `openai` and `anthropic` SDKs straight at the mock, which checks the mock's
shapes against the real clients (and pins down which exception each SDK raises for a mid-stream error).
Needs no Switchyard binary: it does not use the `processes` fixture.
"""
import http.client
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, stop, wait_for_port

MOCK = Path(__file__).resolve().parent / "mock_providers.py"
CF_RUN = "/client/v4/accounts/acc123/ai/run/@cf/meta/llama-3.1-8b-instruct"
TOOLS_OAI = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOLS_ANT = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
TOOLS_GEM = [{"functionDeclarations": [{"name": "get_weather", "parameters": {
    "type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}]
H_OAI = {"Authorization": "Bearer sk-up-openai"}
H_ANT = {"x-api-key": "sk-up-anthropic", "anthropic-version": "2023-06-01"}
H_GEM = {"x-goog-api-key": "sk-up-gemini"}
H_CF = {"Authorization": "Bearer sk-up-cloudflare"}


@pytest.fixture(scope="module")
def mock():
    with tempfile.TemporaryDirectory(prefix="mock-providers-") as tmp:
        port, rec, log = free_port(), Path(tmp) / "rec.jsonl", Path(tmp) / "mock.log"
        with log.open("w") as out:
            p = subprocess.Popen([sys.executable, str(MOCK), "--port", str(port), "--record", str(rec)],
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(port, p, log)
            yield {"port": port, "record": rec}
        finally:
            stop(p)


class Client:
    """One keep-alive connection; returns (status, headers, body bytes, raw chunk list)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path, body, headers=None):
        data = json.dumps(body).encode()
        self.conn.request("POST", path, body=data,
                          headers={"Content-Type": "application/json", **(headers or {})})
        r = self.conn.getresponse()
        chunked = r.getheader("Transfer-Encoding") == "chunked"
        raw = r.read()
        return r.status, r, raw, chunked

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())


@pytest.fixture()
def client(mock):
    c = Client(mock["port"])
    yield c
    c.conn.close()


def sse_events(raw: bytes):
    """-> list of (event name or None, data string)."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((name, "\n".join(data)))
    return out


def records(mock):
    return [json.loads(line) for line in mock["record"].read_text().splitlines()]


# ------------------------------------------ health -------------------------------------------
@pytest.mark.parametrize("path", ["/v1/models", "/v1beta/models", "/api/tags",
                                  "/client/v4/accounts/acc123/ai/models/search"])
def test_health(client, path):
    status, body = client.get(path)
    assert status == 200 and body


# ------------------------------------------ OpenAI -------------------------------------------
def test_openai_text_and_usage(client):
    s, r, raw, chunked = client.post("/v1/chat/completions", {
        "model": "gpt-up", "messages": [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hello there"}]}, H_OAI)
    assert s == 200 and not chunked and r.getheader("Content-Length")
    b = json.loads(raw)
    assert b["choices"][0]["message"]["content"] == "Echo: hello there"
    assert b["choices"][0]["finish_reason"] == "stop"
    assert b["usage"] == {**b["usage"], "prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def test_openai_auth(client):
    s, _, raw, _ = client.post("/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": "x"}]}, {"Authorization": "Bearer sk-caller"})
    assert s == 401 and json.loads(raw)["error"]["code"] == "invalid_api_key"


def test_openai_stream_usage_and_done(client):
    s, r, raw, chunked = client.post("/v1/chat/completions", {
        "model": "gpt-up", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "one two three"}]}, H_OAI)
    assert s == 200 and chunked and r.getheader("Content-Type").startswith("text/event-stream")
    ev = sse_events(raw)
    assert all(name is None for name, _ in ev)
    assert ev[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in ev[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])


def test_openai_stream_without_usage(client):
    _, _, raw, _ = client.post("/v1/chat/completions", {
        "model": "gpt-up", "stream": True, "messages": [{"role": "user", "content": "hi"}]}, H_OAI)
    chunks = [json.loads(d) for _, d in sse_events(raw)[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)


def test_openai_tool_round_trip(client):
    msgs = [{"role": "user", "content": "weather?"}]
    _, _, raw, _ = client.post("/v1/chat/completions", {"model": "m", "messages": msgs, "tools": TOOLS_OAI}, H_OAI)
    b = json.loads(raw)["choices"][0]
    assert b["finish_reason"] == "tool_calls" and b["message"]["content"] is None
    call = b["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    msgs += [b["message"], {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    _, _, raw, _ = client.post("/v1/chat/completions", {"model": "m", "messages": msgs, "tools": TOOLS_OAI}, H_OAI)
    assert json.loads(raw)["choices"][0]["message"]["content"] == "Tool said: sunny"
    # A tool message that answers no call is rejected.
    s, _, raw, _ = client.post("/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "y"}]}, H_OAI)
    assert s == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"


def test_openai_stream_tool_call(client):
    _, _, raw, _ = client.post("/v1/chat/completions", {
        "model": "m", "stream": True, "tools": TOOLS_OAI, "messages": [{"role": "user", "content": "w"}]}, H_OAI)
    chunks = [json.loads(d) for _, d in sse_events(raw)[:-1]]
    deltas = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert deltas[0]["id"] and deltas[0]["function"]["name"] == "get_weather"
    assert all(d["index"] == 0 for d in deltas) and len(deltas) > 2
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_errors(client):
    s, r, raw, _ = client.post("/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": "fail 429"}]}, H_OAI)
    assert s == 429 and set(json.loads(raw)["error"]) == {"message", "type", "param", "code"}
    _, _, raw, _ = client.post("/v1/chat/completions", {"model": "m", "stream": True, "messages": [
        {"role": "user", "content": "fail midstream"}]}, H_OAI)
    ev = sse_events(raw)
    assert [json.loads(d)["choices"][0]["delta"].get("content") for _, d in ev[1:3]] == ["Echo:", " fail"]
    assert "error" in json.loads(ev[-1][1]) and all(d != "[DONE]" for _, d in ev)


# ----------------------------------------- Anthropic -----------------------------------------
def test_anthropic_text(client):
    s, r, raw, chunked = client.post("/v1/messages", {
        "model": "claude-up", "max_tokens": 50, "system": "be nice",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]}, H_ANT)
    assert s == 200 and not chunked
    b = json.loads(raw)
    assert b["type"] == "message" and b["content"] == [{"type": "text", "text": "Echo: hello there"}]
    assert b["stop_reason"] == "end_turn" and b["usage"]["input_tokens"] == 4 and b["usage"]["output_tokens"] == 3


@pytest.mark.parametrize("body,needle", [
    ({"messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}, {"role": "user", "content": "y"}]},
     "tool_use` ids were found without `tool_result"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}]}]}, "tool_use_id"),
])
def test_anthropic_rejects(client, body, needle):
    s, _, raw, _ = client.post("/v1/messages", {"model": "claude-up", **body}, H_ANT)
    b = json.loads(raw)
    assert s == 400 and b["type"] == "error" and b["error"]["type"] == "invalid_request_error"
    assert needle in b["error"]["message"]


def test_anthropic_headers_required(client):
    s, _, raw, _ = client.post("/v1/messages", {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "x"}]}, {"x-api-key": "sk-up-anthropic"})
    assert s == 400 and "anthropic-version" in json.loads(raw)["error"]["message"]
    s, _, raw, _ = client.post("/v1/messages", {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "x"}]}, {"x-api-key": "sk-caller", "anthropic-version": "2023-06-01"})
    assert s == 401 and json.loads(raw)["error"]["type"] == "authentication_error"


def test_anthropic_stream_text(client):
    s, r, raw, chunked = client.post("/v1/messages", {"model": "claude-up", "max_tokens": 50, "stream": True,
                                                      "messages": [{"role": "user", "content": "a b c"}]}, H_ANT)
    assert chunked and r.getheader("Content-Type").startswith("text/event-stream")
    ev = sse_events(raw)
    names = [n for n, _ in ev]
    assert names[0] == "message_start" and "ping" in names and names[-2:] == ["message_delta", "message_stop"]
    assert all(json.loads(d)["type"] == n for n, d in ev)
    text = "".join(json.loads(d)["delta"]["text"] for n, d in ev if n == "content_block_delta")
    assert text == "Echo: a b c"
    assert json.loads(ev[0][1])["message"]["usage"]["input_tokens"] == 3
    assert json.loads(ev[-2][1])["usage"]["output_tokens"] == 4


def test_anthropic_tool_round_trip_and_stream(client):
    msgs = [{"role": "user", "content": "weather?"}]
    _, _, raw, _ = client.post("/v1/messages", {"model": "c", "max_tokens": 50, "messages": msgs,
                                                "tools": TOOLS_ANT}, H_ANT)
    b = json.loads(raw)
    assert b["stop_reason"] == "tool_use"
    tu = b["content"][-1]
    assert tu["type"] == "tool_use" and tu["input"] == {"city": "Paris"}
    msgs += [{"role": "assistant", "content": b["content"]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu["id"], "content": "sunny"}]}]
    _, _, raw, _ = client.post("/v1/messages", {"model": "c", "max_tokens": 50, "messages": msgs,
                                                "tools": TOOLS_ANT}, H_ANT)
    assert json.loads(raw)["content"][0]["text"] == "Tool said: sunny"
    _, _, raw, _ = client.post("/v1/messages", {"model": "c", "max_tokens": 50, "stream": True,
                                                "messages": msgs[:1], "tools": TOOLS_ANT}, H_ANT)
    ev = [(n, json.loads(d)) for n, d in sse_events(raw)]
    starts = [d for n, d in ev if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use"] and starts[1]["index"] == 1
    args = "".join(d["delta"]["partial_json"] for n, d in ev
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
    assert json.loads(args) == {"city": "Paris"}
    assert [d for n, d in ev if n == "message_delta"][0]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_errors(client):
    s, r, raw, _ = client.post("/v1/messages", {"model": "c", "max_tokens": 5, "messages": [
        {"role": "user", "content": "fail 429"}]}, H_ANT)
    assert s == 429 and r.getheader("retry-after") == "1"
    assert json.loads(raw)["error"]["type"] == "rate_limit_error"
    _, _, raw, _ = client.post("/v1/messages", {"model": "c", "max_tokens": 5, "stream": True, "messages": [
        {"role": "user", "content": "fail midstream"}]}, H_ANT)
    ev = sse_events(raw)
    assert ev[-1][0] == "error" and json.loads(ev[-1][1])["error"]["type"] == "overloaded_error"
    assert "message_stop" not in [n for n, _ in ev]
    assert len([n for n, _ in ev if n == "content_block_delta"]) == 2


# ------------------------------------------ Gemini -------------------------------------------
GEN = "/v1beta/models/gemini-up:generateContent"
SGEN = "/v1beta/models/gemini-up:streamGenerateContent?alt=sse"


def test_gemini_text(client):
    s, _, raw, chunked = client.post(GEN, {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]},
                                     H_GEM)
    assert s == 200 and not chunked
    b = json.loads(raw)
    c = b["candidates"][0]
    assert c["content"] == {"parts": [{"text": "Echo: hello there"}], "role": "model"}
    assert c["finishReason"] == "STOP"
    assert b["usageMetadata"]["promptTokenCount"] == 2 and b["usageMetadata"]["candidatesTokenCount"] == 3
    assert b["usageMetadata"]["totalTokenCount"] == 5


def test_gemini_auth(client):
    s, _, raw, _ = client.post(GEN, {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}, {})
    assert s == 400 and json.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_gemini_stream(client):
    s, r, raw, chunked = client.post(SGEN, {"contents": [{"role": "user", "parts": [{"text": "a b c"}]}]}, H_GEM)
    assert chunked and r.getheader("Content-Type").startswith("text/event-stream")
    ev = sse_events(raw)
    assert all(n is None and d != "[DONE]" for n, d in ev)
    objs = [json.loads(d) for _, d in ev]
    assert "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in objs) == "Echo: a b c"
    assert [o["candidates"][0].get("finishReason") for o in objs][-1] == "STOP"
    assert all("finishReason" not in o["candidates"][0] for o in objs[:-1])
    assert objs[-1]["usageMetadata"]["candidatesTokenCount"] == 4


def test_gemini_tool_round_trip(client):
    contents = [{"role": "user", "parts": [{"text": "weather?"}]}]
    _, _, raw, _ = client.post(GEN, {"contents": contents, "tools": TOOLS_GEM}, H_GEM)
    cand = json.loads(raw)["candidates"][0]
    assert cand["finishReason"] == "STOP"
    assert cand["content"]["parts"][0]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    contents += [cand["content"], {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]}]
    _, _, raw, _ = client.post(GEN, {"contents": contents, "tools": TOOLS_GEM}, H_GEM)
    assert json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"] == "Tool said: sunny"
    # functionResponse count must match the functionCall count.
    bad = contents[:2] + [{"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"output": "a"}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": "b"}}}]}]
    s, _, raw, _ = client.post(GEN, {"contents": bad, "tools": TOOLS_GEM}, H_GEM)
    assert s == 400 and json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    # Streamed: functionCall chunk without finishReason, then an empty text chunk with STOP.
    _, _, raw, _ = client.post(SGEN, {"contents": contents[:1], "tools": TOOLS_GEM}, H_GEM)
    objs = [json.loads(d) for _, d in sse_events(raw)]
    assert objs[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["args"] == {"city": "Paris"}
    assert objs[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_errors(client):
    s, _, raw, _ = client.post(GEN, {"contents": [{"role": "user", "parts": [{"text": "fail 429"}]}]}, H_GEM)
    e = json.loads(raw)["error"]
    assert s == 429 and e["status"] == "RESOURCE_EXHAUSTED"
    assert any(d.get("retryDelay") == "1s" for d in e["details"])
    _, _, raw, _ = client.post(SGEN, {"contents": [{"role": "user", "parts": [{"text": "fail midstream"}]}]}, H_GEM)
    objs = [json.loads(d) for _, d in sse_events(raw)]
    assert len(objs) == 3 and "error" in objs[-1]


# ---------------------------------------- Cloudflare -----------------------------------------
def test_cloudflare_text_and_stream(client):
    s, _, raw, chunked = client.post(CF_RUN, {"messages": [{"role": "user", "content": "hello there"}]}, H_CF)
    b = json.loads(raw)
    assert s == 200 and not chunked and b["success"] is True and b["errors"] == []
    assert b["result"]["response"] == "Echo: hello there"
    assert b["result"]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    _, r, raw, chunked = client.post(CF_RUN, {"stream": True, "messages": [{"role": "user", "content": "a b"}]},
                                     H_CF)
    assert chunked
    ev = sse_events(raw)
    assert ev[-1][1] == "[DONE]"
    objs = [json.loads(d) for _, d in ev[:-1]]
    assert "".join(o["response"] for o in objs) == "Echo: a b"
    assert objs[-1]["usage"]["completion_tokens"] == 3


def test_cloudflare_validation_and_auth(client):
    s, _, raw, _ = client.post(CF_RUN, {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
                               H_CF)
    assert s == 400 and json.loads(raw)["success"] is False
    s, _, raw, _ = client.post(CF_RUN, {"messages": [{"role": "user", "content": "x"}]}, {})
    assert s == 401 and json.loads(raw)["errors"]


def test_cloudflare_tools_and_errors(client):
    msgs = [{"role": "user", "content": "weather?"}]
    _, _, raw, _ = client.post(CF_RUN, {"messages": msgs, "tools": TOOLS_OAI}, H_CF)
    assert json.loads(raw)["result"]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    msgs += [{"role": "assistant", "content": ""}, {"role": "tool", "name": "get_weather", "content": "sunny"}]
    _, _, raw, _ = client.post(CF_RUN, {"messages": msgs, "tools": TOOLS_OAI}, H_CF)
    assert json.loads(raw)["result"]["response"] == "Tool said: sunny"
    _, _, raw, _ = client.post(CF_RUN, {"stream": True, "messages": msgs[:1], "tools": TOOLS_OAI}, H_CF)
    objs = [json.loads(d) for _, d in sse_events(raw)[:-1]]
    assert objs[0]["tool_calls"][0]["arguments"] == {"city": "Paris"}
    s, _, raw, _ = client.post(CF_RUN, {"messages": [{"role": "user", "content": "fail 429"}]}, H_CF)
    assert s == 429 and json.loads(raw)["errors"][0]["code"] == 3036
    _, _, raw, _ = client.post(CF_RUN, {"stream": True, "messages": [{"role": "user", "content": "fail midstream"}]},
                               H_CF)
    ev = sse_events(raw)
    assert "errors" in json.loads(ev[-1][1]) and all(d != "[DONE]" for _, d in ev)


# ------------------------------------------ Ollama -------------------------------------------
def ndjson(raw):
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def test_ollama_stream_is_default(client):
    s, r, raw, chunked = client.post("/api/chat", {"model": "llama3.2", "messages": [
        {"role": "user", "content": "hello there"}]})
    assert s == 200 and chunked and r.getheader("Content-Type") == "application/x-ndjson"
    lines = ndjson(raw)
    assert "".join(x["message"]["content"] for x in lines) == "Echo: hello there"
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    last = lines[-1]
    assert last["done_reason"] == "stop" and last["prompt_eval_count"] == 2 and last["eval_count"] == 3
    assert last["total_duration"] > 0


def test_ollama_non_stream_tools_and_errors(client):
    msgs = [{"role": "user", "content": "weather?"}]
    s, _, raw, chunked = client.post("/api/chat", {"model": "llama3.2", "stream": False, "messages": msgs,
                                                   "tools": TOOLS_OAI})
    b = json.loads(raw)
    assert not chunked and b["done"] is True and b["done_reason"] == "stop"
    call = b["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and call["arguments"] == {"city": "Paris"}
    msgs += [b["message"], {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    _, _, raw, _ = client.post("/api/chat", {"model": "llama3.2", "stream": False, "messages": msgs,
                                             "tools": TOOLS_OAI})
    assert json.loads(raw)["message"]["content"] == "Tool said: sunny"
    s, _, raw, _ = client.post("/api/chat", {"model": "llama3.2", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "x"}]}]})
    assert s == 400 and "cannot unmarshal array" in json.loads(raw)["error"]
    s, _, raw, _ = client.post("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "fail 429"}]})
    assert s == 429 and "error" in json.loads(raw)
    _, _, raw, _ = client.post("/api/chat", {"model": "llama3.2", "messages": [
        {"role": "user", "content": "fail midstream"}]})
    lines = ndjson(raw)
    assert len(lines) == 3 and set(lines[-1]) == {"error"}


# ------------------------------------- transport, record -------------------------------------
def test_keep_alive_across_dialects(client):
    client.post("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, H_OAI)
    sock = client.conn.sock
    client.post("/v1/messages", {"model": "m", "max_tokens": 5, "stream": True,
                                 "messages": [{"role": "user", "content": "x"}]}, H_ANT)
    client.post(SGEN, {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}, H_GEM)
    client.post("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]})
    s, _, _, _ = client.post(CF_RUN, {"messages": [{"role": "user", "content": "x"}]}, H_CF)
    assert s == 200 and client.conn.sock is sock


def test_record_file(client, mock):
    client.post("/v1/messages", {"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "rec-me"}]},
                H_ANT)
    rec = [r for r in records(mock) if r["path"] == "/v1/messages" and r["body"]
           and r["body"].get("messages") == [{"role": "user", "content": "rec-me"}]]
    assert rec and rec[-1]["headers"]["x-api-key"] == "sk-up-anthropic" and rec[-1]["body"]["max_tokens"] == 7
    assert rec[-1]["method"] == "POST"
    assert any(r["path"] == SGEN for r in records(mock))


# ------------------------------ the official SDKs against the mock ---------------------------
def test_openai_sdk_against_mock(mock):
    openai = pytest.importorskip("openai")
    c = openai.OpenAI(base_url=f"http://127.0.0.1:{mock['port']}/v1", api_key="sk-up-openai", max_retries=0)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Echo: hi"
    chunks = list(c.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b"}], stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 5
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail 429"}])
    got = []
    with pytest.raises(openai.APIError):
        for ch in c.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail midstream"}],
                                            stream=True):
            if ch.choices and ch.choices[0].delta.content:
                got.append(ch.choices[0].delta.content)
    assert got == ["Echo:", " fail"]


def test_anthropic_sdk_against_mock(mock):
    anthropic = pytest.importorskip("anthropic")
    # anthropic>=2 sends the key as `Authorization: Bearer`; the mock (like the gateway's upstream
    # contract) wants `x-api-key`, so add it.
    c = anthropic.Anthropic(base_url=f"http://127.0.0.1:{mock['port']}", api_key="sk-up-anthropic", max_retries=0,
                            default_headers={"x-api-key": "sk-up-anthropic"})
    r = c.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert r.content[0].text == "Echo: hi" and r.stop_reason == "end_turn"
    with c.messages.stream(model="c", max_tokens=10, messages=[{"role": "user", "content": "a b"}],
                           tools=TOOLS_ANT) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[1].input == {"city": "Paris"}
    with pytest.raises(anthropic.RateLimitError):
        c.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": "fail 429"}])
    got = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        with c.messages.stream(model="c", max_tokens=10,
                               messages=[{"role": "user", "content": "fail midstream"}]) as s:
            for t in s.text_stream:
                got.append(t)
    assert got == ["Echo:", " fail"]
    # An `event: error` after HTTP 200 comes out as the generic APIStatusError carrying status 200
    # and the error body (not OverloadedError, which is keyed on HTTP 529).
    assert ei.value.status_code == 200 and ei.value.body["error"]["type"] == "overloaded_error"
