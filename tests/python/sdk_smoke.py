"""Drives backstop with the official openai Python SDK, unmodified, as an app would.

Run by tests/openai_sdk.rs with BACKSTOP_URL set to a backstop in front of the mock
upstream. Exits non-zero (with a traceback) on the first broken expectation.
"""

import os

import openai
from openai import AzureOpenAI, OpenAI

base = os.environ["BACKSTOP_URL"]

# The app changes nothing but its base URL.
client = OpenAI(base_url=f"{base}/v1", api_key="sk-sdk-test", max_retries=0)

completion = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}]
)
assert completion.object == "chat.completion", completion
assert completion.choices[0].message.content, completion
assert completion.usage.total_tokens > 0, completion
print("create ok:", completion.choices[0].message.content[:40])

# The raw response shows backstop's own headers.
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}]
)
assert raw.headers.get("x-backstop-request-id"), dict(raw.headers)
print("request id:", raw.headers["x-backstop-request-id"])

stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Count"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, usage = [], None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
    if chunk.usage:
        usage = chunk.usage
assert len(pieces) >= 3, pieces
assert usage is not None and usage.completion_tokens > 0, usage
print("stream ok:", len(pieces), "chunks")

embedding = client.embeddings.create(model="text-embedding-3-small", input="hello")
assert len(embedding.data[0].embedding) > 0
models = client.models.list()
assert len(models.data) > 0
print("embeddings and models ok")

azure = AzureOpenAI(
    azure_endpoint=base, api_key="azure-sdk-test", api_version="2024-10-21", max_retries=0
)
completion = azure.chat.completions.create(
    model="my-deployment", messages=[{"role": "user", "content": "Say hi"}]
)
assert completion.choices[0].message.content
azure_stream = azure.chat.completions.create(
    model="my-deployment", messages=[{"role": "user", "content": "Count"}], stream=True
)
assert sum(1 for _ in azure_stream) >= 3
print("azure ok")

# backstop's own errors parse as OpenAI errors.
dead = OpenAI(base_url=f"{base}/dead/v1", api_key="sk-sdk-test", max_retries=0)
try:
    dead.models.list()
    raise AssertionError("expected a 502")
except openai.APIStatusError as e:
    assert e.status_code == 502, e
    assert e.code == "upstream_connect_error", e.body
    assert e.type == "backstop_error", e.body
print("error shape ok")

# Amplification: the SDK retries twice by default; backstop's x-should-retry: false stops
# it from multiplying backstop's own 3 attempts into 9.
storm = OpenAI(base_url=f"{base}/storm/v1", api_key="sk-sdk-test", max_retries=2)
try:
    storm.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("expected a 503")
except openai.InternalServerError as e:
    assert e.status_code == 503, e
    assert e.response.headers.get("x-should-retry") == "false", dict(e.response.headers)
    assert e.response.headers.get("x-backstop-attempts") == "3", dict(e.response.headers)
print("storm ok")
print("ALL OK")
