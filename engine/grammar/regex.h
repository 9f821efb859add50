// regex.h — the regular expressions of JSON Schema's `pattern`, as grammar rules over the JSON
// text of a string (characters that JSON escapes are written escaped).
#pragma once

#include <cstdint>
#include <string_view>

#include "engine/grammar/grammar.h"

namespace woolly::grammar {

// A rule matching the JSON-escaped text (without quotes) of the strings `pattern` matches
// anywhere in them, as JSON Schema reads patterns (unanchored unless ^ and $ say otherwise).
// Unbounded repetition (*, +, {n,}) stops at `max_repeat`. The subset: literals and escapes
// (\d \w \s \D \W \S \n \t \r \f \v \xHH \uHHHH and escaped punctuation), ., [classes] and
// [^negated], groups ( ) and (?: ), |, * + ? {n} {n,} {n,m} (lazy forms read the same), and ^
// and $ at the ends. `.`, negated classes and \D \W \S never yield control characters. Anything
// else (backreferences, lookaround, \b) throws Error naming it and its offset.
uint32_t compile_regex(Builder& b, std::string_view pattern, uint32_t max_repeat);

} // namespace woolly::grammar
