// bundled_model.h — the model used when none is named: the installed copy of stories260K when
// there is one, else the source tree's (binaries run from the build directory).
#pragma once

#include <unistd.h>

#include <string>

namespace woolly {

inline std::string bundled_model_path() {
    if (::access(WOOLLY_INSTALLED_MODEL, R_OK) == 0) return WOOLLY_INSTALLED_MODEL;
    return WOOLLY_SOURCE_MODEL;
}

} // namespace woolly
