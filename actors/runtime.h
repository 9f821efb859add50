// runtime.h — what the loaded model gives every actor: weights, vocabulary and the KV-cache pool.
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "engine/model/kv_cache.h"
#include "engine/model/loader.h"
#include "engine/model/model.h"
#include "engine/model/weight_cache.h"
#include "engine/text/chat.h"
#include "engine/text/vocab.h"

namespace woolly::actors {

// A configuration as the daemon serves it: the config, its generation (1 at start-up, one
// more with each reload that took) and when it was loaded.
struct LiveConfig {
    config::DaemonConfig config;
    uint64_t generation = 1;
    std::string loaded_at; // ISO 8601, UTC
};

struct Runtime {
    std::string model_path;
    std::unique_ptr<LlamaModel> model;
    std::unique_ptr<Vocab> vocab;
    std::optional<ChatFormat> chat; // the chat template `messages` are rendered with
    std::string chat_error;         // why there is none, for a request that needs it
    std::unique_ptr<KvCachePool> kv;
    std::unique_ptr<WeightCache> weight_cache; // null when engine.weight_cache_mib is 0
    MemoryPlan memory_plan;                    // what loading planned, as fitted
    double load_ms = 0;
    std::string load_note;                     // what fitting changed (the cache shrunk), or empty
    std::atomic<uint64_t> scratch_bytes{0};    // the executors' forward scratches, as made
    std::atomic<uint64_t> tokens_generated{0}; // counted by the last executor, read by status
};

} // namespace woolly::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<woolly::actors::Runtime>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const woolly::actors::LiveConfig>)
