"""The official openai Python SDK pointed at the gateway with base_url.

Run by tests/openai_sdks.rs with GATEWAY_URL (auth off), AUTH_GATEWAY_URL
(auth on) and EXPECTED_TEXT (what the fake upstream streams). Exits non-zero
with a message on the first check that fails; prints one line per check.
"""

import os
import sys

import openai

BASE = os.environ["GATEWAY_URL"] + "/v1"
AUTH_BASE = os.environ["AUTH_GATEWAY_URL"] + "/v1"
EXPECTED = os.environ["EXPECTED_TEXT"]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        sys.exit(1)


def streaming(client):
    stream = client.chat.completions.create(
        model="ollama/llama3.2", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check("streamed text is exact", text == EXPECTED, repr(text))
    check("finish_reason stop", finish == "stop", finish)
    check("usage chunk present", usage is not None and usage.completion_tokens > 0, usage)


def whole(client):
    r = client.chat.completions.create(model="ollama/llama3.2", messages=MESSAGES)
    check("completion text is exact", r.choices[0].message.content == EXPECTED,
          r.choices[0].message.content)
    check("completion usage", r.usage is not None and r.usage.total_tokens > 0, r.usage)
    check("model names the provider", r.model == "ollama/llama3.2", r.model)


def unknown_model(client):
    try:
        client.chat.completions.create(model="agent:nosuch", messages=MESSAGES)
    except openai.NotFoundError as e:
        check("unknown model is NotFoundError", e.status_code == 404)
        return
    check("unknown model is NotFoundError", False, "no error")


def bad_jwt():
    client = openai.OpenAI(base_url=AUTH_BASE, api_key="not-a-jwt", max_retries=0)
    try:
        client.chat.completions.create(model="ollama/llama3.2", messages=MESSAGES)
    except openai.AuthenticationError as e:
        check("bad JWT is AuthenticationError", e.status_code == 401)
        return
    check("bad JWT is AuthenticationError", False, "no error")


def good_jwt():
    client = openai.OpenAI(base_url=AUTH_BASE, api_key=os.environ["JWT"], max_retries=0)
    r = client.chat.completions.create(model="ollama/llama3.2", messages=MESSAGES)
    check("a valid JWT as the api key works", r.choices[0].message.content == EXPECTED)


def models(client):
    ids = [m.id for m in client.models.list()]
    check("models list routes", "streamgate/auto" in ids and "ollama/llama3.2" in ids, ids)


if __name__ == "__main__":
    c = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0)
    streaming(c)
    whole(c)
    unknown_model(c)
    models(c)
    bad_jwt()
    good_jwt()
    print("all passed")
