// scheduler.cpp — the session scheduler: admission and its queue, starting sessions as KV
// slots free up (at most engine.max_sessions at once), cancel, status and an orderly shutdown.
// Once started, a session's tokens go round the executors in steps shared by every running
// session, without the scheduler (the last executor owns each running stream until it ends),
// so the scheduler is off the per-token path. Bookkeeping only: it never computes.
#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <thread>

#include "actors.h"
#include "log.h"
#include "messages.h"
#include "protocol/protocol.h"

namespace woolly::actors {
namespace {

using Clock = std::chrono::steady_clock;

struct Session {
    std::string id;
    std::vector<int32_t> prompt; // for the prefix cache to match, until a slot is granted
    std::vector<int32_t> cached; // the tokens its slot holds, once ended
    int32_t slot = -1;
    bool running = false;       // started (a slot is being acquired or held)
    bool ending = false;        // the owner has been told to end it
    bool awaiting_slot = false; // a KV-slot request is out
    bool ended = false;         // the owner is done with it, but the slot reply is not in
};

struct State {
    std::shared_ptr<Runtime> runtime;
    std::shared_ptr<const LiveConfig> live;
    config::DaemonConfig config; // live->config
    caf::actor owner; // the last executor, which owns the running streams
    caf::actor cache;
    caf::actor publisher; // told when an id starts a new stream (renew_atom)
    std::map<uint64_t, Session> sessions;
    std::map<std::string, uint64_t> by_id;
    // Finished streams' ids, as long as replay keeps them: ids the daemon chooses avoid them, and
    // cancel says "already finished"
    std::map<std::string, Clock::time_point> finished_ids;
    std::deque<uint64_t> waiting;
    int64_t running = 0;
    uint64_t next_session = 1;
    uint64_t requests_admitted = 0;
    Clock::time_point started = Clock::now();
    Clock::duration busy{}; // time with at least one session running
    Clock::time_point busy_since;
    bool shutting_down = false;     // every stream told to end
    bool draining = false;          // nothing new admitted; what was admitted runs on
    caf::strong_actor_ptr drain_to; // told drained_atom once nothing is left
    uint64_t drain_tag = 0;
    // shutdown requests waiting for the last session to end
    std::vector<caf::typed_response_promise<std::string>> drained;
    std::function<void()> start_waiting;  // set once the behaviour's helpers exist
    std::function<void(uint64_t)> forget; // ends a session's bookkeeping
};

} // namespace

caf::behavior scheduler_actor(caf::event_based_actor* self, std::shared_ptr<Runtime> runtime,
                              std::shared_ptr<const LiveConfig> live, caf::actor publisher) {
    auto st = std::make_shared<State>();
    st->publisher = publisher;
    st->runtime = runtime;
    st->live = live;
    st->config = live->config;
    auto tell_drained = [=] {
        if (!st->draining || !st->drain_to || !st->sessions.empty()) return;
        self->send(caf::actor_cast<caf::actor>(st->drain_to), drained_atom::value, st->drain_tag);
        st->drain_to = nullptr;
    };

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

    // Asks the owner to end a stream; it answers with ended_atom once the stream's last
    // message is out and no step of it is in flight.
    auto end_stream = [=](uint64_t key, Session& s, const std::string& reason) {
        if (s.ending) return;
        s.ending = true;
        self->send(st->owner, finish_atom::value, key, reason, std::string());
    };

    // The session is over: its slot back to the cache, its id kept for replay's sake.
    st->forget = [=](uint64_t key) {
        auto it = st->sessions.find(key);
        if (it == st->sessions.end()) return;
        Session& s = it->second;
        if (s.slot >= 0) self->send(st->cache, release_atom::value, s.slot, std::move(s.cached));
        if (s.running) set_running(-1);
        st->finished_ids[s.id] = Clock::now();
        st->by_id.erase(s.id);
        st->waiting.erase(std::remove(st->waiting.begin(), st->waiting.end(), key),
                          st->waiting.end());
        st->sessions.erase(it);
        st->start_waiting();
        if (st->sessions.empty()) {
            for (auto& promise : st->drained) promise.deliver(std::string("drained"));
            st->drained.clear();
            tell_drained();
        }
    };

    st->start_waiting = [=] {
        while (!st->shutting_down && st->running < st->config.engine.max_sessions &&
               !st->waiting.empty()) {
            const uint64_t key = st->waiting.front();
            st->waiting.pop_front();
            st->sessions.at(key).running = true;
            st->sessions.at(key).awaiting_slot = true;
            set_running(+1);
            self->request(st->cache, caf::infinite, acquire_atom::value,
                          std::move(st->sessions.at(key).prompt))
                .then(
                    [=](const SlotTable::Grant& grant) {
                        const int32_t slot = grant.slot;
                        auto it = st->sessions.find(key);
                        if (it == st->sessions.end()) { // cannot happen: ends go via the owner
                            if (slot >= 0) self->send(st->cache, release_atom::value, slot);
                            return;
                        }
                        Session& s = it->second;
                        s.slot = slot;
                        s.awaiting_slot = false;
                        if (s.ended) return st->forget(key); // ended while the request was out
                        if (slot < 0) {
                            self->send(st->owner, finish_atom::value, key, std::string("error"),
                                       std::string("no KV-cache slot free"));
                            s.ending = true;
                        } else if (!s.ending) {
                            self->send(st->owner, start_atom::value, key, grant);
                        }
                    },
                    [=](caf::error& e) {
                        auto it = st->sessions.find(key);
                        if (it != st->sessions.end()) {
                            it->second.awaiting_slot = false;
                            if (it->second.ended) return st->forget(key);
                        }
                        self->send(st->owner, finish_atom::value, key, std::string("error"),
                                   self->system().render(e));
                    });
        }
    };

    // start_waiting refers to the state that holds it: break that cycle (and drop the handles
    // of other actors) when the scheduler terminates, or their threads would wait forever.
    self->attach_functor([st] {
        st->start_waiting = nullptr;
        st->forget = nullptr;
        st->owner = st->cache = st->publisher = nullptr;
    });

    return {
        [=](wire_atom, caf::actor owner, caf::actor cache) {
            st->owner = owner;
            st->cache = cache;
        },
        [=](admit_atom, stream_setup& setup) -> answer {
            using protocol::ErrorCode;
            auto refuse = [&](protocol::RequestError error) {
                log::info("refused " + (setup.id.empty() ? std::string("a request") : setup.id) +
                          ": " + protocol::error_code_name(error.code) + ": " + error.message);
                return answer{setup.id, int32_t(error.code), error.message};
            };
            if (st->shutting_down || st->draining)
                return refuse({ErrorCode::ShuttingDown, "the daemon is shutting down"});
            prune_finished();
            if (setup.id.empty()) {
                // Appended rather than "g" + string: GCC 12 warns falsely (-Wrestrict) on the
                // latter.
                uint64_t n = st->next_session + st->requests_admitted;
                do {
                    setup.id = "g";
                    setup.id += std::to_string(n++);
                } while (st->by_id.count(setup.id) || st->finished_ids.count(setup.id));
            } else if (st->by_id.count(setup.id)) {
                // Only a running or queued stream holds its id; a finished one's is taken again.
                return refuse(
                    {ErrorCode::DuplicateId,
                     "stream id '" + setup.id + "' is in use by a stream still " +
                         (st->sessions.at(st->by_id.at(setup.id)).running ? "running" : "queued")});
            } else {
                st->finished_ids.erase(setup.id);
            }
            if (int64_t(st->sessions.size()) >= st->config.limits.queue_depth) {
                return refuse({ErrorCode::Busy, "the queue is full (" +
                                                    std::to_string(st->config.limits.queue_depth) +
                                                    " requests admitted); try again later"});
            }
            const uint64_t key = st->next_session++;
            ++st->requests_admitted;
            const std::string id = setup.id;
            log::info("admitted " + id + ": " + std::to_string(setup.prompt_tokens.size()) +
                      " prompt tokens, max_tokens " + std::to_string(setup.params.max_tokens));
            st->sessions[key].prompt = setup.prompt_tokens;
            // The publisher forgets a finished stream of this id before anything of the new one
            // can reach it: the owner publishes only after open_atom, sent after this, and the
            // ingress hears of the admission after this too.
            self->send(st->publisher, renew_atom::value, id);
            self->send(st->owner, open_atom::value, key, std::move(setup));
            st->sessions[key].id = id;
            st->by_id[id] = key;
            st->waiting.push_back(key);
            st->start_waiting();
            return answer{id, -1, ""};
        },
        // The owner is done with the stream (its final message is going out). With a slot
        // request still out, the session stays, running, until the reply: status never shows
        // a slot in use by no session.
        [=](ended_atom, uint64_t key, std::vector<int32_t>& cached) {
            auto it = st->sessions.find(key);
            if (it == st->sessions.end()) return;
            it->second.ending = true;
            it->second.cached = std::move(cached);
            if (it->second.awaiting_slot) {
                it->second.ended = true;
                return;
            }
            st->forget(key);
        },
        [=](known_atom, const std::string& id) -> bool { return st->by_id.count(id) != 0; },
        [=](cancel_atom, const std::string& id) -> answer {
            auto it = st->by_id.find(id);
            // A stream already told to end (cancelled before, or shutting down) is as good as
            // finished: its final message may be out before the owner's ended_atom is here.
            if (it == st->by_id.end() || st->sessions.at(it->second).ending) {
                const bool finished = st->finished_ids.count(id) != 0 || it != st->by_id.end();
                return answer{id, int32_t(protocol::ErrorCode::NotFound),
                              finished ? "stream '" + id + "' has already finished"
                                       : "no stream '" + id + "'"};
            }
            end_stream(it->second, st->sessions.at(it->second), "cancelled");
            return answer{id, -1, ""};
        },
        [=](status_atom) -> caf::result<status_report> {
            auto promise = self->make_response_promise<status_report>();
            self->request(st->cache, caf::infinite, stats_atom::value)
                .then([=](const SlotStats& slots) mutable {
                    const Runtime& rt = *st->runtime;
                    const auto now = Clock::now();
                    auto busy =
                        st->busy + (st->running > 0 ? now - st->busy_since : Clock::duration{});
                    const double busy_s = std::chrono::duration<double>(busy).count();
                    const auto& hp = rt.model->hparams();
                    status_report r;
                    r.model_path = rt.model_path;
                    r.n_vocab = hp.n_vocab;
                    r.n_layer = hp.n_layer;
                    r.n_embd = hp.n_embd;
                    r.context = rt.kv->n_ctx();
                    r.uptime_s = std::chrono::duration<double>(now - st->started).count();
                    r.config_generation = st->live->generation;
                    r.config_loaded_at = st->live->loaded_at;
                    r.running = st->running;
                    r.queued = int64_t(st->waiting.size());
                    r.requests_admitted = st->requests_admitted;
                    r.tokens_generated = rt.tokens_generated.load();
                    r.tokens_per_second = busy_s > 0 ? double(r.tokens_generated) / busy_s : 0.0;
                    r.kv_bytes = rt.kv->bytes();
                    r.kv_type = type_traits(rt.kv->type()).name;
                    r.prompt_chunk = st->config.engine.prompt_chunk;
                    r.prefix_cache = st->config.engine.prefix_cache;
                    r.slots = slots;
                    if (rt.weight_cache) r.weight_cache = rt.weight_cache->stats();
                    r.memory = memory_usage(*rt.model, rt.weight_cache.get(), rt.kv->bytes(),
                                            rt.scratch_bytes.load());
                    r.planned_bytes = rt.memory_plan.total();
                    promise.deliver(std::move(r));
                });
            return promise;
        },
        // The supervisor: stop admitting, and say drained_atom(tag) once nothing is left.
        [=](drain_atom, uint64_t tag) {
            st->draining = true;
            st->drain_to = self->current_sender();
            st->drain_tag = tag;
            tell_drained();
        },
        [=](health_atom) -> health {
            return {st->running, int64_t(st->waiting.size()),
                    st->runtime->tokens_generated.load(std::memory_order_relaxed)};
        },
        // A reloaded config: limits and the rest apply to requests from now on.
        [=](reconfig_atom, std::shared_ptr<const LiveConfig> next) {
            st->live = next;
            st->config = next->config;
            st->start_waiting(); // a larger queue or more sessions may start some
        },
        // Test hook (WOOLLY_TEST_HOOKS): the scheduler stops answering, as a wedged one would.
        [=](stall_atom) { std::this_thread::sleep_for(std::chrono::hours(24)); },
        [=](shutdown_atom) -> caf::result<std::string> {
            st->shutting_down = true;
            for (auto& [key, s] : st->sessions) end_stream(key, s, "shutdown");
            if (st->sessions.empty()) return std::string("drained");
            auto promise = self->make_response_promise<std::string>();
            st->drained.push_back(promise);
            return promise;
        },
    };
}

} // namespace woolly::actors
