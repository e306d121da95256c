// SHA-256 of files through OpenSSL's EVP interface (SHA-NI / AVX2 code paths where the CPU has them).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <future>
#include <memory>
#include <numeric>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "autoglm/error.h"
#include "autoglm/integrity.h"
#include "internal.h"
#include "parallel.h"

namespace autoglm::integrity {
namespace {

struct Digest {
  Digest() : ctx(EVP_MD_CTX_new()) {
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1)
      throw Error(kExitCheckFailed, "OpenSSL could not start a SHA-256 digest (is libcrypto installed correctly?)");
  }
  ~Digest() { EVP_MD_CTX_free(ctx); }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  void update(const void* data, size_t n) {
    if (EVP_DigestUpdate(ctx, data, n) != 1) throw Error(kExitCheckFailed, "OpenSSL SHA-256 update failed");
  }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1) throw Error(kExitCheckFailed, "OpenSSL SHA-256 final failed");
    std::string out;
    out.reserve(2 * len);
    for (unsigned int k = 0; k < len; ++k) out += fmt::format("{:02x}", md[k]);
    return out;
  }

  EVP_MD_CTX* ctx;
};

class InputFile {
 public:
  explicit InputFile(const std::filesystem::path& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) fail("cannot open", errno);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat", errno);
    if (S_ISDIR(st.st_mode)) throw Error(kExitCheckFailed, path.string() + ": is a folder, not a file");
    size_ = static_cast<uint64_t>(st.st_size);
    // Widens the kernel's readahead for this file: fewer, larger disk requests on a cold cache.
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  // Bytes read into buf (0 at the end); throws on a read error.
  size_t read(char* buf, size_t cap) {
    for (;;) {
      const ssize_t got = ::read(fd_, buf, cap);
      if (got >= 0) {
        offset_ += static_cast<uint64_t>(got);
        return static_cast<size_t>(got);
      }
      if (const int err = errno; err != EINTR) fail(fmt::format("read error at offset {}", offset_), err);
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what, int err) const {
    throw Error(kExitCheckFailed, fmt::format("{}: {}: {}", path_.string(), what, std::strerror(err)));
  }

  std::filesystem::path path_;
  int fd_;
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
};

// Reads the next chunk on another thread while this one hashes the last: the copy out of the
// page cache (~20% of the time) then costs no wall time. Only worth it when a core is idle.
uint64_t hash_overlapped(InputFile& in, Digest& digest, size_t cap, const ProgressFn& progress) {
  auto a = std::make_unique_for_overwrite<char[]>(cap);
  auto b = std::make_unique_for_overwrite<char[]>(cap);
  uint64_t total = 0;
  for (size_t n = in.read(a.get(), cap); n > 0;) {
    auto next = std::async(std::launch::async, [&in, buf = b.get(), cap] { return in.read(buf, cap); });
    digest.update(a.get(), n);
    total += n;
    if (progress) progress(n);
    n = next.get();
    std::swap(a, b);
  }
  return total;
}

uint64_t hash_sequential(InputFile& in, Digest& digest, size_t cap, const ProgressFn& progress) {
  auto buf = std::make_unique_for_overwrite<char[]>(cap);
  uint64_t total = 0;
  for (size_t n = in.read(buf.get(), cap); n > 0; n = in.read(buf.get(), cap)) {
    digest.update(buf.get(), n);
    total += n;
    if (progress) progress(n);
  }
  return total;
}

}  // namespace

HashResult hash_file(const std::filesystem::path& path, const ProgressFn& progress, size_t buffer_size,
                     bool overlap_reads) {
  HashResult r;
  r.path = path;
  try {
    InputFile in(path);
    // Small files do not need the whole buffer.
    const size_t cap =
        static_cast<size_t>(std::clamp<uint64_t>(in.size() + 1, 4096, std::max<size_t>(buffer_size, 4096)));
    Digest digest;
    const bool overlap = overlap_reads && in.size() > 2 * cap;
    r.size = overlap ? hash_overlapped(in, digest, cap, progress) : hash_sequential(in, digest, cap, progress);
    r.sha256 = digest.hex();
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

bool overlap_reads(unsigned workers) { return 2 * workers <= std::max(1u, std::thread::hardware_concurrency()); }

std::string sha256_hex(std::string_view data) {
  Digest digest;
  digest.update(data.data(), data.size());
  return digest.hex();
}

std::string sha256_file(const std::filesystem::path& path, const ProgressFn& progress, size_t buffer_size) {
  HashResult r = hash_file(path, progress, buffer_size, overlap_reads(1));
  if (!r.error.empty()) throw Error(kExitCheckFailed, r.error);
  return r.sha256;
}

std::vector<HashResult> sha256_files(const std::vector<std::filesystem::path>& paths, unsigned threads,
                                     const ProgressFn& progress, size_t buffer_size) {
  std::vector<uint64_t> sizes(paths.size());
  for (size_t k = 0; k < paths.size(); ++k) {
    std::error_code ec;
    sizes[k] = std::filesystem::file_size(paths[k], ec);
    if (ec) sizes[k] = 0;
  }
  std::vector<size_t> order(paths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });

  std::vector<HashResult> results(paths.size());
  const unsigned workers = detail::worker_count(threads, paths.size());
  const bool overlap = overlap_reads(workers);
  detail::parallel_for_each(order, workers,
                            [&](size_t k) { results[k] = hash_file(paths[k], progress, buffer_size, overlap); });
  return results;
}

bool is_sha256_hex(std::string_view text) {
  return text.size() == 64 &&
         std::all_of(text.begin(), text.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

}  // namespace autoglm::integrity
