#include "autoglm/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "file_util.h"

namespace autoglm::safetensors {
namespace {

using json = nlohmann::json;

static_assert(std::endian::native == std::endian::little, "the safetensors reader assumes a little-endian host");

constexpr uint64_t kMaxHeaderSize = 100'000'000;  // the limit the reference implementation uses
// A header is an object of objects holding flat arrays: 3 levels. Deeper nesting is hostile and
// would only cost memory and time in the JSON parser.
constexpr int kMaxJsonDepth = 8;

struct DtypeSize {
  std::string_view name;
  size_t size;
};
// Sub-byte dtypes (F4, F6_*) have no whole-byte element size and are left out on purpose.
// clang-format off
constexpr std::array<DtypeSize, 16> kDtypes = {{
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
    {"I32", 4}, {"U32", 4}, {"F32", 4},
    {"I64", 8}, {"U64", 8}, {"F64", 8},
}};
// clang-format on

std::string printable(std::string_view s) {
  constexpr size_t kMax = 120;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  if (s.size() > kMax) out += "...";
  return out;
}

using formats::Fd;
using formats::sum_str;


class Parser {
 public:
  explicit Parser(const std::filesystem::path& path) : path_(path) {}
  File parse();

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw FormatError(fmt::format("{}: {}", path_.string(), message));
  }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& message) const {
    fail(fmt::format("tensor '{}': {}", printable(name), message));
  }
  void read_exact(int fd, void* dst, uint64_t n, uint64_t offset) const;
  std::string read_header(int fd, File& file);
  void check_depth(std::string_view text) const;
  json parse_json(const std::string& text) const;
  void read_metadata(const json& value, File& file) const;
  uint64_t shape_entry(const std::string& name, const json& dim) const;
  TensorInfo read_tensor(const std::string& name, const json& entry) const;
  void check_layout(const File& file) const;

  std::filesystem::path path_;
};

void Parser::read_exact(int fd, void* dst, uint64_t n, uint64_t offset) const {
  auto* out = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(fmt::format("read error at offset {}: {}", offset, std::strerror(errno)));
    if (got == 0) fail(fmt::format("the file shrank while reading (offset {}) — is it still being written?", offset));
    out += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

std::string Parser::read_header(int fd, File& file) {
  if (file.file_size < 8)
    fail(
        fmt::format("the file is {} bytes, too short for the 8-byte header length — it is truncated; download it "
                    "again",
                    file.file_size));
  uint64_t n = 0;
  read_exact(fd, &n, 8, 0);
  if (n > kMaxHeaderSize)
    fail(
        fmt::format("header length {} at offset 0 is more than the {} bytes allowed — this is not a safetensors "
                    "file, or it is corrupt",
                    n, kMaxHeaderSize));
  if (n > file.file_size - 8)
    fail(
        fmt::format("header length {} at offset 0 exceeds the {} bytes after it (file size {}) — the file is "
                    "truncated; download it again",
                    n, file.file_size - 8, file.file_size));
  file.header_size = n;
  file.data_offset = 8 + n;
  std::string text(static_cast<size_t>(n), '\0');
  read_exact(fd, text.data(), n, 8);
  return text;
}

// Cheap scan before parsing: brackets outside strings must not nest deeper than a header can.
void Parser::check_depth(std::string_view text) const {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth)
        fail(fmt::format("header JSON nests deeper than {} levels at offset {} — the file is corrupt", kMaxJsonDepth,
                         8 + i));
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

json Parser::parse_json(const std::string& text) const {
  check_depth(text);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte counts from 1 within the header; the header starts at file offset 8.
    fail(fmt::format("the header is not valid JSON (near file offset {}): {} — the file is corrupt; download it again",
                     8 + (e.byte > 0 ? e.byte - 1 : 0), e.what()));
  }
}

void Parser::read_metadata(const json& value, File& file) const {
  if (!value.is_object()) fail("__metadata__ must be a JSON object of strings — the file is corrupt");
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string())
      fail(fmt::format("__metadata__ entry '{}' must be a string, not {} — the file is corrupt", printable(key),
                       v.type_name()));
    file.metadata[key] = v.get<std::string>();
  }
}

uint64_t Parser::shape_entry(const std::string& name, const json& dim) const {
  if (!dim.is_number_unsigned())
    fail_tensor(name, fmt::format("shape entry {} is not a non-negative integer — the header is corrupt", dim.dump()));
  return dim.get<uint64_t>();
}

TensorInfo Parser::read_tensor(const std::string& name, const json& entry) const {
  if (!entry.is_object())
    fail_tensor(
        name, fmt::format("the entry must be an object with dtype, shape and data_offsets, not {}", entry.type_name()));
  TensorInfo t;
  t.name = name;
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) fail_tensor(name, "missing or non-string \"dtype\"");
  t.dtype = dtype->get<std::string>();
  const size_t elem = dtype_size(t.dtype);
  if (elem == 0)
    fail_tensor(name,
                fmt::format("unknown dtype '{}' — the file is corrupt or needs a newer program", printable(t.dtype)));
  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) fail_tensor(name, "missing or non-array \"shape\"");
  for (const json& dim : *shape) t.shape.push_back(shape_entry(name, dim));
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned())
    fail_tensor(name, "\"data_offsets\" must be two non-negative integers [begin, end]");
  t.begin = (*offsets)[0].get<uint64_t>();
  t.end = (*offsets)[1].get<uint64_t>();
  if (t.begin > t.end)
    fail_tensor(name,
                fmt::format("data_offsets [{}, {}) begin after they end — the header is corrupt", t.begin, t.end));

  uint64_t n = 1, nbytes = 0;
  for (uint64_t d : t.shape)
    if (__builtin_mul_overflow(n, d, &n))
      fail_tensor(name, fmt::format("shape [{}] overflows 64 bits", fmt::join(t.shape, ", ")));
  if (__builtin_mul_overflow(n, uint64_t{elem}, &nbytes))
    fail_tensor(name, fmt::format("shape [{}] of {} needs more than 2^64 bytes", fmt::join(t.shape, ", "), t.dtype));
  if (nbytes != t.end - t.begin)
    fail_tensor(name, fmt::format("shape [{}] of {} is {} bytes, but data_offsets [{}, {}) span {} bytes — the "
                                  "header is inconsistent; the file is corrupt",
                                  fmt::join(t.shape, ", "), t.dtype, nbytes, t.begin, t.end, t.end - t.begin));
  return t;
}

// Tensors sorted by offset: the first one past the end is where a truncated download stops.
void Parser::check_layout(const File& file) const {
  const uint64_t data_size = file.file_size - file.data_offset;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : file.tensors) {
    if (t.end > data_size)
      fail_tensor(t.name, fmt::format("data [{}, {}) (data_offsets [{}, {}) after the header) ends past the end of "
                                      "the file (size {}) — the file is truncated; download it again",
                                      sum_str(file.data_offset, t.begin), sum_str(file.data_offset, t.end), t.begin,
                                      t.end, file.file_size));
    if (t.begin == t.end) continue;
    if (prev && t.begin < prev->end)
      fail_tensor(t.name, fmt::format("data_offsets [{}, {}) overlap tensor '{}' at [{}, {}) — the file is corrupt",
                                      t.begin, t.end, printable(prev->name), prev->begin, prev->end));
    prev = &t;
  }
}

File Parser::parse() {
  Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail(fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail(fmt::format("cannot stat: {}", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) fail("not a regular file");
  File file;
  file.path = path_;
  file.file_size = static_cast<uint64_t>(st.st_size);
  const json header = parse_json(read_header(fd.get(), file));
  if (!header.is_object())
    fail(fmt::format("the header must be a JSON object (tensor name -> entry), not {} — the file is corrupt",
                     header.type_name()));
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__")
      read_metadata(entry, file);
    else
      file.tensors.push_back(read_tensor(name, entry));
  }
  std::sort(file.tensors.begin(), file.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  check_layout(file);
  return file;
}

}  // namespace

size_t dtype_size(std::string_view dtype) {
  for (const DtypeSize& d : kDtypes)
    if (d.name == dtype) return d.size;
  return 0;
}

uint64_t TensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;  // validated against overflow when read
  return n;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  for (const TensorInfo& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

File read_file_header(const std::filesystem::path& path) { return Parser(path).parse(); }

}  // namespace autoglm::safetensors
