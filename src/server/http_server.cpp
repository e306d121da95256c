// The HTTP layer: routes, authentication, CORS, rate limit, request logs and metrics, and the
// OpenAI endpoints on top of the scheduler.
#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <algorithm>
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <random>
#include <spdlog/spdlog.h>
#include <thread>

#include "autoglm/download.h"
#include "autoglm/error.h"
#include "autoglm/server.h"
#include "connection.h"
#include "metrics.h"
#include "openai_api.h"
#include "rate_limit.h"
#include "scheduler.h"

namespace autoglm::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// What the logger needs to know about the request this thread is handling.
struct RequestContext {
  Clock::time_point start{};
  std::string id;
  size_t prompt_tokens = 0, completion_tokens = 0;
};
thread_local RequestContext t_request;

std::string random_hex(size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s(n, '0');
  for (char& c : s) c = digits[rng() & 15];
  return s;
}

// A client's X-Request-Id is echoed when it is short and printable; otherwise we make one.
std::string request_id(const httplib::Request& req) {
  const std::string given = req.get_header_value("X-Request-Id");
  const bool ok = !given.empty() && given.size() <= 128 &&
                  std::all_of(given.begin(), given.end(), [](char c) { return c > 32 && c < 127; });
  return ok ? given : random_hex(16);
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  // length is not secret (keys have a fixed format); the content comparison never exits early
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool is_api_path(const std::string& path) { return path.rfind("/v1/", 0) == 0 || path == "/infer"; }

// Routes have fixed names in metrics; anything else is "other" (no unbounded label values).
std::string endpoint_label(const std::string& path) {
  for (const char* p : {"/health", "/ready", "/metrics", "/v1/chat/completions", "/v1/completions", "/infer", "/v1/models"})
    if (path == p) return p;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models";
  return "other";
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, error_body(e));
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
}

std::string retry_after(double seconds) { return std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(seconds)))); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The FinishReason as the API reports it: a request that ran out of time ends like one that ran
// out of tokens.
FinishReason api_reason(FinishReason r) { return r == FinishReason::timeout ? FinishReason::length : r; }

}  // namespace

// The served model and its scheduler, created by attach().
struct Served {
  ServedModel info;
  std::vector<int32_t> stop_ids;  // EOS and end-of-turn ids
  std::unique_ptr<Scheduler> scheduler;
  const std::string& id() const { return info.names.front(); }
  bool serves(std::string_view name) const {
    return std::find(info.names.begin(), info.names.end(), name) != info.names.end();
  }
  // "model 'x' does not exist; this server serves 'a' (also 'b')"
  ApiError unknown_model(std::string_view name) const {
    std::string also;
    for (size_t i = 1; i < info.names.size(); ++i) also += fmt::format("{}'{}'", also.empty() ? " (also " : ", ", info.names[i]);
    if (!also.empty()) also += ")";
    return ApiError(404, fmt::format("model '{}' does not exist; this server serves '{}'{}", name, id(), also), "model",
                    "model_not_found");
  }
};

struct Server::Impl {
  ServerOptions opt;
  httplib::Server http;
  Metrics metrics;
  std::unique_ptr<RateLimiter> limiter;
  std::thread listener;
  int port = 0;
  int listen_fd = -1;
  Clock::time_point started = Clock::now();
  std::atomic<bool> draining{false};
  std::atomic<std::shared_ptr<Served>> served;  // set once by attach()
  std::string listen_error;

  explicit Impl(ServerOptions o) : opt(std::move(o)) {
    if (opt.service.rate_limit)
      limiter = std::make_unique<RateLimiter>(opt.service.rate_limit->requests,
                                              std::chrono::milliseconds(opt.service.rate_limit->per_ms));
  }

  std::shared_ptr<Served> model() const { return served.load(); }

  void install_routes();
  httplib::Server::HandlerResponse before_routing(const httplib::Request& req, httplib::Response& res);
  void add_cors(const httplib::Request& req, httplib::Response& res) const;
  void log_request(const httplib::Request& req, const httplib::Response& res);
  httplib::Server::HandlerResponse error_page(const httplib::Request& req, httplib::Response& res);
  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void health(httplib::Response& res) const;
  void models(const httplib::Request& req, httplib::Response& res) const;
  LiveGauges live() const;
};

// ---- cross-cutting: CORS, auth, rate limit, logs ---------------------------------------------------

void Server::Impl::add_cors(const httplib::Request& req, httplib::Response& res) const {
  const std::string origin = req.get_header_value("Origin");
  if (origin.empty()) return;
  const auto& allowed = opt.service.cors_origins;
  const bool any = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  if (!any && std::find(allowed.begin(), allowed.end(), origin) == allowed.end()) return;
  res.set_header("Access-Control-Allow-Origin", any ? "*" : origin);
  res.set_header("Vary", "Origin");
  res.set_header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
}

httplib::Server::HandlerResponse Server::Impl::before_routing(const httplib::Request& req, httplib::Response& res) {
  t_request = {Clock::now(), request_id(req), 0, 0};
  res.set_header("X-Request-Id", t_request.id);
  add_cors(req, res);
  using HR = httplib::Server::HandlerResponse;
  if (req.method == "OPTIONS") {  // CORS preflight: no authentication, no body
    res.status = 204;
    if (res.has_header("Access-Control-Allow-Origin")) {
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
      res.set_header("Access-Control-Max-Age", "600");
    }
    return HR::Handled;
  }
  if (!is_api_path(req.path)) return HR::Unhandled;
  if (draining) {
    res.set_header("Retry-After", "5");
    res.set_header("Connection", "close");
    send_error(res, ApiError(503, "the server is shutting down; retry on another instance", "", "shutting_down", "server_error"));
    return HR::Handled;
  }
  std::string client = req.remote_addr;
  if (!opt.api_keys.empty()) {
    const std::string auth = req.get_header_value("Authorization");
    const std::string key = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : std::string();
    bool ok = false;
    for (const std::string& k : opt.api_keys) ok |= constant_time_equal(key, k);  // no early exit
    if (!ok) {
      metrics.record_rejection("unauthorized");
      send_error(res, ApiError(401, auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                                 : "invalid API key", "", "invalid_api_key", "authentication_error"));
      return HR::Handled;
    }
    client = "key:" + key;
  }
  if (limiter) {
    if (const double wait = limiter->acquire(client); wait > 0) {
      metrics.record_rejection("rate_limited");
      res.set_header("Retry-After", retry_after(wait));
      send_error(res, ApiError(429, fmt::format("rate limit reached; retry in {:.1f} s", wait), "", "rate_limit_exceeded",
                               "rate_limit_error"));
      return HR::Handled;
    }
  }
  return HR::Unhandled;
}

httplib::Server::HandlerResponse Server::Impl::error_page(const httplib::Request& req, httplib::Response& res) {
  if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours already
  if (res.status == 413)
    send_error(res, ApiError(413, fmt::format("the request body is larger than {} bytes (service.max_request_body)",
                                              opt.service.max_request_body), "", "request_too_large"));
  else if (res.status == 404)
    send_error(res, ApiError(404, fmt::format("no such endpoint: {} {}", req.method, req.path), "", "not_found"));
  else
    send_error(res, ApiError(res.status, fmt::format("HTTP {}", res.status)));
  return httplib::Server::HandlerResponse::Handled;
}

void Server::Impl::log_request(const httplib::Request& req, const httplib::Response& res) {
  const RequestContext ctx = t_request;
  t_request = {};
  const double seconds = ctx.start == Clock::time_point{} ? 0.0 : std::chrono::duration<double>(Clock::now() - ctx.start).count();
  metrics.record_request(endpoint_label(req.path), res.status, seconds);
  spdlog::info("request {} {} {} {} {:.1f} ms prompt_tokens={} completion_tokens={}", ctx.id.empty() ? "-" : ctx.id,
               req.method, req.path, res.status, seconds * 1000, ctx.prompt_tokens, ctx.completion_tokens);
}

// ---- simple endpoints ---------------------------------------------------------------------------

LiveGauges Server::Impl::live() const {
  LiveGauges g;
  g.uptime_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (auto m = model()) {
    g.ready = !draining;
    g.scheduler = m->scheduler->stats();
  }
  return g;
}

void Server::Impl::health(httplib::Response& res) const {
  const auto m = model();
  const char* status = draining ? "draining" : m ? "ok" : "loading";
  send_json(res, 200, {{"status", status},
                       {"model", m ? json(m->id()) : json(nullptr)},
                       {"version", opt.version},
                       {"uptime_seconds", std::chrono::duration<double>(Clock::now() - started).count()}});
}

void Server::Impl::models(const httplib::Request& req, httplib::Response& res) const {
  const auto m = model();
  if (!m) {
    res.set_header("Retry-After", "5");
    return send_error(res, ApiError(503, "the model is still loading", "", "model_loading", "server_error"));
  }
  const int64_t created = unix_now() - static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count());
  auto card = [&](const std::string& name) {
    return json{{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "autoglm-deploy"},
                {"root", m->id()}, {"max_model_len", m->info.context_length}};
  };
  if (req.matches.size() > 1) {
    if (!m->serves(req.matches[1].str())) return send_error(res, m->unknown_model(req.matches[1].str()));
    return send_json(res, 200, card(req.matches[1].str()));
  }
  json data = json::array();
  for (const std::string& name : m->info.names) data.push_back(card(name));
  send_json(res, 200, {{"object", "list"}, {"data", std::move(data)}});
}

void Server::Impl::install_routes() {
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return before_routing(req, res); });
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req, httplib::Response& res) { return error_page(req, res); }));
  http.set_logger([this](const auto& req, const auto& res) { log_request(req, res); });
  http.set_exception_handler([](const auto&, auto& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("request {} failed: {}", t_request.id, what);
    send_error(res, ApiError(500, "internal error: " + what, "", "internal_error", "server_error"));
  });
  http.Get("/health", [this](const auto&, auto& res) { health(res); });
  http.Get("/ready", [this](const auto&, auto& res) {
    const bool ready = model() && !draining;
    if (!ready) res.set_header("Retry-After", "5");
    send_json(res, ready ? 200 : 503, {{"status", ready ? "ready" : draining ? "draining" : "loading"}});
  });
  http.Get("/metrics", [this](const auto&, auto& res) {
    res.set_content(metrics.render(live()), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", [this](const auto& req, auto& res) { models(req, res); });
  http.Get(R"(/v1/models/(.+))", [this](const auto& req, auto& res) { models(req, res); });
  http.Post("/v1/chat/completions", [this](const auto& req, auto& res) { generate(Endpoint::chat, req, res); });
  http.Post("/v1/completions", [this](const auto& req, auto& res) { generate(Endpoint::completion, req, res); });
  http.Post("/infer", [this](const auto& req, auto& res) { generate(Endpoint::infer, req, res); });
}

// ---- generation ------------------------------------------------------------------------------------

namespace {

ApiError bad_image(const ImagePart& part, const std::string& message) {
  return ApiError(400, fmt::format("'{}': {}", part.param, message), part.param, "invalid_image");
}

// A file:// URL (or a plain absolute path) inside `allowed`, read up to max_bytes.
std::vector<uint8_t> local_image(const ImagePart& part, const fs::path& allowed, uint64_t max_bytes) {
  if (allowed.empty())
    throw bad_image(part, "local image files are off; send the image as a base64 data: URL, or set "
                          "service.allowed_local_media_path to the folder the server may read");
  const std::string raw = part.url.starts_with("file://") ? part.url.substr(7) : part.url;
  std::error_code file_ec, root_ec, type_ec;
  const fs::path file = fs::weakly_canonical(fs::path(raw), file_ec);
  const fs::path root = fs::weakly_canonical(allowed, root_ec);
  const auto [end, _] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
  if (file_ec || root_ec || end != root.end() || !fs::is_regular_file(file, type_ec))
    throw bad_image(part, fmt::format("'{}' is not a file under the allowed folder {}", raw, allowed.string()));
  std::error_code ec;
  if (fs::file_size(file, ec) > max_bytes || ec)
    throw bad_image(part, fmt::format("'{}' is larger than {} bytes", raw, max_bytes));
  std::ifstream in(file, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes;
}

// The bytes of an image part: a base64 data: URL; an http(s) URL when service.allow_remote_images
// is on; a file under service.allowed_local_media_path.
std::vector<uint8_t> image_bytes(const ImagePart& part, const config::ServiceConfig& service) {
  const uint64_t max_bytes = service.max_request_body;
  if (part.url.starts_with("http://") || part.url.starts_with("https://")) {
    if (!service.allow_remote_images)
      throw bad_image(part, "remote image URLs are off; send the image inline as a base64 data: URL "
                            "(data:image/png;base64,...), or set service.allow_remote_images: true");
    try {
      return download::fetch_bytes(part.url, {max_bytes, 10});
    } catch (const Error& e) {
      throw bad_image(part, fmt::format("could not fetch the image: {}", e.what()));
    }
  }
  if (part.url.starts_with("file://") || part.url.starts_with("/")) return local_image(part, service.allowed_local_media_path, max_bytes);
  if (!part.url.starts_with("data:"))
    throw bad_image(part, "expected a base64 data: URL (data:image/png;base64,...)");
  try {
    return image::parse_data_url(part.url, max_bytes).bytes;
  } catch (const image::ImageError& e) {
    throw bad_image(part, e.what());
  }
}

// An image part decoded and cut into the vision tower's patches.
PromptImage prepare_image(const ImagePart& part, const image::ProcessorConfig& processor, const config::ServiceConfig& service) {
  const std::vector<uint8_t> bytes = image_bytes(part, service);
  PromptImage out;
  try {
    image::Patches p = image::preprocess(image::decode(bytes), processor);
    out.grid = {p.t, p.h, p.w};
    out.patches = std::move(p.values);
  } catch (const image::ImageError& e) {
    throw bad_image(part, e.what());
  }
  return out;
}

// The processor with a request's own pixel limits (mm_processor_kwargs), within the server's.
image::ProcessorConfig request_processor(const ApiRequest& r, const image::ProcessorConfig& served) {
  image::ProcessorConfig p = served;
  if (r.min_pixels) p.min_pixels = *r.min_pixels;
  if (r.max_pixels) {
    if (*r.max_pixels > served.max_pixels)
      throw ApiError(400, fmt::format("'mm_processor_kwargs.max_pixels' {} is above this server's limit of {}", *r.max_pixels,
                                      served.max_pixels), "mm_processor_kwargs.max_pixels");
    p.max_pixels = *r.max_pixels;
  }
  if (p.min_pixels > p.max_pixels)
    throw ApiError(400, fmt::format("min_pixels {} is above max_pixels {}", p.min_pixels, p.max_pixels), "mm_processor_kwargs");
  return p;
}

// The images of a chat request put into its prompt: placeholders expanded, M-RoPE positions, the
// prefix-cache key.
void add_images(const ApiRequest& r, const Served& m, const config::ServiceConfig& service, GenerationRequest& g) {
  const ServedModel& info = m.info;
  const size_t max_images = info.max_images_per_request;
  if (r.images.size() > max_images)
    throw ApiError(400, fmt::format("the request holds {} images; this server takes at most {} per request "
                                    "(vision.max_images_per_request)", r.images.size(), max_images),
                   r.images[max_images].param, "too_many_images");
  const image::ProcessorConfig processor = request_processor(r, info.processor);
  std::vector<vision::PatchGrid> grids;
  std::vector<uint64_t> hashes;
  for (const ImagePart& part : r.images) {
    g.images.push_back(prepare_image(part, processor, service));
    const PromptImage& image = g.images.back();
    grids.push_back(image.grid);
    hashes.push_back(vision::image_hash(image.patches.data(), image.grid, info.vision->config.patch_dim()));
    g.images.back().hash = hashes.back();
  }
  vision::MultimodalPrompt mp;
  try {
    mp = vision::expand_prompt(g.prompt, info.image_token, grids, hashes, info.vision->config.merge);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  for (size_t i = 0; i < g.images.size(); ++i) g.images[i].place = mp.images[i];
  g.prompt = std::move(mp.tokens);
  g.cache_key = std::move(mp.cache_key);
  g.rope = std::move(mp.positions.positions);
  g.rope_offset = mp.positions.next_offset;
}

// Prompt token ids of a checked request: chat messages through the model's chat format, text through
// the tokenizer (BOS as the vocabulary wants it), ids as given.
std::vector<int32_t> prompt_ids(const ApiRequest& r, const Served& m) {
  const Tokenizer& tok = *m.info.tokenizer;
  std::vector<int32_t> ids;
  if (!r.images.empty() && !m.info.vision)
    throw ApiError(400, "this model reads text only: it has no vision tower (serve a GLM-4.1V / AutoGLM-Phone-9B "
                        "folder, or a text GGUF with --mmproj)", r.images.front().param, "invalid_image");
  if (r.endpoint == Endpoint::chat) {
    std::string text;
    try {
      text = chat::render_chat(m.info.chat_format, r.messages, /*add_generation_prompt=*/true);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
    ids = tok.encode(text, /*add_special=*/!chat::prompt_includes_bos(m.info.chat_format), /*parse_special=*/true);
  } else if (r.prompt_text) {
    ids = tok.encode(*r.prompt_text, /*add_special=*/true, /*parse_special=*/true);
  } else {
    ids = r.prompt_ids;
    for (int32_t id : ids)
      if (static_cast<size_t>(id) >= m.info.model->config.vocab_size)
        throw ApiError(400, fmt::format("token id {} is outside the vocabulary (0..{})", id, m.info.model->config.vocab_size - 1), "prompt");
  }
  if (ids.empty()) throw ApiError(400, "the prompt has no tokens", r.endpoint == Endpoint::chat ? "messages" : "prompt");
  // an image placeholder anywhere but where an image part stands would take an image's embeddings
  if (m.info.vision && r.images.empty() && std::find(ids.begin(), ids.end(), m.info.image_token) != ids.end())
    throw ApiError(400, "the prompt holds an image placeholder ('<|image|>') but the request sends no image",
                   r.endpoint == Endpoint::chat ? "messages" : "prompt");
  return ids;
}

// max_tokens against the context: absent means "as many as fit" for chat, 16 for completions (the
// OpenAI default) and 128 for /infer, cut to what the context leaves.
size_t checked_max_tokens(const ApiRequest& r, size_t prompt, size_t context) {
  if (prompt >= context)
    throw ApiError(400, fmt::format("the prompt has {} tokens; this model's context is {} tokens", prompt, context),
                   r.endpoint == Endpoint::chat ? "messages" : "prompt", "context_length_exceeded");
  const size_t room = context - prompt;
  if (!r.max_tokens) return r.endpoint == Endpoint::chat ? room : std::min<size_t>(room, r.endpoint == Endpoint::infer ? 128 : 16);
  if (*r.max_tokens > room)
    throw ApiError(400, fmt::format("this model's context is {} tokens; the prompt has {} and max_tokens asks for {} more "
                                    "(at most {} fit)", context, prompt, *r.max_tokens, room), "max_tokens", "context_length_exceeded");
  return *r.max_tokens;
}

// Waits for the connection's client to leave or the generation to produce something.
class ClientWatch {
 public:
  explicit ClientWatch(const httplib::Request& req)
      : fd_(find_connection_socket(req.local_port, req.remote_addr, req.remote_port)) {}
  bool gone() const { return peer_closed(fd_); }

 private:
  int fd_;
};

struct StreamState {
  std::shared_ptr<Generation> gen;
  ResponseMeta meta;
  Endpoint endpoint;
  bool logprobs, include_usage;
  bool first = true;
  TokenText text_of;
  ClientWatch watch;
  Metrics* metrics;
  Clock::time_point received;
};

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

void Server::Impl::generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  const auto m = model();
  if (!m) {
    res.set_header("Retry-After", "5");
    return send_error(res, ApiError(503, "the model is still loading; retry shortly (GET /ready says when)", "",
                                    "model_loading", "server_error"));
  }
  ApiRequest r;
  GenerationRequest g;
  try {
    r = parse_request(endpoint, req.body);
    if (!r.model.empty() && !m->serves(r.model) && endpoint != Endpoint::infer) throw m->unknown_model(r.model);
    g.prompt = prompt_ids(r, *m);
    if (!r.images.empty())
      add_images(r, *m, opt.service, g);
    g.max_tokens = checked_max_tokens(r, g.prompt.size(), m->info.context_length);
  } catch (const ApiError& e) {
    return send_error(res, e);
  }
  t_request.prompt_tokens = g.prompt.size();
  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug("request {} prompt: {}", t_request.id, req.body);

  g.sampling = r.sampling;
  if (!r.seed_given) g.sampling.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull + std::random_device{}();
  g.stop = r.stop;
  g.stop_ids = m->stop_ids;
  g.logprobs = r.logprobs;
  g.deadline = t_request.start + std::chrono::milliseconds(opt.service.request_timeout_ms);
  Scheduler::Refusal why = Scheduler::Refusal::none;
  std::shared_ptr<Generation> gen = m->scheduler->submit(std::move(g), &why);
  if (!gen) {
    if (why == Scheduler::Refusal::too_long)
      return send_error(res, ApiError(400, fmt::format("prompt + max_tokens need more KV cache than the server has ({} "
                                                       "positions); lower max_tokens", m->scheduler->kv_capacity_tokens()),
                                      "max_tokens", "context_length_exceeded"));
    metrics.record_rejection(why == Scheduler::Refusal::queue_full ? "queue_full" : "shutting_down");
    res.set_header("Retry-After", why == Scheduler::Refusal::queue_full ? "1" : "5");
    return send_error(res, ApiError(503, why == Scheduler::Refusal::queue_full
                                             ? "the server is busy: every batch slot and queue place is taken; retry later"
                                             : "the server is shutting down", "", "server_busy", "server_error"));
  }

  const Tokenizer* tok = m->info.tokenizer;
  TokenText text_of = [tok](int32_t id) { return tok->token_piece(id); };
  ResponseMeta meta{(endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-") + random_hex(24), unix_now(), m->id()};
  const bool logprobs = r.logprobs >= 0;

  if (r.stream) {
    auto st = std::make_shared<StreamState>(StreamState{gen, meta, endpoint, logprobs, r.include_usage, true, text_of,
                                                        ClientWatch(req), &metrics, t_request.start});
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [st](size_t, httplib::DataSink& sink) {
      Delta d;
      const bool finished = st->gen->wait(d, 100ms);
      if (st->watch.gone()) {
        st->gen->cancel();
        return false;
      }
      const bool chat = st->endpoint == Endpoint::chat;
      const FinishReason reason = finished ? api_reason(st->gen->finish_reason()) : FinishReason::none;
      std::string out;
      if (finished && reason != FinishReason::stop && reason != FinishReason::length) {
        const std::string message = reason == FinishReason::error ? "generation failed: " + st->gen->error() : "generation was cancelled";
        out += sse(error_body(ApiError(500, message, "", "generation_failed", "server_error")));
      } else if (!d.text.empty() || !d.tokens.empty() || finished || (st->first && chat)) {
        // the last chunk carries the finish reason; text released at the end rides along with it
        out += sse(chat ? chat_chunk(st->meta, d, st->first, reason, st->logprobs, st->text_of, st->include_usage)
                        : completion_chunk(st->meta, d, reason, st->logprobs, st->text_of, st->include_usage));
        st->first = false;
      }
      if (finished) {
        t_request.completion_tokens = st->gen->completion_tokens();  // the logger runs on this thread next
        if (const auto ttft = st->gen->time_to_first_token()) st->metrics->record_time_to_first_token(*ttft);
        if (st->include_usage)
          out += sse(usage_chunk(st->meta, chat, {st->gen->prompt_tokens(), st->gen->completion_tokens(),
                                                  st->gen->cached_tokens(), st->gen->image_tokens()}));
        out += "data: [DONE]\n\n";
      }
      if (!out.empty() && !sink.write(out.data(), out.size())) {
        st->gen->cancel();
        return false;
      }
      if (finished) sink.done();
      return true;
    }, [st](bool) { st->gen->cancel(); });  // a no-op once finished; frees the slot when the stream broke
    return;
  }

  ClientWatch watch(req);
  Delta out;
  while (!gen->wait(out, 100ms)) {
    if (watch.gone()) {
      gen->cancel();
      while (!gen->wait(out, 100ms)) {
      }
      res.status = 499;  // nginx's "client closed request": nobody reads it, the log shows it
      return;
    }
  }
  if (const auto ttft = gen->time_to_first_token()) metrics.record_time_to_first_token(*ttft);
  const FinishReason reason = api_reason(gen->finish_reason());
  const Usage usage{gen->prompt_tokens(), gen->completion_tokens(), gen->cached_tokens(), gen->image_tokens()};
  t_request.completion_tokens = usage.completion_tokens;
  if (reason == FinishReason::error)
    return send_error(res, ApiError(500, "generation failed: " + gen->error(), "", "generation_failed", "server_error"));
  if (reason == FinishReason::cancelled)
    return send_error(res, ApiError(503, "the server is shutting down; the request was ended", "", "shutting_down", "server_error"));
  if (endpoint == Endpoint::chat) return send_json(res, 200, chat_response(meta, out, reason, usage, logprobs, text_of));
  if (endpoint == Endpoint::completion)
    return send_json(res, 200, completion_response(meta, out, reason, usage, logprobs, text_of));
  json tokens = json::array();
  for (const GeneratedToken& t : out.tokens) tokens.push_back(t.id);
  send_json(res, 200, {{"text", out.text}, {"tokens", tokens}, {"finish_reason", finish_reason_name(reason)},
                       {"model", m->id()}, {"usage", usage_json(usage)}});
}

// ---- lifecycle ---------------------------------------------------------------------------------------

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  if (impl_->listener.joinable()) shutdown(0ms);
}

int Server::start() {
  Impl& s = *impl_;
  s.install_routes();
  s.http.set_payload_max_length(s.opt.service.max_request_body);
  // httplib's default adds SO_REUSEPORT, which lets a second server bind the same port and share
  // its connections; SO_REUSEADDR alone still allows a quick restart after TIME_WAIT.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.http.set_keep_alive_timeout(5);
  // One handler thread per connection that may be generating or waiting, plus a few for health
  // checks and metrics scrapes.
  const size_t threads = std::min<size_t>(1024, static_cast<size_t>(s.opt.service.max_queued_requests) + 64);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  const std::string& host = s.opt.service.host;
  const int want = s.opt.service.port;
  s.port = want == 0 ? s.http.bind_to_any_port(host) : (s.http.bind_to_port(host, want) ? want : -1);
  if (s.port <= 0)
    throw Error(kExitCheckFailed, fmt::format("cannot listen on {}:{}: the address is in use or not available; choose "
                                              "another with --port / service.port", host, want));
  s.listen_fd = find_listening_socket(s.port);
  s.listener = std::thread([&s] {
    // shutdown() ends the listener by closing its socket, which httplib reports as a failure
    if (!s.http.listen_after_bind() && !s.draining) spdlog::error("the HTTP listener stopped with an error");
  });
  return s.port;
}

void Server::attach(const ServedModel& model) {
  if (model.names.empty()) throw Error(kExitUsage, "server: the served model needs at least one name");
  auto served = std::make_shared<Served>();
  served->info = model;
  const Tokenizer& tok = *model.tokenizer;
  served->stop_ids = tok.end_of_turn_ids();
  if (tok.eos() != kNoToken) served->stop_ids.push_back(tok.eos());
  for (const std::string& t : chat::end_of_turn_tokens(model.chat_format))
    if (auto id = tok.find_token(t)) served->stop_ids.push_back(*id);
  SchedulerOptions so;
  so.max_sequences = model.max_sequences;
  so.max_queued = static_cast<size_t>(impl_->opt.service.max_queued_requests);
  so.kv_blocks = model.kv_blocks;
  so.block_size = model.kv_block_size;
  so.kv_type = model.kv_type;
  so.threads = model.threads;
  so.prefix_cache = model.prefix_cache;
  so.encoder_cache_bytes = model.encoder_cache_bytes;
  served->scheduler = std::make_unique<Scheduler>(*model.model, tok, so, model.vision);
  impl_->served.store(served);
}

void Server::shutdown(std::chrono::milliseconds drain) {
  Impl& s = *impl_;
  if (!s.listener.joinable()) return;
  s.draining = true;
  // refuse new connections at once, but keep serving the open ones (streams included)
  if (s.listen_fd >= 0) ::shutdown(s.listen_fd, SHUT_RDWR);
  if (auto m = s.model()) {
    m->scheduler->stop_accepting();
    const auto until = Clock::now() + drain;
    while (!m->scheduler->idle() && Clock::now() < until) std::this_thread::sleep_for(20ms);
    if (!m->scheduler->idle()) {
      spdlog::warn("drain timeout reached: ending the requests still running");
      m->scheduler->cancel_all();
      while (!m->scheduler->idle()) std::this_thread::sleep_for(20ms);
    }
  }
  std::this_thread::sleep_for(200ms);  // let handlers write their last bytes
  s.http.stop();
  s.listener.join();
}

}  // namespace autoglm::server
