import json, sys, zmq

requests, tokens, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.connect(tokens)
sub.setsockopt(zmq.SUBSCRIBE, b"tok.readme")       # subscribe first...
req = ctx.socket(zmq.REQ)
req.connect(requests)
req.send_json({"op": "generate", "id": "readme", "prompt": prompt,
               "max_tokens": 48, "temperature": 0})   # ...then ask
reply = req.recv_json()
assert reply["ok"], reply["error"]
expected = 0
while True:
    if not sub.poll(1000):                            # missed the start? fetch it
        req.send_json({"op": "replay", "id": "readme", "from_seq": expected})
        messages = req.recv_json()["messages"]
    else:
        messages = [json.loads(sub.recv_multipart()[1])]
    for m in messages:
        if m["seq"] != expected:                      # a gap: replay fills it next time
            continue
        expected += 1
        print(m.get("text", ""), end="", flush=True)
        if m.get("done"):
            print()
            sys.exit(0)
