#pragma once
// Per-client token buckets: `requests` tokens, refilled continuously over `per`.
#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace autoglm::server {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(uint32_t requests, std::chrono::milliseconds per);
  // Takes a token from `client`'s bucket. 0 when allowed; else the seconds until a token is back.
  double acquire(const std::string& client, Clock::time_point now = Clock::now());

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };
  double capacity_, per_second_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;
};

}  // namespace autoglm::server
