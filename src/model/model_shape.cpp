#include "autoglm/model_shape.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autoglm/gguf.h"
#include "autoglm/safetensors.h"
#include "tensor_names.h"

namespace autoglm::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::array<ArchTraits, 3> kArchs{{
    {"glm4", true, true},
    {"llama", false, false},
    {"qwen2", true, false},
}};

[[noreturn]] void fail(const std::string& message) { throw Error(kExitCheckFailed, message); }

// A dimension must be a positive 32-bit value; a zero or absurd one means a broken header.
uint32_t dimension(std::optional<int64_t> v, const std::string& key, const std::string& origin) {
  if (!v) fail(fmt::format("{}: missing '{}' — is this a complete model file?", origin, key));
  if (*v <= 0 || *v > 0x7fffffff) fail(fmt::format("{}: '{}' = {} is not a valid size", origin, key, *v));
  return static_cast<uint32_t>(*v);
}

// llama.cpp's general.file_type values (enum llama_ftype) for the types users meet.
std::string file_type_name(int64_t ftype) {
  switch (ftype) {
    case 0: return "F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K_S";
    case 12: return "Q3_K_M";
    case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";
    case 15: return "Q4_K_M";
    case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";
    case 18: return "Q6_K";
    case 25: return "IQ4_NL";
    case 30: return "IQ4_XS";
    case 32: return "BF16";
    default: return fmt::format("file_type {}", ftype);
  }
}

void check_consistent(const ModelShape& s, const std::string& origin) {
  if (!find_arch(s.architecture))
    fail(fmt::format("{}: unsupported architecture '{}' (supported: glm4, llama, qwen2)", origin, s.architecture));
  if (s.n_heads % s.n_kv_heads != 0)
    fail(fmt::format("{}: {} attention heads is not a multiple of {} KV heads", origin, s.n_heads, s.n_kv_heads));
}

ModelShape shape_from_gguf(const fs::path& path) {
  const gguf::File file = gguf::read_file_header(path);
  const std::string origin = path.string();
  ModelShape s;
  s.source = path;
  s.format = "gguf";
  auto arch = file.get_string("general.architecture");
  if (!arch) fail(origin + ": missing 'general.architecture' — not a model GGUF (a vocab-only file?)");
  s.architecture = *arch;
  s.name = file.get_string("general.name").value_or(path.stem().string());
  const std::string a = s.architecture + ".";
  s.n_layers = dimension(file.get_int(a + "block_count"), a + "block_count", origin);
  s.d_model = dimension(file.get_int(a + "embedding_length"), a + "embedding_length", origin);
  s.n_heads = dimension(file.get_int(a + "attention.head_count"), a + "attention.head_count", origin);
  s.n_kv_heads = file.get_int(a + "attention.head_count_kv")
                     ? dimension(file.get_int(a + "attention.head_count_kv"), a + "attention.head_count_kv", origin)
                     : s.n_heads;
  s.head_dim = file.get_int(a + "attention.key_length")
                   ? dimension(file.get_int(a + "attention.key_length"), a + "attention.key_length", origin)
                   : s.d_model / s.n_heads;
  s.ffn_dim = dimension(file.get_int(a + "feed_forward_length"), a + "feed_forward_length", origin);
  s.context_length = dimension(file.get_int(a + "context_length"), a + "context_length", origin);
  if (auto v = file.get_int(a + "vocab_size")) {
    s.vocab_size = dimension(v, a + "vocab_size", origin);
  } else if (const gguf::Value* tokens = file.find("tokenizer.ggml.tokens")) {
    s.vocab_size = dimension(static_cast<int64_t>(tokens->array_size), "tokenizer.ggml.tokens", origin);
  } else if (const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight"); embd && embd->dims.size() == 2) {
    s.vocab_size = dimension(static_cast<int64_t>(embd->dims[1]), "token_embd.weight", origin);
  } else {
    fail(origin + ": cannot tell the vocabulary size (no tokenizer.ggml.tokens, no token_embd.weight)");
  }
  s.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  if (auto ft = file.get_int("general.file_type")) s.stored_type = file_type_name(*ft);
  for (const gguf::TensorInfo& t : file.tensors)
    s.tensors.push_back(
        {t.name, t.n_elements(), t.dims.size() >= 2, t.nbytes, t.dims.size() >= 2 ? t.dims[0] : 0, t.name});
  check_consistent(s, origin);
  return s;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(path.string() + ": not valid JSON — the file is damaged; download it again");
  return j;
}

std::optional<int64_t> json_int(const json& j, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (auto it = j.find(k); it != j.end() && it->is_number_integer()) return it->get<int64_t>();
  return std::nullopt;
}

// Architecture name we use for an HF model_type.
std::string arch_from_model_type(const std::string& model_type) {
  if (model_type == "glm4" || model_type == "chatglm" || model_type == "glm" || model_type == "glm4v_text" ||
      model_type == "glm4v")
    return "glm4";
  return model_type;  // llama, qwen2 map to themselves; anything else fails the support check
}

void add(ModelShape& s, std::string name, uint64_t n, bool matrix, uint64_t cols = 0) {
  s.tensors.push_back({name, n, matrix, 0, cols, name});
}

// The tensor list a model of this shape has, for pricing a bare config.json.
void derive_tensors(ModelShape& s) {
  const ArchTraits& arch = *find_arch(s.architecture);
  const uint64_t d = s.d_model, q = uint64_t{s.n_heads} * s.head_dim, kv = uint64_t{s.n_kv_heads} * s.head_dim;
  add(s, "token_embd.weight", uint64_t{s.vocab_size} * d, true, d);
  for (uint32_t l = 0; l < s.n_layers; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    add(s, p + "attn_norm.weight", d, false);
    add(s, p + "attn_q.weight", d * q, true, d);
    add(s, p + "attn_k.weight", d * kv, true, d);
    add(s, p + "attn_v.weight", d * kv, true, d);
    if (arch.qkv_bias) add(s, p + "attn_qkv.bias", q + 2 * kv, false);
    add(s, p + "attn_output.weight", q * d, true, q);
    add(s, p + "ffn_norm.weight", d, false);
    add(s, p + "ffn_up.weight", 2 * d * s.ffn_dim, true, d);  // gate and up (GLM-4 fuses them)
    add(s, p + "ffn_down.weight", d * s.ffn_dim, true, s.ffn_dim);
    if (arch.post_norms) add(s, p + "post_norms.weight", 2 * d, false);
  }
  add(s, "output_norm.weight", d, false);
  if (!s.tied_embeddings) add(s, "output.weight", uint64_t{s.vocab_size} * d, true, d);
}

// Replaces the derived tensor list with the real one from the safetensors headers.
void read_safetensors_tensors(ModelShape& s, const fs::path& folder) {
  std::vector<fs::path> shards;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().extension() == ".safetensors") shards.push_back(entry.path());
  if (shards.empty()) return;
  std::sort(shards.begin(), shards.end());
  s.tensors.clear();
  s.format = "hf";
  for (const fs::path& shard : shards) {
    const safetensors::File file = safetensors::read_file_header(shard);
    for (const safetensors::TensorInfo& t : file.tensors) {
      const bool matrix = t.shape.size() >= 2;
      s.tensors.push_back({t.name, t.n_elements(), matrix, t.end - t.begin, matrix ? t.shape.back() : 0,
                           gguf_name_of_checkpoint(t.name).value_or(t.name)});
    }
  }
}

}  // namespace

const ArchTraits* find_arch(std::string_view name) {
  for (const ArchTraits& a : kArchs)
    if (name == a.name) return &a;
  return nullptr;
}

uint64_t ModelShape::n_params() const {
  uint64_t n = 0;
  for (const TensorSize& t : tensors) n += t.n_elements;
  return n;
}

uint64_t ModelShape::stored_bytes() const {
  uint64_t n = 0;
  for (const TensorSize& t : tensors) n += t.stored_bytes;
  return n;
}

ModelShape shape_from_hf_config(const json& root, const std::string& origin) {
  if (!root.is_object()) fail(origin + ": config.json is not a JSON object");
  const json& c = root.contains("text_config") && root["text_config"].is_object() ? root["text_config"] : root;
  ModelShape s;
  s.format = "hf-config";
  std::string model_type = c.value("model_type", root.value("model_type", std::string()));
  if (model_type.empty()) fail(origin + ": missing 'model_type'");
  s.architecture = arch_from_model_type(model_type);
  s.n_layers = dimension(json_int(c, {"num_hidden_layers", "num_layers"}), "num_hidden_layers", origin);
  s.d_model = dimension(json_int(c, {"hidden_size"}), "hidden_size", origin);
  s.n_heads = dimension(json_int(c, {"num_attention_heads"}), "num_attention_heads", origin);
  auto kv = json_int(c, {"num_key_value_heads", "multi_query_group_num"});
  s.n_kv_heads = kv ? dimension(kv, "num_key_value_heads", origin) : s.n_heads;
  auto hd = json_int(c, {"head_dim", "kv_channels"});
  s.head_dim = hd ? dimension(hd, "head_dim", origin) : s.d_model / s.n_heads;
  s.ffn_dim = dimension(json_int(c, {"intermediate_size", "ffn_hidden_size"}), "intermediate_size", origin);
  s.vocab_size = dimension(json_int(c, {"vocab_size", "padded_vocab_size"}), "vocab_size", origin);
  s.context_length = dimension(json_int(c, {"max_position_embeddings", "seq_length"}), "max_position_embeddings",
                               origin);
  s.tied_embeddings = c.value("tie_word_embeddings", root.value("tie_word_embeddings", false));
  const std::string dtype = c.value("torch_dtype", root.value("torch_dtype", std::string("bfloat16")));
  s.stored_type = dtype == "bfloat16" ? "BF16" : dtype == "float16" ? "F16" : dtype == "float32" ? "F32" : dtype;
  check_consistent(s, origin);
  derive_tensors(s);
  return s;
}

namespace {

// vision_config of a GLM-4.1V config.json, with the processor's max pixels from its folder.
std::optional<VisionShape> hf_vision(const json& root, const fs::path& folder, const std::string& origin) {
  if (!root.contains("vision_config") || !root["vision_config"].is_object()) return std::nullopt;
  const json& v = root["vision_config"];
  VisionShape vs;
  vs.depth = dimension(json_int(v, {"depth", "num_hidden_layers"}), "vision_config.depth", origin);
  vs.d_model = dimension(json_int(v, {"hidden_size"}), "vision_config.hidden_size", origin);
  vs.out_dim = dimension(json_int(v, {"out_hidden_size"}), "vision_config.out_hidden_size", origin);
  // transformers' Glm4VisionMlp is out_hidden_size wide; intermediate_size is the merger's
  vs.ffn_dim = vs.out_dim;
  if (auto h = json_int(v, {"num_heads"})) vs.n_heads = dimension(h, "vision_config.num_heads", origin);
  if (auto f = json_int(v, {"intermediate_size"})) vs.merger_ffn_dim = dimension(f, "vision_config.intermediate_size", origin);
  if (auto p = json_int(v, {"patch_size"})) vs.patch_size = dimension(p, "vision_config.patch_size", origin);
  if (auto m = json_int(v, {"spatial_merge_size"})) vs.merge = dimension(m, "vision_config.spatial_merge_size", origin);
  const fs::path pp = folder / "preprocessor_config.json";
  std::error_code ec;
  if (!folder.empty() && fs::exists(pp, ec)) {
    const json p = read_json(pp);
    const json size = p.value("size", json::object());
    if (auto m = json_int(p, {"max_pixels"})) vs.max_pixels = static_cast<uint64_t>(std::max<int64_t>(*m, 0));
    else if (auto l = json_int(size, {"longest_edge"})) vs.max_pixels = static_cast<uint64_t>(std::max<int64_t>(*l, 0));
    if (auto m = json_int(p, {"min_pixels"})) vs.min_pixels = static_cast<uint64_t>(std::max<int64_t>(*m, 0));
    else if (auto l = json_int(size, {"shortest_edge"})) vs.min_pixels = static_cast<uint64_t>(std::max<int64_t>(*l, 0));
  }
  return vs;
}

uint64_t vision_params(const ModelShape& s) {
  uint64_t n = 0;
  for (const TensorSize& t : s.tensors)
    if (t.name.starts_with("model.visual.") || t.name.starts_with("visual.") || t.name.starts_with("mmproj.")) n += t.n_elements;
  return n;
}

// Bytes per value of the tower's first block qkv matrix as stored; 0 when it is not there.
double vision_bytes_per_weight(const ModelShape& s) {
  for (const TensorSize& t : s.tensors)
    if ((t.name == "model.visual.blocks.0.attn.qkv.weight" || t.name == "mmproj.v.blk.0.attn_qkv.weight") &&
        t.n_elements && t.stored_bytes)
      return static_cast<double>(t.stored_bytes) / static_cast<double>(t.n_elements);
  return 0;
}

}  // namespace

void add_mmproj(ModelShape& s, const fs::path& mmproj) {
  const gguf::File file = gguf::read_file_header(mmproj);
  const std::string origin = mmproj.string();
  if (!file.get_string("clip.projector_type"))
    fail(origin + ": not an mmproj GGUF (no clip.projector_type); give llama.cpp's vision projector file");
  VisionShape vs;
  vs.depth = dimension(file.get_int("clip.vision.block_count"), "clip.vision.block_count", origin);
  vs.d_model = dimension(file.get_int("clip.vision.embedding_length"), "clip.vision.embedding_length", origin);
  // the blocks' MLP width from their tensors: llama.cpp's converter writes the merger's width as
  // clip.vision.feed_forward_length
  const gguf::TensorInfo* gate = file.find_tensor("v.blk.0.ffn_gate.weight");
  vs.ffn_dim = gate && gate->dims.size() == 2
                   ? dimension(static_cast<int64_t>(gate->dims[1]), "v.blk.0.ffn_gate.weight", origin)
                   : dimension(file.get_int("clip.vision.feed_forward_length"), "clip.vision.feed_forward_length", origin);
  vs.out_dim = dimension(file.get_int("clip.vision.projection_dim"), "clip.vision.projection_dim", origin);
  if (auto p = file.get_int("clip.vision.patch_size")) vs.patch_size = dimension(p, "clip.vision.patch_size", origin);
  vs.max_pixels = 9633792;  // the mmproj carries none: GLM-4.1V-9B's processor's, which the server uses
  vs.min_pixels = 12544;
  if (auto h = file.get_int("clip.vision.attention.head_count")) vs.n_heads = dimension(h, "clip.vision.attention.head_count", origin);
  // llama.cpp's converter writes the merger's width as clip.vision.feed_forward_length
  if (const gguf::TensorInfo* mg = file.find_tensor("mm.gate.weight"); mg && mg->dims.size() == 2)
    vs.merger_ffn_dim = dimension(static_cast<int64_t>(mg->dims[1]), "mm.gate.weight", origin);
  for (const gguf::TensorInfo& t : file.tensors)
    s.tensors.push_back({"mmproj." + t.name, t.n_elements(), t.dims.size() >= 2, t.nbytes,
                         t.dims.size() >= 2 ? t.dims[0] : 0, "mmproj." + t.name});
  s.vision = vs;
  s.vision->params = vision_params(s);
  s.vision->bytes_per_weight = vision_bytes_per_weight(s);
}

ModelShape read_model_shape(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(fmt::format("{}: no such file or folder", path.string()));
  if (fs::is_directory(path, ec)) {
    const fs::path config = path / "config.json";
    if (!fs::exists(config, ec))
      fail(fmt::format("{}: no config.json — a model folder needs the Hugging Face config.json "
                       "(or pass the .gguf file itself)", path.string()));
    const json root = read_json(config);
    ModelShape s = shape_from_hf_config(root, config.string());
    s.source = path;
    s.name = path.filename().string();
    read_safetensors_tensors(s, path);
    s.vision = hf_vision(root, path, config.string());
    if (s.vision) {
      s.vision->params = vision_params(s);
      s.vision->bytes_per_weight = vision_bytes_per_weight(s);
    }
    return s;
  }
  if (path.filename() == "config.json") {
    ModelShape s = shape_from_hf_config(read_json(path), path.string());
    s.source = path;
    s.name = path.parent_path().filename().string();
    return s;
  }
  return shape_from_gguf(path);
}

}  // namespace autoglm::model
