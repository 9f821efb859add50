#!/usr/bin/python3
"""test_http.py — woollyd's HTTP API end to end: real daemons (tests/clients/woolly_harness.py)
on free loopback ports, asked with Python's own http.client and raw sockets, curl, and, when
tests/http/node_modules is installed (scripts/install-deps), the OpenAI Node SDK, LangChain and
Chromium driven by puppeteer-core. Greedy replies are checked against `woolly run --messages`
token for token (the HTTP stream is a woolly/1 stream: its tokens come from replay).

usage: test_http.py WOOLLYD WOOLLY SOURCE_DIR
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

WOOLLYD, WOOLLY, SOURCE = sys.argv[1:4]
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_harness import TMP, Woollyd, free_port, run_tests  # noqa: E402

BUNDLED = os.path.join(SOURCE, "models", "stories260K.gguf")
NODE_DIR = os.path.join(SOURCE, "tests", "http")
# The bundled model has no chat template of its own: zephyr's renders its conversations.
CHAT = "engine:\n  chat_template: zephyr\n"
CONVERSATION = [{"role": "system", "content": "You tell short stories."},
                {"role": "user", "content": "Tell me a story about a cat."}]
_SLOW = []


def Daemon(config_text=CHAT, **options):
    options.setdefault("http", True)
    return Woollyd(WOOLLYD, config_text, client_timeout=20, **options)


def woolly(*args, timeout=120):
    """The CLI; `timeout` only guards against a hang (synth writes 600 MB, slowly under ASan)."""
    return subprocess.run([WOOLLY, *args], capture_output=True, text=True, timeout=timeout)


def slow_model():
    """tinyllama's shape with random weights: slow enough to stop mid-stream (made once)."""
    if not _SLOW:
        path = os.path.join(TMP, "tinyllama-q4_0.gguf")
        out = woolly("synth", "--shape", "tinyllama-1.1b", "--type", "q4_0", "-o", path, timeout=600)
        assert out.returncode == 0, out.stderr
        _SLOW.append(path)
    return _SLOW[0]


def request(d, method, path, body=None, headers=None, timeout=30):
    """(status, headers as a dict of lower-case names, body text)."""
    c = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=timeout)
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    c.request(method, path, body=data, headers=headers or {})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, text


def post(d, path, body, **kw):
    status, headers, text = request(d, "POST", path, body, **kw)
    return status, headers, json.loads(text)


def events(d, path, body=None, method="POST", headers=None):
    """An SSE answer: (status, headers, [data of each event]), read to its end."""
    c = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=60)
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
    r = c.getresponse()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    out = []
    if r.status == 200:
        for line in r.read().decode().split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    c.close()
    return r.status, hdrs, out


def replay_tokens(d, stream_id):
    """The stream's woolly/1 messages, from the ZeroMQ side."""
    reply = d.client.call({"op": "replay", "id": stream_id})
    assert reply["ok"], reply
    return reply["messages"]


def run_messages(messages, n, *extra):
    """`woolly run --messages`'s greedy tokens and text for a conversation."""
    path = os.path.join(TMP, f"conv-{os.getpid()}-{time.monotonic_ns()}.json")
    with open(path, "w") as f:
        json.dump(messages, f)
    out = woolly("run", "--messages", path, "--chat-template", "zephyr", "-n", str(n),
                 "--temp", "0", "--json", *extra)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(l) for l in out.stdout.splitlines()]
    tokens = [l["token"] for l in lines if "token" in l]
    return tokens, "".join(l.get("text", "") for l in lines if "token" in l or "text" in l)


def run_prompt(prompt, n):
    out = woolly("run", "-p", prompt, "-n", str(n), "--temp", "0", "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(l) for l in out.stdout.splitlines()]
    return [l["token"] for l in lines if "token" in l], "".join(l.get("text", "") for l in lines)


def raw(d, data, read_for=5.0, shutdown=False):
    """Sends raw bytes on a fresh connection; returns what comes back until it closes."""
    s = socket.create_connection(("127.0.0.1", d.http_port), timeout=read_for)
    s.sendall(data)
    if shutdown:
        s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        got += b"<timeout>"
    s.close()
    return got.decode(errors="replace")


def wait_until(check, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


# ---- the tests -------------------------------------------------------------------------------

def test_chat_matches_woolly_run():
    """A greedy chat completion, streamed or not, is `woolly run --messages`'s, token for token;
    the stream is a woolly/1 stream (X-Woolly-Stream-Id) whose replay gives those tokens."""
    d = Daemon()
    try:
        want_tokens, want_text = run_messages(CONVERSATION, 40)
        status, headers, body = post(d, "/v1/chat/completions",
                                     {"model": "stories260K", "messages": CONVERSATION,
                                      "max_tokens": 40, "temperature": 0})
        assert status == 200, body
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-"), body
        assert body["model"] == "stories260K" and isinstance(body["created"], int), body
        choice = body["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": want_text}, (choice, want_text)
        assert choice["finish_reason"] in ("stop", "length"), choice
        usage = body["usage"]
        assert usage["completion_tokens"] == len(want_tokens), (usage, len(want_tokens))
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], usage
        assert usage["prompt_tokens_details"]["cached_tokens"] == 0, usage
        stream_id = headers["x-woolly-stream-id"]
        assert stream_id == body["id"], (stream_id, body["id"])
        assert [m["token"] for m in replay_tokens(d, stream_id) if "token" in m] == want_tokens

        # The same, streamed: whole characters per chunk, role first, finish, usage, [DONE].
        status, headers, data = events(d, "/v1/chat/completions",
                                       {"messages": CONVERSATION, "max_tokens": 40,
                                        "temperature": 0, "stream": True,
                                        "stream_options": {"include_usage": True}})
        assert status == 200, status
        assert headers["content-type"] == "text/event-stream", headers
        assert headers["cache-control"] == "no-cache", headers
        assert data[-1] == "[DONE]", data[-3:]
        chunks = [json.loads(x) for x in data[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}, chunks[0]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks[0]
        assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"] == headers["x-woolly-stream-id"]
        content = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
        assert "".join(content) == want_text, ("".join(content), want_text)
        assert all(len(x) > 0 for x in content[1:-1]), content  # no empty deltas between
        last = chunks[-2]
        assert last["choices"][0]["finish_reason"] == choice["finish_reason"], last
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(want_tokens)
        # The prefix cache held the first request's prompt: cached_tokens says how much.
        assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, chunks[-1]
        sid = headers["x-woolly-stream-id"]
        assert [m["token"] for m in replay_tokens(d, sid) if "token" in m] == want_tokens

        # Without include_usage there is no usage chunk; content as an array of text parts.
        parts = [dict(m, content=[{"type": "text", "text": m["content"][:5]},
                                  {"type": "text", "text": m["content"][5:]}]) for m in CONVERSATION]
        status, _, data = events(d, "/v1/chat/completions",
                                 {"messages": parts, "max_tokens": 40, "temperature": 0,
                                  "stream": True})
        chunks = [json.loads(x) for x in data[:-1]]
        assert all(c["choices"] for c in chunks) and "usage" not in chunks[-1], chunks[-1]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == want_text
    finally:
        d.stop()


def test_logprobs_match_llama_cpp():
    """Log-probabilities are the softmax of llama.cpp's logits (../shared/golden), through
    woolly/1 and, as OpenAI's logprobs, through /v1/chat/completions."""
    import math
    import struct
    path = os.path.join(SOURCE, "..", "shared", "golden", "stories260K.logits")
    if not os.path.exists(path):
        print(f"skipped the logprobs oracle: {path} not found (../shared is absent)")
        return
    n_vocab = 512
    raw = open(path, "rb").read()
    rows = [struct.unpack_from(f"<{n_vocab}f", raw, 4 * n_vocab * i) for i in range(len(raw) // (4 * n_vocab))]
    # The golden sequence: BOS, "Once upon a time" (rows 0-4), then its greedy continuation.
    def log_softmax(row):
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        return [x - lse for x in row]
    # test_golden holds the logits to llama.cpp's within 1e-3 (with an f32 KV cache, as the
    # golden files were made); a log-probability is a logit less the log-sum-exp of all of
    # them, so within twice that.
    tol = 2e-3
    d = Daemon(CHAT + "  kv_cache_type: f32\n")
    try:
        n = len(rows) - 5
        msgs = [m for m in d.client.generate("Once upon a time", max_tokens=n, temperature=0,
                                             logprobs=5) if "token" in m]
        assert len(msgs) == n, len(msgs)
        for k, m in enumerate(msgs):
            want = log_softmax(rows[4 + k])
            assert abs(m["logprob"] - want[m["token"]]) < tol, (k, m["logprob"], want[m["token"]])
            top = sorted(range(n_vocab), key=lambda t: -want[t])[:5]
            assert [t["token"] for t in m["top_logprobs"]] == top, (k, m["top_logprobs"], top)
            for t in m["top_logprobs"]:
                assert abs(t["logprob"] - want[t["token"]]) < tol, (k, t, want[t["token"]])
        # The chat API: OpenAI's shape, the same figures as the stream's woolly/1 messages.
        for stream in (False, True):
            body = {"messages": CONVERSATION, "max_tokens": 8, "temperature": 0, "logprobs": True,
                    "top_logprobs": 2, "stream": stream}
            if stream:
                status, headers, data = events(d, "/v1/chat/completions", body)
                entries = [e for x in data[:-1] for c in [json.loads(x)] if c["choices"]
                           and c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
            else:
                status, headers, got = post(d, "/v1/chat/completions", body)
                entries = got["choices"][0]["logprobs"]["content"]
            woolly1 = [m for m in replay_tokens(d, headers["x-woolly-stream-id"]) if "token" in m]
            assert len(entries) == len(woolly1) == 8, (len(entries), len(woolly1))
            for e, m in zip(entries, woolly1):
                assert e["logprob"] == m["logprob"] and e["bytes"] == m["bytes"], (e, m)
                assert e["token"] == bytes(m["bytes"]).decode(errors="replace"), e
                assert [t["logprob"] for t in e["top_logprobs"]] == [t["logprob"] for t in m["top_logprobs"]]
                assert len(e["top_logprobs"]) == 2
    finally:
        d.stop()


def test_completions_and_stop():
    """/v1/completions: the prompt's greedy text as `woolly run -p` gives it; stop strings (a
    string or an array) end before them with finish_reason stop."""
    d = Daemon()
    try:
        tokens, text = run_prompt("Once upon a time", 24)
        status, headers, body = post(d, "/v1/completions",
                                     {"prompt": "Once upon a time", "max_tokens": 24,
                                      "temperature": 0})
        assert status == 200 and body["object"] == "text_completion", body
        assert body["id"].startswith("cmpl-") and body["choices"][0]["text"] == text, (body, text)
        assert body["choices"][0]["finish_reason"] == "length", body
        assert [m["token"] for m in replay_tokens(d, headers["x-woolly-stream-id"])
                if "token" in m] == tokens
        status, _, data = events(d, "/v1/completions",
                                 {"prompt": "Once upon a time", "max_tokens": 24,
                                  "temperature": 0, "stream": True})
        chunks = [json.loads(x) for x in data[:-1]]
        assert "".join(c["choices"][0]["text"] for c in chunks) == text, chunks
        assert chunks[-1]["choices"][0]["finish_reason"] == "length" and data[-1] == "[DONE]"
        for stop in ("little", ["zzz", "little"]):
            status, _, body = post(d, "/v1/completions",
                                   {"prompt": "Once upon a time", "max_tokens": 24,
                                    "temperature": 0, "stop": stop})
            assert status == 200, body
            assert body["choices"][0]["text"] == text[:text.index("little")], (body, text)
            assert body["choices"][0]["finish_reason"] == "stop", body
        # Sampling: the same seed gives the same text; the penalties are taken.
        ask = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 1.0, "seed": 7,
               "top_k": 20, "min_p": 0.01, "repeat_penalty": 1.1, "presence_penalty": 0.5,
               "frequency_penalty": 0.5, "top_p": 0.9, "user": "test"}
        a = post(d, "/v1/completions", ask)[2]["choices"][0]["text"]
        b = post(d, "/v1/completions", ask)[2]["choices"][0]["text"]
        assert a == b, (a, b)
    finally:
        d.stop()


def test_refusals_name_the_field():
    """Unsupported and bad fields get OpenAI's error object with a 400 naming them; wrong
    paths, methods and models their statuses."""
    d = Daemon()
    try:
        chat = {"messages": [{"role": "user", "content": "hi"}]}
        cases = [
            ("/v1/chat/completions", dict(chat, n=2), 400, "n"),
            ("/v1/chat/completions", dict(chat, tools=[{"type": "function"}]), 400,
             "tools[0].function"),
            ("/v1/chat/completions", dict(chat, functions=[{"name": "f"}]), 400, "functions"),
            ("/v1/chat/completions", dict(chat, response_format={"type": "xml"}), 400,
             "response_format"),
            ("/v1/chat/completions", dict(chat, top_logprobs=2), 400, "top_logprobs"),
            ("/v1/chat/completions", dict(chat, logprobs=True, top_logprobs=21), 400, "top_logprobs"),
            ("/v1/completions", {"prompt": "x", "logprobs": 2}, 400, "logprobs"),
            ("/v1/chat/completions", dict(chat, logit_bias={"1": 5}), 400, "logit_bias"),
            ("/v1/chat/completions", dict(chat, frobnicate=1), 400, "frobnicate"),
            ("/v1/chat/completions", dict(chat, temperature="hot"), 400, "temperature"),
            ("/v1/chat/completions", dict(chat, temperature=200), 400, "temperature"),
            ("/v1/chat/completions", dict(chat, top_p=0), 400, "top_p"),
            ("/v1/chat/completions", dict(chat, max_tokens=1 << 40), 400, "max_tokens"),
            ("/v1/chat/completions", dict(chat, seed=-1), 400, "seed"),
            ("/v1/chat/completions", dict(chat, stop=[""]), 400, "stop"),
            ("/v1/chat/completions", dict(chat, stream_options={"include_usage": True}), 400,
             "stream_options"),
            ("/v1/chat/completions", {"messages": []}, 400, "messages"),
            ("/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]}, 400,
             "messages[0].tool_call_id"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
             "messages[0].content[0].type"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x", "name": "a"}]},
             400, "messages[0].name"),
            ("/v1/chat/completions", {"prompt": "x"}, 400, "prompt"),
            ("/v1/completions", {"prompt": "x", "echo": True}, 400, "echo"),
            ("/v1/completions", {"prompt": "x", "suffix": "y"}, 400, "suffix"),
            ("/v1/completions", {"prompt": "x", "best_of": 2}, 400, "best_of"),
            ("/v1/completions", {"prompt": ["x", "y"]}, 400, "prompt"),
            ("/v1/chat/completions", dict(chat, model="gpt-4o"), 404, "model"),
        ]
        for path, body, want, param in cases:
            status, _, got = post(d, path, body)
            assert status == want, (body, status, got)
            e = got["error"]
            assert e["param"] == param and e["message"] and e["type"], (body, got)
        status, _, got = post(d, "/v1/chat/completions", '{"messages": [')
        assert status == 400 and "not valid JSON" in got["error"]["message"], got
        status, _, got = post(d, "/v1/chat/completions", '{"n": 1, "n": 2}')
        assert status == 400 and "more than once" in got["error"]["message"], got
        status, headers, text = request(d, "GET", "/v1/chat/completions")
        assert status == 405 and headers["allow"] == "POST", (status, headers)
        assert request(d, "GET", "/v1/nothing")[0] == 404
        status, _, text = request(d, "GET", "/v1/models/stories260K")
        assert status == 200 and json.loads(text)["id"] == "stories260K", text
        assert request(d, "GET", "/v1/models/other")[0] == 404
        # Bad requests cost nothing: the daemon serves on.
        assert post(d, "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200
    finally:
        d.stop()


def test_malformed_and_slow_clients():
    """Malformed request lines, headers and chunked bodies, oversized bodies and headers, a
    silent client and one that never ends its body: each gets a clear status or a closed
    connection, and the daemon serves on with nothing held."""
    d = Daemon(CHAT, http="  max_body_bytes: 1024\n  max_header_bytes: 2048\n"
                          "  read_timeout_seconds: 1\n  idle_timeout_seconds: 1\n")
    try:
        got = raw(d, b"BLAH\r\n\r\n")
        assert got.startswith("HTTP/1.1 400"), got
        got = raw(d, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        assert got.startswith("HTTP/1.1 400"), got
        got = raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\nhello\r\n0\r\n\r\n")
        assert got.startswith("HTTP/1.1 400"), got
        got = raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" +
                  b"x" * 5000)
        assert got.startswith("HTTP/1.1 413"), got
        got = raw(d, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 4096 + b"\r\n\r\n")
        assert got.startswith("HTTP/1.1 431"), got
        # Half a request, then silence: closed at the read timeout.
        t = time.monotonic()
        got = raw(d, b"GET /health HTTP/1.1\r\nHost: x\r\n", read_for=10)
        assert got == "" and time.monotonic() - t < 5, got
        # A body that never ends (Content-Length larger than what comes).
        got = raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
                  read_for=10)
        assert got == "", got
        # A connection that says nothing is closed after the idle timeout.
        got = raw(d, b"", read_for=10)
        assert got == "", got
        # Keep-alive: two requests on one connection, then idle close.
        got = raw(d, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                  read_for=10)
        assert got.count("HTTP/1.1 200") == 2, got
        # Truncated: the client closes its side mid-request.
        got = raw(d, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
                  shutdown=True)
        assert "<timeout>" not in got, got
        assert post(d, "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200
        status = d.status()
        assert status["sessions"] == {"running": 0, "queued": 0}, status
        assert d.alive()
    finally:
        d.stop()


def test_connections_at_most():
    """Past http.max_connections a new connection gets 503 and is closed; the held ones serve."""
    d = Daemon(CHAT, http="  max_connections: 2\n")
    try:
        held = [socket.create_connection(("127.0.0.1", d.http_port)) for _ in range(2)]
        time.sleep(0.2)
        got = raw(d, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got.startswith("HTTP/1.1 503") and "max_connections" in got, got
        held[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held[0].recv(1000).startswith(b"HTTP/1.1 200")
        for s in held:
            s.close()
        wait_until(lambda: request(d, "GET", "/health")[0] == 200, "a connection after they closed")
    finally:
        d.stop()


def test_api_keys_and_reload():
    """With http.api_keys_file: no key or a wrong one is 401, a listed one serves, /health is
    open; a reload rereads the keys and rebinds a new address."""
    keys = os.path.join(TMP, "api_keys")
    with open(keys, "w") as f:
        f.write("# keys\nsecret-one\n\nsecret-two\n")
    extra = f"  api_keys_file: {keys}\n"
    d = Daemon(CHAT, http=extra)
    try:
        body = {"prompt": "x", "max_tokens": 2}
        status, headers, got = post(d, "/v1/completions", body)
        assert status == 401 and got["error"]["code"] == "invalid_api_key", got
        assert headers["www-authenticate"] == "Bearer", headers
        assert post(d, "/v1/completions", body, headers={"Authorization": "Bearer nope"})[0] == 401
        assert post(d, "/v1/completions", body, headers={"Authorization": "secret-one"})[0] == 401
        for key in ("secret-one", "secret-two"):
            assert post(d, "/v1/completions", body, headers={"Authorization": "Bearer " + key})[0] == 200
        assert request(d, "GET", "/metrics")[0] == 401
        assert request(d, "GET", "/health")[0] == 200
        # Reload: secret-one goes, and the API moves to another port.
        with open(keys, "w") as f:
            f.write("secret-two\n")
        old = d.http_port
        d.http_port = free_port()
        d.write(CHAT)
        start = len(d.notes.messages)
        d.signal(signal.SIGHUP)
        d.notes.wait_for(lambda m: m.get("READY") == "1", start, "READY=1 after the reload")
        assert post(d, "/v1/completions", body, headers={"Authorization": "Bearer secret-one"})[0] == 401
        assert post(d, "/v1/completions", body, headers={"Authorization": "Bearer secret-two"})[0] == 200
        try:
            socket.create_connection(("127.0.0.1", old), timeout=2).close()
            raise AssertionError(f"the old port {old} still takes connections")
        except ConnectionRefusedError:
            pass
        # A reload to a keys file that is gone changes nothing.
        os.unlink(keys)
        start = len(d.notes.messages)
        d.signal(signal.SIGHUP)
        d.notes.wait_for(lambda m: "reload refused" in m.get("STATUS", ""), start, "the refusal")
        assert post(d, "/v1/completions", body, headers={"Authorization": "Bearer secret-two"})[0] == 200
    finally:
        d.stop()


def test_listen_refusals():
    """Beyond loopback without API keys, a bad address and a busy port: refused at start-up."""
    out = subprocess.run([WOOLLYD, "--requests", f"ipc://{TMP}/lr-req", "--tokens",
                          f"ipc://{TMP}/lr-tok", "--http", "0.0.0.0:18099"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "http.listen" in out.stderr and "API keys" in out.stderr, out.stderr
    out = subprocess.run([WOOLLYD, "--http", "localhost"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "HOST:PORT" in out.stderr, out.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    t = time.monotonic()
    out = subprocess.run([WOOLLYD, "--requests", f"ipc://{TMP}/lb-req", "--tokens",
                          f"ipc://{TMP}/lb-tok", "--http", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30)
    busy.close()
    assert out.returncode == 1 and f"127.0.0.1:{port}" in out.stderr, out.stderr
    assert "in use" in out.stderr, out.stderr
    assert time.monotonic() - t < 10


def test_tokenize_and_metrics():
    """/tokenize and /detokenize as `woolly tokenize` splits; /metrics parses with Prometheus'
    own parser and counts what was served, by ingress and finish reason."""
    from prometheus_client.parser import text_string_to_metric_families
    d = Daemon()
    try:
        status, _, got = post(d, "/tokenize", {"content": "Once upon a time"})
        out = woolly("tokenize", "-p", "Once upon a time")
        assert out.returncode == 0, out.stderr
        assert got["tokens"] == [int(x) for x in out.stdout.split()], (got, out.stdout)
        status, _, with_bos = post(d, "/tokenize", {"content": "Once upon a time",
                                                    "add_special": True, "with_pieces": True})
        assert with_bos["tokens"][0]["id"] == 1 and with_bos["tokens"][1]["piece"] == " Once", with_bos
        status, _, back = post(d, "/detokenize", {"tokens": got["tokens"]})
        assert back == {"content": " Once upon a time"}, back
        assert post(d, "/detokenize", {"tokens": [100000]})[0] == 400
        assert post(d, "/tokenize", {"text": "x"})[0] == 400
        # Traffic: 3 HTTP completions (2 length, 1 stop), 1 ZeroMQ one, 1 refused.
        for stop in (None, None, "little"):
            body = {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0}
            if stop:
                body["stop"] = stop
            assert post(d, "/v1/completions", body)[0] == 200
        assert post(d, "/v1/completions", {"prompt": "x", "n": 3})[0] == 400
        msgs = list(d.client.generate("Once upon a time", max_tokens=5, temperature=0))
        assert msgs[-1]["usage"]["cached_tokens"] > 0, msgs[-1]  # woolly/1 reports it too
        assert msgs[-1]["finish_reason"] == "length"
        status, headers, text = request(d, "GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4"), headers
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        def get(name, **labels):
            return samples[(name, tuple(sorted(labels.items())))]
        assert get("woolly_requests_total", source="http", finish_reason="length") == 2
        assert get("woolly_requests_total", source="http", finish_reason="stop") == 1
        assert get("woolly_requests_total", source="zmq", finish_reason="length") == 1
        assert get("woolly_requests_admitted_total", source="http") == 3
        assert get("woolly_generated_tokens_total") == d.status()["tokens_generated"]
        assert get("woolly_time_to_first_token_seconds_count") == 4
        assert get("woolly_inter_token_seconds_count") == get("woolly_generated_tokens_total") - 4
        assert get("woolly_http_error_responses_total") >= 3
        assert get("woolly_streams_running") == 0 and get("woolly_streams_queued") == 0
        assert get("woolly_prefix_cache_hits_total") >= 1
        assert get("woolly_memory_bytes", part="kv") > 0
        assert get("woolly_config_generation") == 1
        assert get("woolly_model_loaded") == 1
    finally:
        d.stop()


def test_zeromq_and_http_follow_each_other():
    """GET /v1/streams/ID follows a ZeroMQ-started stream from its first token; a finished one
    is replayed whole; an unknown id is 404."""
    d = Daemon()
    try:
        msgs = list(d.client.generate("Once upon a time", "z1", max_tokens=20, temperature=0))
        text = "".join(m.get("text", "") for m in msgs)
        status, headers, data = events(d, "/v1/streams/z1", method="GET")
        assert status == 200 and headers["x-woolly-stream-id"] == "z1", (status, headers)
        chunks = [json.loads(x) for x in data[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text
        assert chunks[-1]["choices"][0]["finish_reason"] == "length" and data[-1] == "[DONE]"
        assert request(d, "GET", "/v1/streams/nosuch")[0] == 404
        assert request(d, "GET", "/v1/streams/bad$id")[0] == 400
    finally:
        d.stop()


def test_slow_model():
    """On a model slow enough to watch: /health is 503 while it loads and 200 once READY=1;
    a client that disconnects mid-stream cancels its stream (its slot free, counted as
    cancelled); a ZeroMQ subscriber and /v1/streams/ID follow an HTTP stream live; 429 with
    Retry-After when the queue is full; curl -N streams; a follower of a queued stream."""
    model = slow_model()
    d = Daemon("engine:\n  context: 256\n  max_sessions: 1\n  chat_template: zephyr\n"
               "limits:\n  queue_depth: 2\n", model=model, ready=False)
    try:
        seen = []
        while not d.notes.messages or not any(m.get("READY") == "1" for m in d.notes.messages):
            try:
                status, _, text = request(d, "GET", "/health", timeout=5)
                seen.append((status, json.loads(text)))
            except (ConnectionRefusedError, OSError):
                pass
            time.sleep(0.01)
        loading = [b for s, b in seen if s == 503]
        assert loading and loading[0]["status"] == "loading" and "progress" in loading[0], seen[:3]
        assert loading[0]["error"]["code"] == "loading", loading[0]
        assert request(d, "GET", "/health")[0] == 200

        # A client that goes away mid-stream.
        c = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=60)
        c.request("POST", "/v1/completions", json.dumps(
            {"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": True}))
        r = c.getresponse()
        sid = r.getheader("X-Woolly-Stream-Id")
        got = b""
        while got.count(b"data: ") < 3:
            got += r.read1(4096)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        wait_until(lambda: d.status()["sessions"]["running"] == 0, "the slot freed")
        final = replay_tokens(d, sid)[-1]
        assert final["done"] and final["finish_reason"] == "cancelled", final
        assert f"the client of {sid} went away" in d.log_text()
        metrics = request(d, "GET", "/metrics")[2]
        assert 'woolly_requests_total{source="http",finish_reason="cancelled"} 1' in metrics

        # An HTTP stream followed by a ZeroMQ subscriber and by /v1/streams/ID, live.
        body = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, "stream": True}
        result = {}

        def own():
            result["own"] = events(d, "/v1/completions", body)
        before = len(admitted_ids(d))
        t = threading.Thread(target=own)
        t.start()
        sid = wait_until(lambda: (admitted_ids(d) + [None])[before], "the HTTP stream admitted")
        follower = events(d, f"/v1/streams/{sid}", method="GET")
        t.join()
        own_text = "".join(json.loads(x)["choices"][0]["text"] for x in result["own"][2][:-1])
        follow_text = "".join(json.loads(x)["choices"][0]["delta"].get("content", "")
                              for x in follower[2][:-1])
        zmq_text = "".join(m.get("text", "") for m in replay_tokens(d, sid))
        assert own_text == follow_text == zmq_text and own_text, (own_text, follow_text, zmq_text)

        # The queue full: one running, two queued (queue_depth 2 counts all admitted) -> 429.
        long = {"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0}
        first = d.client.call({"op": "generate", "id": "q1", **long})
        second = d.client.call({"op": "generate", "id": "q2", **long})
        assert first["ok"] and second["ok"], (first, second)
        status, headers, got = post(d, "/v1/completions", long)
        assert status == 429 and headers["retry-after"] == "1", (status, headers, got)
        assert got["error"]["code"] == "busy", got
        # A follower of the queued one waits for it.
        follow = {}
        t = threading.Thread(target=lambda: follow.update(r=events(d, "/v1/streams/q2", method="GET")))
        t.start()
        time.sleep(0.5)
        d.client.call({"op": "cancel", "id": "q1"})
        time.sleep(1)
        d.client.call({"op": "cancel", "id": "q2"})
        t.join(60)
        assert follow["r"][0] == 200 and follow["r"][2][-1] == "[DONE]", follow
        last = json.loads(follow["r"][2][-2])
        assert last["choices"][0]["finish_reason"] == "cancelled", last

        # curl -N: the events as they come.
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-sN", f"http://127.0.0.1:{d.http_port}/v1/completions",
                                  "-d", json.dumps(dict(body, max_tokens=6))],
                                 capture_output=True, text=True, timeout=120)
            lines = [l for l in out.stdout.split("\n") if l.startswith("data: ")]
            assert lines[-1] == "data: [DONE]" and len(lines) >= 3, out.stdout

        # Stopping (SIGTERM) with a stream running: /health is 503 shutting_down, a new
        # completion 503, while the running one finishes.
        assert d.client.call({"op": "generate", "id": "last", **long})["ok"]
        wait_until(lambda: d.status()["sessions"]["running"] == 1, "the last stream running")
        d.signal(signal.SIGTERM)
        status, _, text = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
            request(d, "GET", "/health")), "/health 503 while stopping")
        assert json.loads(text)["status"] == "shutting_down", text
        status, _, got = post(d, "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert status == 503 and got["error"]["code"] == "shutting_down", (status, got)
    finally:
        d.stop()


def admitted_ids(d):
    """The HTTP completions admitted so far, in order, as the log says."""
    return re.findall(r"admitted (cmpl-[A-Za-z0-9]+)", d.log_text())


def test_tls():
    """http.tls_cert_file and http.tls_key_file: HTTPS on the same API."""
    if not shutil.which("openssl"):
        print("skipped TLS: no openssl command")
        return
    cert, key = os.path.join(TMP, "cert.pem"), os.path.join(TMP, "key.pem")
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                          "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    d = Daemon(CHAT, http=f"  tls_cert_file: {cert}\n  tls_key_file: {key}\n")
    try:
        context = ssl.create_default_context(cafile=cert)
        context.check_hostname = False
        c = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=context, timeout=30)
        c.request("POST", "/v1/completions",
                  json.dumps({"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0}))
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["choices"][0]["text"] == run_prompt("Once upon a time", 12)[1]
        c.close()
        # Plain HTTP on the TLS port gets nothing served.
        got = raw(d, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert "200 OK" not in got, got
    finally:
        d.stop()
    bad = Daemon(CHAT, http=f"  tls_cert_file: {TMP}/none.pem\n  tls_key_file: {key}\n", ready=False)
    code, log = bad.wait()
    assert code == 1 and "http.tls_cert_file" in log, log


def test_node_clients():
    """The OpenAI Node SDK and LangChain (npm, tests/http) against the daemon; greedy text as
    `woolly run --messages` gives it."""
    script = os.path.join(NODE_DIR, "clients.mjs")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules")):
        print(f"skipped the Node clients: {NODE_DIR}/node_modules not installed (scripts/install-deps)")
        return
    d = Daemon()
    try:
        conversation = [{"role": "user", "content": "Tell me a story about a cat."}]
        _, chat_text = run_messages(conversation, 30)
        _, prompt_text = run_prompt("Once upon a time", 30)
        out = subprocess.run(["node", script, f"http://127.0.0.1:{d.http_port}/v1"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["chat"] == chat_text, (got["chat"], chat_text)
        assert got["chat_stream"] == chat_text, (got["chat_stream"], chat_text)
        assert got["stream_usage"]["completion_tokens"] == got["chat_usage"]["completion_tokens"]
        assert got["completion"] == prompt_text, (got["completion"], prompt_text)
        assert got["langchain"] == chat_text, (got["langchain"], chat_text)
        assert got["langchain_chunks"] > 3, got
        assert got["refused"]["status"] == 400 and got["refused"]["param"] == "n", got
        with open(os.path.join(TMP, "node-transcript.json"), "w") as f:
            json.dump(got, f, indent=1)
        print("node transcript:", os.path.join(TMP, "node-transcript.json"))
    finally:
        d.stop()


def test_browser():
    """The chat page in headless Chromium: a message typed gets its reply in several DOM
    updates; Stop cancels the stream; a screenshot is kept."""
    script = os.path.join(NODE_DIR, "browser.mjs")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules")) or not os.path.exists("/usr/bin/chromium"):
        print("skipped the browser test: tests/http/node_modules or /usr/bin/chromium missing")
        return
    d = Daemon("engine:\n  context: 256\n  chat_template: zephyr\n", model=slow_model())
    try:
        shot = os.path.join(os.environ.get("WOOLLY_SCREENSHOT_DIR", TMP), "chat-page.png")
        out = subprocess.run(["node", script, f"http://127.0.0.1:{d.http_port}/", shot],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["updates"] >= 3, got
        assert got["model"] == "tinyllama-q4_0", got
        sid = got["stopped_stream"]
        wait_until(lambda: d.status()["sessions"]["running"] == 0, "the stopped stream's slot")
        final = replay_tokens(d, sid)[-1]
        assert final["finish_reason"] == "cancelled", final
        assert os.path.getsize(shot) > 1000
        print("screenshot:", shot)
    finally:
        d.stop()


if __name__ == "__main__":
    passed, failed = run_tests([test_chat_matches_woolly_run, test_logprobs_match_llama_cpp,
                                test_completions_and_stop,
                        test_refusals_name_the_field, test_malformed_and_slow_clients,
                        test_connections_at_most, test_api_keys_and_reload, test_listen_refusals,
                        test_tokenize_and_metrics, test_zeromq_and_http_follow_each_other,
                        test_tls, test_slow_model, test_node_clients, test_browser])
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
