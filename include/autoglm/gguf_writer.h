#pragma once
// GGUF v3 writer in llama.cpp's layout: header, metadata in insertion order, tensor directory,
// padding to general.alignment (32 unless set), then each tensor's data at its aligned offset.
// Writes to `path + ".tmp"` and renames, so the final name never holds a half-written file.
// Everything it writes is accepted by gguf::read_file_header (and by llama.cpp's gguf reader:
// tensor names are kept under ggml's 64-byte limit).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "autoglm/error.h"
#include "autoglm/gguf.h"

namespace autoglm::gguf {

// Receives a tensor's bytes in order, in pieces of any size.
using ByteSink = std::function<void(std::span<const uint8_t> bytes)>;
// Produces a tensor's bytes by calling `sink` as often as it likes; together the pieces must be
// exactly the tensor's size. Called once per write(), so large tensors can be generated in chunks.
using TensorSource = std::function<void(const ByteSink& sink)>;

// Bytes of a tensor of `dims` (ne[0] first) and ggml type id `type`. Throws Error for an unknown
// type, no or more than 4 dims, a zero dim, ne[0] not a multiple of the block size, or overflow.
uint64_t tensor_nbytes(std::span<const uint64_t> dims, uint32_t type);

class Writer {
 public:
  // Scalars. Keys keep insertion order; setting a key twice throws Error. general.alignment, if
  // set (uint32, a power of two), is the alignment the data is written with.
  void set_u8(const std::string& key, uint8_t v);
  void set_i8(const std::string& key, int8_t v);
  void set_u16(const std::string& key, uint16_t v);
  void set_i16(const std::string& key, int16_t v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);  // at most 2^63-1: the reader rejects more
  void set_i64(const std::string& key, int64_t v);
  void set_f32(const std::string& key, float v);
  void set_f64(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, std::string_view v);

  // Arrays (at most 2^24 elements, the reader's cap).
  void set_array_i32(const std::string& key, std::span<const int32_t> v);
  void set_array_u32(const std::string& key, std::span<const uint32_t> v);
  void set_array_f32(const std::string& key, std::span<const float> v);
  void set_array_f64(const std::string& key, std::span<const double> v);
  void set_array_strings(const std::string& key, std::span<const std::string> v);
  // Any integer element type or bool; throws Error for a value the element type cannot hold.
  void set_array_ints(const std::string& key, ValueType element, std::span<const int64_t> v);

  // Tensors, written in the order added. dims: ne[0] first (the contiguous dimension), 1 to 4.
  // Throws Error for a duplicate or over-long name, bad dims/type, or a byte count that is not
  // dims x type. The span overload copies the bytes.
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, std::span<const uint8_t> bytes);
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, TensorSource source);

  // Writes the file (fsync'ed, then renamed into place). Throws Error naming the file on an I/O
  // failure, or when a source produces the wrong number of bytes; the temporary file is removed
  // and whatever was at `path` before is left as it was.
  void write(const std::filesystem::path& path) const;

  size_t kv_count() const { return n_kv_; }
  size_t tensor_count() const { return tensors_.size(); }
  uint64_t alignment() const { return alignment_; }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t type = 0;
    uint64_t nbytes = 0;
    TensorSource source;
  };
  void begin_kv(const std::string& key, ValueType type);
  void begin_array(const std::string& key, ValueType element, size_t n);
  template <class T>
  void put(T v);
  void put_string(std::string_view s);
  std::string header(std::vector<uint64_t>& offsets) const;

  std::string kv_;  // metadata entries, already encoded
  size_t n_kv_ = 0;
  std::unordered_set<std::string> keys_;
  std::vector<Tensor> tensors_;
  std::unordered_set<std::string> names_;
  uint64_t alignment_ = 32;
};

}  // namespace autoglm::gguf
