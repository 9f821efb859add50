// bpe.cpp — byte-level BPE as llama.cpp runs it: pre-tokenizer regexes (PCRE2, Unicode
// properties) cut the text into words, each word's bytes go through GPT-2's byte-to-character
// map, and the merge list's pairs are applied lowest rank first.
#include <algorithm>
#include <memory>
#include <queue>

#include "engine/error.h"
#include "engine/text/tokenizer.h"

#ifdef WOOLLY_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

namespace woolly {
namespace {

// GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves; the others
// (controls, space, DEL, the Latin-1 gap and the soft hyphen) take U+0100 onwards in order.
struct ByteMap {
    std::string to_text[256];                      // byte -> its character's UTF-8
    std::unordered_map<uint32_t, uint8_t> to_byte; // code point -> byte
    ByteMap() {
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable =
                (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
            const uint32_t cp = printable ? b : next++;
            append_utf8(cp, to_text[b]);
            to_byte[cp] = uint8_t(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

// The pre-tokenizers, with llama.cpp's regexes (where llama.cpp rewrote a pattern for
// std::regex, the pattern from the model's tokenizer.json, which PCRE2 runs as written).
const PreTokenizerRules kPreTokenizers[] = {
    {{"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+",
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
      "[0-9][0-9][0-9]"}},
    {{"gpt-2", "phi-2", "mpt", "olmo", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de"},
     {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"}},
    {{"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"},
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     /*ignore_merges=*/true,
     /*add_bos=*/true},
    {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"},
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
     {"\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"}},
    {{"deepseek-coder"},
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
      "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"}},
    {{"deepseek-llm"},
     {"[\r\n]",
      // Cased letters, as code points: an editor that normalises text would turn the Greek
      // Extended and letterlike singletons (U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A) into
      // their canonical equivalents and the ranges out of order.
      "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
      "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
      "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-"
      "\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}"
      "\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}"
      "\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
      "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
      "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-"
      "\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-"
      "\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}"
      "\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-"
      "\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
      "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}"
      "-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-"
      "\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-"
      "\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-"
      "\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-"
      "\\x{1E943}]+",
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"}},
    {{"tekken"},
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     /*ignore_merges=*/true,
     /*add_bos=*/true},
};

} // namespace

const PreTokenizerRules* find_pre_tokenizer(std::string_view name) {
    for (const PreTokenizerRules& rules : kPreTokenizers)
        if (std::find(rules.names.begin(), rules.names.end(), name) != rules.names.end())
            return &rules;
    return nullptr;
}

std::vector<std::string_view> pre_tokenizer_names() {
    std::vector<std::string_view> out;
    for (const PreTokenizerRules& rules : kPreTokenizers)
        out.insert(out.end(), rules.names.begin(), rules.names.end());
    return out;
}

std::string known_pre_tokenizers() {
    std::string out;
    for (std::string_view name : pre_tokenizer_names())
        out += (out.empty() ? "" : ", ") + std::string(name);
    return out;
}

std::string_view gpt2_byte_text(uint8_t b) {
    return byte_map().to_text[b];
}

#ifdef WOOLLY_HAVE_PCRE2

// The compiled regexes. Matching is read-only on them; each call brings its own match data.
struct BpeTokenizer::Regexes {
    std::vector<pcre2_code*> codes;
    ~Regexes() {
        for (pcre2_code* code : codes) pcre2_code_free(code);
    }
};

bool BpeTokenizer::available() {
    return true;
}

BpeTokenizer::BpeTokenizer(const Vocab& vocab, const GgufFile& file, const PreTokenizerRules& rules)
    : vocab_(vocab), rules_(rules), regexes_(std::make_unique<Regexes>()) {
    const auto* merges = file.get_string_array("tokenizer.ggml.merges");
    if (!merges) throw Error(file.name() + ": missing metadata key 'tokenizer.ggml.merges'");
    ranks_.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
        const std::string_view merge = (*merges)[i];
        // "left right", split at the first space after the first byte (as llama.cpp does).
        const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
        if (space == std::string::npos || space + 1 == merge.size()) {
            throw Error(file.name() + ": tokenizer.ggml.merges[" + std::to_string(i) + "] is '" +
                        std::string(merge) + "' (expected two token texts separated by a space)");
        }
        ranks_.emplace(std::string(merge),
                       int32_t(i)); // the first rank of a pair listed twice holds
    }
    for (std::string_view pattern : rules.regexes) {
        int error = 0;
        PCRE2_SIZE offset = 0;
        pcre2_code* code =
            pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error, &offset, nullptr);
        if (!code) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(error, message, sizeof message);
            throw Error("pre-tokenizer '" + std::string(rules.names.front()) +
                        "': regex error at " + std::to_string(offset) + ": " +
                        reinterpret_cast<char*>(message));
        }
        // JIT where the system allows executable memory; a unit with
        // MemoryDenyWriteExecute=yes refuses it and the interpreter runs the same pattern.
        pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
        regexes_->codes.push_back(code);
    }
}

void BpeTokenizer::encode(std::string_view text, bool, std::vector<TokenId>& out) const {
    // The pre-tokenizer sees code points: invalid bytes become U+FFFD first, as in llama.cpp.
    const std::string repaired = is_valid_utf8(text) ? std::string(text) : repair_utf8(text);
    // Words as (offset, length) in `repaired`. Each regex cuts every piece so far into its
    // matches and the gaps between them, a piece being the whole subject (so a lookahead or
    // `$` stops at its end).
    std::vector<std::pair<size_t, size_t>> words{{0, repaired.size()}}, next;
    // Only the whole match's offsets are read: one pair serves every pattern.
    const std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
        pcre2_match_data_create(1, nullptr), pcre2_match_data_free);
    if (!data) throw Error("out of memory for a regex match");
    pcre2_match_data* const match = data.get();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(repaired.data());
    for (pcre2_code* code : regexes_->codes) {
        next.clear();
        for (const auto& [start, length] : words) {
            size_t at = 0; // within the piece
            size_t gap = 0;
            while (at < length) {
                const int rc = pcre2_match(code, subject + start, length, at, PCRE2_NO_UTF_CHECK,
                                           match, nullptr);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0)
                    throw Error("pre-tokenizer regex failed (PCRE2 error " + std::to_string(rc) +
                                ")");
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
                const size_t m0 = ov[0], m1 = ov[1];
                if (m1 == m0) { // an empty match cuts nothing: step over one character
                    at = m0 + std::min(utf8_char_len(uint8_t(repaired[start + m0])), length - m0);
                    continue;
                }
                if (m0 > gap) next.emplace_back(start + gap, m0 - gap);
                next.emplace_back(start + m0, m1 - m0);
                at = gap = m1;
            }
            if (gap < length) next.emplace_back(start + gap, length - gap);
        }
        words.swap(next);
    }

    const ByteMap& map = byte_map();
    std::string word, key;
    for (const auto& [start, length] : words) {
        word.clear();
        for (size_t i = start; i < start + length; ++i) word += map.to_text[uint8_t(repaired[i])];
        encode_word(word, key, out);
    }
}

#else // no PCRE2: this build (the cross-compiled kernel tests) has no BPE vocabularies

struct BpeTokenizer::Regexes {};

bool BpeTokenizer::available() {
    return false;
}

BpeTokenizer::BpeTokenizer(const Vocab& vocab, const GgufFile& file, const PreTokenizerRules& rules)
    : vocab_(vocab), rules_(rules) {
    throw Error(file.name() + ": a BPE vocabulary needs PCRE2, and this build has none "
                              "(configure with libpcre2-dev installed)");
}

void BpeTokenizer::encode(std::string_view, bool, std::vector<TokenId>&) const {}

#endif

BpeTokenizer::~BpeTokenizer() = default;

// One word (already through the byte map): its characters, merged pair by pair, the pair of
// lowest rank first and the leftmost on a tie, then looked up.
void BpeTokenizer::encode_word(std::string_view word, std::string& key,
                               std::vector<TokenId>& out) const {
    if (word.empty()) return;
    if (rules_.ignore_merges) {
        if (const TokenId id = vocab_.find(word); id >= 0) {
            out.push_back(id);
            return;
        }
    }
    struct Symbol {
        int prev, next;
        size_t offset, n;
    };
    std::vector<Symbol> symbols;
    for (size_t offset = 0; offset < word.size();) {
        const size_t len = std::min(utf8_char_len(uint8_t(word[offset])), word.size() - offset);
        const int index = int(symbols.size());
        symbols.push_back({index - 1, offset + len == word.size() ? -1 : index + 1, offset, len});
        offset += len;
    }
    struct Bigram {
        int left, right;
        int32_t rank;
        size_t size; // bytes of the pair when it was found: stale once either side changed
    };
    struct Order {
        bool operator()(const Bigram& a, const Bigram& b) const {
            return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
        }
    };
    std::priority_queue<Bigram, std::vector<Bigram>, Order> queue;
    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const Symbol& l = symbols[size_t(left)];
        const Symbol& r = symbols[size_t(right)];
        key.assign(word.substr(l.offset, l.n));
        key += ' ';
        key.append(word.substr(r.offset, r.n));
        auto it = ranks_.find(key);
        if (it == ranks_.end()) return;
        queue.push({left, right, it->second, l.n + r.n});
    };
    for (int i = 1; i < int(symbols.size()); ++i) try_add(i - 1, i);
    while (!queue.empty()) {
        const Bigram bigram = queue.top();
        queue.pop();
        Symbol& left = symbols[size_t(bigram.left)];
        Symbol& right = symbols[size_t(bigram.right)];
        if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size ||
            left.next != bigram.right)
            continue;
        left.n += right.n;
        right.n = 0;
        left.next = right.next;
        if (right.next >= 0) symbols[size_t(right.next)].prev = bigram.left;
        try_add(left.prev, bigram.left);
        try_add(bigram.left, left.next);
    }
    for (int i = 0; i != -1; i = symbols[size_t(i)].next) {
        const std::string_view s = word.substr(symbols[size_t(i)].offset, symbols[size_t(i)].n);
        if (const TokenId id = vocab_.find(s); id >= 0) {
            out.push_back(id);
            continue;
        }
        // No token for the symbol: each of its bytes on its own, where one is a token (llama.cpp
        // drops the others).
        for (char c : s)
            if (const TokenId id = vocab_.find(std::string_view(&c, 1)); id >= 0) out.push_back(id);
    }
}

std::string BpeTokenizer::decode(std::string_view token_text, TokenType type) const {
    if (type == TokenType::UserDefined) return std::string(token_text);
    // Each character back to its byte; one outside the map (or an invalid byte) stays as it is.
    const ByteMap& map = byte_map();
    std::string out;
    for (size_t i = 0; i < token_text.size();) {
        const auto [cp, len] = utf8_code_point(token_text, i);
        auto it = map.to_byte.find(cp);
        if (it != map.to_byte.end())
            out += char(it->second);
        else
            out.append(token_text.substr(i, len));
        i += len;
    }
    return out;
}

} // namespace woolly
