// Continuous batching over the engine: admission by free KV blocks, chunked prefill next to running
// generations, sampling and stop handling per sequence.
#include "scheduler.h"

#include <algorithm>
#include <cmath>
#include <spdlog/spdlog.h>

#include "autoglm/error.h"

namespace autoglm::server {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::timeout: return "timeout";
    case FinishReason::error: return "error";
    case FinishReason::none: break;
  }
  return "none";
}

// ---- Generation: the HTTP side -----------------------------------------------------------------

bool Generation::wait(Delta& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return finished_ || !pending_.text.empty() || !pending_.tokens.empty(); });
  out.text += pending_.text;
  for (GeneratedToken& t : pending_.tokens) out.tokens.push_back(std::move(t));
  pending_ = {};
  return finished_;
}

FinishReason Generation::finish_reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

std::string Generation::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

size_t Generation::completion_tokens() const {
  std::lock_guard lock(mu_);
  return completion_tokens_;
}

std::optional<double> Generation::time_to_first_token() const {
  std::lock_guard lock(mu_);
  if (!first_token_) return std::nullopt;
  return std::chrono::duration<double>(*first_token_ - submitted_).count();
}

void Generation::push(std::string_view text, const GeneratedToken* token) {
  {
    std::lock_guard lock(mu_);
    pending_.text += text;
    if (token) {
      pending_.tokens.push_back(*token);
      ++completion_tokens_;
      if (!first_token_) first_token_ = Clock::now();
    }
  }
  cv_.notify_all();
}

void Generation::finish(FinishReason reason, std::string error) {
  {
    std::lock_guard lock(mu_);
    finished_ = true;
    reason_ = reason;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

// ---- the scheduler -------------------------------------------------------------------------------

struct Scheduler::Active {
  std::shared_ptr<Generation> gen;
  GenerationRequest req;
  engine::KvCache::Sequence seq;
  size_t prefilled = 0;                 // prompt tokens already in the cache
  std::vector<int32_t> generated;       // sampled tokens (the last one not yet in the cache)
  sampling::Sampler sampler;
  sampling::StopMatcher stops;
  Utf8StreamDecoder utf8;
  bool done = false;                    // retired: leaves the batch after this step
  bool images_ready = false;            // the images' embeddings are computed (or not needed)
  std::vector<float> embeds;            // the images' decoder rows, image after image
  std::vector<const float*> rows;       // per prompt token: its image row, or nullptr
  bool decoding() const { return prefilled == req.prompt.size(); }
  std::span<const int32_t> key() const { return req.cache_key.empty() ? std::span(req.prompt) : std::span(req.cache_key); }

  Active(GenerationRequest r)
      : gen(std::make_shared<Generation>()), req(std::move(r)), sampler(req.sampling), stops(req.stop) {}
};

Scheduler::Scheduler(const model::Model& model, const Tokenizer& tokenizer, SchedulerOptions options,
                     const vision::VisionModel* vision)
    : tokenizer_(tokenizer),
      options_(options),
      cache_(model.config, options.kv_blocks, options.block_size, options.kv_type),
      engine_(model, cache_, {options.threads, std::max(options.max_step_tokens, options.prefill_tokens_while_decoding) +
                                                   options.max_sequences}),
      encoder_(vision ? std::make_unique<vision::VisionEncoder>(*vision, engine_.pool()) : nullptr),
      encoder_cache_(options.encoder_cache_bytes),
      vocab_size_(model.config.vocab_size) {
  if (options_.max_sequences == 0 || options_.kv_blocks == 0 || options_.max_step_tokens == 0 ||
      options_.prefill_tokens_while_decoding == 0)
    throw Error(kExitUsage, "scheduler: max_sequences, kv_blocks and the step sizes must be at least 1");
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (Finished& f : finished_) f.gen->finish(f.reason, std::move(f.error));
  for (auto& a : running_) a->gen->finish(FinishReason::cancelled);
  for (auto& a : waiting_) a->gen->finish(FinishReason::cancelled);
}

std::shared_ptr<Generation> Scheduler::submit(GenerationRequest request, Refusal* why) {
  auto refuse = [&](Refusal r) {
    if (why) *why = r;
    return nullptr;
  };
  if (request.prompt.empty() || request.max_tokens == 0) throw Error(kExitUsage, "scheduler: empty prompt or max_tokens 0");
  if (!request.images.empty() && !encoder_) throw Error(kExitUsage, "scheduler: images for a model without a vision tower");
  if ((!request.rope.empty() && request.rope.size() != request.prompt.size()) ||
      (!request.cache_key.empty() && request.cache_key.size() != request.prompt.size()))
    throw Error(kExitUsage, "scheduler: rope positions or cache key do not match the prompt");
  if (request.prompt.size() + request.max_tokens > kv_capacity_tokens()) return refuse(Refusal::too_long);
  auto active = std::make_unique<Active>(std::move(request));
  std::shared_ptr<Generation> gen = active->gen;
  gen->prompt_tokens_ = active->req.prompt.size();
  for (const PromptImage& image : active->req.images) gen->image_tokens_ += image.place.n_tokens();
  {
    std::lock_guard lock(mu_);
    if (!accepting_) return refuse(Refusal::stopping);
    // a request may wait when every slot is busy, up to max_queued of them
    const size_t busy = running_count_ + waiting_.size();
    if (busy >= options_.max_sequences + options_.max_queued) return refuse(Refusal::queue_full);
    waiting_.push_back(std::move(active));
  }
  cv_.notify_all();
  if (why) *why = Refusal::none;
  return gen;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mu_);
  SchedulerStats s;
  s.waiting = waiting_.size();
  s.running = running_count_;
  s.kv_blocks_used = kv_used_;
  s.kv_blocks_total = options_.kv_blocks;
  s.prompt_tokens = prompt_total_;
  s.generated_tokens = generated_total_;
  s.cached_prompt_tokens = cached_total_;
  s.images_encoded = images_encoded_;
  s.images_cached = images_cached_;
  s.encoder_cache_hits = encoder_cache_hits_;
  s.encoder_cache_bytes = encoder_cache_held_;
  s.image_encode_seconds = image_encode_seconds_;
  s.engine_seconds = engine_seconds_;
  s.decode_steps = decode_steps_;
  s.decode_step_tokens = decode_step_tokens_;
  s.decode_step_seconds = decode_step_seconds_;
  const auto horizon = Clock::now() - std::chrono::seconds(10);
  size_t tokens = 0;
  for (const auto& [when, n] : recent_)
    if (when >= horizon) tokens += n;
  s.generation_tokens_per_second = static_cast<double>(tokens) / 10.0;
  return s;
}

void Scheduler::stop_accepting() {
  std::lock_guard lock(mu_);
  accepting_ = false;
}

bool Scheduler::idle() const {
  std::lock_guard lock(mu_);
  return waiting_.empty() && running_count_ == 0;
}

void Scheduler::cancel_all() {
  cancel_all_ = true;
  cv_.notify_all();
}

// ---- the scheduler thread ------------------------------------------------------------------------

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Waiting requests are re-checked now and then for cancellation and deadlines even when
      // nothing runs; an idle server sleeps until a submit.
      auto ready = [&] { return quit_ || !running_.empty() || !waiting_.empty(); };
      if (running_.empty() && !waiting_.empty()) cv_.wait_for(lock, std::chrono::milliseconds(20), ready);
      else cv_.wait(lock, ready);
      if (quit_) return;
    }
    admit_waiting();
    if (!running_.empty()) run_step();
    {
      std::lock_guard lock(mu_);
      running_count_ = running_.size();
      kv_used_ = cache_.total_blocks() - cache_.free_blocks();
    }
    for (Finished& f : finished_) f.gen->finish(f.reason, std::move(f.error));
    finished_.clear();
  }
}

// Moves waiting requests into the batch in arrival order while there is a slot and KV room for the
// whole request (prompt + max_tokens: a running sequence never runs out of cache).
void Scheduler::admit_waiting() {
  std::lock_guard lock(mu_);
  const bool cancel_everything = cancel_all_;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    Active& a = **it;
    FinishReason gone = FinishReason::none;
    if (cancel_everything || a.gen->cancelled()) gone = FinishReason::cancelled;
    else if (Clock::now() >= a.req.deadline) gone = FinishReason::timeout;
    if (gone != FinishReason::none) {
      a.gen->finish(gone);
      it = waiting_.erase(it);
      continue;
    }
    ++it;
  }
  while (!waiting_.empty() && running_.size() < options_.max_sequences) {
    Active& a = *waiting_.front();
    // the cached K/V of a prompt prefix another request computed (e.g. the same system prompt)
    const size_t shared = options_.prefix_cache ? cache_.share_prefix(a.seq, a.key()) : 0;
    if (!cache_.reserve(a.seq, a.req.prompt.size() + a.req.max_tokens)) {  // FIFO: wait for room
      cache_.release(a.seq);
      break;
    }
    a.prefilled = shared;
    a.gen->cached_tokens_ = shared;
    cached_total_ += shared;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  running_count_ = running_.size();
  kv_used_ = cache_.total_blocks() - cache_.free_blocks();
}

void Scheduler::retire(Active& a, FinishReason reason, std::string error) {
  if (reason == FinishReason::stop || reason == FinishReason::length) {
    // text held back for a possible stop string or an incomplete UTF-8 sequence
    std::string rest = a.stops.feed(a.utf8.flush()).text;
    if (!a.stops.stopped()) rest += a.stops.flush();
    if (!rest.empty()) a.gen->push(rest, nullptr);
  }
  cache_.release(a.seq);
  a.done = true;
  // told after this step's statistics are updated, so a client that looks at /metrics right after
  // its answer sees its blocks freed
  finished_.push_back({a.gen, reason, std::move(error)});
}

bool Scheduler::finish_expired(Active& a) {
  if (cancel_all_ || a.gen->cancelled()) {
    retire(a, FinishReason::cancelled);
    return true;
  }
  if (Clock::now() >= a.req.deadline) {
    retire(a, FinishReason::timeout);
    return true;
  }
  return false;
}

void Scheduler::run_step() {
  std::erase_if(running_, [&](const std::unique_ptr<Active>& a) { return finish_expired(*a); });
  if (running_.empty()) return;

  // images of newly admitted prompts go through the vision tower before their first chunk
  for (auto& a : running_)
    if (!a->images_ready) encode_images(*a);
  std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return a->done; });
  if (running_.empty()) return;

  // every generating sequence advances by one token; prompts share what is left of the step
  items_.clear();
  item_owner_.clear();
  size_t decoding = 0;
  for (auto& a : running_) {
    if (!a->decoding()) continue;
    engine::StepItem item{&a->seq, std::span(&a->generated.back(), 1), false};
    item.rope_offset = a->req.rope_offset;
    items_.push_back(item);
    item_owner_.push_back(a.get());
    ++decoding;
  }
  size_t budget = decoding ? options_.prefill_tokens_while_decoding : options_.max_step_tokens;
  for (auto& a : running_) {
    if (a->decoding() || budget == 0) continue;
    const size_t chunk = std::min(budget, a->req.prompt.size() - a->prefilled);
    engine::StepItem item{&a->seq, std::span(a->req.prompt).subspan(a->prefilled, chunk), false};
    if (!a->rows.empty()) item.embeddings = std::span<const float* const>(a->rows).subspan(a->prefilled, chunk);
    if (!a->req.rope.empty()) item.rope_positions = std::span(a->req.rope).subspan(a->prefilled, chunk);
    items_.push_back(item);
    item_owner_.push_back(a.get());
    budget -= chunk;
  }

  size_t prompt_tokens = 0, generated = 0;
  const auto started = Clock::now();
  try {
    engine_.step(items_, logits_);
  } catch (const std::exception& e) {
    spdlog::error("engine step failed: {}", e.what());
    for (auto& a : running_) retire(*a, FinishReason::error, e.what());
    running_.clear();
    return;
  }
  const double step_seconds = std::chrono::duration<double>(Clock::now() - started).count();
  for (size_t i = 0; i < items_.size(); ++i) {
    Active& a = *item_owner_[i];
    if (!a.decoding()) {
      a.prefilled += items_[i].tokens.size();
      prompt_tokens += items_[i].tokens.size();
      if (options_.prefix_cache) cache_.publish_prefix(a.seq, a.key().first(a.prefilled));
      if (!a.decoding()) continue;  // more prompt to go
    }
    accept_token(a, std::span(logits_).subspan(i * vocab_size_, vocab_size_));
    ++generated;
  }
  std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return a->done; });

  std::lock_guard lock(mu_);
  prompt_total_ += prompt_tokens;
  generated_total_ += generated;
  engine_seconds_ += step_seconds;
  if (decoding == items_.size()) {
    ++decode_steps_;
    decode_step_tokens_ += decoding;
    decode_step_seconds_ += step_seconds;
  }
  const auto now = Clock::now();
  recent_.emplace_back(now, generated);
  while (!recent_.empty() && recent_.front().first < now - std::chrono::seconds(10)) recent_.pop_front();
}

// Runs the vision tower over the images whose tokens are still to be computed (an image wholly
// inside the shared prefix needs none) and points the prompt's image tokens at their rows.
void Scheduler::encode_images(Active& a) {
  a.images_ready = true;
  if (a.req.images.empty()) return;
  const size_t out_dim = encoder_->config().out_dim;
  // an image whose tokens are all in the shared prefix is never read again: no rows for it
  auto needed = [&](const PromptImage& image) { return image.place.first + image.place.n_tokens() > a.prefilled; };
  size_t total = 0;
  for (const PromptImage& image : a.req.images)
    if (needed(image)) total += image.place.n_tokens();
  a.embeds.assign(total * out_dim, 0.0f);
  a.rows.assign(a.req.prompt.size(), nullptr);
  size_t row = 0, encoded = 0, cached = 0, hits = 0;
  const auto started = Clock::now();
  try {
    for (const PromptImage& image : a.req.images) {
      const size_t n = image.place.n_tokens();
      if (!needed(image)) {
        ++cached;
        continue;
      }
      EncoderCache::Rows out = image.hash ? encoder_cache_.find(image.hash) : nullptr;
      if (out && out->size() == n * out_dim) {
        ++hits;
      } else {
        auto fresh = std::make_shared<std::vector<float>>();
        encoder_->encode(image.patches.data(), image.grid, *fresh);
        if (fresh->size() != n * out_dim) throw Error(kExitCheckFailed, "the vision tower returned the wrong number of rows");
        out = std::move(fresh);
        if (image.hash) encoder_cache_.insert(image.hash, out);
        ++encoded;
      }
      std::copy(out->begin(), out->end(), a.embeds.begin() + static_cast<std::ptrdiff_t>(row * out_dim));
      for (size_t j = 0; j < n; ++j) a.rows[image.place.first + j] = a.embeds.data() + (row + j) * out_dim;
      row += n;
    }
  } catch (const std::exception& e) {
    retire(a, FinishReason::error, std::string("image encoding failed: ") + e.what());
  }
  // the patches are not needed any more
  for (PromptImage& image : a.req.images) std::vector<float>().swap(image.patches);
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::lock_guard lock(mu_);
  images_encoded_ += encoded;
  images_cached_ += cached;
  encoder_cache_hits_ += hits;
  encoder_cache_held_ = encoder_cache_.bytes();
  image_encode_seconds_ += seconds;
}

// Samples the next token of `a` from its logits, streams its text, and retires the sequence when
// it ends (end-of-turn token, stop string, max_tokens or the end of the context).
void Scheduler::accept_token(Active& a, std::span<const float> logits) {
  int32_t id = 0;
  GeneratedToken token;
  try {
    id = a.sampler.sample(logits, a.generated);
    if (a.req.logprobs >= 0) {
      token.logprob = sampling::token_logprob(logits, id);
      token.top = sampling::top_logprobs(logits, a.req.logprobs);
    }
  } catch (const std::exception& e) {
    retire(a, FinishReason::error, e.what());
    return;
  }
  if (std::find(a.req.stop_ids.begin(), a.req.stop_ids.end(), id) != a.req.stop_ids.end()) {
    retire(a, FinishReason::stop);
    return;
  }
  token.id = id;
  a.generated.push_back(id);
  const std::string piece = tokenizer_.is_special(id) ? std::string() : tokenizer_.token_piece(id);
  const sampling::StopMatcher::Result r = a.stops.feed(a.utf8.push(piece));
  a.gen->push(r.text, &token);
  if (r.stopped) retire(a, FinishReason::stop);
  else if (a.generated.size() >= a.req.max_tokens) retire(a, FinishReason::length);
}

}  // namespace autoglm::server
