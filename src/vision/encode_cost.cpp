// The vision tower's speed on this machine, measured on a random tower of the real widths, and
// the time of an image from it.
#include <algorithm>
#include <chrono>

#include "autoglm/vision.h"

namespace autoglm::vision {

double EncodeCost::seconds(PatchGrid grid) const {
  const double per_frame = static_cast<double>(grid.h) * grid.w;
  const double n = static_cast<double>(grid.n_patches());
  return depth * (per_patch * n + per_pair * per_frame * n) + fixed_per_patch * n;
}

namespace {

double time_encode(VisionEncoder& encoder, PatchGrid grid, const std::vector<float>& patches, std::vector<float>& out) {
  const auto start = std::chrono::steady_clock::now();
  encoder.encode(patches.data(), grid, out);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

EncodeCost measure_encode_cost(const VisionConfig& config, kernels::DType stored, const model::LoadOptions& options,
                               int threads) {
  VisionConfig one = config;
  one.depth = 1;
  std::unique_ptr<VisionModel> model = VisionModel::random(one, stored, options);
  kernels::ThreadPool pool(threads);
  const uint32_t m = config.merge;
  // two frames of different sizes: time(n) = a·n + b·n² (n patches), solved from both; the large
  // one near a phone screenshot's size at the default pixel budget, where small grids' overheads
  // (the attention's padded tiles) no longer count
  const PatchGrid small{1, 24 * m, 24 * m}, large{1, 48 * m, 48 * m};
  std::vector<float> patches(large.n_patches() * config.patch_dim(), 0.1f), out;
  VisionEncoder encoder(*model, pool);
  time_encode(encoder, large, patches, out);  // buffers grow, pages are touched
  const double t1 = time_encode(encoder, large, patches, out);
  const double t0 = time_encode(encoder, small, patches, out);
  const double n0 = static_cast<double>(small.n_patches()), n1 = static_cast<double>(large.n_patches());
  EncodeCost cost;
  cost.depth = config.depth;
  cost.weight_type = model->weight_type;
  cost.per_pair = std::max(0.0, (t1 / n1 - t0 / n0) / (n1 - n0));  // never negative (timer noise)
  const double linear = std::max(0.0, t1 / n1 - cost.per_pair * n1);
  // the linear part is the block's matrices and the once-per-image embedding and merger: split by
  // their multiply-adds (the same kernels run both)
  const double d = config.d_model, window = static_cast<double>(m) * m, out_dim = config.out_dim;
  const double block = 3 * d * d + d * d + 3 * d * config.ffn_dim;
  const double fixed = static_cast<double>(config.patch_dim()) * d +
                       (window * d * out_dim + out_dim * out_dim + 3 * out_dim * config.merger_ffn_dim) / window;
  cost.per_patch = linear * block / (block + fixed);
  cost.fixed_per_patch = linear * fixed / (block + fixed);
  return cost;
}

}  // namespace autoglm::vision
