#pragma once
// The memory read ceiling the benchmarks compare against: the streamed sum of the benchmark module
// (autoglm/benchmark.h), so that bench_kernels, bench_engine and `autoglm-deploy bench` measure
// the same thing.
#include "autoglm/benchmark.h"

namespace autoglm::bench {

using autoglm::benchmark::sum_words;

}  // namespace autoglm::bench
