#pragma once
// The HTTP service: an OpenAI-compatible API (chat and text completions, streaming), /infer for
// simple scripts, health, readiness and Prometheus metrics, in front of a continuous-batching
// scheduler. Authentication, CORS, body limit, per-key rate limit, request logs, graceful drain.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "autoglm/chat.h"
#include "autoglm/config.h"
#include "autoglm/image.h"
#include "autoglm/kernels.h"
#include "autoglm/model.h"
#include "autoglm/tokenizer.h"
#include "autoglm/vision.h"

namespace autoglm::server {

struct ServerOptions {
  config::ServiceConfig service;      // host, port (0 = any free port), limits, CORS, rate limit
  std::vector<std::string> api_keys;  // resolved (config::resolve_api_keys); empty = no authentication
  std::string version;                // reported by /health
};

// The model to serve and how to batch it. The caller keeps model and tokenizer alive while the
// server runs.
struct ServedModel {
  const model::Model* model = nullptr;
  const Tokenizer* tokenizer = nullptr;
  // The model ids requests may name; names[0] is the id of every response (vLLM's --served-model-name).
  std::vector<std::string> names;
  chat::ChatFormat chat_format = chat::ChatFormat::glm4;
  size_t context_length = 0;         // prompt + completion limit per request
  size_t max_sequences = 8;          // running batch
  size_t kv_blocks = 0;              // KV cache blocks of kv_block_size positions
  size_t kv_block_size = 16;
  kernels::DType kv_type = kernels::DType::f16;
  int threads = 0;
  // A vision-language model (GLM-4.1V): its vision tower, how images are preprocessed, and the
  // token that stands for an image in the chat template's output. Null: text only.
  const vision::VisionModel* vision = nullptr;
  image::ProcessorConfig processor;
  int32_t image_token = -1;
  size_t max_images_per_request = 10;  // image parts one request may hold (vision.max_images_per_request)
  uint64_t encoder_cache_bytes = 0;    // image embeddings kept by content hash (vision.encoder_cache_size)
  bool prefix_cache = true;            // reuse the KV of prompt prefixes earlier requests computed
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and starts serving in the background: /health answers at once, /ready and the
  // API say 503 until attach(). Returns the bound port. Throws Error when the address is taken.
  int start();
  // Starts the scheduler for `model`; the API answers from now on.
  void attach(const ServedModel& model);
  // Graceful stop: new connections are refused, requests in flight may finish for `drain`, the
  // rest are ended; returns when every handler has returned.
  void shutdown(std::chrono::milliseconds drain);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace autoglm::server
