// ingress.cpp — the HTTP ingress actor: routes, authentication, OpenAI's request and response
// shapes (protocol/openai.h) over the tokenizer, the scheduler and the publisher. Every
// generation it admits is a woolly/1 stream whose messages the publisher forwards here
// (watch_atom); a client that goes away cancels its stream.
#include "ingress.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <optional>
#include <pthread.h>
#include <random>

#include "actors/actors.h"
#include "actors/log.h"
#include "actors/runtime.h"
#include "chat_page.h"
#include "engine/text/reasoning.h"
#include "engine/text/tool_calls.h"
#include "protocol/openai.h"
#include "protocol/protocol.h"

namespace woolly::actors {
namespace {

namespace openai = protocol::openai;
using nlohmann::json;
using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view text) {
    Digest d{};
    unsigned int n = 0;
    EVP_Digest(text.data(), text.size(), d.data(), &n, EVP_sha256(), nullptr);
    return d;
}

// The API keys of `path`, one per line (blank lines and # comments skipped), as digests.
std::vector<Digest> read_api_keys(const std::string& path) {
    std::vector<Digest> keys;
    if (path.empty()) return keys;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("http.api_keys_file " + path + ": cannot be read");
    std::string line;
    while (std::getline(in, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
            line.pop_back();
        const size_t start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line[start] == '#') continue;
        keys.push_back(sha256(line.substr(start)));
    }
    if (keys.empty())
        throw std::runtime_error("http.api_keys_file " + path + ": no keys in it (one per line)");
    return keys;
}

// A client of one request: its own generation, or a stream it follows (GET /v1/streams/ID).
struct Listener {
    std::shared_ptr<http::Exchange> exchange;
    std::string stream; // the woolly/1 stream's id
    openai::Head head;
    bool follow = false;
    bool events = true; // SSE; false: one response at the end
    bool include_usage = false;
    bool logprobs = false; // each token's log-probabilities go with it
    bool open = false;     // admitted (own) or found (follow): messages go out
    bool role_sent = false;
    bool gone = false; // the client left before its stream was admitted
    uint64_t next_seq = 0;
    std::string text;                 // the whole reply, without SSE
    std::string logprob_entries;      // without SSE, with logprobs: the entries, comma-separated
    std::vector<std::string> pending; // messages that came before `open`
    caf::actor scheduler;             // the one that admitted it (own streams)
    // With tools: the reply read as content and calls, and the calls so far.
    std::optional<ToolCallParser> parser;
    ToolSyntax syntax = ToolSyntax::None;
    std::vector<ToolCall> calls;
    std::vector<ToolCallParser::Event> parsed; // scratch
    // A thinking model's reply: its reasoning told from its answer, and the reasoning so far
    // (without SSE).
    std::optional<ReasoningSplitter> thinking;
    std::string reasoning;
    std::vector<ReasoningSplitter::Event> split; // scratch
};

struct State {
    std::shared_ptr<const LiveConfig> live;
    caf::actor publisher, tokenizer, scheduler;
    std::vector<caf::actor> retiring;
    std::shared_ptr<Metrics> metrics;
    std::unique_ptr<http::Server> server;
    std::string bound;     // http.listen as bound; empty: none
    std::string bound_tls; // the TLS files it was bound with
    std::vector<Digest> keys;
    std::string loading_model, model_id;
    int64_t created = 0;
    int32_t n_vocab = 0;
    double load_progress = 0;
    bool stopping = false;
    std::mt19937_64 rng{std::random_device{}()};
    std::map<uint64_t, Listener> listeners; // by exchange
    std::multimap<std::string, uint64_t> by_stream;
};

http::Limits limits_of(const config::DaemonConfig& c) {
    http::Limits l;
    l.max_body_bytes = size_t(c.http.max_body_bytes);
    l.max_header_bytes = size_t(c.http.max_header_bytes);
    l.idle_timeout = std::chrono::seconds(c.http.idle_timeout_seconds);
    l.read_timeout = std::chrono::seconds(c.http.read_timeout_seconds);
    l.max_connections = size_t(c.http.max_connections);
    return l;
}

std::string path_of(const std::string& target) {
    return target.substr(0, target.find('?'));
}

} // namespace

caf::behavior http_ingress_actor(caf::event_based_actor* self,
                                 std::shared_ptr<const LiveConfig> live, caf::actor publisher,
                                 std::shared_ptr<Metrics> metrics, std::string loading_model) {
    pthread_setname_np(pthread_self(), "woolly-http"); // its own thread (detached)
    auto st = std::make_shared<State>();
    st->live = live;
    st->publisher = publisher;
    st->metrics = metrics;
    st->loading_model = loading_model;
    {
        caf::actor me = caf::actor_cast<caf::actor>(self);
        st->server = std::make_unique<http::Server>(
            [me](std::shared_ptr<http::Exchange> exchange, http::Request&& request) {
                caf::anon_send(me, http_atom::value,
                               std::make_shared<HttpIncoming>(
                                   HttpIncoming{std::move(exchange), std::move(request)}));
            },
            [me](uint64_t exchange) { caf::anon_send(me, closed_atom::value, exchange); },
            limits_of(live->config));
    }
    // The server's handlers hold this actor: it stops with the actor.
    self->attach_functor([st] {
        if (st->server) st->server->stop();
        st->server.reset();
        st->publisher = st->tokenizer = st->scheduler = nullptr;
        st->retiring.clear();
    });

    auto respond_json = [=](http::Exchange& ex, int status, const json& body,
                            http::Headers headers = {}) {
        ex.respond(status, "application/json",
                   body.dump(-1, ' ', false, json::error_handler_t::replace), std::move(headers));
    };
    auto respond_error = [=](http::Exchange& ex, const openai::Error& e,
                             http::Headers headers = {}) {
        st->metrics->http_refused.fetch_add(1, std::memory_order_relaxed);
        if (e.status == 429) headers.emplace_back("Retry-After", "1");
        if (e.status == 401) headers.emplace_back("WWW-Authenticate", "Bearer");
        ex.respond(e.status, "application/json", openai::encode_error(e), std::move(headers));
    };
    // Why nothing is served yet (or any more): 503.
    auto not_serving = [=]() -> openai::Error {
        if (st->stopping)
            return openai::error_from(protocol::ErrorCode::ShuttingDown,
                                      "the daemon is shutting down");
        char percent[16];
        std::snprintf(percent, sizeof percent, "%.0f %%", st->load_progress * 100);
        return openai::error_from(protocol::ErrorCode::Loading, "the model is loading (" +
                                                                    st->loading_model + ", " +
                                                                    percent + ")");
    };
    auto serving = [=] { return st->scheduler && !st->stopping; };

    // A tool call's id: Mistral's templates want 9 letters and digits, OpenAI's look like
    // call_ and 24 more.
    auto call_id = [=](ToolSyntax syntax) {
        static const char alphabet[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const bool mistral = syntax == ToolSyntax::MistralNemo;
        std::string id = mistral ? "" : "call_";
        for (size_t i = 0; i < (mistral ? kMistralIdLength : 24); ++i)
            id += alphabet[st->rng() % (sizeof alphabet - 1)];
        return id;
    };
    // Text of the reply: content, or with tools what the parser makes of it (content, calls
    // begun, more of their arguments), as chunks or kept for the one response.
    auto content = [](Listener& l, std::string_view text) {
        if (!l.events) {
            l.text += text;
        } else if (!text.empty()) {
            l.exchange->event(openai::encode_chunk(l.head, text, !l.role_sent, ""));
            l.role_sent = true;
        }
    };
    auto answer_text = [=](Listener& l, std::string_view text, bool last) {
        if (!l.parser) return content(l, text);
        l.parsed.clear();
        l.parser->push(text, l.parsed);
        if (last) l.parser->finish(l.parsed);
        for (ToolCallParser::Event& e : l.parsed) {
            switch (e.kind) {
            case ToolCallParser::Event::Kind::Content:
                content(l, e.text);
                break;
            case ToolCallParser::Event::Kind::Call:
                l.calls.push_back({call_id(l.syntax), std::move(e.text), ""});
                if (l.events)
                    l.exchange->event(
                        openai::encode_tool_call_chunk(l.head, e.index, l.calls.back()));
                break;
            case ToolCallParser::Event::Kind::Arguments:
                if (e.index >= l.calls.size()) break;
                l.calls[e.index].arguments += e.text;
                if (l.events && !e.text.empty())
                    l.exchange->event(
                        openai::encode_tool_call_chunk(l.head, e.index, {"", "", e.text}));
                break;
            }
        }
    };
    // A thinking model's reasoning goes out as reasoning_content, the rest as above.
    auto reply_text = [=](Listener& l, std::string_view text, bool last) {
        if (!l.thinking || l.head.endpoint != openai::Endpoint::Chat)
            return answer_text(l, text, last);
        l.split.clear();
        l.thinking->push(text, l.split);
        if (last) l.thinking->finish(l.split);
        for (const ReasoningSplitter::Event& e : l.split) {
            if (e.kind == ReasoningSplitter::Event::Kind::Content) {
                answer_text(l, e.text, false);
            } else if (!l.events) {
                l.reasoning += e.text;
            } else {
                l.exchange->event(openai::encode_reasoning_chunk(l.head, e.text, !l.role_sent));
                l.role_sent = true;
            }
        }
        if (last) answer_text(l, "", true);
    };

    // Bearer keys, compared as SHA-256 digests in constant time, every key each time.
    auto authorized = [=](const std::string& header) {
        if (st->keys.empty()) return true;
        const std::string prefix = "Bearer ";
        if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0)
            return false;
        const Digest given = sha256(std::string_view(header).substr(prefix.size()));
        int match = 0;
        for (const Digest& key : st->keys)
            match |= CRYPTO_memcmp(key.data(), given.data(), key.size()) == 0;
        return match != 0;
    };

    auto forget = [=](uint64_t exchange) {
        auto it = st->listeners.find(exchange);
        if (it == st->listeners.end()) return;
        const std::string stream = it->second.stream;
        for (auto [a, b] = st->by_stream.equal_range(stream); a != b; ++a)
            if (a->second == exchange) {
                st->by_stream.erase(a);
                break;
            }
        const bool done = it->second.open && it->second.next_seq == UINT64_MAX;
        st->listeners.erase(it);
        if (!done && st->by_stream.count(stream) == 0)
            self->send(st->publisher, unwatch_atom::value, stream);
    };

    // The stream's end as the listener's client sees it.
    auto finish = [=](Listener& l, const json& m) {
        const std::string reason = m.value("finish_reason", std::string("error"));
        const std::string tail = m.value("text", std::string());
        const json& u = m.contains("usage") ? m["usage"] : json::object();
        openai::Totals totals;
        totals.prompt_tokens = u.value("prompt_tokens", int64_t(0));
        totals.completion_tokens = u.value("completion_tokens", int64_t(0));
        totals.cached_tokens = u.value("cached_tokens", int64_t(0));
        l.next_seq = UINT64_MAX;
        if (reason == "error" || reason == "shutdown") {
            const openai::Error e =
                reason == "shutdown"
                    ? openai::error_from(protocol::ErrorCode::ShuttingDown,
                                         "the daemon is shutting down: the stream was ended")
                    : openai::error_from(protocol::ErrorCode::Internal,
                                         m.contains("error")
                                             ? m["error"].value("message", std::string("error"))
                                             : std::string("error"));
            if (!l.events) return respond_error(*l.exchange, e, {{"X-Woolly-Stream-Id", l.stream}});
            l.exchange->event(openai::encode_error(e));
            l.exchange->event("[DONE]");
            l.exchange->close_events();
            return;
        }
        const char* fr = openai::finish_reason(reason);
        reply_text(l, tail, true);
        // A reply that made its calls and ended there says so (OpenAI's "tool_calls").
        if (!l.calls.empty() && std::string_view(fr) == "stop") fr = "tool_calls";
        if (!l.events) {
            l.exchange->respond(200, "application/json",
                                openai::encode_response(l.head, l.text, fr, totals,
                                                        l.logprobs ? &l.logprob_entries : nullptr,
                                                        &l.calls, l.reasoning),
                                {{"X-Woolly-Stream-Id", l.stream}});
            return;
        }
        l.exchange->event(openai::encode_chunk(l.head, "", false, fr));
        if (l.include_usage) l.exchange->event(openai::encode_usage_chunk(l.head, totals));
        l.exchange->event("[DONE]");
        l.exchange->close_events();
    };

    // One message of the listener's stream: a token's `text`, or (`m`) any other message as
    // parsed JSON. True once it was the last.
    auto deliver = [=](Listener& l, uint64_t seq, const std::string* text, const json* m) -> bool {
        if (seq < l.next_seq) return false; // seen already (the kept ones and a live one)
        l.next_seq = seq + 1;
        if (m && m->value("done", false)) {
            finish(l, *m);
            return true;
        }
        if (m) {
            const auto t = m->find("text");
            if (t == m->end() || !t->is_string()) return false;
            text = &t->get_ref<const std::string&>();
        }
        if (l.logprobs && m && m->contains("logprob")) { // a chunk for every token, its text or not
            const std::string entry = openai::logprob_entry(*m);
            if (!l.events) {
                l.text += *text;
                if (!l.logprob_entries.empty()) l.logprob_entries += ',';
                l.logprob_entries += entry;
            } else {
                l.exchange->event(openai::encode_chunk(l.head, *text, !l.role_sent, "", &entry));
                l.role_sent = true;
            }
            return false;
        }
        reply_text(l, *text, false);
        return false;
    };
    // A published message as deliver takes it: token messages read without a JSON parser.
    struct Read {
        uint64_t seq = 0;
        std::string text;
        std::optional<json> message; // not a token message
    };
    auto read = [](const std::string& raw, Read& r) {
        r.message.reset();
        if (protocol::read_token_message(raw, r.seq, r.text)) return;
        r.message = json::parse(raw);
        r.seq = r.message->value("seq", uint64_t(0));
    };
    auto deliver_read = [=](Listener& l, const Read& r) {
        return deliver(l, r.seq, &r.text, r.message ? &*r.message : nullptr);
    };

    // The listener's client may hear its stream now: what came before, then the rest live.
    auto open = [=](uint64_t exchange, http::Headers headers) {
        auto it = st->listeners.find(exchange);
        if (it == st->listeners.end()) return;
        Listener& l = it->second;
        l.open = true;
        if (l.events) {
            l.exchange->open_events(std::move(headers));
            if (!l.follow && l.head.endpoint == openai::Endpoint::Chat) {
                // OpenAI's first chunk: the role, no text yet
                l.exchange->event(openai::encode_chunk(l.head, "", true, ""));
                l.role_sent = true;
            }
        }
        bool ended = false;
        Read r;
        for (const std::string& raw : l.pending) {
            if (ended) break;
            read(raw, r);
            ended = deliver_read(l, r);
        }
        l.pending.clear();
        if (ended) forget(exchange);
    };

    auto listen = [=](std::shared_ptr<const LiveConfig> next) -> std::string {
        const config::DaemonConfig& c = next->config;
        const std::string tls = c.http.tls_cert_file + "\n" + c.http.tls_key_file;
        st->server->set_limits(limits_of(c));
        if (c.http.listen == st->bound && tls == st->bound_tls) return "";
        try {
            if (c.http.listen.empty()) {
                st->server->close_listener();
            } else {
                const auto [host, port] = config::http_host_and_port(c.http.listen);
                st->server->listen(host, port, c.http.tls_cert_file, c.http.tls_key_file);
            }
        } catch (const std::exception& e) {
            return e.what();
        }
        if (!st->bound.empty() || !c.http.listen.empty())
            log::info("http: " +
                      (c.http.listen.empty()
                           ? std::string("off")
                           : (c.http.tls() ? "https://" : "http://") + c.http.listen) +
                      (st->bound.empty() ? "" : " (was " + st->bound + ")"));
        st->bound = c.http.listen;
        st->bound_tls = tls;
        return "";
    };

    // A stream id the client's request runs under (and its X-Woolly-Stream-Id).
    auto new_id = [=](const char* prefix) {
        static const char alphabet[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        std::string id = prefix;
        for (int i = 0; i < 24; ++i) id += alphabet[st->rng() % (sizeof alphabet - 1)];
        return id;
    };

    auto completion = [=](std::shared_ptr<http::Exchange> ex, const std::string& body,
                          openai::Endpoint endpoint) {
        auto decoded = openai::decode_completion(
            body, endpoint, decode_limits(st->live->config, st->live->config.http.max_body_bytes));
        if (auto* e = std::get_if<openai::Error>(&decoded)) {
            log::info("http: refused a completion: " + e->message);
            return respond_error(*ex, *e);
        }
        auto& r = std::get<openai::CompletionRequest>(decoded);
        if (!serving()) return respond_error(*ex, not_serving());
        if (!r.model.empty() && r.model != st->model_id)
            return respond_error(*ex, {404,
                                       "the model '" + r.model + "' is not served here (this " +
                                           "daemon serves '" + st->model_id + "')",
                                       "invalid_request_error", "model", "model_not_found"});
        const bool chat = endpoint == openai::Endpoint::Chat;
        Listener l;
        l.exchange = ex;
        l.stream = new_id(chat ? "chatcmpl-" : "cmpl-");
        l.head = {l.stream, int64_t(std::time(nullptr)), st->model_id, endpoint};
        l.events = r.stream;
        l.include_usage = r.include_usage;
        l.logprobs = r.logprobs;
        l.scheduler = st->scheduler;
        const uint64_t key = ex->id();
        const std::string id = l.stream;
        st->listeners.emplace(key, std::move(l));
        st->by_stream.emplace(id, key);
        // Watched before it is admitted: none of its messages can be published before this.
        self->request(st->publisher, caf::infinite, watch_atom::value, id)
            .then([](const outgoing_batch&) {});
        stream_setup setup;
        setup.id = id;
        setup.params = std::move(r.params);
        setup.source = uint8_t(Source::http);
        if (!r.seed_given) setup.params.sampling.seed = st->rng();
        const openai::ToolChoice tool_choice = r.tool_choice;
        auto admit = [=, setup = std::move(setup)](tokenized& t) mutable {
            auto it = st->listeners.find(key);
            if (it == st->listeners.end()) return;
            if (it->second.gone) return forget(key);
            if (!t.error.empty()) {
                log::info("http: refused " + id + ": " + t.error);
                respond_error(*ex,
                              openai::error_from(t.bad_request ? protocol::ErrorCode::BadRequest
                                                               : protocol::ErrorCode::TooLarge,
                                                 t.error));
                return forget(key);
            }
            setup.prompt_tokens = std::move(t.tokens);
            if (t.reasoning) it->second.thinking.emplace();
            if (t.tool_syntax != 0 && tool_choice != openai::ToolChoice::None) {
                it->second.syntax = ToolSyntax(t.tool_syntax);
                it->second.parser.emplace(it->second.syntax);
                setup.params.constraint = t.constraint;
            }
            caf::actor scheduler = it->second.scheduler;
            self->request(scheduler, caf::infinite, admit_atom::value, std::move(setup))
                .then(
                    [=](const answer& a) {
                        auto it = st->listeners.find(key);
                        if (it == st->listeners.end()) return;
                        if (!a.ok()) {
                            respond_error(
                                *ex, openai::error_from(protocol::ErrorCode(a.error), a.message));
                            return forget(key);
                        }
                        if (it->second.gone) { // left while being admitted
                            self->request(scheduler, caf::infinite, cancel_atom::value, id)
                                .then([](const answer&) {});
                            return forget(key);
                        }
                        open(key, {{"X-Woolly-Stream-Id", id}});
                    },
                    [=](caf::error& e) {
                        respond_error(*ex, openai::error_from(protocol::ErrorCode::Internal,
                                                              self->system().render(e)));
                        forget(key);
                    });
        };
        auto failed = [=](caf::error& e) {
            respond_error(
                *ex, openai::error_from(protocol::ErrorCode::Internal, self->system().render(e)));
            forget(key);
        };
        if (chat) {
            chat_prompt prompt;
            prompt.messages = std::move(r.messages);
            prompt.enable_thinking = r.enable_thinking;
            if (!r.tools.is_null()) {
                prompt.tools = r.tools.dump();
                prompt.tool_choice = uint8_t(r.tool_choice);
                prompt.tool_name = r.tool_name;
                prompt.parallel_tool_calls = r.parallel_tool_calls;
            }
            self->request(st->tokenizer, caf::infinite, tokenize_atom::value, std::move(prompt))
                .then(admit, failed);
        } else {
            self->request(st->tokenizer, caf::infinite, tokenize_atom::value, r.prompt)
                .then(admit, failed);
        }
    };

    // GET /v1/streams/ID: any stream, from its first kept message, then live.
    auto follow = [=](std::shared_ptr<http::Exchange> ex, const std::string& id) {
        if (!protocol::is_valid_stream_id(id))
            return respond_error(*ex, {400, "a stream id matches [A-Za-z0-9_-]{1,64}",
                                       "invalid_request_error", "id", ""});
        if (!serving()) return respond_error(*ex, not_serving());
        Listener l;
        l.exchange = ex;
        l.stream = id;
        l.follow = true;
        l.head = {id, int64_t(std::time(nullptr)), st->model_id, openai::Endpoint::Chat};
        const uint64_t key = ex->id();
        st->listeners.emplace(key, std::move(l));
        st->by_stream.emplace(id, key);
        self->request(st->publisher, caf::infinite, watch_atom::value, id)
            .then([=](outgoing_batch& kept) {
                auto it = st->listeners.find(key);
                if (it == st->listeners.end()) return;
                // The kept messages come first; live ones that came meanwhile are after them.
                std::vector<std::string> pending;
                for (outgoing& m : kept) pending.push_back(std::move(m.json));
                for (std::string& m : it->second.pending) pending.push_back(std::move(m));
                it->second.pending = std::move(pending);
                if (!it->second.pending.empty()) return open(key, {{"X-Woolly-Stream-Id", id}});
                // Nothing published yet: queued (it will come), or no such stream.
                std::vector<caf::actor> schedulers = st->retiring;
                schedulers.push_back(st->scheduler);
                auto asked = std::make_shared<size_t>(0);
                auto found = std::make_shared<bool>(false);
                for (const caf::actor& s : schedulers)
                    self->request(s, caf::infinite, known_atom::value, id)
                        .then(
                            [=](bool known) {
                                *found = *found || known;
                                if (++*asked < schedulers.size()) return;
                                if (st->listeners.count(key) == 0) return;
                                if (*found || !st->listeners.at(key).pending.empty())
                                    return open(key, {{"X-Woolly-Stream-Id", id}});
                                respond_error(*ex, {404,
                                                    "no stream '" + id +
                                                        "' (unknown, or finished and expired)",
                                                    "invalid_request_error", "id", "not_found"});
                                forget(key);
                            },
                            [=](caf::error&) {
                                if (++*asked < schedulers.size()) return;
                                respond_error(*ex,
                                              openai::error_from(protocol::ErrorCode::Internal,
                                                                 "the scheduler did not answer"));
                                forget(key);
                            });
            });
    };

    auto tokenize = [=](std::shared_ptr<http::Exchange> ex, const std::string& body) {
        auto decoded = openai::decode_tokenize(body);
        if (auto* e = std::get_if<openai::Error>(&decoded)) return respond_error(*ex, *e);
        if (!serving()) return respond_error(*ex, not_serving());
        auto& r = std::get<openai::TokenizeRequest>(decoded);
        const bool pieces = r.with_pieces;
        self->request(st->tokenizer, caf::infinite, tokenize_atom::value, r.content, r.add_special)
            .then([=](const token_list& t) {
                json tokens = json::array();
                for (size_t i = 0; i < t.tokens.size(); ++i) {
                    if (pieces)
                        tokens.push_back({{"id", t.tokens[i]}, {"piece", t.pieces[i]}});
                    else
                        tokens.push_back(t.tokens[i]);
                }
                respond_json(*ex, 200, {{"tokens", std::move(tokens)}});
            });
    };

    auto detokenize = [=](std::shared_ptr<http::Exchange> ex, const std::string& body) {
        if (!serving()) return respond_error(*ex, not_serving());
        auto decoded = openai::decode_detokenize(body, st->n_vocab);
        if (auto* e = std::get_if<openai::Error>(&decoded)) return respond_error(*ex, *e);
        self->request(st->tokenizer, caf::infinite, detokenize_atom::value,
                      std::get<std::vector<int32_t>>(decoded))
            .then([=](const std::string& text) {
                respond_json(*ex, 200, {{"content", text}});
            });
    };

    auto metrics_page = [=](std::shared_ptr<http::Exchange> ex) {
        const char* type = "text/plain; version=0.0.4; charset=utf-8";
        if (!st->scheduler) return ex->respond(200, type, render_metrics(*st->metrics, nullptr));
        self->request(st->scheduler, std::chrono::seconds(5), status_atom::value)
            .then(
                [=](const status_report& r) {
                    ex->respond(200, type, render_metrics(*st->metrics, &r));
                },
                [=](caf::error&) {
                    ex->respond(200, type, render_metrics(*st->metrics, nullptr));
                });
    };

    auto route = [=](std::shared_ptr<http::Exchange> ex, http::Request& req) {
        const std::string path = path_of(req.target);
        const std::string& method = req.method;
        auto only = [&](const char* allowed) {
            if (method == allowed) return true;
            respond_error(*ex,
                          {405, "use " + std::string(allowed) + " for " + path,
                           "invalid_request_error", "", "method_not_allowed"},
                          {{"Allow", allowed}});
            return false;
        };
        if (path == "/health") {
            if (!only("GET")) return;
            if (serving()) return respond_json(*ex, 200, {{"status", "ok"}});
            const openai::Error e = not_serving();
            json body = json::parse(openai::encode_error(e));
            body["status"] = st->stopping ? "shutting_down" : "loading";
            if (!st->stopping) body["progress"] = st->load_progress;
            return respond_json(*ex, 503, body);
        }
        if (path == "/" || path == "/index.html") {
            if (!only("GET")) return;
            return ex->respond(200, "text/html; charset=utf-8", std::string(kChatPage));
        }
        if (!authorized(req.authorization))
            return respond_error(*ex, {401,
                                       req.authorization.empty()
                                           ? "an API key is required: Authorization: Bearer KEY"
                                           : "the API key is not valid",
                                       "invalid_request_error", "", "invalid_api_key"});
        if (path == "/metrics") {
            if (only("GET")) metrics_page(ex);
            return;
        }
        if (path == "/v1/chat/completions" || path == "/v1/completions") {
            if (only("POST"))
                completion(ex, req.body,
                           path == "/v1/completions" ? openai::Endpoint::Completion
                                                     : openai::Endpoint::Chat);
            return;
        }
        if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
            if (!only("GET")) return;
            if (!serving()) return respond_error(*ex, not_serving());
            const json model = openai::model_object(st->model_id, st->created);
            if (path == "/v1/models")
                return respond_json(*ex, 200, {{"object", "list"}, {"data", {model}}});
            const std::string id = path.substr(11);
            if (id == st->model_id) return respond_json(*ex, 200, model);
            return respond_error(
                *ex, {404, "no model '" + id + "' (this daemon serves '" + st->model_id + "')",
                      "invalid_request_error", "model", "model_not_found"});
        }
        if (path.rfind("/v1/streams/", 0) == 0) {
            if (only("GET")) follow(ex, path.substr(12));
            return;
        }
        if (path == "/tokenize") {
            if (only("POST")) tokenize(ex, req.body);
            return;
        }
        if (path == "/detokenize") {
            if (only("POST")) detokenize(ex, req.body);
            return;
        }
        respond_error(*ex, {404, "no such endpoint: " + method + " " + path,
                            "invalid_request_error", "", "not_found"});
    };

    auto use_pipeline = [=](caf::actor tokenizer, caf::actor scheduler, std::string model_id,
                            int32_t n_vocab) {
        if (st->scheduler && scheduler != st->scheduler) st->retiring.push_back(st->scheduler);
        st->tokenizer = tokenizer;
        st->scheduler = scheduler;
        if (model_id != st->model_id) st->created = int64_t(std::time(nullptr));
        st->model_id = std::move(model_id);
        st->n_vocab = n_vocab;
    };

    return {
        [=](listen_atom) -> std::string {
            try {
                st->keys = read_api_keys(st->live->config.http.api_keys_file);
            } catch (const std::exception& e) {
                return e.what();
            }
            return listen(st->live);
        },
        [=](http_atom, std::shared_ptr<HttpIncoming>& in) {
            try {
                route(in->exchange, in->request);
            } catch (const std::exception& e) {
                respond_error(*in->exchange,
                              openai::error_from(protocol::ErrorCode::Internal, e.what()));
            }
        },
        // The client went away before its answer was whole: its stream is cancelled (a
        // stream it only followed goes on).
        [=](closed_atom, uint64_t exchange) {
            auto it = st->listeners.find(exchange);
            if (it == st->listeners.end()) return;
            Listener& l = it->second;
            if (l.follow) return forget(exchange);
            if (!l.open) { // still being tokenized or admitted: cancelled once admitted
                l.gone = true;
                return;
            }
            log::info("http: the client of " + l.stream + " went away: cancelling it");
            self->request(l.scheduler, caf::infinite, cancel_atom::value, l.stream)
                .then([](const answer&) {});
            forget(exchange);
        },
        // Messages of watched streams, as published.
        [=](publish_atom, const outgoing_batch& batch) {
            Read r;
            for (const outgoing& m : batch) {
                auto [a, b] = st->by_stream.equal_range(m.id);
                if (a == b) continue;
                read(m.json, r);
                std::vector<uint64_t> ended;
                for (; a != b; ++a) {
                    Listener& l = st->listeners.at(a->second);
                    if (l.gone) continue;
                    if (!l.open) {
                        l.pending.push_back(m.json);
                        continue;
                    }
                    if (deliver_read(l, r)) ended.push_back(a->second);
                }
                for (uint64_t key : ended) forget(key);
            }
        },
        [=](serve_atom, caf::actor tokenizer, caf::actor scheduler, std::string model_id,
            int32_t n_vocab) -> bool {
            use_pipeline(tokenizer, scheduler, std::move(model_id), n_vocab);
            return true;
        },
        [=](reconfig_atom, std::shared_ptr<const LiveConfig> next, caf::actor tokenizer,
            caf::actor scheduler, std::string model_id, int32_t n_vocab) -> std::string {
            std::vector<Digest> keys;
            try {
                keys = read_api_keys(next->config.http.api_keys_file);
            } catch (const std::exception& e) {
                return e.what();
            }
            if (std::string why = listen(next); !why.empty()) return why;
            st->keys = std::move(keys);
            st->live = next;
            use_pipeline(tokenizer, scheduler, std::move(model_id), n_vocab);
            return "";
        },
        [=](retire_atom, caf::actor old) {
            st->retiring.erase(std::remove(st->retiring.begin(), st->retiring.end(), old),
                               st->retiring.end());
        },
        [=](progress_atom, double fraction) { st->load_progress = fraction; },
        [=](drain_atom) { st->stopping = true; },
        [=](shutdown_atom) { self->quit(); },
    };
}

} // namespace woolly::actors
