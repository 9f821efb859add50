// cmd_keygen.cpp — `woolly keygen -o NAME`: a CurveZMQ key pair for woollyd or a client.
#include <sys/stat.h>

#include <cstdio>
#include <fcntl.h>
#include <string>
#include <unistd.h>

#include "cli_args.h"
#include "commands.h"
#include "engine/error.h"
#include "protocol/curve.h"

namespace woolly::cli {
namespace {

// Writes `text` to a new file `path` with `mode` (refuses to replace an existing one).
void write_new_file(const std::string& path, const std::string& text, mode_t mode) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        throw Error(path + ": cannot create (it may exist already; keygen replaces nothing)");
    const bool ok =
        ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fchmod(fd, mode) == 0;
    ::close(fd);
    if (!ok) throw Error(path + ": cannot write");
}

} // namespace

int keygen_command(int argc, char** argv) {
    Args args(argc, argv, 2, {"-o", "--output"}, {"--help", "-h"});
    if (args.has("--help") || args.has("-h")) {
        std::fputs(
            "usage: woolly keygen -o NAME\n"
            "Writes a CurveZMQ key pair: NAME.key (the secret key, mode 0600) and NAME.pub\n"
            "(the public key). For woollyd, NAME.key is security.curve_secret_key_file and\n"
            "clients get NAME.pub (--server-key); for a client, NAME.key is its --client-key\n"
            "and NAME.pub goes on a line of the daemon's authorized_keys.\n",
            stdout);
        return 0;
    }
    const auto name = args.get("-o", "--output");
    if (!name) throw Error("-o NAME is required");
    const protocol::CurveKeyPair pair = protocol::make_curve_keypair();
    write_new_file(*name + ".key", "# woolly CurveZMQ secret key\n" + pair.secret_key + "\n", 0600);
    write_new_file(*name + ".pub", "# woolly CurveZMQ public key\n" + pair.public_key + "\n", 0644);
    std::printf("wrote %s.key (secret, 0600) and %s.pub: %s\n", name->c_str(), name->c_str(),
                pair.public_key.c_str());
    return 0;
}

} // namespace woolly::cli
