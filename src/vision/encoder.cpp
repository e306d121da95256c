// The vision tower's forward pass: patch embedding, position embeddings resized to the image,
// blocks of 2-D-rotary full attention and SwiGLU, then the merger (downsample conv, linear,
// LayerNorm, GELU, SwiGLU) into the decoder's width. One image per call, on the engine's kernels.
#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "autoglm/vision.h"

namespace autoglm::vision {
namespace {

void matmul(const model::Matrix& w, const float* x, size_t n, float* y, kernels::ThreadPool& pool) {
  kernels::matmul(w.type, w.layout, w.data, w.rows, w.cols, x, n, y, &pool);
}

// PyTorch's bicubic convolution kernel (A = -0.75), the four tap weights for a fraction t.
void cubic_weights(float t, float w[4]) {
  constexpr float a = -0.75f;
  auto near = [](float x) { return ((a + 2) * x - (a + 3)) * x * x + 1; };      // |x| <= 1
  auto far = [](float x) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; };  // 1 < |x| < 2
  w[0] = far(t + 1);
  w[1] = near(t);
  w[2] = near(1 - t);
  w[3] = far(2 - t);
}

// grid_sample(bicubic, align_corners=False, padding border) of a size x size grid at the centre of
// cell `index` of `cells`: the first tap and the four weights, in float as torch computes them.
void sample_taps(uint32_t index, uint32_t cells, uint32_t size, int taps[4], float w[4]) {
  const float normalized = ((static_cast<float>(index) + 0.5f) / static_cast<float>(cells)) * 2 - 1;
  const float source = ((normalized + 1) * static_cast<float>(size) - 1) / 2;
  const float first = std::floor(source);
  cubic_weights(source - first, w);
  for (int k = 0; k < 4; ++k)
    taps[k] = std::clamp(static_cast<int>(first) - 1 + k, 0, static_cast<int>(size) - 1);
}

}  // namespace

VisionEncoder::VisionEncoder(const VisionModel& model, kernels::ThreadPool& pool) : model_(model), pool_(pool) {
  // a tower quantized to int8 computes attention's products in int8 too; float towers stay exact
  int8_attention_ = !model_.blocks.empty() && model_.blocks[0].qkv.type == kernels::DType::q8_0 &&
                    model_.config.head_dim % 32 == 0;
  // and a tower on AMX tiles computes them on the tiles, in bf16
  tiles_attention_ = !model_.blocks.empty() && model_.blocks[0].qkv.layout == kernels::Layout::tiles_bf16 &&
                     model_.config.head_dim % 32 == 0;
  const size_t quarter = model_.config.head_dim / 4;  // frequencies per axis
  for (size_t k = 0; k < quarter; ++k)
    inv_freq_.push_back(std::pow(double{model_.config.rope_base}, -2.0 * static_cast<double>(k) / (2.0 * static_cast<double>(quarter))));
}

void VisionEncoder::for_each_row(size_t n, const std::function<void(size_t)>& fn) {
  pool_.run(n, 8, [&fn](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) fn(i);
  });
}

// x = norm(W patches + b) + position embedding; each patch's row/column and rotary angles.
void VisionEncoder::embed(const float* patches, PatchGrid grid, size_t n) {
  const VisionConfig& c = model_.config;
  const size_t d = c.d_model, m = c.merge;
  matmul(model_.patch_embed, patches, n, x_.data(), pool_);
  // the processor's order: frame, window row, window column, row in window, column in window
  row_.resize(n);
  col_.resize(n);
  for (size_t i = 0, per_frame = size_t{grid.h} * grid.w; i < n; ++i) {
    const size_t k = i % per_frame, window = k / (m * m), in = k % (m * m);
    row_[i] = static_cast<uint32_t>(window / (grid.w / m) * m + in / m);
    col_[i] = static_cast<uint32_t>(window % (grid.w / m) * m + in % m);
  }
  const size_t half = c.head_dim / 2, quarter = half / 2;
  rope_cos_.resize(n * half);
  rope_sin_.resize(n * half);
  for_each_row(n, [&](size_t i) {
    float* xi = x_.data() + i * d;
    for (size_t j = 0; j < d; ++j) xi[j] += model_.patch_bias[j];
    kernels::rms_norm(xi, model_.post_conv_norm.data(), xi, d, c.rms_eps);
    int ty[4], tx[4];
    float wy[4], wx[4];
    sample_taps(row_[i], grid.h, c.pos_grid, ty, wy);
    sample_taps(col_[i], grid.w, c.pos_grid, tx, wx);
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) {
        const float wt = wy[a] * wx[b];
        const float* p = model_.pos_embed.data() + (size_t(ty[a]) * c.pos_grid + size_t(tx[b])) * d;
        for (size_t j = 0; j < d; ++j) xi[j] += wt * p[j];
      }
    for (size_t k = 0; k < half; ++k) {
      const double theta = (k < quarter ? row_[i] : col_[i]) * inv_freq_[k % quarter];
      rope_cos_[i * half + k] = static_cast<float>(std::cos(theta));
      rope_sin_[i * half + k] = static_cast<float>(std::sin(theta));
    }
  });
}

// Full attention of every patch over the patches of its frame, per head; q and k rotated first.
// 2-D rotary positions on the queries and keys of every patch.
void VisionEncoder::rotate(size_t n) {
  const VisionConfig& c = model_.config;
  const size_t d = c.d_model, hd = c.head_dim, half = hd / 2, stride = 3 * d;
  for_each_row(n, [&](size_t i) {
    const float* cs = rope_cos_.data() + i * half;
    const float* sn = rope_sin_.data() + i * half;
    for (size_t part = 0; part < 2; ++part)  // q, k
      for (size_t h = 0; h < c.n_heads; ++h) {
        float* p = qkv_.data() + i * stride + part * d + h * hd;
        for (size_t k = 0; k < half; ++k) {
          const float x0 = p[k], x1 = p[k + half];
          p[k] = x0 * cs[k] - x1 * sn[k];
          p[k + half] = x1 * cs[k] + x0 * sn[k];
        }
      }
  });
}

// Full attention within each frame, on the f32 queries, keys and values.
void VisionEncoder::attention(PatchGrid grid, size_t n) {
  rotate(n);
  if (tiles_attention_ && kernels::amx_available()) return attention_tiles(grid, n);
  if (int8_attention_) return attention_int8(grid, n);
  const VisionConfig& c = model_.config;
  const size_t d = c.d_model, hd = c.head_dim, stride = 3 * d;
  k_rows_.resize(c.n_heads * n);
  v_rows_.resize(c.n_heads * n);
  for (size_t h = 0; h < c.n_heads; ++h)
    for (size_t p = 0; p < n; ++p) {
      k_rows_[h * n + p] = qkv_.data() + p * stride + d + h * hd;
      v_rows_[h * n + p] = qkv_.data() + p * stride + 2 * d + h * hd;
    }
  constexpr size_t kTile = 16;  // queries of one head per job: one pass over the keys serves them all
  const size_t per_frame = size_t{grid.h} * grid.w, tiles = (per_frame + kTile - 1) / kTile;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool_.run(size_t{grid.t} * tiles * c.n_heads, 1, [&](size_t begin, size_t end) {
    std::vector<kernels::AttentionQuery> queries;
    for (size_t job = begin; job < end; ++job) {
      const size_t h = job % c.n_heads, tile = job / c.n_heads % tiles, frame = job / c.n_heads / tiles;
      const size_t first = frame * per_frame + tile * kTile, last = std::min(first + kTile, (frame + 1) * per_frame);
      queries.clear();
      for (size_t i = first; i < last; ++i)
        queries.push_back({qkv_.data() + i * stride + h * hd, att_.data() + i * d + h * hd, per_frame});
      const size_t keys = h * n + frame * per_frame;
      kernels::attention(queries, hd, kernels::DType::f32, k_rows_.data() + keys, v_rows_.data() + keys, scale);
    }
  });
}

// The same attention as two int8 products per frame and head, like the tower's other products:
// scores = Q K^T with the keys as Q8_0 rows, a softmax per query, then P V with the values
// transposed into Q8_0 rows (the probabilities quantized per block of 32 keys, as every activation
// of an int8 product is). Queries go in tiles, so the scores never take more than kTile rows.
void VisionEncoder::attention_int8(PatchGrid grid, size_t) {
  using kernels::DType;
  const VisionConfig& c = model_.config;
  const size_t d = c.d_model, hd = c.head_dim, stride = 3 * d;
  const size_t per_frame = size_t{grid.h} * grid.w, padded = (per_frame + 31) / 32 * 32;
  const size_t k_row = kernels::row_bytes(DType::q8_0, hd), v_row = kernels::row_bytes(DType::q8_0, padded);
  constexpr size_t kTile = 256;
  kq_.resize(per_frame * k_row);
  vq_.resize(hd * v_row);
  vt_.resize(hd * padded);
  qt_.resize(kTile * hd);
  scores_.resize(kTile * per_frame);
  probs_.resize(kTile * padded);
  ot_.resize(kTile * hd);
  const kernels::Layout k_layout = kernels::preferred_layout(DType::q8_0, per_frame);
  const kernels::Layout v_layout = kernels::preferred_layout(DType::q8_0, hd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t frame = 0; frame < grid.t; ++frame) {
    const float* rows = qkv_.data() + frame * per_frame * stride;
    float* out = att_.data() + frame * per_frame * d;
    for (size_t h = 0; h < c.n_heads; ++h) {
      pool_.run(per_frame, 64, [&](size_t begin, size_t end) {
        for (size_t p = begin; p < end; ++p)
          kernels::quantize_row(DType::q8_0, rows + p * stride + d + h * hd, kq_.data() + p * k_row, hd);
      });
      pool_.run(hd, 1, [&](size_t begin, size_t end) {
        for (size_t r = begin; r < end; ++r) {
          float* vt = vt_.data() + r * padded;
          for (size_t p = 0; p < per_frame; ++p) vt[p] = rows[p * stride + 2 * d + h * hd + r];
          std::fill(vt + per_frame, vt + padded, 0.0f);
          kernels::quantize_row(DType::q8_0, vt, vq_.data() + r * v_row, padded);
        }
      });
      kernels::pack_weights(DType::q8_0, k_layout, kq_.data(), per_frame, hd);
      kernels::pack_weights(DType::q8_0, v_layout, vq_.data(), hd, padded);
      for (size_t first = 0; first < per_frame; first += kTile) {
        const size_t tile = std::min(kTile, per_frame - first);
        for (size_t i = 0; i < tile; ++i)
          std::copy_n(rows + (first + i) * stride + h * hd, hd, qt_.data() + i * hd);
        kernels::matmul(DType::q8_0, k_layout, kq_.data(), per_frame, hd, qt_.data(), tile, scores_.data(), &pool_);
        pool_.run(tile, 1, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) {
            float* s = scores_.data() + i * per_frame;
            kernels::softmax(s, per_frame, scale);
            float* p = probs_.data() + i * padded;
            std::copy_n(s, per_frame, p);
            std::fill(p + per_frame, p + padded, 0.0f);
          }
        });
        kernels::matmul(DType::q8_0, v_layout, vq_.data(), hd, padded, probs_.data(), tile, ot_.data(), &pool_);
        for (size_t i = 0; i < tile; ++i) std::copy_n(ot_.data() + i * hd, hd, out + (first + i) * d + h * hd);
      }
    }
  }
}

// The same attention as two bf16 tile products per tile of queries, frame and head: scores =
// Q K^T over all the frame's keys, softmax numerators in bf16, then P V, divided by the sums. Keys
// and transposed values are packed as tiles once per frame and head; a tile's scores take kTile
// rows of the frame's length, never n^2.
void VisionEncoder::attention_tiles(PatchGrid grid, size_t n) {
  const VisionConfig& c = model_.config;
  const size_t d = c.d_model, hd = c.head_dim, stride = 3 * d, heads = c.n_heads;
  const size_t per_frame = size_t{grid.h} * grid.w, padded = (per_frame + 31) / 32 * 32;
  constexpr size_t kTile = 64;  // queries per job: the keys and values are read once for them all
  qkv16_.resize(n * stride);
  uint16_t* q16 = qkv16_.data();
  pool_.run(n, 64, [&](size_t begin, size_t end) {
    kernels::to_bf16(qkv_.data() + begin * stride, q16 + begin * stride, (end - begin) * stride);
  });
  keys16_.resize(heads * padded * hd);
  values16_.resize(heads * hd * padded);
  uint16_t *keys = keys16_.data(), *values = values16_.data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t tiles = (per_frame + kTile - 1) / kTile;
  for (size_t frame = 0; frame < grid.t; ++frame) {
    const uint16_t* rows = q16 + frame * per_frame * stride;
    pool_.run(heads, 1, [&](size_t begin, size_t end) {
      // each thread's scratch, kept from call to call (a fresh one is page faults on every job)
      thread_local kernels::aligned_vector<uint16_t> k, v;
      k.assign(padded * hd, 0);  // zero rows past the frame's keys
      v.assign(padded * hd, 0);
      for (size_t h = begin; h < end; ++h) {
        for (size_t p = 0; p < per_frame; ++p) {
          const uint16_t* row = rows + p * stride + h * hd;
          std::copy_n(row + d, hd, k.data() + p * hd);
          std::copy_n(row + 2 * d, hd, v.data() + p * hd);
        }
        kernels::pack_tiles_bf16(k.data(), hd, padded, hd, keys + h * padded * hd);
        kernels::pack_tiles_bf16_transposed(v.data(), hd, hd, padded, values + h * hd * padded);
      }
    });
    pool_.run(heads * tiles, 1, [&](size_t begin, size_t end) {
      thread_local kernels::aligned_vector<float> scores, out, sums;
      thread_local kernels::aligned_vector<uint16_t> probs;
      scores.resize(kTile * padded);
      out.resize(kTile * hd);
      sums.resize(kTile);
      probs.assign(kTile * padded, 0);  // zero columns past the frame's keys
      for (size_t job = begin; job < end; ++job) {
        const size_t h = job % heads, first = job / heads * kTile, m = std::min(kTile, per_frame - first);
        kernels::gemm_tiles_bf16(rows + first * stride + h * hd, stride, m, keys + h * padded * hd, padded, hd,
                                 scores.data(), padded);
        for (size_t i = 0; i < m; ++i)
          sums[i] = kernels::softmax_numerators_bf16(scores.data() + i * padded, per_frame, scale,
                                                     probs.data() + i * padded);
        kernels::gemm_tiles_bf16(probs.data(), padded, m, values + h * hd * padded, hd, padded, out.data(), hd);
        float* o = att_.data() + (frame * per_frame + first) * d + h * hd;
        for (size_t i = 0; i < m; ++i) {
          const float inv = 1.0f / sums[i];
          for (size_t r = 0; r < hd; ++r) o[i * d + r] = out[i * hd + r] * inv;
        }
      }
    });
  }
}

void VisionEncoder::block(const VisionBlock& b, PatchGrid grid, size_t n) {
  const VisionConfig& c = model_.config;
  const size_t d = c.d_model, f = c.ffn_dim;
  // attention rmsnorm, qkv (+ bias), attention, output projection, residual
  for_each_row(n, [&](size_t i) { kernels::rms_norm(x_.data() + i * d, b.norm1.data(), h_.data() + i * d, d, c.rms_eps); });
  matmul(b.qkv, h_.data(), n, qkv_.data(), pool_);
  if (!b.qkv_bias.empty())
    for_each_row(n, [&](size_t i) {
      for (size_t j = 0; j < 3 * d; ++j) qkv_[i * 3 * d + j] += b.qkv_bias[j];
    });
  attention(grid, n);
  matmul(b.proj, att_.data(), n, h_.data(), pool_);
  for (size_t j = 0; j < n * d; ++j) x_[j] += h_[j];
  // ffn rmsnorm, SwiGLU, residual
  for_each_row(n, [&](size_t i) { kernels::rms_norm(x_.data() + i * d, b.norm2.data(), h_.data() + i * d, d, c.rms_eps); });
  const kernels::Product gate_up[] = {{b.gate.type, b.gate.layout, b.gate.data, b.gate.rows, gate_.data()},
                                      {b.up.type, b.up.layout, b.up.data, b.up.rows, up_.data()}};
  kernels::matmul(gate_up, d, h_.data(), n, &pool_);
  pool_.run(n * f, 4096, [&](size_t begin, size_t end) {
    kernels::swiglu(gate_.data() + begin, up_.data() + begin, up_.data() + begin, end - begin);
  });
  matmul(b.down, up_.data(), n, h_.data(), pool_);
  for (size_t j = 0; j < n * d; ++j) x_[j] += h_[j];
}

// Each merge window (merge^2 consecutive patch rows) through the downsample conv and the merger.
void VisionEncoder::merge(size_t n, std::vector<float>& out) {
  const VisionConfig& c = model_.config;
  const size_t tokens = n / (size_t{c.merge} * c.merge), o = c.out_dim, f = c.merger_ffn_dim;
  matmul(model_.downsample, x_.data(), tokens, merged_.data(), pool_);
  for_each_row(tokens, [&](size_t i) {
    float* r = merged_.data() + i * o;
    for (size_t j = 0; j < o; ++j) r[j] += model_.downsample_bias[j];
  });
  matmul(model_.merger_proj, merged_.data(), tokens, m1_.data(), pool_);
  for_each_row(tokens, [&](size_t i) {
    float* r = m1_.data() + i * o;
    kernels::layer_norm(r, model_.merger_norm.data(), model_.merger_norm_bias.data(), r, o, c.layer_norm_eps);
    kernels::gelu(r, r, o);
  });
  const model::Matrix &g = model_.merger_gate, &u = model_.merger_up;
  const kernels::Product gate_up[] = {{g.type, g.layout, g.data, g.rows, gate_.data()},
                                      {u.type, u.layout, u.data, u.rows, up_.data()}};
  kernels::matmul(gate_up, o, m1_.data(), tokens, &pool_);
  pool_.run(tokens * f, 4096, [&](size_t begin, size_t end) {
    kernels::swiglu(gate_.data() + begin, up_.data() + begin, up_.data() + begin, end - begin);
  });
  out.resize(tokens * o);
  matmul(model_.merger_down, up_.data(), tokens, out.data(), pool_);
}

void VisionEncoder::encode(const float* patches, PatchGrid grid, std::vector<float>& out, EncoderTrace* trace) {
  const VisionConfig& c = model_.config;
  if (grid.t == 0 || grid.h == 0 || grid.w == 0 || grid.h % c.merge != 0 || grid.w % c.merge != 0 ||
      grid.n_patches() > (size_t{1} << 24))
    throw Error(kExitUsage, fmt::format("vision: a {}x{}x{} patch grid does not fit the tower (merge {})", grid.t,
                                        grid.h, grid.w, c.merge));
  const size_t n = grid.n_patches(), d = c.d_model, tokens = n / (size_t{c.merge} * c.merge);
  const size_t widest = std::max(c.ffn_dim, c.merger_ffn_dim);
  x_.resize(n * d);
  h_.resize(n * d);
  qkv_.resize(n * 3 * d);
  att_.resize(n * d);
  gate_.resize(std::max(n * c.ffn_dim, tokens * widest));
  up_.resize(gate_.size());
  merged_.resize(tokens * c.out_dim);
  m1_.resize(tokens * c.out_dim);

  // patch embedding, post-conv norm, position embeddings
  embed(patches, grid, n);
  if (trace) trace->embedded.assign(x_.begin(), x_.begin() + static_cast<std::ptrdiff_t>(n * d));
  // blocks
  for (const VisionBlock& b : model_.blocks) block(b, grid, n);
  // post norm
  for_each_row(n, [&](size_t i) { kernels::rms_norm(x_.data() + i * d, model_.post_norm.data(), x_.data() + i * d, d, c.rms_eps); });
  if (trace) trace->blocks.assign(x_.begin(), x_.begin() + static_cast<std::ptrdiff_t>(n * d));
  // merger
  merge(n, out);
}

}  // namespace autoglm::vision
