#include "autoglm/gguf_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

namespace autoglm::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

constexpr uint32_t kVersion = 3;
constexpr size_t kMaxKeyLength = 64 * 1024;            // the reader's cap
constexpr size_t kMaxArrayElements = size_t{1} << 24;  // the reader's cap
constexpr size_t kMaxNameLength = 63;                  // GGML_MAX_NAME (64) less the terminating NUL
constexpr size_t kMaxDims = 4;                         // GGML_MAX_DIMS
constexpr size_t kBufferSize = 4 << 20;                // few large writes keep a 1 GB model fast

[[noreturn]] void fail(const std::string& message) { throw Error(kExitCheckFailed, "GGUF writer: " + message); }

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Inclusive value range of an integer element type (bool: 0 and 1).
std::pair<int64_t, int64_t> int_range(ValueType t) {
  switch (t) {
    case ValueType::uint8: return {0, std::numeric_limits<uint8_t>::max()};
    case ValueType::int8: return {std::numeric_limits<int8_t>::min(), std::numeric_limits<int8_t>::max()};
    case ValueType::uint16: return {0, std::numeric_limits<uint16_t>::max()};
    case ValueType::int16: return {std::numeric_limits<int16_t>::min(), std::numeric_limits<int16_t>::max()};
    case ValueType::uint32: return {0, std::numeric_limits<uint32_t>::max()};
    case ValueType::int32: return {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()};
    case ValueType::uint64: return {0, std::numeric_limits<int64_t>::max()};
    case ValueType::int64: return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
    case ValueType::boolean: return {0, 1};
    default: fail(fmt::format("{} is not an integer element type", value_type_name(t)));
  }
}

// Appends `v` to `out` as `t` (range already checked).
void append_int(std::string& out, ValueType t, int64_t v) {
  auto put = [&out](auto x) { out.append(reinterpret_cast<const char*>(&x), sizeof x); };
  switch (t) {
    case ValueType::uint8:
    case ValueType::boolean: put(static_cast<uint8_t>(v)); break;
    case ValueType::int8: put(static_cast<int8_t>(v)); break;
    case ValueType::uint16: put(static_cast<uint16_t>(v)); break;
    case ValueType::int16: put(static_cast<int16_t>(v)); break;
    case ValueType::uint32: put(static_cast<uint32_t>(v)); break;
    case ValueType::int32: put(static_cast<int32_t>(v)); break;
    case ValueType::uint64: put(static_cast<uint64_t>(v)); break;
    default: put(v); break;
  }
}

// A file written through a large buffer; every failure names the file and says why.
class Output {
 public:
  explicit Output(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(fmt::format("{}: cannot create: {}", path_.string(), std::strerror(errno)));
    buf_.reserve(kBufferSize);
  }
  ~Output() {
    if (fd_ >= 0) ::close(fd_);
  }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  uint64_t pos() const { return pos_; }

  void write(std::span<const uint8_t> bytes) {
    pos_ += bytes.size();
    if (buf_.size() + bytes.size() <= kBufferSize) {
      buf_.insert(buf_.end(), bytes.begin(), bytes.end());
      return;
    }
    flush();
    if (bytes.size() >= kBufferSize)
      write_all(bytes);  // large pieces go straight to the file
    else
      buf_.assign(bytes.begin(), bytes.end());
  }
  void write(std::string_view s) { write({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  void pad_to(uint64_t offset) {
    static constexpr uint8_t kZeros[256] = {};
    while (pos_ < offset) write({kZeros, static_cast<size_t>(std::min<uint64_t>(offset - pos_, sizeof kZeros))});
  }
  // Flushes, fsyncs and closes: after this the bytes are on disk.
  void finish() {
    flush();
    if (::fsync(fd_) != 0) fail(fmt::format("{}: fsync failed: {}", path_.string(), std::strerror(errno)));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(fmt::format("{}: close failed: {}", path_.string(), std::strerror(errno)));
  }

 private:
  void flush() {
    write_all(buf_);
    buf_.clear();
  }
  void write_all(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(fmt::format("{}: write failed: {}", path_.string(), std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
  }

  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<uint8_t> buf_;
  uint64_t pos_ = 0;
};

// Removes the temporary file unless the write got as far as renaming it.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::filesystem::path path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  void commit() { committed_ = true; }

 private:
  std::filesystem::path path_;
  bool committed_ = false;
};

// What is wrong with a tensor of `dims` and `type`, or "" with `bytes` set to its size.
std::string shape_problem(std::span<const uint64_t> dims, uint32_t type, uint64_t& bytes) {
  const TypeInfo* info = type_info(type);
  if (!info) return fmt::format("unknown ggml tensor type {}", type);
  if (dims.empty() || dims.size() > kMaxDims)
    return fmt::format("a tensor has 1 to {} dims, not {}", kMaxDims, dims.size());
  uint64_t n = 1;
  for (uint64_t d : dims) {
    if (d == 0) return fmt::format("dims [{}] contain a zero", fmt::join(dims, ", "));
    if (__builtin_mul_overflow(n, d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return fmt::format("dims [{}] have more than 2^63 elements", fmt::join(dims, ", "));
  }
  if (dims[0] % info->block_size != 0)
    return fmt::format("dims [{}]: ne[0] = {} is not a multiple of {}'s block size {}", fmt::join(dims, ", "), dims[0],
                       info->name, info->block_size);
  if (__builtin_mul_overflow(n / info->block_size, uint64_t{info->type_size}, &bytes))
    return fmt::format("dims [{}] of {} need more than 2^64 bytes", fmt::join(dims, ", "), info->name);
  return {};
}

}  // namespace

uint64_t tensor_nbytes(std::span<const uint64_t> dims, uint32_t type) {
  uint64_t bytes = 0;
  if (std::string problem = shape_problem(dims, type, bytes); !problem.empty()) fail(problem);
  return bytes;
}

template <class T>
void Writer::put(T v) {
  kv_.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void Writer::put_string(std::string_view s) {
  put(static_cast<uint64_t>(s.size()));
  kv_.append(s);
}

// Checks the key and starts its entry: key, then value type.
void Writer::begin_kv(const std::string& key, ValueType type) {
  if (key.empty()) fail("empty metadata key");
  if (key.size() > kMaxKeyLength) fail(fmt::format("metadata key of {} bytes (at most {})", key.size(), kMaxKeyLength));
  if (key == "general.alignment" && type != ValueType::uint32)
    fail(fmt::format("general.alignment must be a uint32, not {}", value_type_name(type)));
  if (!keys_.insert(key).second) fail(fmt::format("metadata key '{}' set twice", key));
  put_string(key);
  put(static_cast<uint32_t>(type));
  ++n_kv_;
}

void Writer::begin_array(const std::string& key, ValueType element, size_t n) {
  if (n > kMaxArrayElements) fail(fmt::format("array '{}' has {} elements (at most {})", key, n, kMaxArrayElements));
  begin_kv(key, ValueType::array);
  put(static_cast<uint32_t>(element));
  put(static_cast<uint64_t>(n));
}

void Writer::set_u8(const std::string& key, uint8_t v) {
  begin_kv(key, ValueType::uint8);
  put(v);
}
void Writer::set_i8(const std::string& key, int8_t v) {
  begin_kv(key, ValueType::int8);
  put(v);
}
void Writer::set_u16(const std::string& key, uint16_t v) {
  begin_kv(key, ValueType::uint16);
  put(v);
}
void Writer::set_i16(const std::string& key, int16_t v) {
  begin_kv(key, ValueType::int16);
  put(v);
}
void Writer::set_i32(const std::string& key, int32_t v) {
  begin_kv(key, ValueType::int32);
  put(v);
}
void Writer::set_i64(const std::string& key, int64_t v) {
  begin_kv(key, ValueType::int64);
  put(v);
}
void Writer::set_f32(const std::string& key, float v) {
  begin_kv(key, ValueType::float32);
  put(v);
}
void Writer::set_f64(const std::string& key, double v) {
  begin_kv(key, ValueType::float64);
  put(v);
}
void Writer::set_bool(const std::string& key, bool v) {
  begin_kv(key, ValueType::boolean);
  put(uint8_t{v});
}
void Writer::set_string(const std::string& key, std::string_view v) {
  begin_kv(key, ValueType::string);
  put_string(v);
}

void Writer::set_u32(const std::string& key, uint32_t v) {
  if (key == "general.alignment" && !std::has_single_bit(v))
    fail(fmt::format("general.alignment = {} is not a power of two", v));
  begin_kv(key, ValueType::uint32);
  put(v);
  if (key == "general.alignment") alignment_ = v;
}

void Writer::set_u64(const std::string& key, uint64_t v) {
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(fmt::format("'{}' = {} is above 2^63-1, which GGUF readers reject", key, v));
  begin_kv(key, ValueType::uint64);
  put(v);
}

void Writer::set_array_i32(const std::string& key, std::span<const int32_t> v) {
  begin_array(key, ValueType::int32, v.size());
  kv_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
}

void Writer::set_array_u32(const std::string& key, std::span<const uint32_t> v) {
  begin_array(key, ValueType::uint32, v.size());
  kv_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
}

void Writer::set_array_f32(const std::string& key, std::span<const float> v) {
  begin_array(key, ValueType::float32, v.size());
  kv_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
}

void Writer::set_array_f64(const std::string& key, std::span<const double> v) {
  begin_array(key, ValueType::float64, v.size());
  kv_.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
}

void Writer::set_array_strings(const std::string& key, std::span<const std::string> v) {
  begin_array(key, ValueType::string, v.size());
  for (const std::string& s : v) put_string(s);
}

void Writer::set_array_ints(const std::string& key, ValueType element, std::span<const int64_t> v) {
  const auto [lo, hi] = int_range(element);
  for (size_t k = 0; k < v.size(); ++k)
    if (v[k] < lo || v[k] > hi)
      fail(fmt::format("array '{}': element {} = {} does not fit {}", key, k, v[k], value_type_name(element)));
  begin_array(key, element, v.size());
  for (int64_t x : v) append_int(kv_, element, x);
}

void Writer::add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                        std::span<const uint8_t> bytes) {
  uint64_t nbytes = 0;
  if (std::string problem = shape_problem(dims, type, nbytes); !problem.empty())
    fail(fmt::format("tensor '{}': {}", name, problem));
  if (bytes.size() != nbytes)
    fail(fmt::format("tensor '{}': {} bytes given, but [{}] of {} is {} bytes", name, bytes.size(),
                     fmt::join(dims, ", "), type_info(type)->name, nbytes));
  auto copy = std::make_shared<const std::vector<uint8_t>>(bytes.begin(), bytes.end());
  add_tensor(name, std::move(dims), type, [copy](const ByteSink& sink) { sink(*copy); });
}

void Writer::add_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, TensorSource source) {
  if (name.empty()) fail("empty tensor name");
  if (name.size() > kMaxNameLength)
    fail(fmt::format("tensor name '{}' is {} bytes; ggml allows at most {}", name, name.size(), kMaxNameLength));
  if (!source) fail(fmt::format("tensor '{}': no data source", name));
  uint64_t nbytes = 0;
  if (std::string problem = shape_problem(dims, type, nbytes); !problem.empty())
    fail(fmt::format("tensor '{}': {}", name, problem));
  if (!names_.insert(name).second) fail(fmt::format("tensor '{}' added twice", name));
  tensors_.push_back({name, std::move(dims), type, nbytes, std::move(source)});
}

// Header bytes (up to, not including, the padding before the data); fills each tensor's offset.
std::string Writer::header(std::vector<uint64_t>& offsets) const {
  std::string h;
  auto put_h = [&h](auto v) { h.append(reinterpret_cast<const char*>(&v), sizeof v); };
  h.append("GGUF");
  put_h(kVersion);
  put_h(static_cast<uint64_t>(tensors_.size()));
  put_h(static_cast<uint64_t>(n_kv_));
  h.append(kv_);
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_h(static_cast<uint64_t>(t.name.size()));
    h.append(t.name);
    put_h(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put_h(d);
    put_h(t.type);
    put_h(offset);
    offsets.push_back(offset);
    offset = align_up(offset + t.nbytes, alignment_);
  }
  return h;
}

void Writer::write(const std::filesystem::path& path) const {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  TempFileGuard guard(tmp);
  Output out(tmp);
  std::vector<uint64_t> offsets;
  out.write(header(offsets));
  const uint64_t data_start = align_up(out.pos(), alignment_);
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const Tensor& t = tensors_[k];
    out.pad_to(data_start + offsets[k]);
    uint64_t written = 0;
    const ByteSink sink = [&](std::span<const uint8_t> bytes) {
      if (bytes.size() > t.nbytes - written)
        fail(fmt::format("{}: tensor '{}' produced more than its {} bytes", tmp.string(), t.name, t.nbytes));
      out.write(bytes);
      written += bytes.size();
    };
    t.source(sink);
    if (written != t.nbytes)
      fail(fmt::format("{}: tensor '{}' produced {} bytes, expected {}", tmp.string(), t.name, written, t.nbytes));
  }
  out.pad_to(align_up(out.pos(), alignment_));  // ggml pads after every tensor, the last one too
  out.finish();
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail(fmt::format("cannot rename {} to {}: {}", tmp.string(), path.string(), std::strerror(errno)));
  guard.commit();
}

}  // namespace autoglm::gguf
