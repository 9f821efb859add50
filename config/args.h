// args.h — strict command-line flag parsing, the one parser of `woolly` and `woollyd`.
#pragma once

#include <charconv>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/error.h"

namespace woolly {

// Parses "-x VALUE", "--long VALUE", "--long=VALUE" and boolean switches. Unknown flags,
// missing values and malformed numbers are errors that name the flag.
class Args {
public:
    Args(int argc, char** argv, int first, std::set<std::string> value_flags,
         std::set<std::string> switches)
        : value_flags_(std::move(value_flags)), switches_(std::move(switches)) {
        for (int i = first; i < argc; ++i) {
            std::string arg = argv[i];
            if (arg.size() < 2 || arg[0] != '-' || arg == "--") {
                positional_.push_back(arg);
                continue;
            }
            std::optional<std::string> inline_value;
            if (const size_t eq = arg.find('=');
                arg.rfind("--", 0) == 0 && eq != std::string::npos) {
                inline_value = arg.substr(eq + 1);
                arg = arg.substr(0, eq);
            }
            if (switches_.count(arg)) {
                if (inline_value) throw Error("flag " + arg + " takes no value");
                values_[arg].push_back("1");
            } else if (value_flags_.count(arg)) {
                if (inline_value) {
                    values_[arg].push_back(*inline_value);
                } else {
                    if (i + 1 >= argc) throw Error("flag " + arg + " needs a value");
                    values_[arg].push_back(argv[++i]);
                }
            } else {
                throw Error("unknown flag " + arg);
            }
        }
    }

    bool has(const std::string& flag) const { return values_.count(flag) != 0; }
    // Throws Error naming the first positional argument past the `allowed` first ones, with
    // `hint` after it (" (the model is -m FILE)").
    void refuse_extra(size_t allowed = 0, const std::string& hint = "") const {
        if (positional_.size() > allowed)
            throw Error("unexpected argument '" + positional_[allowed] + "'" + hint);
    }
    const std::vector<std::string>& positional() const { return positional_; }

    std::optional<std::string> get(const std::string& a, const std::string& b = "") const {
        for (const auto& flag : {a, b}) {
            auto it = values_.find(flag);
            if (!flag.empty() && it != values_.end()) return it->second.back();
        }
        return std::nullopt;
    }
    std::vector<std::string> all(const std::string& flag) const {
        auto it = values_.find(flag);
        return it == values_.end() ? std::vector<std::string>{} : it->second;
    }

    template <typename T>
    std::optional<T> number(const std::string& a, const std::string& b = "") const {
        const auto text = get(a, b);
        if (!text) return std::nullopt;
        T value{};
        const char* end = text->data() + text->size();
        auto [ptr, ec] = std::from_chars(text->data(), end, value);
        if (ec != std::errc() || ptr != end || text->empty()) {
            throw Error("bad value '" + *text + "' for " + a + " (expected " +
                        (std::is_integral_v<T> ? "an integer" : "a number") + ")");
        }
        return value;
    }

private:
    std::set<std::string> value_flags_;
    std::set<std::string> switches_;
    std::map<std::string, std::vector<std::string>> values_;
    std::vector<std::string> positional_;
};

} // namespace woolly
