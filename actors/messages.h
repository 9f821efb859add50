// messages.h — what the actors say to each other: atoms and message types, each inspectable
// (CAF 0.17 style) so that layer executors can later live in other processes.
#pragma once

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/loader.h"
#include "engine/model/weight_cache.h"
#include "engine/serve/batch.h"
#include "engine/serve/slots.h"
#include "engine/text/chat.h"
#include "engine/text/generation.h"

namespace woolly {

// A chat turn travels in messages between actors (found by argument-dependent lookup).
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, ToolCall& x) {
    return f(caf::meta::type_name("tool_call"), x.id, x.name, x.arguments);
}
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, ChatMessage& x) {
    return f(caf::meta::type_name("chat_message"), x.role, x.content, x.tool_calls, x.tool_call_id);
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
using renew_atom = caf::atom_constant<caf::atom("renew")>; // an id taken again: drop its past
using serve_atom = caf::atom_constant<caf::atom("serve")>; // the ingress: the model is loaded
// The HTTP ingress: a request from the I/O thread, a client gone, a stream followed.
using http_atom = caf::atom_constant<caf::atom("http")>;
using closed_atom = caf::atom_constant<caf::atom("closed")>;
using watch_atom = caf::atom_constant<caf::atom("watch")>;
using unwatch_atom = caf::atom_constant<caf::atom("unwatch")>;
using listen_atom = caf::atom_constant<caf::atom("listen")>;
using detokenize_atom = caf::atom_constant<caf::atom("detok")>;

// The scheduler's answer to a health probe: it is alive, and what it holds.
struct health {
    int64_t running = 0;
    int64_t queued = 0;
    uint64_t tokens = 0;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, health& x) {
    return f(caf::meta::type_name("health"), x.running, x.queued, x.tokens);
}

} // namespace woolly::actors

namespace woolly {

// The engine's types that travel between actors.
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, SamplingParams& x) {
    return f(caf::meta::type_name("sampling_params"), x.temperature, x.top_k, x.top_p, x.min_p,
             x.repeat_penalty, x.repeat_last_n, x.presence_penalty, x.frequency_penalty, x.seed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerationParams& x) {
    return f(caf::meta::type_name("generation_params"), x.max_tokens, x.sampling, x.stop,
             x.logprobs);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, StepSegment& x) {
    return f(caf::meta::type_name("step_segment"), x.sequence, x.slot, x.pos, x.n_tokens,
             x.logits_row);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, SlotStats& x) {
    return f(caf::meta::type_name("slot_stats"), x.slots, x.in_use, x.hits, x.misses,
             x.reused_tokens, x.held_tokens, x.held_bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ExpertLayerStats& x) {
    return f(caf::meta::type_name("expert_layer_stats"), x.hits, x.misses);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WeightCacheStats& x) {
    return f(caf::meta::type_name("weight_cache_stats"), x.hits, x.misses, x.evictions,
             x.bypasses, x.bytes, x.budget, x.entries, x.released, x.experts_streamed,
             x.expert_layers);
}

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, MemoryUsage& x) {
    return f(caf::meta::type_name("memory_usage"), x.file_resident, x.cache, x.kv, x.scratch,
             x.rss, x.peak_rss);
}

// The cache's answer to an acquisition: a slot (-1: none free) and how many of the prompt's
// first tokens it holds already.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, SlotTable::Grant& x) {
    return f(caf::meta::type_name("slot_grant"), x.slot, x.reused);
}

// A step of the batch, going round the executors (engine/serve/batch.h).
template <class Inspector> typename Inspector::result_type inspect(Inspector& f, Step& x) {
    return f(caf::meta::type_name("step"), x.tokens, x.segments, x.x, x.logits, x.n_logits);
}

} // namespace woolly

namespace woolly::actors {

// Where a request came in (the metrics count by it).
enum class Source : uint8_t { zmq = 0, http = 1 };
inline constexpr int kSources = 2;

// One stream as admitted: its id, the engine's parameters (the request's, or the daemon's
// defaults; checked by the ingress), the prompt's tokens, and its ingress.
struct stream_setup {
    std::string id;
    GenerationParams params;
    std::vector<int32_t> prompt_tokens;
    uint8_t source = uint8_t(Source::zmq);
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, stream_setup& x) {
    return f(caf::meta::type_name("stream_setup"), x.id, x.params, x.prompt_tokens, x.source);
}

// Text as the tokenizer splits it (POST /tokenize): the ids, and each one's text (lossy
// UTF-8 where a token is part of a character).
struct token_list {
    std::vector<int32_t> tokens;
    std::vector<std::string> pieces;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, token_list& x) {
    return f(caf::meta::type_name("token_list"), x.tokens, x.pieces);
}

// A message for the publisher: the stream's topic is made from id; `done` marks its last.
struct outgoing {
    std::string id;
    uint64_t seq = 0;
    std::string json;
    bool done = false;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, outgoing& x) {
    return f(caf::meta::type_name("outgoing"), x.id, x.seq, x.json, x.done);
}

// A step's messages, in order, sent to the publisher at once.
using outgoing_batch = std::vector<outgoing>;

// A conversation for the tokenizer to render with the model's chat template.
struct chat_prompt {
    std::vector<ChatMessage> messages;
    std::string chat_template; // a family name instead of the model's template; empty: its own
    // The HTTP API's tools (protocol/openai.h): the array's JSON text (empty: none), and how
    // they may be called (openai::ToolChoice's value; tool_name for a named one).
    std::string tools;
    uint8_t tool_choice = 0;
    std::string tool_name;
    bool parallel_tool_calls = true;
    bool enable_thinking = true; // chat_template_kwargs.enable_thinking
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, chat_prompt& x) {
    return f(caf::meta::type_name("chat_prompt"), x.messages, x.chat_template, x.tools,
             x.tool_choice, x.tool_name, x.parallel_tool_calls, x.enable_thinking);
}

// The scheduler's answer to admit and cancel: done (id: the stream's), or refused with a
// protocol error code (protocol::ErrorCode's value) and why. Encoded as JSON by the ingress.
struct answer {
    std::string id;
    int32_t error = -1; // -1: done
    std::string message;
    bool ok() const { return error < 0; }
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, answer& x) {
    return f(caf::meta::type_name("answer"), x.id, x.error, x.message);
}

// What the scheduler reports for `status`, as values; the ingress writes the JSON (SPEC.md).
struct status_report {
    std::string model_path;
    int64_t n_vocab = 0, n_layer = 0, n_embd = 0, context = 0;
    double uptime_s = 0;
    uint64_t config_generation = 0;
    std::string config_loaded_at;
    int64_t running = 0, queued = 0;
    uint64_t requests_admitted = 0, tokens_generated = 0;
    double tokens_per_second = 0;
    uint64_t kv_bytes = 0;
    std::string kv_type;
    int64_t prompt_chunk = 0;
    bool prefix_cache = false;
    SlotStats slots;
    WeightCacheStats weight_cache;
    MemoryUsage memory;
    uint64_t planned_bytes = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, status_report& x) {
    return f(caf::meta::type_name("status_report"), x.model_path, x.n_vocab, x.n_layer, x.n_embd,
             x.context, x.uptime_s, x.config_generation, x.config_loaded_at, x.running, x.queued,
             x.requests_admitted, x.tokens_generated, x.tokens_per_second, x.kv_bytes, x.kv_type,
             x.prompt_chunk, x.prefix_cache, x.slots, x.weight_cache, x.memory, x.planned_bytes);
}

// The tokenizer's answer: the prompt's tokens, or why there are none.
struct tokenized {
    std::vector<int32_t> tokens;
    std::string error;
    bool bad_request = false; // the request's fault (a conversation the template refuses), not
                              // its size
    // With tools: how the model writes its calls (ToolSyntax's value), and the grammar they
    // follow (null with tool_choice none). The constraint is shared, not serialized: it goes
    // only between actors of one process.
    uint8_t tool_syntax = 0;
    bool reasoning = false; // the family's replies may open with <think> (Qwen3's)
    std::shared_ptr<const Constraint> constraint;
};

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, tokenized& x) {
    return f(caf::meta::type_name("tokenized"), x.tokens, x.error, x.bad_request, x.tool_syntax,
             x.reasoning);
}

void register_message_types(caf::actor_system_config& cfg);

} // namespace woolly::actors
