#include "autoglm/gguf.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

#include "file_util.h"
#include <unordered_map>
#include <unordered_set>

namespace autoglm::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

// Caps on lengths read from the file. Every length is first checked against the bytes left in the
// file; these caps additionally bound memory for values no real model comes near.
constexpr uint64_t kMaxKeyLength = 64 * 1024;         // keys are dotted identifiers, < 100 bytes in practice
constexpr uint64_t kMaxTensorNameLength = 64 * 1024;  // ggml itself stops at 64 bytes
// Real vocabularies have < 1M entries; 2^24 ints are 128 MiB, whatever the element type.
constexpr uint64_t kMaxArrayElements = uint64_t{1} << 24;
constexpr int kMaxArrayDepth = 4;  // ggml writes no nested arrays; depth bounds the recursion
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS
constexpr uint64_t kDefaultAlignment = 32;
constexpr size_t kBufferSize = 1 << 20;  // one read per MiB keeps a 150k-token vocab fast

// Smallest encoding of one element of each kind: lets us reject counts the file cannot hold.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims = 0, type, offset

// Tensor types by id (ggml.h); block layouts from ggml-common.h. Gaps are ids ggml has retired.
// clang-format off
constexpr std::array<TypeInfo, 40> kTypes = {{
    {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {4, nullptr, 0, 0},      {5, nullptr, 0, 0},       {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},
    {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},   {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},
    {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74}, {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136},
    {24, "I8", 1, 1},        {25, "I16", 1, 2},        {26, "I32", 1, 4},        {27, "I64", 1, 8},
    {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {31, nullptr, 0, 0},
    {32, nullptr, 0, 0},     {33, nullptr, 0, 0},      {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},
    {36, nullptr, 0, 0},     {37, nullptr, 0, 0},      {38, nullptr, 0, 0},      {39, "MXFP4", 32, 17},
}};
// clang-format on

bool is_integer_type(ValueType t) {
  switch (t) {
    case ValueType::uint8:
    case ValueType::int8:
    case ValueType::uint16:
    case ValueType::int16:
    case ValueType::uint32:
    case ValueType::int32:
    case ValueType::uint64:
    case ValueType::int64:
      return true;
    default:
      return false;
  }
}

bool is_float_type(ValueType t) { return t == ValueType::float32 || t == ValueType::float64; }

// Bytes one element of `t` takes at least (strings and arrays: their length prefixes).
uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::uint8:
    case ValueType::int8:
    case ValueType::boolean:
      return 1;
    case ValueType::uint16:
    case ValueType::int16:
      return 2;
    case ValueType::uint32:
    case ValueType::int32:
    case ValueType::float32:
      return 4;
    case ValueType::uint64:
    case ValueType::int64:
    case ValueType::float64:
      return 8;
    case ValueType::string:
      return 8;
    case ValueType::array:
      return 4 + 8;
  }
  return 1;
}

// Keys and names come from the file: escape what a terminal would interpret, cut what is too long.
std::string printable(std::string_view s) {
  constexpr size_t kMax = 120;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'')
      out += static_cast<char>(c);
    else if (c >= 0x80)
      out += static_cast<char>(c);  // keep UTF-8 as is
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > kMax) out += "...";
  return out;
}

using formats::Fd;
using formats::sum_str;


// Reads the header through a 1 MiB window; `where_` names the item being read for error messages.
class Parser {
 public:
  explicit Parser(const std::filesystem::path& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_.get() < 0) fail_plain(fmt::format("cannot open: {}", std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) fail_plain(fmt::format("cannot stat: {}", std::strerror(errno)));
    if (!S_ISREG(st.st_mode)) fail_plain("not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
  }

  File parse();

 private:
  [[noreturn]] void fail_plain(const std::string& message) const {
    throw FormatError(fmt::format("{}: {}", path_.string(), message));
  }
  [[noreturn]] void fail(const std::string& message) const {
    throw FormatError(fmt::format("{}: {}: {}", path_.string(), where_, message));
  }

  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, std::string_view what) const;
  void read(void* dst, uint64_t n, std::string_view what);
  template <class T>
  T get(std::string_view what) {
    T v;
    read(&v, sizeof v, what);
    return v;
  }
  std::string read_string(uint64_t max_length, std::string_view what);
  ValueType read_type(std::string_view what);
  void read_scalar(ValueType type, Value& v);
  int64_t read_integer(ValueType type);
  double read_float(ValueType type);
  Value read_value(ValueType type, int depth);
  void read_array(Value& v, int depth);
  void check_counts(uint64_t n_tensors, uint64_t n_kv);
  void read_metadata(File& file, uint64_t n_kv);
  void check_alignment(const Value& v, File& file);
  TensorInfo read_tensor_info(uint64_t index, uint64_t alignment);
  void compute_nbytes(TensorInfo& t);
  void check_tensor_data(const File& file);

  std::filesystem::path path_;
  Fd fd_;
  uint64_t size_ = 0;
  uint64_t pos_ = 0;
  std::vector<char> buf_ = std::vector<char>(kBufferSize);
  uint64_t buf_start_ = 0;
  uint64_t buf_len_ = 0;
  std::string where_ = "header";
  std::vector<uint64_t> tensor_header_offsets_;
};

void Parser::need(uint64_t n, std::string_view what) const {
  if (n <= left()) return;
  fail(
      fmt::format("unexpected end of file at offset {} reading {} ({} bytes needed, {} left; file size {}) — "
                  "the file is truncated; download it again",
                  pos_, what, n, left(), size_));
}

void Parser::read(void* dst, uint64_t n, std::string_view what) {
  need(n, what);
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    if (pos_ < buf_start_ || pos_ >= buf_start_ + buf_len_) {
      const uint64_t want = std::min<uint64_t>(buf_.size(), size_ - pos_);
      const ssize_t got = ::pread(fd_.get(), buf_.data(), want, static_cast<off_t>(pos_));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail(fmt::format("read error at offset {}: {}", pos_, std::strerror(errno)));
      if (got == 0) fail(fmt::format("the file shrank while reading (offset {}) — is it still being written?", pos_));
      buf_start_ = pos_;
      buf_len_ = static_cast<uint64_t>(got);
    }
    const uint64_t in_buf = buf_start_ + buf_len_ - pos_;
    const uint64_t take = std::min(n, in_buf);
    std::memcpy(out, buf_.data() + (pos_ - buf_start_), take);
    out += take;
    pos_ += take;
    n -= take;
  }
}

std::string Parser::read_string(uint64_t max_length, std::string_view what) {
  const uint64_t at = pos_;
  const auto n = get<uint64_t>(what);
  if (n > left())
    fail(
        fmt::format("{} at offset {} has length {}, but only {} bytes are left in the file (size {}) — "
                    "the file is truncated or corrupt",
                    what, at, n, left(), size_));
  if (n > max_length)
    fail(fmt::format("{} at offset {} has length {}, more than the {} bytes allowed — the file is corrupt", what, at, n,
                     max_length));
  std::string s(static_cast<size_t>(n), '\0');
  read(s.data(), n, what);
  return s;
}

ValueType Parser::read_type(std::string_view what) {
  const uint64_t at = pos_;
  const auto raw = get<uint32_t>(what);
  if (raw > static_cast<uint32_t>(ValueType::float64))
    fail(
        fmt::format("unknown value type {} at offset {} (known: 0-12) — the file is corrupt or from a newer GGUF "
                    "version",
                    raw, at));
  return static_cast<ValueType>(raw);
}

int64_t Parser::read_integer(ValueType type) {
  switch (type) {
    case ValueType::uint8:
      return get<uint8_t>("uint8 value");
    case ValueType::int8:
      return get<int8_t>("int8 value");
    case ValueType::uint16:
      return get<uint16_t>("uint16 value");
    case ValueType::int16:
      return get<int16_t>("int16 value");
    case ValueType::uint32:
      return get<uint32_t>("uint32 value");
    case ValueType::int32:
      return get<int32_t>("int32 value");
    case ValueType::int64:
      return get<int64_t>("int64 value");
    case ValueType::boolean:
      return get<uint8_t>("bool value") != 0;
    case ValueType::uint64: {
      const uint64_t at = pos_;
      const auto u = get<uint64_t>("uint64 value");
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(
            fmt::format("uint64 value {} at offset {} is larger than 2^63-1, which no model setting needs — the "
                        "file is corrupt",
                        u, at));
      return static_cast<int64_t>(u);
    }
    default:
      return 0;
  }
}

double Parser::read_float(ValueType type) {
  if (type == ValueType::float32) return get<float>("float32 value");
  return get<double>("float64 value");
}

void Parser::read_scalar(ValueType type, Value& v) {
  if (type == ValueType::string)
    v.str = read_string(std::numeric_limits<uint64_t>::max(), "string value");
  else if (type == ValueType::boolean)
    v.b = read_integer(type) != 0;
  else if (is_float_type(type))
    v.f = read_float(type);
  else
    v.i = read_integer(type);
}

Value Parser::read_value(ValueType type, int depth) {
  Value v;
  v.type = type;
  if (type == ValueType::array)
    read_array(v, depth + 1);
  else
    read_scalar(type, v);
  return v;
}

void Parser::read_array(Value& v, int depth) {
  if (depth > kMaxArrayDepth)
    fail(fmt::format("arrays nested more than {} deep at offset {} — the file is corrupt", kMaxArrayDepth, pos_));
  v.array_type = read_type("array element type");
  const uint64_t at = pos_;
  v.array_size = get<uint64_t>("array length");
  const uint64_t min_size = min_encoded_size(v.array_type);
  if (v.array_size > left() / min_size)
    fail(
        fmt::format("array of {} at offset {} claims {} elements, which need at least {} bytes per element, but "
                    "only {} bytes are left in the file — the file is truncated or corrupt",
                    value_type_name(v.array_type), at, v.array_size, min_size, left()));
  if (v.array_size > kMaxArrayElements)
    fail(fmt::format("array at offset {} has {} elements, more than the {} allowed — the file is corrupt", at,
                     v.array_size, kMaxArrayElements));
  const auto n = static_cast<size_t>(v.array_size);
  if (v.array_type == ValueType::string) {
    v.strings.reserve(n);
    for (size_t k = 0; k < n; ++k) v.strings.push_back(read_string(left(), "array string"));
  } else if (v.array_type == ValueType::array) {
    for (size_t k = 0; k < n; ++k) {
      Value nested;
      read_array(nested, depth + 1);  // validated, not kept
    }
  } else if (is_float_type(v.array_type)) {
    v.floats.reserve(n);
    for (size_t k = 0; k < n; ++k) v.floats.push_back(read_float(v.array_type));
  } else {
    v.ints.reserve(n);
    for (size_t k = 0; k < n; ++k) v.ints.push_back(read_integer(v.array_type));
  }
}

void Parser::check_counts(uint64_t n_tensors, uint64_t n_kv) {
  const bool fits = n_tensors <= left() / kMinTensorInfoBytes && n_kv <= left() / kMinKvBytes &&
                    n_tensors * kMinTensorInfoBytes + n_kv * kMinKvBytes <= left();
  if (fits) return;
  fail(
      fmt::format("header claims {} tensors and {} metadata entries, more than the {} bytes after it can hold — "
                  "the file is truncated or corrupt",
                  n_tensors, n_kv, left()));
}

void Parser::check_alignment(const Value& v, File& file) {
  if (!is_integer_type(v.type))
    fail(fmt::format("general.alignment must be an unsigned integer (uint32), not {}", value_type_name(v.type)));
  if (v.i <= 0 || !std::has_single_bit(static_cast<uint64_t>(v.i)))
    fail(fmt::format("general.alignment = {} is not a power of two — the file is corrupt", v.i));
  file.alignment = static_cast<uint64_t>(v.i);
}

void Parser::read_metadata(File& file, uint64_t n_kv) {
  std::unordered_set<std::string> seen;
  file.metadata.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, 4096)));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t start = pos_;
    where_ = fmt::format("metadata entry {} at header offset {}", k, start);
    std::string key = read_string(kMaxKeyLength, "metadata key");
    where_ = fmt::format("metadata key '{}' at header offset {}", printable(key), start);
    if (!seen.insert(key).second) fail("the key appears twice — the file is corrupt");
    const ValueType type = read_type("value type");
    Value value = read_value(type, 0);
    if (key == "general.alignment") check_alignment(value, file);
    file.metadata.emplace_back(std::move(key), std::move(value));
  }
}

void Parser::compute_nbytes(TensorInfo& t) {
  const TypeInfo* info = type_info(t.type);
  uint64_t n = 1;
  for (uint64_t d : t.dims) {
    if (__builtin_mul_overflow(n, d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(fmt::format("dims [{}] overflow: the element count exceeds 2^63 — the file is corrupt",
                       fmt::join(t.dims, ", ")));
  }
  const uint64_t ne0 = t.dims.empty() ? 1 : t.dims[0];
  if (ne0 % info->block_size != 0)
    fail(fmt::format("dimension 0 ({}) is not a multiple of the block size {} of type {} — the file is corrupt", ne0,
                     info->block_size, info->name));
  // n is a multiple of ne0, which is a multiple of the block size.
  if (__builtin_mul_overflow(n / info->block_size, uint64_t{info->type_size}, &t.nbytes))
    fail(fmt::format("dims [{}] of type {} need more than 2^64 bytes — the file is corrupt", fmt::join(t.dims, ", "),
                     info->name));
}

TensorInfo Parser::read_tensor_info(uint64_t index, uint64_t alignment) {
  const uint64_t start = pos_;
  where_ = fmt::format("tensor {} at header offset {}", index, start);
  TensorInfo t;
  t.name = read_string(kMaxTensorNameLength, "tensor name");
  where_ = fmt::format("tensor '{}' at header offset {}", printable(t.name), start);
  const auto n_dims = get<uint32_t>("n_dims");
  if (n_dims > kMaxDims)
    fail(fmt::format("n_dims = {}, but ggml tensors have at most {} — the file is corrupt", n_dims, kMaxDims));
  for (uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(get<uint64_t>("dimension"));
  t.type = get<uint32_t>("tensor type");
  if (!type_info(t.type))
    fail(fmt::format("unknown tensor type {} — the file is corrupt or needs a newer program", t.type));
  t.offset = get<uint64_t>("tensor data offset");
  compute_nbytes(t);
  if (t.offset % alignment != 0)
    fail(
        fmt::format("data offset {} is not a multiple of the alignment {} — the file is corrupt", t.offset, alignment));
  tensor_header_offsets_.push_back(start);
  return t;
}

// In offset order: the first tensor past the end is where a truncated download stops.
void Parser::check_tensor_data(const File& file) {
  std::vector<size_t> order(file.tensors.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return file.tensors[a].offset < file.tensors[b].offset; });
  const uint64_t data_size = size_ - file.data_offset;
  const TensorInfo* prev = nullptr;
  for (size_t k : order) {
    const TensorInfo& t = file.tensors[k];
    where_ = fmt::format("tensor '{}' at header offset {}", printable(t.name), tensor_header_offsets_[k]);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail(
          fmt::format("data [{}, {}) ends past the end of the file (size {}) — the file is truncated; download it "
                      "again",
                      sum_str(file.data_offset, t.offset), sum_str(file.data_offset, t.offset, t.nbytes), size_));
    if (t.nbytes == 0) continue;
    if (prev && t.offset < prev->offset + prev->nbytes)
      fail(fmt::format("data [{}, {}) overlaps tensor '{}' at [{}, {}) — the file is corrupt",
                       file.data_offset + t.offset, file.data_offset + t.offset + t.nbytes, printable(prev->name),
                       file.data_offset + prev->offset, file.data_offset + prev->offset + prev->nbytes));
    prev = &t;  // no overlap so far: ends grow with offsets
  }
}

File Parser::parse() {
  File file;
  file.path = path_;
  file.file_size = size_;
  if (size_ < 4) fail(fmt::format("the file is {} bytes, too short for a GGUF header — it is truncated", size_));
  std::array<char, 4> magic{};
  read(magic.data(), 4, "magic");
  if (std::string_view(magic.data(), 4) != "GGUF")
    fail(fmt::format("not a GGUF file: it starts with '{}', not 'GGUF'", printable(std::string_view(magic.data(), 4))));
  file.version = get<uint32_t>("version");
  if (file.version == 1)
    fail("GGUF version 1 is not supported (only 2 and 3) — convert the model again with a current llama.cpp");
  if (__builtin_bswap32(file.version) == 2 || __builtin_bswap32(file.version) == 3)
    fail("this is a big-endian GGUF file; only little-endian files are supported");
  if (file.version != 2 && file.version != 3)
    fail(
        fmt::format("GGUF version {} is not supported (only 2 and 3) — update autoglm-deploy, or convert the "
                    "model with the llama.cpp this program matches",
                    file.version));
  const auto n_tensors = get<uint64_t>("tensor count");
  const auto n_kv = get<uint64_t>("metadata count");
  check_counts(n_tensors, n_kv);
  read_metadata(file, n_kv);

  std::unordered_map<std::string, uint64_t> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t = read_tensor_info(k, file.alignment);
    auto [it, inserted] = names.emplace(t.name, tensor_header_offsets_.back());
    if (!inserted)
      fail(fmt::format("duplicate tensor name (first at header offset {}) — the file is corrupt", it->second));
    file.tensors.push_back(std::move(t));
  }
  where_ = "header";
  const uint64_t header_end = pos_;
  file.data_offset = header_end + (file.alignment - header_end % file.alignment) % file.alignment;
  if (!file.tensors.empty() && file.data_offset > size_)
    fail(
        fmt::format("the data section starts at offset {} (header end {} padded to {}), past the end of the file "
                    "(size {}) — the file is truncated; download it again",
                    file.data_offset, header_end, file.alignment, size_));
  if (!file.tensors.empty()) check_tensor_data(file);
  return file;
}

}  // namespace

const char* value_type_name(ValueType type) {
  switch (type) {
    case ValueType::uint8:
      return "uint8";
    case ValueType::int8:
      return "int8";
    case ValueType::uint16:
      return "uint16";
    case ValueType::int16:
      return "int16";
    case ValueType::uint32:
      return "uint32";
    case ValueType::int32:
      return "int32";
    case ValueType::float32:
      return "float32";
    case ValueType::boolean:
      return "bool";
    case ValueType::string:
      return "string";
    case ValueType::array:
      return "array";
    case ValueType::uint64:
      return "uint64";
    case ValueType::int64:
      return "int64";
    case ValueType::float64:
      return "float64";
  }
  return "unknown";
}

bool Value::is_integer() const { return is_integer_type(type); }

std::optional<int64_t> Value::as_int() const {
  if (!is_integer()) return std::nullopt;
  return i;
}

std::optional<double> Value::as_float() const {
  if (is_integer()) return static_cast<double>(i);
  if (is_float_type(type)) return f;
  return std::nullopt;
}

std::optional<std::string> Value::as_string() const {
  if (type != ValueType::string) return std::nullopt;
  return str;
}

const TypeInfo* type_info(uint32_t type_id) {
  if (type_id >= kTypes.size() || kTypes[type_id].name == nullptr) return nullptr;
  return &kTypes[type_id];
}

uint64_t TensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;  // validated against overflow when read
  return n;
}

const Value* File::find(std::string_view key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  for (const TensorInfo& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<std::string> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  return v ? v->as_string() : std::nullopt;
}

File read_file_header(const std::filesystem::path& path) {
  Parser parser(path);
  return parser.parse();
}

}  // namespace autoglm::gguf
