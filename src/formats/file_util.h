#pragma once
// Small pieces the GGUF and safetensors readers share.
#include <cstdint>
#include <string>
#include <unistd.h>

namespace autoglm::formats {

// Closes the descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// a + b + c for a message; offsets from a hostile file may not fit in 64 bits.
inline std::string sum_str(uint64_t a, uint64_t b, uint64_t c = 0) {
  uint64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum) || __builtin_add_overflow(sum, c, &sum)) return "2^64+";
  return std::to_string(sum);
}

}  // namespace autoglm::formats
