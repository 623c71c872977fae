"""The official openai Python SDK, unchanged, through each kind of fallback (SPEC §7).

Run by tests/openai_sdk.rs: each BACKSTOP_*_URL is a backstop whose primary fails in
its own way. Exits non-zero (with a traceback) on the first broken expectation.
"""

import os

from openai import AzureOpenAI, OpenAI

messages = [{"role": "user", "content": "Say hi"}]


def openai(name):
    return OpenAI(base_url=f"{os.environ[name]}/v1", api_key="sk-sdk-test", max_retries=0)


# gpt-4o overloaded (503s) -> gpt-4o-mini on the same host.
raw = openai("BACKSTOP_MODEL_URL").chat.completions.with_raw_response.create(
    model="gpt-4o", messages=messages
)
completion = raw.parse()
assert completion.model == "gpt-4o-mini", completion
assert raw.headers.get("x-backstop-model") == "gpt-4o-mini", dict(raw.headers)
print("model fallback ok")

# OpenAI refusing connections -> an Azure deployment, in Azure's shape.
completion = openai("BACKSTOP_TO_AZURE_URL").chat.completions.create(model="gpt-4o", messages=messages)
assert completion.choices[0].message.content, completion
print("openai -> azure ok")

# An AzureOpenAI client whose Azure upstream fails -> OpenAI, in OpenAI's shape.
azure = AzureOpenAI(
    azure_endpoint=os.environ["BACKSTOP_TO_OPENAI_URL"],
    api_key="azure-sdk-test",
    api_version="2024-10-21",
    max_retries=0,
)
completion = azure.chat.completions.create(model="my-gpt4o", messages=messages)
assert completion.model == "gpt-4o", completion
print("azure -> openai ok")

# context_length_exceeded -> a model with a larger window.
completion = openai("BACKSTOP_CONTEXT_URL").chat.completions.create(model="gpt-4o", messages=messages)
assert completion.model == "gpt-4.1", completion
print("larger window ok")

# The org's quota spent -> another org's key.
completion = openai("BACKSTOP_QUOTA_URL").chat.completions.create(model="gpt-4o", messages=messages)
assert completion.choices[0].message.content, completion
print("quota key ok")

# A stream whose primary dies before its first event -> a normal stream.
stream = openai("BACKSTOP_STREAM_URL").chat.completions.create(
    model="gpt-4o", messages=messages, stream=True
)
chunks = list(stream)
assert len(chunks) >= 3, chunks
assert chunks[0].model == "gpt-4o-mini", chunks[0]
print("stream fallback ok")
print("ALL OK")
