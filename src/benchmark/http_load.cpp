// The HTTP load generator: streaming chat completions kept in flight on libcurl's multi interface,
// each request's timings taken from its server-sent events as they arrive.
#include <cmath>
#include <cstdlib>
#include <curl/curl.h>
#include <fmt/format.h>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <spdlog/spdlog.h>
#include <string_view>
#include <thread>

#include "autoglm/benchmark.h"
#include "autoglm/error.h"
#include "status_line.h"

namespace autoglm::benchmark {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr size_t kMaxErrorBody = 4096;  // of an error answer, kept for the log
constexpr auto kStatusEvery = std::chrono::milliseconds(100);
constexpr auto kPollSlice = std::chrono::milliseconds(100);

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void init_curl_once() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) throw Error(kExitCheckFailed, fmt::format("libcurl failed to start: {}", curl_easy_strerror(rc)));
}

struct CurlEasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct CurlListDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct CurlMultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
using EasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;
using ListPtr = std::unique_ptr<curl_slist, CurlListDeleter>;
using MultiPtr = std::unique_ptr<CURLM, CurlMultiDeleter>;

EasyPtr new_easy() {
  EasyPtr e(curl_easy_init());
  if (!e) throw Error(kExitCheckFailed, "libcurl could not create a transfer (out of memory?)");
  return e;
}

ListPtr request_headers(const std::string& api_key) {
  curl_slist* l = nullptr;
  l = curl_slist_append(l, "Content-Type: application/json");
  l = curl_slist_append(l, "Accept: text/event-stream");
  l = curl_slist_append(l, "Expect:");  // no 100-continue round trip for larger prompts
  if (!api_key.empty()) l = curl_slist_append(l, ("Authorization: Bearer " + api_key).c_str());
  return ListPtr(l);
}

std::string trim_slashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "http://h:p" -> "http://h:p/v1"
std::string api_base(const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    throw Error(kExitUsage, fmt::format("--url '{}' is not an http:// or https:// URL; e.g. --url http://127.0.0.1:8080", url));
  std::string base = trim_slashes(url);
  if (ends_with(base, "/v1/chat/completions")) base.resize(base.size() - std::string("/chat/completions").size());
  if (!ends_with(base, "/v1")) base += "/v1";
  return base;
}

// The text of a content delta (chat) or of a completion chunk; "" when there is none.
std::string chunk_text(const json& event) {
  const auto choices = event.find("choices");
  if (choices == event.end() || !choices->is_array() || choices->empty()) return "";
  const json& c = choices->front();
  if (const auto delta = c.find("delta"); delta != c.end() && delta->is_object()) {
    const auto content = delta->find("content");
    return content != delta->end() && content->is_string() ? content->get<std::string>() : "";
  }
  const auto text = c.find("text");
  return text != c.end() && text->is_string() ? text->get<std::string>() : "";
}

std::optional<size_t> count_field(const json& usage, const char* name) {
  const auto f = usage.find(name);
  if (f == usage.end() || !f->is_number_unsigned()) return std::nullopt;
  return f->get<size_t>();
}

// One request slot: an easy handle reused request after request (its connection stays open).
class Slot {
 public:
  Slot(const std::string& endpoint, curl_slist* headers, std::chrono::milliseconds connect_timeout) : easy_(new_easy()) {
    CURL* e = easy_.get();
    curl_easy_setopt(e, CURLOPT_URL, endpoint.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Slot::on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(e, CURLOPT_PRIVATE, this);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "autoglm-deploy-bench");
  }

  CURL* easy() const { return easy_.get(); }

  // Prepares the next request; the clock starts now.
  void start(std::string body) {
    body_ = std::move(body);
    curl_easy_setopt(easy_.get(), CURLOPT_POSTFIELDS, body_.c_str());
    curl_easy_setopt(easy_.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
    result_ = {};
    parser_ = {};
    error_body_.clear();
    done_ = error_event_ = bad_event_ = false;
    usage_tokens_.reset();
    start_ = Clock::now();
  }

  RequestResult finish(CURLcode rc) {
    result_.latency_s = seconds(Clock::now() - start_);
    curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &result_.status);
    result_.tokens = usage_tokens_.value_or(result_.content_chunks);
    result_.error = error_category(rc);
    result_.ok = result_.error.empty();
    if (!result_.ok && !error_body_.empty())
      spdlog::debug("bench: request failed with {}: {}", result_.status, error_body_);
    return result_;
  }

  RequestResult abort() {
    result_.latency_s = seconds(Clock::now() - start_);
    result_.aborted = true;
    result_.tokens = result_.content_chunks;
    return result_;
  }

  size_t content_chunks() const { return result_.content_chunks; }

 private:
  std::string error_category(CURLcode rc) const {
    if (parser_.overflowed()) return "oversized_event";
    if (rc != CURLE_OK) return std::string("curl: ") + curl_easy_strerror(rc);
    if (result_.status != 200) return std::to_string(result_.status);
    if (error_event_) return "stream_error";
    if (bad_event_) return "bad_event";
    if (!done_) return "incomplete_stream";
    return "";
  }

  static size_t on_body(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<Slot*>(user);
    const size_t n = size * count;
    long status = 0;
    curl_easy_getinfo(self->easy_.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
      self->error_body_.append(data, std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, self->error_body_.size())));
      return n;
    }
    self->parser_.feed(std::string_view(data, n), [self](const std::string& event) { self->on_event(event); });
    return self->parser_.overflowed() ? 0 : n;  // 0: libcurl ends the transfer (counted as oversized_event)
  }

  void on_event(const std::string& data) {
    if (data == "[DONE]") {
      done_ = true;
      return;
    }
    const json event = json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (!event.is_object()) {
      bad_event_ = true;
      return;
    }
    if (event.contains("error")) {
      error_event_ = true;
      error_body_ = data.substr(0, kMaxErrorBody);
      return;
    }
    if (!chunk_text(event).empty()) {
      const double t = seconds(Clock::now() - start_);
      if (!result_.first_token_s) result_.first_token_s = t;
      result_.last_token_s = t;
      ++result_.content_chunks;
    }
    if (const auto usage = event.find("usage"); usage != event.end() && usage->is_object()) {
      usage_tokens_ = count_field(*usage, "completion_tokens");
      result_.prompt_tokens = count_field(*usage, "prompt_tokens");
      if (const auto details = usage->find("prompt_tokens_details"); details != usage->end() && details->is_object())
        result_.cached_prompt_tokens = count_field(*details, "cached_tokens");
    }
  }

  EasyPtr easy_;
  std::string body_;
  RequestResult result_;
  SseParser parser_;
  std::string error_body_;
  bool done_ = false, error_event_ = false, bad_event_ = false;
  std::optional<size_t> usage_tokens_;
  Clock::time_point start_;
};

std::string request_body(const HttpOptions& o, uint64_t prompt_id) {
  const json body{{"messages", json::array({json{{"role", "user"}, {"content", load_prompt(prompt_id, o.prompt_tokens)}}})},
                  {"max_tokens", o.max_tokens},
                  {"temperature", 0},
                  {"stream", true},
                  {"stream_options", {{"include_usage", true}}}};
  return body.dump();
}

void check_options(const HttpOptions& o) {
  if (o.concurrency.empty()) throw Error(kExitUsage, "--concurrency needs at least one value, e.g. --concurrency 1,8,32");
  for (int c : o.concurrency)
    if (c < 1) throw Error(kExitUsage, "--concurrency values must be at least 1");
  if (o.requests && *o.requests == 0) throw Error(kExitUsage, "--requests must be at least 1");
  if (o.duration && o.duration->count() <= 0) throw Error(kExitUsage, "--duration must be longer than 0, e.g. --duration 60s");
  if (o.prompt_tokens == 0 || o.max_tokens == 0) throw Error(kExitUsage, "--prompt-tokens and --max-tokens must be at least 1");
}

// One run: slots, the multi handle, and what has finished so far.
class LevelRun {
 public:
  LevelRun(const HttpOptions& o, int concurrency)
      : options_(o), concurrency_(concurrency), endpoint_(chat_endpoint(o.url)), headers_(request_headers(o.api_key)),
        multi_(curl_multi_init()), prompt_ids_(std::random_device{}()), status_(o.progress) {
    if (!multi_) throw Error(kExitCheckFailed, "libcurl could not create a multi handle (out of memory?)");
    for (int i = 0; i < concurrency; ++i)
      slots_.push_back(std::make_unique<Slot>(endpoint_, headers_.get(), o.connect_timeout));
  }
  ~LevelRun() {
    for (Slot* s : active_) curl_multi_remove_handle(multi_.get(), s->easy());
  }
  LevelRun(const LevelRun&) = delete;
  LevelRun& operator=(const LevelRun&) = delete;

  LoadLevel run() {
    start_ = Clock::now();
    if (options_.duration) deadline_ = start_ + *options_.duration;
    for (auto& s : slots_)
      if (may_launch()) launch(*s);
    while (!active_.empty()) {
      int running = 0;
      curl_multi_perform(multi_.get(), &running);
      collect_finished();
      if (deadline_ && Clock::now() >= *deadline_) {
        abort_all();
        break;
      }
      if (active_.empty()) break;
      show_status();
      curl_multi_poll(multi_.get(), nullptr, 0, poll_timeout_ms(), nullptr);
    }
    const double wall = seconds(Clock::now() - start_);
    status_.clear();
    return summarize(concurrency_, results_, wall);
  }

 private:
  // --requests; with neither it nor --duration, enough to fill the slots a few times over.
  size_t request_limit() const {
    if (options_.requests) return *options_.requests;
    if (options_.duration) return std::numeric_limits<size_t>::max();
    return default_requests(concurrency_);
  }

  bool may_launch() const {
    if (launched_ >= request_limit()) return false;
    return !deadline_ || Clock::now() < *deadline_;
  }

  void launch(Slot& s) {
    s.start(request_body(options_, prompt_ids_()));
    const CURLMcode rc = curl_multi_add_handle(multi_.get(), s.easy());
    if (rc != CURLM_OK) throw Error(kExitCheckFailed, fmt::format("libcurl: {}", curl_multi_strerror(rc)));
    active_.push_back(&s);
    ++launched_;
  }

  void collect_finished() {
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode rc = msg->data.result;  // msg dies with the removal below
      char* user = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &user);
      Slot& s = *reinterpret_cast<Slot*>(user);
      curl_multi_remove_handle(multi_.get(), easy);
      std::erase(active_, &s);
      results_.push_back(s.finish(rc));
      if (may_launch()) launch(s);
    }
  }

  // The deadline has passed: cut off what still runs, so the run never outlasts --duration.
  void abort_all() {
    for (Slot* s : active_) {
      curl_multi_remove_handle(multi_.get(), s->easy());
      results_.push_back(s->abort());
    }
    active_.clear();
  }

  int poll_timeout_ms() const {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(kPollSlice);
    if (deadline_) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - Clock::now());
      wait = std::clamp(left, std::chrono::milliseconds(0), wait);
    }
    return static_cast<int>(wait.count());
  }

  void show_status() {
    const auto now = Clock::now();
    if (now - last_status_ < kStatusEvery) return;
    last_status_ = now;
    size_t failed = 0;
    for (const RequestResult& r : results_) failed += r.ok ? 0 : 1;
    const size_t limit = request_limit();
    std::string of = limit != std::numeric_limits<size_t>::max() ? fmt::format("/{}", limit) : "";
    std::string time = options_.duration ? fmt::format("{:.1f}/{:.0f} s", seconds(now - start_), seconds(*options_.duration))
                                         : fmt::format("{:.1f} s", seconds(now - start_));
    status_.show(fmt::format("bench: concurrency {}: {}{} done, {} failed, {} in flight, {}", concurrency_,
                             results_.size(), of, failed, active_.size(), time));
  }

  const HttpOptions& options_;
  int concurrency_;
  std::string endpoint_;
  ListPtr headers_;
  MultiPtr multi_;  // declared before the slots: their handles leave it before it is cleaned up
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> active_;
  std::vector<RequestResult> results_;
  size_t launched_ = 0;
  // Each prompt starts with its own random number, so that a server's prefix cache can serve no
  // prompt from another (of this run, an earlier run or an earlier `bench`) beyond the chat template.
  std::mt19937 prompt_ids_;
  Clock::time_point start_, last_status_;
  std::optional<Clock::time_point> deadline_;
  detail::StatusLine status_;
};

// Keeps at most kMaxGetBytes of an answer; beyond that libcurl ends the transfer (CURLE_WRITE_ERROR).
constexpr size_t kMaxGetBytes = size_t{16} << 20;
size_t write_to_string(char* data, size_t size, size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * count > kMaxGetBytes) return 0;
  body->append(data, size * count);
  return size * count;
}

// GET `url` with the API key; the body, and the status in `status` (0 when nothing answered).
std::string http_get(const HttpOptions& o, const std::string& url, long& status, CURLcode& rc) {
  EasyPtr e = new_easy();
  ListPtr headers = request_headers(o.api_key);
  std::string body;
  curl_easy_setopt(e.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(e.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e.get(), CURLOPT_WRITEFUNCTION, &write_to_string);
  curl_easy_setopt(e.get(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(e.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e.get(), CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(e.get(), CURLOPT_TIMEOUT, 30L);
  rc = curl_easy_perform(e.get());
  status = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(e.get(), CURLINFO_RESPONSE_CODE, &status);
  return body;
}

// GET /v1/models: the served model's id for the report. Fails early, with a clear message, when
// nothing answers at the URL or the API key is refused; "" when the server has no such endpoint.
std::string served_model(const HttpOptions& o) {
  const std::string url = api_base(o.url) + "/models";
  long status = 0;
  CURLcode rc = CURLE_OK;
  const std::string body = http_get(o, url, status, rc);
  if (rc == CURLE_WRITE_ERROR) return "";  // an answer over kMaxGetBytes: no model name from it
  if (rc != CURLE_OK)
    throw Error(kExitCheckFailed, fmt::format("cannot reach {}: {}; is the server running? (start it with "
                                              "`autoglm-deploy serve`, or check --url)", url, curl_easy_strerror(rc)));
  if (status == 401)
    throw Error(kExitUsage, fmt::format("{} refused the API key (401): pass --api-key KEY or set AUTOGLM_API_KEY", url));
  const json j = json::parse(body, nullptr, false);
  if (status != 200 || !j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty()) return "";
  const json& first = j["data"].front();
  return first.is_object() && first.contains("id") && first["id"].is_string() ? first["id"].get<std::string>() : "";
}

// The decode counters of an autoglm-deploy server's /metrics; nullopt for a server without them.
struct DecodeCounters {
  double steps = 0, tokens = 0, seconds = 0;
};

std::optional<DecodeCounters> decode_counters(const HttpOptions& o) {
  std::string root = api_base(o.url);
  root.resize(root.size() - 3);  // without "/v1"
  long status = 0;
  CURLcode rc = CURLE_OK;
  const std::string text = http_get(o, root + "/metrics", status, rc);
  if (rc != CURLE_OK || status != 200) return std::nullopt;
  const auto steps = prometheus_value(text, "autoglm_decode_steps_total"),
             tokens = prometheus_value(text, "autoglm_decode_step_tokens_total"),
             seconds = prometheus_value(text, "autoglm_decode_step_seconds_total");
  if (!steps || !tokens || !seconds) return std::nullopt;
  return DecodeCounters{*steps, *tokens, *seconds};
}

// The engine's decode rate between two readings of its counters, when it decoded in between.
void set_engine_rates(LoadLevel& l, const std::optional<DecodeCounters>& before, const std::optional<DecodeCounters>& after) {
  if (!before || !after) return;
  const double steps = after->steps - before->steps, seconds = after->seconds - before->seconds;
  if (steps <= 0 || seconds <= 0) return;
  l.engine_decode_steps_per_second = steps / seconds;
  l.engine_decode_tokens_per_second = (after->tokens - before->tokens) / seconds;
}

}  // namespace

void SseParser::feed(std::string_view bytes, const std::function<void(const std::string&)>& on_data) {
  for (char c : bytes) {
    if (overflowed_) return;
    if (c == '\n' && after_cr_) {  // the second half of a \r\n
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      line(pending_, on_data);
      pending_.clear();
    } else {
      pending_ += c;
      overflowed_ = pending_.size() + data_.size() > kMaxEventBytes;
    }
  }
}

void SseParser::line(std::string_view text, const std::function<void(const std::string&)>& on_data) {
  if (text.empty()) {  // a blank line ends the event
    if (has_data_) on_data(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (text.substr(0, 5) != "data:") return;  // comments (":...") and other fields (event:, id:, retry:)
  text.remove_prefix(5);
  if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(text);
  has_data_ = true;
}

std::optional<double> prometheus_value(std::string_view text, std::string_view name) {
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    if (line.size() <= name.size() || line.substr(0, name.size()) != name || line[name.size()] != ' ') continue;
    const std::string value(line.substr(name.size() + 1));
    char* stop = nullptr;
    const double v = std::strtod(value.c_str(), &stop);
    if (stop == value.c_str() || !std::isfinite(v)) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

size_t default_requests(int concurrency) { return std::max<size_t>(8, 4 * static_cast<size_t>(concurrency)); }

std::string chat_endpoint(const std::string& base_url) { return api_base(base_url) + "/chat/completions"; }

std::string load_prompt(uint64_t id, size_t tokens) {
  // Common short words: one token each in the vocabularies of real models.
  static constexpr const char* kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy",
                                           "dog", "and", "then", "runs", "back", "to", "its", "home"};
  std::string text = fmt::format("{}.", id);  // first: a prefix cache cannot serve one prompt from another
  for (size_t i = 1; i < tokens; ++i) {
    text += ' ';
    text += kWords[i % std::size(kWords)];
  }
  return text;
}

LoadLevel summarize(int concurrency, const std::vector<RequestResult>& results, double wall_s) {
  LoadLevel l;
  l.concurrency = concurrency;
  l.launched = results.size();
  l.wall_s = wall_s;
  std::vector<double> latency, ttft, itl, prompt, cached;
  double decode_tokens = 0, decode_s = 0;
  for (const RequestResult& r : results) {
    if (r.aborted) {
      ++l.aborted;
      l.generated_tokens += r.tokens;  // what it had delivered before the deadline cut it
      continue;
    }
    if (!r.ok) {
      ++l.failed;
      ++l.errors[r.error];
      continue;
    }
    ++l.succeeded;
    l.generated_tokens += r.tokens;
    latency.push_back(r.latency_s);
    if (r.first_token_s) ttft.push_back(*r.first_token_s);
    if (r.prompt_tokens) prompt.push_back(static_cast<double>(*r.prompt_tokens));
    if (r.cached_prompt_tokens) cached.push_back(static_cast<double>(*r.cached_prompt_tokens));
    if (r.tokens >= 2 && r.first_token_s && r.last_token_s && *r.last_token_s > *r.first_token_s) {
      const double span = *r.last_token_s - *r.first_token_s;
      itl.push_back(span / static_cast<double>(r.tokens - 1));
      decode_tokens += static_cast<double>(r.tokens - 1);
      decode_s += span;
    }
  }
  l.latency_s = describe(latency);
  l.ttft_s = describe(ttft);
  l.itl_s = describe(itl);
  if (!prompt.empty()) l.prompt_tokens_mean = mean(prompt);
  if (!cached.empty()) l.cached_prompt_tokens_mean = mean(cached);
  if (wall_s > 0) {
    l.requests_per_second = static_cast<double>(l.succeeded) / wall_s;
    l.tokens_per_second = static_cast<double>(l.generated_tokens) / wall_s;
  }
  if (l.succeeded + l.failed > 0) l.success_rate = static_cast<double>(l.succeeded) / static_cast<double>(l.succeeded + l.failed);
  if (decode_s > 0) l.stream_tokens_per_second = decode_tokens / decode_s;
  return l;
}

LoadLevel run_load_level(const HttpOptions& options, int concurrency) {
  check_options(options);
  init_curl_once();
  LevelRun run(options, concurrency);
  return run.run();
}

HttpReport run_http_load(const HttpOptions& options) {
  check_options(options);
  init_curl_once();
  HttpReport report;
  report.url = chat_endpoint(options.url);
  report.model = served_model(options);
  report.prompt_tokens = options.prompt_tokens;
  report.max_tokens = options.max_tokens;
  report.requests = options.requests;
  report.duration = options.duration;
  for (int c : options.concurrency) {
    const std::optional<DecodeCounters> before = decode_counters(options);
    LoadLevel level = run_load_level(options, c);
    set_engine_rates(level, before, decode_counters(options));
    report.levels.push_back(std::move(level));
  }
  return report;
}

// ---- an agent conversation ----------------------------------------------------------------------

namespace {

constexpr std::string_view kAgentSystem =
    "You are a phone operating agent. You see the phone's current screen as an image and a task from the user. "
    "Think about what is on the screen, then answer with exactly one action: reasoning inside <think></think>, "
    "the action inside <answer></answer>.\nActions: do(action=\"Launch\", app=\"name\") opens an app; "
    "do(action=\"Tap\", element=[x,y]) taps a point, coordinates 0..999 across the screen; do(action=\"Type\", "
    "text=\"...\") types into the focused field; do(action=\"Swipe\", start=[x1,y1], end=[x2,y2]); "
    "do(action=\"Back\"); do(action=\"Home\"); do(action=\"Long Press\", element=[x,y]); do(action=\"Double Tap\", "
    "element=[x,y]); do(action=\"Wait\", duration=\"2 seconds\"); do(action=\"Take_over\", message=\"...\") hands "
    "over for a login or a payment; finish(message=\"...\") ends the task.\nRules: 1. Check that the current app "
    "is the one the task needs; if not, launch it. 2. If the screen is still loading, wait at most three times, "
    "then go back and try another way. 3. If a page does not show what you need, swipe to look for it. 4. When a "
    "search gives nothing, go back one level and search again with fewer words. 5. Check the result of every "
    "action on the next screen before the next one. 6. When several items match, pick the one that fits the task "
    "best. 7. Never type passwords or pay: take over instead. 8. One action per step, nothing after the closing "
    "answer tag. 9. Do not repeat an action that did not work more than twice. 10. Finish as soon as the task is "
    "done, saying what was achieved.\nScreens come from many apps: shopping, maps, food delivery, music, chat, "
    "settings and travel. Buttons may be icons without text; read their shape and position. Dialogs may cover "
    "the screen: close them first unless they belong to the task. Text may be in several languages.";

std::string base64(const std::vector<uint8_t>& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t n = (uint32_t{bytes[i]} << 16) | (i + 1 < bytes.size() ? uint32_t{bytes[i + 1]} << 8 : 0) |
                       (i + 2 < bytes.size() ? bytes[i + 2] : 0);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

// The answer of step k as the agent re-renders it into the history (about 80 tokens of text).
std::string agent_answer(size_t step) {
  return fmt::format("<think>The screen shows the list the task needs; the entry to open is in row {}, under the "
                     "search field, and nothing covers it. Tapping it should show its details on the next screen, "
                     "where the setting can be changed.</think><answer>do(action=\"Tap\", element=[500,{}])</answer>",
                     step + 2, 300 + 60 * step);
}

std::optional<double> metric(const AgentOptions& o, std::string_view name) {
  std::string root = api_base(o.url);
  root.resize(root.size() - 3);  // without "/v1"
  long status = 0;
  CURLcode rc = CURLE_OK;
  HttpOptions h;
  h.url = o.url;
  h.api_key = o.api_key;
  h.connect_timeout = o.connect_timeout;
  const std::string text = http_get(h, root + "/metrics", status, rc);
  if (rc != CURLE_OK || status != 200) return std::nullopt;
  return prometheus_value(text, name);
}

}  // namespace

bool wait_ready(const std::string& url, std::chrono::milliseconds timeout, const std::function<bool()>& alive) {
  init_curl_once();
  HttpOptions h;
  h.url = url;
  h.connect_timeout = std::chrono::milliseconds(1000);
  std::string root = api_base(url);
  root.resize(root.size() - 3);
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (alive && !alive()) return false;
    long status = 0;
    CURLcode rc = CURLE_OK;
    http_get(h, root + "/ready", status, rc);
    if (rc == CURLE_OK && status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

AgentReport run_agent_steps(const AgentOptions& o) {
  if (o.steps == 0) throw Error(kExitUsage, "--agent-steps: at least 1");
  if (o.screenshots.empty() || o.screenshots.size() != o.screenshot_types.size())
    throw Error(kExitUsage, "--agent-steps needs at least one --image (a PNG or JPEG screenshot)");
  init_curl_once();
  HttpOptions h;
  h.url = o.url;
  h.api_key = o.api_key;
  h.connect_timeout = o.connect_timeout;
  AgentReport report;
  report.url = chat_endpoint(o.url);
  report.model = o.model.empty() ? served_model(h) : o.model;
  ListPtr headers = request_headers(o.api_key);
  Slot slot(report.url, headers.get(), o.connect_timeout);
  json history = json::array({{{"role", "system"}, {"content", kAgentSystem}}});
  for (size_t step = 0; step < o.steps; ++step) {
    const size_t shot = step % o.screenshots.size();
    const std::string text = fmt::format("{}** Screen Info **\n\n{{\"current_app\": \"Settings\", \"step\": {}}}",
                                         step == 0 ? "Task: turn on dark mode in Settings.\n\n" : "", step + 1);
    const std::string url = fmt::format("data:{};base64,{}", o.screenshot_types[shot], base64(o.screenshots[shot]));
    json messages = history;
    messages.push_back({{"role", "user"},
                        {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                                                 {{"type", "text"}, {"text", text}}})}});
    json body{{"messages", messages},       {"max_tokens", o.answer_tokens}, {"temperature", 0},
              {"top_p", 0.85},              {"frequency_penalty", 0.2},      {"stream", true},
              {"stream_options", {{"include_usage", true}}}};
    if (!report.model.empty()) body["model"] = report.model;
    const std::string payload = body.dump();
    report.request_bytes = payload.size();
    const std::optional<double> encode_before = metric(o, "autoglm_image_encode_seconds_total");
    slot.start(payload);
    const CURLcode rc = curl_easy_perform(slot.easy());
    AgentStep s;
    s.step = step + 1;
    s.result = slot.finish(rc);
    if (const auto after = metric(o, "autoglm_image_encode_seconds_total"); after && encode_before)
      s.encode_s = *after - *encode_before;
    const RequestResult& r = s.result;
    // from the first token to the end of the stream: a fast server's deltas can arrive in bursts
    if (r.first_token_s && r.tokens > 1 && r.latency_s > *r.first_token_s)
      s.decode_tokens_per_second = static_cast<double>(r.tokens - 1) / (r.latency_s - *r.first_token_s);
    report.steps.push_back(std::move(s));
    if (!r.ok)
      throw Error(kExitCheckFailed, fmt::format("agent step {}: the request failed ({}); see the server's log", step + 1,
                                                r.error));
    // the agent's history: this turn's text without its screenshot, then its answer re-rendered
    history.push_back({{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", text}}})}});
    history.push_back({{"role", "assistant"}, {"content", agent_answer(step)}});
  }
  return report;
}

}  // namespace autoglm::benchmark
