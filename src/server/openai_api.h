#pragma once
// The OpenAI-compatible request and response bodies: JSON in, a checked request out (or an
// ApiError with the HTTP status and the OpenAI error shape), and the JSON the API answers with.
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoglm/chat.h"
#include "autoglm/sampling.h"
#include "scheduler.h"

namespace autoglm::server {

// An error the client caused (or a state it must wait out), in the OpenAI error shape:
// {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  ApiError(int status_, std::string message, std::string param_ = {}, std::string code_ = {},
           std::string type_ = "invalid_request_error")
      : std::runtime_error(std::move(message)), status(status_), param(std::move(param_)),
        code(std::move(code_)), type(std::move(type_)) {}
  int status;
  std::string param, code, type;
};
nlohmann::json error_body(const ApiError& e);
// JSON text; invalid UTF-8 (a token that splits a character) becomes U+FFFD instead of throwing.
std::string dump(const nlohmann::json& j);

enum class Endpoint { chat, completion, infer };

// An image part of a chat message, as sent: its URL (a data: URL, http(s) or file) and where it was.
struct ImagePart {
  std::string url;
  std::string param;   // "messages[1].content[0].image_url", for errors
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::chat;
  std::string model;                         // as given ("" when absent)
  std::vector<chat::ChatMessage> messages;   // chat
  std::vector<ImagePart> images;             // chat: the image parts of all messages, in order; /infer: "images"
  std::optional<uint64_t> min_pixels, max_pixels;  // mm_processor_kwargs: this request's image pixel limits
  std::optional<std::string> prompt_text;    // completion / infer: text
  std::vector<int32_t> prompt_ids;           // completion: token ids given directly
  std::optional<size_t> max_tokens;          // absent: the endpoint's default
  sampling::SamplingParams sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  int logprobs = -1;                         // -1: none; else the number of alternatives
  bool stream = false;
  bool include_usage = false;                // stream_options.include_usage
};

// Parses and checks a request body. Throws ApiError(400) naming the parameter.
ApiRequest parse_request(Endpoint endpoint, const std::string& body);

// What a finished (or streaming) response is about.
struct ResponseMeta {
  std::string id;       // "chatcmpl-…", "cmpl-…"
  int64_t created = 0;  // Unix seconds
  std::string model;
};
using TokenText = std::function<std::string(int32_t)>;  // a token's text for logprobs

struct Usage {
  size_t prompt_tokens = 0, completion_tokens = 0;
  size_t cached_tokens = 0;  // of the prompt, from the prefix cache
  size_t image_tokens = 0;   // of the prompt, holding images (reported when there are any)
};
nlohmann::json usage_json(const Usage& u);

// Non-streaming bodies.
nlohmann::json chat_response(const ResponseMeta& m, const Delta& out, FinishReason reason, const Usage& usage,
                             bool logprobs, const TokenText& text_of);
nlohmann::json completion_response(const ResponseMeta& m, const Delta& out, FinishReason reason, const Usage& usage,
                                   bool logprobs, const TokenText& text_of);

// Streaming chunks (the JSON of one "data:" event). `reason` is none until the last chunk.
nlohmann::json chat_chunk(const ResponseMeta& m, const Delta& delta, bool first, FinishReason reason, bool logprobs,
                          const TokenText& text_of, bool include_usage);
nlohmann::json completion_chunk(const ResponseMeta& m, const Delta& delta, FinishReason reason, bool logprobs,
                                const TokenText& text_of, bool include_usage);
nlohmann::json usage_chunk(const ResponseMeta& m, bool chat, const Usage& usage);

}  // namespace autoglm::server
