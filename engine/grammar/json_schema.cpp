// json_schema.cpp — JSON Schema to a byte grammar: each schema a rule, objects with their
// properties in the schema's order, every open size bounded (JsonBounds), and every keyword either
// enforced or refused by name.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/regex.h"
#include "engine/text/tool_calls.h"
#include "engine/text/utf8.h"

namespace woolly::grammar {
namespace {

using json = nlohmann::ordered_json;
using Seq = Builder::Seq;

// Keywords that describe and never constrain.
const std::set<std::string> kAnnotations = {
    "title", "description", "default",    "examples",         "$schema",
    "$id",   "$comment",    "deprecated", "readOnly",         "writeOnly",
    "$defs", "definitions", "$anchor",    "contentMediaType", "contentEncoding"};

std::string pointer_escape(const std::string& key) {
    std::string out;
    for (char c : key) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

class SchemaCompiler {
public:
    SchemaCompiler(const json& root, bool strict, const JsonBounds& bounds)
        : root_(root), strict_(strict), bounds_(bounds), b_(own_) {}
    // A schema among others in one grammar (compile_tool_calls): its rules go into `builder`,
    // and its errors name `where` (e.g. tools[0].function.parameters) instead of json_schema.
    SchemaCompiler(const json& root, bool strict, const JsonBounds& bounds, Builder& builder,
                   std::string where)
        : root_(root), strict_(strict), bounds_(bounds), b_(builder), where_(std::move(where)) {}

    // The rule of the root schema's values, for a grammar built around them.
    uint32_t value_rule() { return schema(root_, ""); }
    std::vector<std::string>& warnings() { return warnings_; }

    Grammar compile() {
        const uint32_t value = schema(root_, "");
        const uint32_t top = b_.add_rule("root");
        b_.add_alt(top, {Builder::rule(ws()), Builder::rule(value), Builder::rule(ws())});
        Grammar g = b_.finish(top);
        g.warnings = std::move(warnings_);
        return g;
    }

    Grammar any_object() {
        const uint32_t top = b_.add_rule("root");
        b_.add_alt(top,
                   {Builder::rule(ws()), Builder::rule(generic_object(0)), Builder::rule(ws())});
        return b_.finish(top);
    }

private:
    [[noreturn]] void fail(const std::string& path, const std::string& why) const {
        throw Error(where_ + " at '" + (path.empty() ? std::string("#") : "#" + path) +
                    "': " + why);
    }
    // A keyword that cannot be enforced: an error, or with strict false a warning.
    void unenforced(const std::string& path, const std::string& keyword, const std::string& why) {
        const std::string what = "'" + keyword + "' " + why;
        if (strict_) fail(path, what + " (set strict to false to generate without it)");
        warnings_.push_back(where_ + " at '#" + path + "': " + what + "; not enforced");
    }

    // ---- Shared rules, made once ----
    // Between tokens: nothing, one space, or a newline and an indent of at most
    // bounds.whitespace spaces and tabs (llama.cpp's rule), so that a model cannot wander.
    uint32_t ws() {
        if (ws_ == kNone) {
            const uint32_t indent = b_.char_class({{' ', ' '}, {'\t', '\t'}}, false);
            ws_ = b_.add_rule("ws");
            b_.add_alt(ws_, {});
            b_.add_alt(ws_, {b_.byte(' ')});
            b_.add_alt(ws_, {b_.byte('\n'), Builder::repeat(indent, 0, bounds_.whitespace)});
        }
        return ws_;
    }
    uint32_t hex_digit() {
        if (hex_ == kNone) hex_ = b_.char_class({{'0', '9'}, {'a', 'f'}, {'A', 'F'}}, false);
        return hex_;
    }
    uint32_t digit() {
        if (digit_ == kNone) digit_ = b_.char_class({{'0', '9'}}, false);
        return digit_;
    }
    // One character of a JSON string as written: a plain character or an escape (no lone
    // surrogates, so that lengths count as validators count them).
    uint32_t string_char() {
        if (char_ != kNone) return char_;
        char_ = b_.add_rule("string-char");
        b_.add_alt(char_, {Builder::rule(plain_char())});
        const uint32_t esc = b_.char_class({{'"', '"'},
                                            {'\\', '\\'},
                                            {'/', '/'},
                                            {'b', 'b'},
                                            {'f', 'f'},
                                            {'n', 'n'},
                                            {'r', 'r'},
                                            {'t', 't'}},
                                           false);
        b_.add_alt(char_, {b_.byte('\\'), Builder::rule(esc)});
        const uint32_t not_d =
            b_.char_class({{'0', '9'}, {'a', 'c'}, {'A', 'C'}, {'e', 'f'}, {'E', 'F'}}, false);
        const uint32_t low = b_.char_class({{'0', '7'}}, false);
        const uint32_t d = b_.char_class({{'d', 'd'}, {'D', 'D'}}, false);
        const uint32_t h = hex_digit();
        b_.add_alt(char_, {b_.byte('\\'), b_.byte('u'), Builder::rule(not_d), Builder::rule(h),
                           Builder::rule(h), Builder::rule(h)});
        b_.add_alt(char_, {b_.byte('\\'), b_.byte('u'), Builder::rule(d), Builder::rule(low),
                           Builder::rule(h), Builder::rule(h)});
        return char_;
    }
    // A character that needs no escape: U+0020 and up but '"' and '\'.
    uint32_t plain_char() {
        if (plain_ == kNone) plain_ = b_.char_class({{0, 0x1f}, {'"', '"'}, {'\\', '\\'}}, true);
        return plain_;
    }
    uint32_t string_rule(uint32_t min, uint32_t max) {
        const auto key = std::make_pair(min, max);
        if (auto it = strings_.find(key); it != strings_.end()) return it->second;
        const uint32_t r = b_.group(
            "string", {b_.byte('"'), Builder::repeat(string_char(), min, max), b_.byte('"')});
        strings_.emplace(key, r);
        return r;
    }
    uint32_t boolean() {
        if (bool_ == kNone) {
            bool_ = b_.add_rule("boolean");
            for (const char* v : {"true", "false"}) {
                Seq s;
                b_.literal(s, v);
                b_.add_alt(bool_, std::move(s));
            }
        }
        return bool_;
    }
    uint32_t null() {
        if (null_ == kNone) {
            Seq s;
            b_.literal(s, "null");
            null_ = b_.group("null", std::move(s));
        }
        return null_;
    }
    // -?(0|[1-9][0-9]{0,n-1})
    uint32_t integer() {
        if (int_ != kNone) return int_;
        const uint32_t natural = b_.add_rule("natural");
        b_.add_alt(natural, {b_.byte('0')});
        b_.add_alt(natural, {Builder::rule(b_.char_class({{'1', '9'}}, false)),
                             Builder::repeat(digit(), 0, bounds_.integer_digits - 1)});
        const uint32_t minus = b_.group("minus", {b_.byte('-')});
        int_ = b_.group("integer", {Builder::repeat(minus, 0, 1), Builder::rule(natural)});
        return int_;
    }
    uint32_t number() {
        if (num_ != kNone) return num_;
        const uint32_t frac = b_.group(
            "fraction", {b_.byte('.'), Builder::repeat(digit(), 1, bounds_.fraction_digits)});
        const uint32_t sign = b_.char_class({{'+', '+'}, {'-', '-'}}, false);
        const uint32_t exp =
            b_.group("exponent", {Builder::rule(b_.char_class({{'e', 'e'}, {'E', 'E'}}, false)),
                                  Builder::repeat(sign, 0, 1), Builder::repeat(digit(), 1, 3)});
        num_ = b_.group("number", {Builder::rule(integer()), Builder::repeat(frac, 0, 1),
                                   Builder::repeat(exp, 0, 1)});
        return num_;
    }
    // Any JSON value, nested at most bounds.depth deep from `depth`.
    uint32_t generic(uint32_t depth) {
        if (depth < generic_.size() && generic_[depth] != kNone) return generic_[depth];
        if (generic_.size() <= depth) generic_.resize(depth + 1, kNone);
        const uint32_t r = b_.add_rule("value");
        generic_[depth] = r;
        b_.add_alt(r, {Builder::rule(string_rule(0, bounds_.string_length))});
        b_.add_alt(r, {Builder::rule(number())});
        b_.add_alt(r, {Builder::rule(boolean())});
        b_.add_alt(r, {Builder::rule(null())});
        if (depth < bounds_.depth) {
            b_.add_alt(r, {Builder::rule(generic_object(depth))});
            const uint32_t item = generic(depth + 1);
            b_.add_alt(r, {Builder::rule(bracketed('[', item, 0, bounds_.array_items, ']'))});
        }
        return r;
    }
    uint32_t generic_object(uint32_t depth) {
        const uint32_t value = depth < bounds_.depth ? generic(depth + 1) : generic(depth);
        const uint32_t member =
            b_.group("member", {Builder::rule(string_rule(0, bounds_.key_length)),
                                Builder::rule(ws()), b_.byte(':'), Builder::rule(ws()),
                                Builder::rule(value), Builder::rule(ws())});
        return bracketed('{', member, 0, bounds_.array_items, '}');
    }
    // open ws (item ws ("," ws item ws){min-1,max-1})? close
    uint32_t bracketed(char open, uint32_t item, uint32_t min, uint32_t max, char close) {
        const uint32_t r = b_.add_rule(open == '[' ? "array" : "object");
        const uint32_t next = b_.group(
            "next", {b_.byte(','), Builder::rule(ws()), Builder::rule(item), Builder::rule(ws())});
        if (min == 0)
            b_.add_alt(r, {b_.byte(uint8_t(open)), Builder::rule(ws()), b_.byte(uint8_t(close))});
        if (max > 0)
            b_.add_alt(r,
                       {b_.byte(uint8_t(open)), Builder::rule(ws()), Builder::rule(item),
                        Builder::rule(ws()), Builder::repeat(next, min > 0 ? min - 1 : 0, max - 1),
                        b_.byte(uint8_t(close))});
        return r;
    }
    uint32_t literal_rule(const std::string& name, const std::string& text) {
        Seq s;
        b_.literal(s, text);
        return b_.group(name, std::move(s));
    }

    // ---- Schemas ----
    const json& resolve(const std::string& ref, const std::string& path) {
        if (ref.empty() || ref[0] != '#')
            fail(path, "'$ref' " + ref + " is not in this document (only '#...' refs resolve)");
        try {
            const json::json_pointer p(ref.substr(1));
            const json& target = root_.at(p);
            return target;
        } catch (const std::exception&) {
            fail(path, "'$ref' " + ref + " points at nothing in the document");
        }
    }

    uint32_t schema(const json& s, const std::string& path) {
        if (++depth_ > 256) fail(path, "schema nested more than 256 deep");
        const uint32_t r = schema_inner(s, path);
        --depth_;
        return r;
    }

    uint32_t schema_inner(const json& s, const std::string& path) {
        if (s.is_boolean()) {
            if (!s.get<bool>()) fail(path, "the schema is false: no value matches it");
            return generic(0);
        }
        if (!s.is_object()) fail(path, "a schema must be an object or a boolean");
        if (auto ref = s.find("$ref"); ref != s.end()) {
            if (!ref->is_string()) fail(path + "/$ref", "'$ref' must be a string");
            const std::string target = ref->get<std::string>();
            bool siblings = false;
            for (const auto& [k, v] : s.items())
                if (k != "$ref" && !kAnnotations.count(k)) siblings = true;
            if (!siblings) {
                if (auto it = refs_.find(target); it != refs_.end()) return it->second;
                const uint32_t r = b_.add_rule("ref");
                refs_.emplace(target, r);
                const uint32_t body = schema(resolve(target, path), target.substr(1));
                b_.add_alt(r, {Builder::rule(body)});
                return r;
            }
            json merged = s;
            merged.erase("$ref");
            return schema(merge(resolve(target, path), merged, path), path);
        }
        if (auto all = s.find("allOf"); all != s.end()) {
            if (!all->is_array() || all->empty())
                fail(path + "/allOf", "must be a non-empty array");
            json merged = s;
            merged.erase("allOf");
            for (size_t i = 0; i < all->size(); ++i)
                merged = merge(merged, deref((*all)[i], path + "/allOf/" + std::to_string(i)),
                               path + "/allOf/" + std::to_string(i));
            return schema(merged, path);
        }
        for (const char* key : {"anyOf", "oneOf"}) {
            auto any = s.find(key);
            if (any == s.end()) continue;
            if (!any->is_array() || any->empty())
                fail(path + "/" + key, "must be a non-empty array");
            json base = s;
            base.erase(key);
            bool has_base = false;
            for (const auto& [k, v] : base.items())
                if (!kAnnotations.count(k)) has_base = true;
            const uint32_t r = b_.add_rule(key);
            for (size_t i = 0; i < any->size(); ++i) {
                const std::string p = path + "/" + key + "/" + std::to_string(i);
                const json& branch = (*any)[i];
                b_.add_alt(r, {Builder::rule(has_base ? schema(merge(base, deref(branch, p), p), p)
                                                      : schema(branch, p))});
            }
            return r;
        }
        if (auto c = s.find("const"); c != s.end()) return literal_rule("const", c->dump());
        if (auto e = s.find("enum"); e != s.end()) {
            if (!e->is_array() || e->empty()) fail(path + "/enum", "must be a non-empty array");
            const uint32_t r = b_.add_rule("enum");
            for (const json& v : *e) {
                Seq seq;
                b_.literal(seq, v.dump());
                b_.add_alt(r, std::move(seq));
            }
            return r;
        }

        std::vector<std::string> types;
        if (auto t = s.find("type"); t != s.end()) {
            if (t->is_string()) {
                types.push_back(t->get<std::string>());
            } else if (t->is_array() && !t->empty()) {
                for (const json& v : *t) {
                    if (!v.is_string()) fail(path + "/type", "must be a string or strings");
                    types.push_back(v.get<std::string>());
                }
            } else {
                fail(path + "/type", "must be a string or a non-empty array of strings");
            }
        } else {
            // No type: what the keywords there imply, or any value.
            for (const auto& [k, v] : s.items()) {
                if (k == "properties" || k == "required" || k == "additionalProperties")
                    types = {"object"};
                if (k == "items" || k == "prefixItems" || k == "minItems" || k == "maxItems")
                    types = {"array"};
                if (k == "minLength" || k == "maxLength" || k == "pattern" || k == "format")
                    types = {"string"};
            }
        }
        if (auto n = s.find("nullable"); n != s.end() && n->is_boolean() && n->get<bool>())
            if (!types.empty() && std::find(types.begin(), types.end(), "null") == types.end())
                types.push_back("null");
        check_keywords(s, path);
        if (types.empty()) return generic(0);
        if (types.size() == 1) return typed(s, types[0], path);
        const uint32_t r = b_.add_rule("types");
        for (const std::string& t : types) b_.add_alt(r, {Builder::rule(typed(s, t, path))});
        return r;
    }

    const json& deref(const json& s, const std::string& path) {
        if (s.is_object() && s.size() == 1 && s.contains("$ref") && s["$ref"].is_string())
            return resolve(s["$ref"].get<std::string>(), path);
        return s;
    }

    void check_keywords(const json& s, const std::string& path) {
        static const std::map<std::string, std::string> kKnown = {
            {"type", ""},
            {"properties", "object"},
            {"required", "object"},
            {"additionalProperties", "object"},
            {"items", "array"},
            {"prefixItems", "array"},
            {"minItems", "array"},
            {"maxItems", "array"},
            {"minLength", "string"},
            {"maxLength", "string"},
            {"pattern", "string"},
            {"format", "string"},
            {"minimum", "number"},
            {"maximum", "number"},
            {"exclusiveMinimum", "number"},
            {"exclusiveMaximum", "number"},
            {"nullable", ""},
            {"uniqueItems", "array"}};
        for (const auto& [k, v] : s.items()) {
            if (kAnnotations.count(k)) continue;
            if (!kKnown.count(k)) {
                unenforced(path + "/" + pointer_escape(k), k, "is not a keyword Woolly enforces");
                continue;
            }
            if (k == "uniqueItems" && v.is_boolean() && v.get<bool>())
                unenforced(path + "/uniqueItems", k, "(true) cannot be enforced token by token");
        }
    }

    uint32_t typed(const json& s, const std::string& type, const std::string& path) {
        if (type == "string") return string_schema(s, path);
        if (type == "integer") return integer_schema(s, path);
        if (type == "number") {
            for (const char* k : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
                if (s.contains(k))
                    unenforced(path + "/" + k, k, "is enforced on integers only, not numbers");
            return number();
        }
        if (type == "boolean") return boolean();
        if (type == "null") return null();
        if (type == "object") return object_schema(s, path);
        if (type == "array") return array_schema(s, path);
        fail(path + "/type", "'" + type +
                                 "' is not a JSON type (string, number, integer, boolean, null, "
                                 "object, array)");
    }

    uint32_t count(const json& s, const char* key, const std::string& path, uint32_t fallback) {
        auto it = s.find(key);
        if (it == s.end()) return fallback;
        if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
            fail(path + "/" + key, std::string("'") + key + "' must be a non-negative integer");
        const uint64_t v = it->get<uint64_t>();
        if (v > kMaxRepeat)
            fail(path + "/" + key,
                 std::string("'") + key + "' above " + std::to_string(kMaxRepeat));
        return uint32_t(v);
    }

    uint32_t string_schema(const json& s, const std::string& path) {
        const bool has_len = s.contains("minLength") || s.contains("maxLength");
        if (auto f = s.find("format"); f != s.end()) {
            if (!f->is_string()) fail(path + "/format", "'format' must be a string");
            if (has_len)
                unenforced(path + "/maxLength", "minLength/maxLength",
                           "cannot be enforced together with 'format'");
            const std::string format = f->get<std::string>();
            if (uint32_t r = format_rule(format); r != kNone) return r;
            std::string why = "'";
            why += format;
            why += "' is not enforced (date, time, date-time and uuid are)";
            unenforced(path + "/format", "format", why);
        }
        if (auto p = s.find("pattern"); p != s.end()) {
            if (!p->is_string()) fail(path + "/pattern", "'pattern' must be a string");
            if (has_len)
                unenforced(path + "/maxLength", "minLength/maxLength",
                           "cannot be enforced together with 'pattern'");
            try {
                const uint32_t body =
                    compile_regex(b_, p->get<std::string>(), bounds_.string_length);
                return b_.group("pattern", {b_.byte('"'), Builder::rule(body), b_.byte('"')});
            } catch (const Error& e) {
                fail(path + "/pattern", e.what());
            }
        }
        const uint32_t min = count(s, "minLength", path, 0);
        uint32_t max = count(s, "maxLength", path, std::max(bounds_.string_length, min));
        if (max < min) fail(path + "/maxLength", "'maxLength' is below 'minLength'");
        return string_rule(min, max);
    }

    uint32_t format_rule(const std::string& format) {
        auto digits = [&](Seq& seq, int n) {
            for (int i = 0; i < n; ++i) seq.push_back(Builder::rule(digit()));
        };
        auto cls = [&](uint32_t lo, uint32_t hi) {
            return Builder::rule(b_.char_class({{lo, hi}}, false));
        };
        if (format == "date" || format == "date-time") {
            if (date_ == kNone) {
                // Months with their days; February stops at 28 so that every date is real.
                const uint32_t md = b_.add_rule("month-day");
                const uint32_t d28 = b_.add_rule("day28");
                b_.add_alt(d28, {b_.byte('0'), cls('1', '9')});
                b_.add_alt(d28, {b_.byte('1'), Builder::rule(digit())});
                b_.add_alt(d28, {b_.byte('2'), cls('0', '8')});
                const uint32_t d30 = b_.add_rule("day30");
                b_.add_alt(d30, {Builder::rule(d28)});
                b_.add_alt(d30, {b_.byte('2'), b_.byte('9')});
                b_.add_alt(d30, {b_.byte('3'), b_.byte('0')});
                const uint32_t d31 = b_.add_rule("day31");
                b_.add_alt(d31, {Builder::rule(d30)});
                b_.add_alt(d31, {b_.byte('3'), b_.byte('1')});
                for (const char* m : {"01", "03", "05", "07", "08", "10", "12"}) {
                    Seq seq;
                    b_.literal(seq, std::string(m) + "-");
                    seq.push_back(Builder::rule(d31));
                    b_.add_alt(md, std::move(seq));
                }
                for (const char* m : {"04", "06", "09", "11"}) {
                    Seq seq;
                    b_.literal(seq, std::string(m) + "-");
                    seq.push_back(Builder::rule(d30));
                    b_.add_alt(md, std::move(seq));
                }
                Seq feb;
                b_.literal(feb, "02-");
                feb.push_back(Builder::rule(d28));
                b_.add_alt(md, std::move(feb));
                Seq seq;
                digits(seq, 4);
                seq.push_back(b_.byte('-'));
                seq.push_back(Builder::rule(md));
                date_ = b_.group("date", std::move(seq));
            }
        }
        if (format == "time" || format == "date-time") {
            if (time_ == kNone) {
                const uint32_t hour = b_.add_rule("hour");
                b_.add_alt(hour, {cls('0', '1'), Builder::rule(digit())});
                b_.add_alt(hour, {b_.byte('2'), cls('0', '3')});
                const uint32_t sixty = b_.group("minute", {cls('0', '5'), Builder::rule(digit())});
                const uint32_t frac =
                    b_.group("fraction", {b_.byte('.'), Builder::repeat(digit(), 1, 6)});
                const uint32_t zone = b_.add_rule("zone");
                b_.add_alt(zone, {b_.byte('Z')});
                b_.add_alt(zone, {Builder::rule(b_.char_class({{'+', '+'}, {'-', '-'}}, false)),
                                  Builder::rule(hour), b_.byte(':'), Builder::rule(sixty)});
                time_ = b_.group("time", {Builder::rule(hour), b_.byte(':'), Builder::rule(sixty),
                                          b_.byte(':'), Builder::rule(sixty),
                                          Builder::repeat(frac, 0, 1), Builder::rule(zone)});
            }
        }
        if (format == "date")
            return b_.group("date-string", {b_.byte('"'), Builder::rule(date_), b_.byte('"')});
        if (format == "time")
            return b_.group("time-string", {b_.byte('"'), Builder::rule(time_), b_.byte('"')});
        if (format == "date-time")
            return b_.group("date-time-string", {b_.byte('"'), Builder::rule(date_), b_.byte('T'),
                                                 Builder::rule(time_), b_.byte('"')});
        if (format == "uuid") {
            Seq seq{b_.byte('"')};
            for (int n : {8, 4, 4, 4, 12}) {
                if (n != 8) seq.push_back(b_.byte('-'));
                for (int i = 0; i < n; ++i) seq.push_back(Builder::rule(hex_digit()));
            }
            seq.push_back(b_.byte('"'));
            return b_.group("uuid", std::move(seq));
        }
        return kNone;
    }

    // ---- Integers in a range ----
    // Decimal strings of exactly `lo.size()` digits from lo to hi (leading zeros allowed).
    void fixed_range(const std::string& lo, const std::string& hi, Seq prefix, uint32_t rule) {
        if (lo.empty()) {
            b_.add_alt(rule, std::move(prefix));
            return;
        }
        if (lo == std::string(lo.size(), '0') && hi == std::string(hi.size(), '9')) {
            for (size_t i = 0; i < lo.size(); ++i) prefix.push_back(Builder::rule(digit()));
            b_.add_alt(rule, std::move(prefix)); // any digits: one alternative, not 10^n
            return;
        }
        const std::string nines(lo.size() - 1, '9'), zeros(lo.size() - 1, '0');
        auto digit_class = [&](char a, char b) {
            return Builder::rule(b_.char_class({{uint32_t(a), uint32_t(b)}}, false));
        };
        if (lo[0] == hi[0]) {
            prefix.push_back(b_.byte(uint8_t(lo[0])));
            fixed_range(lo.substr(1), hi.substr(1), std::move(prefix), rule);
            return;
        }
        Seq first = prefix;
        first.push_back(b_.byte(uint8_t(lo[0])));
        fixed_range(lo.substr(1), nines, std::move(first), rule);
        if (hi[0] - lo[0] > 1) {
            Seq mid = prefix;
            mid.push_back(digit_class(char(lo[0] + 1), char(hi[0] - 1)));
            for (size_t i = 1; i < lo.size(); ++i) mid.push_back(Builder::rule(digit()));
            b_.add_alt(rule, std::move(mid));
        }
        Seq last = prefix;
        last.push_back(b_.byte(uint8_t(hi[0])));
        fixed_range(zeros, hi.substr(1), std::move(last), rule);
    }
    // Naturals lo..hi written without leading zeros.
    void natural_range(uint64_t lo, uint64_t hi, Seq prefix, uint32_t rule) {
        for (uint64_t p = 1, len = 1; len <= 19 && lo <= hi; ++len, p *= 10) {
            const uint64_t top = len == 19 ? UINT64_MAX / 10 : p * 10 - 1;
            if (lo > top) continue;
            const uint64_t a = std::max(lo, len == 1 ? 0 : p), b = std::min(hi, top);
            if (a <= b) fixed_range(std::to_string(a), std::to_string(b), prefix, rule);
            if (hi <= top) break;
        }
    }
    uint32_t integer_schema(const json& s, const std::string& path) {
        const double kLimit = std::pow(10.0, double(bounds_.integer_digits)) - 1;
        double lo = -kLimit, hi = kLimit;
        bool bounded = false;
        auto bound = [&](const char* key, bool upper, bool exclusive) {
            auto it = s.find(key);
            if (it == s.end()) return;
            if (it->is_boolean()) return; // draft 4's exclusive flags, read with their bound
            if (!it->is_number())
                fail(path + "/" + key, std::string("'") + key + "' must be a number");
            double v = it->get<double>();
            bool excl = exclusive;
            if (!exclusive) {
                const char* flag = upper ? "exclusiveMaximum" : "exclusiveMinimum";
                if (auto f = s.find(flag); f != s.end() && f->is_boolean()) excl = f->get<bool>();
            }
            v = upper ? (excl ? std::ceil(v) - 1 : std::floor(v))
                      : (excl ? std::floor(v) + 1 : std::ceil(v));
            if (upper)
                hi = std::min(hi, v);
            else
                lo = std::max(lo, v);
            bounded = true;
        };
        bound("minimum", false, false);
        bound("maximum", true, false);
        bound("exclusiveMinimum", false, true);
        bound("exclusiveMaximum", true, true);
        if (!bounded) return integer();
        if (lo > hi) fail(path, "no integer lies between its minimum and maximum");
        if (lo < -kLimit || hi > kLimit)
            fail(path, "bounds past " + std::to_string(bounds_.integer_digits) + " digits");
        const auto ilo = int64_t(lo), ihi = int64_t(hi);
        const uint32_t r = b_.add_rule("integer-range");
        if (ilo < 0) { // the negatives: "-" and |v| from max(1, -hi) to -lo
            const uint64_t alo = ihi < 0 ? uint64_t(-ihi) : 1, ahi = uint64_t(-ilo);
            natural_range(alo, ahi, {b_.byte('-')}, r);
        }
        if (ihi >= 0) natural_range(uint64_t(std::max<int64_t>(ilo, 0)), uint64_t(ihi), {}, r);
        return r;
    }

    // ---- Objects ----
    // A JSON string for a name that is not one of `names` (raw text): a trie of the names,
    // where each node may close (unless a name ends there), take a child, or leave the trie on
    // any other character and go on freely. Escapes are not used in such names.
    uint32_t other_key(const std::vector<std::string>& names) {
        struct Node {
            std::map<uint32_t, size_t> children;
            bool end = false;
        };
        std::vector<Node> trie(1);
        for (const std::string& n : names) {
            size_t at = 0;
            for (size_t i = 0; i < n.size();) {
                const auto [cp, len] = utf8_code_point(n, i);
                i += len;
                auto it = trie[at].children.find(cp);
                if (it == trie[at].children.end()) {
                    trie.emplace_back();
                    it = trie[at].children.emplace(cp, trie.size() - 1).first;
                }
                at = it->second;
            }
            trie[at].end = true;
        }
        const uint32_t max = bounds_.key_length;
        std::vector<uint32_t> rules(trie.size());
        for (size_t i = 0; i < trie.size(); ++i) rules[i] = b_.add_rule("other-key");
        std::vector<uint32_t> depth(trie.size(), 0);
        for (size_t i = 0; i < trie.size(); ++i)
            for (const auto& [cp, child] : trie[i].children) depth[child] = depth[i] + 1;
        for (size_t i = 0; i < trie.size(); ++i) {
            const Node& n = trie[i];
            const uint32_t r = rules[i];
            if (!n.end) b_.add_alt(r, {b_.byte('"')});
            if (depth[i] >= max) {
                if (n.end) b_.add_alt(r, {b_.bytes(ByteSet())}); // nothing: finish() wants one
                continue;
            }
            std::vector<CodeRange> out{{0, 0x1f}, {'"', '"'}, {'\\', '\\'}};
            for (const auto& [cp, child] : n.children) {
                out.emplace_back(cp, cp);
                if (cp < 0x20 || cp == '"' || cp == '\\') continue; // never written unescaped
                Seq seq;
                std::string bytes;
                append_utf8(cp, bytes);
                b_.literal(seq, bytes);
                seq.push_back(Builder::rule(rules[child]));
                b_.add_alt(r, std::move(seq));
            }
            b_.add_alt(r, {Builder::rule(b_.char_class(out, true)),
                           Builder::repeat(plain_char(), 0, max - depth[i] - 1), b_.byte('"')});
        }
        return b_.group("other-key-string", {b_.byte('"'), Builder::rule(rules[0])});
    }

    uint32_t object_schema(const json& s, const std::string& path) {
        struct Property {
            std::string name;
            uint32_t member; // "name" ws ":" ws value
            bool required;
        };
        std::vector<Property> props;
        std::set<std::string> required;
        if (auto req = s.find("required"); req != s.end()) {
            if (!req->is_array()) fail(path + "/required", "'required' must be an array of names");
            for (const json& n : *req) {
                if (!n.is_string()) fail(path + "/required", "'required' must hold strings");
                required.insert(n.get<std::string>());
            }
        }
        std::vector<std::string> names;
        if (auto p = s.find("properties"); p != s.end()) {
            if (!p->is_object()) fail(path + "/properties", "'properties' must be an object");
            for (const auto& [name, sub] : p->items()) {
                const std::string sub_path = path + "/properties/" + pointer_escape(name);
                const uint32_t value = schema(sub, sub_path);
                Seq seq;
                b_.literal(seq, json(name).dump());
                seq.insert(seq.end(), {Builder::rule(ws()), b_.byte(':'), Builder::rule(ws()),
                                       Builder::rule(value), Builder::rule(ws())});
                props.push_back(
                    {name, b_.group("member", std::move(seq)), required.count(name) > 0});
                names.push_back(name);
            }
        }
        for (const std::string& r : required)
            if (std::find(names.begin(), names.end(), r) == names.end()) {
                // A required name with no schema of its own takes additionalProperties' (any value
                // unless false).
                const json* extra =
                    s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
                if (extra && extra->is_boolean() && !extra->get<bool>())
                    fail(path + "/required",
                         "'" + r + "' is required but additionalProperties is false");
                const uint32_t value = extra && !extra->is_boolean()
                                           ? schema(*extra, path + "/additionalProperties")
                                           : generic(1);
                Seq seq;
                b_.literal(seq, json(r).dump());
                seq.insert(seq.end(), {Builder::rule(ws()), b_.byte(':'), Builder::rule(ws()),
                                       Builder::rule(value), Builder::rule(ws())});
                props.push_back({r, b_.group("member", std::move(seq)), true});
                names.push_back(r);
            }

        // More properties than those named: additionalProperties true or a schema. Absent, it
        // is taken as false (the schema's own properties are always enough to be valid).
        uint32_t extra_member = kNone;
        if (auto a = s.find("additionalProperties");
            a != s.end() && !(a->is_boolean() && !a->get<bool>())) {
            const uint32_t value =
                a->is_boolean() ? generic(1) : schema(*a, path + "/additionalProperties");
            extra_member = b_.group("extra", {Builder::rule(other_key(names)), Builder::rule(ws()),
                                              b_.byte(':'), Builder::rule(ws()),
                                              Builder::rule(value), Builder::rule(ws())});
        }
        const uint32_t extra_max = bounds_.extra_properties;

        // tail[i]: properties i.. after at least one member; head[i]: before any.
        const size_t n = props.size();
        std::vector<uint32_t> tail(n + 1), head(n + 1);
        tail[n] = b_.add_rule("object-tail");
        if (extra_member != kNone) {
            const uint32_t next = b_.group(
                "extra-next", {b_.byte(','), Builder::rule(ws()), Builder::rule(extra_member)});
            b_.add_alt(tail[n], {Builder::repeat(next, 0, extra_max)});
        } else {
            b_.add_alt(tail[n], {});
        }
        head[n] = b_.add_rule("object-head");
        b_.add_alt(head[n], {});
        if (extra_member != kNone && extra_max > 0) {
            const uint32_t next = b_.group(
                "extra-next", {b_.byte(','), Builder::rule(ws()), Builder::rule(extra_member)});
            b_.add_alt(head[n],
                       {Builder::rule(extra_member), Builder::repeat(next, 0, extra_max - 1)});
        }
        for (size_t i = n; i-- > 0;) {
            tail[i] = b_.add_rule("object-tail");
            b_.add_alt(tail[i], {b_.byte(','), Builder::rule(ws()), Builder::rule(props[i].member),
                                 Builder::rule(tail[i + 1])});
            if (!props[i].required) b_.add_alt(tail[i], {Builder::rule(tail[i + 1])});
            head[i] = b_.add_rule("object-head");
            b_.add_alt(head[i], {Builder::rule(props[i].member), Builder::rule(tail[i + 1])});
            if (!props[i].required) b_.add_alt(head[i], {Builder::rule(head[i + 1])});
        }
        return b_.group("object",
                        {b_.byte('{'), Builder::rule(ws()), Builder::rule(head[0]), b_.byte('}')});
    }

    // ---- Arrays ----
    uint32_t array_schema(const json& s, const std::string& path) {
        const uint32_t min = count(s, "minItems", path, 0);
        uint32_t max = count(s, "maxItems", path, std::max(bounds_.array_items, min));
        if (max < min) fail(path + "/maxItems", "'maxItems' is below 'minItems'");
        std::vector<uint32_t> prefix;
        if (auto p = s.find("prefixItems"); p != s.end()) {
            if (!p->is_array()) fail(path + "/prefixItems", "'prefixItems' must be an array");
            for (size_t i = 0; i < p->size(); ++i)
                prefix.push_back(schema((*p)[i], path + "/prefixItems/" + std::to_string(i)));
        }
        uint32_t item = kNone;
        if (auto it = s.find("items"); it != s.end()) {
            if (it->is_array()) // draft 4's tuple form
                fail(path + "/items", "an array of schemas under 'items' is draft 4's tuple; use "
                                      "'prefixItems'");
            if (!(it->is_boolean() && !it->get<bool>()))
                item = it->is_boolean() ? generic(1) : schema(*it, path + "/items");
        } else {
            item = generic(1);
        }
        if (item == kNone) max = std::min<uint32_t>(max, uint32_t(prefix.size()));
        if (max < min)
            fail(path + "/minItems", "'minItems' needs more items than 'items: false' allows");
        if (prefix.empty()) return bracketed('[', item, min, max, ']');

        // after[i]: i items written (i >= 1), the rest to come.
        const size_t k = prefix.size();
        std::vector<uint32_t> after(k + 1);
        after[k] = b_.add_rule("array-rest");
        if (item != kNone && max > k) {
            const uint32_t next = b_.group("next", {b_.byte(','), Builder::rule(ws()),
                                                    Builder::rule(item), Builder::rule(ws())});
            b_.add_alt(after[k],
                       {Builder::repeat(next, min > k ? min - uint32_t(k) : 0, max - uint32_t(k))});
        } else {
            b_.add_alt(after[k], {});
        }
        for (size_t i = k; i-- > 1;) {
            after[i] = b_.add_rule("array-rest");
            if (i < max)
                b_.add_alt(after[i], {b_.byte(','), Builder::rule(ws()), Builder::rule(prefix[i]),
                                      Builder::rule(ws()), Builder::rule(after[i + 1])});
            if (i >= min) b_.add_alt(after[i], {});
        }
        const uint32_t r = b_.add_rule("array");
        if (min == 0) b_.add_alt(r, {b_.byte('['), Builder::rule(ws()), b_.byte(']')});
        if (max > 0)
            b_.add_alt(r,
                       {b_.byte('['), Builder::rule(ws()), Builder::rule(prefix[0]),
                        Builder::rule(ws()), Builder::rule(after[1 <= k ? 1 : k]), b_.byte(']')});
        return r;
    }

    // ---- allOf: two schemas as one ----
    json merge(const json& a, const json& b, const std::string& path) {
        if (a.is_boolean() || b.is_boolean()) {
            if ((a.is_boolean() && !a.get<bool>()) || (b.is_boolean() && !b.get<bool>()))
                fail(path, "allOf with a false schema: no value matches");
            return a.is_boolean() ? b : a;
        }
        if (!a.is_object() || !b.is_object()) fail(path, "a schema must be an object or a boolean");
        if (++merge_depth_ > 64) fail(path, "allOf merges nested more than 64 deep");
        const json& x = a.contains("$ref") ? merge_ref(a, path) : a;
        const json& y = b.contains("$ref") ? merge_ref(b, path) : b;
        json out = x;
        for (const auto& [k, v] : y.items()) {
            if (kAnnotations.count(k)) continue;
            if (!out.contains(k)) {
                out[k] = v;
                continue;
            }
            json& o = out[k];
            if (o == v) continue;
            if (k == "properties" && o.is_object() && v.is_object()) {
                for (const auto& [name, sub] : v.items())
                    o[name] =
                        o.contains(name) ? merge(o[name], sub, path + "/properties/" + name) : sub;
            } else if (k == "required" && o.is_array() && v.is_array()) {
                for (const json& n : v)
                    if (std::find(o.begin(), o.end(), n) == o.end()) o.push_back(n);
            } else if (k == "type") {
                auto list = [](const json& t) {
                    std::vector<std::string> l;
                    if (t.is_string()) l.push_back(t.get<std::string>());
                    if (t.is_array())
                        for (const json& e : t)
                            if (e.is_string()) l.push_back(e.get<std::string>());
                    return l;
                };
                std::vector<std::string> both;
                for (const std::string& t : list(o)) {
                    const auto other = list(v);
                    if (std::find(other.begin(), other.end(), t) != other.end())
                        both.push_back(t);
                    else if (t == "number" &&
                             std::find(other.begin(), other.end(), "integer") != other.end())
                        both.push_back("integer");
                }
                if (both.empty()) fail(path + "/type", "allOf of types with nothing in common");
                o = both.size() == 1 ? json(both[0]) : json(both);
            } else if (k == "items" || k == "additionalProperties") {
                o = merge(o, v, path + "/" + k);
            } else if (k == "minLength" || k == "minItems" || k == "minimum" ||
                       k == "exclusiveMinimum") {
                if (o.is_number() && v.is_number()) o = std::max(o.get<double>(), v.get<double>());
            } else if (k == "maxLength" || k == "maxItems" || k == "maximum" ||
                       k == "exclusiveMaximum") {
                if (o.is_number() && v.is_number()) o = std::min(o.get<double>(), v.get<double>());
            } else if (k == "enum" && o.is_array() && v.is_array()) {
                json both = json::array();
                for (const json& e : o)
                    if (std::find(v.begin(), v.end(), e) != v.end()) both.push_back(e);
                if (both.empty()) fail(path + "/enum", "allOf of enums with no value in common");
                o = both;
            } else {
                fail(path + "/" + k, "allOf with two different '" + k + "' cannot be merged");
            }
        }
        // additionalProperties false in a part limits the merged object to that part's names.
        for (const json* part : {&x, &y}) {
            auto ap = part->find("additionalProperties");
            if (ap == part->end() || !ap->is_boolean() || ap->get<bool>()) continue;
            if (!out.contains("properties")) continue;
            const json* own = part->contains("properties") ? &(*part)["properties"] : nullptr;
            json kept = json::object();
            for (const auto& [name, sub] : out["properties"].items())
                if (own && own->contains(name)) kept[name] = sub;
            out["properties"] = kept;
            out["additionalProperties"] = false;
        }
        --merge_depth_;
        return out;
    }
    const json& merge_ref(const json& s, const std::string& path) {
        if (s.size() != 1 || !s["$ref"].is_string())
            fail(path, "allOf of a '$ref' with keywords beside it cannot be merged");
        return resolve(s["$ref"].get<std::string>(), path);
    }

    static constexpr uint32_t kNone = UINT32_MAX;
    const json& root_;
    bool strict_;
    JsonBounds bounds_;
    Builder own_;
    Builder& b_;
    std::string where_ = "json_schema";
    std::vector<std::string> warnings_;
    std::map<std::string, uint32_t> refs_;
    std::map<std::pair<uint32_t, uint32_t>, uint32_t> strings_;
    std::vector<uint32_t> generic_;
    uint32_t ws_ = kNone, hex_ = kNone, digit_ = kNone, char_ = kNone, plain_ = kNone;
    uint32_t bool_ = kNone, null_ = kNone, int_ = kNone, num_ = kNone;
    uint32_t date_ = kNone, time_ = kNone;
    int depth_ = 0;
    int merge_depth_ = 0;
};

} // namespace

Grammar compile_json_schema(const nlohmann::ordered_json& schema, bool strict,
                            const JsonBounds& bounds) {
    return SchemaCompiler(schema, strict, bounds).compile();
}

Grammar compile_tool_calls(ToolSyntax syntax, const std::vector<ToolSchema>& tools, bool parallel,
                           bool strict, const JsonBounds& bounds) {
    const ToolSyntaxText& text = tool_syntax_text(syntax);
    if (syntax == ToolSyntax::None) throw Error("tools: this chat template has no tool calls");
    if (tools.empty()) throw Error("tools: no function to call");
    static const nlohmann::ordered_json no_parameters = {
        {"type", "object"},
        {"properties", nlohmann::ordered_json::object()},
        {"additionalProperties", false}};
    Builder b;
    std::vector<std::string> warnings;
    const uint32_t first_call = b.add_rule("first-call");
    const uint32_t later_call = b.add_rule("call");
    const uint32_t id_char = b.char_class({{'0', '9'}, {'a', 'z'}, {'A', 'Z'}}, false);
    for (const ToolSchema& tool : tools) {
        const nlohmann::ordered_json& parameters =
            tool.parameters ? *tool.parameters : no_parameters;
        if (!parameters.is_object() ||
            (parameters.contains("type") && parameters["type"] != "object"))
            throw Error(tool.where + ": a function's parameters must be an object schema "
                                     "({\"type\": \"object\", ...})");
        SchemaCompiler schema(parameters, strict, bounds, b, tool.where);
        const uint32_t arguments = schema.value_rule();
        warnings.insert(warnings.end(), schema.warnings().begin(), schema.warnings().end());
        Builder::Seq tail;
        b.literal(tail, tool.name + "\"" + std::string(text.name_close));
        tail.push_back(Builder::rule(arguments));
        b.literal(tail, text.call_close);
        if (text.id_after) {
            tail.push_back(Builder::repeat(id_char, kMistralIdLength, kMistralIdLength));
            b.literal(tail, "\"}");
        }
        Builder::Seq first, later;
        b.literal(first, text.first_open);
        first.insert(first.end(), tail.begin(), tail.end());
        b.add_alt(first_call, std::move(first));
        if (!text.open.empty()) {
            b.literal(later, text.open);
            later.insert(later.end(), tail.begin(), tail.end());
            b.add_alt(later_call, std::move(later));
        }
    }
    Builder::Seq root_seq{Builder::rule(first_call)};
    if (parallel && text.parallel) {
        Builder::Seq more;
        b.literal(more, text.separator);
        more.push_back(Builder::rule(later_call));
        root_seq.push_back(Builder::repeat(b.group("more-calls", std::move(more)), 0,
                                           uint32_t(kMaxParallelCalls - 1)));
    }
    b.literal(root_seq, text.end);
    const uint32_t root = b.group("tool-calls", std::move(root_seq));
    if (!b.has_alts(later_call)) b.add_alt(later_call, {b.bytes(ByteSet())}); // never taken
    Grammar g = b.finish(root);
    g.warnings = std::move(warnings);
    return g;
}

Grammar json_object_grammar(const JsonBounds& bounds) {
    static const nlohmann::ordered_json empty = nlohmann::ordered_json::object();
    return SchemaCompiler(empty, true, bounds).any_object();
}

} // namespace woolly::grammar
