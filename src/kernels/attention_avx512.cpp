// Attention on CPUs with AVX-512: the pass of attention_impl.h (blocks of 64 keys converted once per
// call for all its queries, an online softmax update per block) with its two hot loops written for
// the registers:
//  - scores: the block's keys are transposed 16 x 16 in registers (kt[d][j]), then two queries at a
//    time accumulate q[d] * kt[d] over d into 2 x (up to) 4 vectors of 16 keys;
//  - values: a query's output row (up to 8 vectors at a time) stays in registers while the block's
//    values are added in, two queries of the same length at a time sharing each load of a value.
// The softmax steps between them are the generic loops (exp_impl.h), vectorized by the compiler.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "attention.h"

#if defined(__x86_64__) || defined(__i386__)
// GCC 12's avx512fintrin.h self-initializes its "undefined" registers (GCC PR 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#include <immintrin.h>

namespace autoglm::kernels {
namespace {

#include "exp_impl.h"

constexpr size_t kKeyBlock = 64;  // keys per block
constexpr size_t kLanes = 16;     // floats per vector
constexpr size_t kKeyVectors = kKeyBlock / kLanes;
constexpr size_t kMaxOutVectors = 8;  // output vectors of a query held in registers at once

struct Block {
  alignas(64) float tile[kLanes * kAttentionMaxHeadDim];     // 16 keys as floats, rows of `width`
  alignas(64) float kt[kAttentionMaxHeadDim * kKeyBlock];    // keys transposed: kt[d * kKeyBlock + j]
  alignas(64) float v[kKeyBlock * kAttentionMaxHeadDim];     // values: v[j * width + d], zero padded
  alignas(64) float s[2][kKeyBlock];                          // two queries' scores, then weights
};

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// r[i] (row i) becomes column i: r[i][j] = old r[j][i].
void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (size_t i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (size_t i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (size_t i = 0; i < 16; i += 8)
    for (size_t k = 0; k < 4; ++k) {
      t[i + k] = _mm512_shuffle_f32x4(r[i + k], r[i + 4 + k], 0x88);
      t[i + 4 + k] = _mm512_shuffle_f32x4(r[i + k], r[i + 4 + k], 0xDD);
    }
  for (size_t k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
    r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
  }
}

// Row p of a cache (keys or values) as `width` floats: hd converted, the rest zeros.
void load_row(const AttentionArgs& a, const void* row, float* dst, size_t width) {
  a.to_f32(row, dst, a.head_dim);
  for (size_t d = a.head_dim; d < width; ++d) dst[d] = 0.0f;
}

// Keys p0..p0+count-1 transposed into b.kt (16-key columns, zeros past count), values into b.v.
void load_block(const AttentionArgs& a, size_t p0, size_t count, size_t width, Block& b) {
  for (size_t j0 = 0; j0 < count; j0 += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      float* row = b.tile + j * width;
      if (j0 + j < count) load_row(a, a.k_rows[p0 + j0 + j], row, width);
      else std::memset(row, 0, width * sizeof(float));
    }
    for (size_t d0 = 0; d0 < width; d0 += kLanes) {
      __m512 r[16];
      for (size_t j = 0; j < kLanes; ++j) r[j] = _mm512_load_ps(b.tile + j * width + d0);
      transpose16(r);
      for (size_t d = 0; d < kLanes; ++d) _mm512_store_ps(b.kt + (d0 + d) * kKeyBlock + j0, r[d]);
    }
  }
  for (size_t j = 0; j < count; ++j) load_row(a, a.v_rows[p0 + j], b.v + j * width, width);
}

// Scores of NQ queries (1 or 2) against NK vectors of 16 keys: s[i][j] = q_i . k_j.
template <size_t NQ, size_t NK>
void scores(const float* kt, const float* const* q, size_t hd, float (*s)[kKeyBlock]) {
  __m512 acc[NQ][NK];
  for (size_t i = 0; i < NQ; ++i)
    for (size_t c = 0; c < NK; ++c) acc[i][c] = _mm512_setzero_ps();
  for (size_t d = 0; d < hd; ++d) {
    __m512 k[NK];
    for (size_t c = 0; c < NK; ++c) k[c] = _mm512_load_ps(kt + d * kKeyBlock + kLanes * c);
    for (size_t i = 0; i < NQ; ++i) {
      const __m512 qd = _mm512_set1_ps(q[i][d]);
      for (size_t c = 0; c < NK; ++c) acc[i][c] = _mm512_fmadd_ps(qd, k[c], acc[i][c]);
    }
  }
  for (size_t i = 0; i < NQ; ++i)
    for (size_t c = 0; c < NK; ++c) _mm512_store_ps(s[i] + kLanes * c, acc[i][c]);
}

template <size_t NQ>
void scores_of_block(const float* kt, const float* const* q, size_t hd, size_t count, float (*s)[kKeyBlock]) {
  switch ((count + kLanes - 1) / kLanes) {
    case 1: return scores<NQ, 1>(kt, q, hd, s);
    case 2: return scores<NQ, 2>(kt, q, hd, s);
    case 3: return scores<NQ, 3>(kt, q, hd, s);
    default: return scores<NQ, 4>(kt, q, hd, s);
  }
}

// The online softmax update of one query for `visible` scores s (>= 1): s becomes the weights
// exp(score - max), sum and max_score are updated; returns the factor the output row must be
// multiplied by (1 when the maximum did not move).
float softmax_block(float* s, size_t visible, float scale, float& max_score, float& sum) {
  float block_max = -__builtin_inff();
  for (size_t j = 0; j < visible; ++j) {
    s[j] *= scale;
    block_max = s[j] > block_max ? s[j] : block_max;
  }
  float correction = 1.0f;
  if (block_max > max_score) {
    correction = exp_nonpositive(max_score - block_max);  // 0 when max_score is -inf
    sum *= correction;
    max_score = block_max;
  }
  // two loops: the exps vectorize, the in-order sum could not (no -ffast-math)
  for (size_t j = 0; j < visible; ++j) s[j] = exp_nonpositive(s[j] - max_score);
  float block_sum = 0;
  for (size_t j = 0; j < visible; ++j) block_sum += s[j];
  sum += block_sum;
  return correction;
}

// out_i[d0 .. d0 + 16 NC) = out_i * correction_i + sum_j w_i[j] * v[j] for NQ queries; the last
// vector holds `tail` valid floats.
template <size_t NQ, size_t NC>
void add_values(const float* v, size_t width, size_t d0, size_t tail, size_t visible, const float (*w)[kKeyBlock],
                float* const* out, const float* correction) {
  const __mmask16 last = static_cast<__mmask16>((1u << tail) - 1);
  __m512 acc[NQ][NC];
  for (size_t i = 0; i < NQ; ++i) {
    const __m512 f = _mm512_set1_ps(correction[i]);
    for (size_t c = 0; c < NC; ++c)
      acc[i][c] = _mm512_mul_ps(f, _mm512_maskz_loadu_ps(c + 1 < NC ? 0xFFFF : last, out[i] + d0 + kLanes * c));
  }
  for (size_t j = 0; j < visible; ++j) {
    __m512 wj[NQ];
    for (size_t i = 0; i < NQ; ++i) wj[i] = _mm512_set1_ps(w[i][j]);
    for (size_t c = 0; c < NC; ++c) {
      const __m512 vj = _mm512_load_ps(v + j * width + d0 + kLanes * c);
      for (size_t i = 0; i < NQ; ++i) acc[i][c] = _mm512_fmadd_ps(wj[i], vj, acc[i][c]);
    }
  }
  for (size_t i = 0; i < NQ; ++i)
    for (size_t c = 0; c < NC; ++c)
      _mm512_mask_storeu_ps(out[i] + d0 + kLanes * c, c + 1 < NC ? 0xFFFF : last, acc[i][c]);
}

template <size_t NQ>
void add_values_of_block(const float* v, size_t hd, size_t width, size_t visible, const float (*w)[kKeyBlock],
                         float* const* out, const float* correction) {
  for (size_t d0 = 0; d0 < hd; d0 += kMaxOutVectors * kLanes) {
    const size_t n = hd - d0 < kMaxOutVectors * kLanes ? hd - d0 : kMaxOutVectors * kLanes;
    const size_t nc = (n + kLanes - 1) / kLanes, tail = n - (nc - 1) * kLanes;
    switch (nc) {
      case 1: add_values<NQ, 1>(v, width, d0, tail, visible, w, out, correction); break;
      case 2: add_values<NQ, 2>(v, width, d0, tail, visible, w, out, correction); break;
      case 3: add_values<NQ, 3>(v, width, d0, tail, visible, w, out, correction); break;
      case 4: add_values<NQ, 4>(v, width, d0, tail, visible, w, out, correction); break;
      case 5: add_values<NQ, 5>(v, width, d0, tail, visible, w, out, correction); break;
      case 6: add_values<NQ, 6>(v, width, d0, tail, visible, w, out, correction); break;
      case 7: add_values<NQ, 7>(v, width, d0, tail, visible, w, out, correction); break;
      default: add_values<NQ, 8>(v, width, d0, tail, visible, w, out, correction); break;
    }
  }
}

// Queries first..first+NQ-1 (the same length when NQ is 2) against the block at p0.
template <size_t NQ>
void attend_block(const AttentionArgs& a, size_t first, size_t p0, size_t count, size_t width, Block& b) {
  const float* q[NQ];
  float* out[NQ];
  float correction[NQ];
  for (size_t i = 0; i < NQ; ++i) q[i] = a.queries[first + i].q, out[i] = a.queries[first + i].out;
  const size_t visible = a.queries[first].visible - p0 < count ? a.queries[first].visible - p0 : count;
  scores_of_block<NQ>(b.kt, q, a.head_dim, visible, b.s);
  for (size_t i = 0; i < NQ; ++i)
    correction[i] = softmax_block(b.s[i], visible, a.scale, a.max_score[first + i], a.sum[first + i]);
  add_values_of_block<NQ>(b.v, a.head_dim, width, visible, b.s, out, correction);
}

void attend(const AttentionArgs& a, Block& b) {
  const size_t width = round_up(a.head_dim, kLanes);
  size_t n_kv = 0;
  for (size_t i = 0; i < a.n_queries; ++i) n_kv = a.queries[i].visible > n_kv ? a.queries[i].visible : n_kv;
  for (size_t i = 0; i < a.n_queries; ++i) {
    a.max_score[i] = -__builtin_inff();
    a.sum[i] = 0;
    std::memset(a.queries[i].out, 0, a.head_dim * sizeof(float));
  }
  for (size_t p0 = 0; p0 < n_kv; p0 += kKeyBlock) {
    const size_t count = n_kv - p0 < kKeyBlock ? n_kv - p0 : kKeyBlock;
    load_block(a, p0, count, width, b);
    for (size_t i = 0; i < a.n_queries;) {
      const size_t visible = a.queries[i].visible;
      if (visible <= p0) {
        ++i;
      } else if (i + 1 < a.n_queries && a.queries[i + 1].visible == visible) {
        attend_block<2>(a, i, p0, count, width, b);
        i += 2;
      } else {
        attend_block<1>(a, i, p0, count, width, b);
        ++i;
      }
    }
  }
  for (size_t i = 0; i < a.n_queries; ++i) {
    const AttentionQuery& q = a.queries[i];
    const float inv = a.sum[i] > 0 ? 1.0f / a.sum[i] : 0.0f;
    for (size_t d = 0; d < a.head_dim; ++d) q.out[d] *= inv;
  }
}

}  // namespace

void attention_avx512(const AttentionArgs& args) {
  thread_local auto block = std::make_unique<Block>();
  attend(args, *block);
}

}  // namespace autoglm::kernels
#pragma GCC pop_options
#else
namespace autoglm::kernels {
void attention_avx512(const AttentionArgs& args) { attention_generic(args); }
}  // namespace autoglm::kernels
#endif
