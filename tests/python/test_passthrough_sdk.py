"""Pass-through routes (`passthrough[]`) with the official `openai` SDK: `files.create` (a multipart
upload), `files.content` (a binary download) and `images.generate` (priced per request) go through
Switchyard to a small in-process mock of OpenAI's files and images endpoints, which records what it
received. The gateway authenticates the SDK's virtual key, swaps it for the provider's key, and leaves
paths, queries and bodies as they are.
"""
import email
import email.policy
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import free_port

CALLER_KEY = "sk-caller-passthrough-0123456789"
PROVIDER_KEY = "sk-up-passthrough-secret"
ADMIN = "admin-passthrough-token"

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  admin_token: {admin}
  threads: 1
  grace_period: 1s
providers:
  - {{name: up, kind: openai, base_url: "http://127.0.0.1:{mp}/v1", api_key: {provider_key}}}
  - {{name: sim, kind: mock}}
models:
  - {{name: chat, deployments: [{{provider: sim, model: mock-1}}]}}
passthrough:
  - {{path: /v1/files/**, provider: up}}
  - {{path: /v1/images/*, provider: up, price: {{per_request: 0.04}}}}
auth:
  api_keys:
    - {{name: sdk, key: {caller_key}, team: sdk-team}}
budgets:
  - {{scope: key:sdk, limit: 0.10, period: total}}
telemetry: {{access_log: off}}
"""


class Mock:
    """OpenAI's files and images endpoints, just enough for the SDK; records every request."""

    def __init__(self):
        self.requests: list[dict] = []
        self.files: dict[str, tuple[str, bytes]] = {}
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _record(self, body: bytes):
                mock.requests.append({"method": self.command, "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})

            def _json(self, status: int, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("authorization") == f"Bearer {PROVIDER_KEY}":
                    return True
                self._json(401, {"error": {"message": "bad key", "type": "invalid_request_error",
                                           "param": None, "code": "invalid_api_key"}})
                return False

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                self._record(body)
                if not self._authorized():
                    return
                if self.path == "/v1/files":
                    msg = email.message_from_bytes(
                        b"content-type: " + self.headers["content-type"].encode() + b"\r\n\r\n" + body,
                        policy=email.policy.HTTP)
                    fields, upload = {}, None
                    for part in msg.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        if part.get_filename():
                            upload = (part.get_filename(), part.get_payload(decode=True))
                        else:
                            fields[name] = part.get_content().strip()
                    file_id = f"file-{uuid.uuid4().hex[:12]}"
                    mock.files[file_id] = upload
                    self._json(200, {"id": file_id, "object": "file", "bytes": len(upload[1]),
                                     "created_at": int(time.time()), "filename": upload[0],
                                     "purpose": fields.get("purpose"), "status": "processed"})
                elif self.path == "/v1/images/generations":
                    req = json.loads(body)
                    self._json(200, {"created": int(time.time()),
                                     "data": [{"url": f"https://img.example/{req['prompt'].replace(' ', '-')}.png",
                                               "revised_prompt": req["prompt"]}]})
                else:
                    self._json(404, {"error": {"message": "no such path", "type": "invalid_request_error",
                                               "param": None, "code": None}})

            def do_GET(self):
                self._record(b"")
                if not self._authorized():
                    return
                parts = self.path.split("?")[0].split("/")
                if len(parts) == 5 and parts[4] == "content" and parts[3] in mock.files:
                    data = mock.files[parts[3]][1]
                    self.send_response(200)
                    self.send_header("content-type", "application/octet-stream")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(404, {"error": {"message": "no such file", "type": "invalid_request_error",
                                               "param": None, "code": None}})

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def env(processes):
    mock = Mock()
    port, admin_port = free_port(), free_port()
    processes.gateway(
        CONFIG.format(port=port, admin_port=admin_port, mp=mock.port, admin=ADMIN,
                      provider_key=PROVIDER_KEY, caller_key=CALLER_KEY),
        f"http://127.0.0.1:{admin_port}/metrics", serving_port=port)
    yield mock, port, admin_port
    mock.server.shutdown()


@pytest.fixture(scope="module")
def client(env):
    _, port, _ = env
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=CALLER_KEY, max_retries=0, timeout=30)


def test_files_create_and_content_round_trip_byte_for_byte(env, client):
    mock, _, _ = env
    data = bytes(range(256)) * 2048 + b'{"custom_id": "r1"}\n'
    created = client.files.create(file=("batch.jsonl", data, "application/jsonl"), purpose="batch")
    assert created.object == "file"
    assert created.bytes == len(data)
    assert created.filename == "batch.jsonl"
    assert created.purpose == "batch"
    upload = mock.requests[-1]
    assert upload["path"] == "/v1/files"
    assert upload["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    # The caller's virtual key stayed at the gateway; the provider got its own.
    assert upload["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert CALLER_KEY not in json.dumps(upload["headers"])
    assert data in upload["body"]

    content = client.files.content(created.id)
    assert content.read() == data
    download = mock.requests[-1]
    assert download["method"] == "GET"
    assert download["path"] == f"/v1/files/{created.id}/content"


def test_images_generate_is_metered_per_request_and_refused_when_the_budget_is_spent(env, client):
    mock, _, admin_port = env
    for prompt in ("a red lighthouse", "a blue lighthouse"):
        img = client.images.generate(model="dall-e-2", prompt=prompt, size="256x256")
        assert img.data[0].url == f"https://img.example/{prompt.replace(' ', '-')}.png"
        sent = mock.requests[-1]
        assert sent["path"] == "/v1/images/generations"
        assert json.loads(sent["body"]) == {"model": "dall-e-2", "prompt": prompt, "size": "256x256"}
    # $0.08 of the key's $0.10 is spent: the next $0.04 image is refused before the provider.
    seen = len(mock.requests)
    with pytest.raises(openai.RateLimitError) as refused:
        client.images.generate(model="dall-e-2", prompt="a green lighthouse", size="256x256")
    assert refused.value.status_code == 429
    assert refused.value.code == "budget_exceeded"
    assert len(mock.requests) == seen
    # The spend shows in the gateway's metrics.
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics")
    metrics = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5).read().decode()
    line = 'switchyard_passthrough_requests_total{path="/v1/images/*",provider="up",status="2xx"} 2'
    assert line in metrics
