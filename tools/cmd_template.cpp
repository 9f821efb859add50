// cmd_template.cpp — `woolly template`: a conversation rendered with the model's chat template,
// printed exactly; and the messages-file reader `woolly run --messages` shares.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli_args.h"
#include "commands.h"
#include "engine/error.h"
#include "engine/gguf/gguf.h"
#include "engine/text/chat.h"
#include "engine/text/vocab.h"
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
    auto turns = protocol::decode_chat_turns(value);
    if (auto* why = std::get_if<std::string>(&turns)) throw Error(path + ": " + *why);
    std::vector<ChatMessage> out;
    for (auto& t : std::get<std::vector<protocol::ChatTurn>>(turns))
        out.push_back({std::move(t.role), std::move(t.content)});
    return out;
}

int template_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"-m", "--model", "--messages", "--chat-template"},
              {"--help", "-h", "--no-generation-prompt"});
    if (args.has("--help") || args.has("-h")) {
        std::printf(
            "usage: woolly template [-m MODEL] --messages FILE.json [--chat-template NAME]\n"
            "                       [--no-generation-prompt]\n"
            "Prints the prompt the model's chat template makes of the conversation in\n"
            "FILE.json ([{\"role\": \"system|user|assistant\", \"content\": \"...\"}, ...]),\n"
            "exactly: nothing added, the assistant's opening turn included unless\n"
            "--no-generation-prompt. The family is found in tokenizer.chat_template;\n"
            "--chat-template names it instead: %s.\n",
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
    const std::string text = apply_chat_template(
        format.family, messages, !args.has("--no-generation-prompt"), format.tokens);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
}

} // namespace woolly::cli
