// server.cpp — the HTTP/1.1 transport on Boost.Beast/Asio: an acceptor and the connections on
// one I/O thread, plain or TLS. A connection reads a request within the limits (the idle
// timeout for its first byte, the read timeout for the rest), hands it to the handler, and
// while the answer is pending keeps reading, so that a client that goes away is noticed at
// once (the exchange's `closed`). Answers are queued strings: a whole response, or an SSE
// stream's header and its chunked events.
#include "server.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace woolly::http {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

std::atomic<uint64_t> next_exchange{1};

// A whole response as bytes.
std::string serialize(int status, const std::string& content_type, std::string body,
                      const Headers& headers, bool keep_alive) {
    bhttp::response<bhttp::string_body> res{bhttp::status(status), 11};
    res.set(bhttp::field::server, "woollyd");
    if (!content_type.empty()) res.set(bhttp::field::content_type, content_type);
    for (const auto& [name, value] : headers) res.set(name, value);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    std::ostringstream out;
    out << res;
    return out.str();
}

std::string hex(size_t n) {
    char text[24];
    std::snprintf(text, sizeof text, "%zx", n);
    return text;
}

// What the handler's calls become on the I/O thread.
struct Out {
    enum class Kind { Respond, Open, Event, Close } kind;
    int status = 200;
    std::string content_type, body;
    Headers headers;
};

// A connection as the exchanges see it.
struct Sink {
    virtual ~Sink() = default;
    virtual void deliver(uint64_t exchange, Out&& out) = 0;
};

class ExchangeImpl final : public Exchange {
public:
    ExchangeImpl(uint64_t id, net::any_io_executor executor, std::weak_ptr<Sink> sink)
        : Exchange(id), executor_(std::move(executor)), sink_(std::move(sink)) {}
    void respond(int status, std::string content_type, std::string body, Headers headers) override {
        post({Out::Kind::Respond, status, std::move(content_type), std::move(body),
              std::move(headers)});
    }
    void open_events(Headers headers) override {
        post({Out::Kind::Open, 200, "", "", std::move(headers)});
    }
    void event(std::string data) override {
        post({Out::Kind::Event, 200, "", std::move(data), {}});
    }
    void close_events() override { post({Out::Kind::Close, 200, "", "", {}}); }

private:
    void post(Out&& out) {
        net::post(executor_, [sink = sink_, id = id(), out = std::move(out)]() mutable {
            if (auto s = sink.lock()) s->deliver(id, std::move(out));
        });
    }
    net::any_io_executor executor_;
    std::weak_ptr<Sink> sink_;
};

} // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
    net::io_context ioc{1};
    std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
    std::thread thread;
    Handler handler;
    Closed closed;
    mutable std::mutex limits_mutex; // set_limits from another thread; read per request
    Limits limits;
    std::unique_ptr<tcp::acceptor> acceptor;
    std::shared_ptr<net::ssl::context> tls; // the listener's; null: plain
    std::atomic<uint64_t> open{0}, accepted{0}, refused{0};
    // Every live connection, to close them at stop (weak: a connection ends by itself).
    std::vector<std::weak_ptr<void>> connections;
    std::vector<std::function<void()>> closers;
    bool stopped = false;

    Limits current_limits() {
        std::lock_guard lock(limits_mutex);
        return limits;
    }

    void accept();
    template <class Stream> void start_connection(Stream&& stream, bool tls_stream);
    // Runs `f` on the I/O thread and waits for its result (listen and the rest, called from
    // the daemon's threads).
    template <class F> auto on_io(F f) -> decltype(f()) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        net::post(ioc, [&task] { task(); });
        return result.get();
    }
};

namespace {

// One connection: plain (beast::tcp_stream) or TLS (beast::ssl_stream over it).
template <class Stream>
class Connection final : public Sink, public std::enable_shared_from_this<Connection<Stream>> {
public:
    Connection(Stream&& stream, std::shared_ptr<Server::Impl> server)
        : stream_(std::move(stream)), server_(std::move(server)), idle_(stream_.get_executor()) {}

    ~Connection() override { --server_->open; }

    void start() {
        limits_ = server_->current_limits();
        if constexpr (is_tls) {
            lowest().expires_after(limits_.read_timeout);
            stream_.async_handshake(net::ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        if (ec) return self->close();
                                        self->wait_for_request();
                                    });
        } else {
            wait_for_request();
        }
    }

    void deliver(uint64_t exchange, Out&& out) override {
        if (closed_ || exchange != exchange_) return;
        switch (out.kind) {
        case Out::Kind::Respond:
            if (events_) return;
            queue(serialize(out.status, out.content_type, std::move(out.body), out.headers,
                            keep_alive_));
            ending_ = true;
            break;
        case Out::Kind::Open: {
            if (events_) return;
            events_ = true;
            std::string head = "HTTP/1.1 200 OK\r\nServer: woollyd\r\n"
                               "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                               "Transfer-Encoding: chunked\r\n";
            for (const auto& [name, value] : out.headers) head += name + ": " + value + "\r\n";
            head += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
            queue(std::move(head));
            break;
        }
        case Out::Kind::Event: {
            if (!events_ || ending_) return;
            const size_t n = out.body.size() + 8; // "data: " ... "\n\n"
            std::string chunk = hex(n) + "\r\ndata: ";
            chunk += out.body;
            chunk += "\n\n\r\n";
            if (queued_bytes_ + chunk.size() > limits_.max_queued_bytes) {
                // A client that does not read: its stream is cut rather than held in memory.
                return lost();
            }
            queue(std::move(chunk));
            break;
        }
        case Out::Kind::Close:
            if (!events_ || ending_) return;
            queue("0\r\n\r\n");
            ending_ = true;
            break;
        }
    }

private:
    static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

    // Waits (the idle timeout) for the first byte of the next request, unless some of it is
    // in already.
    void wait_for_request() {
        limits_ = server_->current_limits();
        if (buffer_.size() > 0) return read_request();
        lowest().expires_after(limits_.idle_timeout);
        reading_ = true;
        stream_.async_read_some(buffer_.prepare(4096),
                                [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                                    self->reading_ = false;
                                    if (ec) return self->close();
                                    self->buffer_.commit(n);
                                    self->read_request();
                                });
    }

    // The request, whole, within the read timeout (past it the connection is closed) and the
    // size limits.
    void read_request() {
        parser_.emplace();
        parser_->header_limit(uint32_t(std::min<size_t>(limits_.max_header_bytes, UINT32_MAX)));
        parser_->body_limit(limits_.max_body_bytes);
        lowest().expires_after(limits_.read_timeout);
        reading_ = true;
        bhttp::async_read(stream_, buffer_, *parser_,
                          [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              self->reading_ = false;
                              self->on_request(ec);
                          });
    }

    void on_request(beast::error_code ec) {
        if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
            ec == net::error::connection_reset || ec == net::ssl::error::stream_truncated)
            return close();
        if (ec) {
            // The status says what was wrong; the connection ends (its framing is lost).
            int status = 400;
            std::string why = "bad request: " + ec.message();
            if (ec == bhttp::error::header_limit) {
                status = 431;
                why = "the request line and headers exceed " +
                      std::to_string(limits_.max_header_bytes) + " bytes";
            } else if (ec == bhttp::error::body_limit) {
                status = 413;
                why = "the body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes";
            } else if (ec == beast::error::timeout || ec == net::error::operation_aborted) {
                return close(); // the stream closed the socket at the deadline: nothing to say
            }
            keep_alive_ = false;
            exchange_ = 0;
            ending_ = true;
            lowest().expires_after(limits_.read_timeout);
            queue(serialize(status, "application/json",
                            "{\"error\":{\"message\":\"" + why +
                                "\",\"type\":\"invalid_request_error\",\"param\":null,"
                                "\"code\":null}}",
                            {}, false));
            return;
        }
        auto message = parser_->release();
        parser_.reset();
        keep_alive_ = message.keep_alive();
        Request request;
        request.method = std::string(message.method_string());
        request.target = std::string(message.target());
        if (auto it = message.find(bhttp::field::authorization); it != message.end())
            request.authorization = std::string(it->value());
        request.body = std::move(message.body());
        exchange_ = next_exchange++;
        events_ = ending_ = false;
        lowest().expires_never();         // the answer may take as long as a generation
        hold_ = this->shared_from_this(); // alive until answered, with no read pending
        auto exchange = std::make_shared<ExchangeImpl>(
            exchange_, server_->ioc.get_executor(),
            std::weak_ptr<Sink>(std::static_pointer_cast<Sink>(this->shared_from_this())));
        watch();
        server_->handler(std::move(exchange), std::move(request));
    }

    // While an answer is pending: a read that notices the client leaving. Bytes that arrive
    // are the next (pipelined) request, kept for after this one; then the watch stops (the
    // client is there).
    void watch() {
        if (reading_ || buffer_.size() > 0) return;
        reading_ = true;
        stream_.async_read_some(buffer_.prepare(4096),
                                [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                                    self->reading_ = false;
                                    if (ec) {
                                        if (self->exchange_ != 0 && !self->closed_)
                                            self->lost();
                                        else
                                            self->close();
                                        return;
                                    }
                                    self->buffer_.commit(n);
                                    self->idle_.cancel();
                                    if (self->exchange_ == 0 && !self->writing_)
                                        self->read_request();
                                });
    }

    // The client is gone with an answer pending: the exchange's owner hears of it.
    void lost() {
        const uint64_t exchange = exchange_;
        close();
        if (exchange != 0) server_->closed(exchange);
    }

    void queue(std::string bytes) {
        queued_bytes_ += bytes.size();
        out_.push_back(std::move(bytes));
        if (!writing_) write_next();
    }

    // Everything queued goes out in one write (a gather of the queued strings).
    void write_next() {
        if (closed_) return;
        if (out_.empty()) {
            writing_ = false;
            if (ending_) finished();
            return;
        }
        writing_ = true;
        gather_.clear();
        for (const std::string& bytes : out_) gather_.push_back(net::buffer(bytes));
        const size_t count = out_.size();
        net::async_write(stream_, gather_,
                         [self = this->shared_from_this(), count](beast::error_code ec, size_t) {
                             if (ec) {
                                 self->writing_ = false;
                                 if (self->exchange_ != 0) return self->lost();
                                 return self->close();
                             }
                             for (size_t i = 0; i < count; ++i) {
                                 self->queued_bytes_ -= self->out_.front().size();
                                 self->out_.pop_front();
                             }
                             self->write_next();
                         });
    }

    // The answer is out: the next request, or the end of the connection.
    void finished() {
        auto self = std::move(hold_);
        exchange_ = 0;
        events_ = ending_ = false;
        if (!keep_alive_) return shutdown();
        if (reading_) {
            // The watch read goes on as the wait for the next request; a timer of its own
            // bounds it (the stream's timeout does not apply to a read already started).
            idle_.expires_after(limits_.idle_timeout);
            idle_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
                if (!ec && self->exchange_ == 0 && self->reading_ && !self->parser_) self->close();
            });
            return;
        }
        wait_for_request();
    }

    void shutdown() {
        if constexpr (is_tls) {
            lowest().expires_after(std::chrono::seconds(5));
            stream_.async_shutdown(
                [self = this->shared_from_this()](beast::error_code) { self->close(); });
        } else {
            beast::error_code ignored;
            lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
            close();
        }
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        hold_.reset();
        idle_.cancel();
        beast::error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        lowest().close();
    }

    Stream stream_;
    std::shared_ptr<Server::Impl> server_;
    net::steady_timer idle_;           // the wait for a next request that began during an answer
    std::shared_ptr<Connection> hold_; // itself, while an answer is pending
    Limits limits_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    std::deque<std::string> out_;           // queued; a write is out for the first ones
    std::vector<net::const_buffer> gather_; // the write out now
    size_t queued_bytes_ = 0;
    uint64_t exchange_ = 0; // the pending one; 0: none
    bool keep_alive_ = true;
    bool events_ = false; // an SSE answer is open
    bool ending_ = false; // the answer's last bytes are queued
    bool reading_ = false, writing_ = false, closed_ = false;

public:
    void force_close() { close(); }
};

} // namespace

template <class Stream> void Server::Impl::start_connection(Stream&& stream, bool) {
    ++open;
    auto connection =
        std::make_shared<Connection<std::decay_t<Stream>>>(std::move(stream), shared_from_this());
    std::weak_ptr<Connection<std::decay_t<Stream>>> weak = connection;
    // Forget connections that ended, then keep this one for stop().
    std::vector<std::function<void()>> live_closers;
    std::vector<std::weak_ptr<void>> live;
    for (size_t i = 0; i < connections.size(); ++i)
        if (!connections[i].expired()) {
            live.push_back(connections[i]);
            live_closers.push_back(closers[i]);
        }
    live.push_back(connection);
    live_closers.push_back([weak] {
        if (auto c = weak.lock()) c->force_close();
    });
    connections = std::move(live);
    closers = std::move(live_closers);
    connection->start();
}

void Server::Impl::accept() {
    if (!acceptor) return;
    tcp::acceptor* current = acceptor.get();
    current->async_accept([self = shared_from_this(), current](beast::error_code ec,
                                                               tcp::socket socket) {
        if (self->acceptor.get() != current) return; // replaced or closed meanwhile
        if (ec) {
            if (ec == net::error::operation_aborted) return;
            // EMFILE and the like: try again shortly rather than spin on the same error.
            auto retry =
                std::make_shared<net::steady_timer>(self->ioc, std::chrono::milliseconds(100));
            retry->async_wait([self, retry, current](beast::error_code) {
                if (self->acceptor.get() == current) self->accept();
            });
            return;
        }
        ++self->accepted;
        const Limits limits = self->current_limits();
        if (self->open >= limits.max_connections) {
            ++self->refused;
            auto bytes = std::make_shared<std::string>(
                serialize(503, "application/json",
                          "{\"error\":{\"message\":\"too many connections (http.max_connections " +
                              std::to_string(limits.max_connections) +
                              ")\",\"type\":\"server_error\",\"param\":null,\"code\":\"busy\"}}",
                          {{"Retry-After", "1"}}, false));
            auto s = std::make_shared<tcp::socket>(std::move(socket));
            net::async_write(*s, net::buffer(*bytes), [s, bytes](beast::error_code, size_t) {
                beast::error_code ignored;
                s->shutdown(tcp::socket::shutdown_both, ignored);
                s->close(ignored);
            });
            return self->accept();
        }
        beast::tcp_stream stream(std::move(socket));
        if (self->tls)
            self->start_connection(
                beast::ssl_stream<beast::tcp_stream>(std::move(stream), *self->tls), true);
        else
            self->start_connection(std::move(stream), false);
        self->accept();
    });
}

Server::Server(Handler handler, Closed closed, Limits limits) : impl_(std::make_shared<Impl>()) {
    impl_->handler = std::move(handler);
    impl_->closed = std::move(closed);
    impl_->limits = limits;
    impl_->work.emplace(impl_->ioc.get_executor());
    impl_->thread = std::thread([impl = impl_] {
        pthread_setname_np(pthread_self(), "woolly-http-io"); // as ps and /proc show it
        impl->ioc.run();
    });
}

Server::~Server() {
    stop();
}

uint16_t Server::listen(const std::string& host, const std::string& port,
                        const std::string& cert_file, const std::string& key_file) {
    const std::string where =
        (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
    std::shared_ptr<net::ssl::context> tls;
    if (!cert_file.empty()) {
        tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
        tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                         net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                         net::ssl::context::no_tlsv1_1);
        try {
            tls->use_certificate_chain_file(cert_file);
        } catch (const boost::system::system_error& e) {
            throw std::runtime_error("http.tls_cert_file " + cert_file + ": " + e.what());
        }
        try {
            tls->use_private_key_file(key_file, net::ssl::context::pem);
        } catch (const boost::system::system_error& e) {
            throw std::runtime_error("http.tls_key_file " + key_file + ": " + e.what());
        }
    }
    return impl_->on_io([&]() -> uint16_t {
        beast::error_code ec;
        tcp::resolver resolver(impl_->ioc);
        auto found = resolver.resolve(host, port, tcp::resolver::passive, ec);
        if (ec || found.empty())
            throw std::runtime_error("cannot listen on " + where + ": " +
                                     (ec ? ec.message() : std::string("no address")));
        const tcp::endpoint endpoint = found.begin()->endpoint();
        auto next = std::make_unique<tcp::acceptor>(impl_->ioc);
        next->open(endpoint.protocol(), ec);
        if (!ec) next->set_option(net::socket_base::reuse_address(true), ec);
        if (!ec && endpoint.protocol() == tcp::v6()) next->set_option(net::ip::v6_only(true), ec);
        if (!ec) next->bind(endpoint, ec);
        if (!ec) next->listen(net::socket_base::max_listen_connections, ec);
        if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
        const uint16_t bound = next->local_endpoint().port();
        if (impl_->acceptor) {
            beast::error_code ignored;
            impl_->acceptor->close(ignored);
        }
        impl_->acceptor = std::move(next);
        impl_->tls = std::move(tls);
        impl_->accept();
        return bound;
    });
}

void Server::close_listener() {
    impl_->on_io([&] {
        if (impl_->acceptor) {
            beast::error_code ignored;
            impl_->acceptor->close(ignored);
            impl_->acceptor.reset();
        }
    });
}

void Server::set_limits(Limits limits) {
    std::lock_guard lock(impl_->limits_mutex);
    impl_->limits = limits;
}

ServerStats Server::stats() const {
    return {impl_->open.load(), impl_->accepted.load(), impl_->refused.load()};
}

void Server::stop() {
    if (!impl_ || impl_->stopped) return;
    impl_->stopped = true;
    net::post(impl_->ioc, [impl = impl_] {
        if (impl->acceptor) {
            beast::error_code ignored;
            impl->acceptor->close(ignored);
            impl->acceptor.reset();
        }
        for (auto& close : impl->closers) close();
        impl->closers.clear();
        impl->connections.clear();
        impl->work.reset();
    });
    if (impl_->thread.joinable()) impl_->thread.join();
}

} // namespace woolly::http
