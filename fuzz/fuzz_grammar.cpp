// fuzz_grammar.cpp — arbitrary text as a GBNF grammar or a JSON Schema (the first byte picks),
// and when it compiles, the rest of the input's bytes and tokens run through its matcher (over
// the bundled model's vocabulary): every input compiles or is refused with an Error; the matcher
// never crashes, and its mask agrees with allows() for every token it is asked about. The input is
// also a reply for each family's tool-call parser, given in pieces the input's bytes cut: the
// parser never crashes, and what it reports as content is text of the reply, in order.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/text/token_trie.h"
#include "engine/text/tool_calls.h"
#include "engine/text/vocab.h"

namespace {

struct Bundled {
    std::unique_ptr<woolly::GgufFile> file = woolly::GgufFile::open(WOOLLY_SOURCE_MODEL);
    woolly::Vocab vocab{*file};
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace woolly;
    if (size < 2) return 0;
    static Bundled bundled;
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    // The grammar is the text up to the first NUL; what follows drives the matcher.
    const size_t cut = input.find('\0');
    const std::string_view text = input.substr(0, cut);
    const std::string_view drive = cut == std::string_view::npos ? "" : input.substr(cut + 1);
    for (ToolSyntax syntax : {ToolSyntax::Llama31, ToolSyntax::Hermes, ToolSyntax::MistralNemo}) {
        ToolCallParser parser(syntax);
        std::vector<ToolCallParser::Event> events;
        const size_t piece = size_t(data[0] >> 4) + 1;
        for (size_t at = 0; at < input.size(); at += piece)
            parser.push(input.substr(at, piece), events);
        parser.finish(events);
        size_t from = 0; // content comes out as a subsequence of the input, in order
        for (const auto& e : events) {
            if (e.kind != ToolCallParser::Event::Kind::Content) continue;
            const size_t found = input.find(e.text, from);
            if (found == std::string_view::npos) __builtin_trap();
            from = found + e.text.size();
        }
    }
    grammar::Grammar g;
    try {
        if (data[0] & 1) {
            const auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
            if (schema.is_discarded()) return 0;
            g = grammar::compile_json_schema(schema, (data[0] & 2) != 0);
        } else {
            g = grammar::parse_gbnf(text);
        }
    } catch (const Error&) {
        return 0;
    }
    grammar::Matcher m(std::make_shared<const grammar::Grammar>(std::move(g)), bundled.vocab.trie(),
                       bundled.vocab.eog_tokens());
    // Each byte of `drive` either feeds a byte, or (high bit set) asks for the mask and takes
    // the token it names, if allowed.
    for (size_t i = 0; i < drive.size(); ++i) {
        const auto b = uint8_t(drive[i]);
        if (b < 0x80) {
            m.accept_bytes(drive.substr(i, 1));
            continue;
        }
        const uint64_t* mask = m.mask();
        const TokenId t = TokenId((b & 0x7f) * 4) % bundled.vocab.size();
        const bool in_mask = (mask[t / 64] >> (t % 64)) & 1;
        if (in_mask != m.allows(t)) __builtin_trap();
        if (in_mask && !bundled.vocab.is_eog(t)) m.accept(t);
    }
    (void)m.complete();
    return 0;
}
