// test_grammar.cpp — the grammar engine: GBNF and schema errors, what grammars accept byte by byte
// (against instances written here from the JSON Schema and GBNF specifications), and the token
// mask against trying every token one by one.
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/text/token_trie.h"
#include "engine/text/tokenizer.h"
#include "engine/text/vocab.h"
#include "grammar_support.h"

using namespace woolly;
using namespace woolly::grammar;
using ojson = nlohmann::ordered_json;

namespace {

using test::accepts;
using test::bundled_vocab;

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

Grammar schema(const char* text, bool strict = true) {
    return compile_json_schema(ojson::parse(text), strict);
}

} // namespace

TEST_CASE("GBNF: errors say the line, the column and why") {
    CHECK(error_of([] { parse_gbnf("root ::= foo\n"); }) ==
          "grammar line 1, column 10: rule 'foo' is used but never defined");
    CHECK(error_of([] { parse_gbnf("a ::= \"x\"\n"); }) ==
          "grammar: no 'root' rule (the rule generation starts from)");
    CHECK(error_of([] { parse_gbnf("root ::= \"abc\n"); }) ==
          "grammar line 1, column 10: literal is not closed with '\"'");
    CHECK(error_of([] { parse_gbnf("root ::= [a-\n"); }) ==
          "grammar line 1, column 10: class is not closed with ']'");
    CHECK(error_of([] { parse_gbnf("root ::= \"a\"\nroot ::= \"b\"\n"); }) ==
          "grammar line 2, column 1: rule 'root' is defined twice");
    CHECK(error_of([] { parse_gbnf("root ::= \"\\q\"\n"); }) ==
          "grammar line 1, column 11: unknown escape '\\q'");
    CHECK(error_of([] { parse_gbnf("root ::= x{3,2}\nx ::= \"a\"\n"); }) ==
          "grammar line 1, column 10: {m,n} with n below m");
    CHECK(error_of([] { parse_gbnf("root ::= ( \"a\" \n"); }) ==
          "grammar line 1, column 10: group is not closed with ')'");
    CHECK(error_of([] {
              parse_gbnf("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"\n");
          }).find("rule 'expr' is left-recursive") != std::string::npos);
    CHECK(error_of([] { parse_gbnf("root ::= \"a\" )\n"); }) ==
          "grammar line 1, column 14: ')' with no '(' before it");
}

TEST_CASE("GBNF: what a grammar accepts, byte by byte") {
    const Grammar g = parse_gbnf(R"g(# arithmetic
root  ::= expr
expr  ::= term ([-+*/] term)*
term  ::= num | "(" ws expr ws ")"
num   ::= [0-9]+ ("." [0-9]{1,3})?
ws    ::= [ \t]*
)g");
    CHECK(accepts(g, "1+2"));
    CHECK(accepts(g, "(1.5*3)/4"));
    CHECK(accepts(g, "( ( 7 ) )"));
    CHECK_FALSE(accepts(g, "1+"));
    CHECK_FALSE(accepts(g, "1.2345"));
    CHECK_FALSE(accepts(g, "(1"));
    CHECK_FALSE(accepts(g, "a"));

    // Characters are UTF-8: a class of non-ASCII ranges, negation and '.'.
    const Grammar u = parse_gbnf("root ::= [а-я]+ \" \" [^a-z] .\n");
    CHECK(accepts(u, "привет Z\xe2\x82\xac"));
    CHECK_FALSE(accepts(u, "привет zz"));
    CHECK_FALSE(accepts(u, "hello Zz"));
    CHECK_FALSE(accepts(u, "\xd0\xbf \xed\xa0\x80x")); // a surrogate's bytes are no character

    // Repetition bounds, and rules across lines inside parentheses.
    const Grammar r = parse_gbnf("root ::= (\n  \"ab\"{2,3}\n  | \"c\"{2}\n)\n");
    CHECK(accepts(r, "abab"));
    CHECK(accepts(r, "ababab"));
    CHECK(accepts(r, "cc"));
    CHECK_FALSE(accepts(r, "ab"));
    CHECK_FALSE(accepts(r, "abababab"));
    CHECK_FALSE(accepts(r, "c"));
}

TEST_CASE("GBNF: llama.cpp's grammars in tests/grammars parse") {
    const std::string dir = std::string(WOOLLY_SOURCE_DIR) + "/tests/grammars";
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() != ".gbnf") continue;
        const auto bytes = test::read_bytes(entry.path().string());
        INFO(entry.path().string());
        CHECK_NOTHROW(parse_gbnf(std::string(bytes.begin(), bytes.end())));
        ++n;
    }
    CHECK(n >= 5);
}

TEST_CASE("JSON Schema: keywords it cannot enforce are refused by name and path") {
    CHECK(error_of([] {
              schema(R"({"type":"object","properties":{"a":{"type":"string","not":{}}}})");
          }) == "json_schema at '#/properties/a/not': 'not' is not a keyword Woolly enforces (set "
                "strict to false to generate without it)");
    CHECK(error_of([] {
              schema(R"({"type":"number","minimum":1.5})");
          }).find("'#/minimum': 'minimum' is enforced on integers only") != std::string::npos);
    CHECK(error_of([] { schema(R"({"$ref":"#/$defs/missing"})"); }) ==
          "json_schema at '#': '$ref' #/$defs/missing points at nothing in the document");
    CHECK(error_of([] {
              schema(R"({"type":"string","format":"email"})");
          }).find("'format' 'email' is not enforced") != std::string::npos);
    CHECK(error_of([] { schema(R"({"type":"string","pattern":"(a)\\1"})"); }) ==
          "json_schema at '#/pattern': pattern offset 3: backreferences are not supported");
    CHECK(error_of([] { schema(R"({"type":"array","minItems":3,"maxItems":2})"); }) ==
          "json_schema at '#/maxItems': 'maxItems' is below 'minItems'");
    CHECK(error_of([] { schema(R"({"type":"strin"})"); }).find("'strin' is not a JSON type") !=
          std::string::npos);
    CHECK(error_of([] { schema("false"); }) ==
          "json_schema at '#': the schema is false: no value matches it");

    // strict: false keeps the rest and names what it left out.
    const Grammar g = schema(R"({"type":"object","properties":{"a":{"type":"integer"}},
                                 "required":["a"],"minProperties":1})",
                             false);
    REQUIRE(g.warnings.size() == 1);
    CHECK(g.warnings[0].find("'minProperties'") != std::string::npos);
    CHECK(accepts(g, R"({"a": 5})"));
}

TEST_CASE("JSON Schema: objects, arrays, strings and numbers accept what the schema allows") {
    const Grammar g = schema(R"({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2, "maxLength": 4},
            "age": {"type": "integer", "minimum": 18, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "maxItems": 2},
            "ok": {"type": ["boolean", "null"]}
        },
        "required": ["name", "age"]
    })");
    CHECK(accepts(g, R"({"name":"Bo","age":18})"));
    CHECK(accepts(g, R"({ "name" : "Anna" , "age" : 120 , "tags" : [ "a" , 3 ] , "ok" : null })"));
    CHECK(accepts(g, "{\"name\":\"\\u00e9t\\n\",\"age\":99,\"ok\":true}"));
    CHECK_FALSE(accepts(g, R"({"age":18,"name":"Bo"})")); // the schema's order
    CHECK_FALSE(accepts(g, R"({"name":"B","age":18})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bobby","age":18})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bo","age":17})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bo","age":121})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bo","age":018})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bo"})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bo","age":20,"tags":["a","b","a"]})"));
    CHECK_FALSE(accepts(g, R"({"name":"Bo","age":20,"extra":1})"));
    CHECK_FALSE(accepts(g, "{\"name\":\"\\ud800x\",\"age\":20}")); // a lone surrogate

    // Whitespace between tokens is bounded: one space, or a newline and 20 spaces or tabs.
    CHECK(accepts(g, "{\n" + std::string(20, ' ') + "\"name\":\"Bo\",\n\"age\": 18\n}"));
    CHECK_FALSE(accepts(g, "{\n" + std::string(21, ' ') + "\"name\":\"Bo\",\"age\":18}"));
    CHECK_FALSE(accepts(g, "{  \"name\":\"Bo\",\"age\":18}"));
    CHECK_FALSE(accepts(g, "{\n\n\"name\":\"Bo\",\"age\":18}"));

    // Integer ranges across digit counts and signs.
    const Grammar r = schema(R"({"type":"integer","minimum":-15,"exclusiveMaximum":1000})");
    for (const char* ok : {"-15", "-9", "-1", "0", "7", "10", "999", "385"})
        CHECK_MESSAGE(accepts(r, ok), ok);
    for (const char* bad : {"-16", "-0", "1000", "01", "-", "1e3", "12.5"})
        CHECK_MESSAGE(!accepts(r, bad), bad);

    const Grammar n = schema(R"({"type":"number"})");
    for (const char* ok : {"0", "-0.5", "12e-3", "3.14E+10", "7"})
        CHECK_MESSAGE(accepts(n, ok), ok);
    for (const char* bad : {"01", ".5", "1.", "+1", "1e", "NaN"})
        CHECK_MESSAGE(!accepts(n, bad), bad);
}

TEST_CASE("JSON Schema: $ref recursion, allOf merges, anyOf, prefixItems, extra properties") {
    const Grammar tree = schema(R"({
        "$defs": {"node": {"type": "object", "properties": {
            "v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["v"]}},
        "$ref": "#/$defs/node"})");
    CHECK(accepts(tree, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]})"));
    CHECK_FALSE(accepts(tree, R"({"v":1,"kids":[{"w":2}]})"));

    const Grammar all = schema(R"({"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]})");
    CHECK(accepts(all, R"({"a":"x","b":1})"));
    CHECK_FALSE(accepts(all, R"({"a":"x"})"));

    const Grammar any =
        schema(R"({"anyOf": [{"type": "string", "maxLength": 1}, {"const": {"k": [1, null]}}]})");
    CHECK(accepts(any, R"("z")"));
    CHECK(accepts(any, R"({"k":[1,null]})"));
    CHECK_FALSE(accepts(any, R"("zz")"));

    const Grammar tuple =
        schema(R"({"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],
                                     "items":false,"minItems":1})");
    CHECK(accepts(tuple, "[1]"));
    CHECK(accepts(tuple, R"([1,"a"])"));
    CHECK_FALSE(accepts(tuple, "[]"));
    CHECK_FALSE(accepts(tuple, R"([1,"a",2])"));
    CHECK_FALSE(accepts(tuple, R"(["a"])"));

    // Additional properties never reuse a declared name.
    const Grammar extra = schema(R"({"type":"object","properties":{"id":{"type":"integer"}},
                                     "additionalProperties":{"type":"boolean"}})");
    CHECK(accepts(extra, R"({"id":1,"i":true,"idx":false,"x":true})"));
    CHECK(accepts(extra, R"({"other":true})"));
    CHECK_FALSE(accepts(extra, R"({"id":1,"id":true})"));
    CHECK_FALSE(accepts(extra, R"({"id":1,"x":2})"));

    // Formats: real dates only.
    const Grammar date = schema(R"({"type":"string","format":"date-time"})");
    CHECK(accepts(date, R"("2024-02-28T23:59:59.123+05:30")"));
    CHECK(accepts(date, R"("1999-12-31T00:00:00Z")"));
    CHECK_FALSE(accepts(date, R"("2024-02-30T00:00:00Z")"));
    CHECK_FALSE(accepts(date, R"("2024-13-01T00:00:00Z")"));
    CHECK_FALSE(accepts(date, R"("2024-01-01T24:00:00Z")"));

    // Patterns, with JSON's escapes in the text.
    const Grammar p = schema(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}(x|\"q)?$"})");
    CHECK(accepts(p, R"("AB-123")"));
    CHECK(accepts(p, R"("ZZ-000x")"));
    CHECK(accepts(p, R"("ZZ-000\"q")"));
    CHECK_FALSE(accepts(p, R"("AB-12")"));
    CHECK_FALSE(accepts(p, R"("ab-123")"));
    const Grammar loose = schema(R"({"type":"string","pattern":"ab"})");
    CHECK(accepts(loose, R"("xxabyy")"));
    CHECK_FALSE(accepts(loose, R"("xxbyy")"));
}

TEST_CASE("json_object: any object, any values inside") {
    const Grammar g = json_object_grammar();
    CHECK(accepts(g, R"({"a":[1,2,{"b":null}],"c":"d"})"));
    CHECK(accepts(g, "{}"));
    CHECK_FALSE(accepts(g, "[1]"));
    CHECK_FALSE(accepts(g, R"({"a":})"));
}

// The mask's trie walk against trying each token alone, on a large real vocabulary, in states
// inside strings, numbers, keys and between values.
TEST_CASE("the token mask is exactly the tokens allowed one by one (Llama 3's vocabulary)") {
    const auto llama3 = test::llama3_vocab();
    if (!llama3) return;
    const Vocab& vocab = *llama3;
    const auto g = std::make_shared<const Grammar>(schema(R"({"type":"object","properties":{
        "name":{"type":"string","maxLength":12},"n":{"type":"number"},
        "list":{"type":"array","items":{"type":"integer","minimum":0,"maximum":300}}},
        "required":["name","n","list"]})"));
    for (const char* prefix : {"", "{", "{\"na", "{\"name\": \"Jo", "{\"name\":\"abcdefghijk",
                               "{\"name\":\"x\",\"n\":-1.", "{\"name\":\"x\",\"n\":2,\"list\":[2",
                               "{\"name\":\"x\",\"n\":2,\"list\":[299]"}) {
        test::CarriedMatcher m(g, vocab); // fresh for each prefix
        m.feed(prefix);
        m.check();
    }
}

// One matcher carried along a long string, so that its masks come from states it has seen
// (repetition counts made canonical, the short tokens' shortcut inside strings), against a fresh
// matcher trying each token alone: mid-string, mid-character, mid-escape, near the length bound
// and past a long key.
TEST_CASE("masks reused across a long string stay exact (Llama 3's vocabulary)") {
    const auto llama3 = test::llama3_vocab();
    if (!llama3) return;
    const Vocab& vocab = *llama3;
    const auto g = std::make_shared<const Grammar>(schema(R"({"type":"object","properties":{
        "text":{"type":"string","maxLength":120},"tags":{"type":"array","maxItems":40,
        "items":{"type":"string","minLength":30}}},"required":["text","tags"],
        "additionalProperties":{"type":"integer"}})"));
    test::CarriedMatcher m(g, vocab);
    auto feed = [&](const std::string& bytes, bool check_each) {
        for (char c : bytes) {
            m.feed(std::string_view(&c, 1));
            if (check_each) m.check();
        }
    };
    feed("{\"text\": \"", false);
    m.check();
    feed("Once upon a time ", true); // counts that share one canonical state
    feed("\xc3", true);              // inside a two-byte character
    feed("\xa9 and \\", true);       // inside an escape
    feed("u00e9", false);
    feed(std::string(70, 'x'), false); // 95 characters: the bound (120) within a token
    feed(std::string(20, 'y'), true);
    feed("\", \"tags\": [\"", false);
    feed("the minimum is thirty characters", true); // a lower bound met inside a token
    feed("\"], \"", false);
    feed(std::string(40, 'k'), true); // an extra key growing toward its bound
}

// Counted loops: a string near its maxLength allows the tokens of its characters up to the
// characters left (and, past the bound, none of them), whichever trie part they are in; multi-byte
// characters count once, a token that ends inside one counts it; a string under its minLength
// loops on; a key that could still begin a named property leaves that letter out of the loop.
// One matcher carried along, against a fresh matcher trying each token alone.
TEST_CASE("counted loops near a string's bounds stay exact (Llama 3's vocabulary)") {
    const auto llama3 = test::llama3_vocab();
    if (!llama3) return;
    const Vocab& vocab = *llama3;
    const auto g = std::make_shared<const Grammar>(schema(R"({"type":"object","properties":{
        "text":{"type":"string","maxLength":70},"long":{"type":"string","minLength":50},
        "alpha":{"type":"integer"}},"required":["text","long"],
        "additionalProperties":{"type":"string","maxLength":5}})"));
    test::CarriedMatcher m(g, vocab);
    m.feed("{\"text\": \"");
    m.check();
    // 70 characters in all: 30 ASCII, then 2-, 3- and 4-byte ones, checked where 40, 33, 32, 17,
    // 16, 9 and 1 are left, inside a character near the end, and at the bound.
    m.feed(std::string(30, 'a'));
    m.check();
    for (int i = 0; i < 7; ++i) m.feed("\xc3\xa9"); // é
    m.check();
    m.feed("\xe6\x97\xa5"); // 日
    m.check();
    for (int i = 0; i < 15; ++i) m.feed(i % 2 ? "b" : "\xf0\x9d\x84\x9e"); // 𝄞
    m.check();
    m.feed("c");
    m.check();
    m.feed("1234567");
    m.check();
    m.feed("\xe6\x97");
    m.check();
    m.feed("\xa5");
    m.check();
    m.feed("\", \"long\": \"");
    m.check();
    for (int i = 0; i < 6; ++i) {
        m.feed(std::string(9, 'x'));
        m.check(); // 9, 18, ... 54 characters: under, near and past the minimum
    }
    m.feed("\", \"");
    m.check(); // a key: "alpha" or any other
    m.feed("al");
    m.check();
    m.feed("x\": \"");
    for (int i = 0; i < 5; ++i) {
        m.feed("\xc3\xa9");
        m.check();
    }

    // Loops that are not a JSON string's: printable ASCII and one accented letter (the other
    // multi-byte characters are refused), and four characters of any kind before one of a-m.
    const auto p = std::make_shared<const Grammar>(schema(R"({"type":"object","properties":{
        "p":{"type":"string","pattern":"^[ -~\u00e9]{0,40}$"},
        "q":{"type":"string","pattern":"^.{4}[a-m]"}},"required":["p","q"]})"));
    test::CarriedMatcher mp(p, vocab);
    auto check_p = [&](const std::string& bytes) {
        mp.feed(bytes);
        mp.check();
    };
    check_p("{\"p\": \"");
    check_p("ab \xc3\xa9");
    check_p(std::string(30, 'z'));
    check_p("\", \"q\": \"");
    check_p("x");
    check_p("\xc3\xa9");
}

// The bundled model's 512 tokens are all short: the trie parts for longer tokens are empty.
TEST_CASE("masks on a vocabulary of short tokens alone (the bundled model's)") {
    const Vocab& vocab = test::bundled_vocab();
    const auto g = std::make_shared<const Grammar>(
        schema(R"({"type":"object","properties":{"s":{"type":"string","pattern":"ab+c"},
        "t":{"type":"string","maxLength":20}},"required":["s","t"]})"));
    test::CarriedMatcher m(g, vocab);
    for (const char* bytes :
         {"{\"s\": \"", "xa", "bbb", "c and so on", "\", \"t\": \"", "Once upon a time"}) {
        m.feed(bytes);
        m.check();
    }
}
