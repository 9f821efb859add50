// notify.cpp — sd_notify and sd_watchdog_enabled.
#include "notify.h"

#include <systemd/sd-daemon.h>

#include <ctime>

namespace woolly::daemon {

void notify(const std::string& state) {
    sd_notify(0, state.c_str());
}

void notify_reloading() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const unsigned long long usec =
        (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000ULL;
    notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

std::optional<std::chrono::microseconds> watchdog_interval() {
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
    return std::chrono::microseconds(usec / 2);
}

} // namespace woolly::daemon
