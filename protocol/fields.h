// fields.h — strict JSON request reading shared by woolly/1 (protocol.cpp) and the HTTP API
// (openai.cpp): parsing that refuses a key given twice, and typed field readers that name the
// field at fault.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/text/generation.h"

namespace woolly::protocol::detail {

using nlohmann::json;

// Parses `text` into `out`. nlohmann keeps the last of two equal keys; a request that says a
// field twice is refused instead, so that no two readers of it can disagree on what it asked.
// Returns why not ("" when parsed); `what` names the text in the message ("request").
inline std::string parse_strict(std::string_view text, json& out, const char* what) {
    std::vector<std::set<std::string>> keys; // of each object being parsed, innermost last
    std::string duplicate;
    auto check_keys = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
            keys.emplace_back();
        } else if (event == json::parse_event_t::object_end) {
            keys.pop_back();
        } else if (event == json::parse_event_t::key && !keys.empty() &&
                   !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
            duplicate = parsed.get<std::string>();
        }
        return true;
    };
    try {
        out = json::parse(text, check_keys);
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number too large for a double (1E999): either
        // way the text is not a request to read.
        return std::string(what) + " is not valid JSON (" + e.what() + ")";
    }
    if (!duplicate.empty()) return "field '" + duplicate + "' appears more than once";
    return "";
}

// Field readers over one object: each records the first failure (the message and the field
// it names) and returns nothing for a field of the wrong type or range.
struct Fields {
    const json& object;
    std::optional<std::string> error; // the first failure's message
    std::string param;                // the field it names

    const json* get(const char* name) const {
        auto it = object.find(name);
        return it == object.end() ? nullptr : &*it;
    }
    void fail(std::string message, std::string field = "") {
        if (error) return;
        error = std::move(message);
        param = std::move(field);
    }
    std::optional<int64_t> integer(const char* name, int64_t min, int64_t max) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_number_integer()) {
            fail(std::string("'") + name + "' must be an integer", name);
            return std::nullopt;
        }
        if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)) {
            fail(std::string("'") + name + "' is out of range", name);
            return std::nullopt;
        }
        const int64_t value = v->get<int64_t>();
        if (value < min || value > max) {
            fail(std::string("'") + name + "' must be between " + std::to_string(min) + " and " +
                     std::to_string(max) + ", got " + std::to_string(value),
                 name);
            return std::nullopt;
        }
        return value;
    }
    // A number a float holds (its range is the engine's to check).
    std::optional<double> number(const char* name) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_number()) {
            fail(std::string("'") + name + "' must be a number", name);
            return std::nullopt;
        }
        const double value = v->get<double>();
        if (!std::isfinite(value) || std::fabs(value) > double(FLT_MAX)) {
            fail(std::string("'") + name + "' is out of range", name);
            return std::nullopt;
        }
        return value;
    }
    std::optional<std::string> string(const char* name) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_string()) {
            fail(std::string("'") + name + "' must be a string", name);
            return std::nullopt;
        }
        return v->get<std::string>();
    }
    std::optional<bool> boolean(const char* name) {
        const json* v = get(name);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) {
            fail(std::string("'") + name + "' must be true or false", name);
            return std::nullopt;
        }
        return v->get<bool>();
    }
    // Whether the seed was given: a non-negative integer, into `seed`.
    bool seed(const char* name, uint64_t& seed) {
        const json* v = get(name);
        if (!v) return false;
        if (!v->is_number_unsigned()) {
            fail(std::string("'") + name + "' must be a non-negative integer", name);
            return false;
        }
        seed = v->get<uint64_t>();
        return true;
    }
    // Stop strings: an array of them (or, `one_string_too`, a single string), at most
    // `max_count`, each 1 to `max_bytes` bytes.
    void stop(const char* name, std::vector<std::string>& out, size_t max_count, size_t max_bytes,
              bool one_string_too) {
        const json* v = get(name);
        if (!v) return;
        out.clear();
        if (one_string_too && v->is_string()) {
            if (v->get_ref<const std::string&>().empty() ||
                v->get_ref<const std::string&>().size() > max_bytes)
                fail(std::string("'") + name + "' must be 1 to " + std::to_string(max_bytes) +
                         " bytes",
                     name);
            else
                out.push_back(v->get<std::string>());
            return;
        }
        if (!v->is_array()) {
            fail(std::string("'") + name + "' must be " +
                     (one_string_too ? "a string or an array of strings" : "an array of strings"),
                 name);
            return;
        }
        if (v->size() > max_count) {
            fail(std::string("'") + name + "' has more than " + std::to_string(max_count) +
                     " strings",
                 name);
            return;
        }
        for (const json& s : *v) {
            if (!s.is_string() || s.get_ref<const std::string&>().empty() ||
                s.get_ref<const std::string&>().size() > max_bytes) {
                fail(std::string("each '") + name + "' entry must be a string of 1 to " +
                         std::to_string(max_bytes) + " bytes",
                     name);
                return;
            }
            out.push_back(s.get<std::string>());
        }
    }
    // The sampling fields both APIs share, by their llama.cpp names, into `p` (their types
    // here; their ranges are GenerationParams::validate's).
    void sampling(SamplingParams& p) {
        if (auto v = number("temperature")) p.temperature = float(*v);
        if (auto v = integer("top_k", INT32_MIN, INT32_MAX)) p.top_k = int32_t(*v);
        if (auto v = number("top_p")) p.top_p = float(*v);
        if (auto v = number("min_p")) p.min_p = float(*v);
        if (auto v = number("repeat_penalty")) p.repeat_penalty = float(*v);
        if (auto v = integer("repeat_last_n", INT32_MIN, INT32_MAX)) p.repeat_last_n = int32_t(*v);
        if (auto v = number("presence_penalty")) p.presence_penalty = float(*v);
        if (auto v = number("frequency_penalty")) p.frequency_penalty = float(*v);
    }
    // The output's grammar into `out`: OpenAI's `response_format` ({"type": "text"},
    // {"type": "json_object"}, or {"type": "json_schema", "json_schema": {"name", "schema",
    // "strict"}}, strict false by default as OpenAI has it), and with `raw` woolly/1's own
    // `grammar` (GBNF text) and `json_schema` (a schema, strict). At most one. Schemas are read
    // from `ordered`, the same request with its keys in order (properties keep theirs).
    void grammar(const nlohmann::ordered_json& ordered, bool raw,
                 std::shared_ptr<const Constraint>& out) {
        if (error) return;
        const json* gbnf = raw ? get("grammar") : nullptr;
        const json* schema = raw ? get("json_schema") : nullptr;
        const json* format = get("response_format");
        if (format && format->is_null()) format = nullptr;
        if (int(gbnf != nullptr) + int(schema != nullptr) + int(format != nullptr) > 1)
            return fail("give at most one of 'grammar', 'json_schema' and 'response_format'",
                        "response_format");
        using grammar::GrammarConstraint;
        std::string field;
        try {
            if (gbnf) {
                field = "grammar";
                if (!gbnf->is_string())
                    return fail("'grammar' must be GBNF text (a string)", field);
                out = std::make_shared<GrammarConstraint>(
                    grammar::parse_gbnf(gbnf->get<std::string>()));
            } else if (schema) {
                field = "json_schema";
                if (!schema->is_object() && !schema->is_boolean())
                    return fail("'json_schema' must be a JSON Schema (an object)", field);
                out = std::make_shared<GrammarConstraint>(
                    grammar::compile_json_schema(ordered.at("json_schema"), true));
            } else if (format) {
                field = "response_format";
                if (!format->is_object())
                    return fail("'response_format' must be an object with a 'type'", field);
                const auto type = format->find("type");
                if (type == format->end() || !type->is_string())
                    return fail("'response_format' needs 'type' (text, json_object or json_schema)",
                                field);
                const std::string t = type->get<std::string>();
                if (t == "text") {
                    if (format->size() != 1)
                        return fail("'response_format' text takes only 'type'", field);
                } else if (t == "json_object") {
                    if (format->size() != 1)
                        return fail("'response_format' json_object takes only 'type'", field);
                    out = std::make_shared<GrammarConstraint>(grammar::json_object_grammar());
                } else if (t == "json_schema") {
                    const auto spec = format->find("json_schema");
                    if (format->size() != 2 || spec == format->end() || !spec->is_object())
                        return fail("'response_format' json_schema needs 'json_schema': {\"name\", "
                                    "\"schema\", \"strict\"}",
                                    field);
                    field = "response_format.json_schema";
                    for (auto it = spec->begin(); it != spec->end(); ++it)
                        if (it.key() != "name" && it.key() != "schema" && it.key() != "strict" &&
                            it.key() != "description")
                            return fail("'" + it.key() +
                                            "' is not a field of json_schema (name, "
                                            "description, schema, strict)",
                                        field);
                    const auto name = spec->find("name");
                    if (name == spec->end() || !name->is_string() ||
                        name->get<std::string>().empty())
                        return fail("json_schema needs a 'name' (a string)", field + ".name");
                    const auto strict = spec->find("strict");
                    if (strict != spec->end() && !strict->is_boolean() && !strict->is_null())
                        return fail("'strict' must be true or false", field + ".strict");
                    const bool is_strict =
                        strict != spec->end() && strict->is_boolean() && strict->get<bool>();
                    const auto& body = ordered.at("response_format").at("json_schema");
                    field += ".schema";
                    if (!body.contains("schema"))
                        out = std::make_shared<GrammarConstraint>(grammar::json_object_grammar());
                    else
                        out = std::make_shared<GrammarConstraint>(
                            grammar::compile_json_schema(body.at("schema"), is_strict));
                } else {
                    return fail("'response_format' type is '" + t +
                                    "' (expected text, json_object or json_schema)",
                                field);
                }
            }
        } catch (const Error& e) {
            fail(e.what(), field);
        }
    }
    // GenerationParams::validate, its complaint recorded; the field is the one its message
    // names first (its first word: "top_p must be in (0, 1]").
    void validate(const GenerationParams& p) {
        if (error) return;
        try {
            p.validate();
        } catch (const std::exception& e) {
            const std::string message = e.what();
            fail(message, message.substr(0, message.find(' ')));
        }
    }
};

// The first key of `object` not in `allowed`, or nullptr.
inline const std::string* unknown_field(const json& object, const std::set<std::string>& allowed) {
    for (auto it = object.begin(); it != object.end(); ++it)
        if (!allowed.count(it.key())) return &it.key();
    return nullptr;
}

} // namespace woolly::protocol::detail
