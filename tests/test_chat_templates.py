#!/usr/bin/python3
"""test_chat_templates.py — `woolly template` against Jinja: each family's formatter must print,
byte for byte, what python3-jinja2 renders from the family's real template (as transformers
renders chat templates: trim_blocks and lstrip_blocks, raise_exception, tojson), for several
conversations, with and without the generation prompt; a template that raises must make
`woolly template` fail with the same message. Then `woolly run --chat`, which keeps its KV
cache between turns, must answer each turn as `woolly run --messages` answers the whole
conversation from an empty context.

usage: test_chat_templates.py WOOLLY SOURCE_DIR SHARED_DIR
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile

import jinja2
import jinja2.sandbox

WOOLLY, SOURCE, SHARED = sys.argv[1:4]
VOCAB = os.path.join(SHARED, "vocab")
BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")  # <s> and </s>, no template
TMP = tempfile.mkdtemp(prefix="woolly-chat-")


def gguf_metadata(path):
    """The metadata of a GGUF file: strings, integers, booleans and string arrays (enough of
    the format for the chat template, the special ids and the token texts)."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    pos = 8
    _, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    scalars = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def value(t):
        nonlocal pos
        if t == 8:
            (n,) = struct.unpack_from("<Q", data, pos)
            s = data[pos + 8:pos + 8 + n].decode("utf-8", "replace")
            pos += 8 + n
            return s
        if t == 9:
            at, n = struct.unpack_from("<IQ", data, pos)
            pos += 12
            return [value(at) for _ in range(n)]
        (v,) = struct.unpack_from(scalars[t], data, pos)
        pos += struct.calcsize(scalars[t])
        return v

    meta = {}
    for _ in range(n_kv):
        key = value(8)
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        meta[key] = value(t)
    return meta


def render(template, messages, add_generation_prompt, bos, eos, tools=None, thinking=True):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)  # transformers'
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    extra = {} if tools is None else {"tools": tools}
    if not thinking:
        extra["enable_thinking"] = False  # chat_template_kwargs
    # Hugging Face's convention: a call's arguments reach the template as the object they hold.
    jinja_messages = []
    for m in messages:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [dict(c, function=dict(c["function"],
                                                     arguments=json.loads(c["function"]["arguments"])))
                               for c in m["tool_calls"]]
            if m.get("content") is None:
                m["content"] = ""
        jinja_messages.append(m)
    return env.from_string(template).render(messages=jinja_messages, bos_token=bos, eos_token=eos,
                                            add_generation_prompt=add_generation_prompt, **extra)


def woolly_template(model, messages, add_generation_prompt, name=None, tools=None, thinking=True):
    path = os.path.join(TMP, "messages.json")
    with open(path, "w") as f:
        json.dump(messages, f, ensure_ascii=False)
    cmd = [WOOLLY, "template", "-m", model, "--messages", path]
    if tools is not None:
        tools_path = os.path.join(TMP, "tools.json")
        with open(tools_path, "w") as f:
            json.dump(tools, f, ensure_ascii=False)
        cmd += ["--tools", tools_path]
    if not add_generation_prompt:
        cmd.append("--no-generation-prompt")
    if not thinking:
        cmd.append("--no-thinking")
    if name:
        cmd += ["--chat-template", name]
    return subprocess.run(cmd, capture_output=True, timeout=60)


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city, now",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two numbers, exactly",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                       "required": ["a", "b"], "additionalProperties": False}, "strict": True}},
    {"type": "function", "function": {"name": "now", "description": "The time: \"naïve\" 日本"}},
]


def call(id, name, arguments):
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_CONVERSATIONS = [
    [{"role": "user", "content": "Weather in Paris?"}],
    [{"role": "system", "content": "Use tools when they help."},
     {"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": None, "tool_calls": [call("abc123XYZ", "get_weather", '{"city": "Paris", "unit": "celsius"}')]},
     {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"temp\": 18}"},
     {"role": "assistant", "content": "It is 18 degrees."},
     {"role": "user", "content": "And 2+3?"}],
    [{"role": "user", "content": "Two things at once"},
     {"role": "assistant", "content": "Both:", "tool_calls": [call("call00001", "add", '{"a":2,"b":3.5}'),
                                                              call("call00002", "now", "{}")]},
     {"role": "tool", "tool_call_id": "call00001", "content": "5.5"},
     {"role": "tool", "tool_call_id": "call00002", "content": "noon"}],
    [{"role": "user", "content": "hi"},
     {"role": "assistant", "content": None, "tool_calls": [call("short", "now", "{}")]},
     {"role": "tool", "tool_call_id": "short", "content": "noon"}],
    [{"role": "system", "content": "only a system message"}],
]


CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are a helpful assistant"},
     {"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "Hi there"},
     {"role": "user", "content": "Who are you"}],
    [{"role": "user", "content": "  spaced\n"},
     {"role": "assistant", "content": "   I am an assistant   "},
     {"role": "user", "content": "\u3000naïve 日本 🦙\t\x1f"}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
     {"role": "user", "content": "and 3+3?"},
     {"role": "assistant", "content": "<think>\n\nagain\n\n</think>\n\n\n6"}],
    [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
    [{"role": "assistant", "content": "I start"}],
    [{"role": "system", "content": "only a system message"}],
]


def main():
    cases = []  # (family, model, template text, bos, eos, --chat-template name or None)
    for family, vocab in (("llama3", "llama3"), ("qwen3", "qwen2"), ("phi3", "phi-3"), ("gemma", "gemma")):
        model = os.path.join(VOCAB, f"ggml-vocab-{vocab}.gguf")
        if not os.path.exists(model):
            print(f"skipped {family}: {model} not found (../shared is absent)")
            continue
        meta = gguf_metadata(model)
        texts = meta["tokenizer.ggml.tokens"]
        bos = texts[meta["tokenizer.ggml.bos_token_id"]]
        eos = texts[meta["tokenizer.ggml.eos_token_id"]]
        cases.append((family, model, meta["tokenizer.chat_template"], bos, eos, None))
    for family in ("chatml", "llama2", "mistral-v1", "zephyr", "deepseek", "llama3.1", "mistral-nemo"):
        with open(os.path.join(SOURCE, "tests", "chat_templates", family + ".jinja")) as f:
            cases.append((family, BUNDLED, f.read(), "<s>", "</s>", family))

    failures = compared = raised = with_tools = 0
    tool_families = ("llama3.1", "qwen3", "mistral-nemo")
    for family, model, template, bos, eos, name in cases:
        runs = [(c, None, True) for c in CONVERSATIONS]
        if family in tool_families:
            runs += [(c, TOOLS, True) for c in TOOL_CONVERSATIONS]
            # Tool turns in a conversation given no tools (once: each family renders them alike).
            if family == "qwen3":
                runs += [(c, None, True) for c in TOOL_CONVERSATIONS]
        if family == "qwen3":  # enable_thinking: false, Qwen3's one template variable
            runs += [(c, None, False) for c in CONVERSATIONS]
        for conversation, tools, thinking in runs:
            for add in (True, False):
                try:
                    want = render(template, conversation, add, bos, eos, tools, thinking).encode()
                    error = None
                except jinja2.exceptions.TemplateError as e:
                    want, error = None, str(e)
                got = woolly_template(model, conversation, add, name, tools, thinking)
                with_tools += tools is not None
                label = (f"{family} {json.dumps(conversation)[:60]}... tools {tools is not None} "
                         f"generation prompt {add} thinking {thinking}")
                if error is not None:
                    raised += 1
                    if got.returncode == 0 or error not in got.stderr.decode():
                        failures += 1
                        print(f"FAIL {label}: Jinja raised {error!r}; woolly: rc {got.returncode}, {got.stderr.decode()!r}")
                    continue
                compared += 1
                if got.returncode != 0 or got.stdout != want:
                    failures += 1
                    print(f"FAIL {label}:\n  jinja  {want!r}\n  woolly {got.stdout!r} {got.stderr.decode()!r}")
    print(f"{compared} renderings compared byte for byte ({with_tools} with tools), {raised} raising "
          f"cases, {failures} failures, {len(cases)} templates")
    failures += check_chat_mode()
    return 1 if failures or not cases else 0


def check_chat_mode():
    """Three turns of `woolly run --chat` (greedy) against `woolly run --messages` with the
    conversation so far: the same reply each time."""
    turns = ["Once upon a time", "What happened next?", "The end."]
    common = ["-m", BUNDLED, "--chat-template", "zephyr", "-n", "12", "--temp", "0"]
    chat = subprocess.run([WOOLLY, "run", "--chat", *common], input="\n".join(turns) + "\n",
                          capture_output=True, text=True, timeout=120)
    if chat.returncode != 0:
        print(f"FAIL woolly run --chat: rc {chat.returncode}: {chat.stderr}")
        return 1
    # What a fresh run of the conversation so far answers, turn by turn (replies may hold
    # newlines of their own: each is the whole stdout of its run, less the final newline).
    conversation = []
    expected = ""
    for turn in turns:
        conversation.append({"role": "user", "content": turn})
        path = os.path.join(TMP, "conversation.json")
        with open(path, "w") as f:
            json.dump(conversation, f)
        fresh = subprocess.run([WOOLLY, "run", "--messages", path, *common], capture_output=True,
                               text=True, timeout=120)
        if fresh.returncode != 0:
            print(f"FAIL woolly run --messages: {fresh.stderr}")
            return 1
        expected += fresh.stdout
        conversation.append({"role": "assistant", "content": fresh.stdout[:-1]})
    failures = 0 if chat.stdout == expected else 1
    if failures:
        print(f"FAIL --chat: {chat.stdout!r}\n  fresh runs: {expected!r}")
    print(f"woolly run --chat: {len(turns)} turns, each answered as a fresh run of the conversation: {'a' if failures else 'no'} difference")
    return failures


if __name__ == "__main__":
    sys.exit(main())
