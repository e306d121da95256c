#include "autoglm/npy.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>

namespace autoglm::npy {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(kExitCheckFailed, fmt::format("{}: {}", path.string(), what));
}

// The numbers between the parentheses after 'shape':, e.g. "(64, 2048)".
std::vector<uint64_t> parse_shape(const std::filesystem::path& path, const std::string& header) {
  const size_t key = header.find("'shape'");
  const size_t open = header.find('(', key == std::string::npos ? header.size() : key);
  const size_t close = header.find(')', open == std::string::npos ? header.size() : open);
  if (close == std::string::npos) fail(path, "no shape in the header");
  std::vector<uint64_t> shape;
  uint64_t value = 0;
  bool in_number = false;
  for (size_t i = open + 1; i <= close; ++i) {
    const char ch = header[i];
    if (ch >= '0' && ch <= '9') {
      if (value > (uint64_t{1} << 40)) fail(path, "absurd shape");
      value = value * 10 + static_cast<uint64_t>(ch - '0');
      in_number = true;
    } else if (ch == ',' || ch == ')' || ch == ' ') {
      if (in_number) shape.push_back(value);
      value = 0;
      in_number = false;
    } else {
      fail(path, "malformed shape in the header");
    }
  }
  return shape;
}

}  // namespace

namespace {

// Column-major values (the first index fastest) to row-major, for any number of dims.
template <typename T>
std::vector<T> to_c_order(const std::vector<T>& f, const std::vector<uint64_t>& shape) {
  std::vector<T> c(f.size());
  std::vector<uint64_t> index(shape.size(), 0);
  for (size_t i = 0; i < f.size(); ++i) {  // i walks the C order; index is its multi-index
    uint64_t offset = 0, stride = 1;
    for (size_t k = 0; k < shape.size(); ++k) {
      offset += index[k] * stride;
      stride *= shape[k];
    }
    c[i] = f[offset];
    for (size_t k = shape.size(); k-- > 0;) {
      if (++index[k] < shape[k]) break;
      index[k] = 0;
    }
  }
  return c;
}

// Reads a C- or Fortran-order array of `descr` ("<f4", "<i8") into `data`, returning its shape.
template <typename T>
std::vector<uint64_t> read_array(const std::filesystem::path& path, const char* descr, const char* what,
                                 std::vector<T>& data) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  char magic[6] = {};
  uint8_t version[2] = {};
  uint16_t header_len = 0;
  in.read(magic, 6);
  in.read(reinterpret_cast<char*>(version), 2);
  in.read(reinterpret_cast<char*>(&header_len), 2);
  if (!in || std::string(magic, 6) != std::string(kMagic, 6) || version[0] != 1) fail(path, "not a version-1 .npy file");
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  if (!in) fail(path, "truncated header");
  if (header.find(fmt::format("'descr': '{}'", descr)) == std::string::npos) fail(path, fmt::format("not a {} array", what));
  const bool fortran = header.find("'fortran_order': True") != std::string::npos;
  if (!fortran && header.find("'fortran_order': False") == std::string::npos) fail(path, "no fortran_order in the header");
  std::vector<uint64_t> shape = parse_shape(path, header);
  uint64_t count = 1;
  for (uint64_t d : shape) {
    if (d != 0 && count > (uint64_t{1} << 40) / d) fail(path, "absurd shape");
    count *= d;
  }
  data.resize(count);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in) fail(path, fmt::format("truncated data: expected {} values", count));
  if (fortran) data = to_c_order(data, shape);
  return shape;
}

}  // namespace

ArrayF32 read_f32(const std::filesystem::path& path) {
  ArrayF32 a;
  a.shape = read_array(path, "<f4", "float32", a.data);
  return a;
}

ArrayI64 read_i64(const std::filesystem::path& path) {
  ArrayI64 a;
  a.shape = read_array(path, "<i8", "int64", a.data);
  return a;
}

void write_f32(const std::filesystem::path& path, std::span<const float> data, std::span<const uint64_t> shape) {
  std::string dims = fmt::format("{}", fmt::join(shape, ", "));
  if (shape.size() == 1) dims += ",";
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(kExitUsage, fmt::format("{}: cannot create the file", path.string()));
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write(kMagic, 6);
  out.put(1);
  out.put(0);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size_bytes()));
  if (!out) throw Error(kExitCheckFailed, fmt::format("{}: write failed (disk full?)", path.string()));
}

}  // namespace autoglm::npy
