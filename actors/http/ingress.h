// ingress.h — the HTTP ingress actor: OpenAI's API (and /health, /metrics, /tokenize, the chat
// page) over the transport of server.h, feeding the same tokenizer and scheduler as the
// ZeroMQ ingress. Each HTTP generation is a woolly/1 stream too, followed through the
// publisher (watch_atom).
#pragma once

#include <caf/all.hpp>

#include <memory>
#include <string>

#include "actors/messages.h"
#include "actors/metrics.h"
#include "actors/runtime.h"
#include "server.h"

namespace woolly::actors {

// A request as the I/O thread hands it over.
struct HttpIncoming {
    std::shared_ptr<http::Exchange> exchange;
    http::Request request;
};

// http ingress: (listen_atom) binds http.listen as `live` says (answers why not, "" when
// done; an empty listen binds nothing); until (serve_atom, tokenizer, scheduler, model_id,
// n_vocab) every request but /health, /metrics and / is answered 503 `loading`, with the
// progress (progress_atom, fraction) last gave; after drain_atom, 503 `shutting_down`.
// (reconfig_atom, live, tokenizer, scheduler, model_id, n_vocab) rebinds, rereads the API keys
// and sends new requests to that pipeline (answers why not); (retire_atom, scheduler) forgets
// a replaced one. It runs detached: its own thread, beside the server's I/O thread.
caf::behavior http_ingress_actor(caf::event_based_actor* self,
                                 std::shared_ptr<const LiveConfig> live, caf::actor publisher,
                                 std::shared_ptr<Metrics> metrics, std::string loading_model);

} // namespace woolly::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<woolly::actors::HttpIncoming>)
