#!/usr/bin/env python3
"""Mock cloud accounts on one port, each checking credentials as the real service does:

    python cloud_mocks.py --port N --public-key PEM [--record FILE]

  Azure OpenAI   POST /openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21
                 the `api-key` header must be AZURE_KEY (no Authorization); OpenAI's chat shapes,
                 stream or not (Azure's stream starts with a prompt_filter_results chunk).
  AWS Bedrock    POST /model/{modelId}/converse and /converse-stream: the SigV4 signature is
                 recomputed from the request (method, path encoded once more, query, the signed
                 headers, the body's hash) with AWS_SECRET and compared; the session token, region
                 and service `bedrock` checked. Streams are AWS event-stream frames (prelude, headers,
                 both CRC32s).
  Google OAuth   POST /token: the JWT-bearer grant; the RS256 assertion is verified with the service
                 account's public key (--public-key) and its claims checked; issues a token.
  Vertex AI      POST /v1/projects/proj-1/locations/us-east5/publishers/google/models/
                 gemini-2.0-flash:generateContent and :streamGenerateContent?alt=sse, and
                 .../publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict and
                 :streamRawPredict (Anthropic body with anthropic_version vertex-2023-10-16, no model):
                 only tokens /token issued are accepted.
Every answer says "Hello from <cloud>!". Every request is appended to --record as one JSON line
{method, path, verified} (verified: which credential check it passed).
"""
import argparse
import base64
import calendar
import hashlib
import hmac
import json
import struct
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

AZURE_KEY = "az-key-0123456789abcdef"
AZURE_DEPLOYMENT = "gpt4o-prod"
AZURE_API_VERSION = "2024-10-21"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_SESSION_TOKEN = "FwoGZXIvYXdzEBYaDEXAMPLETOKEN"
AWS_REGION = "us-west-2"
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
PROJECT, LOCATION = "proj-1", "us-east5"
SA_EMAIL = "switchyard@proj-1.iam.gserviceaccount.com"
GEMINI = "gemini-2.0-flash"
CLAUDE = "claude-sonnet-4-5@20250929"

_lock = threading.Lock()
_issued: set[str] = set()
_record = None
_public_key = None


def record(method: str, path: str, verified: str) -> None:
    if _record is None:
        return
    with _lock, open(_record, "a") as f:
        f.write(json.dumps({"method": method, "path": path, "verified": verified}) + "\n")


def b64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---- AWS -----------------------------------------------------------------------------------

def sigv4_problem(method: str, target: str, headers: dict, body: bytes) -> str | None:
    """None when the request's SigV4 signature is what AWS would compute; else why not."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "Missing Authentication Token"
    fields = dict(p.split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(", "))
    scope = fields.get("Credential", "").split("/")
    signed = fields.get("SignedHeaders", "").split(";")
    amz_date = headers.get("x-amz-date", "")
    if len(scope) != 5 or scope[0] != AWS_KEY_ID:
        return "The security token included in the request is invalid."
    if scope[1:] != [amz_date[:8], AWS_REGION, "bedrock", "aws4_request"]:
        return "scope mismatch"
    try:
        sent = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return "bad x-amz-date"
    if abs(sent - time.time()) > 300:
        return "Signature expired"
    if "host" not in signed or headers.get("x-amz-security-token") != AWS_SESSION_TOKEN:
        return "The security token included in the request is invalid."
    payload = hashlib.sha256(body).hexdigest()
    if headers.get("x-amz-content-sha256", payload) != payload:
        return "payload hash mismatch"
    path, _, query = target.partition("?")
    # Non-S3 services: the (already encoded) path is encoded once more.
    canonical_uri = quote(path, safe="/-_.~")
    canonical_query = "&".join(sorted(query.split("&"))) if query else ""
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip()}\n" for n in signed)
    canonical = "\n".join([method, canonical_uri, canonical_query, canonical_headers,
                           ";".join(signed), payload])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, "/".join(scope[1:]),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + AWS_SECRET).encode()
    for part in scope[1:]:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "The request signature we calculated does not match the signature you provided."
    return None


def eventstream_frame(event_type: str, payload: dict) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    body = json.dumps(payload).encode()
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"),
                        (":message-type", "event")):
        n, v = name.encode(), value.encode()
        headers += bytes([len(n)]) + n + bytes([7]) + struct.pack(">H", len(v)) + v
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


# ---- Google --------------------------------------------------------------------------------

def grant_problem(form: dict) -> str | None:
    """None when the JWT-bearer assertion is signed by the service account and its claims hold."""
    if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
        return "unsupported_grant_type"
    parts = form.get("assertion", [""])[0].split(".")
    if len(parts) != 3:
        return "invalid_grant"
    try:
        _public_key.verify(b64url(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                           padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001 — any verification failure is a refused grant
        return "invalid_grant"
    header, claims = json.loads(b64url(parts[0])), json.loads(b64url(parts[1]))
    now = time.time()
    if header.get("alg") != "RS256" or claims.get("iss") != SA_EMAIL \
            or "cloud-platform" not in claims.get("scope", "") \
            or not claims.get("iat", 0) - 60 <= now < claims.get("exp", 0):
        return "invalid_grant"
    return None


# ---- answers -------------------------------------------------------------------------------

def openai_answer(text: str, stream: bool):
    cid = "chatcmpl-" + uuid.uuid4().hex[:12]
    usage = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    if not stream:
        return "application/json", json.dumps({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}], "usage": usage}).encode()

    def chunk(delta, finish):
        return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    events = [{"choices": [], "id": "", "model": "", "object": "", "created": 0,
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
              chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": w}, None) for w in words_of(text)]
    events += [chunk({}, "stop"), {**chunk({}, None), "choices": [], "usage": usage}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return "text/event-stream", body.encode()


def words_of(text: str) -> list[str]:
    w = text.split(" ")
    return [x + " " for x in w[:-1]] + [w[-1]]


def bedrock_answer(text: str, stream: bool):
    usage = {"inputTokens": 30, "outputTokens": 4, "totalTokens": 34}
    if not stream:
        return "application/json", json.dumps({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn", "usage": usage, "metrics": {"latencyMs": 120}}).encode()
    frames = [eventstream_frame("messageStart", {"role": "assistant", "p": "ab"})]
    frames += [eventstream_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}, "p": "abc"})
               for w in words_of(text)]
    frames += [eventstream_frame("contentBlockStop", {"contentBlockIndex": 0, "p": "a"}),
               eventstream_frame("messageStop", {"stopReason": "end_turn", "p": "abcd"}),
               eventstream_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 80}, "p": "a"})]
    return "application/vnd.amazon.eventstream", b"".join(frames)


def gemini_answer(text: str, stream: bool):
    def piece(t, finish):
        c = {"content": {"role": "model", "parts": [{"text": t}]}}
        if finish:
            c["finishReason"] = "STOP"
        return {"candidates": [c], "modelVersion": GEMINI,
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9}}
    if not stream:
        return "application/json", json.dumps(piece(text, True)).encode()
    ws = words_of(text)
    body = "".join(f"data: {json.dumps(piece(w, i == len(ws) - 1))}\n\n" for i, w in enumerate(ws))
    return "text/event-stream", body.encode()


def claude_answer(text: str, stream: bool):
    mid = "msg_vrtx_" + uuid.uuid4().hex[:10]
    if not stream:
        return "application/json", json.dumps({
            "id": mid, "type": "message", "role": "assistant", "model": CLAUDE,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 4}}).encode()
    events = [("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": CLAUDE, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": w}}) for w in words_of(text)]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                      "stop_sequence": None},
                                  "usage": {"output_tokens": 4}}),
               ("message_stop", {"type": "message_stop"})]
    return "text/event-stream", "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def answer(self, status: int, ctype: str, body: bytes, extra: dict | None = None):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def json(self, status: int, value, extra: dict | None = None):
        self.answer(status, "application/json", json.dumps(value).encode(), extra)

    def do_GET(self):
        self.json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        if path == "/token":
            return self.token(body)
        if path.startswith("/openai/deployments/"):
            return self.azure(headers, body)
        if path.startswith("/model/"):
            return self.bedrock(headers, body)
        if path.startswith(f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/"):
            return self.vertex(headers, body)
        self.json(404, {"error": {"message": f"no route {self.path}"}})

    def token(self, body: bytes):
        problem = grant_problem(parse_qs(body.decode()))
        record("POST", "/token", "assertion" if problem is None else "refused")
        if problem:
            return self.json(400, {"error": problem, "error_description": "Invalid JWT Signature."})
        token = "ya29.mock-" + uuid.uuid4().hex
        with _lock:
            _issued.add(token)
        self.json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def azure(self, headers: dict, body: bytes):
        want = f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions?api-version={AZURE_API_VERSION}"
        if headers.get("api-key") != AZURE_KEY or "authorization" in headers:
            record("POST", self.path, "refused")
            return self.json(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}})
        record("POST", self.path, "api-key")
        if self.path != want:
            return self.json(404, {"error": {"code": "DeploymentNotFound", "message": "no such deployment"}})
        req = json.loads(body)
        self.answer(200, *openai_answer("Hello from Azure!", bool(req.get("stream"))))

    def bedrock(self, headers: dict, body: bytes):
        problem = sigv4_problem("POST", self.path, headers, body)
        if problem:
            record("POST", self.path, "refused")
            return self.json(403, {"message": problem},
                             {"x-amzn-errortype": "UnrecognizedClientException:http://internal.amazon.com/"})
        record("POST", self.path, "sigv4")
        model = quote(BEDROCK_MODEL, safe="-_.~")
        req = json.loads(body)
        if not req.get("messages"):
            return self.json(400, {"message": "messages required"},
                             {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/"})
        if self.path == f"/model/{model}/converse":
            return self.answer(200, *bedrock_answer("Hello from Bedrock!", False))
        if self.path == f"/model/{model}/converse-stream":
            return self.answer(200, *bedrock_answer("Hello from Bedrock!", True))
        self.json(404, {"message": "Unknown operation"})

    def vertex(self, headers: dict, body: bytes):
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with _lock:
            valid = token in _issued
        if not valid:
            record("POST", self.path, "refused")
            return self.json(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                             "message": "Request had invalid authentication credentials."}})
        record("POST", self.path, "bearer")
        base = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
        req = json.loads(body)
        if self.path == f"{base}/google/models/{GEMINI}:generateContent":
            return self.answer(200, *gemini_answer("Hello from Vertex Gemini!", False))
        if self.path == f"{base}/google/models/{GEMINI}:streamGenerateContent?alt=sse":
            return self.answer(200, *gemini_answer("Hello from Vertex Gemini!", True))
        if self.path.startswith(f"{base}/anthropic/models/{CLAUDE}:"):
            if req.get("anthropic_version") != "vertex-2023-10-16" or "model" in req:
                return self.json(400, {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "anthropic_version required; no model"}})
            stream = self.path.endswith(":streamRawPredict")
            return self.answer(200, *claude_answer("Hello from Vertex Claude!", stream))
        self.json(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"no route {self.path}"}})


def main():
    global _record, _public_key
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--record")
    args = ap.parse_args()
    _record = args.record
    with open(args.public_key, "rb") as f:
        _public_key = serialization.load_pem_public_key(f.read())
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
