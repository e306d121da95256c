// GGUF and safetensors header readers: the real fixtures, hand-built files, and hostile files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "autoglm/gguf.h"
#include "autoglm/safetensors.h"
#include "test_support.h"

namespace autoglm {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::write_file;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// A tiny GGUF writer: enough to build valid files and break them one field at a time.

class Bytes {
 public:
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& i32(int32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& f32(float v) { return put(v); }
  Bytes& f64(double v) { return put(v); }
  Bytes& str(std::string_view s) {
    u64(s.size());
    data.append(s);
    return *this;
  }
  Bytes& raw(std::string_view s) {
    data.append(s);
    return *this;
  }
  std::string data;

 private:
  template <class T>
  Bytes& put(T v) {
    char b[sizeof v];
    std::memcpy(b, &v, sizeof v);
    data.append(b, sizeof v);
    return *this;
  }
};

enum : uint32_t { kU8 = 0, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kStr = 8, kArr = 9, kU64 = 10, kF64 = 12 };
enum : uint32_t { kTypeF32 = 0, kTypeF16 = 1, kTypeQ8_0 = 8, kTypeQ4_K = 12 };

std::string kv_u32(std::string_view key, uint32_t v) { return Bytes().str(key).u32(kU32).u32(v).data; }
std::string kv_u64(std::string_view key, uint64_t v) { return Bytes().str(key).u32(kU64).u64(v).data; }
std::string kv_str(std::string_view key, std::string_view v) { return Bytes().str(key).u32(kStr).str(v).data; }
std::string kv_f32(std::string_view key, float v) { return Bytes().str(key).u32(kF32).f32(v).data; }
std::string kv_bool(std::string_view key, bool v) { return Bytes().str(key).u32(kBool).u8(v ? 1 : 0).data; }
std::string kv_strings(std::string_view key, const std::vector<std::string>& v) {
  Bytes b;
  b.str(key).u32(kArr).u32(kStr).u64(v.size());
  for (const auto& s : v) b.str(s);
  return b.data;
}
std::string kv_i32s(std::string_view key, const std::vector<int32_t>& v) {
  Bytes b;
  b.str(key).u32(kArr).u32(kI32).u64(v.size());
  for (int32_t x : v) b.i32(x);
  return b.data;
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = kTypeF32;
  uint64_t offset = 0;
};

// Bytes of a tensor for the few types the tests use (independent of the table under test).
uint64_t tensor_bytes(const TensorSpec& t) {
  uint64_t n = 1;
  for (uint64_t d : t.dims) n *= d;
  switch (t.type) {
    case kTypeF32:
      return n * 4;
    case kTypeF16:
      return n * 2;
    case kTypeQ8_0:
      return n / 32 * 34;
    case kTypeQ4_K:
      return n / 256 * 144;
    default:
      return 0;
  }
}

struct GgufSpec {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::vector<std::string> kvs;
  std::vector<TensorSpec> tensors;
  uint64_t alignment = 32;                  // padding written before the data section
  std::optional<uint64_t> n_tensors, n_kv;  // override the counts in the header
  std::optional<uint64_t> data_size;        // default: up to the end of the last tensor
};

std::string build(const GgufSpec& s) {
  Bytes b;
  b.raw(s.magic).u32(s.version).u64(s.n_tensors.value_or(s.tensors.size())).u64(s.n_kv.value_or(s.kvs.size()));
  for (const auto& kv : s.kvs) b.raw(kv);
  uint64_t end = 0;
  for (const auto& t : s.tensors) {
    b.str(t.name).u32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
    end = std::max(end, t.offset + tensor_bytes(t));
  }
  while (b.data.size() % s.alignment) b.u8(0);
  b.data.append(static_cast<size_t>(s.data_size.value_or(end)), '\x5a');
  return b.data;
}

// A small valid v3 file: three tensors of three types, aligned to 32, the last one ending at EOF.
GgufSpec valid_spec() {
  GgufSpec s;
  s.kvs = {kv_str("general.architecture", "tiny"),
           kv_u32("tiny.block_count", 2),
           kv_f32("tiny.eps", 0.5f),
           kv_bool("tokenizer.ggml.add_bos_token", true),
           kv_strings("tokenizer.ggml.tokens", {"a", "bb", "ccc"}),
           kv_i32s("tokenizer.ggml.token_type", {1, -2, 3}),
           kv_u32("general.alignment", 32)};
  s.tensors = {{"a.weight", {8, 2}, kTypeF32, 0}, {"b.weight", {64}, kTypeQ8_0, 64}, {"c.bias", {3}, kTypeF16, 160}};
  return s;
}

fs::path write_gguf(const TempDir& dir, const GgufSpec& spec, const std::string& name = "t.gguf") {
  const fs::path p = dir / name;
  write_file(p, build(spec));
  return p;
}

// The FormatError message for `bytes`, or "" if the file parsed.
std::string gguf_error(const std::string& bytes) {
  TempDir dir;
  const fs::path p = dir / "x.gguf";
  write_file(p, bytes);
  try {
    gguf::read_file_header(p);
  } catch (const gguf::FormatError& e) {
    return e.what();
  }
  return "";
}
std::string gguf_error(const GgufSpec& spec) { return gguf_error(build(spec)); }

// ---------------------------------------------------------------------------------------------
// Type table

TEST(GgufTypes, BlockLayoutsMatchGgml) {
  struct Want {
    uint32_t id;
    const char* name;
    uint32_t block, bytes;
  };
  // clang-format off
  const Want wants[] = {{0, "F32", 1, 4},       {1, "F16", 1, 2},        {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
                        {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},     {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
                        {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
                        {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},  {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
                        {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18}, {21, "IQ3_S", 256, 110},
                        {22, "IQ2_S", 256, 82}, {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
                        {26, "I32", 1, 4},      {27, "I64", 1, 8},       {28, "F64", 1, 8},      {29, "IQ1_M", 256, 56},
                        {30, "BF16", 1, 2}};
  // clang-format on
  for (const Want& w : wants) {
    const gguf::TypeInfo* t = gguf::type_info(w.id);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->id, w.id);
    EXPECT_STREQ(t->name, w.name);
    EXPECT_EQ(t->block_size, w.block) << w.name;
    EXPECT_EQ(t->type_size, w.bytes) << w.name;
  }
  for (uint32_t retired : {4u, 5u, 31u, 32u, 33u, 36u, 1000u, 0xffffffffu})
    EXPECT_EQ(gguf::type_info(retired), nullptr) << retired;
}

// ---------------------------------------------------------------------------------------------
// Real fixtures

std::vector<fs::path> fixture_ggufs(const std::string& folder) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(test::fixtures_dir() / folder))
    if (e.path().extension() == ".gguf") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::set<uint32_t> tensor_types(const gguf::File& f) {
  std::set<uint32_t> types;
  for (const auto& t : f.tensors) types.insert(t.type);
  return types;
}

TEST(GgufFixtures, EveryModelParsesAndItsTensorsTileTheDataSection) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto files = fixture_ggufs("models");
  ASSERT_GE(files.size(), 16u);  // more weight types join the fixtures over time
  for (const fs::path& p : files) {
    SCOPED_TRACE(p.filename().string());
    const gguf::File f = gguf::read_file_header(p);
    EXPECT_EQ(f.version, 3u);
    EXPECT_EQ(f.file_size, fs::file_size(p));
    EXPECT_EQ(f.data_offset % f.alignment, 0u);
    const std::string arch = p.filename().string().substr(5, p.filename().string().find('-', 5) - 5);
    EXPECT_EQ(f.get_string("general.architecture"), arch);
    EXPECT_EQ(f.get_int(arch + ".block_count"), 2);
    EXPECT_EQ(f.get_int(arch + ".embedding_length"), 256);
    // llama.cpp writes tensors back to back, each padded to the alignment: a wrong block size in
    // the type table would break this chain.
    std::vector<const gguf::TensorInfo*> sorted;
    for (const auto& t : f.tensors) sorted.push_back(&t);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    uint64_t expect_offset = 0;
    for (const auto* t : sorted) {
      EXPECT_EQ(t->offset, expect_offset) << t->name;
      EXPECT_EQ(t->nbytes % gguf::type_info(t->type)->type_size, 0u);
      expect_offset = (t->offset + t->nbytes + f.alignment - 1) / f.alignment * f.alignment;
    }
    EXPECT_GE(f.data_offset + expect_offset, f.file_size);
    EXPECT_LE(f.data_offset + sorted.back()->offset + sorted.back()->nbytes, f.file_size);
  }
}

TEST(GgufFixtures, Glm4F32ReportsItsMetadataAndTensors) {
  AUTOGLM_REQUIRE_FIXTURES();
  const gguf::File f = gguf::read_file_header(test::fixtures_dir() / "models/tiny-glm4-f32.gguf");
  EXPECT_EQ(f.get_string("general.architecture"), "glm4");
  EXPECT_EQ(f.get_int("glm4.block_count"), 2);
  EXPECT_EQ(f.get_int("glm4.attention.head_count"), 4);
  EXPECT_EQ(f.get_int("glm4.attention.head_count_kv"), 2);
  EXPECT_EQ(f.get_int("glm4.rope.dimension_count"), 32);
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "glm4");
  EXPECT_NEAR(f.find("glm4.attention.layer_norm_rms_epsilon")->as_float().value(), 1e-5, 1e-9);
  EXPECT_EQ(f.find("tokenizer.ggml.add_bos_token")->type, gguf::ValueType::boolean);
  EXPECT_FALSE(f.find("tokenizer.ggml.add_bos_token")->b);
  const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->type, gguf::ValueType::array);
  EXPECT_EQ(tokens->array_type, gguf::ValueType::string);
  EXPECT_EQ(tokens->array_size, 2048u);
  ASSERT_EQ(tokens->strings.size(), 2048u);
  EXPECT_EQ(tokens->strings[0], "!");
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->ints.size(), 2048u);
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->strings.size(), 1792u);
  EXPECT_EQ(f.find("no.such.key"), nullptr);
  EXPECT_EQ(f.get_int("general.architecture"), std::nullopt);  // a string, not an int

  EXPECT_EQ(f.tensors.size(), 29u);
  EXPECT_EQ(tensor_types(f), std::set<uint32_t>{kTypeF32});
  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->dims, (std::vector<uint64_t>{256, 2048}));
  EXPECT_EQ(embd->n_elements(), 256u * 2048u);
  EXPECT_EQ(embd->nbytes, 256u * 2048u * 4u);
  EXPECT_NE(f.find_tensor("blk.1.ffn_up.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("blk.2.ffn_up.weight"), nullptr);
}

std::string fmt_path(const char* arch, const char* type) { return std::string("tiny-") + arch + "-" + type + ".gguf"; }

TEST(GgufFixtures, QuantizedFilesCarryTheirTypes) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path m = test::fixtures_dir() / "models";
  for (const char* arch : {"glm4", "llama", "qwen2"}) {
    SCOPED_TRACE(arch);
    const auto kq = tensor_types(gguf::read_file_header(m / fmt_path(arch, "Q4_K_M")));
    EXPECT_TRUE(kq.contains(12) && kq.contains(14)) << "Q4_K_M mixes Q4_K and Q6_K";
    EXPECT_TRUE(tensor_types(gguf::read_file_header(m / fmt_path(arch, "Q4_0"))).contains(2));
    EXPECT_TRUE(tensor_types(gguf::read_file_header(m / fmt_path(arch, "Q8_0"))).contains(8));
    EXPECT_TRUE(tensor_types(gguf::read_file_header(m / fmt_path(arch, "F16"))).contains(1));
  }
  EXPECT_TRUE(tensor_types(gguf::read_file_header(m / "tiny-glm4-BF16.gguf")).contains(30));
  const gguf::File q4k = gguf::read_file_header(m / "tiny-glm4-Q4_K_M.gguf");
  const gguf::TensorInfo* out = q4k.find_tensor("output.weight");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->type, 14u);
  EXPECT_EQ(out->nbytes, 256u * 2048u / 256u * 210u);
}

TEST(GgufFixtures, VocabOnlyFilesWithLargeVocabulariesParse) {
  AUTOGLM_REQUIRE_FIXTURES();
  for (const fs::path& p : fixture_ggufs("vocab")) {
    SCOPED_TRACE(p.filename().string());
    const gguf::File f = gguf::read_file_header(p);
    EXPECT_TRUE(f.tensors.empty());
    const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(tokens->strings.size(), tokens->array_size);
    EXPECT_GT(tokens->array_size, 1000u);
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-built files

TEST(GgufBuilt, ValidFileParses) {
  TempDir dir;
  const gguf::File f = gguf::read_file_header(write_gguf(dir, valid_spec()));
  EXPECT_EQ(f.version, 3u);
  EXPECT_EQ(f.alignment, 32u);
  ASSERT_EQ(f.metadata.size(), 7u);
  EXPECT_EQ(f.metadata[0].first, "general.architecture");
  EXPECT_EQ(f.get_string("general.architecture"), "tiny");
  EXPECT_EQ(f.get_int("tiny.block_count"), 2);
  EXPECT_EQ(f.find("tiny.eps")->as_float(), 0.5);
  EXPECT_EQ(f.find("tiny.eps")->as_int(), std::nullopt);
  EXPECT_TRUE(f.find("tokenizer.ggml.add_bos_token")->b);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strings, (std::vector<std::string>{"a", "bb", "ccc"}));
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->ints, (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->array_type, gguf::ValueType::int32);
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[1].name, "b.weight");
  EXPECT_EQ(f.tensors[1].type, kTypeQ8_0);
  EXPECT_EQ(f.tensors[1].nbytes, 68u);
  EXPECT_EQ(f.tensors[2].offset, 160u);
  EXPECT_EQ(f.data_offset % 32, 0u);
  EXPECT_EQ(f.data_offset + 166, f.file_size);
}

TEST(GgufBuilt, Version2AndCustomAlignmentParse) {
  GgufSpec s = valid_spec();
  s.version = 2;
  s.kvs.back() = kv_u32("general.alignment", 64);
  s.alignment = 64;
  s.tensors = {{"a", {16}, kTypeF32, 0}, {"b", {16}, kTypeF32, 64}};
  TempDir dir;
  const gguf::File f = gguf::read_file_header(write_gguf(dir, s));
  EXPECT_EQ(f.version, 2u);
  EXPECT_EQ(f.alignment, 64u);
  EXPECT_EQ(f.data_offset % 64, 0u);
}

TEST(GgufCorrupt, BadMagic) {
  GgufSpec s = valid_spec();
  s.magic = "GGML";
  EXPECT_THAT(gguf_error(s), HasSubstr("not a GGUF file: it starts with 'GGML'"));
  EXPECT_THAT(gguf_error(std::string("GG")), HasSubstr("too short for a GGUF header"));
  EXPECT_THAT(gguf_error(std::string()), HasSubstr("0 bytes"));
}

TEST(GgufCorrupt, UnsupportedVersions) {
  GgufSpec s = valid_spec();
  s.version = 1;
  EXPECT_THAT(gguf_error(s), HasSubstr("GGUF version 1 is not supported"));
  s.version = 4;
  EXPECT_THAT(gguf_error(s), HasSubstr("GGUF version 4 is not supported"));
  s.version = 0x03000000;
  EXPECT_THAT(gguf_error(s), HasSubstr("big-endian"));
}

TEST(GgufCorrupt, ErrorNamesTheFile) {
  TempDir dir;
  GgufSpec s = valid_spec();
  s.version = 9;
  const fs::path p = write_gguf(dir, s, "named-file.gguf");
  try {
    gguf::read_file_header(p);
    FAIL() << "expected FormatError";
  } catch (const gguf::FormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr(p.string() + ": "));
    EXPECT_EQ(e.code(), kExitCheckFailed);
  }
}

TEST(GgufCorrupt, MissingFileIsAFormatError) {
  EXPECT_THROW(gguf::read_file_header("/nonexistent/x.gguf"), gguf::FormatError);
}

TEST(GgufCorrupt, HugeKeyLength) {
  GgufSpec s = valid_spec();
  s.kvs.insert(s.kvs.begin() + 1, Bytes().u64(uint64_t{1} << 63).raw("x").data);
  const std::string e = gguf_error(s);
  const size_t offset = 4 + 4 + 8 + 8 + s.kvs[0].size();  // after the fixed header and the first entry
  EXPECT_THAT(e, HasSubstr("metadata entry 1 at header offset " + std::to_string(offset) + ":"));
  EXPECT_THAT(e, HasSubstr("length 9223372036854775808"));
  EXPECT_THAT(e, HasSubstr("bytes are left in the file"));
}

TEST(GgufCorrupt, HugeStringValueLength) {
  GgufSpec s = valid_spec();
  s.kvs.push_back(Bytes().str("general.name").u32(kStr).u64(uint64_t{1} << 63).data);
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("metadata key 'general.name'"));
  EXPECT_THAT(e, HasSubstr("string value"));
  EXPECT_THAT(e, HasSubstr("9223372036854775808"));
}

TEST(GgufCorrupt, KeyLongerThanTheCap) {
  GgufSpec s = valid_spec();
  s.kvs.push_back(kv_u32(std::string(70000, 'k'), 1));
  EXPECT_THAT(gguf_error(s), HasSubstr("more than the 65536 bytes allowed"));
}

TEST(GgufCorrupt, HugeArrayCount) {
  GgufSpec s = valid_spec();
  s.kvs.push_back(Bytes().str("tokenizer.ggml.scores").u32(kArr).u32(kF32).u64(uint64_t{1} << 62).data);
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("metadata key 'tokenizer.ggml.scores'"));
  EXPECT_THAT(e, HasSubstr("claims 4611686018427387904 elements"));
  s.kvs.back() = Bytes().str("tokenizer.ggml.tokens2").u32(kArr).u32(kStr).u64(1000).data;
  EXPECT_THAT(gguf_error(s), HasSubstr("claims 1000 elements"));
}

TEST(GgufCorrupt, ArrayCountAboveTheCapEvenWhenTheFileIsLargeEnough) {
  GgufSpec s = valid_spec();
  const uint64_t n = (uint64_t{1} << 24) + 1;
  s.kvs.push_back(Bytes().str("big").u32(kArr).u32(kU8).u64(n).raw(std::string(n, '\0')).data);
  EXPECT_THAT(gguf_error(s), HasSubstr("more than the 16777216 allowed"));
}

TEST(GgufCorrupt, DeeplyNestedArrays) {
  GgufSpec s = valid_spec();
  Bytes b;
  b.str("nest").u32(kArr);
  for (int k = 0; k < 10; ++k) b.u32(kArr).u64(1);
  b.u32(kU8).u64(0);
  s.kvs.push_back(b.data);
  EXPECT_THAT(gguf_error(s), HasSubstr("nested more than 4 deep"));
}

TEST(GgufCorrupt, NestedArraysWithinTheLimitAreSkipped) {
  GgufSpec s = valid_spec();
  s.kvs.push_back(Bytes().str("nest").u32(kArr).u32(kArr).u64(2).u32(kU8).u64(1).u8(7).u32(kStr).u64(1).str("x").data);
  TempDir dir;
  const gguf::File f = gguf::read_file_header(write_gguf(dir, s));
  EXPECT_EQ(f.find("nest")->array_type, gguf::ValueType::array);
  EXPECT_EQ(f.find("nest")->array_size, 2u);
}

TEST(GgufCorrupt, UnknownValueType) {
  GgufSpec s = valid_spec();
  s.kvs.insert(s.kvs.begin() + 2, Bytes().str("odd.key").u32(13).u32(0).data);
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("metadata key 'odd.key'"));
  EXPECT_THAT(e, HasSubstr("unknown value type 13"));
  s.kvs[2] = Bytes().str("odd.key").u32(kArr).u32(99).u64(0).data;
  EXPECT_THAT(gguf_error(s), HasSubstr("unknown value type 99"));
}

TEST(GgufCorrupt, DuplicateKey) {
  GgufSpec s = valid_spec();
  s.kvs.push_back(kv_u32("tiny.block_count", 3));
  EXPECT_THAT(gguf_error(s), HasSubstr("metadata key 'tiny.block_count' at header offset"));
  EXPECT_THAT(gguf_error(s), HasSubstr("appears twice"));
}

TEST(GgufCorrupt, Uint64AboveInt64Max) {
  GgufSpec s = valid_spec();
  s.kvs.push_back(kv_u64("big.value", ~uint64_t{0}));
  EXPECT_THAT(gguf_error(s), HasSubstr("uint64 value 18446744073709551615"));
}

TEST(GgufCorrupt, CountsTheFileCannotHold) {
  GgufSpec s = valid_spec();
  s.n_kv = uint64_t{1} << 60;
  EXPECT_THAT(gguf_error(s), HasSubstr("header claims 3 tensors and 1152921504606846976 metadata entries"));
  s.n_kv.reset();
  s.n_tensors = ~uint64_t{0};
  EXPECT_THAT(gguf_error(s), HasSubstr("18446744073709551615 tensors"));
  s.n_tensors = 50;  // small enough to pass the count check, the file runs out first
  EXPECT_THAT(gguf_error(s), HasSubstr("the file is truncated"));
}

TEST(GgufCorrupt, TooManyDims) {
  GgufSpec s = valid_spec();
  s.tensors[1].dims = {1, 1, 1, 1, 64};
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("tensor 'b.weight' at header offset"));
  EXPECT_THAT(e, HasSubstr("n_dims = 5"));
}

TEST(GgufCorrupt, UnknownTensorType) {
  GgufSpec s = valid_spec();
  s.tensors[2].type = 4;  // Q4_2, retired
  EXPECT_THAT(gguf_error(s), HasSubstr("tensor 'c.bias' at header offset"));
  EXPECT_THAT(gguf_error(s), HasSubstr("unknown tensor type 4"));
  s.tensors[2].type = 77;
  EXPECT_THAT(gguf_error(s), HasSubstr("unknown tensor type 77"));
}

TEST(GgufCorrupt, DimsOverflow) {
  GgufSpec s = valid_spec();
  s.tensors[0].dims = {uint64_t{1} << 32, uint64_t{1} << 32};
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("tensor 'a.weight'"));
  EXPECT_THAT(e, HasSubstr("overflow"));
  s.tensors[0].dims = {uint64_t{1} << 62, 2};  // fits 64 bits, not int64
  EXPECT_THAT(gguf_error(s), HasSubstr("overflow"));
  s.tensors[0].dims = {uint64_t{1} << 62};  // elements fit, bytes (x4) do not
  EXPECT_THAT(gguf_error(s), HasSubstr("more than 2^64 bytes"));
}

TEST(GgufCorrupt, RowNotAMultipleOfTheBlockSize) {
  GgufSpec s = valid_spec();
  s.tensors[1].dims = {48};
  EXPECT_THAT(gguf_error(s), HasSubstr("dimension 0 (48) is not a multiple of the block size 32 of type Q8_0"));
}

TEST(GgufCorrupt, UnalignedOffset) {
  GgufSpec s = valid_spec();
  s.tensors[2].offset = 161;
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("tensor 'c.bias'"));
  EXPECT_THAT(e, HasSubstr("data offset 161 is not a multiple of the alignment 32"));
}

TEST(GgufCorrupt, TensorPastEndOfFile) {
  GgufSpec s = valid_spec();
  s.data_size = 163;  // c.bias needs [160, 166)
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("tensor 'c.bias' at header offset"));
  EXPECT_THAT(e, HasSubstr("ends past the end of the file"));
  EXPECT_THAT(e, HasSubstr("download it again"));
  s.data_size = 166;
  s.tensors[2].offset = ~uint64_t{0} & ~uint64_t{31};
  EXPECT_THAT(gguf_error(s), HasSubstr("2^64+"));
}

TEST(GgufCorrupt, TensorPastEndMessageHasAbsoluteOffsets) {
  GgufSpec s = valid_spec();
  const std::string full = build(s);
  const uint64_t data_offset = full.size() - 166;
  s.data_size = 165;
  EXPECT_THAT(gguf_error(s),
              HasSubstr("data [" + std::to_string(data_offset + 160) + ", " + std::to_string(data_offset + 166) +
                        ") ends past the end of the file (size " + std::to_string(data_offset + 165) + ")"));
}

TEST(GgufCorrupt, OverlappingTensors) {
  GgufSpec s = valid_spec();
  s.tensors[1].offset = 32;  // a.weight is [0, 64)
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("tensor 'b.weight'"));
  EXPECT_THAT(e, HasSubstr("overlaps tensor 'a.weight'"));
}

TEST(GgufCorrupt, DuplicateTensorNames) {
  GgufSpec s = valid_spec();
  s.tensors[2].name = "a.weight";
  const std::string e = gguf_error(s);
  EXPECT_THAT(e, HasSubstr("tensor 'a.weight'"));
  EXPECT_THAT(e, HasSubstr("duplicate tensor name"));
}

TEST(GgufCorrupt, BadAlignmentValues) {
  for (uint32_t bad : {0u, 3u, 48u}) {
    GgufSpec s = valid_spec();
    s.kvs.back() = kv_u32("general.alignment", bad);
    const std::string e = gguf_error(s);
    EXPECT_THAT(e, HasSubstr("metadata key 'general.alignment'"));
    EXPECT_THAT(e, HasSubstr("general.alignment = " + std::to_string(bad) + " is not a power of two"));
  }
  GgufSpec s = valid_spec();
  s.kvs.back() = kv_str("general.alignment", "32");
  EXPECT_THAT(gguf_error(s), HasSubstr("must be an unsigned integer"));
}

TEST(GgufCorrupt, HostileNamesArePrintedSafely) {
  GgufSpec s = valid_spec();
  s.tensors[2].name = std::string("evil\x1b[2J\nname");
  s.tensors[2].type = 77;
  EXPECT_THAT(gguf_error(s), HasSubstr("tensor 'evil\\x1b[2J\\x0aname'"));
}

// Every cut of a valid file must fail cleanly: no crash, no hang, no huge allocation (ASan).
TEST(GgufTruncated, EveryPrefixOfASmallFileIsRejected) {
  const std::string full = build(valid_spec());
  TempDir dir;
  const fs::path p = dir / "cut.gguf";
  write_file(p, full);
  EXPECT_EQ(gguf_error(full), "");
  for (size_t n = full.size(); n-- > 0;) {
    fs::resize_file(p, n);
    EXPECT_THROW(gguf::read_file_header(p), gguf::FormatError) << "prefix " << n;
  }
}

TEST(GgufTruncated, CutsOfARealFixtureAreRejected) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path src = test::fixtures_dir() / "models/tiny-glm4-Q4_K_M.gguf";
  const uint64_t size = fs::file_size(src);
  TempDir dir;
  const fs::path p = dir / "cut.gguf";
  std::vector<uint64_t> cuts;
  for (uint64_t n = 0; n < 4096; ++n) cuts.push_back(n);           // the first few KB, byte by byte
  for (uint64_t n = 4096; n < 61000; n += 997) cuts.push_back(n);  // across the header (ends ~60 KB)
  for (uint64_t n : {uint64_t{60196}, uint64_t{60224}, size / 2, size - 1}) cuts.push_back(n);  // in the data
  std::string bytes(size, '\0');
  std::ifstream(src, std::ios::binary).read(bytes.data(), static_cast<std::streamsize>(size));
  write_file(p, bytes);
  for (auto it = cuts.rbegin(); it != cuts.rend(); ++it) {  // descending: each cut shortens the same file
    fs::resize_file(p, *it);
    try {
      gguf::read_file_header(p);
      ADD_FAILURE() << "cut at " << *it << " parsed";
    } catch (const gguf::FormatError& e) {
      if (*it >= 60224)
        EXPECT_THAT(e.what(), HasSubstr("ends past the end of the file")) << *it;
      else
        EXPECT_THAT(e.what(), HasSubstr("truncated")) << *it;
    }
  }
}

// Random byte flips: every outcome must be a clean parse or a FormatError (run under ASan).
template <class Parse, class Error>
void flip_bytes_and_parse(const std::string& valid, const char* name, Parse parse) {
  TempDir dir;
  const fs::path p = dir / name;
  write_file(p, valid);
  // Overwrite in place: truncating a file on ext4 flushes it to disk, which is slow.
  std::fstream file(p, std::ios::in | std::ios::out | std::ios::binary);
  std::mt19937 rng(1234);
  for (int round = 0; round < 1500; ++round) {
    std::string bytes = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % bytes.size();
      // Mostly high bytes: they turn lengths and counts into huge numbers.
      bytes[at] = static_cast<char>(rng() % 3 == 0 ? 0xff : rng());
    }
    file.seekp(0);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    file.flush();
    try {
      parse(p);
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "round " << round << ": unexpected exception " << e.what();
    }
  }
}

TEST(GgufTruncated, RandomByteFlipsNeverCrash) {
  flip_bytes_and_parse<decltype(&gguf::read_file_header), gguf::FormatError>(build(valid_spec()), "f.gguf",
                                                                             &gguf::read_file_header);
}

// ---------------------------------------------------------------------------------------------
// safetensors

std::string st_bytes(const std::string& header, size_t data_bytes, std::optional<uint64_t> claimed = {}) {
  return Bytes().u64(claimed.value_or(header.size())).raw(header).raw(std::string(data_bytes, '\1')).data;
}

std::string st_error(const std::string& bytes) {
  TempDir dir;
  const fs::path p = dir / "x.safetensors";
  write_file(p, bytes);
  try {
    safetensors::read_file_header(p);
  } catch (const safetensors::FormatError& e) {
    return e.what();
  }
  return "";
}

const char* kValidHeader = R"({"__metadata__":{"format":"pt"},)"
                           R"("b":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},)"
                           R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
                           R"("e":{"dtype":"U8","shape":[0],"data_offsets":[32,32]}})";

TEST(SafetensorsFixtures, HfShardsParse) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir() / "hf/tiny-glm4-hf";
  std::set<std::string> names;
  for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    SCOPED_TRACE(shard);
    const safetensors::File f = safetensors::read_file_header(dir / shard);
    EXPECT_EQ(f.file_size, fs::file_size(dir / shard));
    EXPECT_EQ(f.data_offset, 8 + f.header_size);
    EXPECT_EQ(f.metadata.at("format"), "pt");
    ASSERT_FALSE(f.tensors.empty());
    uint64_t expect_begin = 0;
    for (const auto& t : f.tensors) {
      EXPECT_EQ(t.begin, expect_begin) << t.name;  // sorted, back to back
      EXPECT_EQ(t.n_elements() * safetensors::dtype_size(t.dtype), t.end - t.begin);
      EXPECT_TRUE(t.dtype == "BF16" || t.dtype == "F32") << t.dtype;
      expect_begin = t.end;
      names.insert(t.name);
    }
    EXPECT_EQ(f.data_offset + expect_begin, f.file_size);
  }
  const safetensors::File first = safetensors::read_file_header(dir / "model-00001-of-00002.safetensors");
  const safetensors::TensorInfo* embed = first.find_tensor("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, "BF16");
  EXPECT_EQ(embed->shape, (std::vector<uint64_t>{2048, 256}));
  EXPECT_EQ(first.find_tensor("nope"), nullptr);
  // Every tensor the index names is in some shard.
  std::ifstream in(dir / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(in);
  for (const auto& [tensor, shard] : index.at("weight_map").items()) EXPECT_TRUE(names.contains(tensor)) << tensor;
}

TEST(Safetensors, DtypeSizes) {
  EXPECT_EQ(safetensors::dtype_size("F64"), 8u);
  EXPECT_EQ(safetensors::dtype_size("F32"), 4u);
  EXPECT_EQ(safetensors::dtype_size("F16"), 2u);
  EXPECT_EQ(safetensors::dtype_size("BF16"), 2u);
  EXPECT_EQ(safetensors::dtype_size("I64"), 8u);
  EXPECT_EQ(safetensors::dtype_size("I32"), 4u);
  EXPECT_EQ(safetensors::dtype_size("I16"), 2u);
  EXPECT_EQ(safetensors::dtype_size("I8"), 1u);
  EXPECT_EQ(safetensors::dtype_size("U8"), 1u);
  EXPECT_EQ(safetensors::dtype_size("BOOL"), 1u);
  EXPECT_EQ(safetensors::dtype_size("F8_E4M3"), 1u);
  EXPECT_EQ(safetensors::dtype_size("F8_E5M2"), 1u);
  EXPECT_EQ(safetensors::dtype_size("Q4"), 0u);
  EXPECT_EQ(safetensors::dtype_size("f32"), 0u);
}

TEST(Safetensors, ValidFileParsesSortedByOffset) {
  TempDir dir;
  write_file(dir / "v.safetensors", st_bytes(kValidHeader, 32));
  const safetensors::File f = safetensors::read_file_header(dir / "v.safetensors");
  EXPECT_EQ(f.metadata.at("format"), "pt");
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].name, "a");
  EXPECT_EQ(f.tensors[1].name, "b");
  EXPECT_EQ(f.tensors[1].shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(f.tensors[1].n_elements(), 6u);
  EXPECT_EQ(f.tensors[2].name, "e");
  EXPECT_EQ(f.header_size, std::string(kValidHeader).size());
}

TEST(SafetensorsCorrupt, TooShortForTheLength) {
  EXPECT_THAT(st_error("abc"), HasSubstr("too short for the 8-byte header length"));
}

TEST(SafetensorsCorrupt, HeaderLengthPastTheFile) {
  const std::string e = st_error(st_bytes(kValidHeader, 32, 100000));
  EXPECT_THAT(e, HasSubstr("header length 100000 at offset 0 exceeds"));
  EXPECT_THAT(e, HasSubstr("truncated"));
  EXPECT_THAT(st_error(st_bytes(kValidHeader, 32, uint64_t{1} << 62)),
              HasSubstr("more than the 100000000 bytes allowed"));
}

TEST(SafetensorsCorrupt, InvalidJson) {
  const std::string e = st_error(st_bytes(R"({"a":{"dtype":"F32",)", 0));
  EXPECT_THAT(e, HasSubstr("the header is not valid JSON"));
  EXPECT_THAT(st_error(st_bytes(std::string(50, '[') + std::string(50, ']'), 0)), HasSubstr("nests deeper than 8"));
}

TEST(SafetensorsCorrupt, NotAnObject) {
  EXPECT_THAT(st_error(st_bytes("[1,2]", 0)), HasSubstr("must be a JSON object"));
  EXPECT_THAT(st_error(st_bytes(R"({"a":5})", 0)), HasSubstr("tensor 'a': the entry must be an object"));
  EXPECT_THAT(st_error(st_bytes(R"({"__metadata__":{"k":1}})", 0)),
              HasSubstr("__metadata__ entry 'k' must be a string"));
}

TEST(SafetensorsCorrupt, ShapeTimesDtypeDisagreesWithOffsets) {
  const std::string e = st_error(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 24));
  EXPECT_THAT(e, HasSubstr("tensor 'w'"));
  EXPECT_THAT(e, HasSubstr("shape [2, 3] of F32 is 24 bytes, but data_offsets [0, 20) span 20 bytes"));
}

TEST(SafetensorsCorrupt, OffsetsPastEndOfFile) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const std::string e = st_error(st_bytes(header, 10));
  EXPECT_THAT(e, HasSubstr("tensor 'w'"));
  const uint64_t base = 8 + header.size();
  EXPECT_THAT(e, HasSubstr("data [" + std::to_string(base) + ", " + std::to_string(base + 16) + ")"));
  EXPECT_THAT(e, HasSubstr("ends past the end of the file"));
}

TEST(SafetensorsCorrupt, Overlap) {
  const std::string e = st_error(st_bytes(
      R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"y":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
      16));
  EXPECT_THAT(e, HasSubstr("tensor 'y': data_offsets [8, 16) overlap tensor 'x' at [0, 16)"));
}

TEST(SafetensorsCorrupt, UnknownDtype) {
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}})", 1)),
              HasSubstr("tensor 'w': unknown dtype 'Q9'"));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", 1)), HasSubstr("\"dtype\""));
}

TEST(SafetensorsCorrupt, BadShapeEntries) {
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1)),
              HasSubstr("shape entry -1 is not a non-negative integer"));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", 1)),
              HasSubstr("shape entry 1.5 is not a non-negative integer"));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", 1)),
              HasSubstr("shape entry \"1\""));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}})", 1)),
              HasSubstr("overflows 64 bits"));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,1]}})", 1)),
              HasSubstr("more than 2^64 bytes"));
}

TEST(SafetensorsCorrupt, BeginAfterEnd) {
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", 8)),
              HasSubstr("data_offsets [8, 4) begin after they end"));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8]}})", 8)),
              HasSubstr("two non-negative integers"));
  EXPECT_THAT(st_error(st_bytes(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[-8,0]}})", 8)),
              HasSubstr("two non-negative integers"));
}

TEST(SafetensorsTruncated, EveryPrefixIsRejected) {
  const std::string full = st_bytes(kValidHeader, 32);
  EXPECT_EQ(st_error(full), "");
  TempDir dir;
  const fs::path p = dir / "cut.safetensors";
  write_file(p, full);
  for (size_t n = full.size(); n-- > 0;) {
    fs::resize_file(p, n);
    EXPECT_THROW(safetensors::read_file_header(p), safetensors::FormatError) << "prefix " << n;
  }
}

TEST(SafetensorsTruncated, RandomByteFlipsNeverCrash) {
  flip_bytes_and_parse<decltype(&safetensors::read_file_header), safetensors::FormatError>(
      st_bytes(kValidHeader, 32), "f.safetensors", &safetensors::read_file_header);
}

TEST(SafetensorsTruncated, CutsOfARealShardAreRejected) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path src = test::fixtures_dir() / "hf/tiny-glm4-hf/model-00002-of-00002.safetensors";
  TempDir dir;
  const fs::path p = dir / "cut.safetensors";
  fs::copy_file(src, p);
  fs::permissions(p, fs::perms::owner_write, fs::perm_options::add);
  const uint64_t size = fs::file_size(p);
  for (uint64_t n : {size - 1, size / 2, uint64_t{4096}}) {
    fs::resize_file(p, n);
    EXPECT_THAT(st_error(test::read_file(p)), HasSubstr("ends past the end of the file")) << n;
  }
  for (uint64_t n = 1700; n-- > 0;) {  // the header is 1600 bytes
    fs::resize_file(p, n);
    EXPECT_THROW(safetensors::read_file_header(p), safetensors::FormatError) << n;
  }
}

}  // namespace
}  // namespace autoglm
