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
