// quantize: HF folder -> GGUF equals llama.cpp's converter output; quantized files stay within the
// reference engine's tolerances; tensor types (and bytes) agree with llama.cpp's quantize; errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autoglm/engine.h"
#include "autoglm/gguf.h"
#include "autoglm/npy.h"
#include "autoglm/quant_recipe.h"
#include "autoglm/quantize.h"
#include "autoglm/random_model.h"
#include "logits_compare.h"
#include "test_support.h"

using namespace autoglm;
namespace fs = std::filesystem;
using kernels::DType;
using test::compare_logits;
using test::read_prompts;

namespace {

std::vector<float> run(const model::Model& m, const std::vector<int32_t>& tokens) {
  engine::KvCache cache(m.config, tokens.size() / 16 + 2, 16);
  engine::Engine engine(m, cache, {2, 512});
  engine::KvCache::Sequence seq;
  return engine.eval_all_logits(seq, tokens);
}

fs::path fixture(const std::string& rel) { return test::fixtures_dir() / rel; }

model::QuantizeResult quantize(const fs::path& in, const fs::path& out, DType type, bool allow_requantize = false) {
  model::QuantizeOptions o;
  o.type = type;
  o.allow_requantize = allow_requantize;
  o.threads = 2;
  return model::quantize_model(in, out, o);
}

// A tensor's stored bytes.
std::string tensor_bytes(const gguf::File& f, const gguf::TensorInfo& t) {
  std::ifstream in(f.path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(f.data_offset + t.offset));
  std::string bytes(t.nbytes, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

bool same_value(const gguf::Value& a, const gguf::Value& b) {
  return a.type == b.type && a.array_type == b.array_type && a.array_size == b.array_size && a.i == b.i &&
         a.f == b.f && a.b == b.b && a.str == b.str && a.strings == b.strings && a.ints == b.ints &&
         a.floats == b.floats;
}

// Tensor names to (type, dims) and how many have identical bytes.
struct TensorComparison {
  size_t same_type = 0, same_bytes = 0, total = 0;
  std::vector<std::string> differing_bytes;
};

TensorComparison compare_tensors(const gguf::File& ours, const gguf::File& theirs) {
  TensorComparison c;
  EXPECT_EQ(ours.tensors.size(), theirs.tensors.size());
  for (const gguf::TensorInfo& t : theirs.tensors) {
    ++c.total;
    const gguf::TensorInfo* o = ours.find_tensor(t.name);
    if (!o) {
      ADD_FAILURE() << "missing tensor " << t.name;
      continue;
    }
    EXPECT_EQ(o->dims, t.dims) << t.name;
    EXPECT_EQ(o->type, t.type) << t.name;
    c.same_type += o->type == t.type;
    if (o->type == t.type && o->dims == t.dims && tensor_bytes(ours, *o) == tensor_bytes(theirs, t))
      ++c.same_bytes;
    else
      c.differing_bytes.push_back(t.name);
  }
  return c;
}

}  // namespace

// The HF folder holds the weights of tiny-glm4-BF16.gguf, which llama.cpp's converter wrote.
TEST(QuantizeHf, Glm4FolderToBf16EqualsTheConvertersFile) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  quantize(fixture("hf/tiny-glm4-hf"), tmp / "out.gguf", DType::bf16);
  const gguf::File ours = gguf::read_file_header(tmp / "out.gguf");
  const gguf::File theirs = gguf::read_file_header(fixture("models/tiny-glm4-BF16.gguf"));

  const TensorComparison t = compare_tensors(ours, theirs);
  EXPECT_EQ(t.same_bytes, theirs.tensors.size());
  for (size_t i = 0; i < theirs.tensors.size() && i < ours.tensors.size(); ++i)
    EXPECT_EQ(ours.tensors[i].name, theirs.tensors[i].name) << "tensor order at " << i;

  // Every key of the fixture, with the same type and value, in the same order; general.name is the
  // folder's name (the fixture's was set by its maker), and we add the chat template of
  // tokenizer_config.json, which the fixture does not carry.
  std::vector<std::string> our_keys, their_keys;
  for (const auto& [key, value] : theirs.metadata) {
    their_keys.push_back(key);
    const gguf::Value* mine = ours.find(key);
    if (!mine) {
      ADD_FAILURE() << "missing key " << key;
      continue;
    }
    if (key == "general.name") {
      EXPECT_EQ(mine->str, "tiny-glm4-hf");
      continue;
    }
    EXPECT_TRUE(same_value(*mine, value)) << key;
  }
  for (const auto& [key, value] : ours.metadata)
    if (key != "tokenizer.chat_template") our_keys.push_back(key);
  EXPECT_EQ(our_keys, their_keys);
  const auto tok_config = nlohmann::json::parse(test::read_file(fixture("hf/tiny-glm4-hf/tokenizer_config.json")));
  EXPECT_EQ(ours.get_string("tokenizer.chat_template"), tok_config["chat_template"].get<std::string>());
}

// Quantizing the float fixtures: Q8_0 within the quantized tolerances of the f32 references; Q4_0
// and Q4_K_M within them of the references of llama.cpp's own file of that type.
TEST(QuantizeRoundTrip, QuantizedFloatFixturesStayWithinTolerances) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  struct Variant {
    DType type;
    std::string ref;  // refs suffix
  };
  for (const std::string arch : {"glm4", "llama", "qwen2"}) {
    const auto prompts = read_prompts(fixture("refs/" + arch + ".prompts"));
    for (const Variant& v : {Variant{DType::q8_0, "f32"}, Variant{DType::q4_0, "Q4_0"}, Variant{DType::q4_k, "Q4_K_M"}}) {
      const fs::path out = tmp / (arch + "-" + v.ref + ".gguf");
      quantize(fixture("models/tiny-" + arch + "-f32.gguf"), out, v.type);
      const auto m = model::Model::load_gguf(out);
      for (size_t p = 0; p < prompts.size(); ++p) {
        const std::string what = "tiny-" + arch + " " + kernels::dtype_info(v.type).name + " vs refs/tiny-" + arch +
                                 "-" + v.ref + " p" + std::to_string(p);
        const npy::ArrayF32 ref = npy::read_f32(fixture("refs/tiny-" + arch + "-" + v.ref + ".p" + std::to_string(p) + ".npy"));
        const test::LogitDiff d = compare_logits(run(*m, prompts[p]), ref.data, m->config.vocab_size);
        std::printf("%s: rms %.4g max %.4g kl %.3g\n", what.c_str(), d.rms, d.max_abs, d.mean_kl);
        EXPECT_LE(d.rms, 5e-2) << what;
        EXPECT_LE(d.max_abs, 0.3) << what;
        EXPECT_LE(d.mean_kl, 1e-3) << what;
      }
    }
  }
}

// Our Q4_0 / Q4_K_M / Q8_0 of the f32 fixture against llama.cpp's quantize of the same file, and our
// Q5_K_M / Q4_1 / Q5_1 / Q3_K_M / IQ4_XS / Q2_K of the F16 fixture (what llama.cpp made those from;
// the README): the same type for every tensor, and the same bytes.
TEST(QuantizeRoundTrip, TensorTypesAndBytesAgreeWithLlamaCpp) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  struct Case {
    std::string arch, name, source;
    DType type;
  };
  std::vector<Case> cases;
  for (const std::string arch : {"glm4", "llama", "qwen2"})
    for (const auto& [type, name] : std::vector<std::pair<DType, std::string>>{
             {DType::q4_0, "Q4_0"}, {DType::q4_k, "Q4_K_M"}, {DType::q8_0, "Q8_0"}})
      cases.push_back({arch, name, "f32", type});
  cases.push_back({"glm4", "Q5_K_M", "F16", DType::q5_k});
  cases.push_back({"llama", "Q4_1", "F16", DType::q4_1});
  cases.push_back({"llama", "Q5_1", "F16", DType::q5_1});
  cases.push_back({"glm4", "Q3_K_M", "F16", DType::q3_k});
  cases.push_back({"glm4", "IQ4_XS", "F16", DType::iq4_xs});
  cases.push_back({"llama", "Q2_K", "F16", DType::q2_k});
  for (const auto& [arch, name, source, type] : cases) {
    {
      const fs::path out = tmp / (arch + name + ".gguf");
      quantize(fixture("models/tiny-" + arch + "-" + source + ".gguf"), out, type);
      const gguf::File ours = gguf::read_file_header(out);
      const gguf::File theirs = gguf::read_file_header(fixture("models/tiny-" + arch + "-" + name + ".gguf"));
      const TensorComparison c = compare_tensors(ours, theirs);
      EXPECT_EQ(c.same_type, c.total) << arch << " " << name;
      EXPECT_EQ(ours.get_int("general.file_type"), theirs.get_int("general.file_type")) << arch << " " << name;
      std::string differing;
      for (const std::string& n : c.differing_bytes) differing += " " + n;
      std::printf("tiny-%s %s: %zu/%zu tensors byte-identical to llama.cpp's%s%s\n", arch.c_str(), name.c_str(),
                  c.same_bytes, c.total, differing.empty() ? "" : "; differ:", differing.c_str());
      EXPECT_EQ(c.same_bytes, c.total) << arch << " " << name << " differ:" << differing;
    }
  }
}

// The mixes where the fixtures cannot tell (2 layers, 2 query heads per KV head): a GLM-4-9B-like
// shape of 40 layers, 32 heads over 2 KV heads (n_gqa 16) and ffn_down rows of 288 (not whole
// super-blocks). The expectations are what llama.cpp's llama-quantize wrote for a random F16 model
// of that shape (0c1e570, 2026-12-04; our files matched all 523 tensors, types and bytes).
TEST(QuantizeRecipe, MixesFollowLlamaCppOnADeepGqaModel) {
  const model::RecipeModel m = model::recipe_model(40, false, 32, 2);
  EXPECT_EQ(m.n_gqa, 16u);
  auto type = [&](DType target, const std::string& part, uint32_t layer) {
    const uint64_t cols = part == "ffn_down" ? 288 : 256;
    return model::recipe_type(target, "blk." + std::to_string(layer) + "." + part + ".weight", m, cols);
  };
  for (DType target : {DType::q3_k, DType::q2_k, DType::iq4_xs}) {
    EXPECT_EQ(model::recipe_type(target, "output.weight", m, 256), DType::q6_k);
    EXPECT_EQ(model::recipe_type(target, "token_embd.weight", m, 256), target);
    EXPECT_EQ(type(target, "attn_q", 7), target);
    EXPECT_EQ(type(target, "ffn_up", 7), target);
  }
  for (uint32_t l : {0u, 1u, 2u, 3u, 4u, 5u, 39u}) {
    // Q3_K_M: attn_v Q5_K in layers 0-1; ffn_down Q5_K in the first 40/16 = 2 layers (-> Q5_1 at
    // 288 columns), Q4_K after (-> Q5_0); attn_output Q4_K
    EXPECT_EQ(type(DType::q3_k, "attn_v", l), l < 2 ? DType::q5_k : DType::q4_k) << l;
    EXPECT_EQ(type(DType::q3_k, "ffn_down", l), l < 2 ? DType::q5_1 : DType::q5_0) << l;
    EXPECT_EQ(type(DType::q3_k, "attn_output", l), DType::q4_k) << l;
    // Q2_K: attn_v Q4_K (n_gqa >= 4), ffn_down Q3_K (-> Q4_0), attn_output Q3_K
    EXPECT_EQ(type(DType::q2_k, "attn_v", l), DType::q4_k) << l;
    EXPECT_EQ(type(DType::q2_k, "ffn_down", l), DType::q4_0) << l;
    EXPECT_EQ(type(DType::q2_k, "attn_output", l), DType::q3_k) << l;
    // IQ4_XS: attn_v Q5_K (n_gqa >= 4), ffn_down Q5_K in the first 40/8 = 5 layers (-> Q5_1), else
    // IQ4_XS (-> IQ4_NL)
    EXPECT_EQ(type(DType::iq4_xs, "attn_v", l), DType::q5_k) << l;
    EXPECT_EQ(type(DType::iq4_xs, "ffn_down", l), l < 5 ? DType::q5_1 : DType::iq4_nl) << l;
    EXPECT_EQ(type(DType::iq4_xs, "attn_output", l), DType::iq4_xs) << l;
  }
  // with fewer query heads per KV head, Q2_K's attn_v is Q3_K and IQ4_XS's stays IQ4_XS
  const model::RecipeModel narrow = model::recipe_model(40, false, 32, 16);
  EXPECT_EQ(model::recipe_type(DType::q2_k, "blk.3.attn_v.weight", narrow, 256), DType::q3_k);
  EXPECT_EQ(model::recipe_type(DType::iq4_xs, "blk.3.attn_v.weight", narrow, 256), DType::iq4_xs);
}

// Metadata is copied in order, file_type and quantization_version set anew at the end.
TEST(QuantizeGguf, CopiesMetadataAndSetsFileType) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  const gguf::File src = gguf::read_file_header(fixture("models/tiny-qwen2-f32.gguf"));
  for (const auto& [type, ftype] : std::vector<std::pair<DType, int64_t>>{
           {DType::q8_0, 7}, {DType::q4_0, 2}, {DType::q4_k, 15}, {DType::f16, 1}, {DType::bf16, 32}, {DType::f32, 0}}) {
    quantize(src.path, tmp / "out.gguf", type);
    const gguf::File out = gguf::read_file_header(tmp / "out.gguf");
    EXPECT_EQ(out.get_int("general.file_type"), ftype);
    EXPECT_EQ(out.get_int("general.quantization_version"), 2);
    // As llama.cpp's quantize: every other key in order, then these two appended anew.
    std::vector<std::pair<std::string, gguf::Value>> want;
    for (const auto& kv : src.metadata)
      if (kv.first != "general.file_type" && kv.first != "general.quantization_version") want.push_back(kv);
    ASSERT_EQ(out.metadata.size(), want.size() + 2);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(out.metadata[i].first, want[i].first);
      EXPECT_TRUE(same_value(out.metadata[i].second, want[i].second)) << want[i].first;
    }
    EXPECT_EQ(out.metadata[want.size()].first, "general.quantization_version");
    EXPECT_EQ(out.metadata[want.size() + 1].first, "general.file_type");
    for (const gguf::TensorInfo& t : out.tensors) {
      if (t.dims.size() == 1) {
        EXPECT_EQ(t.type, 0u) << t.name << " (1-D tensors stay F32)";
      }
    }
  }
}

TEST(QuantizeLlama, PermutationMatchesConvertersReshape) {
  // w.reshape(n_head, 2, head_dim/2, d).swapaxes(1, 2): out[h, i, j] = in[h, j, i].
  const std::vector<size_t> hd4 = {0, 2, 1, 3, 4, 6, 5, 7};
  for (size_t r = 0; r < hd4.size(); ++r) EXPECT_EQ(model::llama_permuted_source_row(r, 4), hd4[r]) << r;
  const std::vector<size_t> hd8 = {0, 4, 1, 5, 2, 6, 3, 7};
  for (size_t r = 0; r < hd8.size(); ++r) EXPECT_EQ(model::llama_permuted_source_row(r, 8), hd8[r]) << r;
}

namespace {

// Writes one safetensors file of F32 tensors (row-major shapes, outermost first).
void write_safetensors(const fs::path& path, const std::vector<std::pair<std::string, std::pair<std::vector<uint64_t>, std::string>>>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", "F32"}, {"shape", t.first}, {"data_offsets", {data.size(), data.size() + t.second.size()}}};
    data += t.second;
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << h << data;
}

// An HF Llama folder holding the weights of `gguf` (q/k rows un-permuted back to halves).
void write_hf_llama(const fs::path& gguf_path, const fs::path& dir, uint32_t vocab) {
  const gguf::File f = gguf::read_file_header(gguf_path);
  static const std::map<std::string, std::string> parts = {
      {"attn_norm.weight", "input_layernorm.weight"}, {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},   {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},    {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"}};
  std::vector<std::pair<std::string, std::pair<std::vector<uint64_t>, std::string>>> tensors;
  for (const gguf::TensorInfo& t : f.tensors) {
    std::string hf;
    if (t.name == "token_embd.weight") hf = "model.embed_tokens.weight";
    else if (t.name == "output_norm.weight") hf = "model.norm.weight";
    else if (t.name == "output.weight") hf = "lm_head.weight";
    else {
      const size_t dot = t.name.find('.', 4);
      hf = "model.layers." + t.name.substr(4, dot - 4) + "." + parts.at(t.name.substr(dot + 1));
    }
    std::string bytes = tensor_bytes(f, t);
    if (t.name.ends_with("attn_q.weight") || t.name.ends_with("attn_k.weight")) {
      // GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i.
      const size_t hd = 64, row = t.dims[0] * 4;
      std::string hf_bytes(bytes.size(), '\0');
      for (size_t r = 0; r < t.dims[1]; ++r) {
        const size_t h = r / hd, i = (r % hd) / 2, j = r % 2;
        hf_bytes.replace((h * hd + j * hd / 2 + i) * row, row, bytes, r * row, row);
      }
      bytes = hf_bytes;
    }
    std::vector<uint64_t> shape(t.dims.rbegin(), t.dims.rend());
    tensors.push_back({hf, {shape, bytes}});
  }
  fs::create_directories(dir);
  write_safetensors(dir / "model.safetensors", tensors);
  test::write_file(dir / "config.json", nlohmann::json{{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
      {"hidden_size", 256}, {"intermediate_size", 512}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
      {"num_hidden_layers", 2}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"vocab_size", vocab},
      {"max_position_embeddings", 512}, {"tie_word_embeddings", false}, {"torch_dtype", "float32"},
      {"bos_token_id", 1}, {"eos_token_id", {2, 3}}}.dump());
  nlohmann::json v = nlohmann::json::object();
  for (uint32_t i = 0; i + 2 < vocab; ++i) v["t" + std::to_string(i)] = i;  // the last two ids: added / gap
  const nlohmann::json tok = {{"model", {{"type", "BPE"}, {"vocab", v}, {"merges", {{"t", "0"}, "t 1"}}}},
                              {"added_tokens", {{{"id", vocab - 2}, {"content", "<|eot|>"}, {"special", true}}}}};
  test::write_file(dir / "tokenizer.json", tok.dump());
}

}  // namespace

// A Llama HF folder converts back to the GGUF it was made from: names, permuted q/k, metadata,
// tokenizer; and the converted file computes what the folder computes.
TEST(QuantizeLlama, HfFolderRoundTripsToTheGguf) {
  test::TempDir tmp;
  model::RandomModelSpec spec;
  spec.arch = "llama";
  spec.vocab_size = 300;
  spec.threads = 2;
  model::write_random_model(spec, tmp / "src.gguf");
  write_hf_llama(tmp / "src.gguf", tmp / "hf", spec.vocab_size);
  quantize(tmp / "hf", tmp / "out.gguf", DType::f32);
  const gguf::File ours = gguf::read_file_header(tmp / "out.gguf");
  const gguf::File src = gguf::read_file_header(tmp / "src.gguf");
  const TensorComparison c = compare_tensors(ours, src);
  EXPECT_EQ(c.same_bytes, c.total);
  EXPECT_EQ(ours.get_string("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(ours.get_int("llama.rope.dimension_count"), 64);
  EXPECT_EQ(ours.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(ours.get_int("tokenizer.ggml.eos_token_id"), 2);  // the first of the list
  const gguf::Value* tokens = ours.find("tokenizer.ggml.tokens");
  const gguf::Value* types = ours.find("tokenizer.ggml.token_type");
  ASSERT_TRUE(tokens && types);
  ASSERT_EQ(tokens->strings.size(), 300u);
  EXPECT_EQ(tokens->strings[5], "t5");
  EXPECT_EQ(tokens->strings[298], "<|eot|>");
  EXPECT_EQ(tokens->strings[299], "[PAD299]");
  EXPECT_EQ(types->ints[5], 1);
  EXPECT_EQ(types->ints[298], 3);
  EXPECT_EQ(types->ints[299], 5);
  EXPECT_EQ(ours.find("tokenizer.ggml.merges")->strings, (std::vector<std::string>{"t 0", "t 1"}));

  const auto hf = model::Model::load(tmp / "hf");
  const auto gg = model::Model::load_gguf(tmp / "out.gguf");
  const std::vector<int32_t> tokens_in = {1, 5, 9, 42, 7, 100, 3, 250};
  EXPECT_LT(compare_logits(run(*gg, tokens_in), run(*hf, tokens_in), spec.vocab_size).max_abs, 1e-3);
}

// Rows that are not whole blocks of the recipe's type (GLM-4-9B's ffn_down has 13696 columns) fall
// back as llama.cpp's quantize does: Q4_K -> Q5_0, Q6_K -> Q8_0, and F16 when not even a 32-block
// fits. The files load, and their logits stay close to the float model's.
TEST(QuantizeRoundTrip, RowsThatAreNotWholeBlocksFallBackAsLlamaCppDoes) {
  test::TempDir tmp;
  model::RandomModelSpec spec;
  spec.arch = "glm4";
  spec.n_layers = 8;
  spec.ffn_dim = 288;  // 9 blocks of 32, not a whole super-block of 256
  spec.vocab_size = 512;
  model::write_random_model(spec, tmp / "f32.gguf");
  quantize(tmp / "f32.gguf", tmp / "q4km.gguf", DType::q4_k);
  const gguf::File f = gguf::read_file_header(tmp / "q4km.gguf");
  for (uint32_t l = 0; l < spec.n_layers; ++l) {
    const std::string blk = "blk." + std::to_string(l) + ".";
    const DType down = model::use_more_bits(l, spec.n_layers) ? DType::q8_0 : DType::q5_0;
    EXPECT_EQ(f.find_tensor(blk + "ffn_down.weight")->type, static_cast<uint32_t>(down)) << l;
    EXPECT_EQ(f.find_tensor(blk + "ffn_up.weight")->type, static_cast<uint32_t>(DType::q4_k)) << l;
  }
  const std::vector<int32_t> tokens = {1, 17, 300, 42, 7, 511, 3, 99, 250, 12, 64, 128};
  const auto source = model::Model::load_gguf(tmp / "f32.gguf");
  const auto quantized = model::Model::load_gguf(tmp / "q4km.gguf");
  const test::LogitDiff d = compare_logits(run(*quantized, tokens), run(*source, tokens), spec.vocab_size);
  std::printf("Q4_K_M with Q5_0/Q8_0 ffn_down vs f32: rms %.4g max %.4g kl %.3g\n", d.rms, d.max_abs, d.mean_kl);
  EXPECT_LE(d.mean_kl, 0.05);  // a plain Q4_K_M of this shape with ffn 256: 0.03; a misread matrix: far more

  // 48 columns: not a Q8_0 block multiple either, so those matrices become F16
  spec = {};
  spec.arch = "qwen2";
  spec.d_model = 48;
  spec.head_dim = 12;
  spec.ffn_dim = 64;
  spec.vocab_size = 300;
  model::write_random_model(spec, tmp / "odd.gguf");
  quantize(tmp / "odd.gguf", tmp / "odd-q8.gguf", DType::q8_0);
  const gguf::File odd = gguf::read_file_header(tmp / "odd-q8.gguf");
  EXPECT_EQ(odd.find_tensor("token_embd.weight")->type, static_cast<uint32_t>(DType::f16));
  EXPECT_EQ(odd.find_tensor("blk.0.ffn_down.weight")->type, static_cast<uint32_t>(DType::q8_0));  // 64 columns
  EXPECT_NO_THROW(model::Model::load_gguf(tmp / "odd-q8.gguf"));
}

TEST(QuantizeErrors, CommandLine) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  const std::string out = (tmp / "out.gguf").string();
  const std::string q8 = fixture("models/tiny-llama-Q8_0.gguf").string();

  auto r = test::run_binary("quantize /no/such/model " + out + " --type q8_0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.err;

  r = test::run_binary("quantize " + q8 + " " + out + " --type q5_x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("q5_x"), std::string::npos) << r.err;

  r = test::run_binary("quantize " + q8 + " " + out + " --type q4_0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--allow-requantize"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("quality"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));

  r = test::run_binary("quantize " + q8 + " " + out + " --type q4_0 --allow-requantize");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("requantizing"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("->"), std::string::npos) << r.out;
  EXPECT_EQ(gguf::read_file_header(out).get_int("general.file_type"), 2);

  // Same type as stored: copied, no requantize needed.
  r = test::run_binary("quantize " + q8 + " " + out + " --type q8_0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(QuantizeErrors, SentencePieceFoldersAreNotSupportedYet) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  const fs::path dir = tmp / "spm";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(fixture("hf/tiny-glm4-hf")))
    if (e.path().filename() != "tokenizer.json") fs::copy_file(e.path(), dir / e.path().filename());
  test::write_file(dir / "tokenizer.model", "not really");
  try {
    quantize(dir, tmp / "out.gguf", DType::q8_0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitNotImplemented);
    EXPECT_NE(std::string(e.what()).find("SentencePiece"), std::string::npos) << e.what();
  }
}

TEST(QuantizeErrors, UnsupportedArchitecturesAreNamed) {
  AUTOGLM_REQUIRE_FIXTURES();
  test::TempDir tmp;
  const fs::path dir = tmp / "mistral";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(fixture("hf/tiny-glm4-hf"))) fs::copy_file(e.path(), dir / e.path().filename());
  auto config = nlohmann::json::parse(test::read_file(dir / "config.json"));
  config["model_type"] = "mistral";
  test::write_file(dir / "config.json", config.dump());
  try {
    quantize(dir, tmp / "out.gguf", DType::q8_0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mistral"), std::string::npos) << e.what();
  }
}
