// grammar_support.h — what the grammar tests share: the bundled model's vocabulary, whether a
// grammar takes a text whole, and a mask compared with trying each token alone.
#pragma once

#include <memory>
#include <string_view>

#include "engine/gguf/gguf.h"
#include "engine/grammar/matcher.h"
#include "engine/text/vocab.h"
#include "test_support.h"

namespace woolly::test {

inline const Vocab& bundled_vocab() {
    static auto file = GgufFile::open(bundled_model());
    static Vocab vocab(*file);
    return vocab;
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

} // namespace woolly::test
