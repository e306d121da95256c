// Prompts with images: placeholders expanded to image tokens, their M-RoPE positions and the
// prefix-cache key that tells two images apart.
#include <algorithm>
#include <cstring>
#include <fmt/format.h>

#include "autoglm/vision.h"

namespace autoglm::vision {
namespace {

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 31);
}

// A negative id for the j-th token of an image: never a vocabulary id, different for different
// images (31 bits of the hash per token, so a whole image's key is a long run of them).
int32_t key_id(uint64_t hash, size_t j) {
  const uint64_t h = mix(hash, j);
  return -1 - static_cast<int32_t>(h & 0x3FFFFFFFu);
}

}  // namespace

uint64_t image_hash(const float* patches, PatchGrid grid, size_t patch_dim) {
  uint64_t h = mix(mix(mix(0x243F6A8885A308D3ull, grid.t), grid.h), grid.w);
  const size_t n = grid.n_patches() * patch_dim;
  for (size_t i = 0; i + 1 < n; i += 2) {
    uint64_t v = 0;
    std::memcpy(&v, patches + i, sizeof v);
    h = mix(h, v);
  }
  if (n % 2) {
    uint32_t v = 0;
    std::memcpy(&v, patches + n - 1, sizeof v);
    h = mix(h, v);
  }
  return h;
}

size_t MultimodalPrompt::image_tokens() const {
  size_t n = 0;
  for (const engine::ImagePlacement& p : images) n += p.n_tokens();
  return n;
}

MultimodalPrompt expand_prompt(std::span<const int32_t> ids, int32_t image_token, std::span<const PatchGrid> grids,
                               std::span<const uint64_t> hashes, uint32_t merge) {
  size_t placeholders = 0;
  for (int32_t id : ids) placeholders += id == image_token;
  if (placeholders != grids.size() || hashes.size() != grids.size())
    throw Error(kExitUsage, fmt::format("the prompt holds {} image placeholders for {} images (is the text '<|image|>' "
                                        "in a message?)", placeholders, grids.size()));
  MultimodalPrompt out;
  size_t image = 0;
  for (int32_t id : ids) {
    if (id != image_token) {
      out.tokens.push_back(id);
      out.cache_key.push_back(id);
      continue;
    }
    const PatchGrid& g = grids[image];
    if (merge == 0 || g.h % merge || g.w % merge)
      throw Error(kExitUsage, fmt::format("image {}: a grid of {}x{} patches does not merge by {}", image, g.h, g.w, merge));
    engine::ImagePlacement p{out.tokens.size(), g.t, g.h / merge, g.w / merge};
    for (size_t j = 0; j < p.n_tokens(); ++j) {
      out.tokens.push_back(image_token);
      out.cache_key.push_back(key_id(hashes[image], j));
    }
    out.images.push_back(p);
    ++image;
  }
  out.positions = engine::multimodal_positions(out.tokens.size(), out.images);
  return out;
}

PromptEmbeddings embed_images(VisionEncoder& encoder, const MultimodalPrompt& prompt,
                              std::span<const std::vector<float>> patches, std::span<const PatchGrid> grids) {
  if (patches.size() != prompt.images.size() || grids.size() != prompt.images.size())
    throw Error(kExitUsage, "embed_images: one patch set and grid per image");
  const size_t d = encoder.config().out_dim;
  PromptEmbeddings out;
  out.data.resize(prompt.image_tokens() * d);
  out.rows.assign(prompt.tokens.size(), nullptr);
  std::vector<float> rows;
  size_t at = 0;
  for (size_t i = 0; i < prompt.images.size(); ++i) {
    encoder.encode(patches[i].data(), grids[i], rows);
    const engine::ImagePlacement& p = prompt.images[i];
    if (rows.size() != p.n_tokens() * d) throw Error(kExitCheckFailed, "embed_images: the tower's rows do not match the grid");
    std::copy(rows.begin(), rows.end(), out.data.begin() + static_cast<std::ptrdiff_t>(at * d));
    for (size_t j = 0; j < p.n_tokens(); ++j) out.rows[p.first + j] = out.data.data() + (at + j) * d;
    at += p.n_tokens();
  }
  return out;
}

}  // namespace autoglm::vision
