#pragma once
// NumPy .npy files (format 1.0) of little-endian float32 or int64: the logits the `logits` command
// writes, and the reference logits, token ids and positions the tests read.
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "autoglm/error.h"

namespace autoglm::npy {

struct ArrayF32 {
  std::vector<uint64_t> shape;
  std::vector<float> data;  // row-major
};

struct ArrayI64 {
  std::vector<uint64_t> shape;
  std::vector<int64_t> data;  // row-major
};

// Fortran-order arrays are returned in C order. Throw Error naming the file when it is not a '<f4' (read_f32) / '<i8' (read_i64) array
// or is truncated.
ArrayF32 read_f32(const std::filesystem::path& path);
ArrayI64 read_i64(const std::filesystem::path& path);
void write_f32(const std::filesystem::path& path, std::span<const float> data, std::span<const uint64_t> shape);

}  // namespace autoglm::npy
