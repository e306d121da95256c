// exp(x) for x <= 0 to ~2 ulp, written to vectorize (no libm call): x = n ln2 + r, |r| <= ln2/2,
// exp(r) by a degree-6 polynomial, 2^n by building the float's exponent. Below -87, e^-87 (~1.6e-38).
//
// No include guard and no includes: a per-ISA body (attention_generic.cpp, attention_simd.h, activation.cpp) includes it
// inside its own namespace, after <cstdint> and <cstring>, so that every instruction set gets its own
// copy compiled for it.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  // n = x / ln2 rounded to nearest by the 1.5 * 2^23 addition (exact below 2^22): floorf would not
  // vectorize, as the vector floor needs -fno-trapping-math
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 split in two for exactness
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return p * scale;
}
