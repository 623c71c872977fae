"""The headline of SPEC §6 with the official openai Python SDK, unmodified: a client
whose timeout (0.5 s) is shorter than the model's answer (2 s).

Run by tests/openai_sdk_replay.rs with BACKSTOP_URL and EXPECT: `timeout` (no replay:
the SDK's three tries all time out) or `completion` (replay: its retry gets the call
backstop finished for it).
"""

import os
import time

import openai
from openai import OpenAI

# HIDE_READ_TIMEOUT: the client's timeout is not told to backstop (as when it is set on
# the HTTP client rather than the SDK), so backstop's own deadline does not race it.
# (Only per-request headers take the place of the SDK's own x-stainless-read-timeout.)
headers = {"x-stainless-read-timeout": "600"} if os.environ.get("HIDE_READ_TIMEOUT") else None
client = OpenAI(
    base_url=f"{os.environ['BACKSTOP_URL']}/v1",
    api_key="sk-sdk-replay",
    timeout=0.5,
    max_retries=2,
)
started = time.monotonic()
try:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Think for a while"}],
        extra_headers=headers,
    )
except openai.APITimeoutError:
    print(f"APITimeoutError after {time.monotonic() - started:.2f} s")
    assert os.environ["EXPECT"] == "timeout", "the SDK should have got its completion"
else:
    print(f"completion after {time.monotonic() - started:.2f} s")
    assert os.environ["EXPECT"] == "completion", "expected the SDK to time out"
    assert completion.object == "chat.completion", completion
    assert completion.choices[0].message.content, completion
print("ALL OK")
