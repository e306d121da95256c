// fetch(): the cache lookup, the retry loop around transfer_once(), the SHA-256 check and the
// atomic rename into the cache.
#include "autoglm/download.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <system_error>
#include <thread>

#include "autoglm/error.h"
#include "autoglm/integrity.h"
#include "autoglm/progress.h"
#include "internal.h"

namespace autoglm::download {
namespace fs = std::filesystem;
namespace {

// A server asking for a longer pause than this is not waited for any longer.
constexpr double kMaxRetryAfterS = 300;

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string checked_expected_sha256(const std::string& expected) {
  if (expected.empty() || integrity::is_sha256_hex(expected)) return lowercase(expected);
  throw Error(kExitCheckFailed, fmt::format("expected SHA-256 '{}' is not 64 hex digits: give the hash as sha256sum prints it", expected));
}

bool show_progress(const FetchOptions& options) { return options.progress && ProgressBar::stderr_is_tty(); }

std::string sha256_of(const fs::path& path, const std::string& name, bool progress) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  ProgressBar bar("verifying " + name, ec ? 0 : size, progress);
  std::string hash = integrity::sha256_file(path, [&](uint64_t bytes) { bar.advance(bytes); });
  bar.finish();
  return hash;
}

// A cached file is usable as it is, unless an expected hash says otherwise (then it goes).
bool cached_file_usable(const fs::path& path, const std::string& expected, const FetchOptions& options) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  if (expected.empty()) return true;
  const std::string actual = sha256_of(path, path.filename().string(), show_progress(options));
  if (actual == expected) return true;
  spdlog::warn("{}: cached file has SHA-256 {}, expected {}; deleting it and downloading again", path.string(), actual, expected);
  fs::remove(path, ec);
  return false;
}

void sleep_for_seconds(double seconds) {
  if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

void download_with_retries(const detail::TransferRequest& request, const FetchOptions& options) {
  const int attempts = std::max(1, options.max_attempts);
  double backoff = std::max(0.0, options.initial_backoff_s);
  std::string last_error;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    const detail::TransferResult result = detail::transfer_once(request);
    if (result.outcome == detail::TransferResult::Outcome::complete) return;
    if (result.outcome == detail::TransferResult::Outcome::fatal) throw Error(kExitCheckFailed, result.error);
    last_error = result.error;
    if (attempt == attempts) break;
    const double delay = result.immediate ? 0.0 : std::max(backoff, std::min(result.retry_after_s, kMaxRetryAfterS));
    spdlog::warn("{}; retrying in {:.3g} s (attempt {} of {})", result.error, delay, attempt + 1, attempts);
    sleep_for_seconds(delay);
    if (!result.immediate) backoff *= 2;
  }
  std::error_code ec;
  const bool kept = fs::exists(request.part, ec);
  throw Error(kExitCheckFailed,
              fmt::format("{} (gave up after {} attempt{}). Check the network connection and any proxy settings, or try "
                          "again later{}",
                          last_error, attempts, attempts == 1 ? "" : "s",
                          kept ? fmt::format("; the partial download {} is kept and will be resumed", request.part.string())
                               : ""));
}

// Checks the finished .part and moves it into place; rename() within one folder is atomic, so the
// final name only ever holds a complete, checked file.
void install(const detail::TransferRequest& request, const fs::path& path, const std::string& expected,
             const FetchOptions& options) {
  const fs::path& part = request.part;
  const std::string& url = request.display;
  const std::string actual = sha256_of(part, request.name, show_progress(options));
  std::error_code ec;
  if (!expected.empty() && actual != expected) {
    fs::remove(part, ec);
    throw Error(kExitCheckFailed,
                fmt::format("SHA-256 mismatch for {}: expected {}, got {}. The download was deleted; check the expected "
                            "hash and the URL (a different revision of the file?), then run again",
                            url, expected, actual));
  }
  if (expected.empty())
    spdlog::info("{}: SHA-256 {} (pass it as the expected hash to pin this file)", url, actual);
  fs::rename(part, path, ec);
  if (ec)
    throw Error(kExitCheckFailed, fmt::format("cannot move {} to {}: {}", part.string(), path.string(), ec.message()));
}

}  // namespace

fs::path default_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  // The XDG spec says to ignore a relative XDG_CACHE_HOME.
  if (xdg && *xdg && fs::path(xdg).is_absolute()) return fs::path(xdg) / "autoglm-deploy";
  const char* home = std::getenv("HOME");
  if (home && *home) return fs::path(home) / ".cache" / "autoglm-deploy";
  throw Error(kExitCheckFailed, "no cache folder: neither XDG_CACHE_HOME nor HOME is set; set one of them or give a cache folder");
}

fs::path cached_path(const std::string& url, const FetchOptions& options) {
  const detail::Url effective = detail::effective_url(url);
  const std::string name = detail::file_name(effective);
  const fs::path dir = options.cache_dir.empty() ? default_cache_dir() : options.cache_dir;
  // The URL's hash keeps files of the same name from different repositories apart.
  return dir / "models" / (integrity::sha256_hex(effective.text).substr(0, 16) + "-" + name);
}

fs::path fetch(const std::string& url, const FetchOptions& options) {
  const std::string expected = checked_expected_sha256(options.expected_sha256);
  const detail::Url effective = detail::effective_url(url);
  const fs::path path = cached_path(url, options);
  if (cached_file_usable(path, expected, options)) return path;

  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec)
    throw Error(kExitCheckFailed, fmt::format("cannot create the cache folder {}: {}. Check its permissions or choose another folder",
                                              path.parent_path().string(), ec.message()));
  detail::TransferRequest request;
  request.url = effective.text;
  request.display = detail::display_url(effective.text);
  request.name = detail::file_name(effective);
  request.part = fs::path(path.string() + ".part");
  request.token = detail::bearer_token_for(effective);
  request.hugging_face = detail::is_hugging_face(effective);
  request.progress = show_progress(options);
  request.connect_timeout_s = options.connect_timeout_s;
  request.low_speed_timeout_s = options.low_speed_timeout_s;
  if (effective.text != url) spdlog::info("HF_ENDPOINT: fetching {} instead of huggingface.co", request.display);
  spdlog::info("downloading {} to {}", request.display, path.string());

  download_with_retries(request, options);
  install(request, path, expected, options);
  return path;
}

}  // namespace autoglm::download
