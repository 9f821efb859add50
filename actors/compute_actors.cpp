// compute_actors.cpp — the actors that compute: loader, tokenizer, the layer executors (the last
// of which samples and owns the streams), and the cache that lends them KV-cache slots.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "actors.h"
#include "engine/error.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/model/context.h"
#include "engine/runtime/thread_pool.h"
#include "engine/serve/batch.h"
#include "engine/serve/slots.h"
#include "engine/text/chat.h"
#include "engine/text/generation.h"
#include "engine/text/tool_calls.h"
#include "log.h"
#include "messages.h"
#include "metrics.h"
#include "protocol/openai.h"
#include "protocol/protocol.h"

namespace woolly::actors {

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
                const LlamaHyperParams& hp = runtime->model->hparams();
                runtime->kv = std::make_unique<KvCachePool>(hp.n_layer, ctx, hp.n_head_kv,
                                                            hp.head_dim, m.sessions, m.kv_type,
                                                            hp.kv_windows(), m.max_batch);
                self->send(reply_to, loaded_atom::value, std::move(runtime));
            } catch (const std::exception& e) {
                self->send(reply_to, failed_atom::value, std::string(e.what()));
            }
            self->quit();
        },
    };
}

namespace {

// The grammar of the calls a reply to `chat` may make, in the family's syntax: none for
// tool_choice none; the calls from the first token for required or a named function; from the
// syntax's trigger on for auto. Throws Error when the family has no tool calls.
std::shared_ptr<const Constraint> tool_call_constraint(const ChatFormat& format,
                                                       const nlohmann::ordered_json& tools,
                                                       const chat_prompt& chat) {
    const ToolSyntax syntax = tool_syntax(format.family);
    if (syntax == ToolSyntax::None)
        throw Error("'tools': the " + std::string(chat_template_name(format.family)) +
                    " chat template has no tool calls (these do: llama3.1, qwen3, mistral-nemo)");
    const auto choice = protocol::openai::ToolChoice(chat.tool_choice);
    if (choice == protocol::openai::ToolChoice::None) return nullptr;
    std::vector<grammar::ToolSchema> schemas;
    bool strict = true;
    for (size_t i = 0; i < tools.size(); ++i) {
        const auto& f = tools[i]["function"];
        const std::string name = f["name"].get<std::string>();
        if (choice == protocol::openai::ToolChoice::Named && name != chat.tool_name) continue;
        strict = strict && f.value("strict", false);
        schemas.push_back({name, f.contains("parameters") ? &f["parameters"] : nullptr,
                           "tools[" + std::to_string(i) + "].function.parameters"});
    }
    // Relaxed unless every function asks for strict (OpenAI's default is not strict).
    const bool one = choice == protocol::openai::ToolChoice::Named;
    grammar::Grammar g =
        grammar::compile_tool_calls(syntax, schemas, chat.parallel_tool_calls && !one, strict);
    const bool required = choice != protocol::openai::ToolChoice::Auto;
    return std::make_shared<grammar::ToolCallConstraint>(
        std::move(g), std::string(tool_syntax_text(syntax).trigger), required);
}

} // namespace

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
        // Text as the tokenizer splits it, without the context check (POST /tokenize):
        // `add_special` adds BOS as the model asks.
        [=](tokenize_atom, const std::string& text, bool add_special) -> token_list {
            token_list out;
            out.tokens = runtime->vocab->tokenize(text, add_special);
            for (int32_t t : out.tokens) out.pieces.emplace_back(runtime->vocab->piece(t));
            return out;
        },
        // Token ids (checked against the vocabulary by the caller) back to their bytes.
        [=](detokenize_atom, const std::vector<int32_t>& tokens) -> std::string {
            std::string text;
            for (int32_t t : tokens)
                if (t >= 0 && t < runtime->vocab->size()) text += runtime->vocab->piece(t);
            return text;
        },
        // A conversation: the model's chat template, then its tokens (special tokens parsed).
        // A request may name a template family instead (`chat_template`).
        [=](tokenize_atom, const chat_prompt& chat) -> tokenized {
            tokenized out;
            std::optional<ChatFormat> named;
            if (!chat.chat_template.empty()) {
                try {
                    named =
                        chat_format(runtime->model->gguf(), *runtime->vocab, chat.chat_template);
                } catch (const std::exception& e) {
                    out.error = e.what();
                    out.bad_request = true;
                    return out;
                }
            }
            const ChatFormat* format = named ? &*named : runtime->chat ? &*runtime->chat : nullptr;
            if (!format) {
                out.error = runtime->chat_error;
                out.bad_request = true;
                return out;
            }
            try {
                nlohmann::ordered_json tools;
                if (!chat.tools.empty()) {
                    tools = nlohmann::ordered_json::parse(chat.tools);
                    out.constraint = tool_call_constraint(*format, tools, chat);
                    out.tool_syntax = uint8_t(tool_syntax(format->family));
                }
                out.tokens =
                    tokenize_chat(*runtime->vocab, *format, chat.messages,
                                  chat.tools.empty() ? nullptr : &tools, chat.enable_thinking);
                out.reasoning = format->family == ChatTemplate::Qwen3;
            } catch (const std::exception& e) {
                out.error = e.what(); // the template refused the conversation, or the tools
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

caf::behavior cache_actor(caf::event_based_actor*, std::shared_ptr<Runtime> runtime,
                          bool prefix_cache) {
    auto table = std::make_shared<SlotTable>(runtime->kv->size(), runtime->kv->position_bytes(),
                                             prefix_cache, runtime->kv->rewind_limit());
    return {
        [=](acquire_atom, const std::vector<int32_t>& prompt) -> SlotTable::Grant {
            return table->acquire(prompt);
        },
        [=](release_atom, int32_t slot, std::vector<int32_t>& cached) {
            table->release(slot, std::move(cached));
        },
        [=](stats_atom) -> SlotStats { return table->stats(); },
    };
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// A stream as the last executor publishes it.
struct StreamInfo {
    std::string id;
    uint64_t seq = 0; // of its next message
    int64_t prompt_tokens = 0;
    Clock::time_point admitted;
    Clock::time_point first_token;
    bool has_first = false;
    Clock::time_point last_token;
    int64_t cached_tokens = 0; // of the prompt, from the prefix cache
    uint8_t source = 0;        // Source
    std::string end_reason; // asked to end (cancel, shutdown) while a step of it ran
    std::string end_error;
};

// What the last executor keeps besides the layers: every stream from admission to its final
// message, the batcher that plans steps, and the steps' buffers between trips.
struct Streams {
    Streams(const Vocab& vocab, int64_t n_ctx, int64_t prompt_chunk)
        : batcher(vocab, n_ctx, prompt_chunk) {}
    Batcher batcher;
    std::map<uint64_t, StreamInfo> info;
    std::vector<Step> spare;       // steps back from their trip, buffers kept
    int in_flight = 0;             // steps on their way round the executors
    int max_in_flight = 1;         // one per executor: each may work on a different step
    std::vector<BatchEvent> events;
    outgoing_batch out;            // the messages of the step being finished
};

// A layer executor's state. The last executor (next is null) also runs the streams.
struct Executor {
    caf::event_based_actor* self = nullptr;
    std::shared_ptr<Runtime> runtime;
    int64_t first = 0, last = 0;
    caf::actor next;                    // the next executor; null: this is the last
    caf::actor last_executor;           // (not the last) where a failed step goes
    std::shared_ptr<ThreadPool> pool;   // its compute threads; the actor's thread is thread 0
    std::unique_ptr<ForwardScratch> scratch;
    StepScratch buffers;
    // The last executor only:
    std::unique_ptr<Streams> streams;
    caf::actor first_executor, publisher, scheduler;
    std::shared_ptr<Metrics> metrics;

    // Runs this executor's layers on the step; false (and `why`) when they could not run.
    bool run(Step& step, std::string& why) {
        try {
            run_step(*runtime->model, *runtime->kv, first, last, step, *scratch, buffers);
            return true;
        } catch (const std::exception& e) {
            why = e.what();
            return false;
        }
    }

    // Publishes a stream's final message, tells the scheduler (with the tokens its slot now
    // holds, for the prefix cache) and forgets it.
    void finish(uint64_t key, const std::string& reason, const std::string& error_message) {
        auto it = streams->info.find(key);
        if (it == streams->info.end()) return;
        StreamInfo& s = it->second;
        const Batcher::Sequence* sequence = streams->batcher.sequence(key);
        const auto now = Clock::now();
        protocol::Usage usage;
        usage.prompt_tokens = s.prompt_tokens;
        usage.completion_tokens = sequence ? sequence->stream->n_generated() : 0;
        usage.ttft_ms = s.has_first ? ms_between(s.admitted, s.first_token) : 0.0;
        usage.cached_tokens = s.cached_tokens;
        metrics->count_finish(s.source, reason);
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
        const std::string tail = sequence ? std::string(sequence->stream->tail()) : std::string();
        // The grammar outlives the sequence, which remove() below takes away.
        protocol::GrammarOutcome grammar;
        const bool constrained = sequence && sequence->stream->constrained();
        std::shared_ptr<const Constraint> constraint;
        if (constrained) {
            grammar.complete = sequence->stream->grammar_complete();
            constraint = sequence->stream->params().constraint;
            grammar.warnings = &constraint->warnings();
        }
        // The scheduler hears first: a client that has seen the done message and then asks
        // about the stream (cancel) reaches the scheduler after ended_atom has.
        self->send(scheduler, ended_atom::value, key, streams->batcher.remove(key));
        // Text held back for a stop string that never completed ends the stream with the done
        // message.
        streams->out.push_back({s.id, s.seq,
                                protocol::done_message(s.id, s.seq, reason, usage,
                                                       error_message.empty() ? nullptr : &error,
                                                       tail, constrained ? &grammar : nullptr)
                                    .dump(),
                                true});
        streams->info.erase(it);
    }

    // The messages gathered since the last call, to the publisher in one message.
    void send_out() {
        if (streams->out.empty()) return;
        self->send(publisher, publish_atom::value, std::move(streams->out));
        streams->out = outgoing_batch();
    }

    // A step is back with logits: sample, publish, finish what ended.
    void complete(Step& step) {
        streams->batcher.finish(step, streams->events, pool.get());
        for (const BatchEvent& e : streams->events) {
            auto it = streams->info.find(e.sequence);
            if (it == streams->info.end()) continue;
            StreamInfo& s = it->second;
            if (e.kind == BatchEvent::Kind::Token) {
                const auto now = Clock::now();
                if (!s.has_first) {
                    s.first_token = now;
                    s.has_first = true;
                    metrics->ttft.observe(std::chrono::duration<double>(now - s.admitted).count());
                } else {
                    metrics->token_gap.observe(
                        std::chrono::duration<double>(now - s.last_token).count());
                }
                s.last_token = now;
                runtime->tokens_generated.fetch_add(1, std::memory_order_relaxed);
                metrics->generated_tokens.fetch_add(1, std::memory_order_relaxed);
                outgoing message{s.id, s.seq++, std::string(), false};
                protocol::write_token_message(message.json, s.id, message.seq, e.token.id,
                                              e.token.text);
                if (e.token.logprobs)
                    protocol::append_logprobs(message.json, *e.token.logprobs, e.token.id,
                                              *runtime->vocab);
                streams->out.push_back(std::move(message));
            } else if (!s.end_reason.empty()) {
                const std::string reason = s.end_reason, why = s.end_error;
                finish(e.sequence, reason, why);
            } else {
                const Batcher::Sequence* q = streams->batcher.sequence(e.sequence);
                finish(e.sequence, finish_reason_name(q->stream->finish_reason()), "");
            }
        }
        send_out();
    }

    // A step that could not run: its streams end with the error.
    void fail(Step& step, const std::string& why) {
        streams->batcher.fail(step, streams->events);
        for (const BatchEvent& e : streams->events) finish(e.sequence, "error", why);
        send_out();
    }

    // A step is back (done or failed): its buffers are kept, and the next steps go out.
    void step_back(Step&& step) {
        --streams->in_flight;
        streams->spare.push_back(std::move(step));
        pump();
    }

    // Sends steps while executors are free and streams have work: the next token of every
    // generating stream and a chunk of any prompt, as one batch.
    void pump() {
        while (streams->in_flight < streams->max_in_flight) {
            if (streams->spare.empty()) streams->spare.emplace_back();
            Step& step = streams->spare.back();
            if (!streams->batcher.plan(step)) return;
            ++streams->in_flight;
            self->send(first_executor, std::move(step));
            streams->spare.pop_back();
        }
    }
};

} // namespace

caf::behavior executor_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                             ExecutorSetup setup) {
    auto ex = std::make_shared<Executor>();
    ex->self = self;
    ex->runtime = runtime;
    ex->first = setup.first;
    ex->last = setup.last;
    ex->next = setup.next;
    ex->pool = std::make_shared<ThreadPool>(int(setup.threads));
    const int64_t max_batch = Batcher::max_step_tokens(setup.prompt_chunk, setup.max_sessions);
    ex->scratch = std::make_unique<ForwardScratch>(*runtime->model, runtime->kv->n_ctx(),
                                                   ex->pool.get(), max_batch,
                                                   runtime->weight_cache.get());
    runtime->scratch_bytes += ex->scratch->bytes();
    // Handles to other actors go when this one ends, or their threads would wait forever.
    self->attach_functor([ex] {
        ex->next = ex->last_executor = ex->first_executor = ex->publisher = ex->scheduler = nullptr;
    });
    if (ex->next) { // layers, then on to the next executor
        ex->last_executor = setup.last_executor;
        return {
            [=](Step& step) {
                std::string why;
                if (ex->run(step, why)) {
                    self->send(ex->next, std::move(step));
                } else {
                    self->send(ex->last_executor, failed_atom::value, std::move(step), why);
                }
            },
        };
    }
    ex->streams = std::make_unique<Streams>(*runtime->vocab, runtime->kv->n_ctx(),
                                            setup.prompt_chunk);
    ex->streams->max_in_flight = int(setup.executors);
    ex->streams->events.reserve(size_t(2 * setup.max_sessions));
    ex->publisher = setup.publisher;
    ex->scheduler = setup.scheduler;
    ex->metrics = setup.metrics;
    ex->first_executor = caf::actor_cast<caf::actor>(self); // until wire_atom names another
    return {
        [=](wire_atom, caf::actor first) { ex->first_executor = first; },
        [=](flush_atom) { return true; }, // everything sent before this is in its mailboxes
        [=](Step& step) {
            std::string why;
            if (ex->run(step, why)) {
                ex->complete(step);
            } else {
                ex->fail(step, why);
            }
            ex->step_back(std::move(step));
        },
        // An earlier executor could not run its layers on the step.
        [=](failed_atom, Step& step, const std::string& why) {
            ex->fail(step, why);
            ex->step_back(std::move(step));
        },
        [=](open_atom, uint64_t key, stream_setup& setup) {
            StreamInfo& s = ex->streams->info[key];
            s.id = setup.id;
            s.admitted = Clock::now();
            s.prompt_tokens = int64_t(setup.prompt_tokens.size());
            s.source = setup.source % kSources;
            ex->metrics->admitted[s.source].fetch_add(1, std::memory_order_relaxed);
            ex->metrics->prompt_tokens.fetch_add(uint64_t(s.prompt_tokens),
                                                 std::memory_order_relaxed);
            try { // parameters and size were checked by the ingress and the tokenizer
                ex->streams->batcher.open(key, std::move(setup.prompt_tokens), setup.params);
            } catch (const std::exception& e) {
                ex->finish(key, "error", e.what());
                ex->send_out();
            }
        },
        // The scheduler gave the stream a KV slot (holding its prompt's first tokens, maybe).
        [=](start_atom, uint64_t key, const SlotTable::Grant& grant) {
            try {
                ex->streams->batcher.start(key, grant.slot, grant.reused);
                if (auto it = ex->streams->info.find(key); it != ex->streams->info.end())
                    it->second.cached_tokens = grant.reused;
            } catch (const std::exception& e) {
                ex->finish(key, "error", e.what());
                ex->send_out();
                return;
            }
            ex->pump();
        },
        // Ends a stream early: now when no step of it is running, else when the step is back.
        [=](finish_atom, uint64_t key, const std::string& reason,
            const std::string& error_message) {
            auto it = ex->streams->info.find(key);
            if (it == ex->streams->info.end()) return;
            if (ex->streams->batcher.end(key)) {
                ex->finish(key, reason, error_message);
                ex->send_out();
            } else if (it->second.end_reason.empty()) {
                it->second.end_reason = reason;
                it->second.end_error = error_message;
            }
        },
    };
}

} // namespace woolly::actors
