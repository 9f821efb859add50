// matcher.cpp — the lazily determinised pushdown matcher and its trie walk.
#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cstring>

#include "engine/error.h"

namespace woolly::grammar {

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, const TokenTrie& trie,
                 const std::vector<TokenId>& eog)
    : grammar_(std::move(grammar)), trie_(trie), eog_(eog) {
    words_ = (size_t(trie_.n_vocab()) + 63) / 64;
    masks_.resize(kMaskSlots * words_);
    mask_states_.assign(kMaskSlots, kUnknown);
    walk_.resize(size_t(trie_.max_depth()) + 1);
    frames_.reserve(1024);
    states_.reserve(256);
    clear_tables();
    scratch_.clear();
    scratch_accepting_ = false;
    ++epoch_;
    for (uint32_t alt : grammar_->alts[grammar_->root]) close(alt, 0, kBottom);
    state_ = intern_scratch();
}

void Matcher::clear_tables() {
    frames_.clear();
    frame_ids_.clear();
    states_.clear();
    stacks_of_states_.clear();
    state_ids_.clear();
    rows_.clear();
    visited_.clear();
    std::fill(mask_states_.begin(), mask_states_.end(), kUnknown);
    states_.push_back(State{}); // kDead: no stacks, not accepting
    state_ids_.emplace(std::string(1, '\0'), kDead);
}

uint32_t Matcher::frame(uint32_t pos, uint32_t count, uint32_t parent) {
    const Frame f{pos, count, parent};
    auto [it, added] = frame_ids_.emplace(f, uint32_t(frames_.size()));
    if (added) {
        frames_.push_back(f);
        visited_.push_back(0);
    }
    return it->second;
}

// Adds to scratch_ every stack that `pos` (with repetition count `count`, over the stack
// `parent`) leads to before it next reads a byte, and notes when it leads to the end of the
// root rule.
void Matcher::close(uint32_t pos, uint32_t count, uint32_t parent) {
    const auto& symbols = grammar_->symbols;
    work_.clear();
    work_.push_back({pos, count, parent});
    while (!work_.empty()) {
        const Frame f = work_.back();
        work_.pop_back();
        const uint32_t id = frame(f.pos, f.count, f.parent);
        if (visited_[id] == epoch_) continue;
        visited_[id] = epoch_;
        const Symbol& s = symbols[f.pos];
        switch (s.kind) {
        case Symbol::Kind::End:
            if (f.parent == kBottom) {
                scratch_accepting_ = true;
            } else {
                const Frame up = frames_[f.parent];
                work_.push_back(up);
            }
            break;
        case Symbol::Kind::Bytes:
            scratch_.push_back(id);
            break;
        case Symbol::Kind::Rule: {
            // A rule at the end of its alternative returns straight to the parent (a tail call),
            // so right recursion keeps the stack flat.
            const uint32_t cont = symbols[f.pos + 1].kind == Symbol::Kind::End
                                      ? f.parent
                                      : frame(f.pos + 1, 0, f.parent);
            for (uint32_t alt : grammar_->alts[s.index]) work_.push_back({alt, 0, cont});
            break;
        }
        case Symbol::Kind::Repeat: {
            if (f.count >= s.min) work_.push_back({f.pos + 1, 0, f.parent});
            if (f.count < s.max) {
                // An unbounded repetition past its minimum is the same state however often it
                // has gone round, so counts stop at the minimum there.
                const uint32_t next =
                    s.max == kUnbounded ? std::min(f.count + 1, s.min) : f.count + 1;
                const uint32_t cont = frame(f.pos, next, f.parent);
                for (uint32_t alt : grammar_->alts[s.index]) work_.push_back({alt, 0, cont});
            }
            break;
        }
        }
    }
}

uint32_t Matcher::intern_scratch() {
    std::sort(scratch_.begin(), scratch_.end());
    scratch_.erase(std::unique(scratch_.begin(), scratch_.end()), scratch_.end());
    key_.assign(1, scratch_accepting_ ? '\1' : '\0');
    key_.append(reinterpret_cast<const char*>(scratch_.data()), scratch_.size() * sizeof(uint32_t));
    auto it = state_ids_.find(key_);
    if (it != state_ids_.end()) return it->second;
    State s;
    s.first_stack = uint32_t(stacks_of_states_.size());
    s.n_stacks = uint32_t(scratch_.size());
    s.accepting = scratch_accepting_;
    stacks_of_states_.insert(stacks_of_states_.end(), scratch_.begin(), scratch_.end());
    const auto id = uint32_t(states_.size());
    states_.push_back(s);
    state_ids_.emplace(key_, id);
    return id;
}

uint32_t Matcher::step(uint32_t state, uint8_t byte) {
    if (state == kDead) return kDead;
    if (states_[state].row != kUnknown) {
        const uint32_t next = rows_[size_t(states_[state].row) * 256 + byte];
        if (next != kUnknown) return next;
    } else {
        states_[state].row = uint32_t(rows_.size() / 256);
        rows_.resize(rows_.size() + 256, kUnknown);
    }
    scratch_.clear();
    scratch_accepting_ = false;
    ++epoch_;
    const State s = states_[state];
    for (uint32_t i = 0; i < s.n_stacks; ++i) {
        const Frame f = frames_[stacks_of_states_[s.first_stack + i]];
        const Symbol& sym = grammar_->symbols[f.pos];
        if (grammar_->byte_sets[sym.index].test(byte)) close(f.pos + 1, 0, f.parent);
    }
    const uint32_t next = intern_scratch();
    rows_[size_t(states_[state].row) * 256 + byte] = next;
    return next;
}

uint32_t Matcher::walk(uint32_t state, std::string_view bytes) {
    for (char c : bytes) {
        state = step(state, uint8_t(c));
        if (state == kDead) break;
    }
    return state;
}

bool Matcher::allows(TokenId token) {
    if (std::binary_search(eog_.begin(), eog_.end(), token)) return complete();
    const std::string_view bytes = trie_.bytes(token);
    if (bytes.empty()) return false;
    return walk(state_, bytes) != kDead;
}

void Matcher::accept(TokenId token) {
    if (std::binary_search(eog_.begin(), eog_.end(), token)) return;
    const uint32_t next = walk(state_, trie_.bytes(token));
    if (next == kDead || trie_.bytes(token).empty())
        throw Error("grammar: token " + std::to_string(token) + " is not allowed here");
    state_ = next;
    if (states_.size() > kMaxStates) compact();
}

bool Matcher::accept_bytes(std::string_view bytes) {
    const uint32_t next = walk(state_, bytes);
    if (next == kDead) return false;
    state_ = next;
    if (states_.size() > kMaxStates) compact();
    return true;
}

// Starts the tables over from the current state alone: its stacks are copied out frame by
// frame, the tables cleared, and the stacks made again.
void Matcher::compact() {
    const State current = states_[state_];
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> stacks;
    for (uint32_t i = 0; i < current.n_stacks; ++i) {
        std::vector<std::pair<uint32_t, uint32_t>> chain;
        for (uint32_t id = stacks_of_states_[current.first_stack + i]; id != kBottom;
             id = frames_[id].parent)
            chain.emplace_back(frames_[id].pos, frames_[id].count);
        stacks.push_back(std::move(chain));
    }
    clear_tables();
    scratch_.clear();
    scratch_accepting_ = current.accepting;
    for (const auto& chain : stacks) {
        uint32_t parent = kBottom;
        for (auto it = chain.rbegin(); it != chain.rend(); ++it)
            parent = frame(it->first, it->second, parent);
        scratch_.push_back(parent);
    }
    state_ = intern_scratch();
}

const uint64_t* Matcher::mask() {
    for (size_t i = 0; i < kMaskSlots; ++i)
        if (mask_states_[i] == state_) return masks_.data() + i * words_;
    const size_t slot = next_slot_;
    next_slot_ = (next_slot_ + 1) % kMaskSlots;
    uint64_t* out = masks_.data() + slot * words_;
    std::memset(out, 0, words_ * sizeof(uint64_t));

    const auto& nodes = trie_.nodes();
    const TokenId* tokens = trie_.tokens();
    walk_[0] = state_;
    for (size_t i = 0; i < nodes.size();) {
        const TokenTrie::Node& n = nodes[i];
        const uint32_t s = step(walk_[n.depth - 1], n.byte);
        if (s == kDead) {
            i = n.subtree_end;
            continue;
        }
        walk_[n.depth] = s;
        for (uint32_t k = 0; k < n.n_tokens; ++k) {
            const auto t = uint32_t(tokens[n.first_token + k]);
            out[t / 64] |= uint64_t(1) << (t % 64);
        }
        ++i;
    }
    if (complete())
        for (TokenId t : eog_) out[size_t(t) / 64] |= uint64_t(1) << (size_t(t) % 64);
    mask_states_[slot] = state_;
    return out;
}

std::unique_ptr<ConstraintState> GrammarConstraint::start(const Vocab& vocab) const {
    return std::make_unique<Matcher>(grammar_, vocab.trie(), vocab.eog_tokens());
}

} // namespace woolly::grammar
