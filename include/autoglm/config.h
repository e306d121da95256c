#pragma once
// The service configuration: a YAML file (schema in docs/config.md), its defaults, and the checks
// that turn a bad file or a bad flag into messages a user can act on.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "autoglm/error.h"

namespace autoglm::config {

enum class Quantization { kAuto, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K };
enum class Backend { kAuto, kCpu, kCuda };
enum class KvCacheType { kF16, kQ8_0 };
// The vision tower's matrices: auto = Q8_0 when stored as floats and served from the CPU (int8
// products; several times faster there), else as model.quantization says.
enum class VisionQuantization { kAuto, kAsStored, kBf16, kQ8_0 };

// The names the YAML file uses: "q4_k", "cuda", "q8_0".
std::string_view to_string(Quantization q);
std::string_view to_string(Backend b);
std::string_view to_string(KvCacheType t);
std::string_view to_string(VisionQuantization q);

// "1000/min": at most `requests` requests in every window of `per_ms` milliseconds.
struct RateLimit {
  uint32_t requests = 0;
  uint64_t per_ms = 0;
  bool operator==(const RateLimit&) const = default;
};

// "4GiB" (bytes > 0) or "90%" (bytes == 0, fraction in (0, 1]) of the memory left free on the
// device once the weights are loaded.
struct KvCacheBudget {
  uint64_t bytes = 0;
  double fraction = 0.9;
  bool operator==(const KvCacheBudget&) const = default;
};

struct ServiceConfig {
  std::string name = "autoglm";
  // The model ids requests may name (vLLM's --served-model-name); the first is the id responses
  // report. Empty: `name`, and the model's own name (GGUF general.name, HF folder name) is accepted too.
  std::vector<std::string> served_model_names;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::vector<std::string> api_keys;        // empty (and no api_keys_env) = no authentication
  std::string api_keys_env;                 // environment variable with comma-separated keys
  std::vector<std::string> cors_origins;    // "*" or "https://app.example.com"; empty = no CORS
  uint64_t max_request_body = 16ull << 20;  // bytes (a screenshot as a base64 data: URL is 1-4 MiB)
  uint64_t request_timeout_ms = 600'000;
  int max_queued_requests = 256;            // beyond the running batch; 0 = reject when busy
  std::optional<RateLimit> rate_limit;      // per API key; none = unlimited
  uint64_t drain_timeout_ms = 30'000;       // on SIGTERM/SIGINT: how long in-flight requests may finish
  bool allow_remote_images = false;         // fetch http(s) image URLs (else only data: URLs)
  std::filesystem::path allowed_local_media_path;  // file:// images under this folder; empty = none
  bool operator==(const ServiceConfig&) const = default;
};

struct ModelConfig {
  std::filesystem::path path;  // GGUF file or Hugging Face folder, already resolved
  std::string url;             // http:// or https:// download
  std::string sha256;          // single-file model: 64 lowercase hex digits
  std::map<std::string, std::string> sha256_files;  // multi-file model: file name -> hex
  Quantization quantization = Quantization::kAuto;
  int context_length = 0;      // 0 = the model's own
  std::string chat_template;   // "" = the model's own; glm4|glm4v|llama3|chatml|llama2 or a Jinja path
  std::filesystem::path mmproj;  // llama.cpp's vision projector GGUF beside a text GGUF; already resolved
  bool is_demo() const { return path.empty() && url.empty(); }
  bool operator==(const ModelConfig&) const = default;
};

// Vision-language models (GLM-4.1V): image limits under the names vLLM users know.
struct VisionConfig {
  int min_pixels = 0;               // images resized to at least / at most this many pixels;
  int max_pixels = 0;               // 0 = the model's preprocessor_config.json
  int max_images_per_request = 10;  // image parts one request may hold; 0 = refuse images
  uint64_t target_encode_ms = 0;    // check-hardware: the max_pixels whose screenshot encodes in this time; 0 = none
  uint64_t encoder_cache_size = 512ull << 20;  // bytes of image embeddings kept by content hash; 0 = off
  VisionQuantization quantization = VisionQuantization::kAuto;
  bool operator==(const VisionConfig&) const = default;
};

struct RuntimeConfig {
  Backend backend = Backend::kAuto;
  std::vector<int> devices;    // GPU indices; empty = GPU 0
  int threads = 0;             // CPU threads; 0 = one per physical core
  int max_batch_size = 8;      // sequences decoded together
  KvCacheBudget kv_cache_budget;
  KvCacheType kv_cache_type = KvCacheType::kF16;
  bool repack_weights = true;  // rearrange matrices for the CPU kernels at load (else zero-copy mmap)
  bool prefix_cache = true;    // reuse the KV of a prompt prefix an earlier request computed
  bool operator==(const RuntimeConfig&) const = default;
};

struct HealthConfig {
  uint64_t heartbeat_interval_ms = 10'000;
  bool operator==(const HealthConfig&) const = default;
};

struct Config {
  ServiceConfig service;
  ModelConfig model;
  VisionConfig vision;
  RuntimeConfig runtime;
  HealthConfig health;
  std::filesystem::path source;  // the file it was read from; empty for defaults
  bool operator==(const Config&) const = default;
};

// One thing wrong with the configuration. line and column are 1-based; 0 when there is no
// position (a command-line flag, a value set by code).
struct Problem {
  std::string file;  // config file, or the flag that set the value
  int line = 0;
  int column = 0;
  std::string message;  // starts with the field: "service.port: expected ..."
  std::string to_string() const;  // "service.yaml:3:9: service.port: expected ..."
};

// Every problem found, not just the first. Exit code kExitUsage.
class ConfigError : public Error {
 public:
  explicit ConfigError(std::vector<Problem> problems);
  const std::vector<Problem>& problems() const { return problems_; }

 private:
  std::vector<Problem> problems_;
};

Config default_config();

// Reads and checks a config file. Relative model.path values resolve against the file's folder.
// Throws ConfigError listing every problem, each with file:line:column.
Config load_config(const std::filesystem::path& path);

// Same as load_config on text already in memory; file_name is used in messages and its folder
// for relative model paths.
Config parse_config(const std::string& yaml_text, const std::string& file_name);

// Applies one command-line flag on top of a loaded config, parsing `value` exactly as the file
// would ("4GiB", "90%", "1000/min", "0,1" for lists). field is "section.key", e.g.
// apply_override(config, "service.port", "9000", "--port"). A model.path flag clears model.url and
// vice versa. Throws ConfigError naming the flag (config unchanged); throws std::invalid_argument
// for a field that does not exist (a bug in the caller).
void apply_override(Config& config, std::string_view field, std::string_view value,
                    std::string_view flag);

// Checks ranges and cross-field rules of a config whose fields code assigned directly (e.g. the
// CLI after applying flags). Throws ConfigError naming each bad field.
void validate(const Config& config);

// The API keys in effect: service.api_keys plus those in the service.api_keys_env variable.
// Throws ConfigError when that variable is missing or holds no key, since starting without
// authentication by accident would be worse than not starting.
std::vector<std::string> resolve_api_keys(const ServiceConfig& service);

}  // namespace autoglm::config
