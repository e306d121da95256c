// The service config: shipped examples, defaults, every kind of error with its position, flag
// overrides, and inputs that must never crash the loader.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "autoglm/config.h"
#include "test_support.h"

namespace autoglm::config {
namespace {

namespace fs = std::filesystem;

fs::path source_dir() { return autoglm::test::source_dir(); }

Config parse(const std::string& text) { return parse_config(text, "service.yaml"); }

// The messages parse_config reports for `text`, each as "file:line:column: message".
std::vector<std::string> errors(const std::string& text) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const Problem& p : e.problems()) out.push_back(p.to_string());
    return out;
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << text;
  return {};
}

std::string error(const std::string& text) {
  auto all = errors(text);
  EXPECT_EQ(all.size(), 1u) << ::testing::PrintToString(all);
  return all.empty() ? "" : all.front();
}

std::string override_error(Config& config, std::string_view field, std::string_view value,
                           std::string_view flag) {
  try {
    apply_override(config, field, value, flag);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected " << flag << " " << value << " to be rejected";
  return "";
}

std::string validate_error(const Config& config) {
  try {
    validate(config);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected validate() to reject the config";
  return "";
}

// ---- the shipped examples ------------------------------------------------------------------------

TEST(ShippedConfigs, DefaultYamlIsTheDemoModelWithEveryDefault) {
  const fs::path file = source_dir() / "configs/default.yaml";
  Config config = load_config(file);
  EXPECT_EQ(config.source, file);
  EXPECT_TRUE(config.model.is_demo());
  config.source.clear();
  // The file documents the defaults by spelling them out: it must agree with the code.
  EXPECT_EQ(config, default_config());
}

TEST(ShippedConfigs, AutoglmPhone9bTargetsOne24GbGpu) {
  const Config config = load_config(source_dir() / "configs/autoglm-phone-9b.yaml");
  EXPECT_EQ(config.model.path,
            (source_dir() / "configs/../models/AutoGLM-Phone-9B-Q4_K_M.gguf").lexically_normal());
  EXPECT_EQ(config.model.mmproj, (source_dir() / "models/mmproj-AutoGLM-Phone-9B-F16.gguf").lexically_normal());
  EXPECT_TRUE(config.model.url.empty());
  EXPECT_EQ(config.model.quantization, Quantization::kAuto);
  EXPECT_EQ(config.model.context_length, 32768);
  EXPECT_TRUE(config.model.chat_template.empty()) << "from the model: glm4v";
  EXPECT_EQ(config.runtime.backend, Backend::kCuda);
  EXPECT_EQ(config.runtime.devices, std::vector<int>{0});
  EXPECT_EQ(config.runtime.kv_cache_budget, (KvCacheBudget{0, 0.9}));
  EXPECT_EQ(config.service.host, "0.0.0.0");
  EXPECT_EQ(config.service.api_keys_env, "AUTOGLM_API_KEYS");
  EXPECT_EQ(config.service.max_request_body, 32u << 20);
  EXPECT_EQ(config.service.request_timeout_ms, 300'000u);
  EXPECT_EQ(config.service.rate_limit, (RateLimit{600, 60'000}));
}

TEST(ShippedConfigs, CpuOnlyUsesTheCpuAndAFixedKvBudget) {
  const Config config = load_config(source_dir() / "configs/cpu-only.yaml");
  EXPECT_EQ(config.runtime.backend, Backend::kCpu);
  EXPECT_EQ(config.runtime.kv_cache_budget.bytes, uint64_t{4} << 30);
  EXPECT_EQ(config.runtime.kv_cache_type, KvCacheType::kQ8_0);
  EXPECT_EQ(config.runtime.max_batch_size, 4);
  EXPECT_EQ(config.model.context_length, 8192);
  EXPECT_EQ(config.service.request_timeout_ms, 20u * 60'000);
  EXPECT_EQ(config.health.heartbeat_interval_ms, 30'000u);
}

// ---- defaults and accepted values ---------------------------------------------------------------

TEST(Defaults, MatchTheDocumentedTable) {
  const Config c = default_config();
  EXPECT_EQ(c.service.name, "autoglm");
  EXPECT_EQ(c.service.host, "127.0.0.1");
  EXPECT_EQ(c.service.port, 8080);
  EXPECT_TRUE(c.service.api_keys.empty());
  EXPECT_TRUE(c.service.api_keys_env.empty());
  EXPECT_TRUE(c.service.cors_origins.empty());
  EXPECT_EQ(c.service.max_request_body, 16u << 20);
  EXPECT_EQ(c.service.request_timeout_ms, 600'000u);
  EXPECT_EQ(c.service.max_queued_requests, 256);
  EXPECT_FALSE(c.service.rate_limit.has_value());
  EXPECT_TRUE(c.model.is_demo());
  EXPECT_TRUE(c.model.sha256.empty());
  EXPECT_EQ(c.model.quantization, Quantization::kAuto);
  EXPECT_EQ(c.model.context_length, 0);
  EXPECT_TRUE(c.model.chat_template.empty());
  EXPECT_EQ(c.runtime.backend, Backend::kAuto);
  EXPECT_TRUE(c.runtime.devices.empty());
  EXPECT_EQ(c.runtime.threads, 0);
  EXPECT_EQ(c.runtime.max_batch_size, 8);
  EXPECT_EQ(c.runtime.kv_cache_budget, (KvCacheBudget{0, 0.9}));
  EXPECT_EQ(c.runtime.kv_cache_type, KvCacheType::kF16);
  EXPECT_TRUE(c.runtime.repack_weights);
  EXPECT_EQ(c.health.heartbeat_interval_ms, 10'000u);
  EXPECT_NO_THROW(validate(c));
}

TEST(Defaults, KeysLeftOutKeepTheirDefaults) {
  const Config c = parse("service:\n  port: 9000\nmodel:\n");
  Config expected = default_config();
  expected.service.port = 9000;
  expected.source = "service.yaml";
  EXPECT_EQ(c, expected);
}

TEST(Values, EveryFieldIsRead) {
  const Config c = parse(R"(
service:
  name: phone
  host: "::"
  port: 1
  api_keys: [k1, k2]
  api_keys_env: MY_KEYS
  cors_origins: ["*", "https://app.example.com"]
  max_request_body: 512KiB
  request_timeout: 1.5s
  max_queued_requests: 0
  rate_limit: 20/s
  served_model_names: [autoglm-phone-9b, autoglm-phone-9b-multilingual]
  allow_remote_images: true
  allowed_local_media_path: /srv/screens
model:
  url: https://huggingface.co/x/y/resolve/main/m.gguf
  mmproj: /models/mmproj-F16.gguf
  sha256: ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789
  quantization: Q4_K
  context_length: 1048576
  chat_template: ./templates/glm4.jinja
runtime:
  backend: cuda
  devices: [1, 0]
  threads: 1024
  max_batch_size: 1
  kv_cache_budget: 512MiB
  kv_cache_type: q8_0
  repack_weights: false
  prefix_cache: false
vision:
  min_pixels: 3136
  max_pixels: 5000000
  max_images_per_request: 3
  target_encode_seconds: 2.5
  encoder_cache_size: 1GiB
  quantization: as_stored
health:
  heartbeat_interval: 250ms
)");
  EXPECT_EQ(c.service.name, "phone");
  EXPECT_EQ(c.service.host, "::");
  EXPECT_EQ(c.service.port, 1);
  EXPECT_EQ(c.service.api_keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(c.service.api_keys_env, "MY_KEYS");
  EXPECT_EQ(c.service.cors_origins, (std::vector<std::string>{"*", "https://app.example.com"}));
  EXPECT_EQ(c.service.max_request_body, 512u * 1024);
  EXPECT_EQ(c.service.request_timeout_ms, 1500u);
  EXPECT_EQ(c.service.max_queued_requests, 0);
  EXPECT_EQ(c.service.rate_limit, (RateLimit{20, 1000}));
  EXPECT_EQ(c.service.served_model_names, (std::vector<std::string>{"autoglm-phone-9b", "autoglm-phone-9b-multilingual"}));
  EXPECT_TRUE(c.service.allow_remote_images);
  EXPECT_EQ(c.service.allowed_local_media_path, fs::path("/srv/screens"));
  EXPECT_EQ(c.vision.min_pixels, 3136);
  EXPECT_EQ(c.vision.max_pixels, 5000000);
  EXPECT_EQ(c.vision.max_images_per_request, 3);
  EXPECT_EQ(c.vision.target_encode_ms, 2500u);
  EXPECT_EQ(c.vision.encoder_cache_size, uint64_t{1} << 30);
  EXPECT_FALSE(c.runtime.prefix_cache);
  EXPECT_EQ(c.vision.quantization, VisionQuantization::kAsStored);
  EXPECT_EQ(c.model.url, "https://huggingface.co/x/y/resolve/main/m.gguf");
  EXPECT_EQ(c.model.mmproj, fs::path("/models/mmproj-F16.gguf"));
  EXPECT_EQ(c.model.sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_EQ(c.model.quantization, Quantization::kQ4_K);
  EXPECT_EQ(c.model.context_length, 1048576);
  EXPECT_EQ(c.model.chat_template, "./templates/glm4.jinja");  // stored as given
  EXPECT_EQ(c.runtime.backend, Backend::kCuda);
  EXPECT_EQ(c.runtime.devices, (std::vector<int>{1, 0}));
  EXPECT_EQ(c.runtime.threads, 1024);
  EXPECT_EQ(c.runtime.max_batch_size, 1);
  EXPECT_EQ(c.runtime.kv_cache_budget.bytes, 512u << 20);
  EXPECT_EQ(c.runtime.kv_cache_type, KvCacheType::kQ8_0);
  EXPECT_FALSE(c.runtime.repack_weights);
  EXPECT_EQ(c.health.heartbeat_interval_ms, 250u);
  EXPECT_FALSE(c.model.is_demo());
}

TEST(Values, RateLimitUnits) {
  const std::vector<std::pair<std::string, RateLimit>> cases{
      {"10/s", {10, 1000}},       {"10/sec", {10, 1000}},        {"1000/min", {1000, 60'000}},
      {"5/m", {5, 60'000}},       {"2/h", {2, 3'600'000}},       {"2/hour", {2, 3'600'000}},
      {"7 / min", {7, 60'000}}};
  for (const auto& [text, expected] : cases) {
    EXPECT_EQ(parse("service:\n  rate_limit: " + text + "\n").service.rate_limit, expected) << text;
  }
  EXPECT_FALSE(parse("service:\n  rate_limit: off\n").service.rate_limit.has_value());
}

TEST(Values, Sha256PerFileForMultiFileModels) {
  const std::string a(64, 'a');
  const std::string b(64, 'B');
  const Config c = parse("model:\n  path: /models/glm\n  sha256:\n    model-00001.safetensors: " + a +
                         "\n    model-00002.safetensors: " + b + "\n");
  EXPECT_TRUE(c.model.sha256.empty());
  EXPECT_EQ(c.model.sha256_files,
            (std::map<std::string, std::string>{{"model-00001.safetensors", a},
                                                {"model-00002.safetensors", std::string(64, 'b')}}));
}

TEST(Values, TemplateNamesAndEnumsIgnoreCase) {
  const Config c = parse("model:\n  chat_template: llama3\nruntime:\n  backend: CUDA\n  kv_cache_type: Q8_0\n");
  EXPECT_EQ(c.model.chat_template, "llama3");
  EXPECT_EQ(c.runtime.backend, Backend::kCuda);
  EXPECT_EQ(c.runtime.kv_cache_type, KvCacheType::kQ8_0);
  EXPECT_EQ(to_string(Backend::kCuda), "cuda");
  EXPECT_EQ(to_string(Quantization::kQ4_K), "q4_k");
  EXPECT_EQ(to_string(KvCacheType::kQ8_0), "q8_0");
}

TEST(Values, RelativeModelPathResolvesAgainstTheConfigFolder) {
  test::TempDir dir;
  fs::create_directories(dir / "etc");
  test::write_file(dir / "etc/service.yaml", "model:\n  path: ../models/m.gguf\n");
  EXPECT_EQ(load_config(dir / "etc/service.yaml").model.path, dir.path() / "models/m.gguf");
  test::write_file(dir / "etc/abs.yaml", "model:\n  path: /srv/m.gguf\n");
  EXPECT_EQ(load_config(dir / "etc/abs.yaml").model.path, fs::path("/srv/m.gguf"));
}

// ---- errors: each with its file:line:column --------------------------------------------------------

TEST(Errors, UnknownKeySuggestsTheClosestOne) {
  EXPECT_EQ(error("service:\n  prot: 8080\n"),
            "service.yaml:2:3: service: unknown key 'prot'; did you mean 'port'?");
  EXPECT_EQ(error("servce:\n  port: 8080\n"),
            "service.yaml:1:1: unknown section 'servce'; did you mean 'service'?");
  EXPECT_EQ(error("runtime:\n  max-batch-size: 4\n"),
            "service.yaml:2:3: runtime: unknown key 'max-batch-size'; did you mean 'max_batch_size'?");
  EXPECT_EQ(error("model:\n  context: 4096\n"),
            "service.yaml:2:3: model: unknown key 'context'; did you mean 'context_length'?");
}

TEST(Errors, UnknownKeyWithoutCloseMatchListsTheValidKeysOrItsSection) {
  EXPECT_EQ(error("health:\n  zzz: 1\n"),
            "service.yaml:2:3: health: unknown key 'zzz'; valid keys: heartbeat_interval");
  EXPECT_EQ(error("port: 8080\n"),
            "service.yaml:1:1: unknown section 'port'; 'port' belongs under 'service:'");
  EXPECT_EQ(error("service:\n  backend: cuda\n"),
            "service.yaml:2:3: service: unknown key 'backend'; 'backend' belongs under 'runtime:'");
}

TEST(Errors, WrongType) {
  EXPECT_EQ(error("service:\n  port: \"abc\"\n"),
            "service.yaml:2:9: service.port: expected an integer 1..65535, got 'abc'");
  EXPECT_EQ(error("service:\n  port: 80.5\n"),
            "service.yaml:2:9: service.port: expected an integer 1..65535, got '80.5'");
  EXPECT_EQ(error("service:\n  port:\n    number: 80\n"),
            "service.yaml:3:5: service.port: expected an integer 1..65535, got a mapping");
  EXPECT_EQ(error("service:\n  host: [a, b]\n"),
            "service.yaml:2:9: service.host: expected a host name or IP address, got a list");
  EXPECT_EQ(error("service:\n  api_keys: secret\n"),
            "service.yaml:2:13: service.api_keys: expected a list of keys like [key1, key2], got 'secret'");
  EXPECT_EQ(error("runtime:\n  devices: [0, [1]]\n"),
            "service.yaml:2:16: runtime.devices: expected a GPU index 0..1023, got a list");
  EXPECT_EQ(error("runtime:\n  repack_weights: sometimes\n"),
            "service.yaml:2:19: runtime.repack_weights: expected one of true, false, got 'sometimes'");
}

TEST(Errors, EmptyValueIsReportedAtItsKey) {
  EXPECT_EQ(error("service:\n  port:\nmodel:\n  path: x\n"),
            "service.yaml:2:3: service.port: expected an integer 1..65535, got an empty value");
  EXPECT_EQ(error("model:\n  path: \"\"\n"),
            "service.yaml:2:9: model.path: must not be empty; remove the key to use the built-in demo model");
}

TEST(Errors, SectionMustBeAMapping) {
  EXPECT_EQ(error("service: 8080\n"),
            "service.yaml:1:10: service: expected a mapping of settings (indented 'key: value' lines), got '8080'");
}

TEST(Errors, OutOfRange) {
  EXPECT_EQ(error("service:\n  port: 70000\n"),
            "service.yaml:2:9: service.port: expected an integer 1..65535, got 70000");
  EXPECT_EQ(error("service:\n  port: 0\n"),
            "service.yaml:2:9: service.port: expected an integer 1..65535, got 0");
  EXPECT_EQ(error("model:\n  context_length: 1048577\n"),
            "service.yaml:2:19: model.context_length: expected an integer 0..1048576 (0 = the model's own), got 1048577");
  EXPECT_EQ(error("runtime:\n  threads: -1\n"),
            "service.yaml:2:12: runtime.threads: expected an integer 0..1024 (0 = one per physical core), got -1");
  EXPECT_EQ(error("runtime:\n  max_batch_size: 99999999999999999999999\n"),
            "service.yaml:2:19: runtime.max_batch_size: expected an integer 1..1024, got '99999999999999999999999'");
  EXPECT_EQ(error("runtime:\n  devices: [-1]\n"),
            "service.yaml:2:13: runtime.devices: expected an integer 0..1023, got -1");
}

TEST(Errors, BadSize) {
  EXPECT_EQ(error("service:\n  max_request_body: 12XB\n"),
            "service.yaml:2:21: service.max_request_body: expected a size 1KiB..1GiB like '1MiB', got '12XB'");
  EXPECT_EQ(error("service:\n  max_request_body: 2GiB\n"),
            "service.yaml:2:21: service.max_request_body: expected a size 1KiB..1GiB like '1MiB', got '2GiB'");
  EXPECT_EQ(error("runtime:\n  kv_cache_budget: lots\n"),
            "service.yaml:2:20: runtime.kv_cache_budget: expected a size like '4GiB' or a share of free "
            "memory like '90%' (above 0%, at most 100%), got 'lots'");
  EXPECT_EQ(error("runtime:\n  kv_cache_budget: 150%\n"),
            "service.yaml:2:20: runtime.kv_cache_budget: expected a size like '4GiB' or a share of free "
            "memory like '90%' (above 0%, at most 100%), got '150%'");
  EXPECT_EQ(error("runtime:\n  kv_cache_budget: 0\n"),
            "service.yaml:2:20: runtime.kv_cache_budget: expected a size like '4GiB' or a share of free "
            "memory like '90%' (above 0%, at most 100%), got '0'");
}

TEST(Errors, BadDuration) {
  EXPECT_EQ(error("service:\n  request_timeout: 30\n"),
            "service.yaml:2:20: service.request_timeout: expected a duration 1s..24h like '10m', got '30'");
  EXPECT_EQ(error("health:\n  heartbeat_interval: 5 parsecs\n"),
            "service.yaml:2:23: health.heartbeat_interval: expected a duration 100ms..1h like '10s', got '5 parsecs'");
  EXPECT_EQ(error("health:\n  heartbeat_interval: 10ms\n"),
            "service.yaml:2:23: health.heartbeat_interval: expected a duration 100ms..1h like '10s', got '10ms'");
}

TEST(Errors, BadRateLimit) {
  const std::string expected =
      ": service.rate_limit: expected '<count>/<unit>' like '1000/min' (unit s, sec, m, min, h or "
      "hour) or 'off', got ";
  EXPECT_EQ(error("service:\n  rate_limit: 1000/day\n"), "service.yaml:2:15" + expected + "'1000/day'");
  EXPECT_EQ(error("service:\n  rate_limit: 0/s\n"), "service.yaml:2:15" + expected + "'0/s'");
  EXPECT_EQ(error("service:\n  rate_limit: 1000\n"), "service.yaml:2:15" + expected + "'1000'");
  EXPECT_EQ(error("service:\n  rate_limit: x/min\n"), "service.yaml:2:15" + expected + "'x/min'");
}

TEST(Errors, BadSha256) {
  EXPECT_EQ(error("model:\n  sha256: abc123\n"),
            "service.yaml:2:11: model.sha256: expected 64 hex digits (as printed by sha256sum), got "
            "'abc123' (6 characters)");
  EXPECT_EQ(error("model:\n  sha256: " + std::string(63, 'a') + "g\n"),
            "service.yaml:2:11: model.sha256: expected 64 hex digits (as printed by sha256sum), got '" +
                std::string(60, 'a') + "...' (not a hex digit: 'g')");
  EXPECT_EQ(error("model:\n  sha256:\n    a.safetensors: " + std::string(64, 'a') +
                  "\n    b.safetensors: nope\n"),
            "service.yaml:4:20: model.sha256.b.safetensors: expected 64 hex digits (as printed by "
            "sha256sum), got 'nope' (4 characters)");
}

TEST(Errors, PathAndUrlTogether) {
  EXPECT_EQ(error("model:\n  path: m.gguf\n  url: https://example.com/m.gguf\n"),
            "service.yaml:3:3: model: set either path (a local model) or url (a download), not both");
}

TEST(Errors, BadUrlOriginsAndNames) {
  EXPECT_EQ(error("model:\n  url: ftp://example.com/m.gguf\n"),
            "service.yaml:2:8: model.url: expected an http:// or https:// URL, got 'ftp://example.com/m.gguf'");
  EXPECT_EQ(error("service:\n  cors_origins: [\"*\", example.com]\n"),
            "service.yaml:2:23: service.cors_origins: expected '*' or an origin like "
            "'https://app.example.com', got 'example.com'");
  EXPECT_EQ(error("service:\n  api_keys_env: 1KEYS\n"),
            "service.yaml:2:17: service.api_keys_env: expected an environment variable name like "
            "'AUTOGLM_API_KEYS', got '1KEYS'");
}

TEST(Errors, DuplicateDevices) {
  EXPECT_EQ(error("runtime:\n  devices: [0, 1, 0]\n"),
            "service.yaml:2:19: runtime.devices: GPU 0 is listed twice; list each GPU once");
}

TEST(Errors, DuplicateKey) {
  EXPECT_EQ(error("service:\n  port: 1\n  port: 2\n"),
            "service.yaml:3:3: service.port: set twice (first on line 2); keep one");
}

TEST(Errors, UnknownChoiceSuggests) {
  EXPECT_EQ(error("runtime:\n  backend: cdua\n"),
            "service.yaml:2:12: runtime.backend: expected one of auto, cpu, cuda, got 'cdua'; did you mean 'cuda'?");
  EXPECT_EQ(error("runtime:\n  backend: gpu\n"),
            "service.yaml:2:12: runtime.backend: expected one of auto, cpu, cuda, got 'gpu'");
  EXPECT_EQ(error("model:\n  quantization: q4_k_m\n"),
            "service.yaml:2:17: model.quantization: expected one of auto, f16, bf16, q8_0, q4_0, q4_k, "
            "got 'q4_k_m'; did you mean 'q4_k'?");
  EXPECT_EQ(error("model:\n  chat_template: glm\n"),
            "service.yaml:2:18: model.chat_template: expected glm4, glm4v, llama3, chatml, llama2 or a path to "
            "a Jinja file like './chat.jinja', got 'glm'; did you mean 'glm4'?");
}

TEST(Errors, YamlSyntaxErrorKeepsYamlCppsMessageAndPosition) {
  EXPECT_EQ(error("service:\n  port: [1, 2\nmodel:\n  path: x\n"),
            "service.yaml:3:6: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(error("service:\n  port: 1\n bad indent: 2\n"),
            "service.yaml:3:2: YAML syntax error: end of map not found");
}

TEST(Errors, EmptyFile) {
  const std::string expected =
      "service.yaml:1:1: the config file is empty; add at least one section (service:, model:, "
      "runtime:, health:) or start from configs/default.yaml";
  EXPECT_EQ(error(""), expected);
  EXPECT_EQ(error("# only a comment\n\n"), expected);
}

TEST(Errors, TopLevelMustBeAMapping) {
  EXPECT_EQ(error("- service\n- model\n"),
            "service.yaml:1:1: the top level must be a mapping of sections (service:, model:, runtime:, "
            "health:), got a list");
  EXPECT_EQ(error("\n  just text\n"),
            "service.yaml:2:3: the top level must be a mapping of sections (service:, model:, runtime:, "
            "health:), got 'just text'");
}

TEST(Errors, OneDocumentOnly) {
  EXPECT_EQ(error("service:\n  port: 1\n---\nservice:\n  port: 2\n"),
            "service.yaml:3:1: a second YAML document starts here; a config file holds one");
}

TEST(Errors, InputThatHangsYamlCppsLoadAllIsASyntaxError) {
  EXPECT_EQ(error(","), "service.yaml:1:1: YAML syntax error: unexpected ','");
  EXPECT_EQ(error("---\n  ,x\n"), "service.yaml:2:3: YAML syntax error: unexpected ','");
}

TEST(Errors, BinaryFile) {
  EXPECT_EQ(error(std::string("GGUF\x03\0\0\0", 8)),
            "service.yaml:1:6: this is a binary file, not YAML text; check the config path");
}

TEST(Errors, EveryProblemIsReportedInFileOrder) {
  EXPECT_EQ(errors(R"(servce:
  port: 1
service:
  port: abc
  max_request_body: 10 bananas
  rate_limit: 5/fortnight
model:
  path: a.gguf
  url: https://example.com/a.gguf
  sha256: xyz
runtime:
  devices: [0, 0]
  max_batch_size: 0
health:
  heartbeat_interval: often
)"),
            (std::vector<std::string>{
                "service.yaml:1:1: unknown section 'servce'; did you mean 'service'?",
                "service.yaml:4:9: service.port: expected an integer 1..65535, got 'abc'",
                "service.yaml:5:21: service.max_request_body: expected a size 1KiB..1GiB like '1MiB', got '10 bananas'",
                "service.yaml:6:15: service.rate_limit: expected '<count>/<unit>' like '1000/min' (unit s, sec, "
                "m, min, h or hour) or 'off', got '5/fortnight'",
                "service.yaml:9:3: model: set either path (a local model) or url (a download), not both",
                "service.yaml:10:11: model.sha256: expected 64 hex digits (as printed by sha256sum), got 'xyz' "
                "(3 characters)",
                "service.yaml:12:16: runtime.devices: GPU 0 is listed twice; list each GPU once",
                "service.yaml:13:19: runtime.max_batch_size: expected an integer 1..1024, got 0",
                "service.yaml:15:23: health.heartbeat_interval: expected a duration 100ms..1h like '10s', got 'often'",
            }));
}

TEST(Errors, ConfigErrorIsAUsageErrorListingAllProblems) {
  try {
    parse("service:\n  port: 0\n  host: \"\"\n");
    FAIL() << "expected a ConfigError";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitUsage);
    EXPECT_EQ(std::string(e.what()),
              "service.yaml:2:9: service.port: expected an integer 1..65535, got 0\n"
              "service.yaml:3:9: service.host: expected a host name or IP address like '127.0.0.1' or "
              "'0.0.0.0', got ''");
  }
}

TEST(Errors, MissingFileNamesThePath) {
  try {
    load_config("/nonexistent/autoglm/service.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "/nonexistent/autoglm/service.yaml: config file not found; check the path, or copy "
              "configs/default.yaml to start from");
  }
}

TEST(Errors, FolderAndOversizedFile) {
  test::TempDir dir;
  EXPECT_THROW(
      {
        try {
          load_config(dir.path());
        } catch (const ConfigError& e) {
          EXPECT_EQ(std::string(e.what()), dir.path().string() + ": is a folder; --config expects a YAML file");
          throw;
        }
      },
      ConfigError);
  test::write_file(dir / "big.yaml", "# " + std::string(2 << 20, 'x') + "\n");
  try {
    load_config(dir / "big.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "big.yaml").string() +
                                         ": is 2.0 MiB, far more than a config file holds (at most "
                                         "1.0 MiB); check the path");
  }
}

// ---- command-line overrides and validate() ---------------------------------------------------------

TEST(Overrides, ParseLikeTheFile) {
  Config c = default_config();
  apply_override(c, "service.port", "9000", "--port");
  apply_override(c, "runtime.devices", "0, 1", "--devices");
  apply_override(c, "runtime.kv_cache_budget", "50%", "--kv-cache-budget");
  apply_override(c, "service.rate_limit", "100/min", "--rate-limit");
  apply_override(c, "runtime.backend", "cpu", "--backend");
  apply_override(c, "health.heartbeat_interval", "2s", "--heartbeat");
  EXPECT_EQ(c.service.port, 9000);
  EXPECT_EQ(c.runtime.devices, (std::vector<int>{0, 1}));
  EXPECT_EQ(c.runtime.kv_cache_budget, (KvCacheBudget{0, 0.5}));
  EXPECT_EQ(c.service.rate_limit, (RateLimit{100, 60'000}));
  EXPECT_EQ(c.runtime.backend, Backend::kCpu);
  EXPECT_EQ(c.health.heartbeat_interval_ms, 2000u);
  apply_override(c, "service.rate_limit", "off", "--rate-limit");
  EXPECT_FALSE(c.service.rate_limit.has_value());
}

TEST(Overrides, BadValueNamesTheFlagAndLeavesTheConfigAlone) {
  Config c = default_config();
  EXPECT_EQ(override_error(c, "service.port", "70000", "--port"),
            "--port: service.port: expected an integer 1..65535, got 70000");
  EXPECT_EQ(override_error(c, "service.port", "abc", "--port"),
            "--port: service.port: expected an integer 1..65535, got 'abc'");
  EXPECT_EQ(override_error(c, "runtime.devices", "0,0", "--devices"),
            "--devices: runtime.devices: GPU 0 is listed twice; list each GPU once");
  EXPECT_EQ(override_error(c, "service.max_request_body", "big", "--max-request-body"),
            "--max-request-body: service.max_request_body: expected a size 1KiB..1GiB like '1MiB', got 'big'");
  EXPECT_EQ(c, default_config());
  EXPECT_THROW(apply_override(c, "service.prot", "1", "--prot"), std::invalid_argument);
  EXPECT_THROW(apply_override(c, "port", "1", "--port"), std::invalid_argument);
}

TEST(Overrides, MmprojAndImageLimit) {
  Config c = default_config();
  apply_override(c, "model.mmproj", "mmproj.gguf", "--mmproj");
  EXPECT_EQ(c.model.mmproj, fs::path("mmproj.gguf"));  // relative to the working folder, as typed
  EXPECT_EQ(override_error(c, "vision.max_images_per_request", "65", "--max-images"),
            "--max-images: vision.max_images_per_request: expected an integer 0..64 (0 = refuse images), got 65");
  EXPECT_EQ(default_config().vision.max_images_per_request, 10);  // vLLM's --limit-mm-per-prompt in Open-AutoGLM
  EXPECT_TRUE(default_config().runtime.prefix_cache);
  EXPECT_EQ(default_config().vision.quantization, VisionQuantization::kAuto);
  apply_override(c, "vision.quantization", "q8_0", "--vision-quantization");  // a key model: has too
  EXPECT_EQ(c.vision.quantization, VisionQuantization::kQ8_0);
  EXPECT_EQ(c.model.quantization, Quantization::kAuto);
  EXPECT_FALSE(default_config().service.allow_remote_images);
  EXPECT_TRUE(default_config().service.allowed_local_media_path.empty());
  EXPECT_EQ(error("vision:\n  min_pixels: 200000\n  max_pixels: 100000\n"),
            "service.yaml:2:3: vision.min_pixels: 200000 is above vision.max_pixels (100000)");
  Config bad = default_config();
  bad.vision.min_pixels = 200000;
  bad.vision.max_pixels = 100000;
  EXPECT_THROW(validate(bad), ConfigError);
  EXPECT_EQ(error("vision:\n  target_encode_seconds: soon\n"),
            "service.yaml:2:26: vision.target_encode_seconds: expected seconds like 30 (or a duration like '2m'), at most 24h, got 'soon'");
  EXPECT_EQ(error("model:\n  max_image_pixels: 100\n"),
            "service.yaml:2:3: model: unknown key 'max_image_pixels'; it is now vision.max_pixels");
}

TEST(Overrides, ServedModelNamesTakeAList) {
  Config c = default_config();
  apply_override(c, "service.served_model_names", "autoglm-phone-9b,autoglm-phone-9b-multilingual", "--served-model-name");
  EXPECT_EQ(c.service.served_model_names, (std::vector<std::string>{"autoglm-phone-9b", "autoglm-phone-9b-multilingual"}));
  EXPECT_EQ(error("service:\n  served_model_names: [a, b, a]\n"),
            "service.yaml:2:23: service.served_model_names: 'a' is listed twice; list each name once");
}

TEST(Overrides, ModelFlagReplacesTheFilesModel) {
  Config c = parse("model:\n  url: https://example.com/m.gguf\n");
  apply_override(c, "model.path", "local.gguf", "--model");
  EXPECT_EQ(c.model.path, fs::path("local.gguf"));  // relative to the working folder, as typed
  EXPECT_TRUE(c.model.url.empty());
  EXPECT_NO_THROW(validate(c));
}

TEST(Validate, ChecksFieldsSetByCode) {
  Config c = default_config();
  c.service.port = 0;
  c.runtime.threads = -1;
  c.runtime.devices = {1, 1};
  c.runtime.kv_cache_budget = {0, 1.5};
  c.model.path = "m.gguf";
  c.model.url = "https://example.com/m.gguf";
  c.service.request_timeout_ms = 0;
  EXPECT_EQ(validate_error(c),
            "service.port: expected an integer 1..65535, got 0\n"
            "service.request_timeout: expected a duration 1s..24h like '10m', got 0 ms\n"
            "runtime.devices: GPU 1 is listed twice; list each GPU once\n"
            "runtime.threads: expected an integer 0..1024 (0 = one per physical core), got -1\n"
            "runtime.kv_cache_budget: expected a size like '4GiB' or a share of free memory like '90%' "
            "(above 0%, at most 100%), got 150%\n"
            "model: set either path (a local model) or url (a download), not both");
}

// ---- API keys from the environment -------------------------------------------------------------

TEST(ApiKeys, EnvironmentKeysJoinTheFileKeys) {
  ServiceConfig s;
  s.api_keys = {"file-key"};
  EXPECT_EQ(resolve_api_keys(s), std::vector<std::string>{"file-key"});
  s.api_keys_env = "AUTOGLM_TEST_CONFIG_KEYS";
  ::setenv("AUTOGLM_TEST_CONFIG_KEYS", " k1, k2,,file-key ", 1);
  EXPECT_EQ(resolve_api_keys(s), (std::vector<std::string>{"file-key", "k1", "k2"}));
  ::unsetenv("AUTOGLM_TEST_CONFIG_KEYS");
}

TEST(ApiKeys, MissingOrEmptyVariableIsAnErrorNamingIt) {
  ServiceConfig s;
  s.api_keys_env = "AUTOGLM_TEST_CONFIG_UNSET";
  ::unsetenv("AUTOGLM_TEST_CONFIG_UNSET");
  try {
    resolve_api_keys(s);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "service.api_keys_env: environment variable AUTOGLM_TEST_CONFIG_UNSET is not set; export "
              "AUTOGLM_TEST_CONFIG_UNSET=key1,key2 or remove api_keys_env from the config");
  }
  ::setenv("AUTOGLM_TEST_CONFIG_UNSET", " , ", 1);
  EXPECT_THROW(resolve_api_keys(s), ConfigError);
  ::unsetenv("AUTOGLM_TEST_CONFIG_UNSET");
}

TEST(Problems, ToStringWithoutPosition) {
  EXPECT_EQ((Problem{"--port", 0, 0, "service.port: bad"}).to_string(), "--port: service.port: bad");
  EXPECT_EQ((Problem{"", 0, 0, "service.port: bad"}).to_string(), "service.port: bad");
  EXPECT_EQ((Problem{"a.yaml", 3, 9, "m"}).to_string(), "a.yaml:3:9: m");
}

// ---- inputs that must never crash ----------------------------------------------------------------

// True when parse_config either accepts `text` or rejects it with a ConfigError.
::testing::AssertionResult survives(const std::string& text) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    if (e.problems().empty() || std::string(e.what()).empty())
      return ::testing::AssertionFailure() << "ConfigError without a message";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw " << e.what() << " for input of " << text.size() << " bytes";
  }
  return ::testing::AssertionSuccess();
}

TEST(Garbage, RandomBytes) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000; ++i) {
    std::string text(rng() % 300, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    ASSERT_TRUE(survives(text));
  }
}

TEST(Garbage, RandomYamlTokens) {
  const std::vector<std::string> tokens{
      "service", "model", "runtime", "health", "port", "devices", "sha256", "path", "url",
      ":", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "'", "\"", "&a ", "*a", "!!str ",
      "? ", "|", ">", "#", "---", "...", "%YAML 1.2", "~", "null", "8080", "-1", "1e400",
      "99999999999999999999999999", "4GiB", "90%", "1000/min", "\t", "\\", "\xff\xfe", "<<: "};
  std::mt19937 rng(99);
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    const size_t n = rng() % 40;
    for (size_t j = 0; j < n; ++j) text += tokens[rng() % tokens.size()];
    ASSERT_TRUE(survives(text)) << text;
  }
}

TEST(Garbage, MutatedShippedConfigs) {
  std::mt19937 rng(7);
  for (const char* name : {"default.yaml", "autoglm-phone-9b.yaml", "cpu-only.yaml"}) {
    const std::string original = test::read_file(source_dir() / "configs" / name);
    ASSERT_FALSE(original.empty()) << name;
    for (int i = 0; i < 300; ++i) {
      std::string text = original;
      for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
        const size_t at = rng() % text.size();
        switch (rng() % 3) {
          case 0: text.erase(at, 1 + rng() % 8); break;
          case 1: text = text.substr(0, at) + static_cast<char>(rng() % 128) + text.substr(at); break;
          default: text[at] = static_cast<char>(rng() % 256); break;
        }
        if (text.empty()) text.push_back('x');
      }
      ASSERT_TRUE(survives(text)) << text;
    }
  }
}

TEST(Garbage, DeepNestingHugeValuesAndSelfReference) {
  EXPECT_TRUE(survives(std::string(100'000, '[')));
  EXPECT_TRUE(survives(std::string(100'000, '{')));
  std::string block;
  for (int i = 0; i < 3000; ++i) block += std::string(static_cast<size_t>(i), ' ') + "k:\n";
  EXPECT_TRUE(survives(block));
  std::string flow = "service: ";
  for (int i = 0; i < 1000; ++i) flow += "{a: ";
  EXPECT_TRUE(survives(flow));
  EXPECT_TRUE(survives("service: &a [*a]\nruntime:\n  devices: &b [*b]\n"));
  EXPECT_TRUE(survives("service:\n  " + std::string(100'000, 'k') + ": 1\n"));
  EXPECT_TRUE(survives("service:\n  name: " + std::string(500'000, 'n') + "\n"));
  EXPECT_TRUE(survives("model:\n  context_length: 1e400\n  quantization: " + std::string(1000, 'q') + "\n"));
  EXPECT_TRUE(survives("service:\n  max_request_body: 99999999999999999999999999TiB\n"
                       "  request_timeout: 99999999999999999999h\n  rate_limit: 99999999999999999999/s\n"));
  EXPECT_TRUE(survives("service:\n  port: !!binary AAAA\n  ? [complex, key]\n  : 1\n"));
  EXPECT_TRUE(survives("a: *undefined\n"));
}

}  // namespace
}  // namespace autoglm::config
