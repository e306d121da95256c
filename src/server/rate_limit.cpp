#include "rate_limit.h"

#include <algorithm>

namespace autoglm::server {

RateLimiter::RateLimiter(uint32_t requests, std::chrono::milliseconds per)
    : capacity_(requests), per_second_(requests / std::max(std::chrono::duration<double>(per).count(), 1e-3)) {}

double RateLimiter::acquire(const std::string& client, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto [it, added] = buckets_.try_emplace(client, Bucket{capacity_, now});
  Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.updated).count();
  b.tokens = std::min(capacity_, b.tokens + std::max(elapsed, 0.0) * per_second_);
  b.updated = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0.0;
  }
  const double wait = (1.0 - b.tokens) / per_second_;
  // refilled buckets carry no information: forget them now and then so the map stays small
  if (buckets_.size() > 10'000)
    std::erase_if(buckets_, [&](const auto& kv) {
      return kv.second.tokens + std::chrono::duration<double>(now - kv.second.updated).count() * per_second_ >= capacity_;
    });
  return wait;
}

}  // namespace autoglm::server
