#!/usr/bin/env python3
"""Mock upstream speaking five providers' native wire formats on one port (stdlib only).

    python mock_providers.py --port N [--record FILE]

Dialects (shapes follow shared/reference/wire-formats.md §1-§5):
  POST /v1/chat/completions                         OpenAI Chat Completions  (Bearer sk-up-openai)
  POST /v1/completions                               OpenAI legacy completions (prompt: a string or strings;
                                                     answer "Echo: <first prompt>", usage as below)
  POST /v1/messages                                  Anthropic Messages       (x-api-key sk-up-anthropic)
  POST /v1/messages/count_tokens                     Anthropic token count: {"input_tokens": <words>}
  POST /v1beta/models/{m}:generateContent            Gemini                   (x-goog-api-key sk-up-gemini)
  POST /v1beta/models/{m}:streamGenerateContent?alt=sse
  POST /client/v4/accounts/acc123/ai/run/{model...}  Cloudflare Workers AI    (Bearer sk-up-cloudflare)
  POST /api/chat                                     Ollama (no auth; stream defaults to true)
Embeddings: POST /v1/embeddings (OpenAI), /v1beta/models/{m}:embedContent and :batchEmbedContents
  (Gemini), /api/embed (Ollama), and /ai/run/{model} with a `text` body (Cloudflare embedding models).
  Every vector is [words, characters, 1.0], padded with 0.5 (or cut) to the requested dimensions.
  GET  /v1/models, /v1beta/models, /api/tags, /client/v4/accounts/acc123/ai/models/search -> 200

Deterministic answers, for every dialect. `last` = the last user turn:
  * tools declared and `last` is not a tool result -> one call to the first tool, args {"city": "Paris"}
    (Anthropic answers put a short text block "Let me check." before the tool_use block, as Claude does,
    so the tool block has index 1 in streams);
  * `last` is a tool result -> "Tool said: <result>";
  * otherwise -> "Echo: <last user text>";
  * structured output requested (OpenAI/Cloudflare `response_format`, Anthropic `output_config.format`,
    Gemini `responseJsonSchema`/`responseMimeType`, Ollama `format`) -> instead of that text, the JSON
    of the schema's smallest instance: strings "Echo: <last user text>", integers the word count,
    booleans true, every required property (all of them when none is named).
  User text "fail 429" -> the dialect's 429; "fail midstream" (stream) -> two text events, then the
  dialect's mid-stream error, then the stream ends without its normal terminator.
Usage: input = word count of every message text (system and tool results included); output = word count
of the answer text (+5 per tool call).
Every request is appended to --record FILE as one JSON line {method, path, headers (lowercased), body}.
"""
import argparse
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KEYS = {
    "openai": "sk-up-openai",
    "anthropic": "sk-up-anthropic",
    "gemini": "sk-up-gemini",
    "cloudflare": "sk-up-cloudflare",
}
TOOL_ARGS = {"city": "Paris"}
TOOL_CALL_TOKENS = 5
ANTHROPIC_TOOL_PREAMBLE = "Let me check."
EVENT_GAP_S = 0.01
# A prompt starting with this streams ten words 50 ms apart, and the send time of every event is
# recorded (record line with method "SENT"), so a test can measure each event's delay through the
# gateway.
PACED_PREFIX = "paced-50ms"
# "stall midstream": two text events, then nothing for this long (the gateway's idle timeout in the
# tests is shorter), then the stream closes.
STALL_S = 3.0
PACED_GAP_S = 0.05
CF_ACCOUNT = "acc123"

_record_lock = threading.Lock()
_record_file = None
_counter_lock = threading.Lock()
_counter = 0


def next_id() -> str:
    global _counter
    with _counter_lock:
        _counter += 1
        return f"{_counter:04d}{uuid.uuid4().hex[:12]}"


def words(s) -> int:
    return len(s.split()) if isinstance(s, str) else 0


class BadRequest(Exception):
    """A request the real provider would reject with 400."""


# --------------------------------------------------------------------------------------------
# The conversation, reduced to what the deterministic behaviour needs.
# --------------------------------------------------------------------------------------------
class Conv:
    def __init__(self):
        self.texts: list[str] = []  # every text, for the input token count
        self.tools: list[str] = []  # declared tool names, in order
        self.last_kind = None  # "text" | "tool_result" | None
        self.last_value = ""
        self.tool_choice_none = False
        self.schema = None  # the JSON Schema the caller asked the answer to follow

    def plan(self):
        """-> ("tool", name) | ("text", answer) | ("fail429", None) | ("midstream", answer)."""
        if self.last_kind == "tool_result":
            return "text", f"Tool said: {self.last_value}"
        text = self.last_value or ""
        if text.strip() == "fail 429":
            return "fail429", None
        if text.strip() in ("fail midstream", "stall midstream"):
            return "midstream", f"Echo: {text}"
        if text.startswith(PACED_PREFIX):
            # Ten numbered words, one per event, 50 ms apart (see Handler.event).
            return "text", "Echo: " + " ".join(f"w{i}" for i in range(10))
        if self.tools and not self.tool_choice_none:
            return "tool", self.tools[0]
        if self.schema is not None:
            return "text", json.dumps(schema_instance(self.schema, f"Echo: {text}"))
        return "text", f"Echo: {text}"

    def input_tokens(self) -> int:
        return sum(words(t) for t in self.texts)


def requested_schema(body):
    """The JSON Schema a request asks the answer to follow, in any dialect's field; None if none."""
    if not isinstance(body, dict):
        return None
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema") or {"type": "object"}
    if rf.get("type") == "json_object":
        return {"type": "object"}
    fmt = (body.get("output_config") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        return fmt.get("schema")
    gc = body.get("generationConfig") or {}
    if gc.get("responseJsonSchema") is not None:
        return gc["responseJsonSchema"]
    if gc.get("responseMimeType") == "application/json":
        return {"type": "object"}
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return fmt
    return {"type": "object"} if fmt == "json" else None


def schema_instance(schema, text: str):
    """The smallest instance of `schema` (see the module doc)."""
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {n: schema_instance(props.get(n, {}), text) for n in names}
    if kind == "array":
        return [schema_instance(schema.get("items") or {}, text)]
    return {"integer": words(text), "number": float(words(text)), "boolean": True,
            "null": None}.get(kind, text)


def text_of_parts(content) -> str:
    """String content, or the concatenated `text` of a list of parts/blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return ""


def gemini_result_text(response) -> str:
    """The text of a Gemini functionResponse.response object ({"output": "sunny"} and the like)."""
    if isinstance(response, dict):
        for k in ("output", "result", "content", "text"):
            if isinstance(response.get(k), str):
                return response[k]
        strings = [v for v in response.values() if isinstance(v, str)]
        if len(response) == 1 and strings:
            return strings[0]
    if isinstance(response, str):
        return response
    return json.dumps(response, separators=(",", ":"))


# ---------------------------------- request parsing per dialect --------------------------------
def parse_openai(body) -> Conv:
    if not isinstance(body, dict) or not body.get("model"):
        raise BadRequest("you must provide a model parameter")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must contain at least one message")
    c = Conv()
    open_calls: set = set()
    for i, m in enumerate(msgs):
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise BadRequest(f"Invalid value: '{role}'. Supported values are: 'system', 'developer', 'user', "
                             f"'assistant', and 'tool'.")
        t = text_of_parts(m.get("content"))
        c.texts.append(t)
        if role == "assistant":
            open_calls = set()
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") or {}
                if not isinstance(fn.get("arguments"), str):
                    raise BadRequest(f"Invalid type for 'messages[{i}].tool_calls[0].function.arguments': "
                                     f"expected a string")
                if not tc.get("id"):
                    raise BadRequest(f"Missing required parameter: 'messages[{i}].tool_calls[0].id'.")
                open_calls.add(tc["id"])
        elif role == "tool":
            if m.get("tool_call_id") not in open_calls:
                raise BadRequest("Invalid parameter: messages with role 'tool' must be a response to a "
                                 "preceeding message with 'tool_calls'.")
            c.last_kind, c.last_value = "tool_result", t
        elif role == "user":
            open_calls = set()
            c.last_kind, c.last_value = "text", t
    for tool in body.get("tools") or []:
        name = (tool.get("function") or {}).get("name")
        if not name:
            raise BadRequest("Missing required parameter: 'tools[0].function.name'.")
        c.tools.append(name)
    c.tool_choice_none = body.get("tool_choice") == "none"
    c.schema = requested_schema(body)
    return c


def parse_anthropic(body) -> Conv:
    if not isinstance(body, dict) or not body.get("model"):
        raise BadRequest("model: Field required")
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool):
        raise BadRequest("max_tokens: Field required")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: at least one message is required")
    c = Conv()
    system = body.get("system")
    if isinstance(system, list):
        for b in system:
            if b.get("type") == "text" and not b.get("text"):
                raise BadRequest("system: text content blocks must be non-empty")
    c.texts.append(text_of_parts(system))
    pending_tool_use: list = []  # ids of the previous assistant turn's tool_use blocks
    for i, m in enumerate(msgs):
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = m.get("content")
        final_assistant = role == "assistant" and i == len(msgs) - 1
        if isinstance(content, str):
            if not content and not final_assistant:
                raise BadRequest("messages: all messages must have non-empty content except for the optional "
                                 "final assistant message")
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            blocks = content
            if not blocks and not final_assistant:
                raise BadRequest("messages: all messages must have non-empty content except for the optional "
                                 "final assistant message")
        else:
            raise BadRequest(f"messages.{i}.content: Field required")
        results, uses = [], []
        for j, b in enumerate(blocks):
            bt = b.get("type")
            if bt == "text":
                if not b.get("text"):
                    raise BadRequest("messages: text content blocks must be non-empty")
                c.texts.append(b["text"])
            elif bt == "tool_use":
                if role != "assistant":
                    raise BadRequest(f"messages.{i}.content.{j}: tool_use blocks are only allowed in assistant "
                                     f"messages")
                if not isinstance(b.get("input"), dict):
                    raise BadRequest(f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary")
                if not re.fullmatch(r"[a-zA-Z0-9_-]+", str(b.get("id", ""))):
                    raise BadRequest(f"messages.{i}.content.{j}.tool_use.id: String should match pattern "
                                     f"'^[a-zA-Z0-9_-]+$'")
                uses.append(b["id"])
            elif bt == "tool_result":
                if role != "user":
                    raise BadRequest(f"messages.{i}.content.{j}: tool_result blocks are only allowed in user "
                                     f"messages")
                rt = text_of_parts(b.get("content"))
                c.texts.append(rt)
                results.append((b.get("tool_use_id"), rt))
        # tool_result adjacency, both ways.
        if results:
            ids = [r[0] for r in results]
            unknown = [x for x in ids if x not in pending_tool_use]
            if unknown:
                raise BadRequest(f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                                 f"blocks: {unknown[0]}. Each `tool_result` block must have a corresponding "
                                 f"`tool_use` block in the previous message.")
        if pending_tool_use:
            got = {r[0] for r in results}
            missing = [x for x in pending_tool_use if x not in got]
            if missing:
                raise BadRequest(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                                 f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                                 f"corresponding `tool_result` block in the next message.")
        pending_tool_use = uses if role == "assistant" else []
        if role == "user":
            if results:
                c.last_kind, c.last_value = "tool_result", results[-1][1]
            else:
                c.last_kind, c.last_value = "text", "".join(
                    b.get("text", "") for b in blocks if b.get("type") == "text")
    for j, tool in enumerate(body.get("tools") or []):
        if not tool.get("name"):
            raise BadRequest(f"tools.{j}.custom.name: Field required")
        if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
            raise BadRequest(f"tools.{j}.custom.input_schema: Field required")
        c.tools.append(tool["name"])
    c.tool_choice_none = (body.get("tool_choice") or {}).get("type") == "none"
    c.schema = requested_schema(body)
    return c


def parse_gemini(body) -> Conv:
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received.")
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    c = Conv()
    si = body.get("systemInstruction") or body.get("system_instruction")
    if si:
        c.texts.extend(p.get("text", "") for p in (si.get("parts") or []) if isinstance(p, dict))
    prev_calls = None  # functionCall count of the previous model turn
    for i, ct in enumerate(contents):
        role = ct.get("role", "user")
        if role not in ("user", "model", "function"):
            raise BadRequest(f"Please use a valid role: user, model.")
        parts = ct.get("parts")
        if isinstance(parts, dict):
            parts = [parts]
        if not isinstance(parts, list) or not parts:
            raise BadRequest(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        calls = sum(1 for p in parts if "functionCall" in p or "function_call" in p)
        responses = [p.get("functionResponse") or p.get("function_response") for p in parts
                     if "functionResponse" in p or "function_response" in p]
        for p in parts:
            if isinstance(p.get("text"), str):
                c.texts.append(p["text"])
        if responses or prev_calls:
            if len(responses) != (prev_calls or 0):
                raise BadRequest("Please ensure that the number of function response parts is equal to the "
                                 "number of function call parts of the function call turn.")
        prev_calls = calls if role == "model" else None
        if role != "model":
            if responses:
                vals = [gemini_result_text(r.get("response")) for r in responses]
                for v in vals:
                    c.texts.append(v)
                c.last_kind, c.last_value = "tool_result", vals[-1]
            else:
                c.last_kind, c.last_value = "text", "".join(
                    p.get("text", "") for p in parts if isinstance(p.get("text"), str))
    for tool in body.get("tools") or []:
        for fd in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            if not fd.get("name"):
                raise BadRequest("* GenerateContentRequest.tools[0].function_declarations[0].name: Name cannot be "
                                 "empty.")
            c.tools.append(fd["name"])
    tc = body.get("toolConfig") or body.get("tool_config") or {}
    fcc = tc.get("functionCallingConfig") or tc.get("function_calling_config") or {}
    c.tool_choice_none = str(fcc.get("mode", "")).upper() == "NONE"
    c.schema = requested_schema(body)
    return c


def parse_chatlike(body, dialect) -> Conv:
    """Cloudflare /ai/run and Ollama /api/chat: OpenAI-like messages whose content must be a string."""
    if not isinstance(body, dict):
        raise BadRequest("invalid body")
    if dialect == "ollama" and not body.get("model"):
        raise BadRequest("model is required")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages is required")
    c = Conv()
    for i, m in enumerate(msgs):
        role = m.get("role")
        content = m.get("content", "")
        if content is None and dialect == "ollama":
            content = ""
        if not isinstance(content, str):
            kind = "array" if isinstance(content, list) else type(content).__name__
            if dialect == "ollama":
                raise BadRequest(f"json: cannot unmarshal {kind} into Go struct field ChatRequest.messages.content "
                                 f"of type string")
            raise BadRequest(f"Type mismatch of '/messages/{i}/content', '{kind}' not in 'string'")
        if role not in ("system", "user", "assistant", "tool"):
            raise BadRequest(f"invalid role '{role}'")
        if dialect == "ollama":
            for tc in m.get("tool_calls") or []:
                if not isinstance((tc.get("function") or {}).get("arguments"), dict):
                    raise BadRequest("json: cannot unmarshal string into Go struct field "
                                     "ToolCallFunction.messages.tool_calls.function.arguments of type "
                                     "api.ToolCallFunctionArguments")
        c.texts.append(content)
        if role == "tool":
            c.last_kind, c.last_value = "tool_result", content
        elif role == "user":
            c.last_kind, c.last_value = "text", content
    for tool in body.get("tools") or []:
        name = (tool.get("function") or {}).get("name") or tool.get("name")
        if not name:
            raise BadRequest("tools[0]: name is required")
        c.tools.append(name)
    c.schema = requested_schema(body)
    return c


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-providers/1"

    def log_message(self, fmt, *args):  # quiet; errors still go to stderr
        pass

    # ---- plumbing ----
    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, status, obj, headers=None, content_type="application/json"):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self, content_type, headers=None):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        self._first_event = True

    def event(self, data: str):
        """One chunk per event, flushed, 10 ms (paced: 50 ms) after the previous one. For a
        "stall midstream" prompt the mid-stream error event is replaced by 3 s of silence."""
        if self._stall and ('"error"' in data or '"errors"' in data):
            time.sleep(STALL_S)
            return
        if not self._first_event:
            time.sleep(PACED_GAP_S if self._paced is not None else EVENT_GAP_S)
        self._first_event = False
        raw = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.flush()
        if self._paced is not None:
            self._paced.append([time.time(), data])

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if self._paced is not None and _record_file is not None:
            line = json.dumps({"method": "SENT", "path": self.path, "headers": {},
                               "body": {"marker": self._paced_marker, "events": self._paced}})
            with _record_lock, open(_record_file, "a") as f:
                f.write(line + "\n")

    def sse(self, obj, name=None):
        payload = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
        self.event((f"event: {name}\n" if name else "") + f"data: {payload}\n\n")

    def record(self, body):
        if _record_file is None:
            return
        line = json.dumps({"method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        with _record_lock, open(_record_file, "a") as f:
            f.write(line + "\n")

    # ---- routing ----
    def do_GET(self):
        path = urlsplit(self.path).path
        self.record(None)
        if path in ("/v1/models",):
            return self.send_json(200, {"object": "list", "data": [
                {"id": "gpt-up", "object": "model", "created": 1700000000, "owned_by": "mock"},
                {"id": "claude-up", "object": "model", "created": 1700000000, "owned_by": "mock",
                 "type": "model", "display_name": "Claude Up"}], "has_more": False})
        if path == "/v1beta/models":
            return self.send_json(200, {"models": [{"name": "models/gemini-up", "displayName": "Gemini Up",
                                                    "supportedGenerationMethods": ["generateContent"]}]})
        if path == "/api/tags":
            return self.send_json(200, {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest",
                                                    "size": 2019393189}]})
        if path == f"/client/v4/accounts/{CF_ACCOUNT}/ai/models/search":
            return self.send_json(200, {"result": [{"name": "@cf/meta/llama-3.1-8b-instruct",
                                                    "task": {"name": "Text Generation"}}],
                                        "success": True, "errors": [], "messages": []})
        self.send_json(404, {"error": f"no route for GET {path}"})

    def do_POST(self):
        url = urlsplit(self.path)
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.record(body)
        marker = re.search(rb"paced-50ms-[A-Za-z0-9]+", raw or b"")
        self._paced = [] if marker else None
        self._stall = b"stall midstream" in (raw or b"")
        self._paced_marker = marker.group(0).decode() if marker else None
        path = url.path
        query = parse_qs(url.query)
        m = re.fullmatch(r"/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)", path)
        gem_embed = re.fullmatch(r"/v1beta/models/([^/:]+):(embedContent|batchEmbedContents)", path)
        cf_prefix = f"/client/v4/accounts/{CF_ACCOUNT}/ai/run/"
        try:
            if path == "/v1/chat/completions":
                return self.openai(body)
            if path == "/v1/embeddings":
                return self.openai_embeddings(body)
            if path == "/v1/messages":
                return self.anthropic(body)
            if path == "/v1/completions":
                return self.openai_completions(body)
            if path == "/v1/messages/count_tokens":
                return self.anthropic_count_tokens(body)
            if gem_embed:
                return self.gemini_embed(body, gem_embed.group(2) == "batchEmbedContents")
            if path == "/api/embed":
                return self.ollama_embed(body)
            if path.startswith(cf_prefix) and isinstance(body, dict) and "text" in body:
                return self.cloudflare_embed(body)
            if m:
                return self.gemini(body, m.group(1), m.group(2) == "streamGenerateContent",
                                   query.get("alt") == ["sse"], query.get("key", [None])[0])
            if path.startswith(cf_prefix) and len(path) > len(cf_prefix):
                return self.cloudflare(body, path[len(cf_prefix):])
            if path == "/api/chat":
                return self.ollama(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        self.send_json(404, {"error": f"no route for POST {path}"})

    # ======================================== OpenAI ========================================
    def openai_embeddings(self, body):
        if self.headers.get("Authorization") != f"Bearer {KEYS['openai']}":
            return self.openai_error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        inputs = body.get("input") if isinstance(body, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return self.openai_error(400, "'input' is required", "invalid_request_error", param="input")
        data = []
        for i, text in enumerate(inputs):
            # Three dimensions: word count, character count, and a constant — enough to tell apart.
            data.append({"object": "embedding", "index": i,
                         "embedding": [float(words(str(text))), float(len(str(text))), 1.0]})
        n = sum(words(str(t)) for t in inputs)
        self.send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": n, "total_tokens": n}})


    # ================================== native embeddings ===================================
    def gemini_embed(self, body, batch):
        if self.headers.get("x-goog-api-key") != KEYS["gemini"]:
            return self.gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        reqs = body.get("requests", []) if batch else [body]
        out = [{"values": embed_vector(r["content"]["parts"][0]["text"], r.get("outputDimensionality"))}
               for r in reqs]
        return self.send_json(200, {"embeddings": out} if batch else {"embedding": out[0]})

    def ollama_embed(self, body):
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs:
            return self.send_json(400, {"error": "invalid input type"})
        return self.send_json(200, {"model": body["model"],
                                    "embeddings": [embed_vector(t, body.get("dimensions")) for t in inputs],
                                    "total_duration": 14143917, "load_duration": 1019500,
                                    "prompt_eval_count": sum(words(t) for t in inputs)})

    def cloudflare_embed(self, body):
        if self.headers.get("Authorization") != f"Bearer {KEYS['cloudflare']}":
            return self.cf_error(401, 10000, "Authentication error")
        texts = body["text"] if isinstance(body["text"], list) else [body["text"]]
        data = [embed_vector(t, None) for t in texts]
        return self.send_json(200, {"result": {"shape": [len(data), 3], "data": data, "pooling": "mean"},
                                    "success": True, "errors": [], "messages": []})

    def openai_error(self, status, message, etype, code=None, param=None, headers=None):
        self.send_json(status, {"error": {"message": message, "type": etype, "param": param, "code": code}},
                       headers)

    def openai(self, body):
        if self.headers.get("Authorization") != f"Bearer {KEYS['openai']}":
            return self.openai_error(401, "Incorrect API key provided.", "invalid_request_error",
                                     "invalid_api_key")
        try:
            conv = parse_openai(body)
        except BadRequest as e:
            return self.openai_error(400, str(e), "invalid_request_error")
        kind, val = conv.plan()
        if kind == "fail429":
            return self.openai_error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded",
                                     headers={"retry-after": "1", "x-ratelimit-remaining-requests": "0"})
        cid, created, model = f"chatcmpl-{next_id()}", int(time.time()), body["model"]
        pt = conv.input_tokens()
        if kind == "tool":
            call = {"id": f"call_{next_id()}", "type": "function",
                    "function": {"name": val, "arguments": json.dumps(TOOL_ARGS)}}
            answer, finish, ct = None, "tool_calls", TOOL_CALL_TOKENS
        else:
            call, answer, finish, ct = None, val, "stop", words(val)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        if not body.get("stream"):
            msg = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
            if call:
                msg["tool_calls"] = [call]
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_mock"},
                {"x-request-id": f"req_{next_id()}"})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.start_stream("text/event-stream", {"x-request-id": f"req_{next_id()}"})

        def chunk(delta, finish_reason=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_mock",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                c["usage"] = None
            self.sse(c)

        chunk({"role": "assistant", "content": "", "refusal": None})
        if kind == "midstream":
            for piece in split_words(answer)[:2]:
                chunk({"content": piece})
            self.sse({"error": {"message": "The server had an error while processing your request.",
                                "type": "server_error", "param": None, "code": None}})
            return self.end_stream()
        if call:
            args = call["function"]["arguments"]
            chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                   "function": {"name": val, "arguments": ""}}]})
            for frag in split_fragments(args, 3):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]})
        else:
            for piece in split_words(answer):
                chunk({"content": piece})
        chunk({}, finish)
        if include_usage:
            self.sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                      "system_fingerprint": "fp_mock", "choices": [], "usage": usage})
        self.sse("[DONE]")
        self.end_stream()

    # ======================================= Anthropic ======================================
    def anthropic_error(self, status, etype, message, headers=None):
        self.send_json(status, {"type": "error", "error": {"type": etype, "message": message},
                                "request_id": f"req_{next_id()}"}, headers)

    def anthropic(self, body):
        if self.headers.get("x-api-key") != KEYS["anthropic"]:
            return self.anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not self.headers.get("anthropic-version"):
            return self.anthropic_error(400, "invalid_request_error",
                                        "anthropic-version: header is required")
        try:
            conv = parse_anthropic(body)
        except BadRequest as e:
            return self.anthropic_error(400, "invalid_request_error", str(e))
        kind, val = conv.plan()
        if kind == "fail429":
            return self.anthropic_error(429, "rate_limit_error",
                                        "This request would exceed the rate limit for your organization.",
                                        {"retry-after": "1", "anthropic-ratelimit-requests-remaining": "0"})
        mid, model = f"msg_{next_id()}", body["model"]
        it = conv.input_tokens()
        rid = {"request-id": f"req_{next_id()}"}
        if kind == "tool":
            tool_id = f"toolu_{next_id()}"
            content = [{"type": "text", "text": ANTHROPIC_TOOL_PREAMBLE},
                       {"type": "tool_use", "id": tool_id, "name": val, "input": dict(TOOL_ARGS)}]
            stop, ot = "tool_use", words(ANTHROPIC_TOOL_PREAMBLE) + TOOL_CALL_TOKENS
        else:
            content, stop, ot = [{"type": "text", "text": val}], "end_turn", words(val)
        usage = {"input_tokens": it, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": ot, "service_tier": "standard"}
        if not body.get("stream"):
            return self.send_json(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                                        "content": content, "stop_reason": stop, "stop_sequence": None,
                                        "usage": usage}, rid)
        self.start_stream("text/event-stream; charset=utf-8", rid)
        ev = self.sse
        ev({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1}}}, "message_start")
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
           "content_block_start")
        self.event('event: ping\ndata: {"type": "ping"}\n\n')
        text = content[0]["text"]
        pieces = split_words(text)
        if kind == "midstream":
            for p in pieces[:2]:
                ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                   "content_block_delta")
            ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
            return self.end_stream()
        for p in pieces:
            ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
               "content_block_delta")
        ev({"type": "content_block_stop", "index": 0}, "content_block_stop")
        if kind == "tool":
            tu = content[1]
            ev({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": tu["id"], "name": tu["name"], "input": {}}},
               "content_block_start")
            for frag in [""] + split_fragments(json.dumps(TOOL_ARGS), 3):
                ev({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": frag}}, "content_block_delta")
            ev({"type": "content_block_stop", "index": 1}, "content_block_stop")
        ev({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": ot}}, "message_delta")
        ev({"type": "message_stop"}, "message_stop")
        self.end_stream()

    # ======================================== Gemini ========================================
    def gemini_error(self, status, gstatus, message, details=None):
        err = {"code": status, "message": message, "status": gstatus}
        if details is not None:
            err["details"] = details
        self.send_json(status, {"error": err})

    def gemini(self, body, model, stream, alt_sse, query_key):
        key = self.headers.get("x-goog-api-key") or query_key
        if key != KEYS["gemini"]:
            return self.gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
        try:
            conv = parse_gemini(body)
        except BadRequest as e:
            return self.gemini_error(400, "INVALID_ARGUMENT", str(e))
        kind, val = conv.plan()
        if kind == "fail429":
            return self.gemini_error(429, "RESOURCE_EXHAUSTED",
                                     "You exceeded your current quota, please check your plan and billing details.",
                                     [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                                         {"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                          "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                                      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}])
        pt = conv.input_tokens()
        rid = f"resp-{next_id()}"

        def response(parts, finish=None, cand_tokens=None):
            cand = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            um = {"promptTokenCount": pt, "totalTokenCount": pt + (cand_tokens or 0),
                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": pt}]}
            if cand_tokens is not None:
                um["candidatesTokenCount"] = cand_tokens
            return {"candidates": [cand], "usageMetadata": um, "modelVersion": model, "responseId": rid}

        if kind == "tool":
            call_part = {"functionCall": {"name": val, "args": dict(TOOL_ARGS)}}
            whole = response([call_part], "STOP", TOOL_CALL_TOKENS)
        else:
            whole = response([{"text": val}], "STOP", words(val))
        if not stream:
            return self.send_json(200, whole)
        if not alt_sse:  # streamGenerateContent without alt=sse answers one JSON array
            return self.send_json(200, [whole])
        self.start_stream("text/event-stream")
        if kind == "tool":
            # Newer models: the functionCall chunk without finishReason, then an empty text chunk with STOP.
            self.sse(response([call_part], None, TOOL_CALL_TOKENS))
            self.sse(response([{"text": ""}], "STOP", TOOL_CALL_TOKENS))
            return self.end_stream()
        pieces = split_words(val)
        if kind == "midstream":
            for p in pieces[:2]:
                self.sse(response([{"text": p}]))
            self.sse({"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                                "status": "UNAVAILABLE"}})
            return self.end_stream()
        sent = 0
        for n, p in enumerate(pieces):
            sent += words(p)
            last = n == len(pieces) - 1
            self.sse(response([{"text": p}], "STOP" if last else None, sent if last else None))
        self.end_stream()

    # ====================================== Cloudflare ======================================
    def cf_error(self, status, code, message):
        self.send_json(status, {"result": None, "success": False, "errors": [{"code": code, "message": message}],
                                "messages": []})

    def cloudflare(self, body, model):
        if self.headers.get("Authorization") != f"Bearer {KEYS['cloudflare']}":
            return self.cf_error(401, 10000, "Authentication error")
        if not model.startswith("@"):
            return self.cf_error(400, 5007, f"No such model {model} or task")
        try:
            conv = parse_chatlike(body, "cloudflare")
        except BadRequest as e:
            return self.cf_error(400, 5006, f"AiError: Bad input: {e}")
        kind, val = conv.plan()
        if kind == "fail429":
            return self.cf_error(429, 3036, "Capacity temporarily exceeded, please try again.")
        pt = conv.input_tokens()
        if kind == "tool":
            calls, answer, ct = [{"name": val, "arguments": dict(TOOL_ARGS)}], "", TOOL_CALL_TOKENS
        else:
            calls, answer, ct = [], val, words(val)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if not body.get("stream"):
            result = {"response": answer, "tool_calls": calls, "usage": usage}
            return self.send_json(200, {"result": result, "success": True, "errors": [], "messages": []})
        self.start_stream("text/event-stream")
        if kind == "midstream":
            for p in split_words(answer)[:2]:
                self.sse({"response": p, "p": "abcdef"})
            self.sse({"errors": [{"code": 3040, "message": "Capacity temporarily exceeded, please try again."}]})
            return self.end_stream()
        if calls:
            self.sse({"response": "", "tool_calls": calls})
        else:
            for p in split_words(answer):
                self.sse({"response": p, "p": "abcdef"})
        self.sse({"response": "", "usage": usage})
        self.sse("[DONE]")
        self.end_stream()

    # ======================================== Ollama ========================================
    def ollama(self, body):
        try:
            conv = parse_chatlike(body, "ollama")
        except BadRequest as e:
            return self.send_json(400, {"error": str(e)})
        kind, val = conv.plan()
        if kind == "fail429":
            return self.send_json(429, {"error": "server busy, please try again. maximum pending requests exceeded"})
        model = body["model"]
        pt = conv.input_tokens()
        now = lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        if kind == "tool":
            msg = {"role": "assistant", "content": "",
                   "tool_calls": [{"function": {"index": 0, "name": val, "arguments": dict(TOOL_ARGS)}}]}
            answer, ct = "", TOOL_CALL_TOKENS
        else:
            answer, ct = val, words(val)
            msg = {"role": "assistant", "content": answer}
        final = {"done_reason": "stop", "done": True, "total_duration": 182242375, "load_duration": 41295167,
                 "prompt_eval_count": pt, "prompt_eval_duration": 24573166, "eval_count": ct,
                 "eval_duration": 115959084}
        if body.get("stream") is False:
            return self.send_json(200, {"model": model, "created_at": now(), "message": msg, **final})
        self.start_stream("application/x-ndjson")

        def line(obj):
            self.event(json.dumps(obj, separators=(",", ":")) + "\n")

        if kind == "midstream":
            for p in split_words(answer)[:2]:
                line({"model": model, "created_at": now(), "message": {"role": "assistant", "content": p},
                      "done": False})
            line({"error": "an error was encountered while running the model"})
            return self.end_stream()
        if kind == "tool":
            line({"model": model, "created_at": now(), "message": msg, "done": False})
        else:
            for p in split_words(answer):
                line({"model": model, "created_at": now(), "message": {"role": "assistant", "content": p},
                      "done": False})
        line({"model": model, "created_at": now(), "message": {"role": "assistant", "content": ""}, **final})
        self.end_stream()

    # ================================ legacy completions, count_tokens ================================
    def openai_completions(self, body):
        """OpenAI's legacy /v1/completions: a `text_completion` (streamed as text chunks)."""
        if self.headers.get("Authorization") != f"Bearer {KEYS['openai']}":
            return self.openai_error(401, "Incorrect API key provided.", "invalid_request_error",
                                     "invalid_api_key")
        prompt = body.get("prompt") if isinstance(body, dict) else None
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            return self.openai_error(400, "'prompt' must be a string or an array of strings",
                                     "invalid_request_error", param="prompt")
        answer = f"Echo: {prompts[0]}"
        cid, created, model = f"cmpl-{next_id()}", int(time.time()), body.get("model")
        pt, ct = sum(words(p) for p in prompts), words(answer)
        usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        if not body.get("stream"):
            return self.send_json(200, {
                "id": cid, "object": "text_completion", "created": created, "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [{"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.start_stream("text/event-stream")

        def chunk(text, finish_reason=None):
            c = {"id": cid, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                c["usage"] = None
            self.sse(c)

        for piece in split_words(answer):
            chunk(piece)
        chunk("", "stop")
        if include_usage:
            self.sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                      "choices": [], "usage": usage})
        self.sse("[DONE]")
        self.end_stream()

    def anthropic_count_tokens(self, body):
        """Anthropic's /v1/messages/count_tokens: a Messages request without max_tokens."""
        if self.headers.get("x-api-key") != KEYS["anthropic"]:
            return self.anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not self.headers.get("anthropic-version"):
            return self.anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if isinstance(body, dict) and "max_tokens" in body:
            return self.anthropic_error(400, "invalid_request_error", "max_tokens: Extra inputs are not permitted")
        try:
            conv = parse_anthropic({**body, "max_tokens": 1} if isinstance(body, dict) else body)
        except BadRequest as e:
            return self.anthropic_error(400, "invalid_request_error", str(e))
        self.send_json(200, {"input_tokens": conv.input_tokens()})


def embed_vector(text: str, dims) -> list:
    """[words, characters, 1.0], padded with 0.5 or cut to `dims` when given."""
    v = [float(words(text)), float(len(text)), 1.0]
    if dims:
        v = (v + [0.5] * dims)[:dims]
    return v


def split_words(text: str) -> list:
    """"Echo: a b" -> ["Echo:", " a", " b"]: concatenation gives the text back."""
    parts = re.findall(r"\s*\S+", text)
    if not parts:
        return [text]
    parts[-1] += text[len("".join(parts)):]  # trailing whitespace, if any
    return parts


def split_fragments(s: str, n: int) -> list:
    step = max(1, -(-len(s) // n))
    return [s[i:i + step] for i in range(0, len(s), step)]


def main(argv=None):
    global _record_file
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--record", default=None, help="append every request as a JSON line to this file")
    args = ap.parse_args(argv)
    _record_file = args.record
    if _record_file:
        open(_record_file, "a").close()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"mock_providers listening on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
