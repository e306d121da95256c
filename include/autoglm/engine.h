#pragma once
// The CPU inference engine: a paged KV cache and a forward step over a batch of sequences at
// different positions, driven by the model's ArchConfig (one decoder for every family).
#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <unordered_map>
#include <span>
#include <vector>

#include "autoglm/kernels.h"
#include "autoglm/model.h"

namespace autoglm::engine {

// Fixed-size blocks of KV slots, handed to sequences from one shared pool. Rows are stored as F16
// (default) or Q8_0 (half the memory; needs head_dim a multiple of 32).
//
// Prefix sharing: a full block whose positions hold the K/V of a known token prefix can be
// published; when its sequences end it stays cached (evicted least recently used first, only when
// a block is needed), and a later sequence whose tokens start the same way takes it over instead of
// computing it again. K/V of a position depend only on the tokens up to it, so this never changes
// results. A block is matched by its tokens and its parent block, never by a hash alone.
class KvCache {
 public:
  // One sequence's view of the cache: its blocks, in position order, and how many positions it holds.
  struct Sequence {
    std::vector<uint32_t> blocks;
    size_t length = 0;
  };

  KvCache(const model::ArchConfig& config, size_t n_blocks, size_t block_size,
          kernels::DType type = kernels::DType::f16);
  // Makes room for `length` positions; false (and nothing allocated) when the pool is too small.
  bool reserve(Sequence& seq, size_t length);
  void release(Sequence& seq);
  // Blocks a reserve() can still get: unused ones plus cached prefix blocks no sequence holds.
  size_t free_blocks() const { return free_.size() + lru_.size(); }
  size_t total_blocks() const { return n_blocks_; }
  size_t block_size() const { return block_size_; }
  kernels::DType type() const { return type_; }
  size_t head_bytes() const { return head_bytes_; }  // one KV head's part of a row

  // For an empty `seq`: attaches the cached blocks that hold the longest prefix of `tokens`, always
  // leaving at least the last token to compute, and sets seq.length to the positions they cover,
  // which it returns. Whole blocks are shared; where the prefix ends inside a cached block, its
  // first positions are copied into a block of the sequence's own (when one is free).
  size_t share_prefix(Sequence& seq, std::span<const int32_t> tokens);
  // Publishes the full blocks of `seq` that hold tokens[0, n) (n <= seq.length) for later sharing.
  void publish_prefix(const Sequence& seq, std::span<const int32_t> tokens);

  // The K or V row (n_kv_heads * head_dim values, head after head) of `layer` at position `pos`.
  uint8_t* k_row(const Sequence& seq, size_t layer, size_t pos) { return row(k_, seq, layer, pos); }
  uint8_t* v_row(const Sequence& seq, size_t layer, size_t pos) { return row(v_, seq, layer, pos); }

 private:
  // A published block: its tokens and its parent (the block before it, as it was then).
  struct Published {
    bool valid = false;
    uint32_t parent = kNoParent;
    uint32_t parent_generation = 0;
    std::vector<int32_t> tokens;
  };
  static constexpr uint32_t kNoParent = UINT32_MAX;
  uint8_t* row(std::vector<uint8_t>& store, const Sequence& seq, size_t layer, size_t pos);
  uint32_t take_block();
  uint64_t key(uint32_t parent, std::span<const int32_t> tokens) const;
  std::optional<uint32_t> find_published(uint32_t parent, std::span<const int32_t> tokens) const;
  static uint64_t child_key(uint32_t parent, uint32_t generation) { return (uint64_t{generation} << 32) | parent; }
  size_t share_partial(Sequence& seq, uint32_t parent, std::span<const int32_t> tokens);

  kernels::DType type_;
  size_t n_layers_, n_blocks_, block_size_, row_elems_, row_bytes_, head_bytes_;
  std::vector<uint8_t> k_, v_;   // [layer][block][slot][row_bytes]
  std::vector<uint32_t> free_;
  std::vector<uint32_t> refs_;          // sequences holding each block
  std::vector<uint32_t> generation_;    // bumped when a published block is evicted and reused
  std::vector<Published> published_;
  std::unordered_multimap<uint64_t, uint32_t> index_;  // key(parent, tokens) -> block
  std::unordered_multimap<uint64_t, uint32_t> children_;  // (parent, its generation) -> published blocks
  std::list<uint32_t> lru_;             // published blocks no sequence holds, oldest first
  std::vector<std::list<uint32_t>::iterator> lru_pos_;
};

struct EngineOptions {
  int threads = 0;                // 0: one per hardware thread
  size_t max_step_tokens = 512;   // tokens in one step across the batch (the prefill chunk)
};

// A token's rotary position as (t, h, w) sections (ArchConfig::mrope_sections); text tokens and
// models without M-RoPE have all three equal.
using RopePosition = std::array<int64_t, 3>;

// Where an image's tokens sit in a prompt: the index of its first token and its grid of merged
// patches (t frames, h rows, w columns: t * h * w tokens, row after row).
struct ImagePlacement {
  size_t first = 0;
  uint32_t t = 1, h = 0, w = 0;
  size_t n_tokens() const { return size_t{t} * h * w; }
};

// A prompt's M-RoPE positions, as transformers' get_rope_index gives them for GLM-4.1V: text
// tokens count on from one past the largest position before them (t = h = w); an image's tokens
// all start there and add (0, row, column). `next_offset` is what every later token adds to its
// slot in the sequence: max position + 1 - n_tokens. Throws Error when images overlap or overrun.
struct PromptPositions {
  std::vector<RopePosition> positions;
  int64_t next_offset = 0;
};
PromptPositions multimodal_positions(size_t n_tokens, std::span<const ImagePlacement> images);

// One sequence's part of a step: append `tokens` at its current length.
struct StepItem {
  StepItem() = default;
  StepItem(KvCache::Sequence* s, std::span<const int32_t> t, bool all) : seq(s), tokens(t), all_logits(all) {}
  KvCache::Sequence* seq = nullptr;
  std::span<const int32_t> tokens;
  bool all_logits = false;        // logits for every token (else only for the last)
  // Rows of d_model floats that replace some tokens' embeddings (an image's vision embeddings):
  // embeddings[j] for token j, nullptr where the token id is embedded. Empty: all from their ids.
  std::span<const float* const> embeddings;
  // Each token's rotary position. Empty: its slot in the sequence plus rope_offset, in every
  // section (after an image the positions run behind the slots: rope_offset < 0).
  std::span<const RopePosition> rope_positions;
  int64_t rope_offset = 0;
};

class Engine {
 public:
  Engine(const model::Model& model, KvCache& cache, EngineOptions options = {});

  // Runs the decoder over every item's tokens in one pass (each weight read once per step) and
  // writes logits, item by item: all positions or only the last, vocab_size floats each. The
  // caller reserves KV space first. Throws Error on a token id outside the vocabulary.
  void step(std::span<StepItem> batch, std::vector<float>& logits);

  // Convenience: evaluates a whole prompt for one sequence in chunks of max_step_tokens and
  // returns the logits at every position, [tokens.size()][vocab_size]. `embeddings` and
  // `rope_positions` as in StepItem, for the whole prompt (empty or one per token).
  std::vector<float> eval_all_logits(KvCache::Sequence& seq, std::span<const int32_t> tokens,
                                     std::span<const float* const> embeddings = {},
                                     std::span<const RopePosition> rope_positions = {});

  const model::ArchConfig& config() const { return model_.config; }
  kernels::ThreadPool& pool() { return pool_; }

 private:
  struct Token {            // where a row of the step's activations lives
    KvCache::Sequence* seq;
    size_t pos;             // its slot in the sequence's cache
    RopePosition rope;      // its rotary position
  };
  struct AttentionJob {     // a tile of consecutive tokens of one sequence, for one KV head
    size_t first, count, kv_head;
  };
  void ensure_buffers(size_t n);
  void plan_attention(size_t n);
  void attention(size_t layer);
  void ffn(const model::Layer& l, size_t n);
  void for_each_token(size_t n, const std::function<void(size_t)>& fn);
  void residual(const std::vector<float>& post_norm, size_t t);

  const model::Model& model_;
  KvCache& cache_;
  EngineOptions options_;
  kernels::ThreadPool pool_;
  std::vector<Token> tokens_;
  // Activations, [n][...] row-major; grown once to the largest step seen, never in the token loop.
  std::vector<float> x_, h_, q_, k_, v_, att_, proj_, gate_up_, act_, logits_in_;
  std::vector<double> rope_inv_freq_;       // base^(-2i/rope_dims)
  std::vector<uint8_t> rope_section_;       // the position section (0 t, 1 h, 2 w) each rotary pair turns with
  std::vector<AttentionJob> attention_jobs_;
  std::vector<float> rope_cos_, rope_sin_;  // [n][rope_dims/2] for the step's tokens
};

}  // namespace autoglm::engine
