// autoglm-deploy bench: local throughput and HTTP load (issue 6).
#include "autoglm/exit_codes.h"
#include "commands.h"

namespace autoglm::cli {

int not_implemented(const char* what, const char* needs);

void add_bench_command(CLI::App& app, Runner& run) {
  CLI::App* cmd = app.add_subcommand("bench", "Measure tokens/s locally, or load-test a running server");
  cmd->footer(
      "Examples (once the engine lands):\n"
      "  autoglm-deploy bench --model model.gguf -p 512 -n 128 -b 1,4,8,16\n"
      "  autoglm-deploy bench --url http://127.0.0.1:8080 --concurrency 1,8,32");
  cmd->allow_extras();  // whatever is asked, the answer is the same until the engine exists
  cmd->callback([&run] {
    run = [] { return not_implemented("bench", "the inference engine (issue 3) and the server (issue 5)"); };
  });
}

}  // namespace autoglm::cli
