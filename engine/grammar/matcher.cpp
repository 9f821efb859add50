// matcher.cpp — the lazily determinised pushdown matcher and its trie walk.
#include "engine/grammar/matcher.h"

#include <algorithm>
#include <cstring>

#include "engine/error.h"

namespace woolly::grammar {

Matcher::Matcher(std::shared_ptr<const Grammar> grammar, const TokenTrie& trie,
                 const std::vector<TokenId>& eog)
    : grammar_(std::move(grammar)), trie_(trie), eog_(eog) {
    // One word more than the vocabulary needs: room for the spare bit at n_vocab.
    words_ = size_t(trie_.n_vocab()) / 64 + 1;
    for (MaskCache& c : caches_) {
        c.masks.resize(kMaskSlots * words_);
        c.states.assign(kMaskSlots, kUnknown);
    }
    mask_.resize(words_);
    n_classes_ = grammar_->class_byte.size();
    for (size_t p = 0; p < kParts; ++p) part_depth_[p] = trie_.part(p).max_depth;
    walk_.resize(size_t(trie_.max_depth()) + 1);
    rows_at_.resize(walk_.size());
    for (const auto& sequence : utf8_sequences(0x80, 0x10ffff)) {
        auto& bytes = utf8_bytes_.emplace_back();
        for (const auto& [lo, hi] : sequence) {
            std::bitset<256> seen;
            auto& reps = bytes.emplace_back();
            for (uint32_t x = lo; x <= hi; ++x)
                if (!seen.test(grammar_->byte_class[x])) {
                    seen.set(grammar_->byte_class[x]);
                    reps.push_back(uint8_t(x));
                }
        }
    }
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
    for (auto& c : canonical_frames_) c.clear();
    for (MaskCache& c : caches_) std::fill(c.states.begin(), c.states.end(), kUnknown);
    mask_state_ = kUnknown;
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
    const size_t cls = grammar_->byte_class[byte];
    if (states_[state].row != kUnknown) {
        const uint32_t next = rows_[size_t(states_[state].row) * n_classes_ + cls];
        if (next != kUnknown) return next;
    } else {
        states_[state].row = uint32_t(rows_.size() / n_classes_);
        rows_.resize(rows_.size() + n_classes_, kUnknown);
    }
    byte = grammar_->class_byte[cls];
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
    rows_[size_t(states_[state].row) * n_classes_ + cls] = next;
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

// A frame with the counts of it and its parents made canonical for `part`'s tokens: a
// repetition whose body reads at least a byte counts up at most once per byte, so within D bytes
// (the part's longest token) count c acts as `min` does when c >= min and max - c > D, and as 0
// does when min - c > D. Other counts stay exact.
uint32_t Matcher::canonical_frame(uint32_t id, size_t part) {
    std::vector<uint32_t>& memo = canonical_frames_[part];
    const uint32_t depth = part_depth_[part];
    // The chain down to the first frame already known (or the bottom), then back up it.
    std::vector<uint32_t>& chain = work_chain_;
    chain.clear();
    for (uint32_t f = id; f != kBottom && (f >= memo.size() || memo[f] == kUnknown);
         f = frames_[f].parent)
        chain.push_back(f);
    for (size_t i = chain.size(); i-- > 0;) {
        const Frame f = frames_[chain[i]];
        const uint32_t parent = f.parent == kBottom ? kBottom : memo[f.parent];
        uint32_t count = f.count;
        const Symbol& s = grammar_->symbols[f.pos];
        if (s.kind == Symbol::Kind::Repeat && !grammar_->nullable[s.index]) {
            const bool far_from_max = s.max == kUnbounded || s.max - count > depth;
            if (count >= s.min && far_from_max)
                count = s.min;
            else if (count < s.min && s.min - count > depth)
                count = 0;
        }
        const uint32_t canon = frame(f.pos, count, parent);
        if (memo.size() < frames_.size()) memo.resize(frames_.size(), kUnknown);
        memo[chain[i]] = canon;
    }
    return id == kBottom ? kBottom : memo[id];
}

// The state whose stacks are `state`'s with canonical counts: for every token of `part` it
// allows exactly what `state` allows, so its mask stands for both.
uint32_t Matcher::canonical(uint32_t state, size_t part) {
    if (states_[state].canonical[part] != kUnknown) return states_[state].canonical[part];
    const State s = states_[state];
    std::vector<uint32_t> stacks;
    stacks.reserve(s.n_stacks);
    for (uint32_t i = 0; i < s.n_stacks; ++i)
        stacks.push_back(canonical_frame(stacks_of_states_[s.first_stack + i], part));
    scratch_ = std::move(stacks);
    scratch_accepting_ = s.accepting;
    const uint32_t canon = intern_scratch();
    states_[state].canonical[part] = canon;
    states_[canon].canonical[part] = canon;
    return canon;
}

// The tokens of one trie part allowed from the current state, from the cache or by a walk.
const uint64_t* Matcher::part_mask(size_t part) {
    const uint32_t from = canonical(state_, part);
    MaskCache& cache = caches_[part];
    for (size_t i = 0; i < kMaskSlots; ++i)
        if (cache.states[i] == from) return cache.masks.data() + i * words_;
    const size_t slot = cache.next;
    cache.next = (cache.next + 1) % kMaskSlots;
    uint64_t* out = cache.masks.data() + slot * words_;
    std::memset(out, 0, words_ * sizeof(uint64_t));

    const TokenTrie::Part& trie = trie_.part(part);
    const TokenTrie::Node* nodes = trie.nodes.data();
    const size_t n_nodes = trie.nodes.size();
    const TokenId* tokens = trie.tokens.data();
    // walk_[d]: the state after the first d bytes of the current path, rows_at_[d] where its
    // row starts. Known transitions are read straight from the rows; only a missing one goes
    // through step(). A node's token bit is set without a branch (a node without a token sets
    // the spare bit past the vocabulary).
    const uint8_t* classes = grammar_->byte_class.data();
    const uint32_t* rows = rows_.data();
    auto row_of = [&](uint32_t state) {
        const uint32_t row = states_[state].row;
        return row == kUnknown ? kUnknown : uint32_t(row * n_classes_);
    };
    // A subtree whose paths are all the loop's characters (TokenTrie::Shortcut) is not walked:
    // its tokens within the loop's budget are allowed together after the walk, and when the loop
    // ends there, the longer ones are refused.
    const Loop loop = loop_of(from, part);
    rows = rows_.data();
    const uint64_t* closed = loop.shortcut ? loop.shortcut->closed[part].data() : nullptr;
    const uint32_t budget = loop.ends ? UINT32_MAX : loop.budget;
    walk_[0] = from;
    rows_at_[0] = row_of(from);
    for (size_t i = 0; i < n_nodes;) {
        const TokenTrie::Node& n = nodes[i];
        const size_t d = n.depth;
        if (closed && n.subtree_chars <= budget && ((closed[i / 64] >> (i % 64)) & 1)) {
            i = n.subtree_end;
            continue;
        }
        const uint32_t r = rows_at_[d - 1];
        uint32_t s = r == kUnknown ? kUnknown : rows[r + classes[n.byte]];
        if (s == kUnknown) {
            s = step(walk_[d - 1], n.byte);
            rows = rows_.data();
            rows_at_[d - 1] = row_of(walk_[d - 1]);
        }
        if (s == kDead) {
            i = n.subtree_end;
            continue;
        }
        walk_[d] = s;
        rows_at_[d] = row_of(s);
        out[n.token / 64] |= uint64_t(1) << (n.token % 64);
        if (n.n_tokens > 1) {
            for (uint32_t k = 1; k < n.n_tokens; ++k) {
                const auto t = uint32_t(tokens[n.first_token + k]);
                out[t / 64] |= uint64_t(1) << (t % 64);
            }
        }
        ++i;
    }
    if (loop.shortcut && part == 0) {
        const uint64_t* all =
            loop.shortcut->first_upto[std::min<size_t>(loop.budget, TokenTrie::kPartBytes[0])]
                .data();
        for (size_t w = 0; w < words_; ++w) out[w] |= all[w];
    } else if (loop.shortcut) {
        for (const auto& [length, t] : loop.shortcut->tokens[part]) {
            if (length > loop.budget) break;
            out[size_t(t) / 64] |= uint64_t(1) << (size_t(t) % 64);
        }
    }
    cache.states[slot] = from;
    return out;
}

// Whether every well-formed multi-byte character takes `from` to a state that `lands` accepts
// (cut short, to a live state).
template <class Lands> bool Matcher::utf8_loops(uint32_t from, Lands lands) {
    for (const auto& row : utf8_bytes_) {
        uint32_t* now = utf8_states_[0];
        uint32_t* next = utf8_states_[1];
        size_t n_now = 1, n_next = 0;
        now[0] = from;
        for (const auto& bytes : row) {
            n_next = 0;
            for (size_t i = 0; i < n_now; ++i)
                for (uint8_t b : bytes) {
                    const uint32_t s = step(now[i], b);
                    if (s == kDead) return false;
                    if (std::find(next, next + n_next, s) != next + n_next) continue;
                    if (n_next == 64) return false; // more than a loop has
                    next[n_next++] = s;
                }
            std::swap(now, next);
            n_now = n_next;
        }
        for (size_t i = 0; i < n_now; ++i)
            if (!lands(now[i])) return false;
    }
    return true;
}

// Where `from` loops on characters, for the tokens of `part`. Either the ASCII bytes after which
// it is `from` again (canonically): a loop that takes any number of them. Or else the ASCII bytes
// that lead to one state, the most bytes to any: a loop that counts (a string near its
// maxLength), as far as that state and the ones after it take all those bytes to one state
// again. Multi-byte characters join the loop when every one of them goes where its bytes go.
Matcher::Loop Matcher::loop_of(uint32_t from, size_t part) {
    const uint32_t depth = part_depth_[part];
    uint32_t target[128];
    TokenTrie::AsciiSet loops;
    for (uint32_t b = 0; b < 128; ++b) {
        target[b] = step(from, uint8_t(b));
        if (target[b] != kDead && canonical(target[b], part) == from) loops.set(b);
    }
    if (loops.count() >= kShortcutBytes) {
        const bool utf8 = utf8_loops(from, [&](uint32_t s) { return canonical(s, part) == from; });
        return {shortcut_for(loops, utf8), depth};
    }

    uint32_t sorted[128];
    std::copy(target, target + 128, sorted);
    std::sort(sorted, sorted + 128);
    uint32_t best = kDead, best_n = 0;
    for (size_t i = 0, j = 0; i < 128; i = j) {
        while (j < 128 && sorted[j] == sorted[i]) ++j;
        if (sorted[i] != kDead && j - i > best_n) best = sorted[i], best_n = uint32_t(j - i);
    }
    if (best_n < kShortcutBytes) return {};
    TokenTrie::AsciiSet set;
    uint8_t reps[128]; // one byte of each class in the set
    size_t n_reps = 0;
    std::bitset<256> seen;
    for (uint32_t b = 0; b < 128; ++b) {
        if (target[b] != best) continue;
        set.set(b);
        const uint8_t cls = grammar_->byte_class[b];
        if (!seen.test(cls)) seen.set(cls), reps[n_reps++] = uint8_t(b);
    }
    // It need go no further than the part's longest token of those characters.
    const bool utf8 = part < kUtf8Parts && utf8_loops(from, [&](uint32_t s) { return s == best; });
    const TokenTrie::Shortcut* shortcut = shortcut_for(set, utf8);
    const auto& tokens = shortcut->tokens[part];
    const uint32_t longest = part == 0 ? depth : tokens.empty() ? 1 : tokens.back().first;
    uint32_t budget = 1;
    for (uint32_t s = best; budget < longest; ++budget) {
        const uint32_t next = step(s, reps[0]);
        bool same = true;
        for (size_t r = 1; r < n_reps && same; ++r) same = same_step(s, reps[0], reps[r]);
        if (next == kDead && same) {
            bool ends = true;
            for (size_t k = 0; utf8 && ends && k < utf8_bytes_.size(); ++k)
                for (uint8_t b : utf8_bytes_[k][0]) ends = ends && step(s, b) == kDead;
            return {shortcut, budget, ends};
        }
        if (next == kDead || !same ||
            (utf8 && !utf8_loops(s, [&](uint32_t x) { return x == next; })))
            break;
        if (next == s) return {shortcut, longest}; // a repetition past its minimum: no end
        s = next;
    }
    return {shortcut, budget};
}

// Whether bytes `a` and `b` take `state` to the same state: they do when every stack's next
// byte set takes both or neither, without making the state they lead to.
bool Matcher::same_step(uint32_t state, uint8_t a, uint8_t b) const {
    const State& s = states_[state];
    const size_t ca = grammar_->byte_class[a], cb = grammar_->byte_class[b];
    if (ca == cb) return true;
    if (s.row != kUnknown) {
        const uint32_t* row = rows_.data() + size_t(s.row) * n_classes_;
        if (row[ca] != kUnknown && row[cb] != kUnknown) return row[ca] == row[cb];
    }
    for (uint32_t i = 0; i < s.n_stacks; ++i) {
        const Symbol& sym = grammar_->symbols[frames_[stacks_of_states_[s.first_stack + i]].pos];
        const ByteSet& set = grammar_->byte_sets[sym.index];
        if (set.test(a) != set.test(b)) return false;
    }
    return true;
}

const TokenTrie::Shortcut* Matcher::shortcut_for(const TokenTrie::AsciiSet& set, bool utf8) {
    for (const auto& s : shortcuts_)
        if (s->set == set && s->utf8 == utf8) return s.get();
    shortcuts_.push_back(trie_.shortcut(set, utf8));
    return shortcuts_.back().get();
}

const uint64_t* Matcher::mask() {
    if (mask_state_ == state_) return mask_.data();
    std::memcpy(mask_.data(), part_mask(0), words_ * sizeof(uint64_t));
    for (size_t p = 1; p < kParts; ++p) {
        const uint64_t* m = part_mask(p);
        for (size_t w = 0; w < words_; ++w) mask_[w] |= m[w];
    }
    const size_t spare = size_t(trie_.n_vocab());
    mask_[spare / 64] &= ~(uint64_t(1) << (spare % 64));
    if (complete())
        for (TokenId t : eog_) mask_[size_t(t) / 64] |= uint64_t(1) << (size_t(t) % 64);
    mask_state_ = state_;
    return mask_.data();
}

std::unique_ptr<ConstraintState> GrammarConstraint::start(const Vocab& vocab) const {
    return std::make_unique<Matcher>(grammar_, vocab.trie(), vocab.eog_tokens());
}

namespace {

// A grammar that waits for its trigger: until the reply writes it, every token is allowed but
// one that would complete the trigger with bytes the grammar refuses after it; from then on the
// grammar's matcher, started from the trigger's first byte.
class LazyMatcher final : public ConstraintState {
public:
    LazyMatcher(std::shared_ptr<const Grammar> grammar, const Vocab& vocab, std::string trigger)
        : vocab_(vocab), matcher_(std::move(grammar), vocab.trie(), vocab.eog_tokens()),
          trigger_(std::move(trigger)) {}

    bool allows(TokenId token) override {
        if (active_) return matcher_.allows(token);
        if (vocab_.is_eog(token)) return true;
        const size_t at = join(token);
        return at == std::string::npos ||
               matcher_.allows_bytes(std::string_view(joined_).substr(at));
    }
    void accept(TokenId token) override {
        if (active_) return matcher_.accept(token);
        if (vocab_.is_eog(token)) return;
        const size_t at = join(token);
        if (at == std::string::npos) {
            const size_t keep = std::min(joined_.size(), trigger_.size() - 1);
            tail_.assign(joined_, joined_.size() - keep, keep);
            return;
        }
        if (!matcher_.accept_bytes(std::string_view(joined_).substr(at)))
            throw Error("grammar: token " + std::to_string(token) + " is not allowed here");
        active_ = true;
    }
    const uint64_t* mask() override {
        if (active_) return matcher_.mask();
        // Asked only when the model's own choice would begin a call the grammar refuses.
        const auto n = size_t(vocab_.size());
        mask_.assign((n + 63) / 64, 0);
        for (TokenId t = 0; t < vocab_.size(); ++t)
            if (allows(t)) mask_[size_t(t) / 64] |= uint64_t(1) << (size_t(t) % 64);
        return mask_.data();
    }
    bool complete() const override { return !active_ || matcher_.complete(); }
    bool closed() const override { return active_ && matcher_.closed(); }

private:
    // The last bytes before `token` and its own, and where the trigger begins in them.
    size_t join(TokenId token) {
        joined_.assign(tail_);
        joined_.append(vocab_.piece(token));
        return joined_.find(trigger_);
    }

    const Vocab& vocab_;
    Matcher matcher_; // at the grammar's start until the trigger
    std::string trigger_;
    std::string tail_;   // the reply's last bytes, fewer than the trigger's
    std::string joined_; // scratch for join()
    std::vector<uint64_t> mask_;
    bool active_ = false;
};

} // namespace

std::unique_ptr<ConstraintState> ToolCallConstraint::start(const Vocab& vocab) const {
    if (required_ || trigger_.empty())
        return std::make_unique<Matcher>(grammar_, vocab.trie(), vocab.eog_tokens());
    return std::make_unique<LazyMatcher>(grammar_, vocab, trigger_);
}

} // namespace woolly::grammar
