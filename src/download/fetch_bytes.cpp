// fetch_bytes: one bounded GET into memory, for images a request names by URL.
#include <curl/curl.h>
#include <fmt/format.h>

#include <memory>

#include "autoglm/download.h"
#include "autoglm/error.h"
#include "internal.h"

namespace autoglm::download {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

struct Sink {
  std::vector<uint8_t> bytes;
  uint64_t max_bytes = 0;
  bool too_large = false;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  Sink& s = *static_cast<Sink*>(user);
  const size_t n = size * count;
  if (s.bytes.size() + n > s.max_bytes) {
    s.too_large = true;
    return 0;  // stops the transfer
  }
  s.bytes.insert(s.bytes.end(), data, data + n);
  return n;
}

}  // namespace

std::vector<uint8_t> fetch_bytes(const std::string& url, const BytesOptions& options) {
  if (!url.starts_with("http://") && !url.starts_with("https://"))
    throw Error(kExitUsage, fmt::format("'{}' is not an http:// or https:// URL", url));
  detail::init_curl();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) throw Error(kExitCheckFailed, "libcurl could not create a transfer handle (out of memory?)");
  static const std::string user_agent = "autoglm-deploy/" AUTOGLM_DOWNLOAD_VERSION;
  Sink sink;
  sink.max_bytes = options.max_bytes;
  char error[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, options.timeout_s);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_bytes));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  const CURLcode code = curl_easy_perform(c);
  if (sink.too_large || code == CURLE_FILESIZE_EXCEEDED)
    throw Error(kExitCheckFailed, fmt::format("{}: larger than {} bytes", url, options.max_bytes));
  if (code == CURLE_OPERATION_TIMEDOUT)
    throw Error(kExitCheckFailed, fmt::format("{}: no complete answer within {} s", url, options.timeout_s));
  if (code != CURLE_OK)
    throw Error(kExitCheckFailed, fmt::format("{}: {}", url, error[0] ? error : curl_easy_strerror(code)));
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) throw Error(kExitCheckFailed, fmt::format("{}: the server answered HTTP {}", url, status));
  return std::move(sink.bytes);
}

}  // namespace autoglm::download
