// Loading a model: metadata -> ArchConfig, tensors -> views into mapped files (or, for a
// Hugging Face checkpoint quantized at load, into buffers filled tensor by tensor).
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "autoglm/gguf.h"
#include "autoglm/model.h"
#include "autoglm/model_shape.h"
#include "autoglm/quant_recipe.h"
#include "autoglm/safetensors.h"

namespace autoglm::model {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(kExitCheckFailed, message); }

// A tensor as a source holds it: dims ne0 (contiguous) first, like GGUF.
struct TensorRef {
  std::string name;        // the name in the source file, for messages
  std::string file;
  uint32_t ggml_type = 0;
  std::vector<uint64_t> dims;
  const uint8_t* data = nullptr;
};

// Finds tensors by their GGUF name ("blk.0.attn_q.weight").
using TensorIndex = std::map<std::string, TensorRef>;

// Fills the families' fixed traits into an ArchConfig whose dimensions are already set.
void set_traits(ArchConfig& c) {
  const ArchTraits& traits = *find_arch(c.arch);
  c.qkv_bias = traits.qkv_bias;
  c.post_norms = traits.post_norms;
  c.fused_gate_up = c.arch == "glm4";
  c.rope_style = c.arch == "qwen2" ? RopeStyle::neox : RopeStyle::adjacent;
  if (c.rope_dims == 0) c.rope_dims = c.arch == "glm4" ? c.head_dim / 2 : c.head_dim;
}

ArchConfig dims_from(const ModelShape& s) {
  ArchConfig c;
  c.arch = s.architecture;
  c.n_layers = s.n_layers;
  c.d_model = s.d_model;
  c.n_heads = s.n_heads;
  c.n_kv_heads = s.n_kv_heads;
  c.head_dim = s.head_dim;
  c.ffn_dim = s.ffn_dim;
  c.vocab_size = s.vocab_size;
  c.context_length = s.context_length;
  c.tied_embeddings = s.tied_embeddings;
  return c;
}

void check_rope(const ArchConfig& c, const std::string& origin) {
  if (c.rope_dims == 0 || c.rope_dims > c.head_dim || c.rope_dims % 2 != 0)
    fail(fmt::format("{}: {} rotary dims do not fit head_dim {}", origin, c.rope_dims, c.head_dim));
  uint64_t pairs = 0;
  for (uint32_t n : c.mrope_sections) pairs += n;
  if (pairs > c.rope_dims / 2)
    fail(fmt::format("{}: M-RoPE sections [{}] cover {} rotary pairs, more than the {} there are", origin,
                     fmt::join(c.mrope_sections, ", "), pairs, c.rope_dims / 2));
  if (!(c.rms_eps > 0) || !(c.rope_base > 0)) fail(fmt::format("{}: rms epsilon and rope base must be > 0", origin));
}

// ---- GGUF ----

float gguf_float(const gguf::File& f, const std::string& key, float fallback) {
  const gguf::Value* v = f.find(key);
  if (!v) return fallback;
  auto x = v->as_float();
  if (!x) fail(fmt::format("{}: '{}' is a {}, expected a number", f.path.string(), key, gguf::value_type_name(v->type)));
  return static_cast<float>(*x);
}

ArchConfig gguf_config(const ModelShape& s, const gguf::File& f) {
  ArchConfig c = dims_from(s);
  const std::string a = s.architecture + ".";
  c.rms_eps = gguf_float(f, a + "attention.layer_norm_rms_epsilon", 1e-5f);
  c.rope_base = gguf_float(f, a + "rope.freq_base", 10000.0f);
  if (auto dims = f.get_int(a + "rope.dimension_count")) c.rope_dims = static_cast<uint32_t>(*dims);
  set_traits(c);
  if (const gguf::Value* v = f.find(a + "rope.dimension_sections")) {
    if (v->type != gguf::ValueType::array || v->ints.size() < 3)
      fail(fmt::format("{}: '{}rope.dimension_sections' must be an array of 3 or 4 integers", f.path.string(), a));
    for (size_t i = 0; i < 3; ++i) {
      if (v->ints[i] < 0 || v->ints[i] > 0xffff)
        fail(fmt::format("{}: '{}rope.dimension_sections' holds {}", f.path.string(), a, v->ints[i]));
      c.mrope_sections[i] = static_cast<uint32_t>(v->ints[i]);
    }
    // llama.cpp's converter permutes Q/K of M-RoPE models for its rotation of halves (GLM-4.1V)
    c.rope_style = RopeStyle::neox;
  }
  check_rope(c, f.path.string());
  return c;
}

TensorIndex gguf_index(const gguf::File& f, const uint8_t* base) {
  TensorIndex index;
  for (const gguf::TensorInfo& t : f.tensors)
    index[t.name] = {t.name, f.path.string(), t.type, t.dims, base + f.data_offset + t.offset};
  return index;
}

// ---- Hugging Face ----

// GGUF name -> checkpoint name, as in GLM-4-0414 / Llama / Qwen2 checkpoints.
std::string hf_name(const std::string& gguf_name, const std::string& arch) {
  static const std::map<std::string, std::string> global = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  if (auto it = global.find(gguf_name); it != global.end()) return it->second;
  // blk.N.<part> -> model.layers.N.<hf part>
  const size_t dot = gguf_name.find('.', 4);
  const std::string layer = gguf_name.substr(4, dot - 4), part = gguf_name.substr(dot + 1);
  static const std::map<std::string, std::string> parts = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},        {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.weight", "self_attn.k_proj.weight"},        {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},        {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"post_attention_norm.weight", "post_self_attn_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},  // HF's name for the pre-FFN norm
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
      {"post_ffw_norm.weight", "post_mlp_layernorm.weight"},
  };
  std::string hf_part = part == "ffn_up.weight" ? (arch == "glm4" ? "mlp.gate_up_proj.weight" : "mlp.up_proj.weight")
                                                 : parts.count(part) ? parts.at(part) : part;
  return "model.layers." + layer + "." + hf_part;
}

uint32_t ggml_type_of(const std::string& dtype) {
  if (dtype == "F32") return static_cast<uint32_t>(kernels::DType::f32);
  if (dtype == "F16") return static_cast<uint32_t>(kernels::DType::f16);
  if (dtype == "BF16") return static_cast<uint32_t>(kernels::DType::bf16);
  return 0xffffffff;  // rejected with the tensor's name when it is used
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(path.string() + ": not a valid JSON object");
  return j;
}

ArchConfig hf_config(const ModelShape& s, const fs::path& folder) {
  const nlohmann::json root = read_json(folder / "config.json");
  const nlohmann::json& j = root.contains("text_config") ? root["text_config"] : root;
  ArchConfig c = dims_from(s);
  c.rms_eps = j.value("rms_norm_eps", j.value("layernorm_epsilon", 1e-5f));
  c.rope_base = j.value("rope_theta", 10000.0f);
  // transformers 5 keeps rope settings in rope_parameters, older configs in rope_scaling
  const nlohmann::json* rope = nullptr;
  for (const char* key : {"rope_parameters", "rope_scaling"})
    if (j.contains(key) && j[key].is_object()) rope = &j[key];
  double partial = j.value("partial_rotary_factor", c.arch == "glm4" ? 0.5 : 1.0);
  if (rope) {
    c.rope_base = rope->value("rope_theta", c.rope_base);
    partial = rope->value("partial_rotary_factor", partial);
  }
  c.rope_dims = static_cast<uint32_t>(c.head_dim * partial);
  set_traits(c);
  if (rope && rope->contains("mrope_section")) {
    const nlohmann::json& sections = (*rope)["mrope_section"];
    if (!sections.is_array() || sections.size() != 3)
      fail((folder / "config.json").string() + ": 'mrope_section' must be a list of 3 integers");
    for (size_t i = 0; i < 3; ++i) {
      if (!sections[i].is_number_unsigned() || sections[i].get<uint64_t>() > 0xffff)
        fail((folder / "config.json").string() + ": 'mrope_section' must be a list of 3 integers");
      c.mrope_sections[i] = sections[i].get<uint32_t>();
    }
  }
  // Checkpoints keep q/k unpermuted, so Llama rotates halves (GGUF files are permuted for pairs).
  if (c.arch == "llama") c.rope_style = RopeStyle::neox;
  check_rope(c, (folder / "config.json").string());
  return c;
}

// GGUF tensor name -> the name in the source's index.
using NameMap = std::function<std::string(const std::string&)>;

// Assembles a Model from an index of tensors; owns nothing but the checks and the layout.
class ModelBuilder {
 public:
  ModelBuilder(Model& m, const TensorIndex& index, NameMap names, const std::string& origin,
               const LoadOptions& options)
      : m_(m), index_(index), names_(std::move(names)), origin_(origin), quant_(options.quantize_to),
        repack_(options.repack) {}

  void build() {
    const ArchConfig& c = m_.config;
    m_.token_embd = matrix("token_embd.weight", c.vocab_size, c.d_model);
    m_.output_norm = vector("output_norm.weight", c.d_model);
    m_.output = c.tied_embeddings ? m_.token_embd : matrix("output.weight", c.vocab_size, c.d_model);
    for (uint32_t i = 0; i < c.n_layers; ++i) m_.layers.push_back(layer(i));
    if (!repack_) return;
    if (!c.tied_embeddings) repack(m_.output);  // the embedding is read by rows
    for (Layer& l : m_.layers)
      for (Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) repack(*w);
  }

 private:
  // In place: the storage is a writable private mapping or a buffer the model owns.
  static void repack(Matrix& w) {
    if (!w.data) return;  // w_gate of a fused gate/up
    const kernels::Layout layout = kernels::preferred_layout(w.type, w.rows);
    if (layout == kernels::Layout::rows) return;
    kernels::pack_weights(w.type, layout, const_cast<void*>(w.data), w.rows, w.cols);
    w.layout = layout;  // rows past the last whole panel stay stored, as the layout says
  }

  Layer layer(uint32_t i) {
    const ArchConfig& c = m_.config;
    const std::string p = fmt::format("blk.{}.", i);
    const size_t d = c.d_model, q = size_t{c.n_heads} * c.head_dim, kv = size_t{c.n_kv_heads} * c.head_dim;
    Layer l;
    l.attn_norm = vector(p + "attn_norm.weight", d);
    l.wq = matrix(p + "attn_q.weight", q, d);
    l.wk = matrix(p + "attn_k.weight", kv, d);
    l.wv = matrix(p + "attn_v.weight", kv, d);
    if (c.qkv_bias) {
      l.bq = vector(p + "attn_q.bias", q);
      l.bk = vector(p + "attn_k.bias", kv);
      l.bv = vector(p + "attn_v.bias", kv);
    }
    l.wo = matrix(p + "attn_output.weight", d, q);
    l.ffn_norm = vector(p + "ffn_norm.weight", d);
    if (c.fused_gate_up) {
      l.w_up = matrix(p + "ffn_up.weight", 2 * size_t{c.ffn_dim}, d);
    } else {
      l.w_gate = matrix(p + "ffn_gate.weight", c.ffn_dim, d);
      l.w_up = matrix(p + "ffn_up.weight", c.ffn_dim, d);
    }
    l.w_down = matrix(p + "ffn_down.weight", d, c.ffn_dim);
    if (c.post_norms) {
      l.post_attn_norm = vector(p + "post_attention_norm.weight", d);
      l.post_ffn_norm = vector(p + "post_ffw_norm.weight", d);
    }
    return l;
  }

  const TensorRef& find(const std::string& name) const {
    const std::string source_name = names_(name);
    auto it = index_.find(source_name);
    if (it == index_.end())
      fail(fmt::format("{}: missing tensor '{}' — the files are not a complete {} model", origin_, source_name,
                       m_.config.arch));
    return it->second;
  }

  const kernels::DTypeInfo& type_of(const TensorRef& t) const {
    const kernels::DTypeInfo* info = kernels::dtype_info(t.ggml_type);
    if (!info) {
      const gguf::TypeInfo* g = gguf::type_info(t.ggml_type);
      fail(fmt::format("{}: tensor '{}' has type {}, which the engine does not support (supported: F32, F16, BF16, "
                       "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)", t.file, t.name, g ? g->name : "unknown"));
    }
    return *info;
  }

  void expect_shape(const TensorRef& t, const std::vector<uint64_t>& dims) const {
    if (t.dims != dims)
      fail(fmt::format("{}: tensor '{}' has shape [{}], expected [{}] from the model's metadata", t.file, t.name,
                       fmt::join(t.dims, ", "), fmt::join(dims, ", ")));
  }

  Matrix matrix(const std::string& name, size_t rows, size_t cols) {
    const TensorRef& t = find(name);
    const kernels::DTypeInfo& info = type_of(t);
    expect_shape(t, {cols, rows});
    if (cols % info.block_size != 0)
      fail(fmt::format("{}: tensor '{}': rows of {} elements are not whole {} blocks", t.file, t.name, cols, info.name));
    Matrix mat{info.type, rows, cols, t.data, name};
    if (!quant_ || info.block_size != 1) return mat;  // as stored, or already quantized
    const kernels::DType to = recipe_type(*quant_, name, recipe_model(m_.config.n_layers, m_.config.tied_embeddings, m_.config.n_heads, m_.config.n_kv_heads), cols);
    return to == info.type ? mat : quantized(mat, to);
  }

  // Row by row through one f32 row buffer: peak memory is the quantized model plus one row.
  Matrix quantized(const Matrix& src, kernels::DType to) {
    const kernels::DTypeInfo& target = kernels::dtype_info(to);
    if (src.cols % target.block_size != 0)
      fail(fmt::format("{}: tensor '{}': rows of {} elements cannot be quantized to {} (blocks of {})", origin_,
                       src.name, src.cols, target.name, target.block_size));
    const size_t out_row = kernels::row_bytes(to, src.cols);
    auto buffer = std::make_unique<uint8_t[]>(out_row * src.rows);
    std::vector<float> row(src.cols);
    for (size_t r = 0; r < src.rows; ++r) {
      kernels::dequantize_row(src.type, src.row(r), row.data(), src.cols);
      kernels::quantize_row(to, row.data(), buffer.get() + r * out_row, src.cols);
    }
    return Matrix{to, src.rows, src.cols, m_.keep_buffer(std::move(buffer)), src.name};
  }

  std::vector<float> vector(const std::string& name, size_t n) const {
    const TensorRef& t = find(name);
    expect_shape(t, {n});
    const kernels::DTypeInfo& info = type_of(t);
    if (info.block_size != 1)
      fail(fmt::format("{}: tensor '{}' is {}; norms and biases must be F32, F16 or BF16", t.file, t.name, info.name));
    std::vector<float> out(n);
    kernels::dequantize_row(info.type, t.data, out.data(), n);
    return out;
  }

  Model& m_;
  const TensorIndex& index_;
  NameMap names_;
  std::string origin_;
  std::optional<kernels::DType> quant_;
  bool repack_ = true;
};

const uint8_t* map_file(const fs::path& path, size_t size, Model& m) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  // writable copy-on-write: repacking rewrites some tensors in memory, never the file
  void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) fail(fmt::format("{}: cannot map: {}", path.string(), std::strerror(errno)));
  m.keep_mapping(map, size);
  return static_cast<const uint8_t*>(map);
}

}  // namespace

std::unique_ptr<Model> Model::load_gguf(const fs::path& path, const LoadOptions& options) {
  const gguf::File file = gguf::read_file_header(path);
  const ModelShape shape = read_model_shape(path);
  std::unique_ptr<Model> m(new Model());
  m->path = path;
  m->format = "gguf";
  m->weight_type = shape.stored_type;
  m->config = gguf_config(shape, file);
  const TensorIndex index = gguf_index(file, map_file(path, file.file_size, *m));
  LoadOptions as_stored = options;
  as_stored.quantize_to.reset();  // GGUF weights are used as stored
  ModelBuilder(*m, index, [](const std::string& name) { return name; }, path.string(), as_stored).build();
  m->seal_mappings();
  return m;
}

std::unique_ptr<Model> Model::load(const fs::path& path, const LoadOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return load_gguf(path, options);
  const ModelShape shape = read_model_shape(path);  // validates config.json and every shard header
  std::unique_ptr<Model> m(new Model());
  m->path = path;
  m->format = "hf";
  m->config = hf_config(shape, path);
  TensorIndex by_hf_name;
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.path().extension() != ".safetensors") continue;
    const safetensors::File f = safetensors::read_file_header(entry.path());
    const uint8_t* base = map_file(entry.path(), f.file_size, *m);
    for (const safetensors::TensorInfo& t : f.tensors)
      by_hf_name[t.name] = {t.name, entry.path().string(), ggml_type_of(t.dtype),
                            std::vector<uint64_t>(t.shape.rbegin(), t.shape.rend()), base + f.data_offset + t.begin};
  }
  if (by_hf_name.empty()) fail(fmt::format("{}: no *.safetensors weights in the folder", path.string()));
  m->weight_type = options.quantize_to ? kernels::dtype_info(*options.quantize_to).name : shape.stored_type;
  const std::string arch = m->config.arch;
  // vision-language checkpoints (GLM-4.1V) keep the decoder under model.language_model.
  const bool nested = by_hf_name.count("model.language_model.embed_tokens.weight") != 0;
  ModelBuilder(*m, by_hf_name, [arch, nested](const std::string& name) {
    std::string hf = hf_name(name, arch);
    if (nested && hf.rfind("model.", 0) == 0) hf.replace(0, 6, "model.language_model.");
    return hf;
  }, path.string(), options).build();
  m->seal_mappings();
  return m;
}

void Model::seal_mappings() {
  for (const Mapping& map : maps_) ::mprotect(map.addr, map.size, PROT_READ);
}

Model::~Model() {
  for (const Mapping& map : maps_) ::munmap(map.addr, map.size);
}

}  // namespace autoglm::model
