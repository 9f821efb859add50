// compile.h — the ways into a byte grammar: GBNF text (llama.cpp's grammar format), a JSON
// Schema, or any JSON object. Each throws Error on bad input, saying where (line and column, or
// the schema path) and why.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/grammar/grammar.h"
#include "engine/text/tool_calls.h"

namespace woolly::grammar {

// The most GBNF text or schema text accepted, and the most a {m,n} may count.
constexpr size_t kMaxGrammarBytes = 1 << 20;
constexpr uint32_t kMaxRepeat = 100000;

// llama.cpp's GBNF: `name ::= alternatives` per rule (a rule ends at a newline outside
// parentheses), "literals", [classes], [^negated], `.`, ( groups ), `*` `+` `?` `{m}` `{m,}`
// `{m,n}`, `#` comments; the start rule is `root`.
Grammar parse_gbnf(std::string_view text);

// The bounds a JSON grammar puts on what a schema leaves open, so that every value ends.
struct JsonBounds {
    uint32_t whitespace = 20;      // between tokens: "", " ", or "\n" and this many [ \t] at most
    uint32_t string_length = 256;  // characters, when the schema gives no maxLength
    uint32_t array_items = 32;     // when the schema gives no maxItems
    uint32_t extra_properties = 8; // additionalProperties not false: at most this many more
    uint32_t key_length = 64;      // characters of an additional property's name
    uint32_t depth = 6;            // nesting of values the schema leaves untyped
    uint32_t integer_digits = 18;
    uint32_t fraction_digits = 16;
};

// A JSON Schema (the subset SPEC.md lists), read in order so that objects keep the order of their
// properties. A keyword that cannot be enforced is an Error naming
// it and its path, unless `strict` is false: then it is left out and named in
// Grammar::warnings.
Grammar compile_json_schema(const nlohmann::ordered_json& schema, bool strict,
                            const JsonBounds& bounds = {});

// A function a reply may call (compile_tool_calls): its name, its parameters' schema (null: it
// takes none, so its arguments are {}), and where the schema came from, for errors
// ("tools[0].function.parameters").
struct ToolSchema {
    std::string name;
    const nlohmann::ordered_json* parameters = nullptr;
    std::string where;
};

// The calls of a reply in `syntax`, from its trigger on: one call to one of `tools`, or with
// `parallel` (and a syntax that has it) up to kMaxParallelCalls, each with arguments its
// function's schema accepts.
Grammar compile_tool_calls(ToolSyntax syntax, const std::vector<ToolSchema>& tools, bool parallel,
                           bool strict, const JsonBounds& bounds = {});

// Any JSON object (OpenAI's json_object response format).
Grammar json_object_grammar(const JsonBounds& bounds = {});

} // namespace woolly::grammar
