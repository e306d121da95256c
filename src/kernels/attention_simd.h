// The attention body for CPUs with vector registers (AVX-512, AVX2): the pass of attention_generic.cpp
// (blocks of 64 keys converted once per call for all its queries, an online softmax update per
// block) with its two hot loops written for the registers:
//  - scores: the block's keys are transposed in registers (kt[d][j], S::kLanes keys at a time), then
//    two queries at a time accumulate q[d] * kt[d] over d into 2 x S::kScoreVectors key vectors;
//  - values: a query's output row (S::kOutVectors vectors at a time) stays in registers while the
//    block's values are added in, two queries of the same length at a time sharing each value load.
// The softmax steps between them are plain loops (online_softmax_impl.h) that the compiler vectorizes.
//
// No include guard: attention_avx512.cpp and attention_avx2.cpp include it inside their own anonymous
// namespace, under their `#pragma GCC target`, after defining `S`, the vector operations of their
// instruction set:
//   V; kLanes (floats per V); kScoreVectors, kOutVectors (accumulators per query, as the register
//   file allows); zero(); load(p) (aligned); loadu(p); load_first(p, n) / store_first(p, n, v) (the
//   first n lanes, the rest zero / untouched); store(p, v) (aligned); storeu(p, v); set1(f); fmadd(a, b, c);
//   mul(a, b); transpose(V (&r)[kLanes]) (r[i][j] becomes r[j][i]).
// Everything here has internal linkage and uses no standard-library templates: no code compiled for
// a wide ISA may be shared (as an inline/template instance) with code that runs on a CPU without it.

#include "online_softmax_impl.h"

constexpr size_t kKeyBlock = 64;  // keys per block

struct Block {
  alignas(64) float tile[S::kLanes * kAttentionMaxHeadDim];   // kLanes keys as floats, rows of `width`
  alignas(64) float kt[kAttentionMaxHeadDim * kKeyBlock];     // keys transposed: kt[d * kKeyBlock + j]
  alignas(64) float v[kKeyBlock * kAttentionMaxHeadDim];      // values: v[j * width + d], zero padded
  alignas(64) float s[2][kKeyBlock];                           // two queries' scores, then weights
};

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }
size_t smaller(size_t a, size_t b) { return a < b ? a : b; }

// A cached row (key or value) as `width` floats: head_dim converted, the rest zeros.
void load_row(const AttentionArgs& a, const void* row, float* dst, size_t width) {
  a.to_f32(row, dst, a.head_dim);
  for (size_t d = a.head_dim; d < width; ++d) dst[d] = 0.0f;
}

// Keys p0..p0+count-1 transposed into b.kt (kLanes-key columns, zeros past count), values into b.v.
void load_block(const AttentionArgs& a, size_t p0, size_t count, size_t width, Block& b) {
  for (size_t j0 = 0; j0 < count; j0 += S::kLanes) {
    for (size_t j = 0; j < S::kLanes; ++j) {
      float* row = b.tile + j * width;
      if (j0 + j < count) load_row(a, a.k_rows[p0 + j0 + j], row, width);
      else std::memset(row, 0, width * sizeof(float));
    }
    for (size_t d0 = 0; d0 < width; d0 += S::kLanes) {
      S::V r[S::kLanes];
      for (size_t j = 0; j < S::kLanes; ++j) r[j] = S::load(b.tile + j * width + d0);
      S::transpose(r);
      for (size_t d = 0; d < S::kLanes; ++d) S::store(b.kt + (d0 + d) * kKeyBlock + j0, r[d]);
    }
  }
  for (size_t j = 0; j < count; ++j) load_row(a, a.v_rows[p0 + j], b.v + j * width, width);
}

// Scores of NQ queries (1 or 2) against key vectors c0..c0+NK-1: s[i][j] = q_i . k_j.
template <size_t NQ, size_t NK>
void scores(const float* kt, size_t c0, const float* const* q, size_t hd, float (*s)[kKeyBlock]) {
  S::V acc[NQ][NK];
  for (size_t i = 0; i < NQ; ++i)
    for (size_t c = 0; c < NK; ++c) acc[i][c] = S::zero();
  const float* at = kt + S::kLanes * c0;
  for (size_t d = 0; d < hd; ++d, at += kKeyBlock) {
    S::V k[NK];
    for (size_t c = 0; c < NK; ++c) k[c] = S::load(at + S::kLanes * c);
    for (size_t i = 0; i < NQ; ++i) {
      const S::V qd = S::set1(q[i][d]);
      for (size_t c = 0; c < NK; ++c) acc[i][c] = S::fmadd(qd, k[c], acc[i][c]);
    }
  }
  for (size_t i = 0; i < NQ; ++i)
    for (size_t c = 0; c < NK; ++c) S::store(s[i] + S::kLanes * (c0 + c), acc[i][c]);
}

template <size_t NQ>
void scores_of_block(const float* kt, const float* const* q, size_t hd, size_t visible, float (*s)[kKeyBlock]) {
  const size_t vectors = (visible + S::kLanes - 1) / S::kLanes;
  for (size_t c0 = 0; c0 < vectors; c0 += S::kScoreVectors) {
    switch (smaller(vectors - c0, S::kScoreVectors)) {
      case 1: scores<NQ, 1>(kt, c0, q, hd, s); break;
      case 2: scores<NQ, 2>(kt, c0, q, hd, s); break;
      case 3: scores<NQ, 3>(kt, c0, q, hd, s); break;
      default: scores<NQ, S::kScoreVectors>(kt, c0, q, hd, s); break;
    }
  }
}

// out_i[d0 .. d0 + kLanes NC) = out_i * correction_i + sum_j w_i[j] * v[j] for NQ queries; the
// last vector holds `tail` valid floats.
template <size_t NQ, size_t NC>
void add_values(const float* v, size_t width, size_t d0, size_t tail, size_t visible, const float (*w)[kKeyBlock],
                float* const* out, const float* correction) {
  S::V acc[NQ][NC];
  for (size_t i = 0; i < NQ; ++i) {
    const S::V f = S::set1(correction[i]);
    for (size_t c = 0; c + 1 < NC; ++c) acc[i][c] = S::mul(f, S::loadu(out[i] + d0 + S::kLanes * c));
    acc[i][NC - 1] = S::mul(f, S::load_first(out[i] + d0 + S::kLanes * (NC - 1), tail));
  }
  for (size_t j = 0; j < visible; ++j) {
    S::V wj[NQ];
    for (size_t i = 0; i < NQ; ++i) wj[i] = S::set1(w[i][j]);
    for (size_t c = 0; c < NC; ++c) {
      const S::V vj = S::load(v + j * width + d0 + S::kLanes * c);
      for (size_t i = 0; i < NQ; ++i) acc[i][c] = S::fmadd(wj[i], vj, acc[i][c]);
    }
  }
  for (size_t i = 0; i < NQ; ++i) {
    for (size_t c = 0; c + 1 < NC; ++c) S::storeu(out[i] + d0 + S::kLanes * c, acc[i][c]);
    S::store_first(out[i] + d0 + S::kLanes * (NC - 1), tail, acc[i][NC - 1]);
  }
}

// add_values with NC = nc output vectors (1 <= nc <= kOutVectors): only those counts are instantiated.
template <size_t NQ, size_t NC = 1>
void add_values_n(size_t nc, const float* v, size_t width, size_t d0, size_t tail, size_t visible,
                  const float (*w)[kKeyBlock], float* const* out, const float* correction) {
  if constexpr (NC < S::kOutVectors) {
    if (nc > NC) return add_values_n<NQ, NC + 1>(nc, v, width, d0, tail, visible, w, out, correction);
  }
  add_values<NQ, NC>(v, width, d0, tail, visible, w, out, correction);
}

template <size_t NQ>
void add_values_of_block(const float* v, size_t hd, size_t width, size_t visible, const float (*w)[kKeyBlock],
                         float* const* out, const float* correction) {
  constexpr size_t kSpan = S::kOutVectors * S::kLanes;
  for (size_t d0 = 0; d0 < hd; d0 += kSpan) {
    const size_t n = smaller(hd - d0, kSpan);
    const size_t nc = (n + S::kLanes - 1) / S::kLanes, tail = n - (nc - 1) * S::kLanes;
    add_values_n<NQ>(nc, v, width, d0, tail, visible, w, out, correction);
  }
}

// Queries first..first+NQ-1 (of the same length when NQ is 2) against the block at p0.
template <size_t NQ>
void attend_block(const AttentionArgs& a, size_t first, size_t p0, size_t count, size_t width, Block& b) {
  const float* q[NQ];
  float* out[NQ];
  float correction[NQ];
  for (size_t i = 0; i < NQ; ++i) q[i] = a.queries[first + i].q, out[i] = a.queries[first + i].out;
  const size_t visible = smaller(a.queries[first].visible - p0, count);
  scores_of_block<NQ>(b.kt, q, a.head_dim, visible, b.s);
  for (size_t i = 0; i < NQ; ++i)
    correction[i] = softmax_block(b.s[i], visible, a.scale, a.max_score[first + i], a.sum[first + i]);
  add_values_of_block<NQ>(b.v, a.head_dim, width, visible, b.s, out, correction);
}

void attend(const AttentionArgs& a, Block& b) {
  const size_t width = round_up(a.head_dim, S::kLanes);
  size_t n_kv = 0;
  for (size_t i = 0; i < a.n_queries; ++i) n_kv = a.queries[i].visible > n_kv ? a.queries[i].visible : n_kv;
  start_queries(a);
  for (size_t p0 = 0; p0 < n_kv; p0 += kKeyBlock) {
    const size_t count = smaller(n_kv - p0, kKeyBlock);
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
  finish_queries(a);
}
