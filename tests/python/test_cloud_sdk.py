"""Cloud accounts through the official SDKs: the `openai` and `anthropic` clients, stream and not,
against an Azure OpenAI deployment (api-key), AWS Bedrock (Converse, SigV4 recomputed by the mock),
and Vertex AI (a service account's JWT-bearer grant verified with its public key, then Gemini and
Claude with the issued token). The mocks (cloud_mocks.py) refuse any request whose credential does
not verify, so every answer below proves the gateway signed or authorised it as the cloud expects.
"""
import json
import sys
from pathlib import Path

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import free_port, wait_for_port

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cloud_mocks as cm  # noqa: E402

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{admin_port}"
  threads: 1
  grace_period: 1s
providers:
  - name: az
    kind: azure
    base_url: http://127.0.0.1:{mp}
    api_version: "{api_version}"
    api_key: {azure_key}
  - name: br
    kind: bedrock
    region: {region}
    base_url: http://127.0.0.1:{mp}
    aws_access_key_id: {key_id}
    aws_secret_access_key: {secret}
    aws_session_token: {session}
  - name: vx
    kind: vertex
    project: {project}
    location: {location}
    base_url: http://127.0.0.1:{mp}
    credentials_file: {sa_file}
models:
  - name: azure-chat
    deployments: [{{ provider: az, model: {deployment} }}]
  - name: bedrock-chat
    deployments: [{{ provider: br, model: "{bedrock_model}" }}]
  - name: gemini-chat
    deployments: [{{ provider: vx, model: {gemini} }}]
  - name: claude-chat
    deployments: [{{ provider: vx, model: "{claude}" }}]
telemetry:
  access_log: off
"""

WANT = {
    "azure-chat": "Hello from Azure!",
    "bedrock-chat": "Hello from Bedrock!",
    "gemini-chat": "Hello from Vertex Gemini!",
    "claude-chat": "Hello from Vertex Claude!",
}
VERIFIED = {"azure-chat": "api-key", "bedrock-chat": "sigv4", "gemini-chat": "bearer", "claude-chat": "bearer"}


@pytest.fixture(scope="module")
def cloud(processes):
    """cloud_mocks.py with a fresh service account, and a gateway with the three kinds on it."""
    tmp = processes.tmp
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = tmp / "sa-public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    mp = free_port()
    sa_file = tmp / "sa.json"
    sa_file.write_text(json.dumps({
        "type": "service_account", "project_id": cm.PROJECT, "private_key_id": "k1",
        "private_key": pem, "client_email": cm.SA_EMAIL, "token_uri": f"http://127.0.0.1:{mp}/token"}))
    record = tmp / f"cloud-record-{mp}.jsonl"
    log = tmp / f"cloud-mocks-{mp}.log"
    p = processes._spawn([sys.executable, str(HERE / "cloud_mocks.py"), "--port", str(mp),
                          "--public-key", str(public), "--record", str(record)], log)
    wait_for_port(mp, p, log)
    port, admin_port = free_port(), free_port()
    processes.gateway(CONFIG.format(
        port=port, admin_port=admin_port, mp=mp, api_version=cm.AZURE_API_VERSION,
        azure_key=cm.AZURE_KEY, region=cm.AWS_REGION, key_id=cm.AWS_KEY_ID, secret=cm.AWS_SECRET,
        session=cm.AWS_SESSION_TOKEN, project=cm.PROJECT, location=cm.LOCATION, sa_file=sa_file,
        deployment=cm.AZURE_DEPLOYMENT, bedrock_model=cm.BEDROCK_MODEL, gemini=cm.GEMINI,
        claude=cm.CLAUDE), f"http://127.0.0.1:{port}/v1/health")

    class Env:
        base = f"http://127.0.0.1:{port}"

        @staticmethod
        def records():
            if not record.exists():
                return []
            return [json.loads(x) for x in record.read_text().splitlines() if x.strip()]
    return Env


def oai(cloud):
    return openai.OpenAI(base_url=cloud.base + "/v1", api_key="unused", max_retries=0)


def claude(cloud):
    return anthropic.Anthropic(base_url=cloud.base, api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", list(WANT))
def test_openai_sdk_non_stream(cloud, model):
    before = len(cloud.records())
    r = oai(cloud).chat.completions.create(model=model, max_tokens=50,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.content == WANT[model]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    sent = [x["verified"] for x in cloud.records()[before:] if x["path"] != "/token"]
    assert sent == [VERIFIED[model]]


@pytest.mark.parametrize("model", list(WANT))
def test_openai_sdk_stream(cloud, model):
    stream = oai(cloud).chat.completions.create(
        model=model, max_tokens=50, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Hi"}])
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert text == WANT[model]
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("model", list(WANT))
def test_anthropic_sdk_non_stream(cloud, model):
    r = claude(cloud).messages.create(model=model, max_tokens=50, system="Be brief.",
                                      messages=[{"role": "user", "content": "Hi"}])
    assert r.content[0].text == WANT[model]
    assert r.stop_reason == "end_turn"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


@pytest.mark.parametrize("model", list(WANT))
def test_anthropic_sdk_stream(cloud, model):
    with claude(cloud).messages.stream(model=model, max_tokens=50,
                                       messages=[{"role": "user", "content": "Hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == WANT[model]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_vertex_token_is_fetched_once_and_every_call_was_verified(cloud):
    oai(cloud).chat.completions.create(model="gemini-chat", messages=[{"role": "user", "content": "Hi"}])
    records = cloud.records()
    grants = [x for x in records if x["path"] == "/token"]
    assert [g["verified"] for g in grants] == ["assertion"], "one grant, its assertion verified"
    assert all(x["verified"] != "refused" for x in records), records
