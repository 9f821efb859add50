#!/usr/bin/python3
"""test_structured.py — constrained generation end to end on woollyd (woolly/1 and HTTP): every
output for a corpus of JSON Schemas (tests/schemas, and adversarial ones made here) is checked by
python3-jsonschema, an independent validator; eight streams with different schemas run in the
same steps; greedy output is unchanged where the grammar allows it; bad grammars and schemas are
refused with where and why.

usage: test_structured.py WOOLLYD WOOLLY SOURCE_DIR
       test_structured.py --write-corpus DIR   (the schemas as files, for woolly bench)
"""
import datetime
import glob
import http.client
import json
import os
import re
import sys
import threading

import jsonschema

if len(sys.argv) == 3 and sys.argv[1] == "--write-corpus":
    WOOLLYD = WOOLLY = None
    SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
else:
    WOOLLYD, WOOLLY, SOURCE = sys.argv[1:4]
sys.path.insert(0, os.path.join(SOURCE, "tests", "clients"))
from woolly_client import WoollyError  # noqa: E402
from woolly_harness import Woollyd, run_tests  # noqa: E402

PROMPT = "Once upon a time, a little girl named Lily"
# Two compute threads, so that a step's grammar masks are made on both (Batcher::finish).
CONFIG = "threads: 2\nengine:\n  max_sessions: 8\n"


def corpus():
    """(name, schema): the files in tests/schemas, then adversarial and varied ones."""
    out = []
    for path in sorted(glob.glob(os.path.join(SOURCE, "tests", "schemas", "*.json"))):
        with open(path, encoding="utf-8") as f:
            out.append((os.path.basename(path), json.load(f)))
    # Deep nesting: an object in an object, 12 deep.
    deep = {"type": "integer", "minimum": 0, "maximum": 9}
    for i in range(12):
        deep = {"type": "object", "properties": {f"k{i}": deep}, "required": [f"k{i}"]}
    out.append(("deep-nesting", deep))
    # Deep arrays.
    arr = {"type": "boolean"}
    for depth in range(8):
        arr = {"type": "array", "items": arr, "minItems": 1, "maxItems": 2 if depth % 3 == 0 else 1}
    out.append(("deep-arrays", arr))
    # A huge enum, and enums of mixed values.
    out.append(("huge-enum", {"enum": [f"value-{i:04d}" for i in range(2000)]}))
    out.append(("mixed-enum", {"enum": [None, 1, 2.5, "x", True, {"a": [1]}, [1, 2]]}))
    # Many optional properties, in order.
    out.append(("many-optional", {"type": "object", "properties": {
        f"p{i}": {"type": "integer", "minimum": 0, "maximum": 3} for i in range(40)}}))
    # Integer ranges across digit counts and signs.
    for lo, hi in [(0, 0), (-1, 1), (7, 7), (10, 99), (-1000, -999), (5, 123456), (-50, 50),
                   (99, 101), (0, 1000000), (-987654, 12)]:
        out.append((f"int-{lo}-{hi}", {"type": "integer", "minimum": lo, "maximum": hi}))
    out.append(("int-exclusive", {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 9}))
    # Strings of bounded lengths, and patterns.
    for lo, hi in [(0, 0), (1, 1), (3, 5), (10, 12), (0, 40)]:
        out.append((f"string-{lo}-{hi}", {"type": "string", "minLength": lo, "maxLength": hi}))
    for pattern in [r"^[A-Z]{3}-\d{4}$", r"^(yes|no|maybe)$", r"^[a-f0-9]{8}$", r"^\w+@\w+\.org$",
                    r"ab+c", r"^[^aeiou]{2,6}$", r"^\d{1,3}(\.\d{1,3}){3}$", r"^(?:x|y)*z$",
                    r'^[\\"]{1,4}$', r"^.{2,5}$"]:
        out.append((f"pattern {pattern}", {"type": "string", "pattern": pattern}))
    for fmt in ["date", "time", "date-time", "uuid"]:
        out.append((f"format-{fmt}", {"type": "string", "format": fmt}))
    # Scalars and unions.
    for t in ["number", "integer", "boolean", "null", "string", ["string", "integer"],
              ["null", "boolean", "number"]]:
        out.append((f"type-{t}", {"type": t}))
    out.append(("any", {}))
    out.append(("true", True))
    out.append(("const-object", {"const": {"a": 1, "b": [True, None], "c": "d"}}))
    # Arrays: bounded, tuples, of objects.
    for lo, hi in [(0, 0), (1, 1), (2, 4), (0, 6)]:
        out.append((f"array-{lo}-{hi}", {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                                     "maximum": 99},
                                         "minItems": lo, "maxItems": hi}))
    out.append(("array-of-objects", {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {"id": {"type": "integer"}, "tag": {"enum": ["a", "b"]}},
        "required": ["id", "tag"]}}))
    out.append(("tuple-open", {"type": "array", "prefixItems": [{"type": "string", "maxLength": 3},
                                                                {"type": "integer"}],
                               "items": {"type": "integer", "minimum": 0, "maximum": 9}}))
    # Objects: empty, additional properties of a type, required without properties.
    out.append(("empty-object", {"type": "object", "additionalProperties": False}))
    out.append(("extra-typed", {"type": "object", "properties": {"a": {"type": "integer"}},
                                "additionalProperties": {"type": "integer", "minimum": 0,
                                                         "maximum": 9}}))
    out.append(("required-only", {"type": "object", "required": ["x", "y"]}))
    out.append(("anyof-objects", {"anyOf": [
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}}, "required": ["a"]},
        {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}]}))
    out.append(("allof-ranges", {"allOf": [{"type": "integer", "minimum": 5},
                                           {"type": "integer", "maximum": 8}]}))
    out.append(("ref-chain", {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/c"},
                                        "c": {"type": "string", "maxLength": 4}},
                              "type": "object", "properties": {"v": {"$ref": "#/$defs/a"}},
                              "required": ["v"]}))
    out.append(("linked-list", {"$defs": {"n": {"type": "object", "properties": {
        "v": {"type": "integer", "minimum": 0, "maximum": 9},
        "next": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/n"}]}},
        "required": ["v", "next"], "additionalProperties": False}}, "$ref": "#/$defs/n"}))
    # A family of records with varied field types, so that the corpus passes a hundred.
    kinds = [{"type": "string", "maxLength": 8}, {"type": "integer", "minimum": -9, "maximum": 99},
             {"type": "number"}, {"type": "boolean"}, {"enum": ["red", "green", "blue"]},
             {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
             {"type": ["string", "null"], "maxLength": 3}, {"type": "string", "format": "date"}]
    n = 0
    while len(out) < 120:
        props = {f"f{j}": kinds[(n * 3 + j * 5) % len(kinds)] for j in range(1 + n % 6)}
        required = [k for j, k in enumerate(props) if (n + j) % 2 == 0]
        out.append((f"record-{n}", {"type": "object", "properties": props, "required": required}))
        n += 1
    return out


# RFC 3339's full-time and date-time (section 5.6), which python3-jsonschema checks only with a
# library Debian does not package: checked here from the RFC's grammar.
FULL_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"


def rfc3339_errors(schema, value, path="$"):
    """Format errors for time and date-time anywhere in `value` that `schema` names directly."""
    out = []
    if isinstance(schema, dict) and isinstance(value, str):
        fmt = schema.get("format")
        if fmt == "time" and not re.fullmatch(FULL_TIME, value):
            out.append(f"{path}: {value!r} is not an RFC 3339 time")
        if fmt == "date-time":
            m = re.fullmatch(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]" + FULL_TIME, value)
            try:
                ok = m is not None and datetime.date.fromisoformat(m.group(1)) is not None
            except ValueError:
                ok = False
            if not ok:
                out.append(f"{path}: {value!r} is not an RFC 3339 date-time")
    return out


def generate(client, fields, prompt=PROMPT):
    text, tokens, done = "", [], None
    for m in client.generate(prompt, **fields):
        if m.get("done"):
            done = m
            text += m.get("text", "")
        else:
            text += m["text"]
            tokens.append(m["token"])
    return text, tokens, done


def test_corpus_outputs_validate(d):
    """Every schema's output, sampled, is complete and valid for an independent validator; eight
    streams with different schemas share the daemon's steps."""
    schemas = corpus()
    assert len(schemas) >= 100, len(schemas)
    failures, results = [], {}
    lock = threading.Lock()
    work = list(enumerate(schemas))

    def worker():
        client = d.new_client(timeout=120)
        while True:
            with lock:
                if not work:
                    return
                i, (name, schema) = work.pop(0)
            try:
                text, _, done = generate(client, {"json_schema": schema, "max_tokens": 4000,
                                                  "temperature": 1.0, "seed": 1000 + i})
                value = json.loads(text)
                validator = jsonschema.Draft202012Validator(
                    schema, format_checker=jsonschema.draft202012_format_checker)
                errors = [e.message for e in validator.iter_errors(value)]
                errors += rfc3339_errors(schema, value)
                problem = None
                if done["finish_reason"] == "length" or not done.get("grammar_complete"):
                    problem = f"did not complete: {done}"
                elif errors:
                    problem = f"invalid: {errors[:2]}"
            except Exception as e:  # noqa: BLE001 — every failure is reported with its schema
                problem, text = f"{type(e).__name__}: {e}", locals().get("text", "")
            with lock:
                results[name] = text
                if problem:
                    failures.append(f"{name}: {problem}\n  output: {text[:300]!r}")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"  {len(schemas) - len(failures)} of {len(schemas)} schemas: valid output")
    assert not failures, "\n".join(failures)


def test_greedy_identity(d):
    """Where the grammar allows the model's own choice, greedy output is token for token the
    unconstrained one: here a grammar of exactly that text and then anything."""
    c = d.new_client()
    text, tokens, _ = generate(c, {"max_tokens": 48, "temperature": 0})
    escaped = "".join(f"\\x{b:02x}" if b < 0x80 else chr(b) for b in text[:40].encode("latin-1", "ignore"))
    grammar = f'root ::= "{escaped}" [^\\x00]*\n' if text.isascii() else None
    assert grammar, "the bundled model's greedy text is ASCII"
    text2, tokens2, done = generate(c, {"max_tokens": 48, "temperature": 0, "grammar": grammar})
    assert tokens2 == tokens, (tokens, tokens2)
    assert done["grammar_complete"] is True


def test_constraint_changes_output_and_ends(d):
    """A grammar that refuses the model's choices changes them, and a closed grammar ends the
    stream as soon as it is complete (finish_reason stop, grammar_complete)."""
    c = d.new_client()
    text, tokens, done = generate(c, {"max_tokens": 100, "temperature": 0,
                                      "grammar": 'root ::= ("yes" | "no") "!"\n'})
    assert text in ("yes!", "no!"), text
    assert done["finish_reason"] == "stop" and done["grammar_complete"] is True, done
    # max_tokens reached mid-value: length, and the grammar incomplete.
    text, _, done = generate(c, {"max_tokens": 3, "temperature": 0,
                                 "json_schema": {"type": "string", "minLength": 30, "maxLength": 40}})
    assert done["finish_reason"] == "length" and done["grammar_complete"] is False, done


def test_bad_grammars_are_refused_with_where(d):
    c = d.new_client()
    cases = [
        ({"grammar": "root ::= foo\n"}, "grammar line 1, column 10: rule 'foo' is used but never defined"),
        ({"grammar": "root ::= \"a\nx ::= y\n"}, "grammar line 1, column 10: literal is not closed"),
        ({"json_schema": {"type": "object", "properties": {"a": {"not": {}}}}},
         "json_schema at '#/properties/a/not': 'not' is not a keyword Woolly enforces"),
        ({"json_schema": {"type": "string", "pattern": "(?=x)"}},
         "json_schema at '#/pattern': pattern offset 0: lookaround"),
        ({"grammar": "root ::= \"a\"\n", "json_schema": {}}, "give at most one of"),
        ({"response_format": {"type": "yaml"}}, "'response_format' type is 'yaml'"),
    ]
    for fields, expected in cases:
        try:
            generate(c, dict(fields, max_tokens=4))
        except WoollyError as e:
            assert e.code == "bad_request", (fields, e.code)
            assert expected in str(e), (expected, str(e))
        else:
            raise AssertionError(f"{fields} was accepted")


def test_http_response_format(d):
    """OpenAI's response_format on /v1/completions: json_object and json_schema outputs parse
    and validate; a relaxed schema says what it left out."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                               "n": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["name", "n"], "additionalProperties": False}
    def complete(fmt, seed):
        conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps({
            "prompt": PROMPT, "max_tokens": 2000, "temperature": 1, "seed": seed,
            "response_format": fmt}), {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        assert r.status == 200, body
        return body["choices"][0]
    # Any object may outgrow the bundled model's 512-token context: every reply that stops
    # parses, and every one begins an object.
    for seed in range(4):
        choice = complete({"type": "json_object"}, seed)
        assert choice["text"].lstrip().startswith("{"), choice
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["text"]), dict), choice
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}
    choice = complete(fmt, 7)
    assert choice["finish_reason"] == "stop", choice
    jsonschema.validate(json.loads(choice["text"]), schema)


def main():
    d = Woollyd(WOOLLYD, CONFIG, http=True, client_timeout=60)
    try:
        passed, failed = run_tests([test_corpus_outputs_validate, test_greedy_identity,
                                    test_constraint_changes_output_and_ends,
                                    test_bad_grammars_are_refused_with_where,
                                    test_http_response_format], d)
    finally:
        d.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def write_corpus(directory):
    os.makedirs(directory, exist_ok=True)
    for i, (name, schema) in enumerate(corpus()):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name.removesuffix(".json"))
        with open(os.path.join(directory, f"{i:03d}-{stem}.json"), "w", encoding="utf-8") as f:
            json.dump(schema, f, ensure_ascii=False)


if __name__ == "__main__":
    if WOOLLYD is None:
        write_corpus(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
