#include <fmt/format.h>

#include "commands.h"
#include "version_info.h"

namespace autoglm::cli {

std::string version_string() {
  return fmt::format("autoglm-deploy {} (commit {}, CUDA compiled in: {})", AUTOGLM_VERSION,
                     AUTOGLM_GIT_COMMIT, AUTOGLM_CUDA_DESCRIPTION);
}

}  // namespace autoglm::cli
