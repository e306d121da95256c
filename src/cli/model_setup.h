#pragma once
// What generate, serve and deploy share about a loaded model: its chat format, its vision tower.
#include <memory>
#include <string>

#include "autoglm/chat.h"
#include "autoglm/image.h"
#include "autoglm/model.h"
#include "autoglm/tokenizer.h"
#include "autoglm/vision.h"

namespace autoglm::cli {

// The model's own chat template: GGUF metadata, or tokenizer_config.json of a HF folder ("" if none).
std::string chat_template(const model::Model& m);

// `override_name` (glm4|glm4v|llama3|chatml|llama2) when given, else the format the model's template is
// written for, else the family's usual format (with a warning saying how to choose).
chat::ChatFormat choose_chat_format(const std::string& override_name, const model::Model& m, const Tokenizer& tok);

// A vision-language model's vision side: the tower, how its images are preprocessed and the token
// that stands for an image.
struct VisionSetup {
  std::unique_ptr<vision::VisionModel> model;  // null: the model reads text only
  image::ProcessorConfig processor;
  int32_t image_token = -1;
};
// The vision tower of `model_path` (a HF folder with a vision_config) or of `mmproj` (llama.cpp's
// projector GGUF beside a text GGUF); none when neither has one. Throws Error when the pieces do not
// fit together (an mmproj for a folder that has its own tower, no image token in the vocabulary).
VisionSetup load_vision(const std::filesystem::path& model_path, const std::filesystem::path& mmproj,
                        const model::LoadOptions& options, const Tokenizer& tok);

// --min-image-pixels / --max-image-pixels (0: keep the processor's). Throws Error when min > max.
void set_pixel_limits(VisionSetup& v, uint64_t min_pixels, uint64_t max_pixels);

// Image files read, decoded and cut into patches as the model's processor does; errors name the file.
struct ImageFiles {
  std::vector<std::vector<float>> patches;
  std::vector<vision::PatchGrid> grids;
  std::vector<uint64_t> hashes;
};
ImageFiles read_images(const std::vector<std::string>& files, const VisionSetup& v);

// The chat format for a model with a vision tower: one that places images (glm4v), or an Error
// when an explicit override cannot.
chat::ChatFormat vision_chat_format(chat::ChatFormat chosen, const std::string& override_name);

// The tokenizer of a GGUF file or a HF folder.
Tokenizer load_tokenizer(const std::filesystem::path& model_path);

}  // namespace autoglm::cli
