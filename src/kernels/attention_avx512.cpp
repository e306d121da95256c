// The attention body compiled for AVX512 (only called when the CPU has it).
#include <cstring>
#include <memory>
#include <memory>

#include "attention.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#include "attention_impl.h"
#pragma GCC pop_options

namespace autoglm::kernels {
void attention_avx512(const AttentionArgs& args) {
  thread_local auto block = std::make_unique<KeyBlock>();
  attend(args, *block);
}
}  // namespace autoglm::kernels
#else
namespace autoglm::kernels {
void attention_avx512(const AttentionArgs& args) { attention_generic(args); }
}  // namespace autoglm::kernels
#endif
