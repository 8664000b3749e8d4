"""TLS: the official SDK over Switchyard's TLS listener (HTTP/2 by ALPN), and Switchyard calling an
HTTPS upstream (another Switchyard node) whose certificate is signed by a provider-specific CA.
Certificates come from a throwaway CA made with the openssl CLI."""
import socket
import ssl
import subprocess
from pathlib import Path

import openai
import pytest

from conftest import free_port


def make_ca_and_cert(d: Path) -> tuple[Path, Path, Path]:
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "ext.cnf"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
        "-days", "2", "-subj", "/CN=Switchyard Test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
        "-days", "2", "-extfile", ext)
    return ca_crt, crt, key


TLS_CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  tls: {{ listen: "127.0.0.1:{tls_port}", cert: "{crt}", key: "{key}" }}
  threads: 1
  grace_period: 1s
providers:
  - name: sim
    kind: mock
models:
  - name: chat
    deployments: [{{ provider: sim, model: mock-1 }}]
telemetry: {{ access_log: off }}
"""

EDGE_CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  threads: 1
  grace_period: 1s
providers:
  - name: core
    kind: openai
    base_url: https://127.0.0.1:{core_tls_port}/v1
    api_key: sk-core
    ca_file: "{ca}"
models:
  - name: edge-chat
    deployments: [{{ provider: core, model: chat }}]
telemetry: {{ access_log: off }}
"""


@pytest.fixture(scope="module")
def tls_gateway(processes):
    ca, crt, key = make_ca_and_cert(processes.tmp)
    port, tls_port = free_port(), free_port()
    processes.gateway(
        TLS_CONFIG.format(port=port, tls_port=tls_port, crt=crt, key=key),
        f"http://127.0.0.1:{port}/v1/health",
    )
    return {"ca": ca, "tls_port": tls_port}


def test_sdk_over_tls(tls_gateway):
    ctx = ssl.create_default_context(cafile=str(tls_gateway["ca"]))
    client = openai.OpenAI(
        base_url=f"https://127.0.0.1:{tls_gateway['tls_port']}/v1",
        api_key="sk-caller",
        http_client=openai.DefaultHttpxClient(verify=ctx),  # the SDK's own transport (httpx or httpx2)
        max_retries=0,
    )
    r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content


def test_tls_listener_offers_h2_and_rejects_unknown_ca(tls_gateway):
    ctx = ssl.create_default_context(cafile=str(tls_gateway["ca"]))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", tls_gateway["tls_port"])) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "h2"
    strict = ssl.create_default_context()  # system store: does not know the test CA
    with socket.create_connection(("127.0.0.1", tls_gateway["tls_port"])) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            strict.wrap_socket(raw, server_hostname="localhost")


def test_https_upstream_verified_with_provider_ca(processes, tls_gateway):
    port = free_port()
    processes.gateway(
        EDGE_CONFIG.format(port=port, core_tls_port=tls_gateway["tls_port"], ca=tls_gateway["ca"]),
        f"http://127.0.0.1:{port}/v1/health",
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="edge-chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-switchyard-provider"] == "core"
    assert raw.parse().choices[0].message.content


def test_https_upstream_with_unknown_ca_is_refused(processes, tls_gateway):
    other = processes.tmp / "other"
    other.mkdir(exist_ok=True)
    wrong_ca, _, _ = make_ca_and_cert(other)
    port = free_port()
    processes.gateway(
        EDGE_CONFIG.format(port=port, core_tls_port=tls_gateway["tls_port"], ca=wrong_ca),
        f"http://127.0.0.1:{port}/v1/health",
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="edge-chat", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
