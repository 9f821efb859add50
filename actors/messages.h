// messages.h — what the actors say to each other: atoms and message types, each inspectable
// (CAF 0.17 style) so that layer executors can later live in other processes.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/text/chat.h"
#include "engine/text/generation.h"

namespace woolly {

// A chat turn travels in messages between actors (found by argument-dependent lookup).
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, ChatMessage& x) {
    return f(caf::meta::type_name("chat_message"), x.role, x.content);
}

} // namespace woolly

namespace woolly::actors {

using load_atom = caf::atom_constant<caf::atom("load")>;
using tokenize_atom = caf::atom_constant<caf::atom("tokenize")>;
using admit_atom = caf::atom_constant<caf::atom("admit")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using replay_atom = caf::atom_constant<caf::atom("replay")>;
using known_atom = caf::atom_constant<caf::atom("known")>; // is this id queued or running?
using open_atom = caf::atom_constant<caf::atom("open")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using ended_atom = caf::atom_constant<caf::atom("ended")>;
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using acquire_atom = caf::atom_constant<caf::atom("acquire")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
// The supervisor's (woollyd's main thread) conversation with the service.
using drain_atom = caf::atom_constant<caf::atom("drain")>;     // admit nothing new
using drained_atom = caf::atom_constant<caf::atom("drained")>; // ... and nothing runs now
using health_atom = caf::atom_constant<caf::atom("health")>;
using reconfig_atom = caf::atom_constant<caf::atom("reconfig")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;
using progress_atom = caf::atom_constant<caf::atom("progress")>;
using signal_atom = caf::atom_constant<caf::atom("signal")>;
using stall_atom = caf::atom_constant<caf::atom("stall")>; // test hook: wedge the scheduler
using flush_atom = caf::atom_constant<caf::atom("flush")>; // answered once all before is sent

// The scheduler's answer to a health probe: it is alive, and what it holds.
struct health {
    int64_t running = 0;
    int64_t queued = 0;
    uint64_t tokens = 0;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, health& x) {
    return f(caf::meta::type_name("health"), x.running, x.queued, x.tokens);
}

// Sampling and stop settings of one stream, as the sampler needs them.
struct stream_setup {
    std::string id;
    int32_t max_tokens = 0;
    float temperature = 0.8f;
    int32_t top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float repeat_penalty = 1.0f;
    int32_t repeat_last_n = 64;
    uint64_t seed = 0;
    std::vector<std::string> stop;
    std::vector<int32_t> prompt_tokens;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, stream_setup& x) {
    return f(caf::meta::type_name("stream_setup"), x.id, x.max_tokens, x.temperature, x.top_k,
             x.top_p, x.min_p, x.repeat_penalty, x.repeat_last_n, x.seed, x.stop, x.prompt_tokens);
}

// Buffers go round: each session owns one activation buffer and one logits buffer, which move
// sampler -> executors -> sampler with every step and are never copied; after the session's
// first step they are not reallocated either.

// Activations flowing through the layer executors: tokens at positions pos, pos+1, ... of one
// session; the first executor embeds them into x [n_tokens][n_embd]. `logits` is the session's
// logits buffer, carried along for the last executor to fill.
struct activation {
    uint64_t session = 0;
    int32_t kv_slot = 0;
    int32_t pos = 0;
    std::vector<int32_t> tokens;
    std::vector<float> x;
    std::vector<float> logits;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, activation& x) {
    return f(caf::meta::type_name("activation"), x.session, x.kv_slot, x.pos, x.tokens, x.x,
             x.logits);
}

// The last executor's output: logits [n_vocab] for the session's next token, and the
// activation buffer on its way back.
struct logits_ready {
    uint64_t session = 0;
    bool context_full = false;
    std::vector<float> logits;
    std::vector<float> x;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, logits_ready& x) {
    return f(caf::meta::type_name("logits_ready"), x.session, x.context_full, x.logits, x.x);
}

// The engine's parameters for a stream (one mapping, used by the ingress to validate a request
// and by the sampler to run it).
GenerationParams generation_params(const stream_setup& setup);

// A conversation for the tokenizer to render with the model's chat template.
struct chat_prompt {
    std::vector<ChatMessage> messages;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, chat_prompt& x) {
    return f(caf::meta::type_name("chat_prompt"), x.messages);
}

// The tokenizer's answer: the prompt's tokens, or why there are none.
struct tokenized {
    std::vector<int32_t> tokens;
    std::string error;
    bool bad_request = false; // the request's fault (a conversation the template refuses), not
                              // its size
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, tokenized& x) {
    return f(caf::meta::type_name("tokenized"), x.tokens, x.error, x.bad_request);
}

void register_message_types(caf::actor_system_config& cfg);

} // namespace woolly::actors
