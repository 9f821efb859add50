// gguf.cpp — GGUF parsing with a bounds-checked cursor; nothing is trusted before it is checked.
#include "engine/gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "engine/runtime/pages.h"

namespace woolly {
namespace {

constexpr uint32_t kMagic = 0x46554747; // "GGUF" read as little-endian uint32
constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
constexpr uint64_t kMaxTensorName = 63; // GGML_MAX_NAME - 1
constexpr int kMaxArrayDepth = 4;

uint64_t scalar_size(GgufValueType type) {
    switch (type) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
        return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
        return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
        return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
        return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY:
        return 0;
    }
    return 0;
}

bool known_value_type(uint32_t type) {
    return type <= uint32_t(GgufValueType::FLOAT64);
}

// Reads little-endian values from the file's bytes, failing with the offset on any overrun.
class Cursor {
public:
    Cursor(const GgufFile& file, const uint8_t* bytes, uint64_t size)
        : file_(file), bytes_(bytes), size_(size) {}

    uint64_t offset() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    void need(uint64_t n, const char* what) const {
        if (n > remaining()) {
            std::ostringstream msg;
            msg << "unexpected end of file reading " << what << " (expected " << n << " bytes, "
                << remaining() << " left)";
            file_.fail(pos_, msg.str());
        }
    }

    template <typename T> T read(const char* what) {
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, bytes_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return value;
    }

    std::string_view read_string(const char* what) {
        const uint64_t start = pos_;
        const auto length = read<uint64_t>(what);
        if (length > remaining()) {
            std::ostringstream msg;
            msg << what << " length " << length
                << " runs past the end of the file (expected at most " << remaining() << ")";
            file_.fail(start, msg.str());
        }
        std::string_view s(reinterpret_cast<const char*>(bytes_ + pos_), size_t(length));
        pos_ += length;
        return s;
    }

    const uint8_t* skip(uint64_t n, const char* what) {
        need(n, what);
        const uint8_t* p = bytes_ + pos_;
        pos_ += n;
        return p;
    }

private:
    const GgufFile& file_;
    const uint8_t* bytes_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

template <typename T> T load(const uint8_t* p) {
    T value;
    std::memcpy(&value, p, sizeof value);
    return value;
}

// Decodes one little-endian scalar at p (scalar_size(type) bytes, already bounds-checked) and
// fills both integer views, so callers can ask for either with a range check.
void decode_scalar(GgufValueType type, const uint8_t* p, GgufValue& out) {
    switch (type) {
    case GgufValueType::UINT8:
    case GgufValueType::BOOL:
        out.unsigned_integer = p[0];
        break;
    case GgufValueType::UINT16:
        out.unsigned_integer = load<uint16_t>(p);
        break;
    case GgufValueType::UINT32:
        out.unsigned_integer = load<uint32_t>(p);
        break;
    case GgufValueType::UINT64:
        out.unsigned_integer = load<uint64_t>(p);
        break;
    case GgufValueType::INT8:
        out.integer = int8_t(p[0]);
        break;
    case GgufValueType::INT16:
        out.integer = load<int16_t>(p);
        break;
    case GgufValueType::INT32:
        out.integer = load<int32_t>(p);
        break;
    case GgufValueType::INT64:
        out.integer = load<int64_t>(p);
        break;
    case GgufValueType::FLOAT32:
        out.real = load<float>(p);
        return;
    case GgufValueType::FLOAT64:
        out.real = load<double>(p);
        return;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY:
        return;
    }
    if (out.is_integer() || type == GgufValueType::BOOL) {
        const bool is_signed = type == GgufValueType::INT8 || type == GgufValueType::INT16 ||
                               type == GgufValueType::INT32 || type == GgufValueType::INT64;
        if (is_signed)
            out.unsigned_integer = out.integer < 0 ? 0 : uint64_t(out.integer);
        else
            out.integer = int64_t(out.unsigned_integer);
    }
}

void read_value(const GgufFile& file, Cursor& cursor, GgufValueType type, GgufValue& out,
                int depth);

void read_array(const GgufFile& file, Cursor& cursor, GgufValue& out, int depth) {
    const uint64_t start = cursor.offset();
    const auto element_type = cursor.read<uint32_t>("array element type");
    if (!known_value_type(element_type)) {
        file.fail(start, "unknown array element type " + std::to_string(element_type) +
                             " (expected 0..12)");
    }
    out.array_type = GgufValueType(element_type);
    const uint64_t count_offset = cursor.offset();
    out.array_count = cursor.read<uint64_t>("array count");
    const uint64_t element_size = scalar_size(out.array_type);
    if (element_size != 0) {
        if (out.array_count > cursor.remaining() / element_size) {
            file.fail(count_offset, "array of " + std::to_string(out.array_count) + " " +
                                        gguf_value_type_name(out.array_type) +
                                        " values runs past the end of the file");
        }
        out.array_data = cursor.skip(out.array_count * element_size, "array data");
        return;
    }
    // Strings and nested arrays take at least 8 bytes each: bound the count before reserving.
    if (out.array_count > cursor.remaining() / 8) {
        file.fail(count_offset, "array count " + std::to_string(out.array_count) +
                                    " is more than the file can hold");
    }
    if (out.array_type == GgufValueType::STRING) {
        out.array_strings.reserve(size_t(out.array_count));
        for (uint64_t i = 0; i < out.array_count; ++i)
            out.array_strings.push_back(cursor.read_string("array string"));
        return;
    }
    if (depth >= kMaxArrayDepth) file.fail(start, "arrays nested more than 4 deep");
    for (uint64_t i = 0; i < out.array_count; ++i) {
        GgufValue nested;
        read_value(file, cursor, GgufValueType::ARRAY, nested, depth + 1);
    }
}

void read_value(const GgufFile& file, Cursor& cursor, GgufValueType type, GgufValue& out,
                int depth) {
    out.type = type;
    out.offset = cursor.offset();
    if (type == GgufValueType::STRING) {
        out.string = cursor.read_string("string value");
    } else if (type == GgufValueType::ARRAY) {
        read_array(file, cursor, out, depth);
    } else {
        decode_scalar(type, cursor.skip(scalar_size(type), gguf_value_type_name(type)), out);
        if (type == GgufValueType::BOOL && out.unsigned_integer > 1) {
            file.fail(out.offset,
                      "bool value " + std::to_string(out.unsigned_integer) + " (expected 0 or 1)");
        }
    }
}

std::string quote(std::string_view s) {
    std::string out = "'";
    for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    return out + "'";
}

} // namespace

const char* gguf_value_type_name(GgufValueType type) {
    switch (type) {
    case GgufValueType::UINT8:
        return "uint8";
    case GgufValueType::INT8:
        return "int8";
    case GgufValueType::UINT16:
        return "uint16";
    case GgufValueType::INT16:
        return "int16";
    case GgufValueType::UINT32:
        return "uint32";
    case GgufValueType::INT32:
        return "int32";
    case GgufValueType::FLOAT32:
        return "float32";
    case GgufValueType::BOOL:
        return "bool";
    case GgufValueType::STRING:
        return "string";
    case GgufValueType::ARRAY:
        return "array";
    case GgufValueType::UINT64:
        return "uint64";
    case GgufValueType::INT64:
        return "int64";
    case GgufValueType::FLOAT64:
        return "float64";
    }
    return "unknown";
}

bool GgufValue::is_integer() const {
    switch (type) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
        return true;
    default:
        return false;
    }
}

std::string GgufValue::to_display_string(size_t max_array_items) const {
    std::ostringstream out;
    switch (type) {
    case GgufValueType::STRING:
        return quote(string.substr(0, 200));
    case GgufValueType::BOOL:
        return unsigned_integer ? "true" : "false";
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64:
        out << real;
        return out.str();
    case GgufValueType::UINT8:
    case GgufValueType::UINT16:
    case GgufValueType::UINT32:
    case GgufValueType::UINT64:
        out << unsigned_integer;
        return out.str();
    case GgufValueType::ARRAY:
        break;
    default:
        out << integer;
        return out.str();
    }
    out << gguf_value_type_name(array_type) << "[" << array_count << "]";
    if (array_type == GgufValueType::ARRAY) return out.str();
    out << " [";
    const uint64_t shown = std::min<uint64_t>(array_count, max_array_items);
    for (uint64_t i = 0; i < shown; ++i) {
        if (i) out << ", ";
        if (array_type == GgufValueType::STRING) {
            out << quote(array_strings[i].substr(0, 40));
            continue;
        }
        GgufValue element;
        element.type = array_type;
        decode_scalar(array_type, array_data + i * scalar_size(array_type), element);
        out << element.to_display_string();
    }
    if (array_count > shown) out << ", ...";
    out << "]";
    return out.str();
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        throw Error(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file (expected a GGUF model file)");
    }
    if (st.st_size < 24) {
        ::close(fd);
        throw Error(path + ": offset 0: file is " + std::to_string(st.st_size) +
                    " bytes (expected a GGUF header of at least 24 bytes)");
    }
    void* mapping = ::mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw Error(path + ": cannot mmap: " + std::strerror(err));
    }
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->name_ = path;
    file->mapping_ = mapping;
    file->fd_ = fd;
    file->bytes_ = static_cast<const uint8_t*>(mapping);
    file->size_ = uint64_t(st.st_size);
    file->parse_all();
    return file;
}

namespace {

// Reads n bytes at `offset` of fd into dst, whole, or throws Error.
void pread_all(int fd, uint8_t* dst, uint64_t n, uint64_t offset, const std::string& name) {
    while (n > 0) {
        const ssize_t got =
            ::pread(fd, dst, size_t(std::min<uint64_t>(n, 1u << 30)), off_t(offset));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            throw Error(name + ": cannot read at offset " + std::to_string(offset) + ": " +
                        (got < 0 ? std::strerror(errno) : "unexpected end of file"));
        }
        dst += got;
        n -= uint64_t(got);
        offset += uint64_t(got);
    }
}

} // namespace

void GgufFile::read_into_memory() {
    if (!mapping_ || in_memory_) return;
    void* copy =
        ::mmap(nullptr, size_t(size_), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        throw Error(name_ + ": cannot allocate " + std::to_string(size_ >> 20) +
                    " MiB to read the file into memory: " + std::strerror(errno));
    try {
        pread_all(fd_, static_cast<uint8_t*>(copy), size_, 0, name_);
    } catch (...) {
        ::munmap(copy, size_t(size_));
        throw;
    }
    ::mprotect(copy, size_t(size_), PROT_READ);
    // The copy takes the mapping's place: same addresses, so the parsed views stay valid.
    void* moved =
        ::mremap(copy, size_t(size_), size_t(size_), MREMAP_MAYMOVE | MREMAP_FIXED, mapping_);
    if (moved == MAP_FAILED) {
        const int err = errno;
        ::munmap(copy, size_t(size_));
        throw Error(name_ + ": cannot move the file's copy into place: " + std::strerror(err));
    }
    in_memory_ = true;
}

void GgufFile::release(const uint8_t* p, uint64_t n) const {
    if (!mapping_) return;
    const PageRange pages = inner_pages(p, n);
    if (pages.length) ::madvise(pages.start, pages.length, MADV_DONTNEED); // a failure keeps them
}

void GgufFile::restore(const uint8_t* p, uint64_t n) const {
    if (!mapping_ || !in_memory_) return;
    const PageRange pages = inner_pages(p, n);
    if (!pages.length) return;
    ::mprotect(pages.start, pages.length, PROT_READ | PROT_WRITE);
    pread_all(fd_, pages.start, pages.length,
              uint64_t(pages.start - static_cast<uint8_t*>(mapping_)), name_);
    ::mprotect(pages.start, pages.length, PROT_READ);
}

void GgufFile::lock(const uint8_t* p, uint64_t n) const {
    if (mapping_) lock_in_ram(p, n, name_ + "'s weights");
}

void GgufFile::unlock(const uint8_t* p, uint64_t n) const {
    if (mapping_) unlock_inner(p, n);
}

uint64_t GgufFile::resident_bytes() const {
    if (!mapping_) return 0;
    std::ifstream smaps("/proc/self/smaps");
    const PageRange pages = outer_pages(mapping_, size_);
    const uintptr_t begin = uintptr_t(pages.start);
    const uintptr_t end = begin + pages.length;
    std::string line;
    bool inside = false;
    uint64_t kib = 0;
    while (std::getline(smaps, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(' ') > 8) {
            inside = lo >= begin && hi <= end; // the mapping may have been split into pieces
            continue;
        }
        unsigned long long value = 0;
        if (inside && std::sscanf(line.c_str(), "Rss: %llu kB", &value) == 1) kib += value;
    }
    return kib << 10;
}

std::unique_ptr<GgufFile> GgufFile::parse(std::string name, const uint8_t* bytes, uint64_t size) {
    std::unique_ptr<GgufFile> file(new GgufFile());
    file->name_ = std::move(name);
    file->bytes_ = bytes;
    file->size_ = size;
    file->parse_all();
    return file;
}

GgufFile::~GgufFile() {
    if (mapping_) ::munmap(mapping_, size_t(size_));
    if (fd_ >= 0) ::close(fd_);
}

void GgufFile::fail(uint64_t offset, const std::string& what) const {
    throw Error(name_ + ": offset " + std::to_string(offset) + ": " + what);
}

void GgufFile::parse_all() {
    Cursor cursor(*this, bytes_, size_);
    const auto magic = cursor.read<uint32_t>("magic");
    if (magic != kMagic) {
        char got[5] = {};
        std::memcpy(got, &magic, 4);
        for (char& c : got)
            if (c && (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e))
                c = '?';
        fail(0, std::string("bad magic '") + got + "' (expected 'GGUF')");
    }
    version_ = cursor.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
        fail(4, "unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
    }
    const auto n_tensors = cursor.read<uint64_t>("tensor count");
    const auto n_kv = cursor.read<uint64_t>("metadata count");
    // A key-value pair takes at least 13 bytes and a tensor info at least 32: bound the counts
    // by what the file can hold before reserving anything.
    if (n_kv > cursor.remaining() / 13) {
        fail(16, "metadata count " + std::to_string(n_kv) + " is more than a file of " +
                     std::to_string(size_) + " bytes can hold");
    }
    if (n_tensors > cursor.remaining() / 32) {
        fail(8, "tensor count " + std::to_string(n_tensors) + " is more than a file of " +
                    std::to_string(size_) + " bytes can hold");
    }

    metadata_.reserve(size_t(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        const uint64_t key_offset = cursor.offset();
        const std::string_view key = cursor.read_string("metadata key");
        if (key.empty()) fail(key_offset, "empty metadata key");
        if (metadata_index_.count(key)) fail(key_offset, "duplicate metadata key " + quote(key));
        const uint64_t type_offset = cursor.offset();
        const auto type = cursor.read<uint32_t>("metadata value type");
        if (!known_value_type(type)) {
            fail(type_offset, "metadata key " + quote(key) + " has unknown value type " +
                                  std::to_string(type) + " (expected 0..12)");
        }
        GgufValue value;
        read_value(*this, cursor, GgufValueType(type), value, 0);
        metadata_index_.emplace(std::string(key), metadata_.size());
        metadata_.emplace_back(std::string(key), std::move(value));
    }

    if (const GgufValue* alignment = find("general.alignment")) {
        if (alignment->type != GgufValueType::UINT32) {
            fail(alignment->offset, std::string("general.alignment has type ") +
                                        gguf_value_type_name(alignment->type) +
                                        " (expected uint32)");
        }
        const uint64_t a = alignment->unsigned_integer;
        if (a == 0 || (a & (a - 1)) != 0) {
            fail(alignment->offset,
                 "general.alignment " + std::to_string(a) + " (expected a power of two)");
        }
        alignment_ = a;
    }

    tensors_.reserve(size_t(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo info{};
        info.file_offset = cursor.offset();
        const std::string_view name = cursor.read_string("tensor name");
        if (name.size() > kMaxTensorName) {
            fail(info.file_offset,
                 "tensor name of " + std::to_string(name.size()) + " bytes (expected at most 63)");
        }
        if (tensor_index_.count(name)) fail(info.file_offset, "duplicate tensor " + quote(name));
        info.name = std::string(name);
        const uint64_t dims_offset = cursor.offset();
        const auto n_dims = cursor.read<uint32_t>("tensor dimension count");
        if (n_dims == 0 || n_dims > kMaxDims) {
            fail(dims_offset, "tensor " + quote(name) + " has " + std::to_string(n_dims) +
                                  " dimensions (expected 1 to 4)");
        }
        info.n_elements = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const uint64_t dim_offset = cursor.offset();
            const auto dim = cursor.read<uint64_t>("tensor dimension");
            if (dim == 0 || dim > uint64_t(INT64_MAX)) {
                fail(dim_offset, "tensor " + quote(name) + " dimension " + std::to_string(d) +
                                     " is " + std::to_string(dim) + " (expected 1 to 2^63-1)");
            }
            if (info.n_elements > uint64_t(INT64_MAX) / dim) {
                fail(dim_offset, "tensor " + quote(name) + " has more than 2^63 elements");
            }
            info.n_elements *= dim;
            info.dims.push_back(dim);
        }
        const uint64_t type_offset = cursor.offset();
        const auto type_id = cursor.read<uint32_t>("tensor type");
        const TypeTraits* traits = find_type_traits(type_id);
        if (!traits) {
            fail(type_offset,
                 "tensor " + quote(name) + " has unknown type " + std::to_string(type_id));
        }
        info.type = traits->type;
        if (info.dims[0] % traits->block_size != 0) {
            fail(dims_offset, "tensor " + quote(name) + " row length " +
                                  std::to_string(info.dims[0]) + " is not a multiple of " +
                                  traits->name + "'s block size " +
                                  std::to_string(traits->block_size));
        }
        info.n_bytes = *row_bytes(*traits, info.dims[0]);
        const uint64_t rows = info.n_elements / info.dims[0];
        if (info.n_bytes != 0 && rows > UINT64_MAX / info.n_bytes) {
            fail(dims_offset, "tensor " + quote(name) + " size overflows 64 bits");
        }
        info.n_bytes *= rows;
        const uint64_t offset_at = cursor.offset();
        info.offset = cursor.read<uint64_t>("tensor data offset");
        if (info.offset % alignment_ != 0) {
            fail(offset_at,
                 "tensor " + quote(name) + " data offset " + std::to_string(info.offset) +
                     " is not a multiple of the alignment " + std::to_string(alignment_));
        }
        tensor_index_.emplace(info.name, tensors_.size());
        tensors_.push_back(std::move(info));
    }

    // The data section starts at the next multiple of the alignment.
    const uint64_t header_end = cursor.offset();
    const uint64_t padding = (alignment_ - header_end % alignment_) % alignment_;
    data_offset_ = header_end + padding;
    if (!tensors_.empty() && data_offset_ > size_) {
        fail(header_end, "data section would start at " + std::to_string(data_offset_) +
                             ", past the end of the " + std::to_string(size_) + "-byte file");
    }
    const uint64_t data_size = size_ - std::min(data_offset_, size_);
    for (auto& info : tensors_) {
        if (info.offset > data_size || info.n_bytes > data_size - info.offset) {
            fail(info.file_offset,
                 "tensor " + quote(info.name) + " data [" + std::to_string(info.offset) + ", " +
                     std::to_string(info.offset) + "+" + std::to_string(info.n_bytes) +
                     ") lies outside the data section of " + std::to_string(data_size) + " bytes");
        }
        info.data = bytes_ + data_offset_ + info.offset;
    }
}

const GgufValue* GgufFile::find(std::string_view key) const {
    auto it = metadata_index_.find(key);
    return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void type_mismatch(const GgufFile& file, std::string_view key, const GgufValue& v,
                                const char* expected) {
    std::string actual = gguf_value_type_name(v.type);
    if (v.type == GgufValueType::ARRAY)
        actual += std::string(" of ") + gguf_value_type_name(v.array_type);
    file.fail(v.offset, "metadata key '" + std::string(key) + "' has type " + actual +
                            " (expected " + expected + ")");
}
} // namespace

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufValueType::STRING) type_mismatch(*this, key, *v, "string");
    return std::string(v->string);
}

std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer()) type_mismatch(*this, key, *v, "an integer");
    const bool is_signed = v->type == GgufValueType::INT8 || v->type == GgufValueType::INT16 ||
                           v->type == GgufValueType::INT32 || v->type == GgufValueType::INT64;
    if (is_signed && v->integer < 0) {
        fail(v->offset, "metadata key '" + std::string(key) + "' is " + std::to_string(v->integer) +
                            " (expected a non-negative value)");
    }
    return v->unsigned_integer;
}

std::optional<double> GgufFile::get_real(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_real()) return v->real;
    if (v->is_integer()) return double(v->integer);
    type_mismatch(*this, key, *v, "a number");
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufValueType::BOOL) type_mismatch(*this, key, *v, "bool");
    return v->unsigned_integer != 0;
}

const std::vector<std::string_view>* GgufFile::get_string_array(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    if (v->type != GgufValueType::ARRAY || v->array_type != GgufValueType::STRING)
        type_mismatch(*this, key, *v, "array of string");
    return &v->array_strings;
}

namespace {
template <typename Out>
std::vector<Out> read_numeric_array(const GgufFile& file, std::string_view key,
                                    uint64_t expected_count, GgufValueType wanted,
                                    const char* wanted_name) {
    const GgufValue* v = file.find(key);
    if (!v) return {};
    if (v->type != GgufValueType::ARRAY || v->array_type != wanted)
        type_mismatch(file, key, *v, wanted_name);
    if (v->array_count != expected_count) {
        file.fail(v->offset, "metadata key '" + std::string(key) + "' has " +
                                 std::to_string(v->array_count) + " elements (expected " +
                                 std::to_string(expected_count) + ")");
    }
    std::vector<Out> out(size_t(v->array_count));
    if (!out.empty()) std::memcpy(out.data(), v->array_data, out.size() * sizeof(Out));
    return out;
}
} // namespace

std::vector<float> GgufFile::get_f32_array(std::string_view key, uint64_t expected_count) const {
    return read_numeric_array<float>(*this, key, expected_count, GgufValueType::FLOAT32,
                                     "array of float32");
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view key, uint64_t expected_count) const {
    return read_numeric_array<int32_t>(*this, key, expected_count, GgufValueType::INT32,
                                       "array of int32");
}

} // namespace woolly
