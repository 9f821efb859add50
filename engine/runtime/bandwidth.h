// bandwidth.h — the machine's memory read bandwidth, measured: the roofline of generation.
#pragma once

#include "engine/runtime/thread_pool.h"

namespace woolly {

// GB/s of a streaming read of `bytes` (at least 64 MiB) on every thread of `pool`, each thread
// reading its own contiguous part with the widest vector loads the CPU has; the best of
// `passes` passes.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int passes = 3);

} // namespace woolly
