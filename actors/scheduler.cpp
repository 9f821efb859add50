// scheduler.cpp — the session scheduler: admission and its queue, round-robin stepping of the
// running sessions (each has at most one step in flight, and executors serve them in arrival
// order), cancel, status and an orderly shutdown. Bookkeeping only: it never computes.
#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "actors.h"
#include "messages.h"
#include "protocol/protocol.h"

namespace woolly::actors {
namespace {

using Clock = std::chrono::steady_clock;

struct Session {
    std::string id;
    stream_setup setup;
    int32_t slot = -1;
    int32_t pos = 0;       // tokens fed to the model so far
    int32_t in_flight = 0; // tokens of the step now in the executors (0: none)
    bool running = false;
    std::string end_reason;    // set by cancel or shutdown: end when the step comes back
    std::vector<float> x;      // the session's activation buffer, between steps
    std::vector<float> logits; // its logits buffer, between steps
};

struct State {
    std::shared_ptr<Runtime> runtime;
    config::DaemonConfig config;
    caf::actor first_executor;
    caf::actor sampler;
    caf::actor cache;
    std::map<uint64_t, Session> sessions;
    std::map<std::string, uint64_t> by_id;
    std::map<std::string, Clock::time_point> finished_ids; // kept as long as replay keeps them
    std::deque<uint64_t> waiting;
    int64_t running = 0;
    uint64_t next_session = 1;
    uint64_t tokens_generated = 0;
    uint64_t requests_admitted = 0;
    Clock::time_point started = Clock::now();
    Clock::duration busy{}; // time with at least one session running
    Clock::time_point busy_since;
    bool shutting_down = false;
    std::vector<caf::typed_response_promise<std::string>>
        drained;                         // shutdown requests waiting for the last session
    std::function<void()> start_waiting; // set once the behaviour's helpers exist
};

} // namespace

caf::behavior scheduler_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                              config::DaemonConfig config) {
    auto st = std::make_shared<State>();
    st->runtime = runtime;
    st->config = config;

    auto set_running = [st](int64_t delta) {
        if (st->running == 0 && delta > 0) st->busy_since = Clock::now();
        st->running += delta;
        if (st->running == 0 && delta < 0) st->busy += Clock::now() - st->busy_since;
    };

    auto prune_finished = [st] {
        const auto keep = std::chrono::seconds(st->config.replay.keep_seconds);
        const auto now = Clock::now();
        for (auto it = st->finished_ids.begin(); it != st->finished_ids.end();)
            it = now - it->second > keep ? st->finished_ids.erase(it) : std::next(it);
    };

    // Removes a session whose stream the sampler has already ended.
    auto forget = [=](uint64_t key) {
        auto it = st->sessions.find(key);
        if (it == st->sessions.end()) return;
        Session& s = it->second;
        if (s.slot >= 0) self->send(st->cache, release_atom::value, s.slot);
        if (s.running) set_running(-1);
        st->finished_ids[s.id] = Clock::now();
        st->by_id.erase(s.id);
        st->sessions.erase(it);
        st->start_waiting();
        if (st->sessions.empty())
            for (auto& promise : st->drained) promise.deliver(std::string("drained"));
        if (st->sessions.empty()) st->drained.clear();
    };

    // Ends a session early (cancelled, shutdown, error): the sampler sends the final message.
    auto end_now = [=](uint64_t key, const std::string& reason, const std::string& error) {
        self->send(st->sampler, finish_atom::value, key, reason, error);
        forget(key);
    };

    auto dispatch = [=](uint64_t key, std::vector<int32_t> tokens) {
        Session& s = st->sessions.at(key);
        s.in_flight = int32_t(tokens.size());
        activation a;
        a.session = key;
        a.kv_slot = s.slot;
        a.pos = s.pos;
        a.tokens = std::move(tokens);
        a.x = std::move(s.x);
        a.logits = std::move(s.logits);
        self->send(st->first_executor, std::move(a));
    };

    st->start_waiting = [=] {
        while (!st->shutting_down && st->running < st->config.engine.max_sessions &&
               !st->waiting.empty()) {
            const uint64_t key = st->waiting.front();
            st->waiting.pop_front();
            Session& s = st->sessions.at(key);
            s.running = true;
            set_running(+1);
            self->request(st->cache, caf::infinite, acquire_atom::value)
                .then(
                    [=](int32_t slot) {
                        auto it = st->sessions.find(key);
                        if (it == st->sessions.end()) { // ended while we waited
                            if (slot >= 0) self->send(st->cache, release_atom::value, slot);
                            return;
                        }
                        if (slot < 0) {
                            end_now(key, "error", "no KV-cache slot free");
                            return;
                        }
                        it->second.slot = slot;
                        if (!it->second.end_reason.empty()) {
                            end_now(key, it->second.end_reason, "");
                            return;
                        }
                        dispatch(key, it->second.setup.prompt_tokens);
                    },
                    [=](caf::error& e) { end_now(key, "error", self->system().render(e)); });
        }
    };

    // start_waiting refers to the state that holds it: break that cycle (and drop the handles
    // of other actors) when the scheduler terminates, or their threads would wait forever.
    self->attach_functor([st] {
        st->start_waiting = nullptr;
        st->first_executor = st->sampler = st->cache = nullptr;
    });

    return {
        [=](wire_atom, caf::actor first_executor, caf::actor sampler, caf::actor cache) {
            st->first_executor = first_executor;
            st->sampler = sampler;
            st->cache = cache;
        },
        [=](admit_atom, stream_setup& setup) -> std::string {
            using protocol::ErrorCode;
            if (st->shutting_down)
                return protocol::encode_error(
                    {ErrorCode::ShuttingDown, "the daemon is shutting down"});
            prune_finished();
            if (setup.id.empty()) {
                do setup.id = "g" + std::to_string(st->next_session + st->requests_admitted);
                while (st->by_id.count(setup.id) || st->finished_ids.count(setup.id));
            } else if (st->by_id.count(setup.id) || st->finished_ids.count(setup.id)) {
                return protocol::encode_error(
                    {ErrorCode::DuplicateId, "stream id '" + setup.id + "' is in use"});
            }
            if (int64_t(st->sessions.size()) >= st->config.limits.queue_depth) {
                return protocol::encode_error(
                    {ErrorCode::Busy, "the queue is full (" +
                                          std::to_string(st->config.limits.queue_depth) +
                                          " requests admitted); try again later"});
            }
            const uint64_t key = st->next_session++;
            ++st->requests_admitted;
            const std::string id = setup.id;
            self->send(st->sampler, open_atom::value, key, setup);
            Session s;
            s.id = id;
            s.setup = std::move(setup);
            st->sessions.emplace(key, std::move(s));
            st->by_id[id] = key;
            st->waiting.push_back(key);
            st->start_waiting();
            return protocol::encode_ok({{"id", id}, {"topic", protocol::topic_for(id)}});
        },
        [=](step_done& step) {
            const uint64_t key = step.session;
            const int32_t token = step.token;
            const bool done = step.done;
            auto it = st->sessions.find(key);
            if (it == st->sessions.end()) return;
            Session& s = it->second;
            s.x = std::move(step.x);
            s.logits = std::move(step.logits);
            if (token >= 0) ++st->tokens_generated;
            s.pos += s.in_flight;
            s.in_flight = 0;
            if (done) {
                forget(key);
            } else if (!s.end_reason.empty()) {
                end_now(key, s.end_reason, "");
            } else {
                dispatch(key, {token});
            }
        },
        [=](failed_atom, uint64_t key, const std::string& message) {
            end_now(key, "error", message);
        },
        [=](cancel_atom, const std::string& id) -> std::string {
            auto it = st->by_id.find(id);
            if (it == st->by_id.end()) {
                const bool finished = st->finished_ids.count(id) != 0;
                return protocol::encode_error({protocol::ErrorCode::NotFound,
                                               finished ? "stream '" + id + "' has already finished"
                                                        : "no stream '" + id + "'"});
            }
            const uint64_t key = it->second;
            Session& s = st->sessions.at(key);
            if (!s.running) {
                st->waiting.erase(std::find(st->waiting.begin(), st->waiting.end(), key));
                end_now(key, "cancelled", "");
            } else if (s.in_flight == 0 && s.slot >= 0) {
                end_now(key, "cancelled", "");
            } else {
                s.end_reason = "cancelled"; // ends when its step comes back
            }
            return protocol::encode_ok({{"id", id}});
        },
        [=](status_atom) -> caf::result<std::string> {
            auto promise = self->make_response_promise<std::string>();
            self->request(st->cache, caf::infinite, stats_atom::value)
                .then([=](const std::string& cache_stats) mutable {
                    const auto now = Clock::now();
                    auto busy =
                        st->busy + (st->running > 0 ? now - st->busy_since : Clock::duration{});
                    const double busy_s = std::chrono::duration<double>(busy).count();
                    const auto& hp = st->runtime->model->hparams();
                    promise.deliver(protocol::encode_ok(
                        {{"protocol", protocol::kVersion},
                         {"model",
                          {{"path", st->runtime->model_path},
                           {"n_vocab", hp.n_vocab},
                           {"n_layer", hp.n_layer},
                           {"n_embd", hp.n_embd},
                           {"context", st->runtime->kv->n_ctx()}}},
                         {"uptime_s", std::chrono::duration<double>(now - st->started).count()},
                         {"sessions",
                          {{"running", st->running}, {"queued", int64_t(st->waiting.size())}}},
                         {"requests_admitted", st->requests_admitted},
                         {"tokens_generated", st->tokens_generated},
                         {"tokens_per_second",
                          busy_s > 0 ? double(st->tokens_generated) / busy_s : 0.0},
                         {"cache", nlohmann::json::parse(cache_stats)}}));
                });
            return promise;
        },
        [=](shutdown_atom) -> caf::result<std::string> {
            st->shutting_down = true;
            while (!st->waiting.empty()) {
                const uint64_t key = st->waiting.front();
                st->waiting.pop_front();
                end_now(key, "shutdown", "");
            }
            for (auto& [key, s] : st->sessions) s.end_reason = "shutdown";
            if (st->sessions.empty()) return std::string("drained");
            auto promise = self->make_response_promise<std::string>();
            st->drained.push_back(promise);
            return promise;
        },
    };
}

} // namespace woolly::actors
