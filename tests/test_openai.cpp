// test_openai.cpp — the HTTP API's bodies (protocol/openai.h): OpenAI's request fields read and
// refused by name, the response and chunk shapes OpenAI's reference gives, the error object.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "protocol/openai.h"

using namespace woolly::protocol;
using namespace woolly::protocol::openai;
using nlohmann::json;

namespace {

DecodeLimits limits() {
    DecodeLimits l;
    l.max_tokens = 1000;
    l.defaults.max_tokens = 100;
    return l;
}

CompletionRequest chat_ok(const json& body) {
    auto r = decode_completion(body.dump(), Endpoint::Chat, limits());
    if (auto* e = std::get_if<Error>(&r)) FAIL_CHECK(e->message);
    REQUIRE(std::holds_alternative<CompletionRequest>(r));
    return std::get<CompletionRequest>(r);
}

Error refused(const json& body, Endpoint endpoint = Endpoint::Chat) {
    auto r = decode_completion(body.dump(), endpoint, limits());
    REQUIRE(std::holds_alternative<Error>(r));
    return std::get<Error>(r);
}

const json kUser = json::array({{{"role", "user"}, {"content", "hi"}}});

} // namespace

TEST_CASE("a chat request's fields are read as OpenAI names them") {
    const CompletionRequest r = chat_ok(
        {{"model", "m"},
         {"messages",
          {{{"role", "developer"}, {"content", "be brief"}},
           {{"role", "user"},
            {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
           {{"role", "assistant"}, {"content", "c"}}}},
         {"max_completion_tokens", 7},
         {"temperature", 0.5},
         {"top_p", 0.9},
         {"seed", 42},
         {"stop", "END"},
         {"stream", true},
         {"stream_options", {{"include_usage", true}}},
         {"presence_penalty", 0.25},
         {"frequency_penalty", -0.5},
         {"user", "u"},
         {"n", 1},
         {"top_k", 5},
         {"min_p", 0.1},
         {"repeat_penalty", 1.2},
         {"logprobs", false},
         {"tools", nullptr}});
    CHECK(r.model == "m");
    REQUIRE(r.messages.size() == 3);
    CHECK(r.messages[0].role == "system"); // developer is OpenAI's newer name for it
    CHECK(r.messages[1].content == "ab");  // text parts joined
    CHECK(r.params.max_tokens == 7);
    CHECK(r.params.sampling.temperature == doctest::Approx(0.5));
    CHECK(r.params.sampling.top_p == doctest::Approx(0.9));
    CHECK(r.params.sampling.seed == 42);
    CHECK(r.seed_given);
    CHECK(r.params.stop == std::vector<std::string>{"END"});
    CHECK(r.stream);
    CHECK(r.include_usage);
    CHECK(r.params.sampling.presence_penalty == doctest::Approx(0.25));
    CHECK(r.params.sampling.frequency_penalty == doctest::Approx(-0.5));
    CHECK(r.params.sampling.top_k == 5);
    CHECK(r.params.sampling.repeat_penalty == doctest::Approx(1.2));
    CHECK_FALSE(r.logprobs);
    CHECK(r.params.logprobs == -1);
    const CompletionRequest l =
        chat_ok({{"messages", kUser}, {"logprobs", true}, {"top_logprobs", 3}});
    CHECK(l.logprobs);
    CHECK(l.params.logprobs == 3);
    CHECK(chat_ok({{"messages", kUser}, {"logprobs", true}}).params.logprobs == 0);
    // Unsaid: the daemon's defaults.
    const CompletionRequest d = chat_ok({{"messages", kUser}});
    CHECK(d.params.max_tokens == 100);
    CHECK_FALSE(d.seed_given);
    CHECK_FALSE(d.stream);
}

// OpenAI's tools: what a request may give, and each mistake refused with the field named.
TEST_CASE("tools, tool_choice and tool messages are read strictly") {
    const json weather = {{"type", "function"},
                          {"function",
                           {{"name", "get_weather"},
                            {"description", "Weather in a city"},
                            {"parameters",
                             {{"type", "object"},
                              {"properties", {{"city", {{"type", "string"}}}}},
                              {"required", {"city"}}}}}}};
    const json conversation = {
        {{"role", "user"}, {"content", "Weather in Paris?"}},
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls",
          {{{"id", "call_1"},
            {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\": \"Paris\"}"}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "18 C"}}};
    json ok = {{"messages", conversation},
               {"tools", {weather}},
               {"tool_choice", "required"},
               {"parallel_tool_calls", false}};
    auto decoded = decode_completion(ok.dump(), Endpoint::Chat, limits());
    REQUIRE(std::holds_alternative<CompletionRequest>(decoded));
    const auto& r = std::get<CompletionRequest>(decoded);
    CHECK(r.tool_choice == ToolChoice::Required);
    CHECK_FALSE(r.parallel_tool_calls);
    REQUIRE(r.tools.size() == 1);
    CHECK(r.tools[0]["function"]["name"] == "get_weather");
    REQUIRE(r.messages.size() == 3);
    REQUIRE(r.messages[1].tool_calls.size() == 1);
    CHECK(r.messages[1].tool_calls[0].name == "get_weather");
    CHECK(r.messages[1].tool_calls[0].arguments == "{\"city\": \"Paris\"}");
    CHECK(r.messages[2].tool_call_id == "call_1");

    auto with = [&](auto edit) {
        json j = ok;
        edit(j);
        return refused(j);
    };
    CHECK(with([](json& j) { j["tools"] = json::array(); }).param == "tools");
    CHECK(with([](json& j) { j["tools"][0]["function"]["name"] = "get weather"; }).param ==
          "tools[0].function.name");
    CHECK(with([&](json& j) { j["tools"].push_back(weather); }).param == "tools[1].function.name");
    CHECK(with([](json& j) { j["tools"][0]["function"]["parameters"]["type"] = "array"; }).param ==
          "tools[0].function.parameters");
    const Error schema = with([](json& j) {
        j["tools"][0]["function"]["strict"] = true;
        j["tools"][0]["function"]["parameters"]["properties"]["city"]["not"] = json::object();
    });
    CHECK(schema.param == "tools[0].function.parameters");
    CHECK(schema.message.find("'#/properties/city/not'") != std::string::npos);
    CHECK(with([](json& j) { j["tool_choice"] = "sometimes"; }).param == "tool_choice");
    CHECK(with([](json& j) {
              j["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_time"}}}};
          }).param == "tool_choice");
    CHECK(with([](json& j) { j.erase("tools"); }).param == "tool_choice");
    CHECK(with([](json& j) { j["parallel_tool_calls"] = 1; }).param == "parallel_tool_calls");
    CHECK(with([](json& j) {
              j["response_format"] = {{"type", "json_object"}};
          }).param == "response_format");
    CHECK(with([](json& j) {
              j["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{\"city\": ";
          }).param == "messages[1].tool_calls[0].function.arguments");
    CHECK(with([](json& j) { j["messages"][1]["tool_calls"][0].erase("id"); }).param ==
          "messages[1].tool_calls[0].id");
    CHECK(with([](json& j) { j["messages"][1].erase("tool_calls"); }).param ==
          "messages[1].content");
    CHECK(with([](json& j) { j["messages"][0]["tool_call_id"] = "x"; }).param ==
          "messages[0].tool_call_id");
}

TEST_CASE("what Woolly does not serve is refused with the field named, never ignored") {
    const json chat = {{"messages", kUser}};
    auto with = [&](const char* key, json value) {
        json j = chat;
        j[key] = std::move(value);
        return refused(j);
    };
    for (const char* key : {"functions", "function_call", "logit_bias"}) {
        const Error e = with(key, json::object());
        CHECK(e.status == 400);
        CHECK(e.param == key);
        CHECK(e.code == "unsupported_parameter");
    }
    CHECK(with("n", 2).param == "n");
    // Structured output: a bad response_format, or a schema with a keyword it cannot enforce,
    // names the field and, for the schema, the path inside it.
    CHECK(with("response_format", json::object()).param == "response_format");
    CHECK(with("response_format", {{"type", "xml"}}).param == "response_format");
    const json bad_schema = {
        {"type", "json_schema"},
        {"json_schema",
         {{"name", "x"},
          {"strict", true},
          {"schema", {{"type", "object"}, {"patternProperties", json::object()}}}}}};
    const Error schema_error = with("response_format", bad_schema);
    CHECK(schema_error.param == "response_format.json_schema.schema");
    CHECK(schema_error.message.find("'#/patternProperties'") != std::string::npos);
    json relaxed = bad_schema;
    relaxed["json_schema"]["strict"] = false;
    json ok = chat;
    ok["response_format"] = relaxed;
    auto decoded = decode_completion(ok.dump(), Endpoint::Chat, limits());
    REQUIRE(std::holds_alternative<CompletionRequest>(decoded));
    const auto& constraint = std::get<CompletionRequest>(decoded).params.constraint;
    REQUIRE(constraint);
    CHECK(constraint->warnings().size() == 1);
    CHECK(with("top_logprobs", 2).param == "top_logprobs"); // without logprobs: true
    json lp = chat;
    lp["logprobs"] = true;
    lp["top_logprobs"] = 21;
    CHECK(refused(lp).param == "top_logprobs");
    CHECK(refused({{"prompt", "x"}, {"logprobs", 2}}, Endpoint::Completion).param == "logprobs");
    CHECK(with("frobnicate", 1).param == "frobnicate");
    CHECK(with("frobnicate", 1).code == "unknown_parameter");
    CHECK(with("temperature", "hot").param == "temperature");
    CHECK(with("temperature", 101).param == "temperature");
    CHECK(with("top_p", 0).param == "top_p");
    CHECK(with("max_tokens", 1001).param == "max_tokens");
    CHECK(with("max_tokens", 0).param == "max_tokens");
    CHECK(with("seed", -1).param == "seed");
    CHECK(with("stop", json::array({"a", 1})).param == "stop");
    CHECK(with("stream_options", {{"include_usage", true}}).param == "stream_options");
    CHECK(with("presence_penalty", 3).param == "presence_penalty");
    json both = chat;
    both["max_tokens"] = 5;
    both["max_completion_tokens"] = 6;
    CHECK(refused(both).param == "max_completion_tokens");
    CHECK(refused({{"messages", json::array()}}).param == "messages");
    CHECK(refused({{"messages", {{{"role", "tool"}, {"content", "x"}}}}}).param ==
          "messages[0].tool_call_id");
    CHECK(refused({{"messages", {{{"role", "user"}}}}}).param == "messages[0].content");
    CHECK(refused({{"messages", {{{"role", "user"}, {"content", "x"}, {"name", "n"}}}}}).param ==
          "messages[0].name");
    CHECK(refused(
              {{"messages",
                {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}}}}})
              .param == "messages[0].content[0].type");
    CHECK(refused({{"prompt", "x"}}).param == "prompt");
    CHECK(refused({{"prompt", "x"}, {"echo", true}}, Endpoint::Completion).param == "echo");
    CHECK(refused({{"prompt", "x"}, {"suffix", "y"}}, Endpoint::Completion).param == "suffix");
    CHECK(refused({{"prompt", {"a", "b"}}}, Endpoint::Completion).param == "prompt");
    CHECK(refused({{"messages", kUser}}, Endpoint::Completion).param == "messages");
    auto bad_json = decode_completion("{\"messages\": [", Endpoint::Chat, limits());
    REQUIRE(std::holds_alternative<Error>(bad_json));
    CHECK(std::get<Error>(bad_json).message.find("not valid JSON") != std::string::npos);
    auto twice = decode_completion(R"({"n": 1, "n": 1, "messages": []})", Endpoint::Chat, limits());
    REQUIRE(std::holds_alternative<Error>(twice));
    CHECK(std::get<Error>(twice).message.find("more than once") != std::string::npos);
}

TEST_CASE("responses, chunks and errors have OpenAI's shapes") {
    const Head chat{"chatcmpl-x", 1700000000, "m", Endpoint::Chat};
    const Totals totals{5, 3, 2};
    const json r = json::parse(encode_response(chat, "hello", "stop", totals));
    CHECK(r ==
          json::parse(R"({"id": "chatcmpl-x", "object": "chat.completion", "created": 1700000000,
        "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
        "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5,
        "completion_tokens": 3, "total_tokens": 8, "prompt_tokens_details": {"cached_tokens": 2}}})"));
    const json first = json::parse(encode_chunk(chat, "", true, ""));
    CHECK(first["object"] == "chat.completion.chunk");
    CHECK(first["choices"][0]["delta"] == json({{"role", "assistant"}, {"content", ""}}));
    CHECK(first["choices"][0]["finish_reason"].is_null());
    const json last = json::parse(encode_chunk(chat, "", false, "length"));
    CHECK(last["choices"][0]["delta"] == json::object());
    CHECK(last["choices"][0]["finish_reason"] == "length");
    const json usage = json::parse(encode_usage_chunk(chat, totals));
    CHECK(usage["choices"] == json::array());
    CHECK(usage["usage"]["total_tokens"] == 8);
    const Head text{"cmpl-y", 1, "m", Endpoint::Completion};
    const json t = json::parse(encode_chunk(text, "ab", false, ""));
    CHECK(t["object"] == "text_completion");
    CHECK(t["choices"][0]["text"] == "ab");
    CHECK(json::parse(encode_error({400, "bad", "invalid_request_error", "n", ""})) ==
          json::parse(R"({"error": {"message": "bad", "type": "invalid_request_error",
                                    "param": "n", "code": null}})"));
    CHECK(std::string(finish_reason("eos")) == "stop");
    CHECK(std::string(finish_reason("stop")) == "stop");
    CHECK(std::string(finish_reason("length")) == "length");
    CHECK(std::string(finish_reason("cancelled")) == "cancelled");
    CHECK(error_from(ErrorCode::Busy, "x").status == 429);
    CHECK(error_from(ErrorCode::Loading, "x").status == 503);
    CHECK(error_from(ErrorCode::ShuttingDown, "x").status == 503);
    CHECK(error_from(ErrorCode::TooLarge, "x").code == "context_length_exceeded");
}

TEST_CASE("a thinking model's reasoning: chat_template_kwargs read strictly, reasoning_content "
          "in responses and chunks") {
    CHECK(chat_ok({{"messages", kUser}}).enable_thinking);
    CHECK_FALSE(
        chat_ok({{"messages", kUser}, {"chat_template_kwargs", {{"enable_thinking", false}}}})
            .enable_thinking);
    CHECK(chat_ok({{"messages", kUser}, {"chat_template_kwargs", nullptr}}).enable_thinking);
    Error e = refused({{"messages", kUser}, {"chat_template_kwargs", {{"tools_in_user", true}}}});
    CHECK(e.param == "chat_template_kwargs.tools_in_user");
    e = refused({{"messages", kUser}, {"chat_template_kwargs", {{"enable_thinking", "no"}}}});
    CHECK(e.param == "chat_template_kwargs.enable_thinking");
    CHECK(refused({{"messages", kUser}, {"chat_template_kwargs", 1}}).param ==
          "chat_template_kwargs");
    CHECK(refused({{"prompt", "x"}, {"chat_template_kwargs", json::object()}}, Endpoint::Completion)
              .param == "chat_template_kwargs");

    const Head chat{"chatcmpl-x", 1700000000, "m", Endpoint::Chat};
    const json r = json::parse(encode_response(chat, "4", "stop", {}, nullptr, nullptr, "add"));
    CHECK(r["choices"][0]["message"] ==
          json({{"role", "assistant"}, {"content", "4"}, {"reasoning_content", "add"}}));
    CHECK_FALSE(
        json::parse(encode_response(chat, "4", "stop", {}))["choices"][0]["message"].contains(
            "reasoning_content"));
    const json first = json::parse(encode_reasoning_chunk(chat, "hm", true));
    CHECK(first["object"] == "chat.completion.chunk");
    CHECK(first["choices"][0]["delta"] ==
          json({{"role", "assistant"}, {"reasoning_content", "hm"}}));
    CHECK(first["choices"][0]["finish_reason"].is_null());
    CHECK(json::parse(encode_reasoning_chunk(chat, "m", false))["choices"][0]["delta"] ==
          json({{"reasoning_content", "m"}}));
}

TEST_CASE("tokenize and detokenize bodies, in llama-server's shape, checked") {
    auto t = decode_tokenize(R"({"content": "x", "add_special": true, "with_pieces": true})");
    REQUIRE(std::holds_alternative<TokenizeRequest>(t));
    CHECK(std::get<TokenizeRequest>(t).add_special);
    CHECK(std::holds_alternative<Error>(decode_tokenize(R"({"text": "x"})")));
    CHECK(std::holds_alternative<Error>(decode_tokenize(R"({"add_special": true})")));
    auto d = decode_detokenize(R"({"tokens": [0, 5, 9]})", 10);
    REQUIRE(std::holds_alternative<std::vector<int32_t>>(d));
    CHECK(std::get<std::vector<int32_t>>(d) == std::vector<int32_t>{0, 5, 9});
    CHECK(std::holds_alternative<Error>(decode_detokenize(R"({"tokens": [10]})", 10)));
    CHECK(std::holds_alternative<Error>(decode_detokenize(R"({"tokens": [-1]})", 10)));
    CHECK(std::holds_alternative<Error>(decode_detokenize(R"({"tokens": "1"})", 10)));
}
