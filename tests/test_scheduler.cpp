// test_scheduler.cpp — the scheduler and the cache driven directly, without sockets or
// threads, on CAF's deterministic test coordinator: this test plays the last executor (the
// streams' owner) and the ingress, and reads what the scheduler sends.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <memory>
#include <vector>

#include "actors/actors.h"
#include "actors/log.h"
#include "actors/messages.h"
#include "protocol/protocol.h"

#include <doctest/doctest.h>

using namespace woolly;
using namespace woolly::actors;

namespace {

struct Config : caf::actor_system_config {
    Config() {
        set("scheduler.policy", caf::atom("testing"));
        set("logger.file-verbosity", caf::atom("quiet"));
        set("logger.console-verbosity", caf::atom("quiet"));
        register_message_types(*this);
    }
};

// An actor that keeps every message it gets.
caf::behavior recorder(caf::event_based_actor* self,
                       std::shared_ptr<std::vector<caf::message>> log) {
    self->set_default_handler(
        [log](caf::scheduled_actor*, caf::message_view& x) -> caf::result<caf::message> {
            log->push_back(x.copy_content_to_message());
            return caf::message();
        });
    return {[](flush_atom) {}};
}

struct Fixture {
    Config cfg;
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys, true};
    caf::scheduler::test_coordinator& sched =
        dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
    std::shared_ptr<std::vector<caf::message>> owner_log =
        std::make_shared<std::vector<caf::message>>();
    caf::actor owner, cache, scheduler;

    Fixture(int64_t max_sessions, int64_t queue_depth, bool prefix_cache = true) {
        log::set_level(log::Level::warning); // admissions are logged at info
        auto runtime = std::make_shared<Runtime>();
        runtime->kv = std::make_unique<KvCachePool>(1, 16, 1, 32, max_sessions, TensorType::F16);
        auto live = std::make_shared<LiveConfig>();
        live->config.engine.max_sessions = max_sessions;
        live->config.engine.prefix_cache = prefix_cache;
        live->config.limits.queue_depth = queue_depth;
        owner = sys.spawn(recorder, owner_log);
        cache = sys.spawn(cache_actor, runtime, prefix_cache);
        // The owner's recorder stands in for the publisher too (renew_atom).
        scheduler = sys.spawn(scheduler_actor, runtime,
                              std::shared_ptr<const LiveConfig>(std::move(live)), owner);
        self->send(scheduler, wire_atom::value, owner, cache);
        sched.run();
    }
    ~Fixture() {
        for (const auto& a : {owner, cache, scheduler})
            caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
        sched.run();
    }

    answer admit(const std::string& id, std::vector<int32_t> prompt) {
        stream_setup setup;
        setup.id = id;
        setup.params.max_tokens = 8;
        setup.prompt_tokens = std::move(prompt);
        auto handle = self->request(scheduler, caf::infinite, admit_atom::value, setup);
        sched.run();
        answer out;
        handle.receive([&](answer& a) { out = a; }, [](caf::error&) { FAIL("no answer"); });
        return out;
    }
    answer cancel(const std::string& id) {
        auto handle = self->request(scheduler, caf::infinite, cancel_atom::value, id);
        sched.run();
        answer out;
        handle.receive([&](answer& a) { out = a; }, [](caf::error&) { FAIL("no answer"); });
        return out;
    }
    health probe() {
        auto handle = self->request(scheduler, caf::infinite, health_atom::value);
        sched.run();
        health out;
        handle.receive([&](health& h) { out = h; }, [](caf::error&) { FAIL("no answer"); });
        return out;
    }
    // The owner's side: the stream ended, its slot holding `cached`.
    void ended(uint64_t key, std::vector<int32_t> cached) {
        self->send(scheduler, ended_atom::value, key, std::move(cached));
        sched.run();
    }

    // What the owner was told since the last call: opens (key by id), starts and finishes.
    struct Told {
        std::map<std::string, uint64_t> opened;
        std::map<uint64_t, SlotTable::Grant> started;
        std::map<uint64_t, std::string> finish; // reason
        std::vector<std::string> renewed;       // ids told to the publisher, in order
        std::vector<std::string> order;         // "renew ID" and "open ID", as sent
    };
    Told told() {
        Told t;
        for (caf::message& m : *owner_log) {
            if (m.match_elements<renew_atom, std::string>()) {
                t.renewed.push_back(m.get_as<std::string>(1));
                t.order.push_back("renew " + m.get_as<std::string>(1));
            } else if (m.match_elements<open_atom, uint64_t, stream_setup>()) {
                t.opened[m.get_as<stream_setup>(2).id] = m.get_as<uint64_t>(1);
                t.order.push_back("open " + m.get_as<stream_setup>(2).id);
            } else if (m.match_elements<start_atom, uint64_t, SlotTable::Grant>()) {
                t.started[m.get_as<uint64_t>(1)] = m.get_as<SlotTable::Grant>(2);
            } else if (m.match_elements<finish_atom, uint64_t, std::string, std::string>()) {
                t.finish[m.get_as<uint64_t>(1)] = m.get_as<std::string>(2);
            }
        }
        owner_log->clear();
        return t;
    }
};

} // namespace

TEST_CASE("the scheduler admits, queues, starts as slots free up, and refuses past the queue") {
    Fixture f(2, 3);
    CHECK(f.admit("a", {1, 2, 3}).ok());
    CHECK(f.admit("b", {1, 2, 3, 4}).ok());
    CHECK(f.admit("c", {5, 6}).ok());
    auto t = f.told();
    REQUIRE(t.opened.size() == 3);
    const uint64_t a = t.opened.at("a"), b = t.opened.at("b"), c = t.opened.at("c");
    // Two slots: a and b start, c waits.
    REQUIRE(t.started.size() == 2);
    CHECK(t.started.count(a) == 1);
    CHECK(t.started.count(b) == 1);
    CHECK(t.started.at(a).slot != t.started.at(b).slot);
    CHECK(t.started.at(a).reused == 0);
    CHECK(f.probe().running == 2);
    CHECK(f.probe().queued == 1);
    // The queue holds three: a fourth is busy; an id in use is refused first.
    const answer busy = f.admit("d", {1});
    CHECK(busy.error == int32_t(protocol::ErrorCode::Busy));
    CHECK(f.admit("a", {1}).error == int32_t(protocol::ErrorCode::DuplicateId));
    // a ends: its slot goes to c, which has nothing in common with what a left there.
    const int32_t a_slot = t.started.at(a).slot;
    f.ended(a, {1, 2, 3, 9});
    t = f.told();
    REQUIRE(t.started.count(c) == 1);
    CHECK(t.started.at(c).slot == a_slot);
    CHECK(t.started.at(c).reused == 0);
    // b ends; e begins with b's tokens and gets b's slot with its prefix.
    f.ended(b, {1, 2, 3, 4, 7});
    CHECK(f.admit("e", {1, 2, 3, 4, 8, 8}).ok());
    t = f.told();
    const uint64_t e = t.opened.at("e");
    REQUIRE(t.started.count(e) == 1);
    CHECK(t.started.at(e).reused == 4);
    // A finished stream's id is free: a new stream takes it (c and e, running, keep theirs).
    CHECK(f.admit("e", {1}).error == int32_t(protocol::ErrorCode::DuplicateId));
    CHECK(f.admit("a", {5}).ok());
    const auto reused = f.told();
    const uint64_t a2 = reused.opened.at("a");
    CHECK(a2 != a);
    // The publisher hears of the new stream before its owner can publish anything of it.
    CHECK(reused.order == std::vector<std::string>{"renew a", "open a"});
    CHECK(f.admit("a", {5}).error == int32_t(protocol::ErrorCode::DuplicateId)); // queued
}

TEST_CASE("the scheduler cancels running and queued streams through their owner, once") {
    Fixture f(1, 4);
    CHECK(f.admit("run", {1, 2}).ok());
    CHECK(f.admit("wait", {3, 4}).ok());
    auto t = f.told();
    const uint64_t run = t.opened.at("run"), wait = t.opened.at("wait");
    CHECK(t.started.count(run) == 1);
    CHECK(t.started.count(wait) == 0);
    // A queued stream is ended by its owner too (it holds the stream from admission).
    CHECK(f.cancel("wait").ok());
    t = f.told();
    CHECK(t.finish.at(wait) == "cancelled");
    // Asked twice before the owner says it ended: already finishing.
    const answer again = f.cancel("wait");
    CHECK(again.error == int32_t(protocol::ErrorCode::NotFound));
    CHECK(again.message.find("already finished") != std::string::npos);
    f.ended(wait, {});
    CHECK(f.probe().queued == 0);
    const answer unknown = f.cancel("nobody");
    CHECK(unknown.error == int32_t(protocol::ErrorCode::NotFound));
    CHECK(unknown.message == "no stream 'nobody'");
    CHECK(f.cancel("run").ok());
    CHECK(f.told().finish.at(run) == "cancelled");
    f.ended(run, {1, 2});
    CHECK(f.probe().running == 0);
}

TEST_CASE("draining: nothing new is admitted, and drained_atom comes once the last stream ends") {
    Fixture f(2, 4);
    CHECK(f.admit("x", {1}).ok());
    const uint64_t x = f.told().opened.at("x");
    f.self->send(f.scheduler, drain_atom::value, uint64_t(7));
    f.sched.run();
    const answer refused = f.admit("y", {1});
    CHECK(refused.error == int32_t(protocol::ErrorCode::ShuttingDown));
    bool drained = false;
    f.self->receive([&](drained_atom, uint64_t) { drained = true; },
                    caf::after(std::chrono::seconds(0)) >> [] {});
    CHECK_FALSE(drained); // x still runs
    f.ended(x, {1});
    uint64_t tag = 0;
    f.self->receive([&](drained_atom, uint64_t t) { tag = t; },
                    caf::after(std::chrono::seconds(0)) >> [] { FAIL("not drained"); });
    CHECK(tag == 7);
}

TEST_CASE("without the prefix cache a slot's tokens are not reused") {
    Fixture f(1, 2, false);
    CHECK(f.admit("p", {1, 2, 3}).ok());
    const uint64_t p = f.told().opened.at("p");
    f.ended(p, {1, 2, 3, 4});
    CHECK(f.admit("q", {1, 2, 3, 4, 5}).ok());
    auto t = f.told();
    CHECK(t.started.at(t.opened.at("q")).reused == 0);
}
