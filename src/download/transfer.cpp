// One HTTP GET with libcurl's easy interface: resume a .part file with a Range request, append the
// body to it, and sort the result into complete / worth retrying / fatal for fetch().
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <curl/curl.h>
#include <fmt/format.h>
#include <memory>
#include <mutex>
#include <spdlog/spdlog.h>
#include <system_error>
#include <unistd.h>

#include "autoglm/error.h"
#include "internal.h"
#include "progress_line.h"

#ifndef AUTOGLM_DOWNLOAD_VERSION
#define AUTOGLM_DOWNLOAD_VERSION "0"
#endif

namespace autoglm::download::detail {
namespace fs = std::filesystem;
namespace {

constexpr long kMaxRedirects = 10;
constexpr long kLowSpeedBytesPerSecond = 1024;

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' || text.back() == '\n'))
    text.remove_suffix(1);
  return text;
}

bool header_is(std::string_view name, std::string_view wanted) {
  if (name.size() != wanted.size()) return false;
  for (size_t k = 0; k < name.size(); ++k)
    if (std::tolower(static_cast<unsigned char>(name[k])) != wanted[k]) return false;
  return true;
}

// State of one attempt, shared with libcurl's callbacks.
struct Transfer {
  Transfer(const TransferRequest& r, CURL* c) : request(r), curl(c), progress(r.name, r.progress) {}

  const TransferRequest& request;
  CURL* curl;
  uint64_t offset = 0;   // bytes in .part when the request was sent
  FILE* file = nullptr;  // opened at the first body byte of a 200 or 206 answer
  bool opened = false;
  bool discard = false;  // an error page's body: not written anywhere
  bool bad_range = false;
  int write_errno = 0;
  std::optional<uint64_t> total;  // size of the whole file, when the answer says
  // From the headers of the latest response (each redirect hop starts afresh).
  std::optional<uint64_t> range_start;
  std::optional<uint64_t> range_total;
  double retry_after_s = 0;
  ProgressLine progress;

  long status() const {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }
};

// "bytes 100-999/1000" or "bytes */1000".
void parse_content_range(Transfer& t, std::string_view value) {
  if (value.substr(0, 6) != "bytes ") return;
  value.remove_prefix(6);
  const size_t slash = value.find('/');
  if (slash == std::string_view::npos) return;
  t.range_total = parse_u64(value.substr(slash + 1));
  const std::string_view span = value.substr(0, slash);
  t.range_start = parse_u64(span.substr(0, span.find('-')));
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::string_view line(data, size * count);
  if (line.substr(0, 5) == "HTTP/") {
    t.range_start.reset();
    t.range_total.reset();
    t.retry_after_s = 0;
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * count;
  const std::string_view name = line.substr(0, colon);
  const std::string_view value = trim(line.substr(colon + 1));
  if (header_is(name, "content-range")) parse_content_range(t, value);
  // Only the delay-seconds form; an HTTP date falls back to our own backoff.
  if (header_is(name, "retry-after")) t.retry_after_s = static_cast<double>(parse_u64(value).value_or(0));
  return size * count;
}

// Decides at the first body byte where the body goes: 206 appends to .part, 200 replaces it
// (the server ignored our Range), anything else is an error page we do not keep.
bool open_for_body(Transfer& t) {
  const long status = t.status();
  const char* mode = nullptr;
  uint64_t start = 0;
  if (status == 206) {
    if (t.range_start != t.offset) {
      t.bad_range = true;
      return false;
    }
    mode = "ab";
    start = t.offset;
    t.total = t.range_total;
  } else if (status == 200) {
    if (t.offset > 0) spdlog::info("{}: the server does not resume downloads; starting from the beginning", t.request.display);
    mode = "wb";
    curl_off_t length = -1;
    curl_easy_getinfo(t.curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (length >= 0) t.total = static_cast<uint64_t>(length);
  } else {
    t.discard = true;
    return true;
  }
  t.file = std::fopen(t.request.part.c_str(), mode);
  t.opened = true;
  if (!t.file) {
    t.write_errno = errno;
    return false;
  }
  t.progress.start(start, t.total);
  return true;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  if (!t.file && !t.discard && !open_for_body(t)) return 0;  // != bytes: libcurl stops with CURLE_WRITE_ERROR
  if (t.discard) return bytes;
  if (std::fwrite(data, 1, bytes, t.file) != bytes) {
    t.write_errno = errno;
    return 0;
  }
  t.progress.advance(bytes);
  return bytes;
}

// Flushes to disk before fetch() hashes and renames the file, so a crash cannot leave a short
// file under the final name.
void close_file(Transfer& t) {
  if (!t.file) return;
  if (std::fflush(t.file) != 0 || ::fsync(fileno(t.file)) != 0) t.write_errno = t.write_errno ? t.write_errno : errno;
  if (std::fclose(t.file) != 0 && !t.write_errno) t.write_errno = errno;
  t.file = nullptr;
}

bool is_retryable(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

TransferResult retry(std::string error, double retry_after_s = 0) {
  return {TransferResult::Outcome::retry, std::move(error), false, retry_after_s};
}
TransferResult retry_now(std::string error) { return {TransferResult::Outcome::retry, std::move(error), true, 0}; }
TransferResult fatal(std::string error) { return {TransferResult::Outcome::fatal, std::move(error), false, 0}; }

// What to do next after an HTTP error status.
std::string http_error_hint(const Transfer& t, long status) {
  if ((status == 401 || status == 403) && t.request.hugging_face) {
    if (t.request.token)
      return "HF_TOKEN was sent but refused: check that the token is valid with read access, and for a gated "
             "model that you accepted its licence on the model page";
    return "this repository needs a login: set HF_TOKEN to a Hugging Face access token "
           "(https://huggingface.co/settings/tokens), and for a gated model accept its licence on the model page";
  }
  if (status == 401 || status == 403) return "the server refused access: check the URL and that you may download it";
  if (status == 404 || status == 410) return "check the URL (for Hugging Face: organisation, repository, revision and file name)";
  return "check the URL";
}

TransferResult judge_http_error(Transfer& t, long status) {
  const std::string what = fmt::format("GET {}: HTTP {}", t.request.display, status);
  if (status == 408 || status == 429 || status >= 500) return retry(what, t.retry_after_s);
  if (status == 416 && t.offset > 0) {
    // The Range started at or past the end: the .part is complete, or longer than the file (bad).
    if (t.range_total == t.offset) return {TransferResult::Outcome::complete, "", false, 0};
    std::error_code ec;
    fs::remove(t.request.part, ec);
    return retry_now(what + " (the partial download does not fit the file on the server; starting over)");
  }
  return fatal(fmt::format("{}: {}", what, http_error_hint(t, status)));
}

TransferResult judge(Transfer& t, CURLcode code, const char* curl_message) {
  if (t.write_errno)
    return fatal(fmt::format("cannot write {}: {}. Check free disk space and the permissions of the cache folder",
                             t.request.part.string(), std::strerror(t.write_errno)));
  if (t.bad_range) {
    std::error_code ec;
    fs::remove(t.request.part, ec);
    return retry_now(fmt::format("GET {}: the server resumed at a different byte than asked; starting over", t.request.display));
  }
  const long status = t.status();
  if (status >= 400) return judge_http_error(t, status);
  if (code != CURLE_OK) {
    const std::string what = fmt::format("GET {}: {}", t.request.display, *curl_message ? curl_message : curl_easy_strerror(code));
    return is_retryable(code) ? retry(what) : fatal(what);
  }
  if (status != 200 && status != 206) return fatal(fmt::format("GET {}: unexpected HTTP {}: check the URL", t.request.display, status));
  if (status == 200 && !t.opened) {  // an empty body never reaches on_body
    std::FILE* empty = std::fopen(t.request.part.c_str(), "wb");
    if (!empty || std::fclose(empty) != 0) return fatal(fmt::format("cannot create {}", t.request.part.string()));
  }
  std::error_code ec;
  const uint64_t size = fs::file_size(t.request.part, ec);
  if (t.total && size != *t.total)
    return retry(fmt::format("GET {}: the transfer ended after {} of {} bytes", t.request.display, size, *t.total));
  return {TransferResult::Outcome::complete, "", false, 0};
}

void configure(Transfer& t, curl_slist* headers, char* error_buffer) {
  CURL* curl = t.curl;
  static const std::string user_agent = "autoglm-deploy/" AUTOGLM_DOWNLOAD_VERSION;
  curl_easy_setopt(curl, CURLOPT_URL, t.request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Redirects (Hugging Face sends files to its CDN); libcurl drops our Authorization header when
  // a redirect leaves the host, port or scheme, which keeps HF_TOKEN away from other hosts.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: safe in threads
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, t.request.connect_timeout_s);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerSecond);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, t.request.low_speed_timeout_s);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  // CURLOPT_RANGE rather than CURLOPT_RESUME_FROM: libcurl then leaves a 200 answer to us (start over).
  const std::string range = fmt::format("{}-", t.offset);
  if (t.offset > 0) curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());  // libcurl copies strings
}

std::once_flag curl_init_once;

}  // namespace

// curl_global_init is not thread-safe in older libcurl; call_once makes the first call safe.
void init_curl() {
  std::call_once(curl_init_once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw Error(kExitCheckFailed, "libcurl could not initialise (curl_global_init): check the libcurl and OpenSSL installation");
  });
}

TransferResult transfer_once(const TransferRequest& request) {
  init_curl();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) throw Error(kExitCheckFailed, "libcurl could not create a transfer handle (out of memory?)");
  Transfer t(request, curl.get());
  std::error_code ec;
  if (const uint64_t size = fs::file_size(request.part, ec); !ec) t.offset = size;
  if (t.offset > 0) spdlog::info("{}: resuming at byte {}", request.display, t.offset);

  std::unique_ptr<curl_slist, CurlDeleter> headers;
  if (request.token) {
    const std::string auth = "Authorization: Bearer " + *request.token;
    headers.reset(curl_slist_append(nullptr, auth.c_str()));
    if (!headers) throw Error(kExitCheckFailed, "out of memory while preparing the request headers");
  }
  char error_buffer[CURL_ERROR_SIZE] = {};
  configure(t, headers.get(), error_buffer);
  const CURLcode code = curl_easy_perform(curl.get());
  close_file(t);
  t.progress.finish();
  return judge(t, code, error_buffer);
}

}  // namespace autoglm::download::detail
