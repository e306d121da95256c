#include "autoglm/random_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "autoglm/error.h"
#include "autoglm/gguf_writer.h"
#include "autoglm/model_shape.h"
#include "autoglm/quant_recipe.h"
#include "autoglm/quantize.h"

namespace autoglm::model {
namespace {

using kernels::DType;

constexpr size_t kChunkElements = size_t{1} << 20;  // rows generated per step: ~4 MB of f32 at most
constexpr uint32_t kQuantizationVersion = 2;        // ggml's GGML_QNT_VERSION

[[noreturn]] void fail(const std::string& message) { throw Error(kExitUsage, "random model: " + message); }

// splitmix64's output function: a well-mixed 64-bit hash of a 64-bit input.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// splitmix64: tiny, fast, and the same sequence on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  // Roughly normal, mean 0, std 1: the sum of four 16-bit uniforms (bounded at +-3.46).
  float normal() {
    const uint64_t x = next();
    const auto sum = static_cast<float>((x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48));
    constexpr float kSqrt3 = 1.7320508f;  // the sum of four U(0,1) has variance 1/3
    return ((sum + 2.0f) / 65536.0f - 2.0f) * kSqrt3;
  }

 private:
  uint64_t state_;
};

// FNV-1a: a tensor's weights depend on its name, not on the order tensors are written in.
uint64_t name_hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  return h;
}

// value = offset + scale * normal(): matrices ~N(0, 1/fan_in), norms ~1, biases small.
struct Init {
  float offset = 0;
  float scale = 1;
};

struct TensorPlan {
  std::string name;
  std::vector<uint64_t> dims;  // ne[0] first
  DType type = DType::f32;
  Init init;
  size_t cols() const { return dims[0]; }
  size_t rows() const { return dims.size() > 1 ? dims[1] : 1; }
};

// llama.cpp's general.file_type (enum llama_ftype) for a weight type.
uint32_t file_type(const RandomModelSpec& s) {
  // pure Q4_K: Q4_K_S is the nearest label; everything else as quantize labels its files
  if (s.weight_type == DType::q4_k && !s.q4_k_m_mix) return 14;
  return quantize_file_type(s.weight_type);
}

bool is_glm4(const RandomModelSpec& s) { return s.arch == "glm4"; }  // fused [gate; up] FFN

void check_spec(const RandomModelSpec& s) {
  if (!find_arch(s.arch)) fail(fmt::format("unknown arch '{}' (glm4, llama or qwen2)", s.arch));
  if (s.n_layers == 0 || s.d_model == 0 || s.n_heads == 0 || s.n_kv_heads == 0 || s.head_dim == 0 || s.ffn_dim == 0 ||
      s.context_length == 0)
    fail("every size must be positive");
  if (s.n_heads % s.n_kv_heads != 0)
    fail(fmt::format("{} heads is not a multiple of {} KV heads", s.n_heads, s.n_kv_heads));
  const uint32_t min_vocab = s.arch == "llama" ? 259 : 257;
  if (s.vocab_size < min_vocab)
    fail(fmt::format("vocab_size {} is below {}: the vocab needs its 256 byte tokens and special tokens", s.vocab_size,
                     min_vocab));
  const kernels::DTypeInfo* info = kernels::dtype_info(static_cast<uint32_t>(s.weight_type));
  if (!info) fail(fmt::format("unknown weight type {}", static_cast<uint32_t>(s.weight_type)));
  // the weights are written by our quantizers: the types that have one
  static constexpr DType kWritable[] = {DType::f32,  DType::f16,  DType::bf16, DType::q8_0, DType::q4_0, DType::q4_1,
                                        DType::q5_0, DType::q5_1, DType::q2_k, DType::q3_k, DType::q4_k,
                                        DType::q5_k, DType::q6_k, DType::iq4_nl, DType::iq4_xs};
  if (std::find(std::begin(kWritable), std::end(kWritable), s.weight_type) == std::end(kWritable))
    fail(fmt::format("weight type {} has no quantizer yet (use f32, f16, bf16 or a block type)",
                     info->name));
  if (s.q4_k_m_mix && s.weight_type != DType::q4_k) fail("q4_k_m_mix needs weight_type q4_k");
}

// The type of a 2-D weight: weight_type, or the project's Q4_K_M recipe (the one our quantizer uses).
DType matrix_type(const RandomModelSpec& s, const std::string& name, uint64_t cols) {
  return s.q4_k_m_mix ? recipe_type(DType::q4_k, name, recipe_model(s.n_layers, s.tied_embeddings, s.n_heads, s.n_kv_heads), cols) : s.weight_type;
}

TensorPlan matrix(const RandomModelSpec& s, std::string name, uint64_t ne0, uint64_t ne1) {
  const DType type = matrix_type(s, name, ne0);
  return {std::move(name), {ne0, ne1}, type, {0.0f, 1.0f / std::sqrt(static_cast<float>(ne0))}};
}
TensorPlan norm(std::string name, uint64_t n) { return {std::move(name), {n}, DType::f32, {1.0f, 0.1f}}; }
TensorPlan bias(std::string name, uint64_t n) { return {std::move(name), {n}, DType::f32, {0.0f, 0.1f}}; }

void plan_layer(const RandomModelSpec& s, uint32_t l, std::vector<TensorPlan>& out) {
  const ArchTraits& arch = *find_arch(s.arch);
  const std::string p = fmt::format("blk.{}.", l);
  const uint64_t d = s.d_model, q = uint64_t{s.n_heads} * s.head_dim, kv = uint64_t{s.n_kv_heads} * s.head_dim;
  out.push_back(norm(p + "attn_norm.weight", d));
  out.push_back(matrix(s, p + "attn_q.weight", d, q));
  out.push_back(matrix(s, p + "attn_k.weight", d, kv));
  out.push_back(matrix(s, p + "attn_v.weight", d, kv));
  if (arch.qkv_bias) {
    out.push_back(bias(p + "attn_q.bias", q));
    out.push_back(bias(p + "attn_k.bias", kv));
    out.push_back(bias(p + "attn_v.bias", kv));
  }
  out.push_back(matrix(s, p + "attn_output.weight", q, d));
  out.push_back(norm(p + "ffn_norm.weight", d));
  if (arch.post_norms) out.push_back(norm(p + "post_attention_norm.weight", d));
  if (is_glm4(s)) {
    out.push_back(matrix(s, p + "ffn_up.weight", d, 2 * uint64_t{s.ffn_dim}));
  } else {
    out.push_back(matrix(s, p + "ffn_gate.weight", d, s.ffn_dim));
    out.push_back(matrix(s, p + "ffn_up.weight", d, s.ffn_dim));
  }
  if (arch.post_norms) out.push_back(norm(p + "post_ffw_norm.weight", d));
  out.push_back(matrix(s, p + "ffn_down.weight", s.ffn_dim, d));
}

// Every tensor, in the fixtures' order.
std::vector<TensorPlan> plan_tensors(const RandomModelSpec& s) {
  std::vector<TensorPlan> out;
  TensorPlan embd = matrix(s, "token_embd.weight", s.d_model, s.vocab_size);
  // As in the fixtures the embedding has std 1; tied, it is also the output layer and must be ~1/sqrt(d).
  if (!s.tied_embeddings) embd.init.scale = 1.0f;
  out.push_back(std::move(embd));
  out.push_back(norm("output_norm.weight", s.d_model));
  if (!s.tied_embeddings) out.push_back(matrix(s, "output.weight", s.d_model, s.vocab_size));
  for (uint32_t l = 0; l < s.n_layers; ++l) plan_layer(s, l, out);
  for (const TensorPlan& t : out) {
    const kernels::DTypeInfo& info = kernels::dtype_info(t.type);
    if (t.cols() % info.block_size != 0)
      fail(fmt::format("{} has rows of {} elements, not a multiple of {}'s block size {}", t.name, t.cols(), info.name,
                       info.block_size));
  }
  return out;
}

// GPT-2's byte-to-unicode table, in its vocab order: printable bytes first, then the rest.
std::vector<std::string> gpt2_byte_tokens() {
  std::vector<int> code_points;
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  for (int b = 0; b < 256; ++b)
    if (printable(b)) code_points.push_back(b);  // printable bytes stand for themselves
  int extra = 0;
  for (int b = 0; b < 256; ++b)
    if (!printable(b)) code_points.push_back(256 + extra++);  // the rest move past U+00FF, in byte order
  std::vector<std::string> tokens;
  for (int cp : code_points) {
    std::string utf8;
    if (cp < 0x80) {
      utf8 += static_cast<char>(cp);
    } else {  // all code points here are below 0x800: two bytes
      utf8 += static_cast<char>(0xC0 | (cp >> 6));
      utf8 += static_cast<char>(0x80 | (cp & 0x3F));
    }
    tokens.push_back(std::move(utf8));
  }
  return tokens;
}

std::string filler_token(size_t id) { return fmt::format("<|tok_{}|>", id); }

// Byte-level BPE vocab (glm4, qwen2): 256 byte tokens, fillers, and "<|endoftext|>" (bos = eos) last.
void write_gpt2_vocab(const RandomModelSpec& s, gguf::Writer& w) {
  std::vector<std::string> tokens = gpt2_byte_tokens();
  while (tokens.size() + 1 < s.vocab_size) tokens.push_back(filler_token(tokens.size()));
  tokens.push_back("<|endoftext|>");
  std::vector<int32_t> types(tokens.size(), 1);  // normal
  types.back() = 3;                              // control
  const uint32_t eos = s.vocab_size - 1;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", s.arch);  // llama.cpp's pre-tokenizers "glm4" and "qwen2"
  w.set_array_strings("tokenizer.ggml.tokens", tokens);
  w.set_array_i32("tokenizer.ggml.token_type", types);
  w.set_array_strings("tokenizer.ggml.merges", std::vector<std::string>{});
  w.set_u32("tokenizer.ggml.bos_token_id", eos);
  w.set_u32("tokenizer.ggml.eos_token_id", eos);
  w.set_bool("tokenizer.ggml.add_bos_token", false);
}

// SentencePiece vocab (llama), laid out as llama-spm's: <unk>, <s>, </s>, <0x00>..<0xFF>, pieces.
void write_spm_vocab(const RandomModelSpec& s, gguf::Writer& w) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};  // unknown, control, control
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);  // byte
  }
  while (tokens.size() < s.vocab_size) {
    tokens.push_back(filler_token(tokens.size()));
    types.push_back(1);  // normal
  }
  std::vector<float> scores(tokens.size(), 0.0f);
  for (size_t k = 259; k < scores.size(); ++k) scores[k] = -static_cast<float>(k - 259);  // earlier pieces win
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string("tokenizer.ggml.pre", "default");
  w.set_array_strings("tokenizer.ggml.tokens", tokens);
  w.set_array_i32("tokenizer.ggml.token_type", types);
  w.set_array_f32("tokenizer.ggml.scores", scores);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
}

// The fixtures' keys, in their order.
void write_metadata(const RandomModelSpec& s, gguf::Writer& w) {
  const std::string a = s.arch + ".";
  w.set_string("general.architecture", s.arch);
  w.set_string("general.name", fmt::format("random-{}-seed{}", s.arch, s.seed));
  w.set_u32(a + "context_length", s.context_length);
  w.set_u32(a + "embedding_length", s.d_model);
  w.set_u32(a + "block_count", s.n_layers);
  w.set_u32(a + "feed_forward_length", s.ffn_dim);
  w.set_u32(a + "attention.head_count", s.n_heads);
  w.set_u32(a + "attention.head_count_kv", s.n_kv_heads);
  if (s.head_dim != s.d_model / s.n_heads || s.d_model % s.n_heads != 0) {  // readers assume d_model / n_heads
    w.set_u32(a + "attention.key_length", s.head_dim);
    w.set_u32(a + "attention.value_length", s.head_dim);
  }
  w.set_f32(a + "attention.layer_norm_rms_epsilon", s.rms_eps);
  w.set_f32(a + "rope.freq_base", s.rope_base);
  w.set_u32(a + "vocab_size", s.vocab_size);
  w.set_u32("general.file_type", file_type(s));
  w.set_u32(a + "rope.dimension_count", is_glm4(s) ? s.head_dim / 2 : s.head_dim);  // GLM-4: partial RoPE
  if (s.arch == "llama")
    write_spm_vocab(s, w);
  else
    write_gpt2_vocab(s, w);
  if (s.weight_type != DType::f32) w.set_u32("general.quantization_version", kQuantizationVersion);
}

// Generates and quantizes `t` chunk by chunk across the pool, handing each chunk to `sink`.
void produce(const TensorPlan& t, uint64_t seed, kernels::ThreadPool& pool, const gguf::ByteSink& sink) {
  const size_t cols = t.cols(), rows = t.rows();
  const size_t row_bytes = kernels::row_bytes(t.type, cols);
  const size_t chunk_rows = std::clamp<size_t>(kChunkElements / cols, 1, rows);
  const uint64_t tensor_seed = mix64(seed ^ name_hash(t.name));
  std::vector<uint8_t> out(chunk_rows * row_bytes);
  for (size_t first = 0; first < rows; first += chunk_rows) {
    const size_t n = std::min(chunk_rows, rows - first);
    pool.run(n, 1, [&](size_t begin, size_t end) {
      std::vector<float> row(cols);
      for (size_t r = begin; r < end; ++r) {
        Rng rng(mix64(tensor_seed + first + r));  // per-row streams: the result does not depend on threads
        for (float& x : row) x = t.init.offset + t.init.scale * rng.normal();
        kernels::quantize_row(t.type, row.data(), out.data() + r * row_bytes, cols);
      }
    });
    sink(std::span<const uint8_t>(out.data(), n * row_bytes));
  }
}

}  // namespace

RandomModelSpec benchmark_1b_spec(const std::string& arch, kernels::DType weight_type, bool q4_k_m_mix) {
  RandomModelSpec s;
  s.arch = arch;
  s.n_layers = 16;
  s.d_model = 2048;
  s.n_heads = 16;
  s.n_kv_heads = 2;
  s.head_dim = 128;
  s.ffn_dim = 6912;
  s.vocab_size = 32000;
  s.context_length = 4096;
  s.weight_type = weight_type;
  s.q4_k_m_mix = q4_k_m_mix;
  return s;
}

void write_random_model(const RandomModelSpec& spec, const std::filesystem::path& path) {
  check_spec(spec);
  const std::vector<TensorPlan> tensors = plan_tensors(spec);
  kernels::ThreadPool pool(spec.threads);
  gguf::Writer w;
  write_metadata(spec, w);
  for (const TensorPlan& t : tensors)
    w.add_tensor(t.name, t.dims, static_cast<uint32_t>(t.type),
                 [&t, &pool, seed = spec.seed](const gguf::ByteSink& sink) { produce(t, seed, pool, sink); });
  w.write(path);
}

}  // namespace autoglm::model
