// test_protocol.cpp — strict decoding of woolly/1 requests: each bad request gets its code.
#include "protocol/protocol.h"
#include "test_support.h"

using namespace woolly::protocol;

namespace {

std::string code_of(std::string_view frame, DecodeLimits limits = {}) {
    auto result = decode_request(frame, limits);
    if (auto* e = std::get_if<RequestError>(&result)) return error_code_name(e->code);
    return "ok";
}

} // namespace

TEST_CASE("well-formed requests decode with their fields") {
    auto r = decode_request(
        R"({"op":"generate","prompt":"hi","id":"a-1_B","max_tokens":5,"temperature":0,
        "top_k":3,"top_p":0.5,"min_p":0.1,"repeat_penalty":1.1,"repeat_last_n":8,"seed":18446744073709551615,
        "stop":["x","yz"]})",
        {});
    REQUIRE(std::holds_alternative<Request>(r));
    const auto& g = std::get<GenerateRequest>(std::get<Request>(r));
    CHECK(g.prompt == "hi");
    CHECK(g.id == "a-1_B");
    CHECK(g.params.max_tokens == 5);
    CHECK(g.params.sampling.temperature == 0.0f);
    CHECK(g.params.sampling.top_k == 3);
    CHECK(g.params.sampling.top_p == 0.5f);
    CHECK(g.params.sampling.repeat_last_n == 8);
    CHECK(g.params.sampling.seed == UINT64_MAX);
    CHECK(g.seed_given);
    CHECK(g.params.stop == std::vector<std::string>{"x", "yz"});
    // A field not given takes the defaults handed to the decoder (the daemon's config).
    DecodeLimits limits;
    limits.defaults.sampling.top_k = 7;
    limits.defaults.max_tokens = 9;
    auto d = decode_request(R"({"op":"generate","prompt":"hi"})", limits);
    const auto& dg = std::get<GenerateRequest>(std::get<Request>(d));
    CHECK(dg.params.sampling.top_k == 7);
    CHECK(dg.params.max_tokens == 9);
    CHECK_FALSE(dg.seed_given);
    CHECK(code_of(R"({"op":"cancel","id":"abc"})") == "ok");
    CHECK(code_of(R"({"op":"status"})") == "ok");
    auto replay = decode_request(R"({"op":"replay","id":"abc","from_seq":7})", {});
    CHECK(std::get<ReplayRequest>(std::get<Request>(replay)).from_seq == 7);
}

TEST_CASE("every malformed request names its problem with the right code") {
    CHECK(code_of("not json") == "bad_request");
    CHECK(code_of("[1,2]") == "bad_request");
    // A number past a double's range threw out_of_range, not parse_error, out of the decoder
    // (the fuzzer found it: fuzz/regressions/protocol).
    CHECK(code_of("99999E999") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","temperature":1E400})") == "bad_request");
    CHECK(code_of("{\"op\":\"generate\",\"prompt\":\"\xff\"}") == "bad_request"); // invalid UTF-8
    CHECK(code_of(R"({"prompt":"hi"})") == "bad_request");                        // no op
    CHECK(code_of(R"({"op":"fly"})") == "bad_request");
    CHECK(code_of(R"({"op":"generate"})") == "bad_request"); // missing prompt
    CHECK(code_of(R"({"op":"generate","prompt":5})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","max_tokens":-1})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","max_tokens":"5"})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","max_tokens":2.5})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","max_tokens":1000000000000})") == "too_large");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","temperature":-1})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","top_p":0})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","seed":-3})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","stop":"x"})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","stop":[""]})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","id":"has space"})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","id":""})") == "bad_request");
    CHECK(code_of(R"({"op":"generate","prompt":"hi","colour":"red"})") == "bad_request");
    CHECK(code_of(R"({"op":"cancel"})") == "bad_request");
    // A field said twice: refused, not the last one winning.
    CHECK(code_of(R"({"op":"status","op":"status"})") == "bad_request");
    const auto twice =
        decode_request(R"({"op":"generate","prompt":"hi","max_tokens":1,"max_tokens":900})", {});
    REQUIRE(std::holds_alternative<RequestError>(twice));
    CHECK(std::get<RequestError>(twice).code == ErrorCode::BadRequest);
    CHECK(std::get<RequestError>(twice).message == "field 'max_tokens' appears more than once");
    CHECK(code_of(R"({"op":"replay","id":"a","from_seq":-1})") == "bad_request");
    DecodeLimits small;
    small.max_request_bytes = 64;
    CHECK(code_of(std::string(R"({"op":"generate","prompt":")") + std::string(100, 'x') + "\"}",
                  small) == "too_large");
}

TEST_CASE("stream ids and messages follow the spec") {
    CHECK(is_valid_stream_id(std::string(64, 'a')));
    CHECK_FALSE(is_valid_stream_id(std::string(65, 'a')));
    CHECK_FALSE(is_valid_stream_id("a.b"));
    CHECK(topic_for("abc") == "tok.abc");
    std::string m;
    write_token_message(m, "abc", 3, 42, "hé");
    CHECK(m == R"({"id":"abc","seq":3,"text":"hé","token":42})");
    // The same bytes as nlohmann::json's, for every character class JSON escapes.
    for (const std::string& text :
         {std::string("plain"), std::string("q\"b\\s/"), std::string("\b\f\n\r\t"),
          std::string("\x01\x1f\x7f"), std::string(1, '\0') + "z", std::string("日本 ▁ é"),
          std::string()}) {
        write_token_message(m, "g-1_x", 18446744073709551615ull, -7, text);
        const nlohmann::json oracle = {
            {"id", "g-1_x"}, {"seq", 18446744073709551615ull}, {"token", -7}, {"text", text}};
        CHECK(m == oracle.dump());
    }
    Usage usage{5, 2, 1.5, 100.0};
    const auto done = done_message("abc", 4, "length", usage);
    CHECK(done["done"] == true);
    CHECK(done["usage"]["completion_tokens"] == 2);
    CHECK_FALSE(done.contains("error"));
    CHECK(encode_error({ErrorCode::Busy, "full"}) ==
          R"({"error":{"code":"busy","message":"full"},"ok":false})");
}

TEST_CASE("a conversation may name its chat template; only with messages, only a known family") {
    auto r = decode_request(
        R"({"op":"generate","messages":[{"role":"user","content":"hi"}],"chat_template":"zephyr"})",
        {});
    REQUIRE(std::holds_alternative<Request>(r));
    const auto& g = std::get<GenerateRequest>(std::get<Request>(r));
    CHECK(g.chat);
    CHECK(g.chat_template == "zephyr");
    auto message = [](std::string_view frame) {
        auto result = decode_request(frame, {});
        auto* e = std::get_if<RequestError>(&result);
        return e ? e->message : std::string();
    };
    CHECK(message(R"({"op":"generate","prompt":"hi","chat_template":"zephyr"})") ==
          "'chat_template' goes with 'messages' (a prompt is not templated)");
    CHECK(message(R"({"op":"generate","messages":[{"role":"user","content":"hi"}],)"
                  R"("chat_template":"klingon"})")
              .find("'chat_template' is 'klingon' (expected one of: ") == 0);
    CHECK(code_of(R"({"op":"generate","messages":[{"role":"user","content":"hi"}],)"
                  R"("chat_template":5})") == "bad_request");
    CHECK(std::string(error_code_name(ErrorCode::Loading)) == "loading");
}

TEST_CASE("a token message reads back as written; anything else is left to a JSON parser") {
    std::string message, text;
    uint64_t seq = 0;
    for (const std::string& t :
         {std::string(""), std::string("plain"), std::string("q\"b\\s/"), std::string("\b\f\n\r\t"),
          std::string("\x01\x1f caf\xc3\xa9 \xe2\x82\xac"),
          std::string("\"id\":\"x\",\"seq\":9")}) {
        write_token_message(message, "s-1", 41, 7, t);
        REQUIRE(read_token_message(message, seq, text));
        CHECK(seq == 41);
        CHECK(text == t);
        // What nlohmann reads from the same bytes.
        CHECK(nlohmann::json::parse(message)["text"] == t);
    }
    const std::string done = done_message("s", 3, "length", Usage{}).dump();
    CHECK_FALSE(read_token_message(done, seq, text));
    REQUIRE(read_token_message(R"({"id":"s","seq":1,"text":"\u0041","token":2})", seq, text));
    CHECK(text == "A");
    CHECK_FALSE(read_token_message(R"({"id":"s","seq":1,"text":"\u2603","token":2})", seq, text));
    CHECK_FALSE(read_token_message(R"({"id":"s","seq":1,"text":"a")", seq, text));
    CHECK_FALSE(read_token_message("", seq, text));
    CHECK_FALSE(
        read_token_message(R"({"id":"s","seq":1,"text":"a","token":2,"logprob":-1})", seq, text));
}
