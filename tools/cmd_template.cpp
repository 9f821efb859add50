// cmd_template.cpp — `woolly template`: a conversation rendered with the model's chat template,
// printed exactly; and the messages-file reader `woolly run --messages` shares.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_args.h"
#include "commands.h"
#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/text/chat.h"
#include "engine/text/vocab.h"
#include "protocol/openai.h"
#include "protocol/protocol.h"

namespace woolly::cli {

std::vector<ChatMessage> read_chat_messages(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::json value;
    try {
        value = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) { // parse_error, out_of_range (1E999)
        throw Error(path + ": not valid JSON (" + e.what() + ")");
    }
    auto turns = protocol::openai::decode_messages(&value);
    if (auto* e = std::get_if<protocol::openai::Error>(&turns))
        throw Error(path + ": " + e->message);
    return std::move(std::get<std::vector<ChatMessage>>(turns));
}

// The tools of --tools FILE: OpenAI's array of functions, as a request gives it.
std::optional<nlohmann::ordered_json> read_tools(const std::optional<std::string>& path) {
    if (!path) return std::nullopt;
    std::ifstream in(*path, std::ios::binary);
    if (!in) throw Error(*path + ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    nlohmann::ordered_json tools;
    try {
        tools = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(*path + ": not valid JSON (" + e.what() + ")");
    }
    if (!tools.is_array()) throw Error(*path + ": expected an array of tools");
    for (const auto& t : tools)
        if (!t.is_object() || !t.contains("function") || !t["function"].is_object())
            throw Error(*path + ": each tool is {\"type\": \"function\", \"function\": {...}}");
    return tools;
}

int template_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"-m", "--model", "--messages", "--chat-template", "--tools"},
              {"--help", "-h", "--no-generation-prompt", "--no-thinking"});
    if (args.has("--help") || args.has("-h")) {
        std::printf(
            "usage: woolly template [-m MODEL] --messages FILE.json [--chat-template NAME]\n"
            "                       [--tools TOOLS.json] [--no-generation-prompt]\n"
            "                       [--no-thinking]\n"
            "Prints the prompt the model's chat template makes of the conversation in\n"
            "FILE.json (OpenAI's messages: [{\"role\": \"system|user|assistant|tool\",\n"
            "\"content\": \"...\"}, ...], with tool_calls and tool_call_id), and the functions\n"
            "of TOOLS.json (OpenAI's tools array) for the families that take them,\n"
            "exactly: nothing added, the assistant's opening turn included unless\n"
            "--no-generation-prompt. The family is found in tokenizer.chat_template;\n"
            "--chat-template names it instead: %s. --no-thinking sets the template's\n"
            "enable_thinking to false (Qwen3's closes the reasoning of the reply).\n",
            chat_template_names().c_str());
        return 0;
    }
    args.refuse_extra();
    const auto messages_path = args.get("--messages");
    if (!messages_path) throw Error("--messages FILE.json is required");
    const std::vector<ChatMessage> messages = read_chat_messages(*messages_path);
    auto file = GgufFile::open(args.get("-m", "--model").value_or(default_model_path()));
    Vocab vocab(*file);
    const ChatFormat format = chat_format(*file, vocab, args.get("--chat-template").value_or(""));
    const auto tools = read_tools(args.get("--tools"));
    const std::string text =
        apply_chat_template(format.family, messages, !args.has("--no-generation-prompt"),
                            format.tokens, tools ? &*tools : nullptr, !args.has("--no-thinking"));
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

} // namespace woolly::cli
