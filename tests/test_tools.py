#!/usr/bin/python3
"""test_tools.py — OpenAI tool calling over woollyd's HTTP API, on the bundled model with each
family's template (qwen3: Hermes <tool_call>, llama3.1: JSON, mistral-nemo: [TOOL_CALLS]):
required and named calls always come back as tool_calls whose arguments validate
(python3-jsonschema) against the function's parameters; auto replies are content or valid calls;
parallel calls get their own index and id; streamed deltas add up to the whole response's calls;
a tool's result goes back into the conversation; a family without tools refuses them by name.

usage: test_tools.py WOOLLYD SOURCE_DIR
"""
import http.client
import json
import os
import subprocess
import sys

import jsonschema

WOOLLYD, SOURCE = sys.argv[1:3]
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_harness import Woollyd, run_tests  # noqa: E402

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 20},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two integers",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "integer", "minimum": -100, "maximum": 100},
            "b": {"type": "integer", "minimum": -100, "maximum": 100}},
            "required": ["a", "b"], "additionalProperties": False}, "strict": True}},
    {"type": "function", "function": {"name": "now"}},
]
SCHEMAS = {t["function"]["name"]: t["function"].get(
    "parameters", {"type": "object", "properties": {}, "additionalProperties": False}) for t in TOOLS}
MESSAGES = [{"role": "user", "content": "Once upon a time, what was the weather?"}]


def post(d, body, stream=False):
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=120)
    conn.request("POST", "/v1/chat/completions", json.dumps(dict(body, stream=stream)),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    if not stream:
        out = json.loads(r.read())
        conn.close()
        return r.status, out
    chunks = []
    for line in r.read().decode().split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[6:]))
    conn.close()
    return r.status, chunks


def check_calls(calls, allowed):
    ids = set()
    for c in calls:
        assert c["type"] == "function", c
        assert c["id"] and c["id"] not in ids, calls
        ids.add(c["id"])
        name = c["function"]["name"]
        assert name in allowed, (name, allowed)
        arguments = json.loads(c["function"]["arguments"])
        jsonschema.validate(arguments, SCHEMAS[name])


def assemble(chunks):
    """The message a streamed reply adds up to: content, and calls from their deltas."""
    content, calls, finish = "", {}, None
    for ch in chunks:
        choice = ch["choices"][0]
        delta = choice["delta"]
        content += delta.get("content") or ""
        for t in delta.get("tool_calls", []):
            i = t["index"]
            if "id" in t:
                assert i not in calls, ("a call began twice", i)
                assert i == len(calls), ("indexes in order", i, len(calls))
                calls[i] = {"id": t["id"], "type": t["type"],
                            "function": {"name": t["function"]["name"], "arguments": ""}}
            calls[i]["function"]["arguments"] += t["function"].get("arguments", "")
        finish = choice["finish_reason"] or finish
    return content, [calls[i] for i in sorted(calls)], finish


def test_required_calls_validate(d):
    """tool_choice required, sampled with several seeds: every reply is tool calls, valid."""
    for seed in range(6):
        status, body = post(d, {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required",
                                "temperature": 1, "seed": seed, "max_tokens": 1500})
        assert status == 200, body
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls", choice
        calls = choice["message"]["tool_calls"]
        assert 1 <= len(calls) <= 8, calls
        check_calls(calls, SCHEMAS)


def test_named_call(d):
    """A named function: exactly one call, of it."""
    for seed in range(3):
        status, body = post(d, {"messages": MESSAGES, "tools": TOOLS, "seed": seed, "temperature": 1,
                                "tool_choice": {"type": "function", "function": {"name": "add"}}})
        assert status == 200, body
        calls = body["choices"][0]["message"]["tool_calls"]
        assert len(calls) == 1 and calls[0]["function"]["name"] == "add", calls
        check_calls(calls, {"add"})


def test_streamed_calls_match_whole(d):
    """The same seed streamed and whole: the deltas add up to the same calls (ids aside), each
    call's first delta has its index, id and name."""
    for seed in range(2):
        body = {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required", "temperature": 1,
                "seed": seed, "max_tokens": 1500}
        status, whole = post(d, body)
        assert status == 200, whole
        status, chunks = post(d, body, stream=True)
        assert status == 200, chunks
        content, calls, finish = assemble(chunks)
        message = whole["choices"][0]["message"]
        assert finish == "tool_calls", finish
        assert [c["function"] for c in calls] == [c["function"] for c in message["tool_calls"]], (calls, message)
        assert content == (message["content"] or ""), (content, message)
        check_calls(calls, SCHEMAS)


def test_auto_is_content_or_valid_calls(d):
    """tool_choice auto (the default): whatever the model writes, calls it begins are valid."""
    made = 0
    for seed in range(6):
        status, body = post(d, {"messages": MESSAGES, "tools": TOOLS, "temperature": 1.5,
                                "seed": seed, "max_tokens": 300})
        assert status == 200, body
        message = body["choices"][0]["message"]
        if body["choices"][0]["finish_reason"] == "tool_calls":
            check_calls(message["tool_calls"], SCHEMAS)
            made += 1
        else:
            assert "tool_calls" not in message, message
    print(f"  auto: {made} of 6 replies made calls")


def test_tool_results_in_conversation(d):
    """A call and its result go back in; the reply after them is served."""
    messages = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny, 18 degrees"}]
    status, body = post(d, {"messages": messages, "tools": TOOLS, "tool_choice": "none",
                            "max_tokens": 20, "temperature": 0})
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and isinstance(message["content"], str), message


def family_test(template, parallel_ok):
    def test(_):
        d = Woollyd(WOOLLYD, f"engine:\n  chat_template: {template}\n  context: 4096\n", http=True, client_timeout=60)
        try:
            for seed in range(3):
                status, body = post(d, {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required",
                                        "temperature": 1, "seed": seed, "max_tokens": 1500})
                assert status == 200, body
                calls = body["choices"][0]["message"]["tool_calls"]
                assert parallel_ok or len(calls) == 1, calls
                check_calls(calls, SCHEMAS)
                status, chunks = post(d, {"messages": MESSAGES, "tools": TOOLS, "tool_choice": "required",
                                          "temperature": 1, "seed": seed, "max_tokens": 1500}, stream=True)
                content, streamed, finish = assemble(chunks)
                assert finish == "tool_calls", (finish, body)
                assert [c["function"] for c in streamed] == [c["function"] for c in calls], (streamed, calls)
                if template == "mistral-nemo":
                    assert all(len(c["id"]) == 9 and c["id"].isalnum() for c in calls), calls
        finally:
            d.stop()
    test.__name__ = f"test_family_{template}"
    return test


def test_openai_sdk_streamed_call(d):
    """The official OpenAI Node SDK (tests/http) streams a required call with its own helper,
    which assembles the deltas and parses the arguments; the call's result goes back in."""
    node_dir = os.path.join(SOURCE, "tests", "http")
    if not os.path.isdir(os.path.join(node_dir, "node_modules")):
        print(f"  skipped: {node_dir}/node_modules not installed (scripts/install-deps)")
        return
    out = subprocess.run(["node", os.path.join(node_dir, "tools.mjs"),
                          f"http://127.0.0.1:{d.http_port}/v1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["finish_reason"] == "tool_calls", got
    calls = got["tool_calls"]
    assert calls and [d["index"] for d in got["arguments_done"]] == list(range(len(calls))), got
    for call, done in zip(calls, got["arguments_done"]):
        assert call["function"]["name"] == done["name"], (call, done)
        assert json.loads(call["function"]["arguments"]) == done["parsed"], (call, done)
    check_calls(calls, SCHEMAS)
    assert isinstance(got["followup"]["content"], str), got
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "woolly-tools-transcript.txt")
    with open(path, "w") as f:
        f.write(out.stdout)
    print(f"  transcript: {path} ({len(calls)} calls)")


def test_family_without_tools_refuses(_):
    d = Woollyd(WOOLLYD, "engine:\n  chat_template: zephyr\n", http=True, client_timeout=60)
    try:
        status, body = post(d, {"messages": MESSAGES, "tools": TOOLS})
        assert status == 400, body
        assert "zephyr" in body["error"]["message"] and "tool" in body["error"]["message"], body
    finally:
        d.stop()


def main():
    d = Woollyd(WOOLLYD, "engine:\n  chat_template: qwen3\n  max_sessions: 4\n  context: 4096\n", http=True,
                client_timeout=60)
    try:
        passed, failed = run_tests([test_required_calls_validate, test_named_call,
                                    test_streamed_calls_match_whole,
                                    test_auto_is_content_or_valid_calls,
                                    test_tool_results_in_conversation,
                                    test_openai_sdk_streamed_call], d)
    finally:
        d.stop()
    p2, f2 = run_tests([family_test("llama3.1", False), family_test("mistral-nemo", True),
                        test_family_without_tools_refuses], None)
    passed, failed = passed + p2, failed + f2
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
