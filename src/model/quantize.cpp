// Model conversion: GGUF or Hugging Face folder in, llama.cpp-compatible GGUF out, streamed tensor by
// tensor through gguf::Writer (each tensor is produced in row chunks while the file is written).
#include "autoglm/quantize.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "autoglm/gguf.h"
#include "autoglm/gguf_writer.h"
#include "autoglm/model_shape.h"
#include "autoglm/quant_recipe.h"
#include "tensor_names.h"
#include "autoglm/safetensors.h"

namespace autoglm::model {
namespace fs = std::filesystem;
using kernels::DType;
using nlohmann::json;

namespace {

constexpr size_t kChunkElements = size_t{1} << 20;  // rows converted per step: ~4 MB of f32 at most
constexpr uint32_t kQuantizationVersion = 2;        // ggml's GGML_QNT_VERSION

[[noreturn]] void fail(const std::string& message) { throw Error(kExitCheckFailed, message); }
[[noreturn]] void usage(const std::string& message) { throw Error(kExitUsage, message); }

// A read-only mapping of a whole file, unmapped when it dies.
class Mapping {
 public:
  explicit Mapping(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
    size_ = static_cast<size_t>(fs::file_size(path));
    void* map = size_ ? ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
    ::close(fd);
    if (map == MAP_FAILED) fail(fmt::format("{}: cannot map: {}", path.string(), std::strerror(errno)));
    data_ = static_cast<const uint8_t*>(map);
  }
  ~Mapping() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const uint8_t* data() const { return data_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One output tensor: where its source bytes are and what it becomes.
struct Job {
  std::string name;            // GGUF name
  std::string origin;          // source file, for messages
  std::vector<uint64_t> dims;  // ne0 first
  uint32_t src_type = 0;       // ggml type id of the source
  const uint8_t* data = nullptr;
  DType dst = DType::f32;
  size_t permute_head_dim = 0; // > 0: Llama q/k rows permuted for adjacent-pair RoPE
  size_t cols() const { return dims[0]; }
  size_t rows() const {
    size_t r = 1;
    for (size_t i = 1; i < dims.size(); ++i) r *= dims[i];
    return r;
  }
};

bool is_float(uint32_t type) {
  return type == static_cast<uint32_t>(DType::f32) || type == static_cast<uint32_t>(DType::f16) ||
         type == static_cast<uint32_t>(DType::bf16);
}

std::string type_name(uint32_t type) {
  const gguf::TypeInfo* info = gguf::type_info(type);
  return info ? info->name : fmt::format("type {}", type);
}

// The type a tensor is written as: matrices by the recipe, vectors as F32 (kept if not float).
DType target_type(const QuantizeOptions& o, const std::string& name, const std::vector<uint64_t>& dims, uint32_t src,
                  const RecipeModel& model) {
  const size_t n_dims = dims.size();
  const uint64_t cols = n_dims ? dims[0] : 0;
  if (n_dims >= 2) return recipe_type(o.type, name, model, cols);
  return is_float(src) ? DType::f32 : static_cast<DType>(src);
}

// Checks a job can be done, before anything is written; counts requantized tensors.
void check_job(const Job& j, const QuantizeOptions& o, size_t& requantized) {
  const uint32_t dst = static_cast<uint32_t>(j.dst);
  if (dst == j.src_type && j.permute_head_dim == 0) return;  // copied as stored
  const kernels::DTypeInfo& target = kernels::dtype_info(j.dst);
  if (j.cols() % target.block_size != 0)
    fail(fmt::format("{}: tensor '{}' has rows of {} elements, not a multiple of {}'s block size {}", j.origin, j.name,
                     j.cols(), target.name, target.block_size));
  if (!kernels::dtype_info(j.src_type))
    fail(fmt::format("{}: tensor '{}' is {}, which cannot be converted (supported: F32, F16, BF16, Q8_0, Q4_0, "
                     "Q5_0, Q4_K, Q6_K)", j.origin, j.name, type_name(j.src_type)));
  if (is_float(j.src_type) || dst == j.src_type) return;
  if (!o.allow_requantize)
    usage(fmt::format("{}: tensor '{}' is already quantized ({}); converting it to {} dequantizes and quantizes "
                      "again, which drops quality. Start from an F32/F16/BF16 model, or pass --allow-requantize",
                      j.origin, j.name, type_name(j.src_type), target.name));
  ++requantized;
}

// Streams one tensor to `sink` in row chunks, converted across the pool.
void produce(const Job& j, kernels::ThreadPool& pool, const gguf::ByteSink& sink) {
  const size_t cols = j.cols(), rows = j.rows();
  const auto dst = static_cast<uint32_t>(j.dst);
  const size_t in_row = gguf::tensor_nbytes(std::vector<uint64_t>{cols}, j.src_type);
  if (dst == j.src_type && j.permute_head_dim == 0) {
    sink(std::span<const uint8_t>(j.data, in_row * rows));
    return;
  }
  const size_t out_row = kernels::row_bytes(j.dst, cols);
  const size_t chunk_rows = std::clamp<size_t>(kChunkElements / cols, 1, rows);
  std::vector<uint8_t> out(chunk_rows * out_row);
  for (size_t first = 0; first < rows; first += chunk_rows) {
    const size_t n = std::min(chunk_rows, rows - first);
    pool.run(n, 1, [&](size_t begin, size_t end) {
      std::vector<float> row(cols);
      for (size_t r = begin; r < end; ++r) {
        const size_t src_row = j.permute_head_dim ? llama_permuted_source_row(first + r, j.permute_head_dim) : first + r;
        const uint8_t* src = j.data + src_row * in_row;
        if (dst == j.src_type) {
          std::memcpy(out.data() + r * out_row, src, out_row);
          continue;
        }
        kernels::dequantize_row(static_cast<DType>(j.src_type), src, row.data(), cols);
        kernels::quantize_row(j.dst, row.data(), out.data() + r * out_row, cols);
      }
    });
    sink(std::span<const uint8_t>(out.data(), n * out_row));
  }
}

// ---- GGUF input ----

// Re-sets one metadata value on the writer with its original type.
void copy_value(gguf::Writer& w, const std::string& key, const gguf::Value& v) {
  using VT = gguf::ValueType;
  switch (v.type) {
    case VT::uint8: return w.set_u8(key, static_cast<uint8_t>(v.i));
    case VT::int8: return w.set_i8(key, static_cast<int8_t>(v.i));
    case VT::uint16: return w.set_u16(key, static_cast<uint16_t>(v.i));
    case VT::int16: return w.set_i16(key, static_cast<int16_t>(v.i));
    case VT::uint32: return w.set_u32(key, static_cast<uint32_t>(v.i));
    case VT::int32: return w.set_i32(key, static_cast<int32_t>(v.i));
    case VT::uint64: return w.set_u64(key, static_cast<uint64_t>(v.i));
    case VT::int64: return w.set_i64(key, v.i);
    case VT::float32: return w.set_f32(key, static_cast<float>(v.f));
    case VT::float64: return w.set_f64(key, v.f);
    case VT::boolean: return w.set_bool(key, v.b);
    case VT::string: return w.set_string(key, v.str);
    case VT::array: break;
  }
  switch (v.array_type) {
    case VT::string: return w.set_array_strings(key, v.strings);
    case VT::float32: {
      const std::vector<float> f(v.floats.begin(), v.floats.end());
      return w.set_array_f32(key, f);
    }
    case VT::float64: return w.set_array_f64(key, v.floats);
    case VT::array: fail(fmt::format("metadata '{}': arrays of arrays cannot be copied", key));
    default: return w.set_array_ints(key, v.array_type, v.ints);
  }
}

// A head count of the GGUF's metadata; 0 when absent or not a plain number (llama.cpp also allows a
// per-layer array, which the recipe then ignores).
uint32_t head_count(const gguf::File& f, const std::string& key) {
  const auto v = f.get_int(key);
  return v && *v > 0 && *v <= UINT32_MAX ? static_cast<uint32_t>(*v) : 0;
}

std::vector<Job> plan_gguf(const gguf::File& f, const uint8_t* base, const QuantizeOptions& o, gguf::Writer& w) {
  const auto arch = f.get_string("general.architecture");
  if (!arch) fail(f.path.string() + ": missing 'general.architecture' — not a model GGUF");
  if (!find_arch(*arch)) fail(fmt::format("{}: unsupported architecture '{}' (glm4, llama or qwen2)", f.path.string(), *arch));
  // llama.cpp's quantize appends these two anew, after everything it copies.
  for (const auto& [key, value] : f.metadata)
    if (key != "general.file_type" && key != "general.quantization_version") copy_value(w, key, value);
  const auto n_layers = static_cast<uint32_t>(f.get_int(*arch + ".block_count").value_or(0));
  const bool tied = f.find_tensor("output.weight") == nullptr;
  const RecipeModel model = recipe_model(n_layers, tied, head_count(f, *arch + ".attention.head_count"),
                                         head_count(f, *arch + ".attention.head_count_kv"));
  std::vector<Job> jobs;
  for (const gguf::TensorInfo& t : f.tensors) {
    const DType dst = target_type(o, t.name, t.dims, t.type, model);
    jobs.push_back({t.name, f.path.string(), t.dims, t.type, base + f.data_offset + t.offset, dst, 0});
  }
  return jobs;
}

// ---- Hugging Face input ----

json read_json(const fs::path& path) {
  std::ifstream in(path);
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(path.string() + ": not a valid JSON object");
  return j;
}

json read_json_if_present(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec) ? read_json(path) : json::object();
}

// Checkpoint name -> GGUF name; "" for tensors llama.cpp drops.
std::string gguf_name_of(const std::string& hf, const std::string& origin) {
  if (std::optional<std::string> name = gguf_name_of_checkpoint(hf)) return *name;
  fail(fmt::format("{}: cannot map tensor '{}' to a GGUF name — not a supported glm4/llama/qwen2 checkpoint", origin,
                    hf));
}

uint32_t ggml_type_of(const safetensors::TensorInfo& t, const std::string& origin) {
  if (t.dtype == "F32") return static_cast<uint32_t>(DType::f32);
  if (t.dtype == "F16") return static_cast<uint32_t>(DType::f16);
  if (t.dtype == "BF16") return static_cast<uint32_t>(DType::bf16);
  fail(fmt::format("{}: tensor '{}' is {}; only F32, F16 and BF16 checkpoints can be converted", origin, t.name,
                   t.dtype));
}

// The fixtures' (llama.cpp's) order: output, output_norm, token_embd, then each block's tensors by name.
bool gguf_order(const Job& a, const Job& b) {
  auto key = [](const std::string& n) {
    long layer = -1;
    if (n.rfind("blk.", 0) == 0) layer = std::stol(n.substr(4, n.find('.', 4) - 4));
    return std::pair{layer, n};
  };
  return key(a.name) < key(b.name);
}

// An id from config.json, generation_config.json or tokenizer_config.json, in that order; the
// first of a list (eos_token_id may list several).
std::optional<int64_t> token_id(const std::vector<const json*>& sources, const std::string& key) {
  for (const json* j : sources) {
    if (!j->contains(key)) continue;
    const json& v = (*j)[key];
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
  }
  return std::nullopt;
}

// A chat template given as a string, or as a list of {name, template} (the "default" one).
std::optional<std::string> chat_template(const json& tokenizer_config) {
  if (!tokenizer_config.contains("chat_template")) return std::nullopt;
  const json& t = tokenizer_config["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array())
    for (const json& e : t)
      if (e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
  return std::nullopt;
}

std::string merge_string(const json& m, const fs::path& origin) {
  if (m.is_string()) return m.get<std::string>();
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return m[0].get<std::string>() + " " + m[1].get<std::string>();
  fail(origin.string() + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
}

// tokenizer.ggml.* from tokenizer.json (byte-level BPE), as llama.cpp's converter writes them.
void write_hf_tokenizer(const fs::path& folder, const std::string& arch, uint32_t vocab_size, gguf::Writer& w) {
  const fs::path path = folder / "tokenizer.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (fs::exists(folder / "tokenizer.model", ec))
      throw Error(kExitNotImplemented, folder.string() + ": SentencePiece tokenizers (tokenizer.model) are not supported yet; convert this "
                              "model with llama.cpp's convert_hf_to_gguf.py");
    fail(folder.string() + ": no tokenizer.json — the folder needs its tokenizer to make a usable GGUF");
  }
  const json tok = read_json(path);
  const json& model = tok.value("model", json::object());
  if (model.value("type", "") != "BPE" || !model.contains("vocab") || !model["vocab"].is_object())
    throw Error(kExitNotImplemented, path.string() + ": only byte-level BPE tokenizers (model.type \"BPE\") are supported yet");
  std::vector<std::string> tokens(vocab_size);
  std::vector<int32_t> types(vocab_size, 5);  // unused, until a real token takes the id
  auto put = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id >= vocab_size)
      fail(fmt::format("{}: token '{}' has id {}, outside vocab_size {}", path.string(), text, id, vocab_size));
    tokens[static_cast<size_t>(id)] = text;
    types[static_cast<size_t>(id)] = type;
  };
  for (const auto& [text, id] : model["vocab"].items()) put(id.get<int64_t>(), text, 1);  // normal
  for (const json& t : tok.value("added_tokens", json::array()))
    put(t.value("id", int64_t{-1}), t.value("content", ""), t.value("special", false) ? 3 : 4);  // control / user
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == 5) tokens[i] = fmt::format("[PAD{}]", i);
  std::vector<std::string> merges;
  for (const json& m : model.value("merges", json::array())) merges.push_back(merge_string(m, path));

  const json config = read_json(folder / "config.json");
  const json generation = read_json_if_present(folder / "generation_config.json");
  const json tok_config = read_json_if_present(folder / "tokenizer_config.json");
  const std::vector<const json*> sources = {&config, &generation, &tok_config};
  const auto eos = token_id(sources, "eos_token_id");
  const auto bos = token_id(sources, "bos_token_id").value_or(eos.value_or(-1));  // no bos: GLM-4 files use eos
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", arch == "llama" ? "llama-bpe" : arch);  // "glm4", "qwen2"
  w.set_array_strings("tokenizer.ggml.tokens", tokens);
  w.set_array_i32("tokenizer.ggml.token_type", types);
  w.set_array_strings("tokenizer.ggml.merges", merges);
  if (bos >= 0) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  if (eos) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*eos));
  if (arch == "glm4")
    w.set_bool("tokenizer.ggml.add_bos_token", false);
  else if (tok_config.contains("add_bos_token") && tok_config["add_bos_token"].is_boolean())
    w.set_bool("tokenizer.ggml.add_bos_token", tok_config["add_bos_token"].get<bool>());
  if (auto t = chat_template(tok_config)) w.set_string("tokenizer.chat_template", *t);
}

// "tiny-glm4-hf" for "models/tiny-glm4-hf/" too.
std::string folder_name(const fs::path& folder) {
  fs::path p = fs::absolute(folder).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// The keys llama.cpp's converter writes for these architectures, in the fixtures' order.
void write_hf_metadata(const fs::path& folder, const ModelShape& s, gguf::Writer& w) {
  const json root = read_json(folder / "config.json");
  const json& j = root.contains("text_config") ? root["text_config"] : root;
  const std::string a = s.architecture + ".";
  w.set_string("general.architecture", s.architecture);
  w.set_string("general.name", folder_name(folder));
  w.set_u32(a + "context_length", s.context_length);
  w.set_u32(a + "embedding_length", s.d_model);
  w.set_u32(a + "block_count", s.n_layers);
  w.set_u32(a + "feed_forward_length", s.ffn_dim);
  w.set_u32(a + "attention.head_count", s.n_heads);
  w.set_u32(a + "attention.head_count_kv", s.n_kv_heads);
  if (s.d_model % s.n_heads != 0 || s.head_dim != s.d_model / s.n_heads) {  // readers assume d_model / n_heads
    w.set_u32(a + "attention.key_length", s.head_dim);
    w.set_u32(a + "attention.value_length", s.head_dim);
  }
  w.set_f32(a + "attention.layer_norm_rms_epsilon", j.value("rms_norm_eps", j.value("layernorm_epsilon", 1e-5f)));
  w.set_f32(a + "rope.freq_base", j.value("rope_theta", 10000.0f));
  w.set_u32(a + "vocab_size", s.vocab_size);
  const double partial = j.value("partial_rotary_factor", s.architecture == "glm4" ? 0.5 : 1.0);
  w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(s.head_dim * partial));
  write_hf_tokenizer(folder, s.architecture, s.vocab_size, w);
}

struct HfInput {
  std::vector<std::unique_ptr<Mapping>> maps;
  std::vector<Job> jobs;
  uint64_t bytes = 0;
};

HfInput plan_hf(const fs::path& folder, const QuantizeOptions& o, gguf::Writer& w) {
  const ModelShape s = read_model_shape(folder);  // validates config.json and every shard header
  if (!find_arch(s.architecture)) fail(fmt::format("{}: unsupported architecture '{}'", folder.string(), s.architecture));
  write_hf_metadata(folder, s, w);
  HfInput in;
  std::vector<fs::path> shards;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().extension() == ".safetensors") shards.push_back(entry.path());
  std::sort(shards.begin(), shards.end());
  if (shards.empty()) fail(folder.string() + ": no *.safetensors weights in the folder");
  bool has_output = false;
  for (const fs::path& shard : shards) {
    const safetensors::File f = safetensors::read_file_header(shard);
    in.bytes += f.file_size;
    in.maps.push_back(std::make_unique<Mapping>(shard));
    for (const safetensors::TensorInfo& t : f.tensors) {
      const std::string name = gguf_name_of(t.name, shard.string());
      if (name.empty()) continue;
      has_output |= name == "output.weight";
      Job j{name, shard.string(), std::vector<uint64_t>(t.shape.rbegin(), t.shape.rend()), ggml_type_of(t, shard.string()),
            in.maps.back()->data() + f.data_offset + t.begin, DType::f32, 0};
      // Llama checkpoints rotate halves; GGUF Llama rotates adjacent pairs (GLM-4, Qwen2 need nothing).
      const bool is_qk = name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight");
      if (s.architecture == "llama" && is_qk && j.dims.size() == 2)
        j.permute_head_dim = s.head_dim;
      in.jobs.push_back(std::move(j));
    }
  }
  for (Job& j : in.jobs) j.dst = target_type(o, j.name, j.dims, j.src_type, recipe_model(s.n_layers, !has_output, s.n_heads, s.n_kv_heads));
  std::sort(in.jobs.begin(), in.jobs.end(), gguf_order);
  return in;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<DType> parse_quantize_type(std::string_view name) {
  const std::string n = lower(name);
  if (n == "q8_0") return DType::q8_0;
  if (n == "q4_0") return DType::q4_0;
  if (n == "q4_1") return DType::q4_1;
  if (n == "q5_1") return DType::q5_1;
  if (n == "q4_k" || n == "q4_k_m") return DType::q4_k;
  if (n == "q5_k" || n == "q5_k_m") return DType::q5_k;
  if (n == "q3_k" || n == "q3_k_m") return DType::q3_k;
  if (n == "q2_k") return DType::q2_k;
  if (n == "iq4_xs") return DType::iq4_xs;
  if (n == "f16") return DType::f16;
  if (n == "bf16") return DType::bf16;
  if (n == "f32") return DType::f32;
  return std::nullopt;
}

uint32_t quantize_file_type(DType target) {
  switch (target) {
    case DType::f32: return 0;
    case DType::f16: return 1;
    case DType::q4_0: return 2;
    case DType::q5_0: return 8;
    case DType::q8_0: return 7;
    case DType::q4_k: return 15;  // Q4_K_M
    case DType::q6_k: return 18;
    case DType::bf16: return 32;
    case DType::q4_1: return 3;
    case DType::q5_1: return 9;
    case DType::q2_k: return 10;
    case DType::q3_k: return 12;   // Q3_K_M
    case DType::q5_k: return 17;   // Q5_K_M
    case DType::iq4_xs: return 30;
    case DType::iq4_nl: return 25;
  }
  return 0;
}

size_t llama_permuted_source_row(size_t row, size_t head_dim) {
  const size_t head = row / head_dim, r = row % head_dim;
  // out[h, i, j] = in[h, j, i] for the [n_head, 2, head_dim/2] view of the rows.
  return head * head_dim + (r % 2) * (head_dim / 2) + r / 2;
}

QuantizeResult quantize_model(const fs::path& in, const fs::path& out, const QuantizeOptions& o) {
  std::error_code ec;
  if (!fs::exists(in, ec)) usage(fmt::format("{}: no such file or folder", in.string()));
  if (!parse_quantize_type(kernels::dtype_info(o.type).name))
    usage(fmt::format("unsupported target type {} (use {})", kernels::dtype_info(o.type).name, kQuantizeTypes));
  gguf::Writer w;
  QuantizeResult result;
  std::vector<Job> jobs;
  std::unique_ptr<Mapping> gguf_map;
  HfInput hf;
  if (fs::is_directory(in, ec)) {
    hf = plan_hf(in, o, w);
    jobs = std::move(hf.jobs);
    result.input_bytes = hf.bytes;
  } else {
    const gguf::File f = gguf::read_file_header(in);
    gguf_map = std::make_unique<Mapping>(in);
    jobs = plan_gguf(f, gguf_map->data(), o, w);
    result.input_bytes = f.file_size;
  }
  w.set_u32("general.quantization_version", kQuantizationVersion);
  w.set_u32("general.file_type", quantize_file_type(o.type));
  for (const Job& j : jobs) check_job(j, o, result.requantized);
  if (result.requantized)
    spdlog::warn("{}: requantizing {} already-quantized tensors to {} — quality drops; start from F32/F16/BF16 "
                 "weights where you can", in.string(), result.requantized, kernels::dtype_info(o.type).name);
  kernels::ThreadPool pool(o.threads);
  size_t done = 0;
  for (const Job& j : jobs)
    w.add_tensor(j.name, j.dims, static_cast<uint32_t>(j.dst), [&j, &pool, &done, &o, n = jobs.size()](const gguf::ByteSink& sink) {
      produce(j, pool, sink);
      if (o.on_tensor) o.on_tensor(++done, n, j.name);
    });
  w.write(out);
  result.tensors = jobs.size();
  result.output_bytes = fs::file_size(out);
  return result;
}

}  // namespace autoglm::model
