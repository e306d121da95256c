// autoglm-deploy quantize: a GGUF or Hugging Face folder -> a llama.cpp-compatible GGUF of another type.
#include <chrono>
#include <fmt/format.h>
#include <memory>
#include <spdlog/spdlog.h>

#include "autoglm/exit_codes.h"
#include "autoglm/progress.h"
#include "autoglm/quantize.h"
#include "autoglm/units.h"
#include "commands.h"

namespace autoglm::cli {
namespace {

struct QuantizeArgs {
  std::string in;
  std::string out;
  std::string type;
  bool allow_requantize = false;
  int threads = 0;
};

int run_quantize(const QuantizeArgs& a) {
  const auto type = model::parse_quantize_type(a.type);
  if (!type) throw Error(kExitUsage, fmt::format("--type: unknown '{}' (use {})", a.type, model::kQuantizeTypes));
  model::QuantizeOptions o;
  o.type = *type;
  o.allow_requantize = a.allow_requantize;
  o.threads = a.threads;
  std::unique_ptr<ProgressBar> bar;
  o.on_tensor = [&bar](size_t done, size_t total, const std::string& name) {
    if (ProgressBar::stderr_is_tty()) {  // a bar on a terminal, a log line per tenth otherwise
      if (!bar) bar = std::make_unique<ProgressBar>("quantize", total, true);
      bar->advance(1);
      if (done == total) bar->finish();
    } else if (done == total || done % std::max<size_t>(1, total / 10) == 0) {
      spdlog::info("{}/{} tensors ({})", done, total, name);
    }
  };
  const auto start = std::chrono::steady_clock::now();
  const model::QuantizeResult r = model::quantize_model(a.in, a.out, o);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  fmt::print("{} ({}) -> {} ({}, {}, {} tensors) in {}\n", a.in, format_bytes(r.input_bytes), a.out,
             format_bytes(r.output_bytes), a.type, r.tensors, format_duration_ms(static_cast<uint64_t>(ms.count())));
  return kExitOk;
}

}  // namespace

void add_quantize_command(CLI::App& app, Runner& run) {
  CLI::App* cmd = app.add_subcommand("quantize", "Convert a GGUF file or Hugging Face folder into a GGUF of another type");
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy quantize ./GLM-4-9B-0414 glm-4-9b-Q4_K_M.gguf --type q4_k\n"
      "  autoglm-deploy quantize model-F16.gguf model-Q8_0.gguf --type q8_0\n\n"
      "Types: q8_0, q4_0, q4_1, q5_1; q4_k, q5_k, q3_k (llama.cpp's Q4_K_M, Q5_K_M and Q3_K_M recipes), q2_k,\n"
      "iq4_xs; f16, bf16, f32. Tensors get the types llama.cpp's quantize gives them without an importance\n"
      "matrix, and the output is readable by llama.cpp.");
  auto a = std::make_shared<QuantizeArgs>();
  cmd->add_option("IN", a->in, "GGUF file or Hugging Face folder (config.json + *.safetensors)")->required();
  cmd->add_option("OUT", a->out, "Output GGUF file")->required();
  cmd->add_option("--type,-t", a->type, model::kQuantizeTypes)->required();
  cmd->add_flag("--allow-requantize", a->allow_requantize,
                "Allow already-quantized input tensors to be dequantized and quantized again (quality drops)");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all)");
  cmd->callback([&run, a] { run = [a] { return run_quantize(*a); }; });
}

}  // namespace autoglm::cli
