// clients.mjs — clients nobody here wrote, against woollyd's HTTP API: the official OpenAI
// Node SDK (chat, streamed and not, with include_usage; text completions; an error) and
// LangChain's ChatOpenAI, streaming. Prints each call's request and its first and last chunks,
// then one JSON line of what came back, for tests/test_http.py to check against woolly run.
// usage: node clients.mjs BASE_URL   (BASE_URL: http://127.0.0.1:PORT/v1)
import OpenAI from "openai";
import { ChatOpenAI } from "@langchain/openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: "none" });
const model = (await client.models.list()).data[0].id;
const messages = [{ role: "user", content: "Tell me a story about a cat." }];
const out = { model };
const show = (what, value) => console.log(what + ": " + JSON.stringify(value));

let request = { model, messages, max_tokens: 30, temperature: 0 };
show("chat.completions.create request", request);
const chat = await client.chat.completions.create(request);
show("chat.completions.create response", chat);
out.chat = chat.choices[0].message.content;
out.chat_usage = chat.usage;

request = { ...request, stream: true, stream_options: { include_usage: true } };
show("chat.completions.create (stream) request", request);
const stream = await client.chat.completions.create(request);
const chunks = [];
for await (const chunk of stream) chunks.push(chunk);
show("first chunk", chunks[0]);
show("last chunk", chunks[chunks.length - 1]);
out.chat_stream = chunks.map((c) => (c.choices[0] ? c.choices[0].delta.content ?? "" : "")).join("");
out.stream_usage = chunks[chunks.length - 1].usage;
out.stream_chunks = chunks.length;

request = { model, prompt: "Once upon a time", max_tokens: 30, temperature: 0 };
show("completions.create request", request);
const completion = await client.completions.create(request);
show("completions.create response", completion);
out.completion = completion.choices[0].text;

try {
  await client.chat.completions.create({ model, messages, n: 2 });
  out.refused = { status: 0 };
} catch (e) {
  out.refused = { status: e.status, param: e.param, message: e.message };
}

const chatModel = new ChatOpenAI({
  model, temperature: 0, maxTokens: 30, apiKey: "none", configuration: { baseURL },
});
show("ChatOpenAI.stream request", { model, messages, maxTokens: 30, temperature: 0 });
const pieces = [];
for await (const piece of await chatModel.stream([["human", messages[0].content]])) pieces.push(piece);
show("first chunk", pieces[0]);
show("last chunk", pieces[pieces.length - 1]);
out.langchain = pieces.map((p) => (typeof p.content === "string" ? p.content : "")).join("");
out.langchain_chunks = pieces.length;

console.log(JSON.stringify(out));
