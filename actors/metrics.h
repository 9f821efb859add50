// metrics.h — the counters and histograms /metrics exposes beside the status figures: requests
// by ingress and finish reason, tokens, time to first token and the gaps between tokens. One
// Metrics lives as long as the daemon (across reloads); the last executor of each pipeline
// writes it (relaxed atomics: no lock on the per-token path), the HTTP ingress reads it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "messages.h"

namespace woolly::actors {

// A Prometheus histogram of durations: cumulative counts are made when it is written out.
struct Histogram {
    static constexpr int kBuckets = 14;
    const std::array<double, kBuckets> bounds; // seconds, ascending; +Inf after them
    std::array<std::atomic<uint64_t>, kBuckets + 1> counts{};
    std::atomic<uint64_t> total_ns{0};

    explicit Histogram(std::array<double, kBuckets> b) : bounds(b) {}
    void observe(double seconds) {
        int i = 0;
        while (i < kBuckets && seconds > bounds[size_t(i)]) ++i;
        counts[size_t(i)].fetch_add(1, std::memory_order_relaxed);
        total_ns.fetch_add(uint64_t(seconds * 1e9), std::memory_order_relaxed);
    }
};

struct Metrics {
    // finish reasons as woolly/1 names them (protocol/SPEC.md)
    static constexpr std::array<const char*, 6> kReasons = {"length",    "stop",  "eos",
                                                            "cancelled", "error", "shutdown"};
    static constexpr std::array<const char*, kSources> kSourceNames = {"zmq", "http"};

    std::array<std::array<std::atomic<uint64_t>, kReasons.size()>, kSources> finished{};
    std::array<std::atomic<uint64_t>, kSources> admitted{};
    std::atomic<uint64_t> prompt_tokens{0};    // of admitted requests
    std::atomic<uint64_t> generated_tokens{0}; // published tokens
    std::atomic<uint64_t> http_refused{0};     // HTTP requests answered with an error status
    Histogram ttft{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
    Histogram token_gap{
        {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5}};

    void count_finish(uint8_t source, std::string_view reason) {
        for (size_t i = 0; i < kReasons.size(); ++i)
            if (reason == kReasons[i]) {
                finished[source % kSources][i].fetch_add(1, std::memory_order_relaxed);
                return;
            }
    }
};

// The Prometheus text exposition (format 0.0.4) of `m` and, when the model is loaded,
// `status` (the scheduler's figures); `serving` says whether it is.
std::string render_metrics(const Metrics& m, const status_report* status);

} // namespace woolly::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<woolly::actors::Metrics>)
