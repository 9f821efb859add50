// constraint.h — what a grammar is to generation: a rule, shared by the sessions that use it,
// that says per session which tokens may come next. The grammars (engine/grammar) implement it;
// TokenStream applies it before the sampling chain.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/text/vocab.h"

namespace woolly {

// One session's place in the grammar.
class ConstraintState {
public:
    virtual ~ConstraintState() = default;
    // Whether `token` may come next; an end-of-generation token may when the output is complete.
    virtual bool allows(TokenId token) = 0;
    // Moves past `token`, which allows() accepted.
    virtual void accept(TokenId token) = 0;
    // Every token allowed next, a bit per id (bit id % 64 of word id / 64), until the next call.
    virtual const uint64_t* mask() = 0;
    // The output so far is a complete sentence of the grammar; and nothing more may follow it.
    virtual bool complete() const = 0;
    virtual bool closed() const = 0;
};

class Constraint {
public:
    virtual ~Constraint() = default;
    virtual std::unique_ptr<ConstraintState> start(const Vocab& vocab) const = 0;
    // What a relaxed schema left unenforced, for the response.
    virtual const std::vector<std::string>& warnings() const = 0;
};

} // namespace woolly
