// log.cpp — the level, the journal check (JOURNAL_STREAM is "DEVICE:INODE" of stderr's
// stream), and the line writer.
#include "log.h"

#include "engine/text/utf8.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace woolly::log {
namespace {

std::atomic<int> g_level{int(Level::info)};
std::atomic<bool> g_journal{false};

// One journal line: control bytes and bytes that are not UTF-8 (a client's bad request quoted
// in a refusal) as \xNN, so a line stays one printable line.
void append_printable(std::string& out, const std::string& text) {
    static const char* hex = "0123456789abcdef";
    auto escape = [&](unsigned char c) {
        out += "\\x";
        out += hex[c >> 4];
        out += hex[c & 15];
    };
    for (size_t i = 0; i < text.size();) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n > 1 && (i + n > text.size() || !is_valid_utf8(std::string_view(text).substr(i, n))))
            n = 0;
        if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7f))) {
            escape(c);
            ++i;
            continue;
        }
        out.append(text, i, n);
        i += n;
    }
}

} // namespace

void set_level(Level level) {
    g_level.store(int(level));
}

bool enabled(Level level) {
    return int(level) <= g_level.load();
}

std::optional<Level> level_from_name(const std::string& name) {
    if (name == "error") return Level::error;
    if (name == "warning") return Level::warning;
    if (name == "info") return Level::info;
    if (name == "debug") return Level::debug;
    return std::nullopt;
}

void init_from_environment() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    unsigned long long device = 0, inode = 0;
    g_journal = stream && std::sscanf(stream, "%llu:%llu", &device, &inode) == 2 &&
                ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}

void write(Level level, const std::string& line) {
    if (!enabled(level)) return;
    std::string out;
    if (g_journal) { // appended: GCC 12 warns falsely (-Wrestrict) on "<" + std::string
        out += '<';
        out += char('0' + int(level));
        out += '>';
    } else {
        out = "woollyd: ";
    }
    append_printable(out, line);
    out += '\n';
    const ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
    (void)ignored; // nowhere to report a failed log write
}

} // namespace woolly::log
