// server.h — the HTTP/1.1 transport of woollyd's HTTP ingress, on Boost.Beast/Asio: one I/O
// thread serves every connection asynchronously (an SSE stream holds a socket, not a thread),
// with TLS when configured. It parses requests within the configured limits and hands each
// to a handler; what the handler answers goes back through the request's Exchange, from any
// thread. No CAF and no JSON here: the ingress actor (ingress.cpp) gives the requests meaning.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace woolly::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Limits {
    size_t max_body_bytes = 1 << 20;
    size_t max_header_bytes = 16384;
    std::chrono::seconds idle_timeout{60};
    std::chrono::seconds read_timeout{30};
    size_t max_connections = 4096;
    size_t max_queued_bytes = 16 << 20; // a connection's unsent events; past it, closed
};

struct Request {
    std::string method;        // "GET", "POST", ...
    std::string target;        // the path and query as sent
    std::string authorization; // the Authorization header's value
    std::string body;
};

// The answer to one request, given from any thread (each call is posted to the I/O thread).
// Once the connection has closed, calls do nothing. Either respond() once, or open_events(),
// then event() any number of times, then close_events().
class Exchange {
public:
    virtual ~Exchange() = default;
    virtual void respond(int status, std::string content_type, std::string body,
                         Headers headers = {}) = 0;
    // 200 with Content-Type: text/event-stream, Cache-Control: no-cache, chunked.
    virtual void open_events(Headers headers = {}) = 0;
    virtual void event(std::string data) = 0; // sent as "data: DATA\n\n"
    virtual void close_events() = 0;
    uint64_t id() const { return id_; }

protected:
    explicit Exchange(uint64_t id) : id_(id) {}

private:
    uint64_t id_;
};

struct ServerStats {
    uint64_t open_connections = 0;
    uint64_t accepted = 0;
    uint64_t refused = 0; // past max_connections
};

class Server {
public:
    // `handler` runs on the I/O thread for each whole request; `closed` there too, for an
    // exchange whose connection closed before it ended (the client went away mid-answer).
    using Handler = std::function<void(std::shared_ptr<Exchange>, Request&&)>;
    using Closed = std::function<void(uint64_t exchange)>;
    Server(Handler handler, Closed closed, Limits limits);
    ~Server(); // stop()
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Listens on host:port (a name, an IPv4 or an IPv6 address), with TLS when `cert_file` is
    // not empty; a listener before stops once the new one is bound (connections stay). Throws
    // std::runtime_error naming the address (or the TLS file) when it cannot; then the
    // listener before stays. Returns the port bound (port "0": a free one).
    uint16_t listen(const std::string& host, const std::string& port, const std::string& cert_file,
                    const std::string& key_file);
    // No listener (connections stay until they end).
    void close_listener();
    // Limits for requests read from now on.
    void set_limits(Limits limits);
    ServerStats stats() const;
    // Closes every connection and ends the I/O thread.
    void stop();

    struct Impl; // server.cpp's: the I/O thread, the acceptor and the connections

private:
    std::shared_ptr<Impl> impl_;
};

} // namespace woolly::http
