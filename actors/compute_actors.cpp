// compute_actors.cpp — the actors that compute: loader, tokenizer, layer executors, sampler,
// and the cache that lends them KV-cache slots.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "actors.h"
#include "engine/error.h"
#include "engine/model/context.h"
#include "engine/runtime/thread_pool.h"
#include "engine/text/chat.h"
#include "engine/text/generation.h"
#include "log.h"
#include "messages.h"
#include "protocol/protocol.h"

namespace woolly::actors {

// Prompt tokens per forward batch in a layer executor.
constexpr int64_t kPromptBatch = kDefaultPromptBatch;

// `chat_template` names the chat-template family to use instead of the model's (empty: the
// model's own).
caf::behavior loader_actor(caf::event_based_actor* self, std::string path, LoadOptions options,
                           std::string chat_template) {
    return {
        [=](load_atom, caf::actor reply_to) mutable {
            try {
                options.progress = [&](double fraction) {
                    self->send(reply_to, progress_atom::value, fraction);
                };
                LoadedModel loaded = load_model(path, options);
                auto runtime = std::make_shared<Runtime>();
                runtime->model_path = path;
                runtime->model = std::move(loaded.model);
                runtime->weight_cache = std::move(loaded.cache);
                runtime->memory_plan = loaded.plan;
                runtime->load_ms = loaded.load_ms;
                runtime->load_note = loaded.note;
                runtime->vocab = std::make_unique<Vocab>(runtime->model->gguf());
                try { // a model without a chat template Woolly knows still serves prompts
                    runtime->chat =
                        chat_format(runtime->model->gguf(), *runtime->vocab, chat_template);
                } catch (const std::exception& e) {
                    runtime->chat_error = e.what();
                }
                const MemoryRequest& m = loaded.memory;
                const int64_t ctx = m.n_ctx > 0 ? m.n_ctx : runtime->model->hparams().n_ctx_train;
                runtime->kv =
                    std::make_unique<KvCachePool>(*runtime->model, ctx, m.sessions, m.kv_type);
                self->send(reply_to, loaded_atom::value, std::move(runtime));
            } catch (const std::exception& e) {
                self->send(reply_to, failed_atom::value, std::string(e.what()));
            }
            self->quit();
        },
    };
}

caf::behavior tokenizer_actor(caf::event_based_actor*, std::shared_ptr<Runtime> runtime) {
    return {
        [=](tokenize_atom, const std::string& prompt) -> tokenized {
            tokenized out;
            try {
                out.tokens = tokenize_prompt(*runtime->vocab, prompt, runtime->kv->n_ctx());
            } catch (const std::exception& e) {
                out.error = e.what(); // the prompt does not fit the context
            }
            return out;
        },
        // A conversation: the model's chat template, then its tokens (special tokens parsed).
        [=](tokenize_atom, const chat_prompt& chat) -> tokenized {
            tokenized out;
            if (!runtime->chat) {
                out.error = runtime->chat_error;
                out.bad_request = true;
                return out;
            }
            try {
                out.tokens = tokenize_chat(*runtime->vocab, *runtime->chat, chat.messages);
            } catch (const std::exception& e) {
                out.error = e.what(); // the template refused the conversation
                out.bad_request = true;
                return out;
            }
            try {
                check_prompt_fits(out.tokens, runtime->kv->n_ctx());
            } catch (const std::exception& e) {
                out.error = e.what();
                out.tokens.clear();
            }
            return out;
        },
    };
}

caf::behavior cache_actor(caf::event_based_actor*, std::shared_ptr<Runtime> runtime) {
    auto free_slots = std::make_shared<std::vector<int32_t>>();
    for (int32_t i = int32_t(runtime->kv->size()) - 1; i >= 0; --i) free_slots->push_back(i);
    return {
        [=](acquire_atom) -> int32_t {
            if (free_slots->empty()) return -1;
            const int32_t slot = free_slots->back();
            free_slots->pop_back();
            return slot;
        },
        [=](release_atom, int32_t slot) { free_slots->push_back(slot); },
        [=](stats_atom) -> std::string {
            return nlohmann::json{
                {"kv_slots", runtime->kv->size()},
                {"kv_slots_in_use", runtime->kv->size() - int64_t(free_slots->size())},
                {"kv_bytes", runtime->kv->bytes()},
                {"kv_context", runtime->kv->n_ctx()},
                {"kv_type", type_traits(runtime->kv->type()).name}}
                .dump();
        },
    };
}

caf::behavior executor_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                             int64_t first, int64_t last, int64_t threads, caf::actor next,
                             caf::actor sampler) {
    // The executor's own compute threads; its actor thread is thread 0 of the pool.
    auto pool = std::make_shared<ThreadPool>(int(threads));
    auto scratch = std::shared_ptr<ForwardScratch>(
        new ForwardScratch(*runtime->model, runtime->kv->n_ctx(), pool.get(), kPromptBatch,
                           runtime->weight_cache.get()),
        [pool](ForwardScratch* s) { delete s; }); // keeps the pool alive as long as the scratch
    runtime->scratch_bytes += scratch->bytes();
    return {
        [=](activation& a) {
            const LlamaModel& model = *runtime->model;
            const int64_t n_embd = model.hparams().n_embd;
            const size_t n_tokens = a.tokens.size();
            try {
                if (first == 0) { // the first executor embeds, into the session's buffer
                    a.x.resize(n_tokens * size_t(n_embd));
                    for (size_t i = 0; i < n_tokens; ++i)
                        embed_token(model, a.tokens[i], a.x.data() + i * size_t(n_embd));
                }
                KvCache& cache = runtime->kv->slot(a.kv_slot);
                // A prompt goes through in batches: each weight row is read once per batch.
                for (size_t done = 0; done < n_tokens; done += kPromptBatch) {
                    const size_t n = std::min<size_t>(kPromptBatch, n_tokens - done);
                    run_layers(model, first, last, a.pos + int64_t(done), int64_t(n),
                               a.x.data() + done * size_t(n_embd), cache, *scratch);
                }
                if (next) {
                    self->send(next, std::move(a));
                    return;
                }
                logits_ready out;
                out.session = a.session;
                out.context_full = a.pos + int64_t(n_tokens) >= cache.n_ctx();
                out.logits = std::move(a.logits);
                out.logits.resize(size_t(model.hparams().n_vocab));
                compute_logits(model, a.x.data() + (n_tokens - 1) * size_t(n_embd),
                               out.logits.data(), *scratch);
                out.x = std::move(a.x);
                self->send(sampler, std::move(out));
            } catch (const std::exception& e) {
                self->send(sampler, failed_atom::value, a.session, std::string(e.what()));
            }
        },
    };
}

namespace {

using Clock = std::chrono::steady_clock;

struct SamplerStream {
    std::string id;
    std::vector<int32_t> prompt;
    std::unique_ptr<TokenStream> tokens;
    uint64_t seq = 0;
    Clock::time_point admitted;
    Clock::time_point first_token;
    bool has_first = false;
    // While running: the KV slot, tokens fed so far, the step in flight, buffers between steps.
    int32_t slot = -1;
    int32_t pos = 0;
    int32_t in_flight = 0;
    std::string end_reason; // asked to end (cancel, shutdown): ends when the step comes back
    std::string end_error;
    std::vector<float> x;
    std::vector<float> logits;
};

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

} // namespace

// The sampler owns every stream from admission to its final message: it samples, publishes,
// and sends each running stream's next step straight to the first executor, so that a token
// crosses only executor and sampler threads.
caf::behavior sampler_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                            caf::actor publisher, caf::actor scheduler) {
    auto streams = std::make_shared<std::map<uint64_t, SamplerStream>>();
    auto first_executor = std::make_shared<caf::actor>();
    self->attach_functor([first_executor] { *first_executor = nullptr; });

    auto publish = [=](const SamplerStream& s, const nlohmann::json& message, bool done) {
        self->send(publisher, publish_atom::value, s.id, s.seq, message.dump(), done);
    };
    // Tells the scheduler, publishes the final message and forgets the stream.
    auto finish = [=](uint64_t session, const std::string& reason,
                      const std::string& error_message) {
        auto it = streams->find(session);
        if (it == streams->end()) return;
        SamplerStream& s = it->second;
        const auto now = Clock::now();
        protocol::Usage usage;
        usage.prompt_tokens = int64_t(s.prompt.size());
        usage.completion_tokens = s.tokens->n_generated();
        usage.ttft_ms = s.has_first ? ms_between(s.admitted, s.first_token) : 0.0;
        const double gen_ms = s.has_first ? ms_between(s.first_token, now) : 0.0;
        usage.tokens_per_second = gen_ms > 0 && usage.completion_tokens > 1
                                      ? double(usage.completion_tokens - 1) * 1000.0 / gen_ms
                                      : 0.0;
        const protocol::RequestError error{protocol::ErrorCode::Internal, error_message};
        char line[256];
        std::snprintf(line, sizeof line, ": %lld tokens, %.1f tokens/s, ttft %.0f ms, finish %s",
                      (long long)usage.completion_tokens, usage.tokens_per_second, usage.ttft_ms,
                      reason.c_str());
        log::info("finished " + s.id + line + (error_message.empty() ? "" : ": " + error_message));
        // The scheduler hears first: a client that has seen the done message and then asks
        // about the stream (cancel) reaches the scheduler after ended_atom has.
        self->send(scheduler, ended_atom::value, session);
        // Text held back for a stop string that never completed ends the stream with the done
        // message.
        publish(s,
                protocol::done_message(s.id, s.seq, reason, usage,
                                       error_message.empty() ? nullptr : &error, s.tokens->tail()),
                true);
        streams->erase(it);
    };
    auto dispatch = [=](uint64_t session, SamplerStream& s, std::vector<int32_t> tokens) {
        s.in_flight = int32_t(tokens.size());
        activation a;
        a.session = session;
        a.kv_slot = s.slot;
        a.pos = s.pos;
        a.tokens = std::move(tokens);
        a.x = std::move(s.x);
        a.logits = std::move(s.logits);
        self->send(*first_executor, std::move(a));
    };
    return {
        [=](wire_atom, caf::actor executor) { *first_executor = executor; },
        [=](flush_atom) { return true; }, // everything sent before this is in its mailboxes
        [=](open_atom, uint64_t session, stream_setup& setup) {
            SamplerStream s;
            s.id = setup.id;
            s.admitted = Clock::now();
            s.tokens = std::make_unique<TokenStream>(*runtime->vocab, generation_params(setup));
            s.tokens->start(setup.prompt_tokens); // parameters were validated by the ingress
            s.prompt = std::move(setup.prompt_tokens);
            (*streams)[session] = std::move(s);
        },
        [=](start_atom, uint64_t session, int32_t slot) {
            auto it = streams->find(session);
            if (it == streams->end()) return;
            it->second.slot = slot;
            dispatch(session, it->second, it->second.prompt);
        },
        [=](logits_ready& in) {
            auto it = streams->find(in.session);
            if (it == streams->end()) return;
            SamplerStream& s = it->second;
            s.pos += s.in_flight;
            s.in_flight = 0;
            s.x = std::move(in.x);
            s.logits = std::move(in.logits);
            if (!s.end_reason.empty()) {
                finish(in.session, s.end_reason, s.end_error);
                return;
            }
            GeneratedToken token;
            const bool got = s.tokens->next(s.logits.data(), in.context_full, token);
            if (got) {
                if (!s.has_first) {
                    s.first_token = Clock::now();
                    s.has_first = true;
                }
                runtime->tokens_generated.fetch_add(1, std::memory_order_relaxed);
                publish(s, protocol::token_message(s.id, s.seq, token.id, token.text), false);
                ++s.seq;
            }
            if (!got || s.tokens->finished()) {
                finish(in.session, finish_reason_name(s.tokens->finish_reason()), "");
                return;
            }
            dispatch(in.session, s, {token.id});
        },
        // Ends a stream early: now when no step of it is in flight, else when the step returns.
        [=](finish_atom, uint64_t session, const std::string& reason,
            const std::string& error_message) {
            auto it = streams->find(session);
            if (it == streams->end()) return;
            if (it->second.in_flight == 0) {
                finish(session, reason, error_message);
            } else if (it->second.end_reason.empty()) {
                it->second.end_reason = reason;
                it->second.end_error = error_message;
            }
        },
        // An executor could not run a step: the step is over, and so is the stream.
        [=](failed_atom, uint64_t session, const std::string& message) {
            auto it = streams->find(session);
            if (it == streams->end()) return;
            it->second.in_flight = 0;
            finish(session, "error", message);
        },
    };
}

} // namespace woolly::actors
