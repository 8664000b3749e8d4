"""The official SDK with a virtual key: the key works, a wrong key is an AuthenticationError, a
model outside the key's list a PermissionDeniedError."""
import openai
import pytest

from conftest import free_port

CONFIG = """
server:
  listen: ["127.0.0.1:{port}"]
  threads: 1
  grace_period: 1s
  public_health: true
providers:
  - name: sim
    kind: mock
models:
  - name: chat
    deployments: [{{ provider: sim, model: mock-1 }}]
  - name: secret-model
    deployments: [{{ provider: sim, model: mock-2 }}]
auth:
  api_keys:
    - {{ name: sdk-app, key: "sk-python-sdk-key-0001", models: [chat] }}
telemetry: {{ access_log: off, audit_log: off }}
"""


@pytest.fixture(scope="module")
def auth_url(processes):
    port = free_port()
    processes.gateway(CONFIG.format(port=port), f"http://127.0.0.1:{port}/v1/health")
    return f"http://127.0.0.1:{port}/v1"


def test_virtual_key_works(auth_url):
    client = openai.OpenAI(base_url=auth_url, api_key="sk-python-sdk-key-0001", max_retries=0)
    r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content


def test_wrong_key_is_an_authentication_error(auth_url):
    client = openai.OpenAI(base_url=auth_url, api_key="sk-wrong-wrong-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "invalid_api_key"
    assert "sk-wrong" not in str(e.value)


def test_model_outside_the_key_is_permission_denied(auth_url):
    client = openai.OpenAI(base_url=auth_url, api_key="sk-python-sdk-key-0001", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="secret-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_allowed"


def test_models_list_and_retrieve_show_only_the_keys_models(auth_url):
    client = openai.OpenAI(base_url=auth_url, api_key="sk-python-sdk-key-0001", max_retries=0)
    assert [m.id for m in client.models.list()] == ["chat"]
    model = client.models.retrieve("chat")
    assert (model.id, model.object, model.owned_by) == ("chat", "model", "switchyard")
    assert model.created > 0
    # A model outside the key's list is answered as if it did not exist.
    for hidden in ["secret-model", "no-such-model"]:
        with pytest.raises(openai.NotFoundError) as e:
            client.models.retrieve(hidden)
        assert e.value.body["code"] == "model_not_found"


def test_anthropic_sdk_lists_and_retrieves_models_in_its_shape(auth_url):
    import anthropic

    client = anthropic.Anthropic(
        base_url=auth_url.removesuffix("/v1"), api_key="sk-python-sdk-key-0001", max_retries=0
    )
    page = client.models.list()
    assert [m.id for m in page.data] == ["chat"]
    assert page.data[0].type == "model" and page.data[0].display_name == "chat"
    assert page.has_more is False and page.first_id == "chat" and page.last_id == "chat"
    model = client.models.retrieve("chat")
    assert model.id == "chat" and model.created_at.year >= 2026
    with pytest.raises(anthropic.NotFoundError) as e:
        client.models.retrieve("secret-model")
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
