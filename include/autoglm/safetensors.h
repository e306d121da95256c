#pragma once
// safetensors header reader: the 8-byte little-endian header length, the JSON header, and a
// validated tensor directory. Reads only the header, never the tensor data.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "autoglm/error.h"

namespace autoglm::safetensors {

class FormatError : public Error {
 public:
  explicit FormatError(const std::string& message) : Error(kExitCheckFailed, message) {}
};

// Bytes per element of a safetensors dtype ("BF16" -> 2); 0 for a dtype we do not know.
size_t dtype_size(std::string_view dtype);

struct TensorInfo {
  std::string name;
  std::string dtype;            // "BF16", "F32", ...
  std::vector<uint64_t> shape;  // row-major, outermost first
  uint64_t begin = 0;           // data_offsets[0], relative to File::data_offset
  uint64_t end = 0;             // data_offsets[1]
  uint64_t n_elements() const;
};

struct File {
  std::filesystem::path path;
  uint64_t file_size = 0;
  uint64_t header_size = 0;     // length of the JSON header
  uint64_t data_offset = 0;     // 8 + header_size
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<TensorInfo> tensors;              // sorted by begin offset

  const TensorInfo* find_tensor(std::string_view name) const;
};

// Validates: header length sane (<= 100 MB and inside the file), the header is a JSON object,
// every tensor has a known dtype, a shape of non-negative integers whose element count times the
// dtype size equals end - begin (no overflow), offsets inside the data section, no two tensors
// overlapping. Throws FormatError naming the file, tensor and offset.
File read_file_header(const std::filesystem::path& path);

}  // namespace autoglm::safetensors
