#pragma once
// Fetching model files over http(s) into a local cache folder: resumable (.part files and Range
// requests), retried with exponential backoff, checked against an expected SHA-256, and aware of
// Hugging Face conventions (HF_ENDPOINT mirrors, HF_TOKEN for gated repositories).
#include <filesystem>
#include <cstdint>
#include <string>
#include <vector>

namespace autoglm::download {

// $XDG_CACHE_HOME/autoglm-deploy, else $HOME/.cache/autoglm-deploy. Not created here: fetch()
// creates the folders it writes to. Throws autoglm::Error when neither variable is usable.
std::filesystem::path default_cache_dir();

struct FetchOptions {
  std::filesystem::path cache_dir;  // empty: default_cache_dir()
  std::string expected_sha256;      // 64 hex digits (either case), or empty (unknown)
  int max_attempts = 5;             // connection failures / 5xx / 408 / 429 / truncated transfers are retried
  double initial_backoff_s = 1.0;   // doubled after each failed attempt (a server's Retry-After can lengthen it)
  bool progress = true;             // progress line on stderr (bytes, total, rate, ETA), only when stderr is a TTY
  long connect_timeout_s = 30;
  long low_speed_timeout_s = 60;    // abort (and retry) a transfer that stays below 1 KB/s for this long
};

// Where a URL is cached: <cache_dir>/models/<first 16 hex of sha256(url after the HF_ENDPOINT
// rewrite)>-<file name of the URL path>. Throws autoglm::Error for a URL that is not http(s) or
// whose path has no file name.
std::filesystem::path cached_path(const std::string& url, const FetchOptions& options = {});

// Downloads `url` to cached_path(url, options) and returns that path.
// - A cached file is returned without network access (after checking expected_sha256 when given;
//   a mismatching cached file is deleted and downloaded again).
// - Data goes to "<path>.part", resumed with a Range request on the next attempt or the next call;
//   the finished file is renamed atomically into place after its SHA-256 is checked.
// - If HF_ENDPOINT is set, https://huggingface.co/... URLs are fetched from that endpoint instead.
//   HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) is sent as a bearer token to huggingface.co or the
//   HF_ENDPOINT origin only, never to other hosts (nor to other hosts redirected to).
// Throws autoglm::Error (exit code 1) with what went wrong and what to do next.
std::filesystem::path fetch(const std::string& url, const FetchOptions& options = {});

// A small http(s) resource into memory, in one attempt (images named by URL in a request): at most
// `max_bytes` (a larger Content-Length or body stops the transfer), within `timeout_s` in all,
// redirects followed between http(s) URLs only. Throws autoglm::Error saying what went wrong
// (status, timeout, size).
struct BytesOptions {
  uint64_t max_bytes = 16ull << 20;
  long timeout_s = 10;
};
std::vector<uint8_t> fetch_bytes(const std::string& url, const BytesOptions& options = {});

}  // namespace autoglm::download
