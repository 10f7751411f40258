"""An agent's tool loop through the gateway with the official openai Python SDK.

Run by tests/agents.rs with GATEWAY_URL; the fake upstream behind the
gateway calls read_file and grep (arguments streamed in pieces), then
answers with the tools' results. The SDK's own streamed tool-call
accumulation (`client.chat.completions.stream`) must give the exact calls;
the plain `stream=True` deltas are accumulated by hand as IDE tools do.
Prints one line per check; exits non-zero on the first that fails.
"""

import json
import os
import sys

import openai

BASE = os.environ["GATEWAY_URL"] + "/v1"
MODEL = "openai/test-model"
TOOLS = [
    {"type": "function", "function": {"name": "read_file", "description": "Read a file of the workspace",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {"name": "grep",
     "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}}}},
]
WANT = [("call_a", "read_file", '{"path": "src/main.rs"}'), ("call_b", "grep", '{"pattern": "fn main"}')]


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        sys.exit(1)


def run_tool(name, args):
    return f"contents of {args['path']}" if name == "read_file" else f"1 match for {args['pattern']}"


def accumulated_by_the_sdk(client, messages):
    with client.chat.completions.stream(model=MODEL, messages=messages, tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    check("the SDK's accumulated tool calls are exact", calls == WANT, calls)
    check("finish_reason tool_calls", choice.finish_reason == "tool_calls", choice.finish_reason)
    return choice.message


def accumulated_by_hand(client, messages):
    calls, reasoning, finish, usage = {}, "", None, None
    stream = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": piece.id, "name": piece.function.name, "arguments": ""})
                call["arguments"] += piece.function.arguments or ""
    got = [(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
    check("streamed tool-call deltas assemble exactly", got == WANT, got)
    check("reasoning_content streamed", reasoning == "The user wants main.", reasoning)
    check("finish_reason tool_calls (stream)", finish == "tool_calls", finish)
    check("usage with reasoning tokens",
          usage is not None and usage.completion_tokens_details.reasoning_tokens == 3, usage)


def main():
    client = openai.OpenAI(base_url=BASE, api_key="unused: auth is off", max_retries=0)
    messages = [{"role": "user", "content": "Where is main?"}]
    accumulated_by_hand(client, messages)
    message = accumulated_by_the_sdk(client, messages)
    messages.append(message.model_dump(exclude_none=True))
    for call in message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id,
                         "content": run_tool(call.function.name, json.loads(call.function.arguments))})
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    text = final.choices[0].message.content
    check("the answer after the tool results", text == "Tools said: contents of src/main.rs | 1 match for fn main",
          text)
    check("finish_reason stop after the loop", final.choices[0].finish_reason == "stop",
          final.choices[0].finish_reason)
    print("all passed")


if __name__ == "__main__":
    main()
