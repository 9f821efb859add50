// log.h — woollyd's log: one line per event on stderr, for journald. When stderr is the
// journal (JOURNAL_STREAM names it), each line starts with its sd-daemon priority ("<6>"), so
// journalctl keeps the level; otherwise with "woollyd: ". Lines below the level set are
// dropped. Each line is one write(2), so lines from different threads never interleave.
#pragma once

#include <optional>
#include <string>

namespace woolly::log {

enum class Level { error = 3, warning = 4, info = 6, debug = 7 }; // syslog priorities

void set_level(Level level);
bool enabled(Level level);
// "error", "warning", "info" or "debug".
std::optional<Level> level_from_name(const std::string& name);
// Decides the prefix from JOURNAL_STREAM and stderr (call once at start-up).
void init_from_environment();

void write(Level level, const std::string& line);
inline void error(const std::string& line) {
    write(Level::error, line);
}
inline void warning(const std::string& line) {
    write(Level::warning, line);
}
inline void info(const std::string& line) {
    write(Level::info, line);
}
inline void debug(const std::string& line) {
    write(Level::debug, line);
}

} // namespace woolly::log
