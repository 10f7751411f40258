// The official `openai` npm package streaming once through the gateway
// (tests/openai_sdks.rs starts it with GATEWAY_URL and EXPECTED_TEXT).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

test("the openai npm SDK streams a completion through base_url", async () => {
  const client = new OpenAI({ baseURL: `${process.env.GATEWAY_URL}/v1`, apiKey: "unused", maxRetries: 0 });
  const stream = await client.chat.completions.create({
    model: "ollama/llama3.2",
    messages: [{ role: "user", content: "hi" }],
    stream: true,
  });
  let text = "";
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? "";
      finish = choice.finish_reason ?? finish;
    }
  }
  assert.equal(text, process.env.EXPECTED_TEXT);
  assert.equal(finish, "stop");
});
