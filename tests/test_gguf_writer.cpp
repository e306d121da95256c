// GGUF writer (round trips through our reader, error cases) and random models (same names, shapes,
// types and metadata keys as the fixtures; deterministic; sanely scaled weights).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "autoglm/gguf.h"
#include "autoglm/gguf_writer.h"
#include "autoglm/kernels.h"
#include "autoglm/model_shape.h"
#include "autoglm/random_model.h"
#include "test_support.h"

namespace autoglm {
namespace {

namespace fs = std::filesystem;
using gguf::ValueType;
using kernels::DType;
using test::TempDir;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Helpers

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t k = 0; k < n; ++k) v[k] = static_cast<uint8_t>(seed + k * 31 + (k >> 8));
  return v;
}

// The stored bytes of a tensor, read straight from the file.
std::vector<uint8_t> tensor_data(const gguf::File& f, const gguf::TensorInfo& t) {
  std::ifstream in(f.path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(f.data_offset + t.offset));
  std::vector<uint8_t> v(t.nbytes);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size()));
  EXPECT_TRUE(in) << t.name;
  return v;
}

// A tensor's values as f32, row by row through the kernels' dequantization.
std::vector<float> tensor_values(const gguf::File& f, const gguf::TensorInfo& t) {
  const std::vector<uint8_t> raw = tensor_data(f, t);
  const auto type = static_cast<DType>(t.type);
  const size_t cols = t.dims[0], rows = t.n_elements() / cols, rb = kernels::row_bytes(type, cols);
  std::vector<float> v(t.n_elements());
  for (size_t r = 0; r < rows; ++r) kernels::dequantize_row(type, raw.data() + r * rb, v.data() + r * cols, cols);
  return v;
}

struct Stats {
  double mean = 0, std = 0;
  bool finite = true;
};
Stats stats(const std::vector<float>& v) {
  Stats s;
  double sum = 0, sq = 0;
  for (float x : v) {
    s.finite = s.finite && std::isfinite(x);
    sum += x;
    sq += double{x} * x;
  }
  s.mean = sum / static_cast<double>(v.size());
  s.std = std::sqrt(std::max(0.0, sq / static_cast<double>(v.size()) - s.mean * s.mean));
  return s;
}

void expect_error(const std::function<void()>& fn, const std::string& substring) {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown; expected one mentioning '" << substring << "'";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(substring));
  }
}

// ---------------------------------------------------------------------------------------------
// Writer round trips

TEST(GgufWriter, EveryScalarTypeRoundTripsInInsertionOrder) {
  TempDir dir;
  gguf::Writer w;
  w.set_string("z.string", "héllo wörld");
  w.set_u8("a.u8", 250);
  w.set_i8("a.i8", -128);
  w.set_u16("a.u16", 65535);
  w.set_i16("a.i16", -32768);
  w.set_u32("a.u32", 4000000000u);
  w.set_i32("a.i32", std::numeric_limits<int32_t>::min());
  w.set_u64("a.u64", static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  w.set_i64("a.i64", std::numeric_limits<int64_t>::min());
  w.set_f32("a.f32", 1.5e-5f);
  w.set_f64("a.f64", 3.141592653589793);
  w.set_bool("a.true", true);
  w.set_bool("a.false", false);
  w.set_string("a.empty", "");
  EXPECT_EQ(w.kv_count(), 14u);
  w.write(dir / "m.gguf");

  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  EXPECT_EQ(f.version, 3u);
  EXPECT_TRUE(f.tensors.empty());
  std::vector<std::string> keys;
  for (const auto& [k, v] : f.metadata) keys.push_back(k);
  EXPECT_THAT(keys, ::testing::ElementsAre("z.string", "a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.u64",
                                           "a.i64", "a.f32", "a.f64", "a.true", "a.false", "a.empty"));
  EXPECT_EQ(f.find("z.string")->str, "héllo wörld");
  EXPECT_EQ(f.find("a.u8")->type, ValueType::uint8);
  EXPECT_EQ(f.get_int("a.u8"), 250);
  EXPECT_EQ(f.find("a.i8")->type, ValueType::int8);
  EXPECT_EQ(f.get_int("a.i8"), -128);
  EXPECT_EQ(f.find("a.u16")->type, ValueType::uint16);
  EXPECT_EQ(f.get_int("a.u16"), 65535);
  EXPECT_EQ(f.find("a.i16")->type, ValueType::int16);
  EXPECT_EQ(f.get_int("a.i16"), -32768);
  EXPECT_EQ(f.find("a.u32")->type, ValueType::uint32);
  EXPECT_EQ(f.get_int("a.u32"), 4000000000);
  EXPECT_EQ(f.find("a.i32")->type, ValueType::int32);
  EXPECT_EQ(f.get_int("a.i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(f.find("a.u64")->type, ValueType::uint64);
  EXPECT_EQ(f.get_int("a.u64"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(f.find("a.i64")->type, ValueType::int64);
  EXPECT_EQ(f.get_int("a.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.find("a.f32")->type, ValueType::float32);
  EXPECT_EQ(f.find("a.f32")->f, double{1.5e-5f});
  EXPECT_EQ(f.find("a.f64")->type, ValueType::float64);
  EXPECT_EQ(f.find("a.f64")->f, 3.141592653589793);
  EXPECT_EQ(f.find("a.true")->type, ValueType::boolean);
  EXPECT_TRUE(f.find("a.true")->b);
  EXPECT_FALSE(f.find("a.false")->b);
  EXPECT_EQ(f.get_string("a.empty"), "");
}

TEST(GgufWriter, EveryArrayTypeRoundTrips) {
  TempDir dir;
  gguf::Writer w;
  const std::vector<int32_t> i32 = {1, -2, std::numeric_limits<int32_t>::max()};
  const std::vector<uint32_t> u32 = {0, 7, std::numeric_limits<uint32_t>::max()};
  const std::vector<float> f32 = {0.5f, -1e30f, 3.25f};
  const std::vector<double> f64 = {1e-300, -2.5};
  const std::vector<std::string> strings = {"a", "", "Ġthe", "<|endoftext|>", std::string(1000, 'x')};
  w.set_array_i32("i32", i32);
  w.set_array_u32("u32", u32);
  w.set_array_f32("f32", f32);
  w.set_array_f64("f64", f64);
  w.set_array_strings("strings", strings);
  w.set_array_strings("no_strings", std::vector<std::string>{});
  w.set_array_f32("no_floats", std::vector<float>{});
  // The generic integer form, at each type's extremes.
  const std::vector<std::tuple<ValueType, int64_t, int64_t>> ranges = {
      {ValueType::uint8, 0, 255},
      {ValueType::int8, -128, 127},
      {ValueType::uint16, 0, 65535},
      {ValueType::int16, -32768, 32767},
      {ValueType::uint32, 0, 4294967295},
      {ValueType::int32, -2147483648, 2147483647},
      {ValueType::uint64, 0, std::numeric_limits<int64_t>::max()},
      {ValueType::int64, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()},
      {ValueType::boolean, 0, 1},
  };
  for (const auto& [type, lo, hi] : ranges)
    w.set_array_ints(gguf::value_type_name(type), type, std::vector<int64_t>{lo, hi, lo});
  w.write(dir / "m.gguf");

  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  auto ints = [&](const char* key) { return f.find(key)->ints; };
  EXPECT_EQ(f.find("i32")->array_type, ValueType::int32);
  EXPECT_EQ(ints("i32"), (std::vector<int64_t>{1, -2, std::numeric_limits<int32_t>::max()}));
  EXPECT_EQ(f.find("u32")->array_type, ValueType::uint32);
  EXPECT_EQ(ints("u32"), (std::vector<int64_t>{0, 7, std::numeric_limits<uint32_t>::max()}));
  EXPECT_EQ(f.find("f32")->array_type, ValueType::float32);
  EXPECT_EQ(f.find("f32")->floats, (std::vector<double>{0.5, double{-1e30f}, 3.25}));
  EXPECT_EQ(f.find("f64")->array_type, ValueType::float64);
  EXPECT_EQ(f.find("f64")->floats, f64);
  EXPECT_EQ(f.find("strings")->strings, strings);
  EXPECT_EQ(f.find("no_strings")->array_size, 0u);
  EXPECT_EQ(f.find("no_strings")->array_type, ValueType::string);
  EXPECT_EQ(f.find("no_floats")->array_size, 0u);
  for (const auto& [type, lo, hi] : ranges) {
    const gguf::Value* v = f.find(gguf::value_type_name(type));
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->type, ValueType::array);
    EXPECT_EQ(v->array_type, type);
    EXPECT_EQ(v->ints, (std::vector<int64_t>{lo, hi, lo})) << gguf::value_type_name(type);
  }
}

TEST(GgufWriter, NoTensorsAtAll) {
  TempDir dir;
  gguf::Writer w;
  w.write(dir / "empty.gguf");
  const gguf::File f = gguf::read_file_header(dir / "empty.gguf");
  EXPECT_TRUE(f.metadata.empty());
  EXPECT_TRUE(f.tensors.empty());
  EXPECT_EQ(f.file_size, 32u);  // 24-byte header padded to the alignment
}

TEST(GgufWriter, OneTensorRoundTrips) {
  TempDir dir;
  gguf::Writer w;
  w.set_string("general.architecture", "test");
  const std::vector<float> values = {1, 2, 3, 4.5f, -6};
  w.add_tensor("x.weight", {5}, 0,
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4));
  w.write(dir / "one.gguf");
  const gguf::File f = gguf::read_file_header(dir / "one.gguf");
  ASSERT_EQ(f.tensors.size(), 1u);
  const gguf::TensorInfo& t = f.tensors[0];
  EXPECT_EQ(t.name, "x.weight");
  EXPECT_EQ(t.dims, (std::vector<uint64_t>{5}));
  EXPECT_EQ(t.type, 0u);
  EXPECT_EQ(t.offset, 0u);
  EXPECT_EQ(f.data_offset % 32, 0u);
  std::vector<float> back(5);
  const std::vector<uint8_t> raw = tensor_data(f, t);
  std::memcpy(back.data(), raw.data(), raw.size());
  EXPECT_EQ(back, values);
  EXPECT_EQ(f.file_size, f.data_offset + 32);  // the last tensor is padded too, as ggml does
}

TEST(GgufWriter, ManyTensorsWithOddDimsKeepOrderOffsetsAndBytes) {
  TempDir dir;
  gguf::Writer w;
  struct T {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type;
  };
  const std::vector<T> specs = {
      {"a", {7}, 0},          {"b", {5, 3}, 1},          {"c", {1, 1, 1, 1}, 0}, {"d", {3, 1, 2}, 30},
      {"e", {96, 5}, 8},      {"f", {256, 3}, 12},       {"g", {1}, 1},          {"h", {32, 1, 1, 3}, 2},
      {"i", {256, 1}, 14},    {"j", {11, 13, 17}, 0},
  };
  std::map<std::string, std::vector<uint8_t>> bytes;
  uint8_t seed = 1;
  for (const T& t : specs) {
    bytes[t.name] = pattern(gguf::tensor_nbytes(t.dims, t.type), seed++);
    w.add_tensor(t.name, t.dims, t.type, bytes[t.name]);
  }
  EXPECT_EQ(w.tensor_count(), specs.size());
  w.write(dir / "many.gguf");

  const gguf::File f = gguf::read_file_header(dir / "many.gguf");
  ASSERT_EQ(f.tensors.size(), specs.size());
  uint64_t prev_end = 0;
  for (size_t k = 0; k < specs.size(); ++k) {
    const gguf::TensorInfo& t = f.tensors[k];
    EXPECT_EQ(t.name, specs[k].name);
    EXPECT_EQ(t.dims, specs[k].dims);
    EXPECT_EQ(t.type, specs[k].type);
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_GE(t.offset, prev_end) << t.name;
    EXPECT_LT(t.offset, prev_end + 32) << t.name;  // no more padding than alignment needs
    prev_end = t.offset + t.nbytes;
    EXPECT_EQ(tensor_data(f, t), bytes[t.name]) << t.name;
  }
}

TEST(GgufWriter, EveryKnownTensorTypeHasTheReadersSize) {
  TempDir dir;
  gguf::Writer w;
  size_t n = 0;
  for (uint32_t id = 0; id < 64; ++id) {
    const gguf::TypeInfo* info = gguf::type_info(id);
    if (!info) continue;
    const std::vector<uint64_t> dims = {uint64_t{info->block_size} * 3, 2};
    const uint64_t nbytes = gguf::tensor_nbytes(dims, id);
    EXPECT_EQ(nbytes, 6u * info->type_size) << info->name;
    w.add_tensor(std::string("t.") + info->name, dims, id, pattern(nbytes, static_cast<uint8_t>(id)));
    ++n;
  }
  EXPECT_GE(n, 30u);
  w.write(dir / "types.gguf");
  const gguf::File f = gguf::read_file_header(dir / "types.gguf");
  ASSERT_EQ(f.tensors.size(), n);
  for (const gguf::TensorInfo& t : f.tensors) {
    const gguf::TypeInfo* info = gguf::type_info(t.type);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(t.name, std::string("t.") + info->name);
    EXPECT_EQ(t.nbytes, 6u * info->type_size);
    EXPECT_EQ(tensor_data(f, t), pattern(t.nbytes, static_cast<uint8_t>(t.type))) << t.name;
  }
}

TEST(GgufWriter, KernelTypesMatchKernelRowBytes) {
  for (DType type : {DType::f32, DType::f16, DType::bf16, DType::q8_0, DType::q4_0, DType::q4_k, DType::q6_k}) {
    const std::vector<uint64_t> dims = {512, 3};
    EXPECT_EQ(gguf::tensor_nbytes(dims, static_cast<uint32_t>(type)), 3 * kernels::row_bytes(type, 512))
        << kernels::dtype_info(type).name;
  }
}

TEST(GgufWriter, CustomAlignmentIsUsedForOffsetsAndData) {
  TempDir dir;
  gguf::Writer w;
  w.set_u32("general.alignment", 128);
  EXPECT_EQ(w.alignment(), 128u);
  w.add_tensor("a", {3}, 0, pattern(12, 1));
  w.add_tensor("b", {5}, 0, pattern(20, 2));
  w.write(dir / "aligned.gguf");
  const gguf::File f = gguf::read_file_header(dir / "aligned.gguf");
  EXPECT_EQ(f.alignment, 128u);
  EXPECT_EQ(f.data_offset % 128, 0u);
  EXPECT_EQ(f.tensors[1].offset, 128u);
  EXPECT_EQ(tensor_data(f, f.tensors[1]), pattern(20, 2));
  EXPECT_EQ(f.file_size, f.data_offset + 256);
}

TEST(GgufWriter, StreamingSourceMayWriteAnyPieces) {
  TempDir dir;
  const std::vector<uint8_t> all = pattern(34 * 100, 9);  // Q8_0, [32*10, 10]
  int calls = 0;
  gguf::Writer w;
  w.add_tensor("q", {320, 10}, 8, [&](const gguf::ByteSink& sink) {
    ++calls;
    const std::span<const uint8_t> s(all);
    sink(s.subspan(0, 1));
    sink(s.subspan(1, 0));
    sink(s.subspan(1, 7));
    sink(s.subspan(8));
  });
  w.write(dir / "a.gguf");
  w.write(dir / "b.gguf");  // each write asks the source again
  EXPECT_EQ(calls, 2);
  const gguf::File f = gguf::read_file_header(dir / "a.gguf");
  EXPECT_EQ(tensor_data(f, f.tensors[0]), all);
  EXPECT_EQ(test::read_file(dir / "a.gguf"), test::read_file(dir / "b.gguf"));
}

// ---------------------------------------------------------------------------------------------
// Writer errors

TEST(GgufWriter, RejectsDuplicateKeysAndLeavesTheWriterUsable) {
  gguf::Writer w;
  w.set_u32("a", 1);
  expect_error([&] { w.set_u32("a", 2); }, "'a' set twice");
  expect_error([&] { w.set_string("a", "x"); }, "'a' set twice");
  expect_error([&] { w.set_array_i32("a", std::vector<int32_t>{1}); }, "'a' set twice");
  expect_error([&] { w.set_string("", "x"); }, "empty metadata key");
  EXPECT_EQ(w.kv_count(), 1u);
  TempDir dir;
  w.write(dir / "ok.gguf");
  EXPECT_EQ(gguf::read_file_header(dir / "ok.gguf").metadata.size(), 1u);
}

TEST(GgufWriter, RejectsValuesTheReaderWouldReject) {
  gguf::Writer w;
  expect_error([&] { w.set_u64("big", uint64_t{1} << 63); }, "2^63-1");
  expect_error([&] { w.set_array_ints("u8s", ValueType::uint8, std::vector<int64_t>{1, 256}); },
               "element 1 = 256 does not fit uint8");
  expect_error([&] { w.set_array_ints("i8s", ValueType::int8, std::vector<int64_t>{-129}); }, "does not fit int8");
  expect_error([&] { w.set_array_ints("bools", ValueType::boolean, std::vector<int64_t>{2}); }, "does not fit bool");
  expect_error([&] { w.set_array_ints("fs", ValueType::float32, std::vector<int64_t>{1}); },
               "not an integer element type");
  expect_error([&] { w.set_u32("general.alignment", 48); }, "not a power of two");
  expect_error([&] { w.set_u32("general.alignment", 0); }, "not a power of two");
  expect_error([&] { w.set_u64("general.alignment", 64); }, "general.alignment must be a uint32");
  expect_error([&] { w.set_string(std::string(64 * 1024 + 1, 'k'), "v"); }, "metadata key of 65537 bytes");
  EXPECT_EQ(w.kv_count(), 0u);
  EXPECT_EQ(w.alignment(), 32u);
}

TEST(GgufWriter, RejectsBadTensors) {
  gguf::Writer w;
  w.add_tensor("t", {4}, 0, pattern(16, 0));
  expect_error([&] { w.add_tensor("t", {4}, 0, pattern(16, 0)); }, "tensor 't' added twice");
  expect_error([&] { w.add_tensor("f", {4}, 0, pattern(15, 0)); }, "15 bytes given, but [4] of F32 is 16 bytes");
  expect_error([&] { w.add_tensor("f", {2, 2}, 1, pattern(16, 0)); }, "16 bytes given, but [2, 2] of F16 is 8 bytes");
  expect_error([&] { w.add_tensor("q", {48, 2}, 8, pattern(102, 0)); },
               "ne[0] = 48 is not a multiple of Q8_0's block size 32");
  expect_error([&] { w.add_tensor("k", {128}, 12, pattern(72, 0)); }, "not a multiple of Q4_K's block size 256");
  expect_error([&] { w.add_tensor("u", {4}, 4, pattern(16, 0)); }, "unknown ggml tensor type 4");
  expect_error([&] { w.add_tensor("u", {4}, 1000, pattern(16, 0)); }, "unknown ggml tensor type 1000");
  expect_error([&] { w.add_tensor("d", {}, 0, pattern(4, 0)); }, "1 to 4 dims, not 0");
  expect_error([&] { w.add_tensor("d", {1, 1, 1, 1, 1}, 0, pattern(4, 0)); }, "1 to 4 dims, not 5");
  expect_error([&] { w.add_tensor("z", {4, 0}, 0, pattern(0, 0)); }, "contain a zero");
  const gguf::TensorSource nothing = [](const gguf::ByteSink&) {};
  expect_error([&] { w.add_tensor("o", {uint64_t{1} << 40, uint64_t{1} << 40}, 0, nothing); }, "more than 2^63");
  expect_error([&] { w.add_tensor("", {4}, 0, pattern(16, 0)); }, "empty tensor name");
  expect_error([&] { w.add_tensor(std::string(64, 'n'), {4}, 0, pattern(16, 0)); }, "ggml allows at most 63");
  expect_error([&] { w.add_tensor("s", {4}, 0, gguf::TensorSource()); }, "no data source");
  EXPECT_EQ(w.tensor_count(), 1u);
  w.add_tensor(std::string(63, 'n'), {4}, 0, pattern(16, 0));  // ggml's longest name is fine
  expect_error([] { gguf::tensor_nbytes(std::vector<uint64_t>{33}, 2); }, "GGUF writer: dims [33]");
}

TEST(GgufWriter, MissingFolderIsAClearError) {
  TempDir dir;
  gguf::Writer w;
  expect_error([&] { w.write(dir / "no" / "such" / "m.gguf"); }, "m.gguf.tmp: cannot create: No such file");
  EXPECT_FALSE(fs::exists(dir / "no"));
}

TEST(GgufWriter, FailedRenameRemovesTheTemporaryFile) {
  TempDir dir;
  fs::create_directories(dir / "m.gguf" / "inside");  // a non-empty folder cannot be replaced by a file
  gguf::Writer w;
  w.add_tensor("a", {4}, 0, pattern(16, 0));
  expect_error([&] { w.write(dir / "m.gguf"); }, "cannot rename");
  EXPECT_FALSE(fs::exists(dir / "m.gguf.tmp"));
  EXPECT_TRUE(fs::is_directory(dir / "m.gguf"));
}

TEST(GgufWriter, FailingSourceLeavesTheOldFileAndNoTemporary) {
  TempDir dir;
  test::write_file(dir / "m.gguf", "old contents");
  auto try_write = [&](gguf::TensorSource source, const std::string& message) {
    gguf::Writer w;
    w.add_tensor("before", {8}, 0, pattern(32, 1));
    w.add_tensor("t", {4}, 0, std::move(source));
    expect_error([&] { w.write(dir / "m.gguf"); }, message);
    EXPECT_EQ(test::read_file(dir / "m.gguf"), "old contents");
    EXPECT_FALSE(fs::exists(dir / "m.gguf.tmp"));
  };
  const std::vector<uint8_t> bytes = pattern(32, 0);
  const std::string too_few = "'t' produced 15 bytes, expected 16", too_many = "'t' produced more than its 16 bytes";
  try_write([&](const gguf::ByteSink& sink) { sink(std::span(bytes).first(15)); }, too_few);
  try_write([&](const gguf::ByteSink& sink) { sink(std::span(bytes).first(17)); }, too_many);
  try_write([&](const gguf::ByteSink& sink) {
    sink(std::span(bytes).first(8));
    sink(std::span(bytes).first(9));
  }, too_many);
  try_write([](const gguf::ByteSink&) { throw Error(kExitCheckFailed, "generator broke"); }, "generator broke");
}

TEST(GgufWriter, ReplacesAnExistingFileWhole) {
  TempDir dir;
  test::write_file(dir / "m.gguf", std::string(100000, 'x'));
  gguf::Writer w;
  w.set_bool("new", true);
  w.write(dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  EXPECT_EQ(f.file_size, 64u);
  EXPECT_NE(f.find("new"), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Random models

// What the fixtures have: 2 layers, d_model 256, 4 heads, 2 KV heads, head_dim 64, FFN 512.
model::RandomModelSpec fixture_spec(const std::string& arch, DType type, bool mix = false) {
  model::RandomModelSpec s;
  s.arch = arch;
  s.vocab_size = arch == "llama" ? 1024 : 2048;
  s.weight_type = type;
  s.q4_k_m_mix = mix;
  s.seed = 7;
  return s;
}

using TensorKey = std::pair<std::vector<uint64_t>, uint32_t>;
std::map<std::string, TensorKey> tensor_map(const gguf::File& f) {
  std::map<std::string, TensorKey> m;
  for (const gguf::TensorInfo& t : f.tensors) m[t.name] = {t.dims, t.type};
  return m;
}

// Key -> "type" or "array of type".
std::map<std::string, std::string> key_types(const gguf::File& f) {
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : f.metadata)
    m[k] = v.type == ValueType::array ? std::string("array of ") + gguf::value_type_name(v.array_type)
                                      : gguf::value_type_name(v.type);
  return m;
}

// The fixtures' scales: embeddings std 1, matrices 1/sqrt(fan_in), norms 1 +- 0.1, biases 0.1.
double expected_std(const gguf::TensorInfo& t) {
  if (t.name == "token_embd.weight") return 1.0;
  if (t.dims.size() == 1) return 0.1;
  return 1.0 / std::sqrt(static_cast<double>(t.dims[0]));
}

class RandomModelVsFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(RandomModelVsFixture, F32HasTheFixturesTensorsAndKeys) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string arch = GetParam();
  TempDir dir;
  model::write_random_model(fixture_spec(arch, DType::f32), dir / "m.gguf");
  const gguf::File ours = gguf::read_file_header(dir / "m.gguf");
  const gguf::File ref = gguf::read_file_header(test::fixtures_dir() / "models" / ("tiny-" + arch + "-f32.gguf"));
  EXPECT_EQ(tensor_map(ours), tensor_map(ref));
  EXPECT_EQ(key_types(ours), key_types(ref));
  for (const char* key : {"general.architecture", "general.file_type", "tokenizer.ggml.model", "tokenizer.ggml.pre",
                          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    EXPECT_EQ(ours.find(key)->i, ref.find(key)->i) << key;
    EXPECT_EQ(ours.find(key)->str, ref.find(key)->str) << key;
  }
  for (const std::string suffix : {".context_length", ".embedding_length", ".block_count", ".feed_forward_length",
                                   ".attention.head_count", ".attention.head_count_kv", ".vocab_size",
                                   ".rope.dimension_count"})
    EXPECT_EQ(ours.get_int(arch + suffix), ref.get_int(arch + suffix)) << suffix;
  EXPECT_EQ(ours.find(arch + ".attention.layer_norm_rms_epsilon")->f,
            ref.find(arch + ".attention.layer_norm_rms_epsilon")->f);
  EXPECT_EQ(ours.find(arch + ".rope.freq_base")->f, ref.find(arch + ".rope.freq_base")->f);
  EXPECT_EQ(ours.find("tokenizer.ggml.add_bos_token")->b, ref.find("tokenizer.ggml.add_bos_token")->b);
  EXPECT_EQ(ours.find("tokenizer.ggml.tokens")->array_size, ref.find("tokenizer.ggml.tokens")->array_size);
}

TEST_P(RandomModelVsFixture, Q4KMHasTheFixturesTensorsTypesAndKeys) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string arch = GetParam();
  TempDir dir;
  model::write_random_model(fixture_spec(arch, DType::q4_k, true), dir / "m.gguf");
  const gguf::File ours = gguf::read_file_header(dir / "m.gguf");
  const gguf::File ref = gguf::read_file_header(test::fixtures_dir() / "models" / ("tiny-" + arch + "-Q4_K_M.gguf"));
  EXPECT_EQ(tensor_map(ours), tensor_map(ref));
  EXPECT_EQ(key_types(ours), key_types(ref));
  EXPECT_EQ(ours.get_int("general.file_type"), 15);
  EXPECT_EQ(ours.get_int("general.quantization_version"), 2);
}

TEST_P(RandomModelVsFixture, OtherTypesHaveTheFixturesKeysAndTypes) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string arch = GetParam();
  const std::vector<std::pair<DType, std::string>> types = {
      {DType::f16, "F16"}, {DType::bf16, "BF16"}, {DType::q8_0, "Q8_0"}, {DType::q4_0, "Q4_0"}};
  for (const auto& [type, name] : types) {
    const fs::path ref_path = test::fixtures_dir() / "models" / ("tiny-" + arch + "-" + name + ".gguf");
    if (!fs::exists(ref_path)) continue;  // BF16 exists for glm4 only
    TempDir dir;
    model::write_random_model(fixture_spec(arch, type), dir / "m.gguf");
    const gguf::File ours = gguf::read_file_header(dir / "m.gguf");
    const gguf::File ref = gguf::read_file_header(ref_path);
    EXPECT_EQ(key_types(ours), key_types(ref)) << name;
    EXPECT_EQ(ours.get_int("general.file_type"), ref.get_int("general.file_type")) << name;
    for (const auto& [tensor, key] : tensor_map(ours)) {
      const gguf::TensorInfo* r = ref.find_tensor(tensor);
      ASSERT_NE(r, nullptr) << tensor;
      EXPECT_EQ(key.first, r->dims) << tensor;
      // llama.cpp keeps output.weight at Q6_K in its Q4_0 files; ours is pure Q4_0.
      if (!(tensor == "output.weight" && type == DType::q4_0)) {
        EXPECT_EQ(key.second, r->type) << name << " " << tensor;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, RandomModelVsFixture, ::testing::Values("glm4", "llama", "qwen2"));

TEST(RandomModel, ReadModelShapeReportsTheSpec) {
  TempDir dir;
  for (const char* arch : {"glm4", "llama", "qwen2"}) {
    model::RandomModelSpec s;
    s.arch = arch;
    s.n_layers = 3;
    s.d_model = 192;
    s.n_heads = 6;
    s.n_kv_heads = 3;
    s.head_dim = 48;  // != d_model / n_heads: key_length is written
    s.ffn_dim = 320;
    s.vocab_size = 300;
    s.context_length = 1000;
    s.tied_embeddings = true;
    s.weight_type = DType::q8_0;
    model::write_random_model(s, dir / "m.gguf");
    const model::ModelShape shape = model::read_model_shape(dir / "m.gguf");
    EXPECT_EQ(shape.architecture, arch);
    EXPECT_EQ(shape.n_layers, 3u);
    EXPECT_EQ(shape.d_model, 192u);
    EXPECT_EQ(shape.n_heads, 6u);
    EXPECT_EQ(shape.n_kv_heads, 3u);
    EXPECT_EQ(shape.head_dim, 48u);
    EXPECT_EQ(shape.ffn_dim, 320u);
    EXPECT_EQ(shape.vocab_size, 300u);
    EXPECT_EQ(shape.context_length, 1000u);
    EXPECT_TRUE(shape.tied_embeddings);
    EXPECT_EQ(shape.stored_type, "Q8_0");
    const gguf::File f = gguf::read_file_header(dir / "m.gguf");
    EXPECT_EQ(f.get_int(std::string(arch) + ".attention.value_length"), 48);
    EXPECT_EQ(f.get_int(std::string(arch) + ".rope.dimension_count"), std::string(arch) == "glm4" ? 24 : 48);
    EXPECT_EQ(f.find_tensor("blk.2.attn_q.weight")->dims, (std::vector<uint64_t>{192, 288}));
    EXPECT_EQ(f.find_tensor("blk.2.attn_k.weight")->dims, (std::vector<uint64_t>{192, 144}));
    EXPECT_EQ(f.find_tensor("blk.2.attn_output.weight")->dims, (std::vector<uint64_t>{288, 192}));
  }
}

TEST(RandomModel, DefaultHeadDimWritesNoKeyLength) {
  TempDir dir;
  model::RandomModelSpec s;  // d_model 256 / 4 heads = head_dim 64
  model::write_random_model(s, dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  EXPECT_EQ(f.find("llama.attention.key_length"), nullptr);
  EXPECT_EQ(f.find("llama.attention.value_length"), nullptr);
  EXPECT_EQ(f.find("general.alignment"), nullptr);
  EXPECT_EQ(f.find("general.quantization_version"), nullptr);  // f32, as in the fixtures
  EXPECT_EQ(model::read_model_shape(dir / "m.gguf").head_dim, 64u);
}

TEST(RandomModel, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir dir;
  for (DType type : {DType::f32, DType::q4_k}) {
    model::RandomModelSpec s = fixture_spec("glm4", type, type == DType::q4_k);
    s.threads = 1;
    model::write_random_model(s, dir / "a.gguf");
    s.threads = 2;  // threads split rows differently: same bytes
    model::write_random_model(s, dir / "b.gguf");
    s.seed += 1;
    model::write_random_model(s, dir / "c.gguf");
    const std::string a = test::read_file(dir / "a.gguf"), b = test::read_file(dir / "b.gguf"),
                      c = test::read_file(dir / "c.gguf");
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    EXPECT_EQ(a.size(), c.size());
    // Every tensor differs between seeds, not just one.
    const gguf::File fa = gguf::read_file_header(dir / "a.gguf"), fc = gguf::read_file_header(dir / "c.gguf");
    for (size_t k = 0; k < fa.tensors.size(); ++k)
      EXPECT_NE(tensor_data(fa, fa.tensors[k]), tensor_data(fc, fc.tensors[k])) << fa.tensors[k].name;
  }
}

TEST(RandomModel, WeightsAreScaledLikeTheFixtures) {
  TempDir dir;
  model::write_random_model(fixture_spec("glm4", DType::f32), dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  for (const gguf::TensorInfo& t : f.tensors) {
    const Stats s = stats(tensor_values(f, t));
    ASSERT_TRUE(s.finite) << t.name;
    const double mean = t.name.ends_with("norm.weight") ? 1.0 : 0.0, std = expected_std(t);
    EXPECT_NEAR(s.mean, mean, 0.3 * std) << t.name;
    EXPECT_NEAR(s.std, std, 0.15 * std) << t.name;
  }
}

TEST(RandomModel, TiedEmbeddingsAreScaledAsAnOutputLayer) {
  TempDir dir;
  model::RandomModelSpec s = fixture_spec("qwen2", DType::f32);
  s.tied_embeddings = true;
  model::write_random_model(s, dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_NEAR(stats(tensor_values(f, *f.find_tensor("token_embd.weight"))).std, 1.0 / 16, 0.005);
}

TEST(RandomModel, EachWeightTypeStoresWhatItSays) {
  const std::vector<std::tuple<DType, bool, int64_t, std::string>> cases = {
      {DType::f32, false, 0, "F32"},   {DType::f16, false, 1, "F16"},     {DType::bf16, false, 32, "BF16"},
      {DType::q8_0, false, 7, "Q8_0"}, {DType::q4_0, false, 2, "Q4_0"},   {DType::q4_k, false, 14, "Q4_K_S"},
      {DType::q4_k, true, 15, "Q4_K_M"}, {DType::q6_k, false, 18, "Q6_K"},
  };
  TempDir dir;
  for (const auto& [type, mix, file_type, label] : cases) {
    model::RandomModelSpec s = fixture_spec("llama", type, mix);
    s.n_layers = 8;  // enough layers for Q4_K_M's pattern
    model::write_random_model(s, dir / "m.gguf");
    const gguf::File f = gguf::read_file_header(dir / "m.gguf");
    EXPECT_EQ(f.get_int("general.file_type"), file_type) << label;
    EXPECT_EQ(model::read_model_shape(dir / "m.gguf").stored_type, label);
    for (const gguf::TensorInfo& t : f.tensors) {
      uint32_t want = static_cast<uint32_t>(type);
      if (t.dims.size() == 1) want = 0;
      // llama.cpp's use_more_bits() for 8 layers: 0, 3, 6, 7.
      const bool more_bits = t.name == "output.weight" || t.name.starts_with("blk.0.") ||
                             t.name.starts_with("blk.3.") || t.name.starts_with("blk.6.") ||
                             t.name.starts_with("blk.7.");
      const bool q6 = t.name == "output.weight" || t.name.ends_with("attn_v.weight") ||
                      t.name.ends_with("ffn_down.weight");
      if (mix && more_bits && q6) want = static_cast<uint32_t>(DType::q6_k);
      EXPECT_EQ(t.type, want) << label << " " << t.name;
      const Stats st = stats(tensor_values(f, t));
      EXPECT_TRUE(st.finite) << label << " " << t.name;
      EXPECT_NEAR(st.std, expected_std(t), 0.25 * expected_std(t)) << label << " " << t.name;  // not collapsed
    }
  }
}

TEST(RandomModel, TiedQ4KMKeepsTheEmbeddingAtQ6K) {
  TempDir dir;
  model::RandomModelSpec s = fixture_spec("qwen2", DType::q4_k, true);
  s.tied_embeddings = true;
  model::write_random_model(s, dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->type, static_cast<uint32_t>(DType::q6_k));  // as llama.cpp does
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->type, static_cast<uint32_t>(DType::q4_k));
}

TEST(RandomModel, ByteLevelVocab) {
  TempDir dir;
  model::RandomModelSpec s = fixture_spec("glm4", DType::f32);
  s.vocab_size = 300;
  model::write_random_model(s, dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  const std::vector<std::string>& tokens = f.find("tokenizer.ggml.tokens")->strings;
  const std::vector<int64_t>& types = f.find("tokenizer.ggml.token_type")->ints;
  ASSERT_EQ(tokens.size(), 300u);
  ASSERT_EQ(types.size(), 300u);
  EXPECT_EQ(std::set<std::string>(tokens.begin(), tokens.end()).size(), 300u);
  EXPECT_EQ(tokens[0], "!");         // GPT-2's order: printable bytes first
  EXPECT_EQ(tokens[93], "~");
  EXPECT_EQ(tokens[94], "¡");
  EXPECT_EQ(tokens[188], "Ā");       // byte 0
  EXPECT_EQ(tokens[188 + 32], "Ġ");  // byte 32 (space)
  EXPECT_EQ(tokens[256], "<|tok_256|>");
  EXPECT_EQ(tokens[299], "<|endoftext|>");
  EXPECT_EQ(types[299], 3);
  EXPECT_EQ(std::count(types.begin(), types.end(), 1), 299);
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 299);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 299);
  EXPECT_EQ(f.find("tokenizer.ggml.merges")->array_size, 0u);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "glm4");
}

TEST(RandomModel, SentencePieceVocabForLlama) {
  TempDir dir;
  model::RandomModelSpec s = fixture_spec("llama", DType::f32);
  s.vocab_size = 260;
  model::write_random_model(s, dir / "m.gguf");
  const gguf::File f = gguf::read_file_header(dir / "m.gguf");
  const std::vector<std::string>& tokens = f.find("tokenizer.ggml.tokens")->strings;
  const std::vector<int64_t>& types = f.find("tokenizer.ggml.token_type")->ints;
  ASSERT_EQ(tokens.size(), 260u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[258], "<0xFF>");
  EXPECT_EQ(tokens[259], "<|tok_259|>");
  EXPECT_EQ(std::vector<int64_t>(types.begin(), types.begin() + 4), (std::vector<int64_t>{2, 3, 3, 6}));
  EXPECT_EQ(types[258], 6);
  EXPECT_EQ(types[259], 1);
  EXPECT_EQ(f.find("tokenizer.ggml.scores")->floats.size(), 260u);
  EXPECT_EQ(f.get_int("tokenizer.ggml.unknown_token_id"), 0);
}

TEST(RandomModel, RejectsImpossibleSpecs) {
  TempDir dir;
  auto bad = [&](auto change, const std::string& message) {
    model::RandomModelSpec s;
    change(s);
    expect_error([&] { model::write_random_model(s, dir / "m.gguf"); }, message);
    EXPECT_FALSE(fs::exists(dir / "m.gguf"));
  };
  bad([](auto& s) { s.arch = "gpt5"; }, "unknown arch 'gpt5'");
  bad([](auto& s) { s.n_layers = 0; }, "every size must be positive");
  bad([](auto& s) { s.n_kv_heads = 3; }, "4 heads is not a multiple of 3 KV heads");
  bad([](auto& s) { s.vocab_size = 258; }, "vocab_size 258 is below 259");
  bad([](auto& s) { s.arch = "qwen2"; s.vocab_size = 256; }, "vocab_size 256 is below 257");
  bad([](auto& s) { s.weight_type = static_cast<DType>(9); }, "unknown weight type 9");
  bad([](auto& s) { s.weight_type = DType::q8_0; s.q4_k_m_mix = true; }, "q4_k_m_mix needs weight_type q4_k");
  bad([](auto& s) { s.weight_type = DType::q4_k; s.ffn_dim = 384; },
      "blk.0.ffn_down.weight has rows of 384 elements, not a multiple of Q4_K's block size 256");
  bad([](auto& s) { s.weight_type = DType::q8_0; s.d_model = 200; }, "not a multiple of Q8_0's block size 32");
}

TEST(RandomModel, VocabOfTheMinimumSize) {
  TempDir dir;
  for (const char* arch : {"glm4", "llama"}) {
    model::RandomModelSpec s;
    s.arch = arch;
    s.vocab_size = std::string(arch) == "llama" ? 259 : 257;
    model::write_random_model(s, dir / "m.gguf");
    EXPECT_EQ(model::read_model_shape(dir / "m.gguf").vocab_size, s.vocab_size);
  }
}

// The benchmark model, timed (about 1 GB written): run with --gtest_also_run_disabled_tests.
TEST(RandomModel, DISABLED_Benchmark1B) {
  TempDir dir;
  const std::vector<std::tuple<DType, bool, const char*>> cases = {{DType::q8_0, false, "Q8_0"},
                                                                    {DType::q4_k, true, "Q4_K_M"}};
  for (const auto& [type, mix, label] : cases) {
    const model::RandomModelSpec s = model::benchmark_1b_spec("llama", type, mix);
    const auto start = std::chrono::steady_clock::now();
    model::write_random_model(s, dir / "bench.gguf");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const model::ModelShape shape = model::read_model_shape(dir / "bench.gguf");
    std::printf("%s: %.2f B params, %.3f GB, written in %.1f s\n", label, static_cast<double>(shape.n_params()) / 1e9,
                static_cast<double>(fs::file_size(dir / "bench.gguf")) / 1e9, seconds);
    fs::remove(dir / "bench.gguf");
  }
}

}  // namespace
}  // namespace autoglm
