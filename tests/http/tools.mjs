// tools.mjs — a streamed tool call read by the official OpenAI Node SDK's own stream helper
// (chat.completions.stream: it assembles calls from their deltas, and emits an arguments-done
// event with the arguments parsed), then the call's result sent back in the conversation.
// Prints the request, every chunk and the SDK's final message (the transcript), then one JSON
// line for tests/test_tools.py to check.
// usage: node tools.mjs BASE_URL   (BASE_URL: http://127.0.0.1:PORT/v1)
import OpenAI from "openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: "none" });
const model = (await client.models.list()).data[0].id;
const show = (what, value) => console.log(what + ": " + JSON.stringify(value));
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The weather in a city",
      parameters: {
        type: "object",
        properties: {
          city: { type: "string", maxLength: 20 },
          unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        },
        required: ["city", "unit"],
        additionalProperties: false,
      },
    },
  },
  {
    type: "function",
    function: {
      name: "add",
      parameters: {
        type: "object",
        properties: { a: { type: "integer" }, b: { type: "integer" } },
        required: ["a", "b"],
        additionalProperties: false,
      },
    },
  },
];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const request = {
  model, messages, tools, tool_choice: "required", temperature: 1, seed: 7, max_tokens: 1500,
};
show("chat.completions.stream request", request);
const stream = client.chat.completions.stream(request);
const done = [];
stream.on("chunk", (chunk) => show("chunk", chunk));
stream.on("tool_calls.function.arguments.done", (e) =>
  done.push({ index: e.index, name: e.name, parsed: e.parsed_arguments ?? JSON.parse(e.arguments) }));
const final = await stream.finalChatCompletion();
show("final message", final.choices[0].message);
show("finish_reason", final.choices[0].finish_reason);

// The result goes back, and the model answers with tool_choice none.
const call = final.choices[0].message.tool_calls[0];
const followup = await client.chat.completions.create({
  model,
  tools,
  tool_choice: "none",
  max_tokens: 20,
  temperature: 0,
  messages: [
    ...messages,
    final.choices[0].message,
    { role: "tool", tool_call_id: call.id, content: "sunny, 18 degrees" },
  ],
});
show("after the result", followup.choices[0].message);

console.log(JSON.stringify({
  finish_reason: final.choices[0].finish_reason,
  tool_calls: final.choices[0].message.tool_calls,
  arguments_done: done,
  followup: followup.choices[0].message,
}));
