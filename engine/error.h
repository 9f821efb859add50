// error.h — the one exception type the engine throws: a message a user can act on.
#pragma once

#include <stdexcept>
#include <string>

namespace woolly {

// Every engine failure (bad file, bad shape, bad argument) is reported as an Error whose
// message says what went wrong, where, and what was expected.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

} // namespace woolly
