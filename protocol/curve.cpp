// curve.cpp — reading, checking and making CurveZMQ key files.
#include "protocol/curve.h"

#include <sys/stat.h>
#include <zmq.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace woolly::protocol {
namespace {

bool is_z85_key(const std::string& s) {
    if (s.size() != 40) return false;
    uint8_t raw[32];
    return zmq_z85_decode(raw, s.c_str()) != nullptr;
}

// The lines of a key file, after checking who may read (secret) or write (any) it.
std::vector<std::string> key_file_lines(const std::string& path, bool secret) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw KeyError(path + ": cannot open");
    const mode_t forbidden = secret ? (S_IRWXG | S_IRWXO) : (S_IWGRP | S_IWOTH);
    if (st.st_mode & forbidden) {
        std::ostringstream mode;
        mode << std::oct << (st.st_mode & 0777);
        throw KeyError(path + ": mode 0" + mode.str() + " lets " +
                       (secret ? "others read it" : "others change it") + " (expected " +
                       (secret ? "0600: chmod 600 " : "no group or other write: chmod go-w ") +
                       path + ")");
    }
    std::ifstream in(path);
    if (!in) throw KeyError(path + ": cannot open");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

bool is_comment_or_blank(const std::string& line) {
    const size_t first = line.find_first_not_of(" \t\r");
    return first == std::string::npos || line == "#" || line.rfind("# ", 0) == 0;
}

// The one key of a key file (secret or public).
std::string single_key(const std::string& path, bool secret) {
    std::string key;
    int number = 0;
    for (const std::string& line : key_file_lines(path, secret)) {
        ++number;
        if (is_comment_or_blank(line)) continue;
        std::string text = line;
        while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
        if (!key.empty() || !is_z85_key(text))
            throw KeyError(path + ":" + std::to_string(number) + ": expected one " +
                           (secret ? "secret" : "public") +
                           " key of 40 Z85 characters (woolly keygen writes them)");
        key = text;
    }
    if (key.empty()) throw KeyError(path + ": no key in it (woolly keygen writes one)");
    return key;
}

} // namespace

CurveKeyPair make_curve_keypair() {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0)
        throw KeyError(std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
    return {pub, sec};
}

CurveKeyPair read_secret_key_file(const std::string& path) {
    CurveKeyPair pair;
    pair.secret_key = single_key(path, true);
    char pub[41];
    if (zmq_curve_public(pub, pair.secret_key.c_str()) != 0)
        throw KeyError(path + ": cannot derive the public key: " + zmq_strerror(zmq_errno()));
    pair.public_key = pub;
    return pair;
}

std::string read_public_key_file(const std::string& path) {
    return single_key(path, false);
}

std::set<std::string> read_authorized_keys(const std::string& path) {
    std::set<std::string> keys;
    int number = 0;
    for (const std::string& line : key_file_lines(path, false)) {
        ++number;
        if (is_comment_or_blank(line)) continue;
        const std::string key = line.substr(0, line.find_first_of(" \t\r"));
        const std::string rest = line.size() > key.size() ? line.substr(key.size()) : "";
        if (!is_z85_key(key) ||
            (!rest.empty() && rest.find_first_not_of(" \t\r") != std::string::npos &&
             rest[0] != ' ' && rest[0] != '\t'))
            throw KeyError(path + ":" + std::to_string(number) +
                           ": expected a client public key of 40 Z85 characters (then, optionally, "
                           "a space and a label), or a comment starting with '# '");
        keys.insert(key);
    }
    return keys;
}

std::string key_prefix(const std::string& z85) {
    return z85.substr(0, 8) + "...";
}

std::string z85_of(const void* raw, size_t size) {
    if (size != 32) return "";
    char out[41];
    if (!zmq_z85_encode(out, static_cast<const uint8_t*>(raw), 32)) return "";
    return out;
}

} // namespace woolly::protocol
