#pragma once
// Shared between the download sources; not part of the public API.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace autoglm::download::detail {

// curl_global_init, once per process (transfer.cpp); everything that calls libcurl calls this first.
void init_curl();

// ---- URLs (url.cpp) ----

struct Url {
  std::string text;    // the whole URL
  std::string scheme;  // "http" or "https"
  std::string host;    // lowercase
  std::string port;    // always set (the scheme's default when the URL has none)
  std::string path;    // as written (still percent-encoded), "/" at least
  std::string query;   // without '?'; empty when there is none
};

// Throws autoglm::Error when `url` is not a well-formed http:// or https:// URL.
Url parse_url(const std::string& url);

// The URL actually fetched: https://huggingface.co/... moved to $HF_ENDPOINT when that is set.
Url effective_url(const std::string& url);

// The decoded last segment of the path; throws autoglm::Error when there is none.
std::string file_name(const Url& url);

// $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN, when `url` is huggingface.co or the $HF_ENDPOINT origin.
std::optional<std::string> bearer_token_for(const Url& url);

// huggingface.co itself or the $HF_ENDPOINT origin: where the HF_TOKEN hints apply.
bool is_hugging_face(const Url& url);

// The URL without any user:password@ part, for messages and logs.
std::string display_url(const std::string& url);

// ---- one HTTP transfer (transfer.cpp) ----

struct TransferRequest {
  std::string url;      // effective URL
  std::string display;  // for messages
  std::string name;     // the file name, for the progress line
  std::filesystem::path part;
  std::optional<std::string> token;
  bool hugging_face = false;
  bool progress = false;
  long connect_timeout_s = 30;
  long low_speed_timeout_s = 60;
};

struct TransferResult {
  enum class Outcome { complete, retry, fatal };
  Outcome outcome = Outcome::fatal;
  std::string error;         // what went wrong, naming the URL (empty when complete)
  bool immediate = false;    // retry at once: the server's answer was clear, waiting would not help
  double retry_after_s = 0;  // the server's Retry-After, in seconds (0: none)
};

// One attempt: resumes `part` with a Range request when it exists, appends what arrives.
TransferResult transfer_once(const TransferRequest& request);

}  // namespace autoglm::download::detail
