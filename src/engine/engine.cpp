// The forward pass: one decoder for every family, its variations read from ArchConfig.
#include <algorithm>
#include <cmath>
#include <functional>
#include <fmt/format.h>

#include "autoglm/engine.h"

namespace autoglm::engine {
namespace {

// Y[b] = W X[b] for the n vectors of x (n x w.cols floats) into y (n x w.rows).
void matmul(const model::Matrix& w, const float* x, size_t n, float* y, kernels::ThreadPool& pool) {
  kernels::matmul(w.type, w.layout, w.data, w.rows, w.cols, x, n, y, &pool);
}

kernels::Product product(const model::Matrix& w, float* y) { return {w.type, w.layout, w.data, w.rows, y}; }

void rmsnorm(const float* x, const float* w, float* y, size_t d, float eps) { kernels::rms_norm(x, w, y, d, eps); }

// Rotates the first rope_dims dims of each head by position-dependent angles; the rest pass through.
// cs/sn hold cos and sin of the token's angles, computed once for all its heads.
void rope(float* v, size_t n_heads, const model::ArchConfig& c, const float* cs, const float* sn) {
  const size_t half = c.rope_dims / 2;
  const bool adjacent = c.rope_style == model::RopeStyle::adjacent;
  for (size_t h = 0; h < n_heads; ++h) {
    float* p = v + h * c.head_dim;
    for (size_t i = 0; i < half; ++i) {
      const size_t a = adjacent ? 2 * i : i;
      const size_t b = adjacent ? 2 * i + 1 : i + half;
      const float x0 = p[a], x1 = p[b];
      p[a] = x0 * cs[i] - x1 * sn[i];
      p[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void add_bias(float* y, const std::vector<float>& bias, size_t n) {
  if (bias.empty()) return;
  const size_t m = bias.size();
  for (size_t t = 0; t < n; ++t)
    for (size_t i = 0; i < m; ++i) y[t * m + i] += bias[i];
}

}  // namespace

Engine::Engine(const model::Model& model, KvCache& cache, EngineOptions options)
    : model_(model), cache_(cache), options_(options), pool_(options.threads) {
  const model::ArchConfig& c = model_.config;
  for (size_t i = 0; i < c.rope_dims / 2; ++i)
    rope_inv_freq_.push_back(std::pow(double{c.rope_base}, -2.0 * static_cast<double>(i) / c.rope_dims));
  rope_section_.assign(c.rope_dims / 2, 0);
  for (size_t i = 0, section = 0, end = c.mrope_sections[0]; i < rope_section_.size(); ++i) {
    while (section < 2 && i >= end) end += c.mrope_sections[++section];
    rope_section_[i] = static_cast<uint8_t>(i < end ? section : 0);  // pairs past the sections: t, as no section
  }
  ensure_buffers(options_.max_step_tokens);
}

void Engine::ensure_buffers(size_t n) {
  const model::ArchConfig& c = model_.config;
  const size_t q = size_t{c.n_heads} * c.head_dim, kv = size_t{c.n_kv_heads} * c.head_dim;
  if (x_.size() >= n * c.d_model) return;
  x_.resize(n * c.d_model);
  h_.resize(n * c.d_model);
  q_.resize(n * q);
  k_.resize(n * kv);
  v_.resize(n * kv);
  att_.resize(n * q);
  proj_.resize(n * c.d_model);
  gate_up_.resize(n * 2 * c.ffn_dim);
  act_.resize(n * c.ffn_dim);
  logits_in_.resize(n * c.d_model);
  rope_cos_.resize(n * c.rope_dims / 2);
  rope_sin_.resize(n * c.rope_dims / 2);
  tokens_.reserve(n);
}

// Attention jobs of the step: runs of consecutive tokens of one sequence, cut into tiles of up to
// kQueryTile tokens, times the KV heads. A tile's query heads of one KV group share one pass over
// the cached keys and values.
void Engine::plan_attention(size_t n) {
  constexpr size_t kQueryTile = 16;
  attention_jobs_.clear();
  for (size_t first = 0; first < n;) {
    size_t count = 1;
    while (first + count < n && count < kQueryTile && tokens_[first + count].seq == tokens_[first].seq) ++count;
    for (size_t kvh = 0; kvh < model_.config.n_kv_heads; ++kvh) attention_jobs_.push_back({first, count, kvh});
    first += count;
  }
}

// Causal attention of every token of the step over its sequence's cache (kernels::attention).
void Engine::attention(size_t layer) {
  const model::ArchConfig& c = model_.config;
  const size_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads, qdim = size_t{c.n_heads} * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool_.run(attention_jobs_.size(), 1, [&](size_t begin, size_t end) {
    thread_local std::vector<kernels::AttentionQuery> queries;
    thread_local std::vector<const void*> k_rows, v_rows;
    for (size_t job = begin; job < end; ++job) {
      const AttentionJob& a = attention_jobs_[job];
      const Token& last = tokens_[a.first + a.count - 1];
      queries.clear();
      for (size_t t = a.first; t < a.first + a.count; ++t) {
        for (size_t j = 0; j < group; ++j) {
          const size_t offset = t * qdim + (a.kv_head * group + j) * hd;
          queries.push_back({q_.data() + offset, att_.data() + offset, tokens_[t].pos + 1});
        }
      }
      k_rows.resize(last.pos + 1);
      v_rows.resize(last.pos + 1);
      for (size_t p = 0; p <= last.pos; ++p) {
        k_rows[p] = cache_.k_row(*last.seq, layer, p) + a.kv_head * cache_.head_bytes();
        v_rows[p] = cache_.v_row(*last.seq, layer, p) + a.kv_head * cache_.head_bytes();
      }
      kernels::attention(queries, hd, cache_.type(), k_rows.data(), v_rows.data(), scale);
    }
  });
}

// fn(t) for each token of the step, the tokens split across the pool.
void Engine::for_each_token(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 1) return fn(0);
  pool_.run(n, 1, [&fn](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) fn(t);
  });
}

// x += proj for token t, proj first normalized by post_norm where the architecture has one (GLM-4).
void Engine::residual(const std::vector<float>& post_norm, size_t t) {
  const model::ArchConfig& c = model_.config;
  const size_t d = c.d_model;
  float* p = proj_.data() + t * d;
  if (c.post_norms) rmsnorm(p, post_norm.data(), p, d, c.rms_eps);
  for (size_t j = 0; j < d; ++j) x_[t * d + j] += p[j];
}

void Engine::ffn(const model::Layer& l, size_t n) {
  const model::ArchConfig& c = model_.config;
  const size_t f = c.ffn_dim;
  // SwiGLU over the n x f activations, split across the pool even for one token
  constexpr size_t kActGrain = 1024;
  if (c.fused_gate_up) {
    matmul(l.w_up, h_.data(), n, gate_up_.data(), pool_);
    pool_.run(n * f, kActGrain, [&](size_t begin, size_t end) {
      for (size_t k = begin; k < end;) {  // token t's elements [i, stop) of its gate and up halves
        const size_t t = k / f, stop = std::min(end, (t + 1) * f), i = k - t * f;
        const float* gu = gate_up_.data() + t * 2 * f;
        kernels::swiglu(gu + i, gu + f + i, act_.data() + k, stop - k);
        k = stop;
      }
    });
  } else {
    const kernels::Product gate_up[] = {product(l.w_gate, gate_up_.data()), product(l.w_up, act_.data())};
    kernels::matmul(gate_up, c.d_model, h_.data(), n, &pool_);
    pool_.run(n * f, kActGrain, [&](size_t begin, size_t end) {
      kernels::swiglu(gate_up_.data() + begin, act_.data() + begin, act_.data() + begin, end - begin);
    });
  }
  matmul(l.w_down, act_.data(), n, proj_.data(), pool_);
}

void Engine::step(std::span<StepItem> batch, std::vector<float>& logits) {
  const model::ArchConfig& c = model_.config;
  const size_t d = c.d_model, qdim = size_t{c.n_heads} * c.head_dim, kvdim = size_t{c.n_kv_heads} * c.head_dim;

  // the step's tokens: which sequence and position each row of the activations belongs to
  tokens_.clear();
  size_t n_logits = 0;
  for (StepItem& item : batch) {
    if (item.seq->blocks.size() * cache_.block_size() < item.seq->length + item.tokens.size())
      throw Error(kExitCheckFailed, "engine: KV cache space was not reserved for the step");
    if ((!item.embeddings.empty() && item.embeddings.size() != item.tokens.size()) ||
        (!item.rope_positions.empty() && item.rope_positions.size() != item.tokens.size()))
      throw Error(kExitCheckFailed, "engine: a step item's embeddings or positions do not match its tokens");
    for (size_t j = 0; j < item.tokens.size(); ++j) {
      const size_t pos = item.seq->length + j;
      const int64_t p = static_cast<int64_t>(pos) + item.rope_offset;
      tokens_.push_back({item.seq, pos, item.rope_positions.empty() ? RopePosition{p, p, p} : item.rope_positions[j]});
    }
    n_logits += item.tokens.empty() ? 0 : item.all_logits ? item.tokens.size() : 1;
  }
  const size_t n = tokens_.size();
  ensure_buffers(n);
  plan_attention(n);

  // token embeddings
  size_t t = 0;
  for (const StepItem& item : batch) {
    for (size_t j = 0; j < item.tokens.size(); ++j, ++t) {
      if (!item.embeddings.empty() && item.embeddings[j]) {
        std::copy_n(item.embeddings[j], d, x_.data() + t * d);
        continue;
      }
      const int32_t id = item.tokens[j];
      if (id < 0 || static_cast<uint32_t>(id) >= c.vocab_size)
        throw Error(kExitUsage, fmt::format("token id {} is outside the vocabulary (0..{})", id, c.vocab_size - 1));
      kernels::dequantize_row(model_.token_embd.type, model_.token_embd.row(static_cast<size_t>(id)), x_.data() + t * d, d);
    }
  }

  // RoPE angles of each token, shared by every layer and head
  const size_t half = c.rope_dims / 2;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < half; ++j) {
      const double theta = static_cast<double>(tokens_[i].rope[rope_section_[j]]) * rope_inv_freq_[j];
      rope_cos_[i * half + j] = static_cast<float>(std::cos(theta));
      rope_sin_[i * half + j] = static_cast<float>(std::sin(theta));
    }
  }

  for (size_t li = 0; li < c.n_layers; ++li) {
    const model::Layer& l = model_.layers[li];
    // attention rmsnorm
    for_each_token(n, [&](size_t i) { rmsnorm(x_.data() + i * d, l.attn_norm.data(), h_.data() + i * d, d, c.rms_eps); });
    // qkv projections (+ bias)
    const kernels::Product qkv[] = {product(l.wq, q_.data()), product(l.wk, k_.data()), product(l.wv, v_.data())};
    kernels::matmul(qkv, d, h_.data(), n, &pool_);
    add_bias(q_.data(), l.bq, n);
    add_bias(k_.data(), l.bk, n);
    add_bias(v_.data(), l.bv, n);
    // RoPE on q and k, then k and v into the cache
    for_each_token(n, [&](size_t i) {
      const float* cs = rope_cos_.data() + i * c.rope_dims / 2;
      const float* sn = rope_sin_.data() + i * c.rope_dims / 2;
      rope(q_.data() + i * qdim, c.n_heads, c, cs, sn);
      rope(k_.data() + i * kvdim, c.n_kv_heads, c, cs, sn);
      kernels::quantize_row(cache_.type(), k_.data() + i * kvdim, cache_.k_row(*tokens_[i].seq, li, tokens_[i].pos), kvdim);
      kernels::quantize_row(cache_.type(), v_.data() + i * kvdim, cache_.v_row(*tokens_[i].seq, li, tokens_[i].pos), kvdim);
    });
    // multi-head attention, output projection
    attention(li);
    matmul(l.wo, att_.data(), n, proj_.data(), pool_);
    // post-attention norm (GLM-4), residual
    for_each_token(n, [&](size_t i) { residual(l.post_attn_norm, i); });
    // ffn rmsnorm, SwiGLU FFN
    for_each_token(n, [&](size_t i) { rmsnorm(x_.data() + i * d, l.ffn_norm.data(), h_.data() + i * d, d, c.rms_eps); });
    ffn(l, n);
    // post-FFN norm (GLM-4), residual
    for_each_token(n, [&](size_t i) { residual(l.post_ffn_norm, i); });
  }

  // final rmsnorm of the rows that need logits, output projection
  size_t row = 0, m = 0;
  for (StepItem& item : batch) {
    const size_t count = item.tokens.size();
    for (size_t j = item.all_logits ? 0 : count - std::min<size_t>(count, 1); j < count; ++j)
      rmsnorm(x_.data() + (row + j) * d, model_.output_norm.data(), logits_in_.data() + m++ * d, d, c.rms_eps);
    row += count;
    item.seq->length += count;
  }
  logits.resize(n_logits * c.vocab_size);
  matmul(model_.output, logits_in_.data(), n_logits, logits.data(), pool_);
}

PromptPositions multimodal_positions(size_t n_tokens, std::span<const ImagePlacement> images) {
  PromptPositions out;
  out.positions.reserve(n_tokens);
  int64_t next = 0;  // one past the largest position so far
  auto text_until = [&](size_t end) {
    while (out.positions.size() < end) {
      out.positions.push_back({next, next, next});
      ++next;
    }
  };
  for (const ImagePlacement& image : images) {
    if (image.first < out.positions.size() || image.first + image.n_tokens() > n_tokens)
      throw Error(kExitCheckFailed, fmt::format("engine: an image's {} tokens at {} do not fit a prompt of {}",
                                                image.n_tokens(), image.first, n_tokens));
    text_until(image.first);
    const int64_t start = next;
    for (uint32_t t = 0; t < image.t; ++t)
      for (uint32_t r = 0; r < image.h; ++r)
        for (uint32_t c = 0; c < image.w; ++c) out.positions.push_back({start + t, start + r, start + c});
    next = start + std::max({int64_t{image.t}, int64_t{image.h}, int64_t{image.w}});
  }
  text_until(n_tokens);
  out.next_offset = next - static_cast<int64_t>(n_tokens);
  return out;
}

std::vector<float> Engine::eval_all_logits(KvCache::Sequence& seq, std::span<const int32_t> tokens,
                                           std::span<const float* const> embeddings,
                                           std::span<const RopePosition> rope_positions) {
  const size_t vocab = model_.config.vocab_size;
  std::vector<float> all, chunk_logits;
  all.reserve(tokens.size() * vocab);
  for (size_t begin = 0; begin < tokens.size(); begin += options_.max_step_tokens) {
    const size_t count = std::min(options_.max_step_tokens, tokens.size() - begin);
    if (!cache_.reserve(seq, seq.length + count))
      throw Error(kExitCheckFailed, fmt::format("KV cache full: {} positions do not fit in {} blocks of {}",
                                                seq.length + count, cache_.total_blocks(), cache_.block_size()));
    StepItem item{&seq, tokens.subspan(begin, count), true};
    if (!embeddings.empty()) item.embeddings = embeddings.subspan(begin, count);
    if (!rope_positions.empty()) item.rope_positions = rope_positions.subspan(begin, count);
    step(std::span<StepItem>(&item, 1), chunk_logits);
    all.insert(all.end(), chunk_logits.begin(), chunk_logits.end());
  }
  return all;
}

}  // namespace autoglm::engine
