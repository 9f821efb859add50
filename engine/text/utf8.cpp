// utf8.cpp — UTF-8 validation, repair and whole-character streaming.
#include "engine/text/utf8.h"

#include <algorithm>

namespace woolly {
namespace {

constexpr std::string_view kReplacement = "\xef\xbf\xbd"; // U+FFFD

} // namespace

size_t utf8_char_len(uint8_t lead) {
    static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLengths[lead >> 4];
}

void append_utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xc0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += char(0xe0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3f));
        out += char(0x80 | (cp & 0x3f));
    } else {
        out += char(0xf0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3f));
        out += char(0x80 | ((cp >> 6) & 0x3f));
        out += char(0x80 | (cp & 0x3f));
    }
}

std::string repair_utf8(std::string_view s) {
    // llama.cpp's reader: the lead byte's high bits give the length, each continuation byte
    // must be 10xxxxxx, and anything else is one byte of U+FFFD. An overlong form decodes to
    // its value and is written back in the shortest form; a surrogate or a value past
    // U+10FFFF (which no regex engine accepts as text) becomes U+FFFD too.
    std::string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const uint8_t lead = p[i];
        size_t len;
        uint32_t cp;
        if (lead < 0x80) {
            out += char(lead);
            ++i;
            continue;
        } else if ((lead & 0xe0) == 0xc0) {
            len = 2, cp = lead & 0x1f;
        } else if ((lead & 0xf0) == 0xe0) {
            len = 3, cp = lead & 0x0f;
        } else if ((lead & 0xf8) == 0xf0) {
            len = 4, cp = lead & 0x07;
        } else {
            out += kReplacement;
            ++i;
            continue;
        }
        bool ok = i + len <= n;
        for (size_t k = 1; ok && k < len; ++k) {
            ok = (p[i + k] & 0xc0) == 0x80;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (!ok) {
            out += kReplacement;
            ++i;
            continue;
        }
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            out += kReplacement;
        else
            append_utf8(cp, out);
        i += len;
    }
    return out;
}

int utf8_sequence(const uint8_t* p, size_t n) {
    const uint8_t lead = p[0];
    int len;
    uint8_t lo = 0x80, hi = 0xbf; // allowed range of the second byte
    if (lead < 0x80) return 1;
    if (lead >= 0xc2 && lead <= 0xdf)
        len = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
        len = 3;
        if (lead == 0xe0)
            lo = 0xa0; // no overlong forms
        else if (lead == 0xed)
            hi = 0x9f; // no surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        len = 4;
        if (lead == 0xf0)
            lo = 0x90;
        else if (lead == 0xf4)
            hi = 0x8f; // nothing past U+10FFFF
    } else {
        return -1;
    }
    for (int i = 1; i < len; ++i) {
        if (size_t(i) >= n) return 0;
        const uint8_t lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (p[i] < lo_i || p[i] > hi_i) return -1;
    }
    return len;
}

std::pair<uint32_t, size_t> utf8_code_point(std::string_view s, size_t i) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
    const int len = utf8_sequence(p, s.size() - i);
    if (len <= 0) return {p[0], 1};
    uint32_t cp = len == 1 ? p[0] : p[0] & (0xff >> (len + 1));
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (p[k] & 0x3f);
    return {cp, size_t(len)};
}

bool is_valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    for (size_t i = 0; i < s.size();) {
        const int len = utf8_sequence(p + i, s.size() - i);
        if (len <= 0) return false;
        i += size_t(len);
    }
    return true;
}

void Utf8Stream::push(std::string_view bytes, std::string& out) {
    // First finish a character left over from earlier pieces, one byte at a time.
    while (n_pending_ > 0 && !bytes.empty()) {
        pending_[n_pending_++] = bytes.front();
        bytes.remove_prefix(1);
        const int len =
            utf8_sequence(reinterpret_cast<const uint8_t*>(pending_), size_t(n_pending_));
        if (len == 0) continue;
        if (len > 0) {
            out.append(pending_, size_t(len));
            n_pending_ = 0;
        } else {
            // The lead byte is bad: replace it and re-read what followed it.
            out += kReplacement;
            char rest[4];
            const int n_rest = n_pending_ - 1;
            std::copy(pending_ + 1, pending_ + n_pending_, rest);
            n_pending_ = 0;
            push(std::string_view(rest, size_t(n_rest)), out);
        }
    }
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    for (size_t i = 0; i < bytes.size();) {
        const int len = utf8_sequence(p + i, bytes.size() - i);
        if (len > 0) {
            out.append(bytes.data() + i, size_t(len));
            i += size_t(len);
        } else if (len == 0) {
            n_pending_ = int(bytes.size() - i);
            std::copy(bytes.data() + i, bytes.data() + bytes.size(), pending_);
            return;
        } else {
            out += kReplacement;
            ++i;
        }
    }
}

void Utf8Stream::finish(std::string& out) {
    if (n_pending_ > 0) out += kReplacement;
    n_pending_ = 0;
}

} // namespace woolly
