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

// x[i] = e^(scale (x[i] - max)) / sum over n values; 16 partial maxima and sums so that the loops
// vectorize without reassociating float math.
inline void softmax_body(float* x, size_t n, float scale) {
  float m[16];
  for (float& v : m) v = -3.0e38f;
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (size_t j = 0; j < 16; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  float top = -3.0e38f;
  for (float v : m) top = v > top ? v : top;
  for (; i < n; ++i) top = x[i] > top ? x[i] : top;
  for (size_t k = 0; k < n; ++k) x[k] = exp_nonpositive(scale * (x[k] - top));
  float s[16] = {};
  i = 0;
  for (; i + 16 <= n; i += 16)
    for (size_t j = 0; j < 16; ++j) s[j] += x[i + j];
  float sum = 0;
  for (float v : s) sum += v;
  for (; i < n; ++i) sum += x[i];
  const float inv = 1.0f / sum;
  for (size_t k = 0; k < n; ++k) x[k] *= inv;
}
