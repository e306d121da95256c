#include "model_setup.h"

#include <fmt/format.h>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "autoglm/error.h"
#include "autoglm/gguf.h"

namespace autoglm::cli {

std::string chat_template(const model::Model& m) {
  if (m.format == "gguf") return gguf::read_file_header(m.path).get_string("tokenizer.chat_template").value_or("");
  std::ifstream in(m.path / "tokenizer_config.json");
  const nlohmann::json cfg = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string())
    return cfg["chat_template"].get<std::string>();
  return "";
}

chat::ChatFormat choose_chat_format(const std::string& override_name, const model::Model& m, const Tokenizer& tok) {
  if (!override_name.empty()) return chat::parse_chat_format(override_name);
  if (auto f = chat::detect_chat_format(chat_template(m))) return *f;
  // no (recognised) template: the family's usual format
  chat::ChatFormat f = chat::ChatFormat::llama2;
  if (m.config.arch == "glm4") f = chat::ChatFormat::glm4;
  if (m.config.arch == "qwen2") f = chat::ChatFormat::chatml;
  if (m.config.arch == "llama" && tok.find_token("<|start_header_id|>")) f = chat::ChatFormat::llama3;
  spdlog::warn("{}: no recognised chat template; using the {} format (choose with --chat-format or model.chat_template)",
               m.path.string(), chat::chat_format_name(f));
  return f;
}

VisionSetup load_vision(const std::filesystem::path& model_path, const std::filesystem::path& mmproj,
                        const model::LoadOptions& options, const Tokenizer& tok) {
  namespace fs = std::filesystem;
  VisionSetup v;
  const bool folder_vision = fs::is_directory(model_path) && vision::VisionModel::folder_has_vision(model_path);
  if (!mmproj.empty()) {
    if (folder_vision)
      throw Error(kExitUsage, fmt::format("{} holds its own vision tower; drop --mmproj / model.mmproj", model_path.string()));
    if (!fs::exists(mmproj))
      throw Error(kExitCheckFailed, fmt::format("mmproj '{}' does not exist: download the projector GGUF there, or fix "
                                                "--mmproj / model.mmproj", mmproj.string()));
    spdlog::info("loading the vision tower from {}", mmproj.string());
    v.model = vision::VisionModel::load_mmproj(mmproj, options);
    // the mmproj carries no pixel limits: GLM-4.1V-9B's preprocessor_config.json (shortest_edge / longest_edge)
    v.processor.min_pixels = 12544;
    v.processor.max_pixels = 9633792;
  } else if (folder_vision) {
    spdlog::info("loading the vision tower from {}", model_path.string());
    v.model = vision::VisionModel::load_hf(model_path, options);
    const fs::path pp = model_path / "preprocessor_config.json";
    try {
      if (fs::exists(pp)) v.processor = image::ProcessorConfig::load(pp);
    } catch (const image::ImageError& e) {
      throw Error(kExitCheckFailed, fmt::format("{}: {}", pp.string(), e.what()));
    }
  } else {
    return v;
  }
  v.processor.patch_size = v.model->config.patch_size;
  v.processor.temporal_patch_size = v.model->config.temporal_patch;
  v.processor.merge_size = v.model->config.merge;
  const auto id = tok.find_token(std::string(chat::kImageToken));
  if (!id)
    throw Error(kExitCheckFailed, fmt::format("{}: the vocabulary has no '{}' token, so images cannot be placed in a "
                                              "prompt; is this the text model the vision tower belongs to?",
                                              model_path.string(), chat::kImageToken));
  v.image_token = *id;
  return v;
}

void set_pixel_limits(VisionSetup& v, uint64_t min_pixels, uint64_t max_pixels) {
  if (min_pixels) v.processor.min_pixels = min_pixels;
  if (max_pixels) v.processor.max_pixels = max_pixels;
  if (v.processor.min_pixels > v.processor.max_pixels)
    throw Error(kExitUsage, fmt::format("images: min pixels {} is above max pixels {}", v.processor.min_pixels,
                                        v.processor.max_pixels));
}

ImageFiles read_images(const std::vector<std::string>& files, const VisionSetup& v) {
  ImageFiles out;
  if (files.empty()) return out;
  if (!v.model)
    throw Error(kExitUsage, "--image: this model reads text only (give a GLM-4.1V folder, or a text GGUF with --mmproj)");
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(kExitUsage, fmt::format("--image {}: cannot read the file", file));
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      image::Patches p = image::preprocess(image::decode(bytes), v.processor);
      out.grids.push_back({p.t, p.h, p.w});
      out.patches.push_back(std::move(p.values));
    } catch (const image::ImageError& e) {
      throw Error(kExitUsage, fmt::format("--image {}: {}", file, e.what()));
    }
    out.hashes.push_back(vision::image_hash(out.patches.back().data(), out.grids.back(), v.model->config.patch_dim()));
  }
  return out;
}

chat::ChatFormat vision_chat_format(chat::ChatFormat chosen, const std::string& override_name) {
  if (chat::reads_images(chosen)) return chosen;
  if (!override_name.empty())
    throw Error(kExitUsage, fmt::format("chat format '{}' cannot place images; use glm4v for a GLM-4.1V model",
                                        chat::chat_format_name(chosen)));
  spdlog::warn("the model's chat template does not place images; using the glm4v format");
  return chat::ChatFormat::glm4v;
}

Tokenizer load_tokenizer(const std::filesystem::path& model_path) {
  return std::filesystem::is_directory(model_path) ? Tokenizer::from_hf_folder(model_path)
                                                   : Tokenizer::from_gguf_file(model_path);
}

}  // namespace autoglm::cli
