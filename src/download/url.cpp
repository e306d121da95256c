// URL handling: parsing (libcurl's URL API, so we split URLs exactly as the transfer will), the
// HF_ENDPOINT rewrite, which origins may see HF_TOKEN, and file names for the cache.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <curl/curl.h>
#include <fmt/format.h>
#include <memory>

#include "autoglm/error.h"
#include "internal.h"

namespace autoglm::download::detail {
namespace {

constexpr const char* kHuggingFaceHost = "huggingface.co";

struct UrlHandleDeleter {
  void operator()(CURLU* handle) const { curl_url_cleanup(handle); }
};
using UrlHandle = std::unique_ptr<CURLU, UrlHandleDeleter>;

// One part of a parsed URL; empty when the URL has none.
std::string url_part(CURLU* handle, CURLUPart part, unsigned int flags = 0) {
  char* text = nullptr;
  if (curl_url_get(handle, part, &text, flags) != CURLUE_OK || !text) return {};
  std::string out = text;
  curl_free(text);
  return out;
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

bool same_origin(const Url& a, const Url& b) { return a.scheme == b.scheme && a.host == b.host && a.port == b.port; }

// $HF_ENDPOINT without trailing slashes, parsed; nullopt when unset.
std::optional<Url> hf_endpoint() {
  std::string endpoint = env("HF_ENDPOINT");
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  if (endpoint.empty()) return std::nullopt;
  try {
    return parse_url(endpoint);
  } catch (const Error&) {
    throw Error(kExitCheckFailed, fmt::format("HF_ENDPOINT={} is not an http:// or https:// URL: fix or unset it", endpoint));
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "%20" -> " "; a '%' not followed by two hex digits is kept as it is.
std::string percent_decode(const std::string& text) {
  std::string out;
  for (size_t k = 0; k < text.size(); ++k) {
    if (text[k] == '%' && k + 2 < text.size() && hex_value(text[k + 1]) >= 0 && hex_value(text[k + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[k + 1]) * 16 + hex_value(text[k + 2]));
      k += 2;
    } else {
      out += text[k];
    }
  }
  return out;
}

}  // namespace

Url parse_url(const std::string& url) {
  init_curl();
  UrlHandle handle(curl_url());
  if (!handle) throw Error(kExitCheckFailed, "out of memory while parsing a URL");
  const auto not_http = [&] {
    return Error(kExitCheckFailed,
                 fmt::format("'{}' is not an http:// or https:// URL: give the full download URL, e.g. "
                             "https://huggingface.co/ORG/REPO/resolve/main/FILE",
                             display_url(url)));
  };
  if (curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) throw not_http();
  Url out;
  out.text = url;
  out.scheme = lowercase(url_part(handle.get(), CURLUPART_SCHEME));
  if (out.scheme != "http" && out.scheme != "https") throw not_http();
  out.host = lowercase(url_part(handle.get(), CURLUPART_HOST));
  if (out.host.empty()) throw not_http();
  out.port = url_part(handle.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  out.path = url_part(handle.get(), CURLUPART_PATH);
  if (out.path.empty()) out.path.push_back('/');  // not = "/": GCC 12 gives a false -Wrestrict there
  out.query = url_part(handle.get(), CURLUPART_QUERY);
  return out;
}

Url effective_url(const std::string& url) {
  Url parsed = parse_url(url);
  if (parsed.host != kHuggingFaceHost) return parsed;
  const std::optional<Url> endpoint = hf_endpoint();
  if (!endpoint) return parsed;
  std::string base = endpoint->text;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return parse_url(base + parsed.path + (parsed.query.empty() ? "" : "?" + parsed.query));
}

std::string file_name(const Url& url) {
  const std::string segment = url.path.substr(url.path.rfind('/') + 1);
  const std::string name = percent_decode(segment);
  // A decoded name must still be one plain path component inside the cache folder.
  const bool usable = !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
                      name.find('\0') == std::string::npos;
  if (!usable)
    throw Error(kExitCheckFailed, fmt::format("'{}' does not name a file (its path has no file name after the last '/'): "
                                              "give the URL of the file itself",
                                              display_url(url.text)));
  return name;
}

bool is_hugging_face(const Url& url) {
  if (url.host == kHuggingFaceHost) return true;
  try {
    const std::optional<Url> endpoint = hf_endpoint();
    return endpoint && same_origin(*endpoint, url);
  } catch (const Error&) {
    return false;  // a malformed HF_ENDPOINT only matters for huggingface.co URLs (effective_url says so)
  }
}

std::optional<std::string> bearer_token_for(const Url& url) {
  if (!is_hugging_face(url)) return std::nullopt;
  std::string token = env("HF_TOKEN");
  if (token.empty()) token = env("HUGGING_FACE_HUB_TOKEN");
  // Token files often end with a newline; a control character inside would break the header.
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) token.erase(0, 1);
  if (token.empty()) return std::nullopt;
  if (std::any_of(token.begin(), token.end(), [](unsigned char c) { return std::iscntrl(c); }))
    throw Error(kExitCheckFailed, "HF_TOKEN contains control characters: set it to the token alone");
  return token;
}

std::string display_url(const std::string& url) {
  init_curl();
  UrlHandle handle(curl_url());
  if (!handle || curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
    return url.find('@') == std::string::npos ? url : "(a URL that could not be parsed)";
  curl_url_set(handle.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(handle.get(), CURLUPART_PASSWORD, nullptr, 0);
  const std::string clean = url_part(handle.get(), CURLUPART_URL);
  return clean.empty() ? url : clean;
}

}  // namespace autoglm::download::detail
