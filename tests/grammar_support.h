// grammar_support.h — what the grammar tests share: the bundled model's vocabulary, whether a
// grammar takes a text whole, and a mask compared with trying each token alone.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "engine/gguf/gguf.h"
#include "engine/grammar/matcher.h"
#include "engine/text/tokenizer.h"
#include "engine/text/vocab.h"
#include "test_support.h"

namespace woolly::test {

inline const Vocab& bundled_vocab() {
    static auto file = GgufFile::open(bundled_model());
    static Vocab vocab(*file);
    return vocab;
}

// Llama 3's 128k vocabulary from ../shared, or null (saying why) when it is absent or this build
// has no PCRE2 for its BPE tokenizer: the large real vocabulary the mask tests walk.
inline std::unique_ptr<Vocab> llama3_vocab() {
    const std::string path = shared_file("vocab/ggml-vocab-llama3.gguf");
    if (!std::filesystem::exists(path)) {
        MESSAGE("skipped: " << path << " not found (../shared is absent)");
        return nullptr;
    }
    if (!BpeTokenizer::available()) {
        MESSAGE("skipped: Llama 3's BPE vocabulary needs PCRE2, which this build lacks");
        return nullptr;
    }
    auto file = GgufFile::open(path);
    return std::make_unique<Vocab>(*file);
}

// Whether the grammar accepts `text` whole (all bytes taken and the end reached).
inline bool accepts(const grammar::Grammar& g, std::string_view text) {
    grammar::Matcher m(std::make_shared<const grammar::Grammar>(g), bundled_vocab().trie(),
                       bundled_vocab().eog_tokens());
    return m.accept_bytes(text) && m.complete();
}

// How many tokens `mask` gets wrong against `one` (a matcher in the same state) trying each
// alone; `allowed` counts the tokens in the mask.
inline int mask_mismatches(const uint64_t* mask, grammar::Matcher& one, const Vocab& vocab,
                           int& allowed) {
    int mismatches = 0;
    allowed = 0;
    for (TokenId t = 0; t < vocab.size(); ++t) {
        const bool in_mask = (mask[t / 64] >> (t % 64)) & 1;
        allowed += in_mask;
        mismatches += in_mask != one.allows(t);
    }
    return mismatches;
}

// A matcher carried along a text (so that its masks come from states and caches it has built
// on the way), each mask checked against a fresh matcher at the same text trying every token
// alone.
class CarriedMatcher {
public:
    CarriedMatcher(std::shared_ptr<const grammar::Grammar> g, const Vocab& vocab)
        : grammar_(std::move(g)), vocab_(vocab),
          matcher_(grammar_, vocab.trie(), vocab.eog_tokens()) {}

    void feed(std::string_view bytes) {
        REQUIRE(matcher_.accept_bytes(bytes));
        text_ += bytes;
    }
    // No token differs from the fresh matcher's answer, and some are allowed.
    void check() {
        const uint64_t* mask = matcher_.mask();
        grammar::Matcher one(grammar_, vocab_.trie(), vocab_.eog_tokens());
        REQUIRE(one.accept_bytes(text_));
        int allowed = 0;
        const int mismatches = mask_mismatches(mask, one, vocab_, allowed);
        INFO(text_);
        CHECK(mismatches == 0);
        CHECK(allowed > 0);
    }

private:
    std::shared_ptr<const grammar::Grammar> grammar_;
    const Vocab& vocab_;
    grammar::Matcher matcher_;
    std::string text_;
};

} // namespace woolly::test
