// SwiGLU's elementwise step. No include guard and no includes: activation.cpp includes it (after
// exp_impl.h) inside one namespace per instruction set, under that set's target pragma, so that the
// compiler vectorizes the same loop for each.

// silu(x) = x / (1 + e^-x), with e^-|x| only (exp_nonpositive's range): for x < 0 it is x e^x / (1 + e^x).
// Below -87 (where exp_nonpositive stops at e^-87) it is -0: the true value is under 1e-35.
// Every operation runs for every x and the conditions only pick values: GCC does not if-convert an
// operation that may trap (-ftrapping-math), and the loop would not vectorize.
inline float silu_of(float x) {
  const float t = exp_nonpositive(-__builtin_fabsf(x));
  const float y = x * (x < 0.0f ? t : 1.0f) / (1.0f + t);
  return y * (x < -87.0f ? 0.0f : 1.0f);
}

inline void swiglu_body(const float* gate, const float* up, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = silu_of(gate[i]) * up[i];
}

// The largest of n values; 16 partial maxima so that the loop vectorizes.
inline float max_of(const float* x, size_t n) {
  float m[16];
  for (float& v : m) v = -3.0e38f;
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (size_t j = 0; j < 16; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  float top = -3.0e38f;
  for (float v : m) top = v > top ? v : top;
  for (; i < n; ++i) top = x[i] > top ? x[i] : top;
  return top;
}

// x[i] = e^(scale (x[i] - max)) / sum over n values; 16 partial sums so that the loops vectorize
// without reassociating float math.
inline void softmax_body(float* x, size_t n, float scale) {
  const float top = max_of(x, n);
  for (size_t k = 0; k < n; ++k) x[k] = exp_nonpositive(scale * (x[k] - top));
  float s[16] = {};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (size_t j = 0; j < 16; ++j) s[j] += x[i + j];
  float sum = 0;
  for (float v : s) sum += v;
  for (; i < n; ++i) sum += x[i];
  const float inv = 1.0f / sum;
  for (size_t k = 0; k < n; ++k) x[k] *= inv;
}

// p[i] = e^(scale (x[i] - max)) rounded to bf16 (nearest even; the values are finite and positive),
// and the sum of the unrounded values: softmax's numerators for a bf16 product.
inline uint16_t bf16_of_finite(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float softmax_numerators_bf16_body(const float* x, size_t n, float scale, uint16_t* p) {
  const float top = max_of(x, n);
  float s[16] = {}, e[16];
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (size_t j = 0; j < 16; ++j) e[j] = exp_nonpositive(scale * (x[i + j] - top));
    for (size_t j = 0; j < 16; ++j) s[j] += e[j];
    for (size_t j = 0; j < 16; ++j) p[i + j] = bf16_of_finite(e[j]);
  }
  float sum = 0;
  for (float v : s) sum += v;
  for (; i < n; ++i) {
    const float v = exp_nonpositive(scale * (x[i] - top));
    sum += v;
    p[i] = bf16_of_finite(v);
  }
  return sum;
}
