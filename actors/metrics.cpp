// metrics.cpp — /metrics as Prometheus' text format 0.0.4: the Metrics counters and the
// scheduler's status figures under stable names (protocol/SPEC.md, "GET /metrics").
#include "metrics.h"

#include <charconv>

namespace woolly::actors {
namespace {

struct Writer {
    std::string out;
    void family(const char* name, const char* type, const char* help) {
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
    }
    void number(double v) {
        char text[32];
        out.append(text, std::to_chars(text, text + sizeof text, v).ptr);
    }
    void number(uint64_t v) {
        char text[24];
        out.append(text, std::to_chars(text, text + sizeof text, v).ptr);
    }
    void sample(const std::string& name, const std::string& labels, auto value) {
        out += name;
        if (!labels.empty()) out += "{" + labels + "}";
        out += ' ';
        number(value);
        out += '\n';
    }
    void one(const char* name, const char* type, const char* help, auto value) {
        family(name, type, help);
        sample(name, "", value);
    }
    void histogram(const char* name, const char* help, const Histogram& h) {
        family(name, "histogram", help);
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= size_t(Histogram::kBuckets); ++i) {
            cumulative += h.counts[i].load(std::memory_order_relaxed);
            std::string le = "+Inf";
            if (i < size_t(Histogram::kBuckets)) {
                char text[32];
                le.assign(text, std::to_chars(text, text + sizeof text, h.bounds[i]).ptr);
            }
            sample(std::string(name) + "_bucket", "le=\"" + le + "\"", cumulative);
        }
        sample(std::string(name) + "_sum", "", double(h.total_ns.load()) / 1e9);
        sample(std::string(name) + "_count", "", cumulative);
    }
};

} // namespace

std::string render_metrics(const Metrics& m, const status_report* s) {
    Writer w;
    w.family("woolly_requests_total", "counter",
             "Streams finished, by the ingress they came in on and their finish reason.");
    for (int src = 0; src < kSources; ++src)
        for (size_t r = 0; r < Metrics::kReasons.size(); ++r)
            w.sample("woolly_requests_total",
                     std::string("source=\"") + Metrics::kSourceNames[size_t(src)] +
                         "\",finish_reason=\"" + Metrics::kReasons[r] + "\"",
                     m.finished[size_t(src)][r].load());
    w.family("woolly_requests_admitted_total", "counter", "Streams admitted, by ingress.");
    for (int src = 0; src < kSources; ++src)
        w.sample("woolly_requests_admitted_total",
                 std::string("source=\"") + Metrics::kSourceNames[size_t(src)] + "\"",
                 m.admitted[size_t(src)].load());
    w.one("woolly_http_error_responses_total", "counter",
          "HTTP requests answered with an error status.", m.http_refused.load());
    w.one("woolly_prompt_tokens_total", "counter", "Prompt tokens of admitted streams.",
          m.prompt_tokens.load());
    w.one("woolly_generated_tokens_total", "counter", "Tokens generated and published.",
          m.generated_tokens.load());
    w.histogram("woolly_time_to_first_token_seconds", "From admission to a stream's first token.",
                m.ttft);
    w.histogram("woolly_inter_token_seconds", "Between two tokens of one stream.", m.token_gap);
    w.one("woolly_model_loaded", "gauge", "1 once the model serves, 0 while it loads.",
          uint64_t(s ? 1 : 0));
    if (!s) return w.out;
    w.one("woolly_streams_running", "gauge", "Streams generating now.", uint64_t(s->running));
    w.one("woolly_streams_queued", "gauge", "Streams admitted and waiting for a slot.",
          uint64_t(s->queued));
    w.one("woolly_prefix_cache_hits_total", "counter", "Streams started from a kept prompt prefix.",
          s->slots.hits);
    w.one("woolly_prefix_cache_misses_total", "counter", "Streams started from nothing.",
          s->slots.misses);
    w.one("woolly_prefix_cache_reused_tokens_total", "counter",
          "Prompt tokens not computed again thanks to the prefix cache.", s->slots.reused_tokens);
    w.one("woolly_weight_cache_hits_total", "counter", "Repacked weight matrices found cached.",
          s->weight_cache.hits);
    w.one("woolly_weight_cache_misses_total", "counter", "Repacked weight matrices made anew.",
          s->weight_cache.misses);
    w.one("woolly_weight_cache_evictions_total", "counter",
          "Repacked weight matrices dropped for room.", s->weight_cache.evictions);
    auto layer_label = [](size_t layer) {
        std::string label = "layer=\"";
        label += std::to_string(layer);
        label += '"';
        return label;
    };
    if (!s->weight_cache.expert_layers.empty()) {
        const auto& layers = s->weight_cache.expert_layers;
        w.family("woolly_weight_cache_expert_hits_total", "counter",
                 "A mixture's expert forms found cached, by layer.");
        for (size_t l = 0; l < layers.size(); ++l)
            w.sample("woolly_weight_cache_expert_hits_total", layer_label(l), layers[l].hits);
        w.family("woolly_weight_cache_expert_misses_total", "counter",
                 "A mixture's expert forms not cached (built, or read from the file), by layer.");
        for (size_t l = 0; l < layers.size(); ++l)
            w.sample("woolly_weight_cache_expert_misses_total", layer_label(l), layers[l].misses);
    }
    w.family("woolly_memory_bytes", "gauge", "Memory held, by part.");
    const MemoryUsage& mem = s->memory;
    for (const auto& [part, bytes] :
         {std::pair{"file_resident", mem.file_resident}, std::pair{"weight_cache", mem.cache},
          std::pair{"kv", mem.kv}, std::pair{"scratch", mem.scratch}, std::pair{"rss", mem.rss}})
        w.sample("woolly_memory_bytes", std::string("part=\"") + part + "\"", uint64_t(bytes));
    w.one("woolly_memory_planned_bytes", "gauge", "Memory the load planned for.", s->planned_bytes);
    w.one("woolly_config_generation", "gauge", "1 at start-up, one more per reload that took.",
          s->config_generation);
    w.one("woolly_uptime_seconds", "gauge", "Since the model's pipeline started.", s->uptime_s);
    return w.out;
}

} // namespace woolly::actors
