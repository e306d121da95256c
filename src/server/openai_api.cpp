#include "openai_api.h"

#include <cmath>
#include <fmt/format.h>

namespace autoglm::server {
namespace {

using json = nlohmann::json;

ApiError bad(const std::string& param, const std::string& message) { return ApiError(400, message, param); }

// The value of `name`, or nullptr when it is absent or null (null means "default" in the OpenAI API).
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<double> number(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw bad(name, fmt::format("'{}' must be a number", name));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) throw bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

// `parent` names the object the field sits in ("mm_processor_kwargs."), for the message and param.
std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi, std::string_view parent = {}) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  const std::string param = std::string(parent) + name;
  if (!v->is_number_integer()) throw bad(param, fmt::format("'{}' must be an integer", param));
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (x < lo || x > hi) throw bad(param, fmt::format("'{}' must be between {} and {}, got {}", param, lo, hi, x));
  return x;
}

std::optional<bool> boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw bad(name, fmt::format("'{}' must be true or false", name));
  return v->get<bool>();
}

std::string text(const json& v, const std::string& param) {
  if (!v.is_string()) throw bad(param, fmt::format("'{}' must be a string", param));
  return v.get<std::string>();
}

// Features a client may send that this server does not implement: refused, never ignored.
void refuse_unsupported(const json& body) {
  auto present = [&](const char* name) {
    const json* v = field(body, name);
    return v && !(v->is_array() && v->empty()) && !(v->is_object() && v->empty());
  };
  for (const char* name : {"tools", "functions", "logit_bias", "suffix"})
    if (present(name)) throw bad(name, fmt::format("'{}' is not supported by this server", name));
  if (const json* v = field(body, "tool_choice"); v && !(v->is_string() && v->get<std::string>() == "none"))
    throw bad("tool_choice", "'tool_choice' is not supported by this server");
  if (const json* v = field(body, "response_format"); v && !(v->is_object() && v->value("type", "") == "text"))
    throw bad("response_format", "only response_format {\"type\": \"text\"} is supported");
  if (auto n = integer(body, "n", 1, 128); n && *n != 1) throw bad("n", "only n = 1 is supported");
  if (auto b = integer(body, "best_of", 1, 128); b && *b != 1) throw bad("best_of", "only best_of = 1 is supported");
  if (boolean(body, "echo").value_or(false)) throw bad("echo", "'echo' is not supported by this server");
}

// An image part's URL: {"type": "image_url", "image_url": {"url": ...}} (or the URL as a string, as
// some clients send it).
std::string image_url(const json& part, const std::string& param) {
  const json* u = field(part, "image_url");
  if (!u) throw bad(param, fmt::format("'{}': an image_url part needs 'image_url'", param));
  if (u->is_string()) return u->get<std::string>();
  if (!u->is_object() || !field(*u, "url")) throw bad(param + ".image_url", fmt::format("'{}.image_url' must be an object with a 'url'", param));
  return text((*u)["url"], param + ".image_url.url");
}

// A message's content: a string, or an array of text and image_url parts. Image parts are recorded
// where they stand in the text.
chat::ChatMessage message_content(const json& m, size_t index, std::string role, std::vector<ImagePart>& images) {
  const std::string param = fmt::format("messages[{}].content", index);
  chat::ChatMessage out{std::move(role), ""};
  const json* c = field(m, "content");
  if (!c) return out;
  if (c->is_string()) {
    out.content = c->get<std::string>();
    return out;
  }
  if (!c->is_array()) throw bad(param, fmt::format("'{}' must be a string or an array of content parts", param));
  for (size_t i = 0; i < c->size(); ++i) {
    const json& part = (*c)[i];
    const std::string at = fmt::format("{}[{}]", param, i);
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      throw bad(at, fmt::format("'{}' must be an object with a 'type'", at));
    const std::string type = part["type"].get<std::string>();
    if (type == "image_url") {
      images.push_back({image_url(part, at), at + ".image_url"});
      out.images.push_back(out.content.size());
      continue;
    }
    if (type != "text")
      throw bad(at, fmt::format("'{}': '{}' parts are not supported (text and image_url are)", at, type));
    if (!part.contains("text")) throw bad(at, fmt::format("'{}': a text part needs 'text'", at));
    out.content += text(part["text"], at + ".text");
  }
  return out;
}

std::vector<chat::ChatMessage> parse_messages(const json& body, std::vector<ImagePart>& images) {
  const json* ms = field(body, "messages");
  if (!ms) throw bad("messages", "'messages' is required");
  if (!ms->is_array() || ms->empty()) throw bad("messages", "'messages' must be a non-empty array");
  std::vector<chat::ChatMessage> out;
  for (size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw bad(param, fmt::format("'{}' must be an object", param));
    if (!m.contains("role")) throw bad(param + ".role", fmt::format("'{}.role' is required", param));
    std::string role = text(m["role"], param + ".role");
    if (role == "developer") role = "system";  // the newer name for the system role
    if (role != "system" && role != "user" && role != "assistant")
      throw bad(param + ".role", fmt::format("role '{}' is not supported (system, user, assistant)", role));
    if (field(m, "tool_calls")) throw bad(param + ".tool_calls", "tool calls are not supported by this server");
    out.push_back(message_content(m, i, role, images));
    if (!out.back().images.empty() && role != "user")
      throw bad(param + ".content", fmt::format("'{}': images are read in user messages only", param));
  }
  return out;
}

// /infer's "images": URLs, one per "<|image|>" in the prompt, in order.
std::vector<ImagePart> infer_images(const json& body) {
  const json* v = field(body, "images");
  if (!v) return {};
  if (!v->is_array()) throw bad("images", "'images' must be an array of image URLs (data:image/png;base64,...)");
  std::vector<ImagePart> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string param = fmt::format("images[{}]", i);
    out.push_back({text((*v)[i], param), param});
  }
  return out;
}

// mm_processor_kwargs (vLLM's name): min_pixels / max_pixels for this request's images.
void parse_processor_kwargs(const json& body, ApiRequest& r) {
  const json* k = field(body, "mm_processor_kwargs");
  if (!k) return;
  if (!k->is_object()) throw bad("mm_processor_kwargs", "'mm_processor_kwargs' must be an object");
  for (const auto& [key, value] : k->items())
    if (key != "min_pixels" && key != "max_pixels")
      throw bad("mm_processor_kwargs." + key, fmt::format("'mm_processor_kwargs.{}' is not supported (min_pixels, max_pixels)", key));
  constexpr int64_t kMost = int64_t{1} << 28;
  if (auto v = integer(*k, "min_pixels", 1, kMost, "mm_processor_kwargs.")) r.min_pixels = static_cast<uint64_t>(*v);
  if (auto v = integer(*k, "max_pixels", 1, kMost, "mm_processor_kwargs.")) r.max_pixels = static_cast<uint64_t>(*v);
}

std::vector<int32_t> token_ids(const json& v, const std::string& param) {
  std::vector<int32_t> ids;
  for (const json& t : v) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
      throw bad(param, fmt::format("'{}' must hold token ids (non-negative integers)", param));
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

// "prompt": a string, one token-id array, or a one-element array of either.
void parse_prompt(const json& body, ApiRequest& r) {
  const json* p = field(body, "prompt");
  if (!p) throw bad("prompt", "'prompt' is required");
  const json* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1) throw bad("prompt", "only one prompt per request is supported");
    one = &p->front();
  }
  if (one->is_string()) r.prompt_text = one->get<std::string>();
  else if (one->is_array()) r.prompt_ids = token_ids(*one, "prompt");
  else throw bad("prompt", "'prompt' must be a string or an array of token ids");
  if (!r.prompt_text && r.prompt_ids.empty()) throw bad("prompt", "'prompt' is empty");
}

std::vector<std::string> parse_stop(const json& body) {
  const json* s = field(body, "stop");
  if (!s) return {};
  if (s->is_string()) return {s->get<std::string>()};
  if (!s->is_array()) throw bad("stop", "'stop' must be a string or an array of strings");
  if (s->size() > 16) throw bad("stop", "'stop' may hold at most 16 strings");
  std::vector<std::string> out;
  for (const json& x : *s) out.push_back(text(x, "stop"));
  return out;
}

void parse_sampling(const json& body, ApiRequest& r) {
  sampling::SamplingParams& s = r.sampling;
  s = {};                       // OpenAI defaults: temperature 1, top_p 1, no penalties
  s.penalty_last_n = -1;        // penalties look at everything generated so far
  if (auto v = number(body, "temperature", 0, 2)) s.temperature = static_cast<float>(*v);
  if (auto v = number(body, "top_p", 0, 1)) {
    if (*v == 0) throw bad("top_p", "'top_p' must be greater than 0");
    s.top_p = static_cast<float>(*v);
  }
  if (auto v = integer(body, "top_k", -1, 1'000'000)) s.top_k = *v < 0 ? 0 : static_cast<int>(*v);  // -1 = off (vLLM)
  if (auto v = number(body, "min_p", 0, 1)) s.min_p = static_cast<float>(*v);
  if (auto v = number(body, "presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*v);
  if (auto v = number(body, "frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*v);
  if (auto v = number(body, "repetition_penalty", 0.01, 10)) s.repetition_penalty = static_cast<float>(*v);
  if (auto v = integer(body, "seed", INT64_MIN, INT64_MAX)) {
    s.seed = static_cast<uint64_t>(*v);
    r.seed_given = true;
  }
}

void parse_logprobs(const json& body, ApiRequest& r) {
  if (r.endpoint == Endpoint::chat) {
    const bool on = boolean(body, "logprobs").value_or(false);
    const auto top = integer(body, "top_logprobs", 0, 20);
    if (top && !on) throw bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (on) r.logprobs = static_cast<int>(top.value_or(0));
  } else if (auto n = integer(body, "logprobs", 0, 20)) {
    r.logprobs = static_cast<int>(*n);
  }
}

json token_logprob_json(const GeneratedToken& t, const TokenText& text_of, bool with_top) {
  auto entry = [&](int32_t id, float lp) {
    const std::string s = text_of(id);
    json bytes = json::array();
    for (unsigned char c : s) bytes.push_back(c);
    return json{{"token", s}, {"logprob", lp}, {"bytes", bytes}};
  };
  json j = entry(t.id, t.logprob);
  if (with_top) {
    json top = json::array();
    for (const sampling::TokenLogprob& alt : t.top) top.push_back(entry(alt.id, alt.logprob));
    j["top_logprobs"] = top;
  }
  return j;
}

json chat_logprobs(const Delta& d, const TokenText& text_of) {
  json content = json::array();
  for (const GeneratedToken& t : d.tokens) content.push_back(token_logprob_json(t, text_of, true));
  return json{{"content", content}};
}

// The legacy completions shape: parallel arrays.
json completion_logprobs(const Delta& d, const TokenText& text_of, size_t text_offset) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const GeneratedToken& t : d.tokens) {
    const std::string s = text_of(t.id);
    tokens.push_back(s);
    lps.push_back(t.logprob);
    json top = json::object();
    for (const sampling::TokenLogprob& alt : t.top) top[text_of(alt.id)] = alt.logprob;
    tops.push_back(top);
    offsets.push_back(text_offset);
    text_offset += s.size();
  }
  return json{{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json reason_json(FinishReason r) {
  if (r == FinishReason::none) return nullptr;
  return finish_reason_name(r);
}

}  // namespace

json error_body(const ApiError& e) {
  return json{{"error", {{"message", e.what()},
                         {"type", e.type},
                         {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                         {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ApiRequest parse_request(Endpoint endpoint, const std::string& body_text) {
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  ApiRequest r;
  r.endpoint = endpoint;
  if (const json* m = field(body, "model")) r.model = text(*m, "model");
  refuse_unsupported(body);
  if (endpoint == Endpoint::chat) r.messages = parse_messages(body, r.images);
  else parse_prompt(body, r);
  if (endpoint == Endpoint::infer) r.images = infer_images(body);
  parse_processor_kwargs(body, r);
  const char* max_name = endpoint == Endpoint::chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (auto v = integer(body, max_name, 1, INT32_MAX)) r.max_tokens = static_cast<size_t>(*v);
  parse_sampling(body, r);
  r.stop = parse_stop(body);
  parse_logprobs(body, r);
  if (endpoint != Endpoint::infer) r.stream = boolean(body, "stream").value_or(false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) throw bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage").value_or(false);
  }
  return r;
}

json usage_json(const Usage& u) {
  json details{{"cached_tokens", u.cached_tokens}};
  if (u.image_tokens) details["image_tokens"] = u.image_tokens;
  return json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens},
              {"prompt_tokens_details", details}};
}

json chat_response(const ResponseMeta& m, const Delta& out, FinishReason reason, const Usage& usage, bool logprobs,
                   const TokenText& text_of) {
  json choice{{"index", 0},
              {"message", {{"role", "assistant"}, {"content", out.text}}},
              {"logprobs", logprobs ? chat_logprobs(out, text_of) : json(nullptr)},
              {"finish_reason", reason_json(reason)}};
  return json{{"id", m.id}, {"object", "chat.completion"}, {"created", m.created}, {"model", m.model},
              {"choices", json::array({choice})}, {"usage", usage_json(usage)}};
}

json completion_response(const ResponseMeta& m, const Delta& out, FinishReason reason, const Usage& usage,
                         bool logprobs, const TokenText& text_of) {
  json choice{{"index", 0}, {"text", out.text},
              {"logprobs", logprobs ? completion_logprobs(out, text_of, 0) : json(nullptr)},
              {"finish_reason", reason_json(reason)}};
  return json{{"id", m.id}, {"object", "text_completion"}, {"created", m.created}, {"model", m.model},
              {"choices", json::array({choice})}, {"usage", usage_json(usage)}};
}

json chat_chunk(const ResponseMeta& m, const Delta& delta, bool first, FinishReason reason, bool logprobs,
                const TokenText& text_of, bool include_usage) {
  json d = json::object();
  if (first) d["role"] = "assistant";
  if (!delta.text.empty() || first) d["content"] = delta.text;
  json choice{{"index", 0}, {"delta", d},
              {"logprobs", logprobs && !delta.tokens.empty() ? chat_logprobs(delta, text_of) : json(nullptr)},
              {"finish_reason", reason_json(reason)}};
  json j{{"id", m.id}, {"object", "chat.completion.chunk"}, {"created", m.created}, {"model", m.model},
         {"choices", json::array({choice})}};
  if (include_usage) j["usage"] = nullptr;
  return j;
}

json completion_chunk(const ResponseMeta& m, const Delta& delta, FinishReason reason, bool logprobs,
                      const TokenText& text_of, bool include_usage) {
  json choice{{"index", 0}, {"text", delta.text},
              {"logprobs", logprobs && !delta.tokens.empty() ? completion_logprobs(delta, text_of, 0) : json(nullptr)},
              {"finish_reason", reason_json(reason)}};
  json j{{"id", m.id}, {"object", "text_completion"}, {"created", m.created}, {"model", m.model},
         {"choices", json::array({choice})}};
  if (include_usage) j["usage"] = nullptr;
  return j;
}

json usage_chunk(const ResponseMeta& m, bool chat, const Usage& usage) {
  return json{{"id", m.id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", m.created},
              {"model", m.model}, {"choices", json::array()}, {"usage", usage_json(usage)}};
}

}  // namespace autoglm::server
