#pragma once
// serve and deploy: from a config to a running service, until SIGTERM/SIGINT.
#include <vector>

#include "autoglm/config.h"
#include "autoglm/hardware.h"
#include "autoglm/model.h"
#include "autoglm/preflight.h"

namespace autoglm::cli {

struct ServiceRun {
  bool preflight = false;   // deploy: refuse a model that does not fit (unless force)
  bool force = false;
  bool gpu_flag = false;    // --gpu was given
};

// Resolves the model (path, download or the built-in demo), checks and loads it, serves it, prints
// the URL and a ready-to-paste request, and returns 0 after a graceful stop.
int run_service(const config::Config& cfg, const ServiceRun& how);

// The devices of a hardware report as the preflight sees them (shared with check-hardware).
std::vector<preflight::DeviceMemory> devices_of(const hardware::HardwareReport& hw);
bool has_usable_gpu(const hardware::HardwareReport& hw);

// The options the vision tower loads with: quantized at load by vision.quantization / model.quantization
// (a float tower served from the CPU becomes Q8_0 by default).
model::LoadOptions vision_load_options(const config::Config& cfg, model::LoadOptions o);

}  // namespace autoglm::cli
