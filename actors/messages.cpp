// messages.cpp — registers the actors' message types with CAF.
#include "messages.h"

#include "runtime.h"

namespace woolly::actors {

void register_message_types(caf::actor_system_config& cfg) {
    cfg.add_message_type<stream_setup>("woolly.stream_setup");
    cfg.add_message_type<activation>("woolly.activation");
    cfg.add_message_type<logits_ready>("woolly.logits_ready");
    cfg.add_message_type<tokenized>("woolly.tokenized");
    cfg.add_message_type<chat_prompt>("woolly.chat_prompt");
    cfg.add_message_type<std::vector<int32_t>>("woolly.token_ids");
    cfg.add_message_type<std::vector<float>>("woolly.floats");
    cfg.add_message_type<std::vector<std::string>>("woolly.strings");
    cfg.add_message_type<health>("woolly.health");
}

GenerationParams generation_params(const stream_setup& setup) {
    GenerationParams params;
    params.max_tokens = setup.max_tokens;
    params.sampling.temperature = setup.temperature;
    params.sampling.top_k = setup.top_k;
    params.sampling.top_p = setup.top_p;
    params.sampling.min_p = setup.min_p;
    params.sampling.repeat_penalty = setup.repeat_penalty;
    params.sampling.repeat_last_n = setup.repeat_last_n;
    params.sampling.seed = setup.seed;
    params.stop = setup.stop;
    return params;
}

KvCachePool::KvCachePool(const LlamaModel& model, int64_t n_ctx, int64_t slots, TensorType type)
    : n_ctx_(n_ctx) {
    const auto& hp = model.hparams();
    for (int64_t i = 0; i < slots; ++i)
        caches_.push_back(
            std::make_unique<KvCache>(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim, type));
}

uint64_t KvCachePool::bytes() const {
    uint64_t total = 0;
    for (const auto& c : caches_) total += c->bytes();
    return total;
}

} // namespace woolly::actors
