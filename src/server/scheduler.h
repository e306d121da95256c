#pragma once
// Continuous batching: requests join the running batch at the next engine step and leave when they
// finish; prompts are prefilled in chunks next to the running generations. One thread drives the
// engine; HTTP threads submit requests and read their output through a Generation.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "autoglm/engine.h"
#include "autoglm/sampling.h"
#include "autoglm/tokenizer.h"
#include "autoglm/vision.h"
#include "encoder_cache.h"

namespace autoglm::server {

using Clock = std::chrono::steady_clock;

enum class FinishReason { none, stop, length, cancelled, timeout, error };
const char* finish_reason_name(FinishReason r);  // "stop", "length", ... as the API reports it

struct GeneratedToken {
  int32_t id = 0;
  float logprob = 0.0f;                      // log-softmax of the raw logits (when logprobs were asked for)
  std::vector<sampling::TokenLogprob> top;   // the most probable alternatives, most probable first
};

// Output released since the last Generation::wait(): text (UTF-8 complete, stop strings held back)
// and the tokens that produced it.
struct Delta {
  std::string text;
  std::vector<GeneratedToken> tokens;
};

// An image of a prompt: its patches for the vision tower and where its tokens are.
struct PromptImage {
  std::vector<float> patches;     // [grid.n_patches()][patch_dim], the processor's order
  vision::PatchGrid grid;
  engine::ImagePlacement place;   // its tokens in the prompt
  uint64_t hash = 0;              // vision::image_hash of the patches: the encoder cache's key
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  // Vision models: the prompt's images, its M-RoPE positions (one per prompt token) and the offset
  // of the positions after it, and the tokens the prefix cache knows it by (images by content).
  // All empty for a text prompt.
  std::vector<PromptImage> images;
  std::vector<engine::RopePosition> rope;
  int64_t rope_offset = 0;
  std::vector<int32_t> cache_key;
  size_t max_tokens = 16;
  sampling::SamplingParams sampling;
  std::vector<std::string> stop;    // stop strings: generation ends before them
  std::vector<int32_t> stop_ids;    // end-of-turn / EOS ids: generation ends, the token is not output
  int logprobs = -1;                // -1: none; n >= 0: each token's logprob and n alternatives
  Clock::time_point deadline = Clock::time_point::max();
};

// One request's progress, shared by the HTTP thread that waits on it and the scheduler thread.
class Generation {
 public:
  // Appends the output released since the last call to `out`, waiting up to `timeout` when there is
  // none yet. Returns true once the generation has finished and all its output has been taken.
  bool wait(Delta& out, std::chrono::milliseconds timeout);
  // Ends the generation at the next step and frees its KV blocks (client gone).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Valid once wait() returned true.
  FinishReason finish_reason() const;
  std::string error() const;            // what went wrong, for FinishReason::error
  size_t prompt_tokens() const { return prompt_tokens_; }
  size_t cached_tokens() const { return cached_tokens_; }  // prompt positions taken from the prefix cache
  size_t image_tokens() const { return image_tokens_; }    // prompt positions that hold images
  size_t completion_tokens() const;
  std::optional<double> time_to_first_token() const;  // seconds from submit to the first token

 private:
  friend class Scheduler;
  void push(std::string_view text, const GeneratedToken* token);
  void finish(FinishReason reason, std::string error = {});

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Delta pending_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::none;
  std::string error_;
  size_t prompt_tokens_ = 0, image_tokens_ = 0;
  std::atomic<size_t> cached_tokens_{0};
  size_t completion_tokens_ = 0;
  Clock::time_point submitted_ = Clock::now();
  std::optional<Clock::time_point> first_token_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  size_t max_sequences = 8;     // sequences in the running batch
  size_t max_queued = 256;      // requests waiting for a slot; more are turned away
  size_t kv_blocks = 0;         // KV cache size in blocks of block_size positions
  size_t block_size = 16;
  kernels::DType kv_type = kernels::DType::f16;
  int threads = 0;              // engine threads; 0 = all
  size_t max_step_tokens = 512;            // prefill chunk when nothing is generating
  size_t prefill_tokens_while_decoding = 128;  // prefill per step next to running generations
  bool prefix_cache = true;                 // share the KV of prompt prefixes between requests
  uint64_t encoder_cache_bytes = 0;         // vision tower outputs kept by image hash; 0 = none
};

struct SchedulerStats {
  size_t waiting = 0, running = 0;
  size_t kv_blocks_used = 0, kv_blocks_total = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0;  // since start (prompt: computed, not cached)
  uint64_t cached_prompt_tokens = 0;                 // prompt positions reused from the prefix cache
  uint64_t images_encoded = 0;                       // images run through the vision tower
  uint64_t images_cached = 0;                        // images whose tokens all came from the prefix cache
  uint64_t encoder_cache_hits = 0;                   // images whose tower output came from the encoder cache
  uint64_t encoder_cache_bytes = 0;                  // held by the encoder cache now
  double image_encode_seconds = 0;
  double generation_tokens_per_second = 0;           // over the last 10 seconds
  // Time inside engine steps, and the steps that only generated (no prompt tokens): how fast the
  // engine itself decodes, to set against what clients receive.
  double engine_seconds = 0;
  uint64_t decode_steps = 0, decode_step_tokens = 0;
  double decode_step_seconds = 0;
};

class Scheduler {
 public:
  // `vision` (may be null) encodes the images of prompts; it must outlive the scheduler.
  Scheduler(const model::Model& model, const Tokenizer& tokenizer, SchedulerOptions options,
            const vision::VisionModel* vision = nullptr);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  enum class Refusal { none, queue_full, too_long, stopping };
  // Queues a request; nullptr (and why) when it cannot be taken. too_long: prompt + max_tokens
  // needs more KV positions than the whole cache holds.
  std::shared_ptr<Generation> submit(GenerationRequest request, Refusal* why);

  size_t kv_capacity_tokens() const { return options_.kv_blocks * options_.block_size; }
  SchedulerStats stats() const;

  void stop_accepting();   // later submits are refused (shutdown)
  bool idle() const;       // nothing waiting or running
  void cancel_all();       // every request ends (cancelled) at the next step

 private:
  struct Active;
  void loop();
  void admit_waiting();
  void retire(Active& a, FinishReason reason, std::string error = {});
  bool finish_expired(Active& a);
  void run_step();
  void accept_token(Active& a, std::span<const float> logits);
  void encode_images(Active& a);

  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  engine::KvCache cache_;
  engine::Engine engine_;
  std::unique_ptr<vision::VisionEncoder> encoder_;
  EncoderCache encoder_cache_;
  size_t vocab_size_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> waiting_;    // guarded by mu_
  std::vector<std::unique_ptr<Active>> running_;   // scheduler thread only
  bool accepting_ = true, quit_ = false;           // guarded by mu_
  std::atomic<bool> cancel_all_{false};
  // stats, guarded by mu_
  size_t running_count_ = 0, kv_used_ = 0;
  uint64_t prompt_total_ = 0, generated_total_ = 0, cached_total_ = 0;
  double engine_seconds_ = 0, decode_step_seconds_ = 0;
  uint64_t decode_steps_ = 0, decode_step_tokens_ = 0;
  uint64_t images_encoded_ = 0, images_cached_ = 0, encoder_cache_hits_ = 0, encoder_cache_held_ = 0;
  double image_encode_seconds_ = 0;
  std::deque<std::pair<Clock::time_point, size_t>> recent_;  // (step end, tokens generated)

  struct Finished {
    std::shared_ptr<Generation> gen;
    FinishReason reason;
    std::string error;
  };
  std::vector<Finished> finished_;                 // retired this step, told at its end
  std::vector<engine::StepItem> items_;
  std::vector<Active*> item_owner_;
  std::vector<float> logits_;
  std::thread thread_;
};

}  // namespace autoglm::server
