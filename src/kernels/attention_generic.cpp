// The attention body for any CPU (baseline instruction set).
#include <cstring>
#include <memory>
#include "attention_impl.h"

namespace autoglm::kernels {

void attention_generic(const AttentionArgs& args) {
  thread_local auto block = std::make_unique<KeyBlock>();
  attend(args, *block);
}

}  // namespace autoglm::kernels
