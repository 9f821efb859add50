// notify.h — systemd's notify protocol through libsystemd's sd_notify: readiness, the status
// line `systemctl status` shows, watchdog pings, reloading and stopping. Outside systemd (no
// NOTIFY_SOCKET) every call does nothing.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace woolly::daemon {

// Sends newline-separated assignments ("READY=1\nSTATUS=serving").
void notify(const std::string& state);
// "RELOADING=1" with the MONOTONIC_USEC= systemd wants beside it.
void notify_reloading();
// Half of WATCHDOG_USEC when systemd asks for watchdog pings (WatchdogSec=); else nothing.
std::optional<std::chrono::microseconds> watchdog_interval();

} // namespace woolly::daemon
