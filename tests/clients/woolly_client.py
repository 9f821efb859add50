#!/usr/bin/python3
"""woolly_client.py — a minimal woolly/1 client in Python (pyzmq), written from protocol/SPEC.md.

    python3 woolly_client.py [--requests E] [--tokens E] "Once upon a time"

As a library: Client(requests, tokens).generate(prompt, **fields) yields the stream's messages
in seq order, filling any gap (late join, dropped messages) with the replay op. With CurveZMQ,
Client(..., server_key="server.pub", client_key="client.key") (files as `woolly keygen` writes).
"""
import argparse
import json
import sys
import time
import uuid

import zmq


class WoollyError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


def read_key(path):
    """The Z85 key of a key file: its one line that is not a '# ' comment."""
    with open(path) as f:
        keys = [l.strip() for l in f if l.strip() and not l.startswith("# ")]
    if len(keys) != 1 or len(keys[0]) != 40:
        raise ValueError(f"{path}: expected one key of 40 Z85 characters")
    return keys[0].encode()


class Client:
    def __init__(self, requests="tcp://127.0.0.1:5555", tokens="tcp://127.0.0.1:5556", timeout=30.0,
                 server_key=None, client_key=None):
        self.ctx = zmq.Context.instance()
        self.requests_endpoint = requests
        self.tokens_endpoint = tokens
        self.timeout_ms = int(timeout * 1000)
        self.curve = None
        if server_key:  # CurveZMQ: the server's public key, this client's secret key
            secret = read_key(client_key)
            self.curve = (read_key(server_key), zmq.curve_public(secret), secret)
        self._connect()

    def _secure(self, socket):
        if self.curve:
            socket.setsockopt(zmq.CURVE_SERVERKEY, self.curve[0])
            socket.setsockopt(zmq.CURVE_PUBLICKEY, self.curve[1])
            socket.setsockopt(zmq.CURVE_SECRETKEY, self.curve[2])

    def _connect(self):
        self.req = self.ctx.socket(zmq.REQ)
        self.req.setsockopt(zmq.LINGER, 0)
        # A REQ socket with no peer (the daemon gone) blocks in send: bound that too.
        self.req.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self._secure(self.req)
        self.req.connect(self.requests_endpoint)

    def call(self, request):
        """Sends one request; returns the reply object (ok or not)."""
        try:
            self.req.send(json.dumps(request).encode())
        except zmq.Again:
            self.req.close()
            self._connect()
            raise TimeoutError(f"could not send to {self.requests_endpoint}")
        if not self.req.poll(self.timeout_ms):
            self.req.close()
            self._connect()
            raise TimeoutError(f"no reply from {self.requests_endpoint}")
        return json.loads(self.req.recv())

    def subscribe(self, stream_id):
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        self._secure(sub)
        sub.connect(self.tokens_endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, f"tok.{stream_id}".encode())
        return sub

    def follow(self, sub, stream_id):
        """Yields the stream's messages in seq order until the final one."""
        expected = 0
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            ready = []
            if sub.poll(200):
                topic, payload = sub.recv_multipart()
                message = json.loads(payload)
                if message.get("id") != stream_id:
                    continue  # topics are prefixes: tok.ab also matches tok.abc
                if message["seq"] > expected:
                    ready = self._replay(stream_id, expected)
                elif message["seq"] == expected:
                    ready = [message]
            else:
                ready = self._replay(stream_id, expected)  # joined late, or quiet
            for message in ready:
                if message["seq"] != expected:
                    continue
                expected += 1
                deadline = time.monotonic() + self.timeout_ms / 1000
                yield message
                if message.get("done"):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {stream_id} stalled at seq {expected}")

    def _replay(self, stream_id, from_seq):
        reply = self.call({"op": "replay", "id": stream_id, "from_seq": from_seq})
        if not reply["ok"]:
            raise WoollyError(reply["error"]["code"], reply["error"]["message"])
        return reply["messages"]

    def generate(self, prompt, stream_id=None, **fields):
        stream_id = stream_id or "py" + uuid.uuid4().hex[:16]
        sub = self.subscribe(stream_id)  # subscribe first, then ask
        try:
            request = {"op": "generate", "id": stream_id, **fields}
            if prompt is not None:  # None: the fields hold "messages" (a conversation) instead
                request["prompt"] = prompt
            reply = self.call(request)
            if not reply["ok"]:
                raise WoollyError(reply["error"]["code"], reply["error"]["message"])
            yield from self.follow(sub, stream_id)
        finally:
            sub.close()


def main():
    parser = argparse.ArgumentParser(description="Stream a generation from woollyd.")
    parser.add_argument("prompt")
    parser.add_argument("--requests", default="tcp://127.0.0.1:5555")
    parser.add_argument("--tokens", default="tcp://127.0.0.1:5556")
    parser.add_argument("-n", "--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()
    client = Client(args.requests, args.tokens)
    try:
        for message in client.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temperature):
            sys.stdout.write(message.get("text", ""))
            sys.stdout.flush()
            if message.get("done"):
                sys.stdout.write("\n")
                return 0 if message["finish_reason"] != "error" else 1
    except (WoollyError, TimeoutError) as e:
        print(f"woolly_client: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
