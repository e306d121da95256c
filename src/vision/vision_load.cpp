// Loading the vision tower: config values from config.json or the mmproj metadata, tensors from
// the safetensors shards or the GGUF, each copied into the layout the encoder reads.
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "autoglm/gguf.h"
#include "autoglm/safetensors.h"
#include "autoglm/vision.h"

namespace autoglm::vision {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(kExitCheckFailed, message); }

// A tensor as its file holds it: dims ne0 (contiguous) first, like GGUF.
struct Tensor {
  std::string name, file;
  kernels::DType type = kernels::DType::f32;
  std::vector<uint64_t> dims;
  const uint8_t* data = nullptr;
  uint64_t n_elements() const {
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    return n;
  }
};

// The mapped files of one load; unmapped when the load ends (every tensor is copied out).
class Mappings {
 public:
  Mappings() = default;
  Mappings(const Mappings&) = delete;
  Mappings& operator=(const Mappings&) = delete;
  ~Mappings() {
    for (auto [addr, size] : maps_) ::munmap(addr, size);
  }
  const uint8_t* map(const fs::path& path, size_t size) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
    void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (addr == MAP_FAILED) fail(fmt::format("{}: cannot map: {}", path.string(), std::strerror(errno)));
    maps_.emplace_back(addr, size);
    return static_cast<const uint8_t*>(addr);
  }

 private:
  std::vector<std::pair<void*, size_t>> maps_;
};

using Index = std::map<std::string, Tensor>;

// Copies tensors out of an index into the VisionModel's buffers, checking names and shapes.
class Builder {
 public:
  Builder(VisionModel& m, const Index& index, const model::LoadOptions& options) : m_(m), index_(index) {
    if (options.quantize_to) {
      const kernels::DType q = *options.quantize_to;
      const bool is_float = q == kernels::DType::f32 || q == kernels::DType::f16 || q == kernels::DType::bf16;
      // int8 products for every quantized text type: the tower is small beside the decoder and
      // sensitive to rounding, so it never goes below 8 bits.
      target_ = is_float ? q : kernels::DType::q8_0;
    }
    repack_ = options.repack;
    tiles_ = options.bf16_tiles && kernels::amx_available();
  }

  const Tensor& find(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) fail(fmt::format("{}: missing tensor '{}' — not a complete GLM-4.1V vision tower",
                                             m_.path.string(), name));
    return it->second;
  }
  bool has(const std::string& name) const { return index_.count(name) != 0; }

  void expect_elements(const Tensor& t, uint64_t n) const {
    if (t.n_elements() != n)
      fail(fmt::format("{}: tensor '{}' has shape [{}] ({} values), expected {} from the config", t.file, t.name,
                       fmt::join(t.dims, ", "), t.n_elements(), n));
  }

  std::vector<float> vector(const std::string& name, size_t n) const {
    const Tensor& t = find(name);
    expect_elements(t, n);
    return values(t);
  }

  // All values of a tensor as floats (a quantized one too: a GGUF's rows are whole blocks, so its
  // blocks follow each other as one long row's).
  std::vector<float> values(const Tensor& t) const {
    const kernels::DTypeInfo& info = kernels::dtype_info(t.type);
    if (t.dims.empty() || t.n_elements() % info.block_size != 0)
      fail(fmt::format("{}: tensor '{}' is {} with {} values, not whole blocks", t.file, t.name, info.name, t.n_elements()));
    std::vector<float> out(t.n_elements());
    kernels::dequantize_row(t.type, t.data, out.data(), out.size());
    return out;
  }

  // rows x cols from float rows produced one at a time by fill(r, row), stored as the target type
  // (the source's when not quantizing, or when rows are not whole blocks of the target).
  model::Matrix matrix(const std::string& name, size_t rows, size_t cols, kernels::DType source_type,
                       const std::function<void(size_t, float*)>& fill) {
    const kernels::DType type = type_for(source_type, cols);
    const size_t row_bytes = kernels::row_bytes(type, cols);
    uint8_t* data = m_.new_buffer(row_bytes * rows);
    std::vector<float> row(cols);
    for (size_t r = 0; r < rows; ++r) {
      fill(r, row.data());
      kernels::quantize_row(type, row.data(), data + r * row_bytes, cols);
    }
    return finish(name, rows, cols, type, data);
  }

  // A linear layer's weight: `rows` rows of `cols` values, copied as stored unless quantizing.
  model::Matrix linear(const std::string& name, size_t rows, size_t cols) {
    const Tensor& t = find(name);
    if (t.n_elements() != uint64_t{rows} * cols || t.dims.empty() || t.dims[0] != cols)
      fail(fmt::format("{}: tensor '{}' has shape [{}], expected {} rows of {}", t.file, t.name,
                       fmt::join(t.dims, ", "), rows, cols));
    if (cols % kernels::dtype_info(t.type).block_size != 0)
      fail(fmt::format("{}: tensor '{}': rows of {} are not whole blocks", t.file, t.name, cols));
    const size_t row_bytes = kernels::row_bytes(t.type, cols);
    if (type_for(t.type, cols) == t.type) {
      uint8_t* data = m_.new_buffer(row_bytes * rows);
      std::memcpy(data, t.data, row_bytes * rows);
      return finish(name, rows, cols, t.type, data);
    }
    return matrix(name, rows, cols, t.type, [&](size_t r, float* row) {
      kernels::dequantize_row(t.type, t.data + r * row_bytes, row, cols);
    });
  }

 private:
  kernels::DType type_for(kernels::DType source, size_t cols) const {
    if (target_ && cols % kernels::dtype_info(*target_).block_size == 0) return *target_;
    if (cols % kernels::dtype_info(source).block_size == 0) return source;
    return kernels::DType::f32;
  }

  model::Matrix finish(const std::string& name, size_t rows, size_t cols, kernels::DType type, uint8_t* data) {
    model::Matrix mat{type, rows, cols, data, name};
    if (tiles_ && type == kernels::DType::bf16 && kernels::tiles_fit(rows, cols)) {
      kernels::pack_weights(type, kernels::Layout::tiles_bf16, data, rows, cols);
      mat.layout = kernels::Layout::tiles_bf16;
    } else if (repack_) {
      const kernels::Layout layout = kernels::preferred_layout(type, rows);
      if (layout != kernels::Layout::rows) {
        kernels::pack_weights(type, layout, data, rows, cols);
        mat.layout = layout;
      }
    }
    return mat;
  }

  VisionModel& m_;
  const Index& index_;
  std::optional<kernels::DType> target_;
  bool repack_ = true;
  bool tiles_ = false;
};

std::optional<kernels::DType> float_type_of(const std::string& dtype) {
  if (dtype == "F32") return kernels::DType::f32;
  if (dtype == "F16") return kernels::DType::f16;
  if (dtype == "BF16") return kernels::DType::bf16;
  return std::nullopt;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(path.string() + ": not a valid JSON object");
  return j;
}

uint32_t positive(const nlohmann::json& j, const char* key, const std::string& origin,
                  std::optional<uint32_t> fallback = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (fallback) return *fallback;
    fail(fmt::format("{}: vision_config has no '{}'", origin, key));
  }
  if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 || it->get<uint64_t>() > 1'000'000)
    fail(fmt::format("{}: vision_config '{}' must be a positive integer", origin, key));
  return it->get<uint32_t>();
}

uint32_t gguf_positive(const gguf::File& f, const std::string& key, std::optional<uint32_t> fallback = std::nullopt) {
  auto v = f.get_int(key);
  if (!v) {
    if (fallback) return *fallback;
    fail(fmt::format("{}: missing '{}' — not a complete mmproj file", f.path.string(), key));
  }
  if (*v <= 0 || *v > 1'000'000) fail(fmt::format("{}: '{}' = {} is not a valid size", f.path.string(), key, *v));
  return static_cast<uint32_t>(*v);
}

// Checks the config's sizes agree with each other; the matrix shapes are checked as they load.
void check_config(const VisionConfig& c, const std::string& origin) {
  if (c.n_heads == 0 || c.d_model % c.n_heads != 0)
    fail(fmt::format("{}: vision width {} is not a multiple of {} heads", origin, c.d_model, c.n_heads));
  if (c.head_dim % 4 != 0 || c.head_dim > kernels::kAttentionMaxHeadDim)
    fail(fmt::format("{}: vision head size {} must be a multiple of 4 and at most {}", origin, c.head_dim,
                     kernels::kAttentionMaxHeadDim));
  if (c.channels != 3) fail(fmt::format("{}: the vision tower reads {} channels; only RGB (3) is supported", origin, c.channels));
  if (c.merge == 0 || c.merge > 8 || c.temporal_patch == 0 || c.temporal_patch > 8 || c.patch_size > 64)
    fail(fmt::format("{}: unsupported patch geometry (patch {}, temporal {}, merge {})", origin, c.patch_size,
                     c.temporal_patch, c.merge));
  if (!(c.rms_eps > 0) || !(c.layer_norm_eps > 0)) fail(origin + ": vision norm epsilon must be > 0");
}

// The tensors every form shares, by role; `name` maps a role to the file's tensor name.
void build_common(Builder& b, VisionModel& m, const std::function<std::string(const std::string&)>& name) {
  VisionConfig& c = m.config;
  const Tensor& pos = b.find(name("pos_embed"));
  const uint64_t n_pos = pos.n_elements() / c.d_model;
  c.pos_grid = static_cast<uint32_t>(std::lround(std::sqrt(static_cast<double>(n_pos))));
  if (n_pos == 0 || uint64_t{c.pos_grid} * c.pos_grid != n_pos)
    fail(fmt::format("{}: position embeddings of {} rows are not a square grid", pos.file, n_pos));
  m.pos_embed = b.vector(name("pos_embed"), n_pos * c.d_model);
  m.patch_bias = b.vector(name("patch_bias"), c.d_model);
  m.post_conv_norm = b.vector(name("post_conv_norm"), c.d_model);
  const Tensor& gate0 = b.find(name("blk.0.gate"));
  c.ffn_dim = static_cast<uint32_t>(gate0.n_elements() / c.d_model);
  const Tensor& merger_gate = b.find(name("merger_gate"));
  c.merger_ffn_dim = static_cast<uint32_t>(merger_gate.n_elements() / c.out_dim);
  const size_t d = c.d_model;
  for (uint32_t i = 0; i < c.depth; ++i) {
    const std::string p = fmt::format("blk.{}.", i);
    VisionBlock blk;
    blk.norm1 = b.vector(name(p + "norm1"), d);
    blk.norm2 = b.vector(name(p + "norm2"), d);
    blk.qkv = b.linear(name(p + "qkv"), 3 * d, d);
    if (b.has(name(p + "qkv_bias"))) blk.qkv_bias = b.vector(name(p + "qkv_bias"), 3 * d);
    blk.proj = b.linear(name(p + "proj"), d, d);
    blk.gate = b.linear(name(p + "gate"), c.ffn_dim, d);
    blk.up = b.linear(name(p + "up"), c.ffn_dim, d);
    blk.down = b.linear(name(p + "down"), d, c.ffn_dim);
    m.blocks.push_back(std::move(blk));
  }
  m.post_norm = b.vector(name("post_norm"), d);
  // downsample: a Conv2d [out][d][i][j] over a merge window; stored with columns (i, j, c), the
  // order of the window's patch rows in the encoder's buffer
  const Tensor& ds = b.find(name("downsample"));
  const size_t window = size_t{c.merge} * c.merge;
  b.expect_elements(ds, uint64_t{c.out_dim} * d * window);
  const std::vector<float> ds_values = b.values(ds);
  m.downsample = b.matrix(ds.name, c.out_dim, window * d, ds.type, [&](size_t r, float* row) {
    const float* src = ds_values.data() + r * d * window;  // [c][i][j]
    for (size_t ch = 0; ch < d; ++ch)
      for (size_t k = 0; k < window; ++k) row[k * d + ch] = src[ch * window + k];
  });
  m.downsample_bias = b.vector(name("downsample_bias"), c.out_dim);
  m.merger_proj = b.linear(name("merger_proj"), c.out_dim, c.out_dim);
  m.merger_norm = b.vector(name("merger_norm"), c.out_dim);
  m.merger_norm_bias = b.vector(name("merger_norm_bias"), c.out_dim);
  m.merger_gate = b.linear(name("merger_gate"), c.merger_ffn_dim, c.out_dim);
  m.merger_up = b.linear(name("merger_up"), c.merger_ffn_dim, c.out_dim);
  m.merger_down = b.linear(name("merger_down"), c.out_dim, c.merger_ffn_dim);
  const model::Matrix& qkv = m.blocks.front().qkv;  // the blocks' products, for reports
  m.weight_type = std::string(kernels::dtype_info(qkv.type).name) + (qkv.layout == kernels::Layout::tiles_bf16 ? " on AMX tiles" : "");
}

// Role -> name in a transformers checkpoint.
std::string hf_name(const std::string& role) {
  static const std::map<std::string, std::string> global = {
      {"patch_embed", "patch_embed.proj.weight"},        {"patch_bias", "patch_embed.proj.bias"},
      {"post_conv_norm", "post_conv_layernorm.weight"},  {"pos_embed", "embeddings.position_embedding.weight"},
      {"post_norm", "post_layernorm.weight"},            {"downsample", "downsample.weight"},
      {"downsample_bias", "downsample.bias"},            {"merger_proj", "merger.proj.weight"},
      {"merger_norm", "merger.post_projection_norm.weight"},
      {"merger_norm_bias", "merger.post_projection_norm.bias"},
      {"merger_gate", "merger.gate_proj.weight"},        {"merger_up", "merger.up_proj.weight"},
      {"merger_down", "merger.down_proj.weight"},
  };
  static const std::map<std::string, std::string> block = {
      {"norm1", "norm1.weight"}, {"norm2", "norm2.weight"}, {"qkv", "attn.qkv.weight"},
      {"qkv_bias", "attn.qkv.bias"}, {"proj", "attn.proj.weight"}, {"gate", "mlp.gate_proj.weight"},
      {"up", "mlp.up_proj.weight"}, {"down", "mlp.down_proj.weight"},
  };
  if (auto it = global.find(role); it != global.end()) return "model.visual." + it->second;
  const size_t dot = role.find('.', 4);  // "blk.N.part"
  return "model.visual.blocks." + role.substr(4, dot - 4) + "." + block.at(role.substr(dot + 1));
}

// Role -> name in llama.cpp's mmproj (clip) GGUF.
std::string mmproj_name(const std::string& role) {
  static const std::map<std::string, std::string> global = {
      {"patch_bias", "v.patch_embd.bias"},     {"post_conv_norm", "v.norm_embd.weight"},
      {"pos_embed", "v.position_embd.weight"}, {"post_norm", "v.post_ln.weight"},
      {"downsample", "mm.patch_merger.weight"}, {"downsample_bias", "mm.patch_merger.bias"},
      {"merger_proj", "mm.model.fc.weight"},   {"merger_norm", "mm.post_norm.weight"},
      {"merger_norm_bias", "mm.post_norm.bias"}, {"merger_gate", "mm.gate.weight"},
      {"merger_up", "mm.up.weight"},           {"merger_down", "mm.down.weight"},
  };
  static const std::map<std::string, std::string> block = {
      {"norm1", "ln1.weight"}, {"norm2", "ln2.weight"}, {"qkv", "attn_qkv.weight"}, {"qkv_bias", "attn_qkv.bias"},
      {"proj", "attn_out.weight"}, {"gate", "ffn_gate.weight"}, {"up", "ffn_up.weight"}, {"down", "ffn_down.weight"},
  };
  if (auto it = global.find(role); it != global.end()) return it->second;
  const size_t dot = role.find('.', 4);
  return "v.blk." + role.substr(4, dot - 4) + "." + block.at(role.substr(dot + 1));
}

}  // namespace

bool VisionModel::folder_has_vision(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_regular_file(folder / "config.json", ec)) return false;
  std::ifstream in(folder / "config.json");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_object() && j.contains("vision_config") && j["vision_config"].is_object();
}

std::unique_ptr<VisionModel> VisionModel::load_hf(const fs::path& folder, const model::LoadOptions& options) {
  const fs::path config_path = folder / "config.json";
  const nlohmann::json root = read_json(config_path);
  if (!root.contains("vision_config") || !root["vision_config"].is_object())
    fail(config_path.string() + ": no vision_config — this model reads text only");
  const nlohmann::json& v = root["vision_config"];
  const std::string origin = config_path.string();
  std::unique_ptr<VisionModel> m(new VisionModel());
  m->path = folder;
  VisionConfig& c = m->config;
  c.depth = positive(v, "depth", origin);
  c.d_model = positive(v, "hidden_size", origin);
  c.n_heads = positive(v, "num_heads", origin);
  c.head_dim = c.d_model / c.n_heads;
  c.out_dim = positive(v, "out_hidden_size", origin);
  c.patch_size = positive(v, "patch_size", origin, 14);
  c.temporal_patch = positive(v, "temporal_patch_size", origin, 2);
  c.merge = positive(v, "spatial_merge_size", origin, 2);
  c.channels = positive(v, "in_channels", origin, 3);
  c.rms_eps = v.value("rms_norm_eps", 1e-5f);
  check_config(c, origin);

  Mappings maps;
  Index index;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() != ".safetensors") continue;
    const safetensors::File f = safetensors::read_file_header(entry.path());
    const uint8_t* base = maps.map(entry.path(), f.file_size);
    for (const safetensors::TensorInfo& t : f.tensors) {
      if (t.name.rfind("model.visual.", 0) != 0) continue;
      auto type = float_type_of(t.dtype);
      if (!type) fail(fmt::format("{}: tensor '{}' is {}; the vision tower loads F32, F16 or BF16 checkpoints",
                                  entry.path().string(), t.name, t.dtype));
      index[t.name] = {t.name, entry.path().string(), *type, std::vector<uint64_t>(t.shape.rbegin(), t.shape.rend()),
                       base + f.data_offset + t.begin};
    }
  }
  if (index.empty()) fail(fmt::format("{}: no model.visual.* tensors in the safetensors files", folder.string()));
  Builder b(*m, index, options);
  // patch embedding: a Conv3d [d][c][t][y][x], i.e. d rows in the processor's column order
  const Tensor& pe = b.find(hf_name("patch_embed"));
  b.expect_elements(pe, uint64_t{c.d_model} * c.patch_dim());
  const size_t pe_row = kernels::row_bytes(pe.type, c.patch_dim());
  m->patch_embed = b.matrix(pe.name, c.d_model, c.patch_dim(), pe.type, [&](size_t r, float* row) {
    kernels::dequantize_row(pe.type, pe.data + r * pe_row, row, c.patch_dim());
  });
  build_common(b, *m, hf_name);
  return m;
}

std::unique_ptr<VisionModel> VisionModel::random(const VisionConfig& config, kernels::DType stored,
                                                const model::LoadOptions& options, uint64_t seed) {
  std::unique_ptr<VisionModel> m(new VisionModel());
  m->path = "random";
  VisionConfig& c = m->config;
  c = config;
  if (c.head_dim == 0 && c.n_heads) c.head_dim = c.d_model / c.n_heads;
  if (c.pos_grid == 0) c.pos_grid = 24;
  check_config(c, "a random vision tower");
  if (stored != kernels::DType::f32 && stored != kernels::DType::f16 && stored != kernels::DType::bf16)
    fail("a random vision tower is stored as f32, f16 or bf16");
  const size_t d = c.d_model, window = size_t{c.merge} * c.merge;
  // every tensor reads the same random values (small, like trained weights), as many as the largest needs
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> shapes = [&] {
    std::vector<std::pair<std::string, std::vector<uint64_t>>> v = {
        {"patch_embed", {c.patch_dim(), d}},          {"patch_bias", {d}},
        {"post_conv_norm", {d}},                      {"pos_embed", {d, uint64_t{c.pos_grid} * c.pos_grid}},
        {"post_norm", {d}},                           {"downsample", {window, d, c.out_dim}},
        {"downsample_bias", {c.out_dim}},             {"merger_proj", {c.out_dim, c.out_dim}},
        {"merger_norm", {c.out_dim}},                 {"merger_norm_bias", {c.out_dim}},
        {"merger_gate", {c.out_dim, c.merger_ffn_dim}}, {"merger_up", {c.out_dim, c.merger_ffn_dim}},
        {"merger_down", {c.merger_ffn_dim, c.out_dim}}};
    for (uint32_t i = 0; i < c.depth; ++i) {
      const std::string b = fmt::format("blk.{}.", i);
      v.push_back({b + "norm1", {d}});
      v.push_back({b + "norm2", {d}});
      v.push_back({b + "qkv", {d, 3 * d}});
      v.push_back({b + "qkv_bias", {3 * d}});
      v.push_back({b + "proj", {d, d}});
      v.push_back({b + "gate", {d, c.ffn_dim}});
      v.push_back({b + "up", {d, c.ffn_dim}});
      v.push_back({b + "down", {c.ffn_dim, d}});
    }
    return v;
  }();
  uint64_t largest = 0;
  for (const auto& [role, dims] : shapes) {
    uint64_t n = 1;
    for (uint64_t x : dims) n *= x;
    largest = std::max(largest, n);
  }
  const size_t elem = kernels::row_bytes(stored, 1);
  std::vector<uint8_t> values(largest * elem);
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  std::vector<float> chunk(1024);
  for (uint64_t at = 0; at < largest; at += chunk.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), largest - at));
    for (size_t i = 0; i < n; ++i) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      chunk[i] = (static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f) * 0.04f;
    }
    kernels::quantize_row(stored, chunk.data(), values.data() + at * elem, n);
  }
  Index index;
  for (const auto& [role, dims] : shapes) index[hf_name(role)] = {hf_name(role), "random", stored, dims, values.data()};
  Builder b(*m, index, options);
  const Tensor& pe = b.find(hf_name("patch_embed"));
  const size_t pe_row = kernels::row_bytes(pe.type, c.patch_dim());
  m->patch_embed = b.matrix(pe.name, c.d_model, c.patch_dim(), pe.type, [&](size_t r, float* row) {
    kernels::dequantize_row(pe.type, pe.data + r * pe_row, row, c.patch_dim());
  });
  build_common(b, *m, hf_name);
  return m;
}

std::unique_ptr<VisionModel> VisionModel::load_mmproj(const fs::path& path, const model::LoadOptions& options) {
  const gguf::File f = gguf::read_file_header(path);
  const std::string origin = path.string();
  const std::string projector = f.get_string("clip.projector_type").value_or("");
  if (projector != "glm4v")
    fail(fmt::format("{}: clip.projector_type is '{}'; this build reads GLM-4.1V projectors ('glm4v')", origin,
                     projector.empty() ? "missing" : projector));
  std::unique_ptr<VisionModel> m(new VisionModel());
  m->path = path;
  VisionConfig& c = m->config;
  c.depth = gguf_positive(f, "clip.vision.block_count");
  c.d_model = gguf_positive(f, "clip.vision.embedding_length");
  c.n_heads = gguf_positive(f, "clip.vision.attention.head_count");
  c.head_dim = c.d_model / c.n_heads;
  c.out_dim = gguf_positive(f, "clip.vision.projection_dim");
  c.patch_size = gguf_positive(f, "clip.vision.patch_size", 14);
  c.merge = gguf_positive(f, "clip.vision.spatial_merge_size", 2);
  c.temporal_patch = 2;  // llama.cpp splits the Conv3d into one tensor per frame: v.patch_embd.weight(.1)
  if (const gguf::Value* eps = f.find("clip.vision.attention.layer_norm_epsilon"); eps && eps->as_float())
    c.rms_eps = static_cast<float>(*eps->as_float());
  check_config(c, origin);

  Mappings maps;
  const uint8_t* base = maps.map(path, f.file_size);
  Index index;
  for (const gguf::TensorInfo& t : f.tensors) {
    const kernels::DTypeInfo* info = kernels::dtype_info(t.type);
    if (!info) {
      const gguf::TypeInfo* g = gguf::type_info(t.type);
      fail(fmt::format("{}: tensor '{}' has type {}, which the engine does not support", origin, t.name,
                       g ? g->name : "unknown"));
    }
    index[t.name] = {t.name, origin, info->type, t.dims, base + f.data_offset + t.offset};
  }
  Builder b(*m, index, options);
  // patch embedding: one [d][c][y][x] tensor per frame, interleaved into the (c, t, y, x) columns
  const size_t pp = size_t{c.patch_size} * c.patch_size, frame_cols = c.channels * pp;
  std::vector<std::vector<float>> frames;
  for (uint32_t t = 0; t < c.temporal_patch; ++t) {
    const Tensor& w = b.find(t == 0 ? "v.patch_embd.weight" : fmt::format("v.patch_embd.weight.{}", t));
    b.expect_elements(w, uint64_t{c.d_model} * frame_cols);
    frames.push_back(b.values(w));
  }
  m->patch_embed = b.matrix("v.patch_embd.weight", c.d_model, c.patch_dim(), b.find("v.patch_embd.weight").type,
                            [&](size_t r, float* row) {
                              for (uint32_t ch = 0; ch < c.channels; ++ch)
                                for (uint32_t t = 0; t < c.temporal_patch; ++t)
                                  std::memcpy(row + (ch * c.temporal_patch + t) * pp,
                                              frames[t].data() + r * frame_cols + ch * pp, pp * sizeof(float));
                            });
  build_common(b, *m, mmproj_name);
  return m;
}

}  // namespace autoglm::vision
