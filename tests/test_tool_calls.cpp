// test_tool_calls.cpp — tool calls in the engine: each family's call grammar accepts the calls
// as its template writes them (texts written here from the templates in tests/chat_templates
// and ../shared/vocab) and refuses other names and bad arguments; the streaming parser reads
// them back whole or byte by byte; a lazy grammar leaves the reply free until its trigger and
// holds from there.
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/text/reasoning.h"
#include "engine/text/tool_calls.h"
#include "engine/text/vocab.h"
#include "grammar_support.h"

using namespace woolly;
using namespace woolly::grammar;
using ojson = nlohmann::ordered_json;

namespace {

using test::accepts;
using test::bundled_vocab;

const ojson kAddParameters = ojson::parse(R"({"type": "object", "properties": {
    "a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}},
    "required": ["a"], "additionalProperties": false})");

Grammar calls_grammar(ToolSyntax syntax, bool parallel) {
    return compile_tool_calls(syntax,
                              {{"add", &kAddParameters, "tools[0]"}, {"now", nullptr, "tools[1]"}},
                              parallel, true);
}

struct Parsed {
    std::string content;
    std::vector<std::pair<std::string, std::string>> calls; // name, arguments
    bool complete = false;
};

// The parser's events folded up, the text given whole or one byte at a time.
Parsed parse(ToolSyntax syntax, std::string_view text, bool bytewise) {
    ToolCallParser p(syntax);
    std::vector<ToolCallParser::Event> events;
    if (bytewise)
        for (char c : text) p.push(std::string_view(&c, 1), events);
    else
        p.push(text, events);
    p.finish(events);
    Parsed out;
    for (const auto& e : events) {
        if (e.kind == ToolCallParser::Event::Kind::Content)
            out.content += e.text;
        else if (e.kind == ToolCallParser::Event::Kind::Call) {
            REQUIRE(e.index == out.calls.size());
            out.calls.push_back({e.text, ""});
        } else {
            REQUIRE(e.index + 1 == out.calls.size());
            out.calls.back().second += e.text;
        }
    }
    out.complete = p.calls_complete();
    return out;
}

} // namespace

TEST_CASE("each family's calls: the grammar takes them as the template writes them") {
    // Qwen (Hermes): calls in <tool_call> tags, one per line.
    const std::string hermes = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": "
                               "[\"}\", \"x\"]}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", "
                               "\"arguments\": {}}\n</tool_call>";
    CHECK(accepts(calls_grammar(ToolSyntax::Hermes, true), hermes));
    CHECK_FALSE(accepts(calls_grammar(ToolSyntax::Hermes, false), hermes)); // one call only
    CHECK(accepts(calls_grammar(ToolSyntax::Hermes, false),
                  hermes.substr(0, hermes.find("\n<tool_call>", 5))));
    CHECK_FALSE(accepts(calls_grammar(ToolSyntax::Hermes, true),
                        "<tool_call>\n{\"name\": \"sub\", \"arguments\": {}}\n</tool_call>"));
    CHECK_FALSE(
        accepts(calls_grammar(ToolSyntax::Hermes, true),
                "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": \"1\"}}\n</tool_call>"));
    CHECK_FALSE(
        accepts(calls_grammar(ToolSyntax::Hermes, true),
                "<tool_call>\n{\"name\": \"now\", \"arguments\": {\"a\": 1}}\n</tool_call>"));
    // Llama 3.1: the reply is one JSON object with "parameters".
    const Grammar llama = calls_grammar(ToolSyntax::Llama31, true);
    CHECK(accepts(llama, "{\"name\": \"add\", \"parameters\": {\"a\": -5}}"));
    CHECK_FALSE(accepts(llama, "{\"name\": \"add\", \"arguments\": {\"a\": -5}}"));
    // Mistral Nemo: a list after [TOOL_CALLS], each call with a 9-character id.
    const Grammar mistral = calls_grammar(ToolSyntax::MistralNemo, true);
    CHECK(accepts(
        mistral, "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 2}, \"id\": "
                 "\"abc123XYZ\"}, {\"name\": \"now\", \"arguments\": {}, \"id\": \"000000000\"}]"));
    CHECK_FALSE(accepts(mistral, "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 2}, "
                                 "\"id\": \"abc\"}]"));
    // A schema that is not an object's is refused, saying where it came from.
    const ojson list = ojson::parse(R"({"type": "array"})");
    CHECK_THROWS_WITH_AS(compile_tool_calls(ToolSyntax::Hermes,
                                            {{"f", &list, "tools[3].function.parameters"}}, true,
                                            true),
                         doctest::Contains("tools[3].function.parameters"), Error);
}

TEST_CASE("the streaming parser reads calls back, whole or a byte at a time") {
    for (bool bytewise : {false, true}) {
        INFO("bytewise " << bytewise);
        Parsed h = parse(ToolSyntax::Hermes,
                         "Let me see. <tool a\n<tool_call>\n{\"name\": \"add\", \"arguments\": "
                         "{\"a\": 1, \"b\": [\"]}\\\"\"]}}\n</tool_call>\n<tool_call>\n{\"name\": "
                         "\"now\", \"arguments\": {}}\n</tool_call>",
                         bytewise);
        CHECK(h.content == "Let me see. <tool a\n");
        REQUIRE(h.calls.size() == 2);
        CHECK(h.calls[0].first == "add");
        CHECK(h.calls[0].second == "{\"a\": 1, \"b\": [\"]}\\\"\"]}");
        CHECK(h.calls[1] == std::make_pair(std::string("now"), std::string("{}")));
        CHECK(h.complete);

        Parsed m =
            parse(ToolSyntax::MistralNemo,
                  "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 2}, \"id\": "
                  "\"abc123XYZ\"}, {\"name\": \"now\", \"arguments\": {}, \"id\": \"0a0a0a0a0\"}]",
                  bytewise);
        CHECK(m.content.empty());
        REQUIRE(m.calls.size() == 2);
        CHECK(m.calls[0].second == "{\"a\": 2}");
        CHECK(m.complete);

        Parsed l =
            parse(ToolSyntax::Llama31, "{\"name\": \"add\", \"parameters\": {\"a\": 3}}", bytewise);
        REQUIRE(l.calls.size() == 1);
        CHECK(l.calls[0].second == "{\"a\": 3}");
        CHECK(l.complete);

        // Cut short inside the arguments: the call is there, not complete.
        Parsed cut = parse(ToolSyntax::Hermes,
                           "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\"", bytewise);
        REQUIRE(cut.calls.size() == 1);
        CHECK(cut.calls[0].second == "{\"a\"");
        CHECK_FALSE(cut.complete);
        // Text that only looks like the trigger's start is content in the end.
        Parsed plain = parse(ToolSyntax::Hermes, "a <tool_c", bytewise);
        CHECK(plain.content == "a <tool_c");
        CHECK(plain.calls.empty());
    }
}

TEST_CASE("a lazy tool grammar: free until the trigger, the calls' grammar from it on") {
    const Vocab& vocab = bundled_vocab();
    const ToolCallConstraint lazy(calls_grammar(ToolSyntax::Hermes, true), "<tool_call>", false);
    auto state = lazy.start(vocab);
    // Before the trigger anything goes, and the reply may end.
    const TokenId eos = vocab.eos();
    CHECK(state->allows(eos));
    CHECK(state->complete());
    // A token of the one character `c` (the bundled vocabulary has one for each byte).
    auto token_of = [&](char c) {
        for (TokenId t = 0; t < vocab.size(); ++t)
            if (vocab.piece(t) == std::string(1, c)) return t;
        FAIL("no token for " << c);
        return TokenId(-1);
    };
    auto feed = [&](std::string_view text) {
        for (char c : text) {
            const TokenId t = token_of(c);
            INFO(c);
            REQUIRE(state->allows(t));
            state->accept(t);
        }
    };
    feed("Once upon a time <tool_call>\n{\"name\": \"ad");
    // Inside the call: only what the grammar allows, and no end.
    CHECK_FALSE(state->allows(eos));
    CHECK_FALSE(state->complete());
    const TokenId z = token_of('z');
    CHECK_FALSE(state->allows(z)); // "adz" names no function
    const uint64_t* mask = state->mask();
    const bool z_allowed = (mask[size_t(z) / 64] >> (size_t(z) % 64)) & 1;
    CHECK_FALSE(z_allowed);
    feed("d\", \"arguments\": {\"a\": 7}}\n</tool_call>");
    CHECK(state->complete());
    CHECK(state->allows(eos));

    // A token that would complete the trigger with bytes the grammar refuses is not allowed.
    auto fresh = lazy.start(vocab);
    for (char c : std::string_view("<tool_call")) fresh->accept(token_of(c));
    CHECK(fresh->allows(token_of('>')));
    fresh->accept(token_of('>'));
    CHECK_FALSE(fresh->allows(token_of('x'))); // after the trigger: "\n{" must follow
    CHECK(fresh->allows(token_of('\n')));

    // Required: the first token already must begin the calls.
    const ToolCallConstraint required(calls_grammar(ToolSyntax::Hermes, true), "<tool_call>", true);
    auto strict = required.start(vocab);
    CHECK_FALSE(strict->allows(token_of('O')));
    CHECK(strict->allows(token_of('<')));
    CHECK_FALSE(strict->allows(eos));
}

// What a thinking model's reply splits into, however the stream cuts it: whole, at every
// point, and byte by byte.
TEST_CASE("a reply's reasoning is told from its answer however the stream cuts it") {
    struct Case {
        std::string reply, reasoning, content;
    };
    const Case cases[] = {
        {"<think>\nadd them\n</think>\n\n4", "add them", "4"},
        {"<think>\n\n</think>\n\nhello", "", "hello"},   // no reasoning (enable_thinking)
        {"  <think>a\n\nb</think>c\n", "a\n\nb", "c\n"}, // blanks first; inner newlines kept
        {"<think>x </thinking> y</think>", "x </thinking> y", ""}, // a near-tag is text
        {"<think>\ncut off while it thinks\n", "cut off while it thinks", ""},
        {"no tag: <think>late</think>", "", "no tag: <think>late</think>"},
        {"<thin", "", "<thin"},
        {"\n\n", "", "\n\n"},
        {"<tool_call>\n{}\n</tool_call>", "", "<tool_call>\n{}\n</tool_call>"},
    };
    for (const Case& c : cases) {
        const size_t n = c.reply.size();
        // Cuts: none, each single point, and every byte.
        std::vector<std::vector<size_t>> cuttings = {{}};
        for (size_t at = 1; at < n; ++at) cuttings.push_back({at});
        std::vector<size_t> every;
        for (size_t at = 1; at < n; ++at) every.push_back(at);
        cuttings.push_back(every);
        for (const auto& cuts : cuttings) {
            INFO(c.reply << " cut at " << (cuts.empty() ? 0 : cuts[0]) << " (" << cuts.size()
                         << " cuts)");
            ReasoningSplitter splitter;
            std::vector<ReasoningSplitter::Event> events;
            size_t from = 0;
            for (size_t at : cuts) {
                splitter.push(std::string_view(c.reply).substr(from, at - from), events);
                from = at;
            }
            splitter.push(std::string_view(c.reply).substr(from), events);
            splitter.finish(events);
            std::string reasoning, content;
            bool content_seen = false;
            for (const auto& e : events) {
                CHECK_FALSE(e.text.empty());
                if (e.kind == ReasoningSplitter::Event::Kind::Reasoning) {
                    CHECK_FALSE(content_seen); // reasoning comes first
                    reasoning += e.text;
                } else {
                    content_seen = true;
                    content += e.text;
                }
            }
            CHECK(reasoning == c.reasoning);
            CHECK(content == c.content);
        }
    }
}
