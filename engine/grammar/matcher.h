// matcher.h — running a byte grammar against tokens. The grammar's pushdown states are
// determinised lazily: a state is a set of parse stacks, interned, with a row of byte
// transitions (one per byte class) filled in as they are first taken. The tokens allowed next
// come from walks of the vocabulary's tries (TokenTrie) that follow those transitions and skip
// every subtree whose prefix the grammar refuses, so each trie edge costs a table lookup once the
// state is warm. A walk's answer is kept for the state's class: states whose repetition counts
// differ only where no token can reach a bound (a long string's 3rd and 30th character) share
// it, so inside a string the short tokens' mask is walked once, not once per token. Where a state
// loops on characters (a string's), the walk skips the subtrees made of those characters alone
// and allows their tokens together, as many characters deep as the loop goes (to the string's
// maxLength).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/grammar/grammar.h"
#include "engine/text/constraint.h"
#include "engine/text/token_trie.h"

namespace woolly::grammar {

class Matcher final : public ConstraintState {
public:
    Matcher(std::shared_ptr<const Grammar> grammar, const TokenTrie& trie,
            const std::vector<TokenId>& eog);

    bool allows(TokenId token) override;
    void accept(TokenId token) override;
    const uint64_t* mask() override;
    bool complete() const override { return states_[state_].accepting; }
    bool closed() const override { return states_[state_].n_stacks == 0; }

    // Bytes instead of tokens (tests, and checking text after the fact): false, with the state
    // unchanged, when the grammar refuses them.
    bool accept_bytes(std::string_view bytes);
    // Whether the grammar takes `bytes` next (the state unchanged either way).
    bool allows_bytes(std::string_view bytes) { return walk(state_, bytes) != kDead; }
    // States made so far (they are dropped and remade past a bound).
    size_t n_states() const { return states_.size(); }

    static constexpr size_t kMaxStates = 1 << 14;

private:
    static constexpr uint32_t kBottom = UINT32_MAX;  // the parent of a root stack frame
    static constexpr uint32_t kUnknown = UINT32_MAX; // a transition not computed yet
    static constexpr uint32_t kDead = 0;             // the state that matches nothing
    static constexpr size_t kMaskSlots = 16;         // per trie part
    static constexpr size_t kShortcutBytes = 32;     // fewer looping bytes: no shortcut
    static constexpr size_t kParts = TokenTrie::kParts;
    // The parts whose counted loops follow multi-byte characters too; the longest tokens' follow
    // ASCII alone, which keeps the states such a loop makes to one a character.
    static constexpr size_t kUtf8Parts = 2;

    struct Frame { // one frame of a parse stack: where to go on, and below what
        uint32_t pos, count, parent;
    };
    struct FrameHash {
        size_t operator()(const Frame& f) const {
            uint64_t h = (uint64_t(f.pos) << 32 | f.count) * 0x9e3779b97f4a7c15ull;
            return size_t(h ^ (uint64_t(f.parent) * 0xc2b2ae3d27d4eb4full));
        }
    };
    struct FrameEq {
        bool operator()(const Frame& a, const Frame& b) const {
            return a.pos == b.pos && a.count == b.count && a.parent == b.parent;
        }
    };
    struct State {
        uint32_t first_stack = 0; // into stacks_of_states_
        uint32_t n_stacks = 0;
        uint32_t row = kUnknown; // into rows_, once a transition is asked for
        uint32_t canonical[kParts] = {kUnknown, kUnknown,
                                      kUnknown}; // per trie part, see canonical()
        bool accepting = false;
    };
    // The masks of one trie part, for a few canonical states.
    struct MaskCache {
        std::vector<uint64_t> masks;  // [kMaskSlots][words]
        std::vector<uint32_t> states; // [kMaskSlots] which state each slot holds
        size_t next = 0;
    };

    void clear_tables();
    uint32_t frame(uint32_t pos, uint32_t count, uint32_t parent);
    void close(uint32_t pos, uint32_t count, uint32_t parent);
    uint32_t intern_scratch();
    uint32_t step(uint32_t state, uint8_t byte);
    uint32_t walk(uint32_t state, std::string_view bytes);
    void compact();
    uint32_t canonical_frame(uint32_t id, size_t part);
    uint32_t canonical(uint32_t state, size_t part);
    // Characters that keep a state in a loop (a JSON string's), and how many of them in a row it
    // takes: the trie part's longest token when the loop does not end.
    struct Loop {
        const TokenTrie::Shortcut* shortcut = nullptr;
        uint32_t budget = 0;
        bool ends = false; // after `budget` of them, none is taken
    };
    Loop loop_of(uint32_t from, size_t part);
    template <class Lands> bool utf8_loops(uint32_t from, Lands lands);
    bool same_step(uint32_t state, uint8_t a, uint8_t b) const;
    const uint64_t* part_mask(size_t part);
    const TokenTrie::Shortcut* shortcut_for(const TokenTrie::AsciiSet& set, bool utf8);

    std::shared_ptr<const Grammar> grammar_;
    const TokenTrie& trie_;
    std::vector<TokenId> eog_;

    std::vector<Frame> frames_;
    std::unordered_map<Frame, uint32_t, FrameHash, FrameEq> frame_ids_;
    std::vector<State> states_;
    std::vector<uint32_t> stacks_of_states_;
    std::unordered_map<std::string, uint32_t> state_ids_;
    std::vector<uint32_t> rows_; // [n_classes_] per state that has a row
    size_t n_classes_ = 0;
    uint32_t state_ = kDead;
    // [part][frame] the frame with its counts made canonical (kUnknown: not computed yet)
    std::vector<uint32_t> canonical_frames_[kParts];
    uint16_t part_depth_[kParts] = {};

    // Scratch for step(): the stacks of the state being made, the closure's work list, and
    // which frames it has seen (visited_[frame] == epoch_).
    std::vector<uint32_t> scratch_;
    bool scratch_accepting_ = false;
    std::vector<Frame> work_;
    std::vector<uint32_t> visited_;
    uint32_t epoch_ = 0;
    std::string key_;

    // The tokens allowed: per trie part for a few canonical states, and both parts together
    // (plus end-of-generation) for the current one.
    MaskCache caches_[kParts];
    std::vector<uint64_t> mask_; // [words]
    uint32_t mask_state_ = kUnknown;
    size_t words_ = 0;
    std::vector<uint32_t> walk_; // [max_depth + 1] the trie walk's states by depth
    std::vector<uint32_t> rows_at_; // [max_depth + 1] where each of those states' row starts
    // The multi-byte characters as the grammar writes them (utf8_sequences of U+0080..U+10FFFF),
    // each byte range as one byte of each of its byte classes: [sequence][byte][class].
    std::vector<std::vector<std::vector<uint8_t>>> utf8_bytes_;
    uint32_t utf8_states_[2][64]; // scratch for utf8_loops()
    std::vector<uint32_t> work_chain_;
    std::vector<std::shared_ptr<const TokenTrie::Shortcut>>
        shortcuts_; // canonical_frame()'s frames still to do
};

// A compiled grammar as generation sees it.
class GrammarConstraint final : public Constraint {
public:
    explicit GrammarConstraint(Grammar grammar)
        : grammar_(std::make_shared<const Grammar>(std::move(grammar))) {}
    std::unique_ptr<ConstraintState> start(const Vocab& vocab) const override;
    const std::vector<std::string>& warnings() const override { return grammar_->warnings; }
    const Grammar& grammar() const { return *grammar_; }

private:
    std::shared_ptr<const Grammar> grammar_;
};

// Tool calls (compile_tool_calls) as a constraint. Required (tool_choice required or a named
// function): the reply is the calls from its first token. Otherwise (auto) the reply is free
// until it writes the syntax's trigger, and the calls' grammar holds from the trigger on (a lazy
// grammar, as llama.cpp has), so that a call's arguments always parse.
class ToolCallConstraint final : public Constraint {
public:
    ToolCallConstraint(Grammar grammar, std::string trigger, bool required)
        : grammar_(std::make_shared<const Grammar>(std::move(grammar))),
          trigger_(std::move(trigger)), required_(required) {}
    std::unique_ptr<ConstraintState> start(const Vocab& vocab) const override;
    const std::vector<std::string>& warnings() const override { return grammar_->warnings; }

private:
    std::shared_ptr<const Grammar> grammar_;
    std::string trigger_;
    bool required_;
};

} // namespace woolly::grammar
