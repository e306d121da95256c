// autoglm-deploy bench: the engine's tokens/s on this machine (--model), or a load test of a
// running server (--url). The measuring is in the benchmark module; this file is the command line.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <fmt/format.h>
#include <memory>

#include "autoglm/benchmark.h"
#include "autoglm/config.h"
#include "autoglm/error.h"
#include "autoglm/exit_codes.h"
#include "autoglm/progress.h"
#include "autoglm/quantize.h"
#include "autoglm/units.h"
#include "commands.h"
#include "model_setup.h"
#include "service.h"

namespace autoglm::cli {
namespace {

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error(kExitCheckFailed, "--agent-steps: no free loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct BenchArgs {
  std::string model, quantization, url, duration, api_key, mmproj;
  std::string vision_quantization = "auto";
  std::vector<std::string> images;
  size_t agent_steps = 0;
  size_t agent_answer_tokens = 80;
  benchmark::VisionOptions vision;
  uint64_t min_pixels = 0, max_pixels = 0;
  bool no_repack = false;
  benchmark::LocalOptions local;
  benchmark::HttpOptions http;
  bool json = false, markdown = false;
  // flags that belong to one mode, to refuse them in the other
  std::vector<CLI::Option*> local_only, http_only;
};

benchmark::Format output_format(const BenchArgs& a) {
  return a.json ? benchmark::Format::json : a.markdown ? benchmark::Format::markdown : benchmark::Format::table;
}

// A flag of the other mode is a mistake worth stopping for: it would be silently ignored.
void refuse_flags(const std::vector<CLI::Option*>& flags, const char* mode) {
  for (const CLI::Option* o : flags)
    if (o->count() > 0) throw Error(kExitUsage, fmt::format("{} does not apply with {}", o->get_name(), mode));
}

model::LoadOptions load_options(const std::string& quantization) {
  model::LoadOptions load;
  if (quantization.empty() || quantization == "auto") return load;
  load.quantize_to = model::parse_quantize_type(quantization);
  if (!load.quantize_to) throw Error(kExitUsage, fmt::format("--quantization: unknown type '{}'; use q8_0, q4_0 or q4_k", quantization));
  return load;
}

// The vision tower's load options as `serve` would pick them for vision.quantization (and the text
// model's --quantization).
model::LoadOptions vision_options(const BenchArgs& a, const model::LoadOptions& load) {
  config::Config cfg;
  const std::pair<const char*, config::VisionQuantization> names[] = {{"auto", config::VisionQuantization::kAuto},
                                                                      {"as_stored", config::VisionQuantization::kAsStored},
                                                                      {"bf16", config::VisionQuantization::kBf16},
                                                                      {"q8_0", config::VisionQuantization::kQ8_0}};
  for (const auto& [name, value] : names)
    if (a.vision_quantization == name) cfg.vision.quantization = value;
  if (load.quantize_to) cfg.model.quantization = config::Quantization::kQ8_0;  // any quantized type: the tower's rule is the same
  return vision_load_options(cfg, load);
}

int run_local(BenchArgs& a) {
  refuse_flags(a.http_only, "--model (they are for --url)");
  a.local.progress = ProgressBar::stderr_is_tty();
  model::LoadOptions load = load_options(a.quantization);
  load.repack = !a.no_repack;
  const auto m = model::Model::load(a.model, load);
  const std::string name = std::filesystem::path(a.model).lexically_normal().filename().string();
  const benchmark::LocalReport report = benchmark::run_local(*m, name.empty() ? a.model : name, a.local);
  std::fputs(benchmark::render_local(report, output_format(a)).c_str(), stdout);
  return kExitOk;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(kExitUsage, fmt::format("--image {}: cannot read the file", path));
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// --image: the vision tower and an agent step's time to first token instead of pp/tg.
int run_image(BenchArgs& a) {
  model::LoadOptions load = load_options(a.quantization);
  load.repack = !a.no_repack;
  const auto m = model::Model::load(a.model, load);
  const Tokenizer tok = load_tokenizer(a.model);
  VisionSetup v = load_vision(a.model, a.mmproj, vision_options(a, load), tok);
  if (!v.model) throw Error(kExitUsage, "--image: this model has no vision tower (give a GLM-4.1V folder, or --mmproj)");
  set_pixel_limits(v, a.min_pixels, a.max_pixels);
  if (a.images.size() != 1) throw Error(kExitUsage, "--image: give one image (several go with --agent-steps)");
  const std::string& image = a.images.front();
  const std::vector<uint8_t> bytes = read_file(image);
  a.vision.threads = a.local.threads;
  a.vision.repetitions = a.local.repetitions;
  const std::string name = std::filesystem::path(a.model).lexically_normal().filename().string();
  const benchmark::VisionReport report =
      benchmark::run_vision(*m, *v.model, v.processor, v.image_token, bytes, name.empty() ? a.model : name,
                            std::filesystem::path(image).filename().string(), a.vision);
  std::fputs(benchmark::render_vision(report, output_format(a)).c_str(), stdout);
  return kExitOk;
}

// --agent-steps against --url.
int run_agent_url(const BenchArgs& a, const std::string& url) {
  benchmark::AgentOptions o;
  o.url = url;
  o.api_key = a.api_key;
  o.steps = a.agent_steps;
  o.answer_tokens = a.agent_answer_tokens;
  for (const std::string& image : a.images) {
    o.screenshots.push_back(read_file(image));
    const std::vector<uint8_t>& b = o.screenshots.back();
    o.screenshot_types.push_back(b.size() > 3 && b[0] == 0xFF && b[1] == 0xD8 ? "image/jpeg" : "image/png");
  }
  const benchmark::AgentReport report = benchmark::run_agent_steps(o);
  std::fputs(benchmark::render_agent(report, output_format(a)).c_str(), stdout);
  return kExitOk;
}

// --agent-steps with --model: this binary's `serve` on a free loopback port, replayed against, then stopped.
int run_agent_local(const BenchArgs& a) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("autoglm-bench-agent-{}", ::getpid());
  fs::create_directories(dir);
  const int port = free_loopback_port();
  std::string yaml = fmt::format("service:\n  host: 127.0.0.1\n  port: {}\nmodel:\n  path: \"{}\"\n", port,
                                 fs::absolute(a.model).string());
  if (!a.mmproj.empty()) yaml += fmt::format("  mmproj: \"{}\"\n", fs::absolute(a.mmproj).string());
  if (!a.quantization.empty()) yaml += fmt::format("  quantization: {}\n", a.quantization);
  yaml += fmt::format("runtime:\n  threads: {}\n", a.local.threads);
  yaml += fmt::format("vision:\n  quantization: {}\n", a.vision_quantization);
  if (a.min_pixels) yaml += fmt::format("  min_pixels: {}\n", a.min_pixels);
  if (a.max_pixels) yaml += fmt::format("  max_pixels: {}\n", a.max_pixels);
  const fs::path config = dir / "service.yaml", log = dir / "server.log";
  std::ofstream(config) << yaml;
  const pid_t child = ::fork();
  if (child == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execl("/proc/self/exe", "autoglm-deploy", "serve", "--config", config.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  if (child < 0) throw Error(kExitCheckFailed, "--agent-steps: cannot start the server (fork failed)");
  auto stop = [&] {
    ::kill(child, SIGTERM);
    int status = 0;
    ::waitpid(child, &status, 0);
  };
  const std::string url = fmt::format("http://127.0.0.1:{}", port);
  const bool ready = benchmark::wait_ready(url, std::chrono::minutes(10), [&] {
    int status = 0;
    return ::waitpid(child, &status, WNOHANG) == 0;
  });
  if (!ready) {
    stop();
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fs::remove_all(dir);
    throw Error(kExitCheckFailed, fmt::format("--agent-steps: the server did not get ready:\n{}", text));
  }
  int code = kExitOk;
  try {
    code = run_agent_url(a, url);
  } catch (...) {
    stop();
    fs::remove_all(dir);
    throw;
  }
  stop();
  fs::remove_all(dir);
  return code;
}

int run_http(BenchArgs& a) {
  refuse_flags(a.local_only, "--url (they are for --model)");
  a.http.url = a.url;
  a.http.api_key = a.api_key;
  if (!a.duration.empty()) {
    const auto ms = parse_duration_ms(a.duration);
    if (!ms || *ms == 0) throw Error(kExitUsage, fmt::format("--duration '{}': give a time with a unit, e.g. 60s or 2m", a.duration));
    a.http.duration = std::chrono::milliseconds(*ms);
  }
  a.http.progress = ProgressBar::stderr_is_tty();
  const benchmark::HttpReport report = benchmark::run_http_load(a.http);
  std::fputs(benchmark::render_http(report, output_format(a)).c_str(), stdout);
  size_t succeeded = 0;
  for (const benchmark::LoadLevel& l : report.levels) succeeded += l.succeeded;
  if (succeeded == 0) {
    fmt::print(stderr, "error: no request succeeded; see the errors above (and the server's log)\n");
    return kExitCheckFailed;
  }
  return kExitOk;
}

int run_bench(BenchArgs& a) {
  if (a.model.empty() == a.url.empty())
    throw Error(kExitUsage, "give exactly one of --model FILE (local throughput) or --url http://HOST:PORT (HTTP load)");
  if (a.agent_steps) {
    if (a.images.empty()) throw Error(kExitUsage, "--agent-steps: give the screenshots with --image (one per step, cycled)");
    return a.url.empty() ? run_agent_local(a) : run_agent_url(a, a.url);
  }
  if (!a.images.empty()) {
    refuse_flags(a.http_only, "--image (they are for --url)");
    return run_image(a);
  }
  return a.model.empty() ? run_http(a) : run_local(a);
}

void add_local_flags(CLI::App* cmd, BenchArgs& a) {
  a.local_only = {
      cmd->add_option("--quantization", a.quantization, "for HF weights: quantize at load to q8_0, q4_0, q4_k"),
      cmd->add_option("--vision-quantization", a.vision_quantization,
                      "the vision tower's form, as vision.quantization: auto (default: BF16 on AMX tiles where the CPU "
                      "has them, else Q8_0), as_stored, bf16, q8_0")
          ->check(CLI::IsMember({"auto", "as_stored", "bf16", "q8_0"})),
      cmd->add_option("-p,--n-prompt", a.local.prompt_tokens, "prompt tokens per sequence: the pp<N> test (default 512; 0 skips it)"),
      cmd->add_option("-n,--n-gen", a.local.gen_tokens, "tokens generated per sequence: the tg<N> test (default 128; 0 skips it)"),
      cmd->add_option("--tg-context", a.local.tg_context,
                      "tokens each tg sequence holds before its timed steps, e.g. to decode at a server's positions "
                      "(default 16)"),
      cmd->add_option("-b,--batch", a.local.batches, "batch sizes, comma-separated (default 1)")->delimiter(','),
      cmd->add_option("-r,--repetitions", a.local.repetitions, "runs per test after a warm-up (default 5)"),
      cmd->add_option("-t,--threads", a.local.threads, "CPU threads (default: all)"),
      cmd->add_flag("--no-repack", a.no_repack, "keep the weights as stored (zero-copy), not repacked for the kernels"),
      cmd->add_option("--image", a.images, "a PNG/JPEG: time its decode, preprocessing, the vision tower and an agent "
                                            "step's time to first token (vision models), instead of pp/tg"),
      cmd->add_option("--mmproj", a.mmproj, "llama.cpp's vision projector GGUF for a text GGUF (with --image)"),
      cmd->add_option("--image-text-tokens", a.vision.text_tokens,
                      "with --image: text tokens before the image in the agent prompt (default 2000)"),
      cmd->add_option("--min-image-pixels", a.min_pixels, "with --image: resize to at least this many pixels"),
      cmd->add_option("--max-image-pixels", a.max_pixels, "with --image: resize to at most this many pixels"),
      cmd->add_flag("--no-ttft", [&a](int64_t) { a.vision.ttft = false; }, "with --image: time the image stages only"),
  };
}

void add_http_flags(CLI::App* cmd, BenchArgs& a) {
  a.http_only = {
      cmd->add_option("--concurrency,-c", a.http.concurrency, "requests in flight, comma-separated: one run each (default 1)")
          ->delimiter(','),
      cmd->add_option_function<size_t>("--requests", [&a](size_t n) { a.http.requests = n; },
                                       "requests per run (default: 4 per concurrent slot, at least 8)"),
      cmd->add_option("--duration", a.duration, "or stop each run after this long, e.g. 60s (requests still running are cut off)"),
      cmd->add_option("--prompt-tokens", a.http.prompt_tokens, "prompt length in words, about as many tokens (default 128)"),
      cmd->add_option("--max-tokens", a.http.max_tokens, "max_tokens of each request (default 128)"),
      cmd->add_option("--api-key", a.api_key, "sent as a Bearer token")->envname("AUTOGLM_API_KEY"),
  };
}

}  // namespace

void add_bench_command(CLI::App& app, Runner& run) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure tokens/s locally, or load-test a running server");
  cmd->add_option("--model,-m", a->model, "GGUF file or Hugging Face folder: measure the engine on this machine");
  cmd->add_option("--url", a->url, "a running server, http://HOST:PORT: load-test it");
  add_local_flags(cmd, *a);
  add_http_flags(cmd, *a);
  cmd->add_option("--agent-steps", a->agent_steps,
                  "replay an N-step phone-agent conversation (Open-AutoGLM's requests; --image gives the screenshots, "
                  "one per step) against --url, or a server this command starts for --model; per step: prompt and "
                  "cached tokens, encode time, TTFT, decode tokens/s");
  cmd->add_option("--agent-answer-tokens", a->agent_answer_tokens, "with --agent-steps: max_tokens of each step (default 80)");
  CLI::Option* json = cmd->add_flag("--json", a->json, "JSON: one object per measurement (--model) or per concurrency (--url)");
  cmd->add_flag("--markdown", a->markdown, "a Markdown table, for reports")->excludes(json);
  cmd->footer(
      "Examples:\n"
      "  autoglm-deploy bench --model model.gguf -p 512 -n 128 -b 1,4,8,16 -r 5\n"
      "  autoglm-deploy bench --model GLM-4-9B-0414/ --quantization q8_0 --markdown\n"
      "  autoglm-deploy bench --model AutoGLM-Phone-9B/ --quantization q8_0 --image screen.png -r 3\n"
      "  autoglm-deploy bench --url http://127.0.0.1:8080 --concurrency 1,8,32 --requests 64 --max-tokens 128\n"
      "  autoglm-deploy bench --url http://127.0.0.1:8080 --concurrency 8 --duration 60s --json\n"
      "tokens/s are aggregate over the batch (or all concurrent requests); see bench/README.md.");
  cmd->callback([&run, a] { run = [a] { return run_bench(*a); }; });
}

}  // namespace autoglm::cli
