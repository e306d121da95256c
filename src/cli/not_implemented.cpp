// Subcommands whose engine has not landed yet. They parse and validate their arguments (and the
// whole --config file) like the finished commands will, then say plainly that they cannot run.
#include <fmt/format.h>

#include "autoglm/exit_codes.h"
#include "commands.h"

namespace autoglm::cli {

int not_implemented(const char* what, const char* needs) {
  fmt::print(stderr,
             "error: '{}' is not implemented yet: it needs {}.\n"
             "       Available now: check-hardware (will this model fit?) and verify (are the files intact?).\n",
             what, needs);
  return kExitNotImplemented;
}

}  // namespace autoglm::cli
