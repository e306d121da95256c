// The YAML service config: reading, checking, defaults. The schema is documented in docs/config.md;
// keep the two in step.
#include "autoglm/config.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "autoglm/units.h"

namespace autoglm::config {
namespace {

namespace fs = std::filesystem;
using Message = std::optional<std::string>;  // a problem's text, or nothing when the value is fine

// ---- the schema: sections and their keys -------------------------------------------------------

constexpr std::array<std::string_view, 14> kServiceKeys{
    "name", "served_model_names", "host", "port", "api_keys", "api_keys_env", "cors_origins", "max_request_body",
    "request_timeout", "max_queued_requests", "rate_limit", "drain_timeout", "allow_remote_images",
    "allowed_local_media_path"};
constexpr std::array<std::string_view, 7> kModelKeys{
    "path", "url", "sha256", "quantization", "context_length", "chat_template", "mmproj"};
constexpr std::array<std::string_view, 6> kVisionKeys{
    "min_pixels", "max_pixels", "max_images_per_request", "target_encode_seconds", "encoder_cache_size", "quantization"};
constexpr std::array<std::string_view, 8> kRuntimeKeys{
    "backend", "devices", "threads", "max_batch_size", "kv_cache_budget", "kv_cache_type", "repack_weights",
    "prefix_cache"};
constexpr std::array<std::string_view, 1> kHealthKeys{"heartbeat_interval"};

struct Section {
  std::string_view name;
  std::span<const std::string_view> keys;
};
constexpr std::array<Section, 5> kSections{{{"service", kServiceKeys},
                                            {"model", kModelKeys},
                                            {"vision", kVisionKeys},
                                            {"runtime", kRuntimeKeys},
                                            {"health", kHealthKeys}}};
constexpr std::array<std::string_view, 5> kSectionNames{"service", "model", "vision", "runtime", "health"};

// Fields given as lists; a command-line override "0,1" becomes a list.
constexpr std::array<std::string_view, 4> kListFields{"service.api_keys", "service.served_model_names",
                                                      "service.cors_origins", "runtime.devices"};

struct IntRange {
  int min;
  int max;
  std::string_view note;  // what the special value means, if any
};
constexpr IntRange kPort{1, 65535, ""};
constexpr IntRange kQueuedRequests{0, 1'000'000, " (0 = reject when busy)"};
constexpr IntRange kImagesPerRequest{0, 64, " (0 = refuse images)"};
constexpr IntRange kImagePixels{0, 1 << 28, " (0 = the processor's)"};
constexpr IntRange kContextLength{0, 1'048'576, " (0 = the model's own)"};
constexpr IntRange kThreads{0, 1024, " (0 = one per physical core)"};
constexpr IntRange kBatchSize{1, 1024, ""};
constexpr IntRange kDevice{0, 1023, ""};

struct Limits {
  uint64_t min;
  uint64_t max;
  std::string_view expected;  // shown after "expected "
};
constexpr Limits kRequestBody{1024, uint64_t{1} << 30, "a size 1KiB..1GiB like '1MiB'"};
constexpr Limits kRequestTimeout{1000, 86'400'000, "a duration 1s..24h like '10m'"};
constexpr Limits kDrainTimeout{0, 3'600'000, "a duration 0s..1h like '30s'"};
constexpr Limits kHeartbeat{100, 3'600'000, "a duration 100ms..1h like '10s'"};
constexpr Limits kTargetEncode{1, 86'400'000, "seconds like 30 (or a duration like '2m'), at most 24h"};
constexpr Limits kEncoderCache{0, uint64_t{1} << 40, "a size like '512MiB' (0 = no cache)"};

template <typename E>
struct Named {
  E value;
  std::string_view name;
};
constexpr std::array<Named<Quantization>, 6> kQuantizations{{{Quantization::kAuto, "auto"},
                                                             {Quantization::kF16, "f16"},
                                                             {Quantization::kBF16, "bf16"},
                                                             {Quantization::kQ8_0, "q8_0"},
                                                             {Quantization::kQ4_0, "q4_0"},
                                                             {Quantization::kQ4_K, "q4_k"}}};
constexpr std::array<Named<Backend>, 3> kBackends{
    {{Backend::kAuto, "auto"}, {Backend::kCpu, "cpu"}, {Backend::kCuda, "cuda"}}};
constexpr std::array<Named<KvCacheType>, 2> kKvCacheTypes{
    {{KvCacheType::kF16, "f16"}, {KvCacheType::kQ8_0, "q8_0"}}};
constexpr std::array<Named<VisionQuantization>, 4> kVisionQuantizations{{{VisionQuantization::kAuto, "auto"},
                                                                         {VisionQuantization::kAsStored, "as_stored"},
                                                                         {VisionQuantization::kBf16, "bf16"},
                                                                         {VisionQuantization::kQ8_0, "q8_0"}}};
constexpr std::array<Named<bool>, 2> kBooleans{{{true, "true"}, {false, "false"}}};
constexpr std::array<std::string_view, 5> kTemplateNames{"glm4", "glm4v", "llama3", "chatml", "llama2"};

constexpr std::string_view kRateLimitExpected =
    "'<count>/<unit>' like '1000/min' (unit s, sec, m, min, h or hour) or 'off'";
constexpr std::string_view kKvBudgetExpected =
    "a size like '4GiB' or a share of free memory like '90%' (above 0%, at most 100%)";
constexpr std::string_view kSha256Expected = "64 hex digits (as printed by sha256sum)";
constexpr std::string_view kTemplateExpected =
    "glm4, glm4v, llama3, chatml, llama2 or a path to a Jinja file like './chat.jinja'";

// A config file is a few kilobytes; anything bigger is almost surely the wrong file (a model?).
constexpr uintmax_t kMaxFileBytes = 1 << 20;

// ---- small text helpers --------------------------------------------------------------------------

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool has_space(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

// 'text' for a message: control bytes escaped and long values cut, so garbage input stays readable.
std::string quote_value(std::string_view s) {
  constexpr size_t kMaxShown = 60;
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += s[i];
  }
  if (s.size() > kMaxShown) out += "...";
  return out + "'";
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return node.Scalar().empty() ? "an empty string" : quote_value(node.Scalar());
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "an empty value";
  }
}

template <typename List>
std::string join(const List& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

template <typename List>
bool contains(const List& list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// Edit distance counting a swap of neighbours as one edit, so "prot" is one step from "port".
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The candidate a typo most likely meant, if any is close enough to be worth suggesting.
std::optional<std::string_view> closest(std::string_view word,
                                        std::span<const std::string_view> candidates) {
  std::string w = lower(word);
  std::replace(w.begin(), w.end(), '-', '_');  // max-batch-size is a habit from command lines
  if (w.size() > 64) return std::nullopt;      // garbage; also keeps the distance table small
  const size_t allowed = w.size() <= 4 ? 1 : 2;
  std::optional<std::string_view> best;
  size_t best_distance = allowed + 1;
  for (std::string_view c : candidates) {
    if (w.size() <= 3 && !w.empty() && c.front() != w.front()) continue;  // "gpu" is not a typo of "cpu"
    size_t dist = edit_distance(w, c);
    if (w.size() >= 4 && c.starts_with(w)) dist = std::min(dist, allowed);  // "context" -> "context_length"
    if (dist < best_distance) {
      best = c;
      best_distance = dist;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
  auto best = closest(word, candidates);
  return best ? fmt::format("; did you mean '{}'?", *best) : std::string();
}

// ---- value parsers and checks, shared by the file reader, apply_override and validate ------------

std::optional<int64_t> parse_integer(std::string_view text) {
  text = trim(text);
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string int_expected(const IntRange& range) {
  return fmt::format("an integer {}..{}{}", range.min, range.max, range.note);
}

std::optional<RateLimit> parse_rate_limit(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto count = parse_integer(text.substr(0, slash));
  const std::string unit = lower(trim(text.substr(slash + 1)));
  if (!count || *count < 1 || *count > 1'000'000'000) return std::nullopt;
  uint64_t per_ms = 0;
  if (unit == "s" || unit == "sec") per_ms = 1000;
  else if (unit == "m" || unit == "min") per_ms = 60'000;
  else if (unit == "h" || unit == "hour") per_ms = 3'600'000;
  else return std::nullopt;
  return RateLimit{static_cast<uint32_t>(*count), per_ms};
}

std::optional<KvCacheBudget> parse_kv_budget(std::string_view text) {
  if (trim(text).ends_with('%')) {
    auto fraction = parse_percent(text);
    if (!fraction) return std::nullopt;
    return KvCacheBudget{0, *fraction};
  }
  auto bytes = parse_size(text);
  if (!bytes || *bytes == 0) return std::nullopt;
  return KvCacheBudget{*bytes, 0.0};
}

bool is_sha256(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c));
         });
}

Message check_sha256(std::string_view s) {
  if (is_sha256(s)) return std::nullopt;
  std::string detail;
  auto bad = std::find_if(s.begin(), s.end(), [](char c) { return !std::isxdigit(static_cast<unsigned char>(c)); });
  if (s.size() != 64) detail = fmt::format(" ({} characters)", s.size());
  else if (bad != s.end()) detail = fmt::format(" (not a hex digit: {})", quote_value(std::string_view(&*bad, 1)));
  return fmt::format("expected {}, got {}{}", kSha256Expected, quote_value(s), detail);
}

Message check_nonempty(std::string_view s, std::string_view remove_hint) {
  if (!s.empty()) return std::nullopt;
  return fmt::format("must not be empty; {}", remove_hint);
}

// The first name of `names` that is listed again, as a problem.
Message check_each_once(const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i)
    if (std::find(names.begin() + static_cast<std::ptrdiff_t>(i) + 1, names.end(), names[i]) != names.end())
      return fmt::format("'{}' is listed twice; list each name once", names[i]);
  return std::nullopt;
}

Message check_name(std::string_view s) {
  if (s.empty() || s.size() > 128 || std::any_of(s.begin(), s.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
      }))
    return fmt::format("expected a name of 1..128 printable characters, got {}", quote_value(s));
  return std::nullopt;
}

Message check_host(std::string_view s) {
  if (s.empty() || has_space(s))
    return fmt::format("expected a host name or IP address like '127.0.0.1' or '0.0.0.0', got {}",
                       quote_value(s));
  return std::nullopt;
}

Message check_api_key(std::string_view s) {
  if (s.empty() || has_space(s))
    return fmt::format("expected a key without spaces, got {}", quote_value(s));
  return std::nullopt;
}

Message check_env_name(std::string_view s) {
  const bool ok = !s.empty() && !std::isdigit(static_cast<unsigned char>(s.front())) &&
                  std::all_of(s.begin(), s.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                  });
  if (ok) return std::nullopt;
  return fmt::format("expected an environment variable name like 'AUTOGLM_API_KEYS', got {}", quote_value(s));
}

bool is_http_url(std::string_view s) {
  const std::string l = lower(s.substr(0, 8));
  const size_t scheme = l.starts_with("https://") ? 8 : l.starts_with("http://") ? 7 : 0;
  return scheme != 0 && s.size() > scheme && s[scheme] != '/' && !has_space(s);
}

Message check_origin(std::string_view s) {
  if (s == "*" || is_http_url(s)) return std::nullopt;
  return fmt::format("expected '*' or an origin like 'https://app.example.com', got {}", quote_value(s));
}

Message check_url(std::string_view s) {
  if (is_http_url(s)) return std::nullopt;
  return fmt::format("expected an http:// or https:// URL, got {}", quote_value(s));
}

// A bare word must be a template name; anything that looks like a file is a Jinja path.
Message check_chat_template(std::string_view s) {
  if (s.empty()) return "must not be empty; remove the key to use the model's own template";
  const bool looks_like_path = s.find_first_of("/\\.") != std::string_view::npos;
  if (looks_like_path || contains(kTemplateNames, s)) return std::nullopt;
  return fmt::format("expected {}, got {}{}", kTemplateExpected, quote_value(s), did_you_mean(s, kTemplateNames));
}

Message check_int(int64_t value, const IntRange& range) {
  if (value >= range.min && value <= range.max) return std::nullopt;
  return fmt::format("expected {}, got {}", int_expected(range), value);
}

template <typename E, size_t N>
std::optional<E> find_named(const std::array<Named<E>, N>& names, std::string_view text) {
  const std::string l = lower(trim(text));
  for (const auto& n : names)
    if (n.name == l) return n.value;
  return std::nullopt;
}

template <typename E, size_t N>
std::vector<std::string_view> names_of(const std::array<Named<E>, N>& names) {
  std::vector<std::string_view> list;
  for (const auto& n : names) list.push_back(n.name);
  return list;
}

template <typename E, size_t N>
std::string_view name_of(const std::array<Named<E>, N>& names, E value) {
  for (const auto& n : names)
    if (n.value == value) return n.name;
  return "unknown";
}

// ---- reading YAML nodes into the Config ---------------------------------------------------------

// One key of a section with its value, and the dotted path used in messages.
struct Entry {
  std::string path;  // "service.port"
  YAML::Node key;
  YAML::Node value;
  std::string_view key_name() const { return std::string_view(path).substr(path.find('.') + 1); }
  // An empty value has no mark of its own worth showing (yaml-cpp points at the next token).
  YAML::Mark where() const { return value.IsNull() ? key.Mark() : value.Mark(); }
};

// Collects problems. In a file, each gets the file:line:column of the YAML node it is about;
// for a command-line flag, the flag's name instead of a position.
class Reader {
 public:
  Reader(std::string file, fs::path base_dir, bool positions)
      : file_(std::move(file)), base_dir_(std::move(base_dir)), positions_(positions) {}

  const fs::path& base_dir() const { return base_dir_; }
  std::vector<Problem>& problems() { return problems_; }

  void report(const YAML::Mark& mark, std::string message) {
    Problem p{file_, 0, 0, std::move(message)};
    if (positions_ && !mark.is_null()) {
      p.line = mark.line + 1;
      p.column = mark.column + 1;
    }
    problems_.push_back(std::move(p));
  }

  void report(const YAML::Mark& mark, std::string_view path, const Message& message) {
    if (message) report(mark, fmt::format("{}: {}", path, *message));
  }

  void mismatch(const Entry& e, const YAML::Node& node, std::string_view expected) {
    report(node.IsNull() ? e.where() : node.Mark(),
           fmt::format("{}: expected {}, got {}", e.path, expected, describe(node)));
  }

  std::optional<std::string> scalar(const Entry& e, std::string_view expected) {
    if (e.value.IsScalar()) return e.value.Scalar();
    mismatch(e, e.value, expected);
    return std::nullopt;
  }

  // A string that `check` accepts; `expected` describes the type for a non-string value.
  template <typename Check>
  std::optional<std::string> text(const Entry& e, std::string_view expected, Check check) {
    auto s = scalar(e, expected);
    if (!s) return std::nullopt;
    const Message problem = check(*s);
    report(e.where(), e.path, problem);
    return problem ? std::nullopt : s;
  }

  std::optional<int> integer(const Entry& e, const IntRange& range) {
    auto s = scalar(e, int_expected(range));
    if (!s) return std::nullopt;
    auto value = parse_integer(*s);
    if (!value) {
      mismatch(e, e.value, int_expected(range));
      return std::nullopt;
    }
    const Message problem = check_int(*value, range);
    report(e.where(), e.path, problem);
    if (problem) return std::nullopt;
    return static_cast<int>(*value);
  }

  // A size or a duration, parsed by `parse` and kept within `limits`.
  template <typename Parse>
  std::optional<uint64_t> measure(const Entry& e, const Limits& limits, Parse parse) {
    auto s = scalar(e, limits.expected);
    if (!s) return std::nullopt;
    auto value = parse(*s);
    if (!value || *value < limits.min || *value > limits.max) {
      mismatch(e, e.value, limits.expected);
      return std::nullopt;
    }
    return value;
  }

  template <typename E, size_t N>
  std::optional<E> choice(const Entry& e, const std::array<Named<E>, N>& names) {
    const std::string expected = "one of " + join(names_of(names), ", ");
    auto s = scalar(e, expected);
    if (!s) return std::nullopt;
    if (auto value = find_named(names, *s)) return value;
    report(e.where(), fmt::format("{}: expected {}, got {}{}", e.path, expected, quote_value(*s),
                                  did_you_mean(*s, names_of(names))));
    return std::nullopt;
  }

  // A list of strings, each accepted by `check`.
  template <typename Check>
  std::optional<std::vector<std::string>> text_list(const Entry& e, std::string_view expected, Check check) {
    if (!e.value.IsSequence()) {
      mismatch(e, e.value, expected);
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (const YAML::Node& item : e.value) {
      if (!item.IsScalar()) {
        mismatch(e, item, "a string");
        ok = false;
        continue;
      }
      const Message problem = check(item.Scalar());
      report(item.Mark(), e.path, problem);
      ok = ok && !problem;
      out.push_back(item.Scalar());
    }
    if (!ok) return std::nullopt;
    return out;
  }

 private:
  std::string file_;
  fs::path base_dir_;
  bool positions_;
  std::vector<Problem> problems_;
};

template <typename T>
void set(T& field, std::optional<T> value) {
  if (value) field = std::move(*value);
}

std::optional<std::vector<int>> read_devices(Reader& r, const Entry& e) {
  constexpr std::string_view kExpected = "a list of GPU indices like [0, 1]";
  if (!e.value.IsSequence()) {
    r.mismatch(e, e.value, kExpected);
    return std::nullopt;
  }
  std::vector<int> out;
  bool ok = true;
  for (const YAML::Node& item : e.value) {
    auto index = item.IsScalar() ? parse_integer(item.Scalar()) : std::nullopt;
    if (!index) {
      r.mismatch(e, item, fmt::format("a GPU index {}..{}", kDevice.min, kDevice.max));
      ok = false;
    } else if (Message problem = check_int(*index, kDevice)) {
      r.report(item.Mark(), e.path, problem);
      ok = false;
    } else if (std::find(out.begin(), out.end(), *index) != out.end()) {
      r.report(item.Mark(), fmt::format("{}: GPU {} is listed twice; list each GPU once", e.path, *index));
      ok = false;
    } else {
      out.push_back(static_cast<int>(*index));
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

// sha256 is one hash (single-file model) or a mapping file name -> hash (multi-file model).
void read_sha256(Reader& r, const Entry& e, ModelConfig& model) {
  if (e.value.IsScalar()) {
    if (auto hex = r.text(e, kSha256Expected, check_sha256)) {
      model.sha256 = lower(*hex);
      model.sha256_files.clear();
    }
    return;
  }
  if (!e.value.IsMap()) {
    r.mismatch(e, e.value, std::string(kSha256Expected) + " or a mapping of file name to hash");
    return;
  }
  std::map<std::string, std::string> files;
  bool ok = true;
  for (const auto& kv : e.value) {
    const Entry item{fmt::format("{}.{}", e.path, kv.first.Scalar()), kv.first, kv.second};
    if (!kv.first.IsScalar() || kv.first.Scalar().empty()) {
      r.report(kv.first.Mark(), fmt::format("{}: expected a file name, got {}", e.path, describe(kv.first)));
      ok = false;
    } else if (files.count(kv.first.Scalar())) {
      r.report(kv.first.Mark(), fmt::format("{}: file {} is listed twice", e.path, quote_value(kv.first.Scalar())));
      ok = false;
    } else if (auto hex = r.text(item, kSha256Expected, check_sha256)) {
      files[kv.first.Scalar()] = lower(*hex);
    } else {
      ok = false;
    }
  }
  if (ok) {
    model.sha256_files = std::move(files);
    model.sha256.clear();
  }
}

void read_service(Reader& r, const Entry& e, ServiceConfig& s) {
  const std::string_view key = e.key_name();
  if (key == "name") {
    set(s.name, r.text(e, "a name", check_name));
  } else if (key == "host") {
    set(s.host, r.text(e, "a host name or IP address", check_host));
  } else if (key == "port") {
    set(s.port, r.integer(e, kPort));
  } else if (key == "api_keys") {
    set(s.api_keys, r.text_list(e, "a list of keys like [key1, key2]", check_api_key));
  } else if (key == "api_keys_env") {
    set(s.api_keys_env, r.text(e, "an environment variable name", check_env_name));
  } else if (key == "cors_origins") {
    set(s.cors_origins, r.text_list(e, "a list of origins like ['https://app.example.com']", check_origin));
  } else if (key == "max_request_body") {
    set(s.max_request_body, r.measure(e, kRequestBody, parse_size));
  } else if (key == "request_timeout") {
    set(s.request_timeout_ms, r.measure(e, kRequestTimeout, parse_duration_ms));
  } else if (key == "max_queued_requests") {
    set(s.max_queued_requests, r.integer(e, kQueuedRequests));
  } else if (key == "served_model_names") {
    auto names = r.text_list(e, "a list of model names like [autoglm-phone-9b]", check_name);
    if (!names) return;
    if (Message twice = check_each_once(*names)) return r.report(e.where(), e.path, twice);
    s.served_model_names = std::move(*names);
  } else if (key == "allow_remote_images") {
    set(s.allow_remote_images, r.choice(e, kBooleans));
  } else if (key == "allowed_local_media_path") {
    auto text = r.text(e, "a folder path", [](std::string_view v) {
      return check_nonempty(v, "remove the key to refuse file:// images");
    });
    if (text) s.allowed_local_media_path = fs::path(*text).is_relative() && !r.base_dir().empty()
                                               ? (r.base_dir() / *text).lexically_normal()
                                               : fs::path(*text);
  } else if (key == "drain_timeout") {
    set(s.drain_timeout_ms, r.measure(e, kDrainTimeout, parse_duration_ms));
  } else if (key == "rate_limit") {
    auto text = r.scalar(e, kRateLimitExpected);
    if (!text) return;
    if (lower(trim(*text)) == "off") {
      s.rate_limit.reset();
    } else if (auto limit = parse_rate_limit(*text)) {
      s.rate_limit = limit;
    } else {
      r.mismatch(e, e.value, kRateLimitExpected);
    }
  }
}

void read_model(Reader& r, const Entry& e, ModelConfig& m) {
  const std::string_view key = e.key_name();
  // Relative to the config file, so a config and its model can move together.
  auto resolve = [&](const std::string& text) {
    return fs::path(text).is_relative() && !r.base_dir().empty() ? (r.base_dir() / text).lexically_normal() : fs::path(text);
  };
  if (key == "path") {
    auto text = r.text(e, "a file or folder path", [](std::string_view s) {
      return check_nonempty(s, "remove the key to use the built-in demo model");
    });
    if (text) m.path = resolve(*text);
  } else if (key == "mmproj") {
    auto text = r.text(e, "the path of an mmproj GGUF", [](std::string_view s) {
      return check_nonempty(s, "remove the key when the model has no separate vision projector");
    });
    if (text) m.mmproj = resolve(*text);
  } else if (key == "url") {
    set(m.url, r.text(e, "an http:// or https:// URL", check_url));
  } else if (key == "sha256") {
    read_sha256(r, e, m);
  } else if (key == "quantization") {
    set(m.quantization, r.choice(e, kQuantizations));
  } else if (key == "context_length") {
    set(m.context_length, r.integer(e, kContextLength));
  } else if (key == "chat_template") {
    set(m.chat_template, r.text(e, kTemplateExpected, check_chat_template));
  }
}

// Seconds as a plain number ("30", "2.5") or a duration with a unit ("2m").
std::optional<uint64_t> parse_seconds_ms(std::string_view text) {
  const std::string_view t = trim(text);
  double seconds = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), seconds);
  if (ec == std::errc() && end == t.data() + t.size()) {
    if (!(seconds >= 0 && seconds <= 86'400)) return std::nullopt;
    return static_cast<uint64_t>(seconds * 1000 + 0.5);
  }
  return parse_duration_ms(t);
}

void read_vision(Reader& r, const Entry& e, VisionConfig& v) {
  const std::string_view key = e.key_name();
  if (key == "min_pixels") {
    set(v.min_pixels, r.integer(e, kImagePixels));
  } else if (key == "max_pixels") {
    set(v.max_pixels, r.integer(e, kImagePixels));
  } else if (key == "max_images_per_request") {
    set(v.max_images_per_request, r.integer(e, kImagesPerRequest));
  } else if (key == "target_encode_seconds") {
    set(v.target_encode_ms, r.measure(e, kTargetEncode, parse_seconds_ms));
  } else if (key == "encoder_cache_size") {
    set(v.encoder_cache_size, r.measure(e, kEncoderCache, parse_size));
  } else if (key == "quantization") {
    set(v.quantization, r.choice(e, kVisionQuantizations));
  }
}

void read_runtime(Reader& r, const Entry& e, RuntimeConfig& rt) {
  const std::string_view key = e.key_name();
  if (key == "backend") {
    set(rt.backend, r.choice(e, kBackends));
  } else if (key == "devices") {
    set(rt.devices, read_devices(r, e));
  } else if (key == "threads") {
    set(rt.threads, r.integer(e, kThreads));
  } else if (key == "max_batch_size") {
    set(rt.max_batch_size, r.integer(e, kBatchSize));
  } else if (key == "kv_cache_budget") {
    auto text = r.scalar(e, kKvBudgetExpected);
    auto budget = text ? parse_kv_budget(*text) : std::nullopt;
    if (text && !budget) r.mismatch(e, e.value, kKvBudgetExpected);
    set(rt.kv_cache_budget, budget);
  } else if (key == "kv_cache_type") {
    set(rt.kv_cache_type, r.choice(e, kKvCacheTypes));
  } else if (key == "repack_weights") {
    set(rt.repack_weights, r.choice(e, kBooleans));
  } else if (key == "prefix_cache") {
    set(rt.prefix_cache, r.choice(e, kBooleans));
  }
}

void read_field(Reader& r, const Entry& e, Config& c) {
  if (e.path.starts_with("service.")) read_service(r, e, c.service);
  else if (e.path.starts_with("model.")) read_model(r, e, c.model);
  else if (e.path.starts_with("vision.")) read_vision(r, e, c.vision);
  else if (e.path.starts_with("runtime.")) read_runtime(r, e, c.runtime);
  else if (e.path == "health.heartbeat_interval")
    set(c.health.heartbeat_interval_ms, r.measure(e, kHeartbeat, parse_duration_ms));
}

// The section a misplaced top-level key belongs to ("port" -> "service"), if any.
std::optional<std::string_view> section_of(std::string_view key) {
  for (const Section& s : kSections)
    if (contains(s.keys, key)) return s.name;
  return std::nullopt;
}

// Keys that moved: the old place and the new one.
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kMovedKeys{{
    {"model.min_image_pixels", "vision.min_pixels"},
    {"model.max_image_pixels", "vision.max_pixels"},
    {"service.max_images_per_request", "vision.max_images_per_request"}}};

std::string unknown_key_message(std::string_view section, std::string_view key,
                                std::span<const std::string_view> known) {
  const std::string what = section.empty() ? fmt::format("unknown section {}", quote_value(key))
                                           : fmt::format("{}: unknown key {}", section, quote_value(key));
  const std::string full = fmt::format("{}.{}", section, key);
  for (const auto& [old_key, new_key] : kMovedKeys)
    if (full == old_key) return fmt::format("{}; it is now {}", what, new_key);
  if (std::string suggestion = did_you_mean(key, known); !suggestion.empty()) return what + suggestion;
  if (auto home = section_of(key)) return fmt::format("{}; '{}' belongs under '{}:'", what, key, *home);
  return fmt::format("{}; valid {}: {}", what, section.empty() ? "sections" : "keys", join(known, ", "));
}

// Calls visit(key name, key node, value node) for each known key of `map`, reporting unknown,
// repeated and malformed keys. `section` is "" for the top level.
template <typename Visit>
void for_each_key(Reader& r, const YAML::Node& map, std::string_view section,
                  std::span<const std::string_view> known, Visit visit) {
  std::map<std::string, int> first_line;
  const std::string_view where = section.empty() ? "top level" : section;
  for (const auto& kv : map) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      r.report(key.Mark(), fmt::format("{}: expected a key name, got {}", where, describe(key)));
      continue;
    }
    const std::string& name = key.Scalar();
    if (!contains(known, name)) {
      r.report(key.Mark(), unknown_key_message(section, name, known));
      continue;
    }
    const auto [seen, first] = first_line.emplace(name, key.Mark().line + 1);
    if (!first) {
      r.report(key.Mark(), fmt::format("{}{}{}: set twice (first on line {}); keep one", section,
                                       section.empty() ? "" : ".", name, seen->second));
      continue;
    }
    visit(name, key, kv.second);
  }
}

// Rules that involve more than one field; `mark_of` gives where a field was set, if known.
template <typename MarkOf>
void check_cross_fields(Reader& r, const Config& c, MarkOf mark_of) {
  if (!c.model.path.empty() && !c.model.url.empty())
    r.report(mark_of("model.url"),
             "model: set either path (a local model) or url (a download), not both");
  const VisionConfig& v = c.vision;
  if (v.min_pixels && v.max_pixels && v.min_pixels > v.max_pixels)
    r.report(mark_of("vision.min_pixels"),
             fmt::format("vision.min_pixels: {} is above vision.max_pixels ({})", v.min_pixels, v.max_pixels));
}

void read_document(Reader& r, const YAML::Node& root, Config& config) {
  std::map<std::string, YAML::Mark> key_marks;
  for_each_key(r, root, "", kSectionNames, [&](const std::string& name, const YAML::Node&,
                                               const YAML::Node& body) {
    if (body.IsNull()) return;  // "model:" with every line commented out: all defaults
    if (!body.IsMap()) {
      r.report(body.Mark(), fmt::format("{}: expected a mapping of settings (indented 'key: value' "
                                        "lines), got {}", name, describe(body)));
      return;
    }
    const Section& section = *std::find_if(kSections.begin(), kSections.end(),
                                           [&](const Section& s) { return s.name == name; });
    for_each_key(r, body, name, section.keys, [&](const std::string& field, const YAML::Node& k,
                                                  const YAML::Node& v) {
      const Entry entry{fmt::format("{}.{}", name, field), k, v};
      key_marks[entry.path] = k.Mark();
      read_field(r, entry, config);
    });
  });
  check_cross_fields(r, config, [&](const std::string& field) {
    auto it = key_marks.find(field);
    return it == key_marks.end() ? YAML::Mark::null_mark() : it->second;
  });
}

// Line and column (1-based) of byte `offset` in `text`.
std::pair<int, int> position_of(const std::string& text, size_t offset) {
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

[[noreturn]] void fail(std::vector<Problem> problems) {
  std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  throw ConfigError(std::move(problems));
}

[[noreturn]] void fail(std::string file, int line, int column, std::string message) {
  fail({Problem{std::move(file), line, column, std::move(message)}});
}

// Records where each document starts. yaml-cpp 0.7's LoadAll loops forever, allocating, on input
// like "," (jbeder/yaml-cpp#1040), so documents are walked one at a time and a stalled parser stops.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

[[noreturn]] void fail_at(const std::string& file_name, const YAML::Mark& mark, std::string message) {
  fail(file_name, mark.is_null() ? 0 : mark.line + 1, mark.is_null() ? 0 : mark.column + 1,
       std::move(message));
}

// The one document in `text`, or a null node for a file with none.
YAML::Node load_document(const std::string& text, const std::string& file_name) {
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    auto [line, column] = position_of(text, nul);
    fail(file_name, line, column, "this is a binary file, not YAML text; check the config path");
  }
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts docs;
    std::vector<YAML::Mark>& starts = docs.marks;
    while (starts.size() < 3 && parser.HandleNextDocument(docs)) {
      if (starts.size() >= 2 && starts.back().pos == starts[starts.size() - 2].pos) {
        const size_t at = static_cast<size_t>(std::max(starts.back().pos, 0));
        fail_at(file_name, starts.back(),
                fmt::format("YAML syntax error: unexpected {}", quote_value(text.substr(at, 1))));
      }
    }
    if (starts.size() >= 2)
      fail_at(file_name, starts[1], "a second YAML document starts here; a config file holds one");
    if (starts.empty()) return YAML::Node();
    return YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    fail_at(file_name, e.mark,
            "YAML nesting is too deep for yaml-cpp; a config file needs two levels (section: key: value)");
  } catch (const YAML::Exception& e) {
    fail_at(file_name, e.mark, fmt::format("YAML syntax error: {}", e.msg));
  }
}

}  // namespace

// ---- public API -----------------------------------------------------------------------------------

std::string_view to_string(Quantization q) { return name_of(kQuantizations, q); }
std::string_view to_string(Backend b) { return name_of(kBackends, b); }
std::string_view to_string(KvCacheType t) { return name_of(kKvCacheTypes, t); }
std::string_view to_string(VisionQuantization q) { return name_of(kVisionQuantizations, q); }

std::string Problem::to_string() const {
  if (line > 0) return fmt::format("{}:{}:{}: {}", file, line, column, message);
  if (!file.empty()) return fmt::format("{}: {}", file, message);
  return message;
}

ConfigError::ConfigError(std::vector<Problem> problems)
    : Error(kExitUsage, [&] {
        std::vector<std::string> lines;
        for (const Problem& p : problems) lines.push_back(p.to_string());
        return join(lines, "\n");
      }()),
      problems_(std::move(problems)) {}

Config default_config() { return Config{}; }

Config parse_config(const std::string& yaml_text, const std::string& file_name) {
  const YAML::Node root = load_document(yaml_text, file_name);
  if (root.IsNull())
    fail(file_name, 1, 1,
         "the config file is empty; add at least one section (service:, model:, runtime:, health:) "
         "or start from configs/default.yaml");
  if (!root.IsMap())
    fail_at(file_name, root.Mark(),
         fmt::format("the top level must be a mapping of sections (service:, model:, runtime:, "
                     "health:), got {}", describe(root)));

  Config config;
  config.source = file_name;
  Reader reader(file_name, fs::path(file_name).parent_path(), true);
  read_document(reader, root, config);
  if (!reader.problems().empty()) fail(std::move(reader.problems()));
  return config;
}

Config load_config(const fs::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status))
    fail(name, 0, 0, "config file not found; check the path, or copy configs/default.yaml to start from");
  if (fs::is_directory(status)) fail(name, 0, 0, "is a folder; --config expects a YAML file");
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec && size > kMaxFileBytes)
    fail(name, 0, 0, fmt::format("is {}, far more than a config file holds (at most {}); check the path",
                                 format_bytes(size), format_bytes(kMaxFileBytes)));
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || in.bad())
    fail(name, 0, 0, fmt::format("cannot read the file: {}; check its permissions",
                                 std::generic_category().message(errno)));
  Config config = parse_config(text.str(), name);
  config.source = path;
  return config;
}

void apply_override(Config& config, std::string_view field, std::string_view value,
                    std::string_view flag) {
  const size_t dot = field.find('.');
  const std::string_view section = field.substr(0, dot);
  const std::string_view key = dot == std::string_view::npos ? "" : field.substr(dot + 1);
  const auto home = std::find_if(kSections.begin(), kSections.end(), [&](const Section& s) { return s.name == section; });
  if (home == kSections.end() || !contains(home->keys, key))
    throw std::invalid_argument(fmt::format("apply_override: no config field '{}'", field));

  YAML::Node node{std::string(value)};
  if (contains(kListFields, field)) {
    node = YAML::Node(YAML::NodeType::Sequence);
    std::string_view rest = value;
    while (!trim(rest).empty()) {
      const size_t comma = rest.find(',');
      node.push_back(std::string(trim(rest.substr(0, comma))));
      rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
    }
  }
  Reader reader(std::string(flag), {}, false);
  Config next = config;
  read_field(reader, Entry{std::string(field), YAML::Node(std::string(key)), node}, next);
  if (!reader.problems().empty()) fail(std::move(reader.problems()));
  // A model given on the command line replaces the file's, whichever way the file named it.
  if (field == "model.path") next.model.url.clear();
  if (field == "model.url") next.model.path.clear();
  config = std::move(next);
}

void validate(const Config& c) {
  Reader r("", {}, false);
  const YAML::Mark none = YAML::Mark::null_mark();
  auto check = [&](std::string_view path, const Message& problem) { r.report(none, path, problem); };
  const ServiceConfig& s = c.service;
  check("service.name", check_name(s.name));
  check("service.host", check_host(s.host));
  check("service.port", check_int(s.port, kPort));
  for (const std::string& k : s.api_keys) check("service.api_keys", check_api_key(k));
  if (!s.api_keys_env.empty()) check("service.api_keys_env", check_env_name(s.api_keys_env));
  for (const std::string& o : s.cors_origins) check("service.cors_origins", check_origin(o));
  auto limits = [](uint64_t v, const Limits& l, const std::string& got) -> Message {
    if (v >= l.min && v <= l.max) return std::nullopt;
    return fmt::format("expected {}, got {}", l.expected, got);
  };
  check("service.max_request_body", limits(s.max_request_body, kRequestBody, format_bytes(s.max_request_body)));
  check("service.request_timeout",
        limits(s.request_timeout_ms, kRequestTimeout, format_duration_ms(s.request_timeout_ms)));
  check("service.max_queued_requests", check_int(s.max_queued_requests, kQueuedRequests));
  for (const std::string& n : s.served_model_names) check("service.served_model_names", check_name(n));
  check("service.served_model_names", check_each_once(s.served_model_names));
  check("service.drain_timeout", limits(s.drain_timeout_ms, kDrainTimeout, format_duration_ms(s.drain_timeout_ms)));
  if (s.rate_limit && (s.rate_limit->requests == 0 || s.rate_limit->per_ms == 0))
    check("service.rate_limit", fmt::format("expected {}, got {} per {} ms", kRateLimitExpected,
                                            s.rate_limit->requests, s.rate_limit->per_ms));

  const ModelConfig& m = c.model;
  if (!m.url.empty()) check("model.url", check_url(m.url));
  if (!m.sha256.empty()) check("model.sha256", check_sha256(m.sha256));
  for (const auto& [file, hex] : m.sha256_files) check("model.sha256." + file, check_sha256(hex));
  check("model.context_length", check_int(m.context_length, kContextLength));
  const VisionConfig& v = c.vision;
  check("vision.min_pixels", check_int(v.min_pixels, kImagePixels));
  check("vision.max_pixels", check_int(v.max_pixels, kImagePixels));
  check("vision.max_images_per_request", check_int(v.max_images_per_request, kImagesPerRequest));
  if (v.target_encode_ms)
    check("vision.target_encode_seconds", limits(v.target_encode_ms, kTargetEncode, format_duration_ms(v.target_encode_ms)));
  check("vision.encoder_cache_size", limits(v.encoder_cache_size, kEncoderCache, format_bytes(v.encoder_cache_size)));
  if (!m.chat_template.empty()) check("model.chat_template", check_chat_template(m.chat_template));

  const RuntimeConfig& rt = c.runtime;
  std::set<int> seen;
  for (int d : rt.devices) {
    check("runtime.devices", check_int(d, kDevice));
    if (!seen.insert(d).second)
      check("runtime.devices", fmt::format("GPU {} is listed twice; list each GPU once", d));
  }
  check("runtime.threads", check_int(rt.threads, kThreads));
  check("runtime.max_batch_size", check_int(rt.max_batch_size, kBatchSize));
  const KvCacheBudget& kv = rt.kv_cache_budget;
  if (kv.bytes == 0 && !(kv.fraction > 0 && kv.fraction <= 1))
    check("runtime.kv_cache_budget", fmt::format("expected {}, got {}%", kKvBudgetExpected, kv.fraction * 100));
  check("health.heartbeat_interval",
        limits(c.health.heartbeat_interval_ms, kHeartbeat, format_duration_ms(c.health.heartbeat_interval_ms)));

  check_cross_fields(r, c, [](const std::string&) { return YAML::Mark::null_mark(); });
  if (!r.problems().empty()) fail(std::move(r.problems()));
}

std::vector<std::string> resolve_api_keys(const ServiceConfig& service) {
  std::vector<std::string> keys = service.api_keys;
  if (service.api_keys_env.empty()) return keys;
  const std::string& var = service.api_keys_env;
  const char* raw = std::getenv(var.c_str());
  if (raw == nullptr)
    fail("", 0, 0, fmt::format("service.api_keys_env: environment variable {} is not set; export "
                               "{}=key1,key2 or remove api_keys_env from the config", var, var));
  size_t found = 0;
  std::string_view rest = raw;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string key(trim(rest.substr(0, comma)));
    rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
    if (key.empty()) continue;
    ++found;
    if (!contains(keys, key)) keys.push_back(key);
  }
  if (found == 0)
    fail("", 0, 0, fmt::format("service.api_keys_env: environment variable {} holds no key; set it "
                               "to comma-separated keys or remove api_keys_env from the config", var));
  return keys;
}

}  // namespace autoglm::config
