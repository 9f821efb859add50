// cmd_tokenize.cpp — `woolly tokenize`: ids of strings in llama.cpp's vocab-test format.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "cli_args.h"
#include "commands.h"
#include "engine/gguf/gguf.h"
#include "engine/text/utf8.h"
#include "engine/text/vocab.h"

namespace woolly::cli {

int tokenize_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"-m", "--model", "--file", "-f", "-p", "--prompt"},
              {"--help", "-h", "--add-special", "--parse-special"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs("usage: woolly tokenize [-m MODEL] (--file F | -p TEXT) [--add-special] "
                   "[--parse-special]\n"
                   "--file reads strings separated by '\\n__ggml_vocab_test__\\n' and prints each "
                   "one's ids on a line, each id after a space (llama.cpp's .out format).\n",
                   stdout);
        return 0;
    }
    args.refuse_extra(0, " (the model is -m FILE)");
    const std::string model_path = args.get("-m", "--model").value_or(default_model_path());
    auto file = GgufFile::open(model_path);
    Vocab vocab(*file);
    const bool add_special = args.has("--add-special");
    const bool parse_special = args.has("--parse-special");

    std::vector<std::string> texts;
    if (auto path = args.get("--file", "-f")) {
        std::ifstream in(*path, std::ios::binary);
        if (!in) throw Error(*path + ": cannot open");
        const std::string content((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
        const std::string separator = "\n__ggml_vocab_test__\n";
        size_t start = 0;
        for (size_t at; (at = content.find(separator, start)) != std::string::npos;
             start = at + separator.size()) {
            texts.push_back(content.substr(start, at - start));
        }
        if (start < content.size()) texts.push_back(content.substr(start));
    } else if (auto text = args.get("-p", "--prompt")) {
        texts.push_back(*text);
    } else {
        throw Error("give --file FILE or -p TEXT");
    }

    for (size_t i = 0; i < texts.size(); ++i)
        if (!is_valid_utf8(texts[i]))
            throw Error(texts.size() == 1
                            ? std::string("the text is not valid UTF-8")
                            : "string " + std::to_string(i + 1) + " of " +
                                  std::to_string(texts.size()) + " is not valid UTF-8");
    std::string line;
    for (const auto& text : texts) {
        line.clear();
        for (TokenId id : vocab.tokenize(text, add_special, parse_special)) {
            line += ' ';
            line += std::to_string(id);
        }
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stdout);
    }
    return 0;
}

} // namespace woolly::cli
