#pragma once
// GGUF (v2/v3) header reader: metadata and tensor directory, validated against the file size.
// Reads only the header; never the tensor data. Every length read from the file is checked
// against the bytes that remain before anything is allocated, so a hostile file cannot make
// us allocate more than the file is large.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "autoglm/error.h"

namespace autoglm::gguf {

// Thrown for a malformed, truncated or unsupported file. The message names the file, the byte
// offset and, where there is one, the metadata key or tensor.
class FormatError : public Error {
 public:
  explicit FormatError(const std::string& message) : Error(kExitCheckFailed, message) {}
};

enum class ValueType : uint32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7,
  string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};
const char* value_type_name(ValueType type);

// One metadata value. Scalars live in the field of their kind; arrays keep their elements in
// `strings`, `ints` or `floats` by element kind (nested arrays are validated but not kept).
struct Value {
  ValueType type = ValueType::uint32;
  ValueType array_type = ValueType::uint8;  // element type when type == array
  uint64_t array_size = 0;                  // element count when type == array
  int64_t i = 0;          // every integer type (uint64 values above INT64_MAX are rejected)
  double f = 0;           // float32, float64
  bool b = false;         // boolean
  std::string str;        // string
  std::vector<std::string> strings;  // array of string
  std::vector<int64_t> ints;         // array of any integer type or bool
  std::vector<double> floats;        // array of float32/float64

  bool is_integer() const;
  std::optional<int64_t> as_int() const;       // integer types only
  std::optional<double> as_float() const;      // integer or float types
  std::optional<std::string> as_string() const;
};

// ggml tensor types we know the block layout of (id as stored in the file).
struct TypeInfo {
  uint32_t id;
  const char* name;      // "F32", "Q4_K", ...
  uint32_t block_size;   // elements per block
  uint32_t type_size;    // bytes per block
};
// nullptr for an id we do not know.
const TypeInfo* type_info(uint32_t type_id);

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ne[0] first (the contiguous dimension), as stored in the file
  uint32_t type = 0;           // ggml type id (see type_info)
  uint64_t offset = 0;         // relative to File::data_offset
  uint64_t nbytes = 0;         // computed from dims and the type's block layout
  uint64_t n_elements() const;
};

struct File {
  std::filesystem::path path;
  uint32_t version = 0;
  uint64_t file_size = 0;
  uint64_t alignment = 32;     // general.alignment or 32
  uint64_t data_offset = 0;    // absolute start of the tensor data section
  std::vector<std::pair<std::string, Value>> metadata;  // in file order
  std::vector<TensorInfo> tensors;                      // in file order

  const Value* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
};

// Reads and validates the header: magic "GGUF", version 2 or 3, sane counts, every string and
// array length within the file, known value types, unique keys and tensor names, known tensor
// types, dims that multiply without overflow and fit the block size, offsets aligned to
// `alignment`, every tensor's [offset, offset + nbytes) inside the file and no two overlapping.
// Throws FormatError naming what is wrong and where.
File read_file_header(const std::filesystem::path& path);

}  // namespace autoglm::gguf
