// The CUDA decode product on the benchmark models' matrices: every matrix of one decode step (all
// layers' q+k+v, o, gate+up, down and the output projection, random weights, each at its own
// address so nothing is re-read from L2), timed with CUDA events, against the device-to-device copy
// bandwidth. Activations are quantized once before timing (a decode step quantizes 4 vectors per
// layer, a few microseconds each). Prints a table; needs a GPU (says why not and exits 0 without one, as on CI).
//
//   bench_cuda [--shape 1b|9b|all] [--reps N]
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "autoglm/cuda.h"
#include "autoglm/kernels.h"
#include "autoglm/quant_recipe.h"

using autoglm::kernels::DType;
namespace cuda = autoglm::cuda;
namespace kernels = autoglm::kernels;

namespace {

struct Shape {
  const char* name;
  size_t d_model, layers, heads, kv_heads, head_dim, ffn, vocab;
};
constexpr Shape k1B{"1B (bench model)", 2048, 16, 16, 2, 128, 6912, 32000};
constexpr Shape k9B{"9B (GLM-4-9B shape)", 4096, 40, 32, 2, 128, 13696, 151552};

struct Matrix {
  std::string kind;  // qkv, o, gate_up, down, output
  cuda::DeviceWeights w;
};

// Stored blocks of random quants with small, valid scales (the kernel's speed does not depend on
// the values; NaN/Inf scales would only make the output meaningless).
std::vector<uint8_t> random_stored(DType type, size_t rows, size_t cols, std::mt19937_64& rng) {
  const kernels::DTypeInfo& info = kernels::dtype_info(type);
  std::vector<uint8_t> bytes(kernels::row_bytes(type, cols) * rows);
  for (size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(bytes.data() + i, &v, 8);
  }
  const uint16_t d = kernels::f32_to_f16(0.001f);
  const size_t d_at = type == DType::q6_k ? 208 : 0;
  for (size_t b = 0; b < bytes.size() / info.block_bytes; ++b) {
    std::memcpy(bytes.data() + b * info.block_bytes + d_at, &d, 2);
    if (type == DType::q4_k) std::memcpy(bytes.data() + b * info.block_bytes + 2, &d, 2);
  }
  return bytes;
}

// The type of each matrix for a target, as `quantize` would choose it; a K-quant whose rows are not
// whole super-blocks (the 9B's ffn_down, 13696 columns) falls back to Q8_0, as llama.cpp falls back
// to Q5_0/Q8_0 (we have no Q5_0).
DType type_for(DType target, const std::string& gguf_name, size_t layers, size_t cols) {
  const DType t = autoglm::model::recipe_type(target, gguf_name, {static_cast<uint32_t>(layers), false, 1}, cols);
  return cuda::supports(t) ? t : DType::q8_0;
}

std::vector<Matrix> upload_step(const Shape& s, DType target) {
  std::mt19937_64 rng(1);
  std::vector<Matrix> out;
  auto add = [&](const std::string& kind, const std::string& name, size_t rows, size_t cols) {
    const DType t = type_for(target, name, s.layers, cols);
    const std::vector<uint8_t> stored = random_stored(t, rows, cols, rng);
    out.push_back({kind, cuda::upload_weights(t, stored.data(), rows, cols)});
  };
  for (size_t l = 0; l < s.layers; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    // q, k and v as one matrix where their types agree, as an engine uploads them (one product)
    const std::string q = blk + "attn_q.weight", v = blk + "attn_v.weight";
    const size_t kv = s.kv_heads * s.head_dim;
    if (type_for(target, q, s.layers, s.d_model) == type_for(target, v, s.layers, s.d_model)) {
      add("qkv", q, s.heads * s.head_dim + 2 * kv, s.d_model);
    } else {
      add("qkv", q, s.heads * s.head_dim + kv, s.d_model);  // q and k
      add("qkv", v, kv, s.d_model);
    }
    add("o", blk + "attn_output.weight", s.d_model, s.heads * s.head_dim);
    add("gate_up", blk + "ffn_up.weight", 2 * s.ffn, s.d_model);
    add("down", blk + "ffn_down.weight", s.d_model, s.ffn);
  }
  add("output", "output.weight", s.vocab, s.d_model);
  return out;
}

void run(const Shape& s, DType target, const char* target_name, double copy, int reps) {
  const std::vector<Matrix> step = upload_step(s, target);
  size_t max_cols = 0, max_rows = 0, bytes = 0;
  for (const Matrix& m : step) {
    max_cols = std::max(max_cols, m.w.cols);
    max_rows = std::max(max_rows, m.w.rows);
    bytes += m.w.bytes();
  }
  std::vector<float> x(max_cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  for (float& f : x) f = normal(rng);
  cuda::DeviceArray dx(max_cols * sizeof(float)), dy(max_rows * sizeof(float));
  dx.upload(x.data(), x.size() * sizeof(float));
  cuda::DeviceActivations by_d_model, by_ffn;  // the two input widths, quantized once (not timed)
  by_d_model.quantize(dx.as<const float>(), s.d_model);
  by_ffn.quantize(dx.as<const float>(), s.ffn);
  auto time_kind = [&](const std::string& kind, size_t& kind_bytes) {
    kind_bytes = 0;
    for (const Matrix& m : step)
      if (kind.empty() || m.kind == kind) kind_bytes += m.w.bytes();
    return cuda::mean_ms(
        [&] {
          for (const Matrix& m : step)
            if (kind.empty() || m.kind == kind)
              cuda::matvec(m.w, m.w.cols == s.ffn ? by_ffn : by_d_model, dy.as<float>());
        },
        reps);
  };
  std::printf("\n%s, %s: %.2f GB of weights per decode step\n", s.name, target_name, static_cast<double>(bytes) / 1e9);
  std::printf("  %-8s %10s %9s %10s %9s\n", "matrices", "MB", "ms", "GB/s", "of copy");
  for (const char* kind : {"qkv", "o", "gate_up", "down", "output", ""}) {
    size_t kind_bytes = 0;
    const double ms = time_kind(kind, kind_bytes);
    const double mb = static_cast<double>(kind_bytes) / 1e6, gbps = mb / ms;
    std::printf("  %-8s %10.1f %9.3f %10.1f %8.0f %%\n", *kind ? kind : "all", mb, ms, gbps,
                100 * gbps / copy);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "all";
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shape" && i + 1 < argc) shape = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_cuda [--shape 1b|9b|all] [--reps N]\n");
      return 2;
    }
  }
  const std::string why = cuda::unavailable_reason();
  if (!why.empty()) {
    std::printf("bench_cuda: no usable GPU (%s); nothing measured\n", why.c_str());
    return 0;
  }
  const double copy = cuda::copy_gbps(size_t{1} << 30, 20);
  std::printf("%s\ndevice-to-device copy: %.1f GB/s (bytes read + written, 1 GiB buffer)\n"
              "matvec GB/s below: weight bytes read (quants + scales) per second; \"of copy\" compares them "
              "with the copy figure\n",
              cuda::device_description().c_str(), copy);
  const struct {
    DType type;
    const char* name;
  } targets[] = {{DType::q8_0, "Q8_0"}, {DType::q4_k, "Q4_K_M"}, {DType::q4_0, "Q4_0"}};
  for (const Shape* s : {&k1B, &k9B}) {
    if (shape != "all" && !(shape == "1b" && s == &k1B) && !(shape == "9b" && s == &k9B)) continue;
    for (const auto& t : targets) run(*s, t.type, t.name, copy, reps);
  }
}
