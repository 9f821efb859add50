// curve.h — CurveZMQ keys as Woolly keeps them in files: a secret key file (40 Z85 characters,
// readable by its owner only) and an authorized_keys file (one client public key per line).
// The crypto is libzmq's own; this reads, checks and makes the files.
#pragma once

#include <memory>
#include <set>
#include <stdexcept>
#include <string>

namespace woolly::protocol {

class KeyError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct CurveKeyPair {
    std::string public_key; // Z85, 40 characters
    std::string secret_key; // Z85, 40 characters
};

// A new key pair from libzmq (zmq_curve_keypair).
CurveKeyPair make_curve_keypair();

// The secret key in `path` and its public key (zmq_curve_public). The file holds the 40 Z85
// characters on one line; lines starting with "# " are comments. Refused (KeyError naming the
// file and what is wrong) when the group or others may read it, or it holds no valid key.
CurveKeyPair read_secret_key_file(const std::string& path);
// A public key file (woolly keygen's NAME.pub): the 40 Z85 characters, comments allowed.
std::string read_public_key_file(const std::string& path);

// The client public keys in an authorized_keys file: one key per line (40 Z85 characters, then
// optionally whitespace and a label), blank lines and lines starting with "# " ignored (Z85
// has '#' but no space). Refused when group or others may write it, or a line is neither.
std::set<std::string> read_authorized_keys(const std::string& path);

// The first characters of a key, for logs.
std::string key_prefix(const std::string& z85);
// Z85 of 32 bytes of a raw key (what ZAP hands over), "" when it is not 32 bytes.
std::string z85_of(const void* raw, size_t size);

} // namespace woolly::protocol
