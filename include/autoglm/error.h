#pragma once
// The one exception type that reaches the user: a message that says what went wrong and what to
// do next, and the exit code the process ends with.
#include <stdexcept>
#include <string>

#include "autoglm/exit_codes.h"

namespace autoglm {

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

}  // namespace autoglm
