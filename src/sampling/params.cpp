#include <cmath>
#include <sstream>

#include "autoglm/error.h"
#include "autoglm/sampling.h"

namespace autoglm::sampling {
namespace {

template <typename T>
[[noreturn]] void out_of_range(std::string_view field, T value, std::string_view allowed) {
  std::ostringstream message;
  message << "sampling parameter " << field << " = " << value << " is out of range: use " << allowed;
  throw Error(kExitUsage, message.str());
}

// Written as !(in range) so that NaN is rejected too.
void check_float(std::string_view field, float value, float lo, float hi, std::string_view allowed) {
  if (!(std::isfinite(value) && value >= lo && value <= hi)) out_of_range(field, value, allowed);
}

}  // namespace

void validate(const SamplingParams& p) {
  check_float("temperature", p.temperature, 0.0f, HUGE_VALF, "a finite value >= 0 (0 = greedy)");
  if (p.top_k < 0) out_of_range("top_k", p.top_k, "a value >= 0 (0 = off)");
  check_float("top_p", p.top_p, 0.0f, 1.0f, "a value in [0, 1] (1 = off)");
  check_float("min_p", p.min_p, 0.0f, 1.0f, "a value in [0, 1] (0 = off)");
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f))
    out_of_range("repetition_penalty", p.repetition_penalty, "a finite value > 0 (1 = off)");
  check_float("presence_penalty", p.presence_penalty, -2.0f, 2.0f, "a value in [-2, 2] (0 = off)");
  check_float("frequency_penalty", p.frequency_penalty, -2.0f, 2.0f, "a value in [-2, 2] (0 = off)");
  if (p.penalty_last_n < -1) out_of_range("penalty_last_n", p.penalty_last_n, "a value >= -1 (-1 = all, 0 = off)");
}

}  // namespace autoglm::sampling
