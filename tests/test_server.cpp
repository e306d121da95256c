// `autoglm-deploy serve` as a user runs it: the real binary on a loopback port with the tiny fixture
// models, spoken to over HTTP. One server per suite (a suite = one configuration); stopped with
// SIGTERM at the end, which must exit 0.
#include <algorithm>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoglm/kernels.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using autoglm::test::ServerProcess;
using autoglm::test::TempDir;

constexpr const char* kName = "tiny";  // service.name = the model id of the API

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

fs::path model_file(const std::string& name) { return autoglm::test::fixtures_dir() / "models" / name; }

// ---- one server process ----------------------------------------------------------------------------

struct ServerSetup {
  std::string model = "tiny-glm4-Q8_0.gguf";
  int max_batch_size = 4;
  std::string service_extra;  // YAML lines under `service:`, each indented by two spaces
  std::string model_extra;    // under `model:`
  std::string runtime_extra;  // under `runtime:`
  std::string sections;       // whole sections after the others ("vision:\n  max_pixels: 100000\n")
};

class RunningServer {
 public:
  // Starts the binary on a free port and waits for /ready; a port taken in between is retried.
  // On failure `error` says why (with the server's output).
  explicit RunningServer(const ServerSetup& setup) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = autoglm::test::free_port();
      const fs::path config = dir_ / "service.yaml";
      autoglm::test::write_file(config, "service:\n"
                                        "  name: " + std::string(kName) + "\n"
                                        "  host: 127.0.0.1\n"
                                        "  port: " + std::to_string(port_) + "\n" +
                                            setup.service_extra +
                                            "model:\n"
                                            "  path: " + model_file(setup.model).string() + "\n" +
                                            setup.model_extra +
                                            "runtime:\n"
                                            "  backend: cpu\n"
                                            "  threads: 2\n"
                                            "  max_batch_size: " + std::to_string(setup.max_batch_size) + "\n"
                                            "  kv_cache_budget: 64MiB\n" +
                                            setup.runtime_extra + setup.sections);
      proc_ = std::make_unique<ServerProcess>(std::vector<std::string>{"serve", "--config", config.string()},
                                              dir_ / ("server-" + std::to_string(attempt) + ".log"));
      if (proc_->wait_ready(port_, 120s)) return;
      const bool exited = !proc_->running();
      const std::string out = proc_->output();
      if (exited && contains(out, "cannot listen")) continue;  // someone took the port: another one
      error = (exited ? "the server exited before /ready said 200:\n" : "/ready did not say 200 within 120 s:\n") + out;
      proc_.reset();
      return;
    }
    error = "no free port after 5 attempts";
    proc_.reset();
  }

  bool ok() const { return proc_ != nullptr; }
  int port() const { return port_; }
  ServerProcess& process() { return *proc_; }
  std::string output() const { return proc_ ? proc_->output() : error; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(10s);
    c.set_read_timeout(120s);
    c.set_write_timeout(30s);
    return c;
  }
  // SIGTERM, then the exit code (nullopt: still running after a minute).
  std::optional<int> stop() {
    if (!proc_) return std::nullopt;
    proc_->signal(SIGTERM);
    return proc_->wait_exit(60s);
  }
  std::string error;

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<ServerProcess> proc_;
};

// ---- HTTP helpers -----------------------------------------------------------------------------------

json parse(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  return j;
}

httplib::Result post(const RunningServer& s, const std::string& path, const json& body,
                     const httplib::Headers& headers = {}) {
  httplib::Client c = s.client();
  return c.Post(path.c_str(), headers, body.dump(), "application/json");
}

httplib::Result post_raw(const RunningServer& s, const std::string& path, const std::string& body,
                         const httplib::Headers& headers = {}) {
  httplib::Client c = s.client();
  return c.Post(path.c_str(), headers, body, "application/json");
}

httplib::Result get(const RunningServer& s, const std::string& path, const httplib::Headers& headers = {}) {
  httplib::Client c = s.client();
  return c.Get(path.c_str(), headers);
}

json chat_request(const std::string& user, int max_tokens, double temperature = 0.0) {
  return json{{"model", kName},
              {"messages", json::array({{{"role", "user"}, {"content", user}}})},
              {"max_tokens", max_tokens},
              {"temperature", temperature}};
}

// A 200 answer's JSON body; fails the test (with the body) otherwise.
json ok_json(const httplib::Result& r) {
  if (!r) {
    ADD_FAILURE() << "no HTTP answer: " << httplib::to_string(r.error());
    return json();
  }
  EXPECT_EQ(r->status, 200) << r->body;
  json j = parse(r->body);
  EXPECT_FALSE(j.is_discarded()) << r->body;
  return j;
}

// Checks the OpenAI error shape and returns the "error" object.
json expect_error(const httplib::Result& r, int status, const char* what) {
  if (!r) {
    ADD_FAILURE() << what << ": no HTTP answer: " << httplib::to_string(r.error());
    return json::object();
  }
  EXPECT_EQ(r->status, status) << what << ": " << r->body;
  EXPECT_TRUE(contains(r->get_header_value("Content-Type"), "application/json")) << what;
  const json j = parse(r->body);
  if (j.is_discarded() || !j.is_object() || !j.contains("error") || !j["error"].is_object()) {
    ADD_FAILURE() << what << ": not an OpenAI error body: " << r->body;
    return json::object();
  }
  const json& e = j["error"];
  EXPECT_TRUE(e.contains("message") && e["message"].is_string() && !e["message"].get<std::string>().empty()) << what << ": " << r->body;
  EXPECT_TRUE(e.contains("type") && e["type"].is_string()) << what << ": " << r->body;
  EXPECT_TRUE(e.contains("param") && (e["param"].is_string() || e["param"].is_null())) << what << ": " << r->body;
  EXPECT_TRUE(e.contains("code") && (e["code"].is_string() || e["code"].is_null())) << what << ": " << r->body;
  return e;
}

// The body of a `text/event-stream` answer as events: each must be "data: <payload>\n\n".
std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      ADD_FAILURE() << "an event without its blank line: " << body.substr(pos);
      break;
    }
    const std::string event = body.substr(pos, end - pos);
    if (event.rfind("data: ", 0) != 0) ADD_FAILURE() << "not a data event: " << event;
    else out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

struct Streamed {
  std::vector<json> chunks;  // every event but [DONE], parsed
  bool done = false;         // the last event was [DONE]
  std::string text;          // concatenated delta content (chat) or text (completions)
  int finish_reasons = 0;    // chunks with a non-null finish_reason
  std::string finish_reason;
  std::optional<json> usage; // from a chunk with empty choices
};

Streamed parse_stream(const std::vector<std::string>& payloads, bool chat) {
  Streamed s;
  for (size_t i = 0; i < payloads.size(); ++i) {
    if (payloads[i] == "[DONE]") {
      EXPECT_EQ(i + 1, payloads.size()) << "[DONE] must be the last event";
      s.done = true;
      continue;
    }
    const json j = parse(payloads[i]);
    if (j.is_discarded()) {
      ADD_FAILURE() << "an event that is not JSON: " << payloads[i];
      continue;
    }
    s.chunks.push_back(j);
    EXPECT_EQ(j.value("object", ""), chat ? "chat.completion.chunk" : "text_completion") << payloads[i];
    EXPECT_EQ(j.value("model", ""), kName) << payloads[i];
    if (!j.contains("choices") || !j["choices"].is_array()) {
      ADD_FAILURE() << "a chunk without choices: " << payloads[i];
      continue;
    }
    if (j["choices"].empty()) {
      if (j.contains("usage") && j["usage"].is_object()) s.usage = j["usage"];
      continue;
    }
    const json& c = j["choices"][0];
    if (chat) {
      const json& d = c["delta"];
      if (d.contains("content") && d["content"].is_string()) s.text += d["content"].get<std::string>();
    } else if (c.contains("text") && c["text"].is_string()) {
      s.text += c["text"].get<std::string>();
    }
    if (c.contains("finish_reason") && !c["finish_reason"].is_null()) {
      ++s.finish_reasons;
      s.finish_reason = c["finish_reason"].get<std::string>();
    }
  }
  return s;
}

// A raw HTTP/1.1 connection, for what httplib::Client cannot do: read a streamed answer one event at
// a time and walk away in the middle.
class RawStream {
 public:
  // Sends the request; reads the response head unless `read_head` is false (a client that leaves
  // before any answer).
  RawStream(int port, const std::string& path, const std::string& body, bool read_head = true) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      error_ = std::string("connect: ") + std::strerror(errno);
      return;
    }
    const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(body.size()) +
                            "\r\nConnection: close\r\n\r\n" + body;
    size_t sent = 0;
    while (sent < req.size()) {
      const ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        error_ = std::string("send: ") + std::strerror(errno);
        return;
      }
      sent += static_cast<size_t>(n);
    }
    if (!read_head) return;
    // the head: status line and headers
    size_t end;
    while ((end = raw_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(60s)) {
        error_ = "no complete response head: " + raw_;
        return;
      }
    const std::string head = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    if (head.rfind("HTTP/1.1 ", 0) == 0) status_ = std::atoi(head.substr(9, 3).c_str());
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    chunked_ = contains(lower, "transfer-encoding: chunked");
    if (const size_t cl = lower.find("content-length: "); cl != std::string::npos)
      length_ = std::strtoull(lower.c_str() + cl + 16, nullptr, 10);
  }
  ~RawStream() { close(); }
  RawStream(const RawStream&) = delete;
  RawStream& operator=(const RawStream&) = delete;

  const std::string& error() const { return error_; }
  int status() const { return status_; }

  // The next "data: ..." event (without its blank line); nullopt at the end of the body.
  std::optional<std::string> next_event(std::chrono::milliseconds timeout = 60s) {
    for (;;) {
      decode();
      if (const size_t end = body_.find("\n\n"); end != std::string::npos) {
        std::string event = body_.substr(0, end);
        body_.erase(0, end + 2);
        return event;
      }
      if (ended_ || fd_ < 0) return std::nullopt;
      if (!fill(timeout)) {
        ended_ = true;
        decode();
        if (!body_.empty()) {  // a last event without its blank line
          std::string rest = std::move(body_);
          body_.clear();
          return rest;
        }
        return std::nullopt;
      }
    }
  }
  // Everything left of the body (a non-streamed answer).
  std::string rest(std::chrono::milliseconds timeout = 60s) {
    while (!ended_ && fd_ >= 0 && fill(timeout)) decode();
    decode();
    std::string out = std::move(body_);
    body_.clear();
    return out;
  }
  bool complete() const { return ended_ && saw_last_chunk_; }  // chunked body ended properly
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  bool fill(std::chrono::milliseconds timeout) {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }
  // Moves complete chunks (or Content-Length bytes) from raw_ to body_.
  void decode() {
    if (!chunked_) {
      body_ += raw_;
      taken_ += raw_.size();
      raw_.clear();
      if (length_ && taken_ >= *length_) ended_ = true;
      return;
    }
    for (;;) {
      const size_t eol = raw_.find("\r\n");
      if (eol == std::string::npos) return;
      const size_t size = std::strtoull(raw_.c_str(), nullptr, 16);
      if (size == 0) {
        saw_last_chunk_ = ended_ = true;
        raw_.clear();
        return;
      }
      if (raw_.size() < eol + 2 + size + 2) return;
      body_ += raw_.substr(eol + 2, size);
      raw_.erase(0, eol + 2 + size + 2);
    }
  }

  int fd_ = -1;
  std::string error_;
  int status_ = 0;
  bool chunked_ = false, ended_ = false, saw_last_chunk_ = false;
  std::optional<size_t> length_;
  size_t taken_ = 0;
  std::string raw_, body_;
};

// The value of a metric line "<name> value" (name may include its labels); nullopt when absent.
// (No std::regex in this file: GCC 12 warns inside <regex> at -O2 with sanitizers.)
std::optional<double> metric(const std::string& text, const std::string& name) {
  const std::string start = name + " ";
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find('\n', at), text.size());
    if (text.compare(at, start.size(), start) == 0) return std::strtod(text.c_str() + at + start.size(), nullptr);
    at = end + 1;
  }
  return std::nullopt;
}

// At least `len` bytes of `text` from about `at`, widened to whole UTF-8 characters.
std::string stop_string_in(const std::string& text, size_t at, size_t len) {
  auto continuation = [&](size_t i) { return (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80; };
  while (at > 1 && continuation(at)) --at;
  while (at + len < text.size() && continuation(at + len)) ++len;
  return text.substr(at, len);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string metrics_text(const RunningServer& s) {
  const auto r = get(s, "/metrics");
  return r && r->status == 200 ? r->body : std::string();
}

// GET /metrics until its text contains `line` (for up to 2 s). A request is counted once its response has
// been written (its duration includes the write), so a client can hold the response a moment before the
// server's bookkeeping for it ends.
httplib::Result scrape_until(const RunningServer& s, const std::string& line) {
  httplib::Result r = get(s, "/metrics");
  for (int i = 0; i < 100 && r && r->status == 200 && !contains(r->body, line); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    r = get(s, "/metrics");
  }
  return r;
}

// Polls /metrics until no sequence runs and no KV block is held; false after `timeout`.
bool wait_idle(const RunningServer& s, std::chrono::milliseconds timeout, std::string* last = nullptr) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string text;
  for (;;) {
    text = metrics_text(s);
    if (metric(text, "autoglm_kv_cache_blocks_used") == 0.0 && metric(text, "autoglm_running_sequences") == 0.0 &&
        metric(text, "autoglm_queue_depth") == 0.0)
      break;
    if (std::chrono::steady_clock::now() >= until) {
      if (last) *last = text;
      return false;
    }
    std::this_thread::sleep_for(100ms);
  }
  if (last) *last = text;
  return true;
}

std::string content_of(const json& chat_response) {
  if (!chat_response.contains("choices") || chat_response["choices"].empty()) return "<no choices>";
  return chat_response["choices"][0]["message"].value("content", "<no content>");
}

// A chat prompt whose greedy answer runs `max_tokens` tokens without an end-of-text token (the
// fixtures have random weights: some prompts reach their EOS early, most loop forever). Greedy
// decoding is deterministic, so the same request streams at least that long. "" when none does.
std::string find_long_prompt(const RunningServer& s, int max_tokens) {
  for (const char* prompt : {"Keep talking forever", "count to 3", "Tell me a story", "a b c", "x", "1 2 3 4", "Go on",
                             "Lorem ipsum", "Once upon a time", "zzz"}) {
    const auto r = post(s, "/v1/chat/completions", chat_request(prompt, max_tokens));
    if (!r || r->status != 200) continue;
    const json j = parse(r->body);
    if (!j.is_discarded() && j["choices"][0].value("finish_reason", "") == "length" &&
        j["usage"].value("completion_tokens", 0) == max_tokens)
      return prompt;
  }
  return "";
}

// ---- one server per suite -------------------------------------------------------------------------

// The suite's server, started once for all its tests and stopped (SIGTERM, exit 0) after them.
template <class Setup>
class ServerSuite : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    if (autoglm::test::fixtures_dir().empty() || !fs::exists(model_file(Setup::setup().model))) return;
    server_ = std::make_unique<RunningServer>(Setup::setup());
  }
  static void TearDownTestSuite() {
    if (!server_) return;
    if (server_->ok()) {
      const std::optional<int> code = server_->stop();
      EXPECT_EQ(code, std::optional<int>(0)) << "SIGTERM must stop the server with exit code 0:\n" << server_->output();
    }
    server_.reset();
  }

 protected:
  void SetUp() override {
    AUTOGLM_REQUIRE_FIXTURES();
    ASSERT_TRUE(fs::exists(model_file(Setup::setup().model))) << model_file(Setup::setup().model);
    ASSERT_TRUE(server_ && server_->ok()) << (server_ ? server_->error : std::string("not started"));
  }
  static RunningServer& server() { return *server_; }

 private:
  static inline std::unique_ptr<RunningServer> server_;
};

// ================================================================================================
// The API server: batch of 16, the model's own context (512), CORS for one origin.
// ================================================================================================

struct ApiSetup {
  static ServerSetup setup() {
    ServerSetup s;
    s.max_batch_size = 16;
    s.service_extra = "  cors_origins: [\"https://app.example.com\"]\n";
    return s;
  }
};
using ServeApi = ServerSuite<ApiSetup>;

TEST_F(ServeApi, HealthReadyAndModels) {
  const json health = ok_json(get(server(), "/health"));
  EXPECT_EQ(health.value("status", ""), "ok") << health;
  EXPECT_EQ(health.value("model", ""), kName) << health;
  EXPECT_TRUE(health.contains("version") && health["version"].is_string() && !health["version"].get<std::string>().empty()) << health;
  EXPECT_TRUE(health.contains("uptime_seconds") && health["uptime_seconds"].is_number() &&
              health["uptime_seconds"].get<double>() >= 0) << health;

  const auto ready = get(server(), "/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;

  const json models = ok_json(get(server(), "/v1/models"));
  EXPECT_EQ(models.value("object", ""), "list") << models;
  // service.name first (the id of every response), then the model's own name (GGUF general.name)
  ASSERT_TRUE(models.contains("data") && models["data"].is_array() && models["data"].size() == 2) << models;
  const json card = models["data"][0];
  EXPECT_EQ(card.value("id", ""), kName);
  EXPECT_EQ(models["data"][1].value("id", ""), "tiny-glm4-seed13") << models;
  EXPECT_EQ(models["data"][1].value("root", ""), kName) << models;
  json own = chat_request("Hello", 2);
  own["model"] = "tiny-glm4-seed13";
  const json answer = ok_json(post(server(), "/v1/chat/completions", own));
  EXPECT_EQ(answer.value("model", ""), kName) << "responses report the first name: " << answer;
  EXPECT_EQ(card.value("object", ""), "model");
  EXPECT_EQ(card.value("max_model_len", 0), 512) << "the fixture's context length: " << card;

  const json one = ok_json(get(server(), std::string("/v1/models/") + kName));
  EXPECT_EQ(one.value("id", ""), kName) << one;
  const json e = expect_error(get(server(), "/v1/models/gpt-4"), 404, "another model's card");
  EXPECT_EQ(e.value("code", ""), "model_not_found") << e;
}

TEST_F(ServeApi, ChatCompletionShapeAndUsage) {
  const json r = ok_json(post(server(), "/v1/chat/completions", chat_request("Hello there", 5)));
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r.value("id", "").rfind("chatcmpl-", 0), 0u) << r;
  EXPECT_EQ(r.value("object", ""), "chat.completion") << r;
  EXPECT_TRUE(r.contains("created") && r["created"].is_number_integer() && r["created"].get<int64_t>() > 1'600'000'000) << r;
  EXPECT_EQ(r.value("model", ""), kName) << r;
  ASSERT_TRUE(r.contains("choices") && r["choices"].is_array() && r["choices"].size() == 1) << r;
  const json& c = r["choices"][0];
  EXPECT_EQ(c.value("index", -1), 0) << r;
  EXPECT_EQ(c["message"].value("role", ""), "assistant") << r;
  EXPECT_TRUE(c["message"].contains("content") && c["message"]["content"].is_string()) << r;
  EXPECT_EQ(c.value("finish_reason", ""), "length") << r;
  const json& u = r["usage"];
  EXPECT_EQ(u.value("completion_tokens", -1), 5) << r;
  EXPECT_GT(u.value("prompt_tokens", 0), 0) << r;
  EXPECT_EQ(u.value("total_tokens", -1), u.value("prompt_tokens", 0) + u.value("completion_tokens", 0)) << r;
}

TEST_F(ServeApi, GreedyAndSeededSamplingAreReproducible) {
  const json greedy = chat_request("Tell me a story", 24, 0.0);
  const std::string a = content_of(ok_json(post(server(), "/v1/chat/completions", greedy)));
  const std::string b = content_of(ok_json(post(server(), "/v1/chat/completions", greedy)));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b) << "temperature 0 twice";

  json seeded = chat_request("Tell me a story", 24, 1.0);
  seeded["seed"] = 1234;
  const std::string c = content_of(ok_json(post(server(), "/v1/chat/completions", seeded)));
  const std::string d = content_of(ok_json(post(server(), "/v1/chat/completions", seeded)));
  EXPECT_FALSE(c.empty());
  EXPECT_EQ(c, d) << "the same seed at temperature 1 twice";
}

TEST_F(ServeApi, CompletionsWithTextAndTokenIdsAndLogprobs) {
  const json text = ok_json(post(server(), "/v1/completions",
                                 {{"model", kName}, {"prompt", "The quick brown fox"}, {"max_tokens", 6}, {"temperature", 0}}));
  EXPECT_EQ(text.value("id", "").rfind("cmpl-", 0), 0u) << text;
  EXPECT_EQ(text.value("object", ""), "text_completion") << text;
  ASSERT_TRUE(text.contains("choices") && text["choices"].size() == 1) << text;
  EXPECT_TRUE(text["choices"][0]["text"].is_string()) << text;
  EXPECT_EQ(text["usage"].value("completion_tokens", -1), 6) << text;

  const json ids = ok_json(post(server(), "/v1/completions",
                                {{"prompt", json::array({1, 2, 3, 4, 5})}, {"max_tokens", 3}, {"temperature", 0}}));
  EXPECT_EQ(ids["usage"].value("prompt_tokens", -1), 5) << "token ids are taken as given: " << ids;
  EXPECT_EQ(ids["usage"].value("completion_tokens", -1), 3) << ids;

  const json lp = ok_json(post(server(), "/v1/completions",
                               {{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"temperature", 0}, {"logprobs", 2}}));
  ASSERT_TRUE(lp.contains("choices") && lp["choices"].size() == 1) << lp;
  const json& l = lp["choices"][0]["logprobs"];
  ASSERT_TRUE(l.is_object()) << lp;
  const size_t n = lp["usage"].value("completion_tokens", 0u);
  EXPECT_EQ(n, 4u) << lp;
  ASSERT_TRUE(l["tokens"].is_array() && l["token_logprobs"].is_array() && l["top_logprobs"].is_array()) << lp;
  EXPECT_EQ(l["tokens"].size(), n) << lp;
  EXPECT_EQ(l["token_logprobs"].size(), n) << lp;
  EXPECT_EQ(l["top_logprobs"].size(), n) << lp;
  std::string joined;
  for (size_t i = 0; i < l["tokens"].size(); ++i) {
    joined += l["tokens"][i].get<std::string>();
    EXPECT_LE(l["token_logprobs"][i].get<double>(), 0.0) << lp;
    EXPECT_TRUE(l["top_logprobs"][i].is_object()) << lp;
    EXPECT_EQ(l["top_logprobs"][i].size(), 2u) << "two alternatives per token: " << lp;
  }
  EXPECT_EQ(joined, lp["choices"][0]["text"].get<std::string>()) << "the tokens spell the text: " << lp;
}

TEST_F(ServeApi, ChatLogprobs) {
  json req = chat_request("Say something", 5);
  req["logprobs"] = true;
  req["top_logprobs"] = 3;
  const json r = ok_json(post(server(), "/v1/chat/completions", req));
  ASSERT_TRUE(r.contains("choices") && r["choices"].size() == 1) << r;
  const json& l = r["choices"][0]["logprobs"];
  ASSERT_TRUE(l.is_object() && l.contains("content") && l["content"].is_array()) << r;
  EXPECT_EQ(l["content"].size(), 5u) << r;
  for (const json& t : l["content"]) {
    ASSERT_TRUE(t["token"].is_string()) << t;
    ASSERT_TRUE(t["logprob"].is_number()) << t;
    EXPECT_LE(t["logprob"].get<double>(), 0.0) << t;
    ASSERT_TRUE(t["bytes"].is_array()) << t;
    const std::string tok = t["token"].get<std::string>();
    std::string bytes;
    for (const json& b : t["bytes"]) bytes.push_back(static_cast<char>(b.get<int>()));
    EXPECT_EQ(bytes, tok) << "bytes are the token's UTF-8: " << t;
    ASSERT_TRUE(t["top_logprobs"].is_array()) << t;
    ASSERT_EQ(t["top_logprobs"].size(), 3u) << t;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_LE(t["top_logprobs"][i]["logprob"].get<double>(), 0.0) << t;
      if (i) {
        EXPECT_GE(t["top_logprobs"][i - 1]["logprob"].get<double>(), t["top_logprobs"][i]["logprob"].get<double>())
            << "most probable first: " << t;
      }
    }
    // greedy: the chosen token is the most probable one
    EXPECT_NEAR(t["logprob"].get<double>(), t["top_logprobs"][0]["logprob"].get<double>(), 1e-5) << t;
  }
}

TEST_F(ServeApi, StopStringEndsTheAnswerBeforeIt) {
  const json base = chat_request("Write a long sentence", 40);
  const json full = ok_json(post(server(), "/v1/chat/completions", base));
  const std::string text = content_of(full);
  ASSERT_GE(text.size(), 8u) << "need some text to cut: " << full;
  // two bytes from the middle
  const std::string stop = stop_string_in(text, text.size() / 2, 2);
  const std::string expected = text.substr(0, text.find(stop));

  json req = base;
  req["stop"] = stop;
  const json cut = ok_json(post(server(), "/v1/chat/completions", req));
  EXPECT_EQ(content_of(cut), expected) << "stop " << json(stop) << " in " << json(text);
  EXPECT_EQ(cut["choices"][0].value("finish_reason", ""), "stop") << cut;

  req["stop"] = json::array({"zzzz-not-there", stop});
  const json cut2 = ok_json(post(server(), "/v1/chat/completions", req));
  EXPECT_EQ(content_of(cut2), expected) << "one of several stop strings";
}

TEST_F(ServeApi, ChatStreamingMatchesTheWholeAnswer) {
  const json req = chat_request("Stream this please", 12);
  const std::string whole = content_of(ok_json(post(server(), "/v1/chat/completions", req)));

  json sreq = req;
  sreq["stream"] = true;
  const auto r = post(server(), "/v1/chat/completions", sreq);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(contains(r->get_header_value("Content-Type"), "text/event-stream")) << r->get_header_value("Content-Type");
  const Streamed s = parse_stream(sse_payloads(r->body), true);
  EXPECT_TRUE(s.done) << "ends with data: [DONE]: " << r->body;
  ASSERT_FALSE(s.chunks.empty());
  const json& first = s.chunks.front();
  ASSERT_FALSE(first["choices"].empty()) << first;
  EXPECT_EQ(first["choices"][0]["delta"].value("role", ""), "assistant") << first;
  EXPECT_EQ(first.value("id", "").rfind("chatcmpl-", 0), 0u) << first;
  for (const json& c : s.chunks) EXPECT_EQ(c.value("id", ""), first.value("id", "")) << "one id per stream";
  EXPECT_EQ(s.text, whole) << r->body;
  EXPECT_EQ(s.finish_reasons, 1) << r->body;
  EXPECT_EQ(s.finish_reason, "length") << r->body;
  EXPECT_FALSE(s.usage) << "no usage chunk unless asked";

  sreq["stream_options"] = {{"include_usage", true}};
  const auto u = post(server(), "/v1/chat/completions", sreq);
  ASSERT_TRUE(u);
  ASSERT_EQ(u->status, 200) << u->body;
  const Streamed su = parse_stream(sse_payloads(u->body), true);
  EXPECT_TRUE(su.done) << u->body;
  EXPECT_EQ(su.text, whole);
  ASSERT_TRUE(su.usage) << "a final chunk with empty choices and usage: " << u->body;
  EXPECT_EQ(su.usage->value("completion_tokens", -1), 12) << u->body;
  EXPECT_EQ(su.usage->value("total_tokens", -1),
            su.usage->value("prompt_tokens", 0) + su.usage->value("completion_tokens", 0)) << u->body;
  ASSERT_GE(su.chunks.size(), 2u);
  EXPECT_TRUE(su.chunks.back()["choices"].empty()) << "usage comes last: " << u->body;
}

TEST_F(ServeApi, CompletionStreamingMatchesTheWholeAnswer) {
  const json req{{"prompt", "Streams of text"}, {"max_tokens", 10}, {"temperature", 0}};
  const json whole = ok_json(post(server(), "/v1/completions", req));
  ASSERT_TRUE(whole.contains("choices") && !whole["choices"].empty()) << whole;

  json sreq = req;
  sreq["stream"] = true;
  sreq["stream_options"] = {{"include_usage", true}};
  const auto r = post(server(), "/v1/completions", sreq);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Streamed s = parse_stream(sse_payloads(r->body), false);
  EXPECT_TRUE(s.done) << r->body;
  EXPECT_EQ(s.text, whole["choices"][0]["text"].get<std::string>()) << r->body;
  EXPECT_EQ(s.finish_reasons, 1) << r->body;
  EXPECT_EQ(s.finish_reason, "length") << r->body;
  ASSERT_TRUE(s.usage) << r->body;
  EXPECT_EQ(s.usage->value("completion_tokens", -1), 10) << r->body;
  for (const json& c : s.chunks) EXPECT_EQ(c.value("id", "").rfind("cmpl-", 0), 0u) << c;
}

TEST_F(ServeApi, Infer) {
  const json r = ok_json(post(server(), "/infer", {{"prompt", "Hello"}, {"max_tokens", 4}, {"temperature", 0}}));
  ASSERT_TRUE(r.is_object());
  EXPECT_TRUE(r.contains("text") && r["text"].is_string()) << r;
  ASSERT_TRUE(r.contains("tokens") && r["tokens"].is_array()) << r;
  EXPECT_EQ(r["tokens"].size(), 4u) << r;
  for (const json& t : r["tokens"]) EXPECT_TRUE(t.is_number_integer() && t.get<int64_t>() >= 0 && t.get<int64_t>() < 2048) << r;
  EXPECT_EQ(r.value("finish_reason", ""), "length") << r;
  EXPECT_EQ(r["usage"].value("completion_tokens", -1), 4) << r;
  EXPECT_EQ(r["usage"].value("total_tokens", -1), r["usage"].value("prompt_tokens", 0) + 4) << r;
}

TEST_F(ServeApi, BadRequestsGetOpenAiErrors) {
  const std::string chat = "/v1/chat/completions";
  expect_error(post_raw(server(), chat, "{\"messages\": [}"), 400, "malformed JSON");
  expect_error(post_raw(server(), chat, "[1, 2, 3]"), 400, "a body that is not an object");

  json e = expect_error(post(server(), chat, {{"model", kName}}), 400, "no messages");
  EXPECT_EQ(e.value("param", ""), "messages") << e;

  json req = chat_request("hi", 4);
  req["max_tokens"] = -1;
  e = expect_error(post(server(), chat, req), 400, "negative max_tokens");
  EXPECT_EQ(e.value("param", ""), "max_tokens") << e;

  req = chat_request("hi", 4);
  req["temperature"] = "hot";
  e = expect_error(post(server(), chat, req), 400, "temperature 'hot'");
  EXPECT_EQ(e.value("param", ""), "temperature") << e;

  const std::string bad_utf8 = "{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xC3\x28 \xFF\xFE\"}], \"max_tokens\": 2}";
  expect_error(post_raw(server(), chat, bad_utf8), 400, "invalid UTF-8 in a string");

  req = chat_request("hi", 4);
  req["n"] = 2;
  e = expect_error(post(server(), chat, req), 400, "n = 2");
  EXPECT_EQ(e.value("param", ""), "n") << e;

  req = chat_request("hi", 4);
  req["model"] = "gpt-4o";
  e = expect_error(post(server(), chat, req), 404, "another model");
  EXPECT_EQ(e.value("code", ""), "model_not_found") << e;

  expect_error(get(server(), "/no/such/path"), 404, "unknown path");
  expect_error(post(server(), "/v1/no-such-endpoint", json::object()), 404, "unknown API path");
}

TEST_F(ServeApi, RequestsLongerThanTheContextAreRefused) {
  const json models = ok_json(get(server(), "/v1/models"));
  const size_t context = models["data"][0].value("max_model_len", 0u);
  ASSERT_GT(context, 8u) << models;

  json ids = json::array();
  for (size_t i = 0; i < context; ++i) ids.push_back(static_cast<int>(100 + i % 500));
  json e = expect_error(post(server(), "/v1/completions", {{"prompt", ids}, {"max_tokens", 1}}), 400,
                        "a prompt of context_length tokens");
  EXPECT_EQ(e.value("code", ""), "context_length_exceeded") << e;

  e = expect_error(post(server(), "/v1/chat/completions", chat_request("hi", static_cast<int>(context))), 400,
                   "max_tokens = the whole context");
  EXPECT_EQ(e.value("code", ""), "context_length_exceeded") << e;
  EXPECT_EQ(e.value("param", ""), "max_tokens") << e;

  // what fits is served: a prompt of a few tokens plus the rest of the context
  json fits = json::array({1, 2, 3, 4});
  const auto r = post(server(), "/v1/completions",
                      {{"prompt", fits}, {"max_tokens", context - 4}, {"temperature", 0}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << "prompt + max_tokens = the context fits: " << r->body;
}

TEST_F(ServeApi, MetricsInPrometheusFormat) {
  ok_json(post(server(), "/v1/chat/completions", chat_request("metrics please", 3)));
  expect_error(get(server(), "/no/such/page"), 404, "unknown path");
  expect_error(post_raw(server(), "/v1/completions", "nope"), 400, "malformed JSON");
  const auto r = scrape_until(server(), R"(autoglm_requests_total{endpoint="/v1/completions",status="400"})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/plain", 0), 0u) << r->get_header_value("Content-Type");
  const std::string& m = r->body;
  EXPECT_GE(metric(m, R"(autoglm_requests_total{endpoint="/v1/chat/completions",status="200"})").value_or(0), 1) << m;
  EXPECT_TRUE(contains(m, "autoglm_requests_total{endpoint=\"other\",status=\"404\"}")) << m;
  EXPECT_TRUE(contains(m, "autoglm_requests_total{endpoint=\"/v1/completions\",status=\"400\"}")) << m;
  for (const char* name :
       {"autoglm_request_duration_seconds_bucket{", "autoglm_request_duration_seconds_sum", "autoglm_request_duration_seconds_count",
        "# TYPE autoglm_request_duration_seconds histogram", "autoglm_time_to_first_token_seconds_bucket",
        "# TYPE autoglm_time_to_first_token_seconds histogram", "autoglm_prompt_tokens_total", "autoglm_generation_tokens_total",
        "autoglm_queue_depth", "autoglm_running_sequences", "autoglm_kv_cache_blocks_capacity", "autoglm_kv_cache_blocks_used"})
    EXPECT_TRUE(contains(m, name)) << name << " missing:\n" << m;
  EXPECT_GT(metric(m, "autoglm_prompt_tokens_total").value_or(0), 0) << m;
  EXPECT_GE(metric(m, "autoglm_generation_tokens_total").value_or(0), 3) << m;
  EXPECT_GT(metric(m, "autoglm_kv_cache_blocks_capacity").value_or(0), 0) << m;
  EXPECT_GE(metric(m, "autoglm_time_to_first_token_seconds_count").value_or(0), 1) << m;
  // the engine's own decode rate: steps that only generated, their tokens and time
  const double steps = metric(m, "autoglm_decode_steps_total").value_or(0);
  EXPECT_GE(steps, 2) << "a 3-token answer takes at least 2 steps after its prompt's\n" << m;
  EXPECT_GE(metric(m, "autoglm_decode_step_tokens_total").value_or(0), steps) << m;
  const double decode_s = metric(m, "autoglm_decode_step_seconds_total").value_or(0);
  EXPECT_GT(decode_s, 0) << m;
  EXPECT_GT(metric(m, "autoglm_engine_step_seconds_total").value_or(0), decode_s) << "prompt steps count too\n" << m;
}

TEST_F(ServeApi, RequestIdIsEchoedOrMade) {
  httplib::Client c = server().client();
  const auto given = c.Get("/v1/models", {{"X-Request-Id", "my-trace-42"}});
  ASSERT_TRUE(given);
  EXPECT_EQ(given->get_header_value("X-Request-Id"), "my-trace-42");
  const auto made = c.Post("/v1/chat/completions", chat_request("id?", 2).dump(), "application/json");
  ASSERT_TRUE(made);
  EXPECT_EQ(made->status, 200);
  EXPECT_FALSE(made->get_header_value("X-Request-Id").empty());
  const auto other = c.Get("/health");
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->get_header_value("X-Request-Id").empty());
  EXPECT_NE(other->get_header_value("X-Request-Id"), made->get_header_value("X-Request-Id")) << "one id per request";
  // an id that cannot go into a log line as given is replaced
  const auto bad = c.Get("/health", {{"X-Request-Id", "two words"}});
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->get_header_value("X-Request-Id").empty());
  EXPECT_NE(bad->get_header_value("X-Request-Id"), "two words");
  // errors carry it too
  const auto error = c.Post("/v1/chat/completions", {{"X-Request-Id", "err-7"}}, "{", "application/json");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->status, 400);
  EXPECT_EQ(error->get_header_value("X-Request-Id"), "err-7");
}

TEST_F(ServeApi, CorsPreflightForAllowedOriginsOnly) {
  httplib::Client c = server().client();
  const auto ok = c.Options("/v1/chat/completions", {{"Origin", "https://app.example.com"},
                                                     {"Access-Control-Request-Method", "POST"},
                                                     {"Access-Control-Request-Headers", "authorization, content-type"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 204);
  EXPECT_EQ(ok->get_header_value("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_TRUE(contains(ok->get_header_value("Access-Control-Allow-Methods"), "POST"));

  const auto other = c.Options("/v1/chat/completions", {{"Origin", "https://evil.example.com"},
                                                        {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->has_header("Access-Control-Allow-Origin")) << other->get_header_value("Access-Control-Allow-Origin");

  // the real request from the allowed origin carries the header too
  const auto get_ok = c.Get("/v1/models", {{"Origin", "https://app.example.com"}});
  ASSERT_TRUE(get_ok);
  EXPECT_EQ(get_ok->get_header_value("Access-Control-Allow-Origin"), "https://app.example.com");
}

TEST_F(ServeApi, BatchingDoesNotChangeGreedyResults) {
  constexpr int kRequests = 16;
  std::vector<json> requests;
  for (int i = 0; i < kRequests; ++i) requests.push_back(chat_request("count to " + std::to_string(i + 1), 16));
  std::vector<std::string> alone(kRequests);
  for (int i = 0; i < kRequests; ++i) alone[i] = content_of(ok_json(post(server(), "/v1/chat/completions", requests[i])));

  std::vector<std::string> together(kRequests);
  std::vector<int> status(kRequests, 0);
  std::vector<std::string> failure(kRequests);
  std::atomic<int> arrived{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i)
    threads.emplace_back([&, i] {
      httplib::Client c = server().client();
      ++arrived;
      while (arrived < kRequests) std::this_thread::yield();  // start together
      auto r = c.Post("/v1/chat/completions", requests[i].dump(), "application/json");
      if (!r) {
        // Seen twice in full parallel suite runs and never alone: the connection of one of the 16
        // ended without a response ("Read"). Not what this test is about (the answers are), so one
        // retry, said on stderr so that the next occurrence is visible; the cause is still open.
        std::fprintf(stderr, "request %d: no response (%s), retried once\n", i, httplib::to_string(r.error()).c_str());
        r = c.Post("/v1/chat/completions", requests[i].dump(), "application/json");
      }
      if (!r) {
        failure[i] = httplib::to_string(r.error());
        return;
      }
      status[i] = r->status;
      const json j = parse(r->body);
      together[i] = j.is_discarded() ? r->body : content_of(j);
    });
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(status[i], 200) << "request " << i << ": " << failure[i];
    EXPECT_EQ(together[i], alone[i]) << "request " << i << " (\"count to " << i + 1 << "\"): batched vs alone";
  }
}

TEST_F(ServeApi, StreamingHonoursStopStrings) {
  const json base = chat_request("Write a long sentence", 40);
  const std::string text = content_of(ok_json(post(server(), "/v1/chat/completions", base)));
  ASSERT_GE(text.size(), 8u);
  // a stop string from the last third: the stream must hold back text that may start it
  const std::string stop = stop_string_in(text, text.size() * 2 / 3, 3);
  const std::string expected = text.substr(0, text.find(stop));

  json req = base;
  req["stop"] = stop;
  req["stream"] = true;
  const auto r = post(server(), "/v1/chat/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Streamed s = parse_stream(sse_payloads(r->body), true);
  EXPECT_TRUE(s.done) << r->body;
  EXPECT_EQ(s.text, expected) << "stop " << json(stop) << " in " << json(text);
  EXPECT_EQ(s.finish_reasons, 1) << r->body;
  EXPECT_EQ(s.finish_reason, "stop") << r->body;
}

TEST_F(ServeApi, ChatStreamingLogprobs) {
  json req = chat_request("Stream with logprobs", 6);
  req["stream"] = true;
  req["logprobs"] = true;
  req["top_logprobs"] = 2;
  const auto r = post(server(), "/v1/chat/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const Streamed s = parse_stream(sse_payloads(r->body), true);
  EXPECT_TRUE(s.done) << r->body;
  size_t entries = 0;
  std::string spelled;
  for (const json& c : s.chunks) {
    if (c["choices"].empty() || c["choices"][0]["logprobs"].is_null()) continue;
    for (const json& t : c["choices"][0]["logprobs"]["content"]) {
      ++entries;
      spelled += t.value("token", "");
      EXPECT_EQ(t["top_logprobs"].size(), 2u) << t;
    }
  }
  EXPECT_EQ(entries, 6u) << "one logprobs entry per generated token: " << r->body;
  EXPECT_EQ(spelled, s.text) << "the tokens spell the streamed text";
}

TEST_F(ServeApi, StreamingRequestErrorsAreJsonNotEvents) {
  json req = chat_request("hi", 4);
  req["stream"] = true;
  req["temperature"] = 7;
  const json e = expect_error(post(server(), "/v1/chat/completions", req), 400, "a streamed request with temperature 7");
  EXPECT_EQ(e.value("param", ""), "temperature") << e;
  json ids = json::array();
  for (int i = 0; i < 600; ++i) ids.push_back(7);
  const json e2 = expect_error(post(server(), "/v1/completions", {{"prompt", ids}, {"stream", true}}), 400,
                               "a streamed request longer than the context");
  EXPECT_EQ(e2.value("code", ""), "context_length_exceeded") << e2;
}

TEST_F(ServeApi, PromptAndMessageForms) {
  const json one_text = ok_json(post(server(), "/v1/completions",
                                     {{"prompt", json::array({"The quick brown fox"})}, {"max_tokens", 3}, {"temperature", 0}}));
  const json plain = ok_json(post(server(), "/v1/completions",
                                  {{"prompt", "The quick brown fox"}, {"max_tokens", 3}, {"temperature", 0}}));
  EXPECT_EQ(one_text["choices"][0]["text"], plain["choices"][0]["text"]) << "[\"text\"] is the same prompt as \"text\"";
  const json nested = ok_json(post(server(), "/v1/completions",
                                   {{"prompt", json::array({json::array({5, 6, 7})})}, {"max_tokens", 2}, {"temperature", 0}}));
  EXPECT_EQ(nested["usage"].value("prompt_tokens", -1), 3) << nested;

  json parts = chat_request("", 4);
  parts["messages"][0]["content"] = json::array({{{"type", "text"}, {"text", "Hello "}}, {{"type", "text"}, {"text", "there"}}});
  const std::string from_parts = content_of(ok_json(post(server(), "/v1/chat/completions", parts)));
  const std::string from_text = content_of(ok_json(post(server(), "/v1/chat/completions", chat_request("Hello there", 4))));
  EXPECT_EQ(from_parts, from_text) << "text parts are joined";

  json mct = chat_request("Hello there", 99);
  mct.erase("max_tokens");
  mct["max_completion_tokens"] = 3;
  const json m = ok_json(post(server(), "/v1/chat/completions", mct));
  EXPECT_EQ(m["usage"].value("completion_tokens", -1), 3) << m;

  json sys = chat_request("Hello there", 3);
  sys["messages"].insert(sys["messages"].begin(), json{{"role", "system"}, {"content", "Be brief."}});
  ok_json(post(server(), "/v1/chat/completions", sys));
  json unicode = chat_request("Grüße, 世界! 👋", 3);
  ok_json(post(server(), "/v1/chat/completions", unicode));

  json image = chat_request("", 4);
  image["messages"][0]["content"] = json::array({{{"type", "image_url"}, {"image_url", {{"url", "http://x/y.png"}}}}});
  expect_error(post(server(), "/v1/chat/completions", image), 400, "an image part");
  json tool = chat_request("hi", 2);
  tool["messages"][0]["role"] = "tool";
  expect_error(post(server(), "/v1/chat/completions", tool), 400, "role 'tool'");
}

TEST_F(ServeApi, OneKeepAliveConnectionServesSeveralRequests) {
  httplib::Client c = server().client();
  c.set_keep_alive(true);
  json stream = chat_request("keep alive", 5);
  stream["stream"] = true;
  for (int i = 0; i < 3; ++i) {
    const auto a = c.Post("/v1/chat/completions", chat_request("keep alive", 5).dump(), "application/json");
    ASSERT_TRUE(a) << "round " << i << ": " << httplib::to_string(a.error());
    EXPECT_EQ(a->status, 200) << a->body;
    const auto b = c.Post("/v1/chat/completions", stream.dump(), "application/json");
    ASSERT_TRUE(b) << "round " << i << ": " << httplib::to_string(b.error());
    EXPECT_EQ(b->status, 200) << b->body;
    EXPECT_TRUE(parse_stream(sse_payloads(b->body), true).done) << b->body;
    const auto h = c.Get("/health");
    ASSERT_TRUE(h) << "round " << i;
    EXPECT_EQ(h->status, 200);
  }
}

TEST_F(ServeApi, SecondServerOnTheSamePortFailsAndSaysWhy) {
  TempDir tmp;
  const fs::path config = tmp / "second.yaml";
  autoglm::test::write_file(config, "service:\n  name: second\n  host: 127.0.0.1\n  port: " + std::to_string(server().port()) +
                                        "\nmodel:\n  path: " + model_file("tiny-glm4-Q8_0.gguf").string() +
                                        "\nruntime:\n  backend: cpu\n  threads: 1\n  kv_cache_budget: 16MiB\n");
  ServerProcess second({"serve", "--config", config.string()}, tmp / "second.log");
  std::optional<int> code;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (!(code = second.wait_exit(50ms)) && !contains(second.output(), "serving model") &&
         std::chrono::steady_clock::now() < until) {
  }
  ASSERT_TRUE(code) << "the second server runs on the port the first one holds:\n" << second.output();
  EXPECT_NE(*code, 0) << second.output();
  EXPECT_TRUE(contains(second.output(), std::to_string(server().port()))) << "the message names the port:\n" << second.output();
  // the first one is unharmed
  const auto ready = get(server(), "/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
}

TEST(ServeConfig, MissingModelFileIsReportedAndExitsNonZero) {
  TempDir tmp;
  const fs::path config = tmp / "service.yaml";
  autoglm::test::write_file(config, "service:\n  host: 127.0.0.1\n  port: " + std::to_string(autoglm::test::free_port()) +
                                        "\nmodel:\n  path: " + (tmp / "no-such-model.gguf").string() + "\n");
  ServerProcess p({"serve", "--config", config.string()}, tmp / "log");
  const std::optional<int> code = p.wait_exit(60s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_NE(*code, 0) << p.output();
  EXPECT_TRUE(contains(p.output(), "no-such-model.gguf")) << p.output();
}

// ================================================================================================
// Authentication, rate limit and body limit.
// ================================================================================================

struct LimitsSetup {
  static ServerSetup setup() {
    ServerSetup s;
    s.service_extra = "  api_keys: [k1, k2, k3]\n"
                      "  rate_limit: 2/min\n"
                      "  max_request_body: 1KiB\n";
    return s;
  }
};
using ServeLimits = ServerSuite<LimitsSetup>;

httplib::Headers bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

TEST_F(ServeLimits, ApiKeysAreRequiredOnTheApiOnly) {
  const auto none = get(server(), "/v1/models");
  json e = expect_error(none, 401, "no key");
  EXPECT_EQ(e.value("type", ""), "authentication_error") << e;
  ASSERT_TRUE(none);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u) << "401 says how to authenticate";
  expect_error(post(server(), "/v1/chat/completions", chat_request("hi", 2)), 401, "no key (chat)");
  expect_error(get(server(), "/v1/models", bearer("wrong")), 401, "a wrong key");
  expect_error(get(server(), "/v1/models", {{"Authorization", "k1"}}), 401, "a key without 'Bearer '");
  const auto ok = post(server(), "/v1/chat/completions", chat_request("hi", 2), bearer("k1"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;

  const auto health = get(server(), "/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << "/health needs no key";
  const auto ready = get(server(), "/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << "/ready needs no key";
  const auto metrics = scrape_until(server(), "autoglm_requests_total{endpoint=\"/v1/models\",status=\"401\"}");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200) << "/metrics needs no key";
  EXPECT_TRUE(contains(metrics->body, "autoglm_requests_total{endpoint=\"/v1/models\",status=\"401\"}")) << metrics->body;
  EXPECT_TRUE(contains(metrics->body, "autoglm_rejected_requests_total{reason=\"unauthorized\"}")) << metrics->body;
}

TEST_F(ServeLimits, RateLimitPerKeyWithRetryAfter) {
  for (int i = 0; i < 2; ++i) {
    const auto r = get(server(), "/v1/models", bearer("k2"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << "request " << i << ": " << r->body;
  }
  const auto third = get(server(), "/v1/models", bearer("k2"));
  const json e = expect_error(third, 429, "the third request in a minute");
  EXPECT_EQ(e.value("code", ""), "rate_limit_exceeded") << e;
  ASSERT_TRUE(third);
  const std::string retry = third->get_header_value("Retry-After");
  ASSERT_FALSE(retry.empty()) << "Retry-After";
  EXPECT_TRUE(all_digits(retry)) << retry;
  EXPECT_GE(std::atoi(retry.c_str()), 1) << retry;
  EXPECT_LE(std::atoi(retry.c_str()), 60) << retry;

  // another key has its own budget
  const auto other = get(server(), "/v1/models", bearer("k3"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200) << other->body;
  // counted once each response is written: a loaded machine can answer the scrape first
  const auto scraped = scrape_until(server(), "autoglm_requests_total{endpoint=\"/v1/models\",status=\"429\"}");
  ASSERT_TRUE(scraped);
  const std::string m = scraped->body;
  EXPECT_TRUE(contains(m, "autoglm_requests_total{endpoint=\"/v1/models\",status=\"429\"}")) << m;
  EXPECT_TRUE(contains(m, "autoglm_rejected_requests_total{reason=\"rate_limited\"}")) << m;
}

TEST_F(ServeLimits, BodyOverTheLimitIs413) {
  json req = chat_request(std::string(4096, 'a'), 2);
  const json e = expect_error(post(server(), "/v1/chat/completions", req, bearer("k1")), 413, "a 4 KiB body with a 1 KiB limit");
  EXPECT_EQ(e.value("code", ""), "request_too_large") << e;
}

// ================================================================================================
// One batch slot, no queue, a long context: busy answers and abandoned streams.
// ================================================================================================

struct BusySetup {
  static ServerSetup setup() {
    ServerSetup s;
    s.max_batch_size = 1;
    s.service_extra = "  max_queued_requests: 0\n";
    s.model_extra = "  context_length: 16384\n";
    return s;
  }
};
using ServeBusy = ServerSuite<BusySetup>;

constexpr int kLongTokens = 16000;

// A streamed chat request that runs for a long time: at least 500 tokens for sure, 16000 unless the
// model reaches its EOS in the meantime (greedy decoding of these models loops without one).
std::string long_stream_body(const RunningServer& s) {
  static const std::string prompt = find_long_prompt(s, 500);
  EXPECT_FALSE(prompt.empty()) << "no prompt runs 500 tokens without EOS";
  json req = chat_request(prompt, kLongTokens);
  req["stream"] = true;
  return req.dump();
}

TEST_F(ServeBusy, QueueFullAnswers503WithRetryAfter) {
  std::string last;
  ASSERT_TRUE(wait_idle(server(), 30s, &last)) << last;
  RawStream first(server().port(), "/v1/chat/completions", long_stream_body(server()));
  ASSERT_TRUE(first.error().empty()) << first.error();
  ASSERT_EQ(first.status(), 200);
  const auto event = first.next_event();
  ASSERT_TRUE(event) << "the first event of the long stream";
  ASSERT_EQ(event->rfind("data: {", 0), 0u) << *event;

  const auto second = post(server(), "/v1/chat/completions", chat_request("me too", 2));
  const json e = expect_error(second, 503, "a second request while the only slot is busy and the queue is 0");
  EXPECT_EQ(e.value("code", ""), "server_busy") << e;
  ASSERT_TRUE(second);
  const std::string retry = second->get_header_value("Retry-After");
  EXPECT_TRUE(all_digits(retry) && std::atoi(retry.c_str()) >= 1) << "Retry-After: " << retry;
  const auto next = first.next_event();
  EXPECT_TRUE(next && next->rfind("data: {", 0) == 0) << "the first stream goes on";
  first.close();
  EXPECT_TRUE(wait_idle(server(), 20s, &last)) << "the abandoned stream frees its slot:\n" << last;
  const auto after = post(server(), "/v1/chat/completions", chat_request("now me", 2));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << "the slot is free again: " << after->body;
}

TEST_F(ServeBusy, ClientDisconnectFreesTheKvCache) {
  std::string last;
  ASSERT_TRUE(wait_idle(server(), 30s, &last)) << last;
  const double generated_before = metric(metrics_text(server()), "autoglm_generation_tokens_total").value_or(-1);
  {
    RawStream stream(server().port(), "/v1/chat/completions", long_stream_body(server()));
    ASSERT_TRUE(stream.error().empty()) << stream.error();
    ASSERT_EQ(stream.status(), 200);
    ASSERT_TRUE(stream.next_event()) << "the first event";
    ASSERT_TRUE(stream.next_event()) << "a second event";
    const std::string busy = metrics_text(server());
    EXPECT_EQ(metric(busy, "autoglm_running_sequences"), 1.0) << busy;
    EXPECT_GT(metric(busy, "autoglm_kv_cache_blocks_used").value_or(0), 0) << busy;
  }  // closed without reading the rest
  ASSERT_TRUE(wait_idle(server(), 20s, &last)) << "blocks and slot freed after the client left:\n" << last;
  const double generated = metric(last, "autoglm_generation_tokens_total").value_or(-1) - generated_before;
  EXPECT_LT(generated, kLongTokens) << "the generation was ended, not run to max_tokens";
}

TEST_F(ServeBusy, NonStreamingClientDisconnectFreesTheSlot) {
  std::string last;
  ASSERT_TRUE(wait_idle(server(), 30s, &last)) << last;
  json req = json::parse(long_stream_body(server()));
  req.erase("stream");
  const double generated_before = metric(metrics_text(server()), "autoglm_generation_tokens_total").value_or(-1);
  {
    RawStream gone(server().port(), "/v1/chat/completions", req.dump(), /*read_head=*/false);
    ASSERT_TRUE(gone.error().empty()) << gone.error();
    // generating: wait until the sequence runs, then leave without reading the answer
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (metric(metrics_text(server()), "autoglm_running_sequences") != 1.0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(10ms);
    ASSERT_EQ(metric(metrics_text(server()), "autoglm_running_sequences"), 1.0);
  }
  ASSERT_TRUE(wait_idle(server(), 20s, &last)) << "the slot is freed after the client left:\n" << last;
  const double generated = metric(last, "autoglm_generation_tokens_total").value_or(-1) - generated_before;
  EXPECT_LT(generated, kLongTokens) << "the generation was ended, not run to max_tokens";
  const auto after = post(server(), "/v1/chat/completions", chat_request("after", 2));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200) << after->body;
}

// ================================================================================================
// Graceful shutdown: a server per test.
// ================================================================================================

TEST(ServeShutdown, SigtermLetsAStreamFinishThenExits0) {
  AUTOGLM_REQUIRE_FIXTURES();
  ServerSetup setup;
  setup.max_batch_size = 2;
  setup.model_extra = "  context_length: 2048\n";
  RunningServer server(setup);
  ASSERT_TRUE(server.ok()) << server.error;

  constexpr int kTokens = 1000;  // still generating when the signal comes
  const std::string prompt = find_long_prompt(server, kTokens);
  ASSERT_FALSE(prompt.empty()) << "no prompt runs " << kTokens << " tokens without EOS";
  json req = chat_request(prompt, kTokens);
  req["stream"] = true;
  RawStream stream(server.port(), "/v1/chat/completions", req.dump());
  ASSERT_TRUE(stream.error().empty()) << stream.error();
  ASSERT_EQ(stream.status(), 200);
  std::vector<std::string> payloads;
  auto first = stream.next_event();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->rfind("data: ", 0), 0u) << *first;
  payloads.push_back(first->substr(6));

  server.process().signal(SIGTERM);
  // once the server has taken the signal, a new connection is refused or answered 503
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (!contains(server.output(), "draining") && server.process().running() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  {
    httplib::Client c("127.0.0.1", server.port());
    c.set_connection_timeout(5s);
    c.set_read_timeout(30s);
    const auto late = c.Post("/v1/chat/completions", chat_request("too late", 2).dump(), "application/json");
    if (late) {
      EXPECT_EQ(late->status, 503) << "a request after SIGTERM: " << late->body;
    }  // else: refused, as it should be
  }

  while (auto e = stream.next_event()) {
    ASSERT_EQ(e->rfind("data: ", 0), 0u) << *e;
    payloads.push_back(e->substr(6));
  }
  EXPECT_TRUE(stream.complete()) << "the chunked body ended properly";
  const Streamed s = parse_stream(payloads, true);
  EXPECT_TRUE(s.done) << "the stream ends with [DONE] after SIGTERM";
  EXPECT_EQ(s.finish_reasons, 1);
  EXPECT_EQ(s.finish_reason, "length");

  const std::optional<int> code = server.process().wait_exit(60s);
  EXPECT_EQ(code, std::optional<int>(0)) << server.output();
}

TEST(ServeShutdown, SigtermWhenIdleExits0) {
  AUTOGLM_REQUIRE_FIXTURES();
  RunningServer server(ServerSetup{});
  ASSERT_TRUE(server.ok()) << server.error;
  ok_json(post(server, "/v1/chat/completions", chat_request("hi", 2)));
  EXPECT_EQ(server.stop(), std::optional<int>(0)) << server.output();
}

TEST(ServeShutdown, DrainTimeoutEndsLongStreamsAndExits0) {
  AUTOGLM_REQUIRE_FIXTURES();
  ServerSetup setup;
  setup.max_batch_size = 1;
  setup.service_extra = "  drain_timeout: 1s\n";
  setup.model_extra = "  context_length: 16384\n";
  RunningServer server(setup);
  ASSERT_TRUE(server.ok()) << server.error;
  const std::string prompt = find_long_prompt(server, 500);
  ASSERT_FALSE(prompt.empty());
  json req = chat_request(prompt, kLongTokens);
  req["stream"] = true;
  RawStream stream(server.port(), "/v1/chat/completions", req.dump());
  ASSERT_EQ(stream.status(), 200) << stream.error();
  ASSERT_TRUE(stream.next_event());
  server.process().signal(SIGTERM);
  std::vector<std::string> payloads;
  while (auto e = stream.next_event()) {
    ASSERT_EQ(e->rfind("data: ", 0), 0u) << *e;
    payloads.push_back(e->substr(6));
  }
  EXPECT_TRUE(stream.complete()) << "the chunked body ended properly";
  ASSERT_FALSE(payloads.empty());
  EXPECT_EQ(payloads.back(), "[DONE]") << "a stream ended by the drain timeout still ends with [DONE]; last event: "
                                       << payloads.back();
  size_t tokens = 0;
  for (const std::string& p : payloads) {
    const json j = parse(p);
    if (j.is_object() && j.contains("error")) {
      EXPECT_TRUE(j["error"].contains("message") && j["error"].contains("type")) << p;
      continue;
    }
    if (j.is_object() && j.contains("choices") && !j["choices"].empty() && j["choices"][0]["delta"].contains("content"))
      ++tokens;
  }
  EXPECT_LT(tokens, static_cast<size_t>(kLongTokens)) << "the stream was ended early";
  const std::optional<int> code = server.process().wait_exit(60s);
  EXPECT_EQ(code, std::optional<int>(0)) << server.output();
}

TEST(ServeTimeouts, RequestTimeoutEndsALongGeneration) {
  AUTOGLM_REQUIRE_FIXTURES();
  ServerSetup setup;
  setup.max_batch_size = 1;
  setup.service_extra = "  request_timeout: 1s\n";
  setup.model_extra = "  context_length: 16384\n";
  RunningServer server(setup);
  ASSERT_TRUE(server.ok()) << server.error;
  bool tried = false;
  for (const char* prompt : {"Keep talking forever", "count to 3", "Tell me a story", "a b c", "x"}) {
    const json r = ok_json(post(server, "/v1/chat/completions", chat_request(prompt, kLongTokens)));
    if (!r.is_object() || r["choices"][0].value("finish_reason", "") == "stop") continue;  // reached its EOS first
    tried = true;
    EXPECT_EQ(r["choices"][0].value("finish_reason", ""), "length") << "a request out of time ends like one out of tokens";
    EXPECT_LT(r["usage"].value("completion_tokens", kLongTokens), kLongTokens) << "ended by request_timeout";
    EXPECT_GT(r["usage"].value("completion_tokens", 0), 0);

    json sreq = chat_request(prompt, kLongTokens);
    sreq["stream"] = true;
    const auto st = post(server, "/v1/chat/completions", sreq);
    ASSERT_TRUE(st);
    ASSERT_EQ(st->status, 200);
    const Streamed s = parse_stream(sse_payloads(st->body), true);
    EXPECT_TRUE(s.done) << "a timed-out stream ends with [DONE]";
    EXPECT_EQ(s.finish_reasons, 1);
    EXPECT_EQ(s.finish_reason, "length");
    break;
  }
  EXPECT_TRUE(tried) << "every prompt reached its EOS within the timeout";
  EXPECT_EQ(server.stop(), std::optional<int>(0)) << server.output();
}

// ================================================================================================
// A vision-language model (the tiny GLM-4.1V folder): screenshots in OpenAI image_url parts.
// ================================================================================================

fs::path glm4v_file(const std::string& name) { return autoglm::test::fixtures_dir() / "glm4v" / name; }

std::string base64(const std::string& bytes) {
  static const char* const kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out += kAlphabet[(v >> (6 * k)) & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | (two ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += two ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string data_url(const std::string& image_file, const std::string& media_type = "image/png") {
  return "data:" + media_type + ";base64," + base64(autoglm::test::read_file(glm4v_file("images/" + image_file)));
}

json image_part(const std::string& url) { return {{"type", "image_url"}, {"image_url", {{"url", url}}}}; }

// A PNG signature and IHDR chunk claiming 50000 x 50000 RGBA pixels (10 GB decoded), then nothing:
// a decompression bomb must be refused from its header.
std::string huge_png_header() {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  std::string ihdr = "IHDR" + be32(50000) + be32(50000) + std::string{8, 6, 0, 0, 0};
  uint32_t crc = 0xFFFFFFFFu;  // CRC-32 of the chunk type and data, as PNG requires
  for (unsigned char c : ihdr) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return std::string("\x89PNG\r\n\x1a\n", 8) + be32(13) + ihdr + be32(~crc);
}

// Prompt `a` of the fixture: one screenshot, then the question.
json screenshot_request(const std::string& url, int max_tokens = 8) {
  json content = json::array({image_part(url), {{"type", "text"}, {"text", "What is on this screen?"}}});
  return json{{"model", kName}, {"messages", json::array({{{"role", "user"}, {"content", content}}})},
              {"max_tokens", max_tokens}, {"temperature", 0}};
}

struct VisionSetup {
  static ServerSetup setup() {
    ServerSetup s;
    s.model = "../glm4v/tiny-glm4v-hf";
    s.max_batch_size = 4;
    s.sections = "vision:\n  max_images_per_request: 2\n";
    return s;
  }
};
using ServeVision = ServerSuite<VisionSetup>;

// The reference engine's greedy answer to prompt `a`, as text.
std::string reference_answer() {
  const auto r = autoglm::test::run_binary("detokenize --model " + glm4v_file("tiny-glm4v-hf").string() +
                                           " --ids '466 1416 257 1077 944 132 944 132'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string text = r.out;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  // as JSON carries it: a token that ends inside a UTF-8 character becomes U+FFFD
  return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

TEST_F(ServeVision, ScreenshotAnswerIsTheReferenceEnginesGreedyAnswer) {
  const json r = ok_json(post(server(), "/v1/chat/completions", screenshot_request(data_url("screen_tall.png"))));
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(content_of(r), reference_answer()) << r;
  EXPECT_EQ(r["choices"][0].value("finish_reason", ""), "length") << r;
  // 84 image tokens (the 392x168 resize, 28x12 patches merged 2x2) in a 100-token prompt, as transformers counts
  EXPECT_EQ(r["usage"].value("prompt_tokens", 0), 100) << r;
  EXPECT_EQ(r["usage"]["prompt_tokens_details"].value("image_tokens", 0), 84) << r;

  // streamed, the same text
  json sreq = screenshot_request(data_url("screen_tall.png"));
  sreq["stream"] = true;
  const auto st = post(server(), "/v1/chat/completions", sreq);
  ASSERT_TRUE(st);
  ASSERT_EQ(st->status, 200) << st->body;
  const Streamed s = parse_stream(sse_payloads(st->body), true);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, reference_answer());
}

TEST_F(ServeVision, TheSameScreenshotAgainComesFromThePrefixCacheAndADifferentOneDoesNot) {
  const std::string before = metrics_text(server());
  const json first = ok_json(post(server(), "/v1/chat/completions", screenshot_request(data_url("screen_tall.png"))));
  const json again = ok_json(post(server(), "/v1/chat/completions", screenshot_request(data_url("screen_tall.png"))));
  EXPECT_EQ(content_of(again), content_of(first));
  // the prompt's whole blocks, image included, are reused (the last token is always computed)
  EXPECT_GE(again["usage"]["prompt_tokens_details"].value("cached_tokens", 0), 96) << again;
  const json other = ok_json(post(server(), "/v1/chat/completions", screenshot_request(data_url("odd_rgb.jpg", "image/jpeg"))));
  EXPECT_EQ(other["usage"]["prompt_tokens_details"].value("image_tokens", 0), 54) << other;
  // only the text before the image ("[gMASK]<sop><|user|>\n<|begin_of_image|>": 5 tokens) may be shared
  EXPECT_LT(other["usage"]["prompt_tokens_details"].value("cached_tokens", 0), 16) << other;
  const std::string after = metrics_text(server());
  EXPECT_TRUE(contains(after, "autoglm_images_encoded_total")) << after;
  EXPECT_TRUE(contains(after, "autoglm_images_cached_total")) << after;
}

TEST_F(ServeVision, TextOnlyRequestsStillWork) {
  const json r = ok_json(post(server(), "/v1/chat/completions", chat_request("Write a haiku about the sea.", 4)));
  EXPECT_EQ(r["usage"].value("completion_tokens", 0), 4) << r;
  EXPECT_FALSE(r["usage"]["prompt_tokens_details"].contains("image_tokens")) << r;
  // vision.quantization auto on the CPU: the bf16 tower of the folder runs on AMX tiles where the CPU
  // has them, as Q8_0 (int8 products) elsewhere
  const char* form = autoglm::kernels::amx_detected() ? "weights BF16 on AMX tiles" : "weights Q8_0";
  EXPECT_TRUE(contains(server().output(), form)) << server().output();
}

TEST_F(ServeVision, BadImagesAre400sNamingThePart) {
  struct Case {
    const char* what;
    std::string url;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"not base64", "data:image/png;base64,@@@@", "base64"},
      {"not a URL", "screen.png", "data: URL"},
      {"a local file, none allowed", "file:///etc/passwd", "service.allowed_local_media_path"},
      {"a remote URL, remote images off", "https://example.com/screen.png", "service.allow_remote_images"},
      {"a 50000x50000 header", "data:image/png;base64," + base64(huge_png_header()), "50000"},
      {"not an image", "data:image/png;base64," + base64("just some text, not a picture"), "PNG or JPEG"},
      {"a truncated PNG", "data:image/png;base64," + base64(autoglm::test::read_file(glm4v_file("images/screen_tall.png")).substr(0, 200)), ""},
      {"GIF", "data:image/gif;base64," + base64("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "GIF"},
  };
  for (const Case& c : cases) {
    const json e = expect_error(post(server(), "/v1/chat/completions", screenshot_request(c.url)), 400, c.what);
    EXPECT_EQ(e.value("param", ""), "messages[0].content[0].image_url") << c.what << ": " << e;
    EXPECT_TRUE(contains(e.value("message", ""), c.message)) << c.what << ": " << e;
  }
  json three = screenshot_request(data_url("tiny.png"));
  for (int i = 0; i < 2; ++i) three["messages"][0]["content"].push_back(image_part(data_url("tiny.png")));
  const json e = expect_error(post(server(), "/v1/chat/completions", three), 400, "three images, two allowed");
  EXPECT_TRUE(contains(e.value("message", ""), "at most 2")) << e;
  json in_system = screenshot_request(data_url("tiny.png"));
  in_system["messages"][0]["role"] = "system";
  expect_error(post(server(), "/v1/chat/completions", in_system), 400, "an image in a system message");
  // the server keeps serving after all of that
  EXPECT_EQ(content_of(ok_json(post(server(), "/v1/chat/completions", screenshot_request(data_url("screen_tall.png"))))),
            reference_answer());
}

TEST_F(ServeVision, InferTakesImagesForItsPlaceholders) {
  const std::string prompt = "[gMASK]<sop><|user|>\n<|begin_of_image|><|image|><|end_of_image|>What is on this screen?<|assistant|>\n";
  const json r = ok_json(post(server(), "/infer", {{"prompt", prompt}, {"images", {data_url("screen_tall.png")}},
                                                    {"max_tokens", 8}, {"temperature", 0}}));
  EXPECT_EQ(r["tokens"], json::array({466, 1416, 257, 1077, 944, 132, 944, 132})) << "the reference greedy ids: " << r;
  EXPECT_EQ(r["usage"].value("prompt_tokens", 0), 100) << r;
  const json e = expect_error(post(server(), "/infer", {{"prompt", "no placeholder"}, {"images", {data_url("tiny.png")}}}),
                              400, "an image without its placeholder");
  EXPECT_TRUE(contains(e.value("message", ""), "placeholder")) << e;
  expect_error(post(server(), "/infer", {{"prompt", prompt}}), 400, "a placeholder without its image");
}

TEST_F(ServeVision, PerRequestPixelLimits) {
  json small = screenshot_request(data_url("screen_tall.png"));
  small["mm_processor_kwargs"] = {{"max_pixels", 28 * 28 * 40}};
  const json r = ok_json(post(server(), "/v1/chat/completions", small));
  const int image_tokens = r["usage"]["prompt_tokens_details"].value("image_tokens", 0);
  EXPECT_GT(image_tokens, 0) << r;
  EXPECT_LE(image_tokens, 40) << "at most max_pixels / 28^2 tokens: " << r;
  json big = screenshot_request(data_url("screen_tall.png"));
  big["mm_processor_kwargs"] = {{"max_pixels", 100'000'000}};
  const json e = expect_error(post(server(), "/v1/chat/completions", big), 400, "above the server's max_pixels");
  EXPECT_EQ(e.value("param", ""), "mm_processor_kwargs.max_pixels") << e;
}

// Image URLs and local files, each allowed by its own setting.
struct VisionMediaSetup {
  static ServerSetup setup() {
    ServerSetup s;
    s.model = "../glm4v/tiny-glm4v-hf";
    s.max_batch_size = 2;
    s.service_extra = "  allow_remote_images: true\n  allowed_local_media_path: " + glm4v_file("images").string() + "\n";
    return s;
  }
};
using ServeVisionMedia = ServerSuite<VisionMediaSetup>;

TEST_F(ServeVisionMedia, RemoteUrlsAndAllowedFilesAreRead) {
  httplib::Server images;
  const std::string png = autoglm::test::read_file(glm4v_file("images/screen_tall.png"));
  images.Get("/screen.png", [&](const httplib::Request&, httplib::Response& res) { res.set_content(png, "image/png"); });
  const int port = images.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { images.listen_after_bind(); });
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const json remote = ok_json(post(server(), "/v1/chat/completions", screenshot_request(base + "/screen.png")));
  EXPECT_EQ(content_of(remote), reference_answer()) << remote;
  const json e404 = expect_error(post(server(), "/v1/chat/completions", screenshot_request(base + "/missing.png")), 400,
                                 "a URL that answers 404");
  EXPECT_TRUE(contains(e404.value("message", ""), "404")) << e404;
  images.stop();
  serving.join();

  const json local = ok_json(post(server(), "/v1/chat/completions",
                                  screenshot_request("file://" + glm4v_file("images/screen_tall.png").string())));
  EXPECT_EQ(content_of(local), reference_answer()) << local;
  for (const std::string& outside : {std::string("file:///etc/passwd"), "file://" + glm4v_file("images/../refs/index.json").string(),
                                     "file://" + glm4v_file("images/no-such.png").string()}) {
    const json e = expect_error(post(server(), "/v1/chat/completions", screenshot_request(outside)), 400, outside.c_str());
    EXPECT_TRUE(contains(e.value("message", ""), "not a file under the allowed folder")) << e;
  }
}

TEST_F(ServeApi, ImagesToATextModelAreA400) {
  const json e = expect_error(post(server(), "/v1/chat/completions", screenshot_request("data:image/png;base64,AAAA")),
                              400, "an image for a text model");
  EXPECT_TRUE(contains(e.value("message", ""), "reads text only")) << e;
  const json infer = expect_error(post(server(), "/infer", {{"prompt", "hi"}, {"images", {"data:image/png;base64,AAAA"}}}),
                                  400, "/infer images for a text model");
  EXPECT_EQ(infer.value("param", ""), "images[0]") << infer;
}

}  // namespace
