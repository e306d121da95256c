#include "config_flags.h"

namespace autoglm::cli {

void add_config_flags(CLI::App& cmd, std::vector<ConfigFlag>& flags) {
  for (ConfigFlag& f : flags) {
    const std::string help = f.help + " (overrides " + f.field + ")";
    f.option = f.list ? cmd.add_option(f.flag, f.values, help) : cmd.add_option(f.flag, f.value, help);
  }
}

config::Config load_config_with_flags(const std::string& path, const std::vector<ConfigFlag>& flags) {
  config::Config cfg = path.empty() ? config::default_config() : config::load_config(path);
  std::vector<config::Problem> problems;
  for (const ConfigFlag& f : flags) {
    if (f.option->count() == 0) continue;
    try {
      // --model takes a path or an http(s):// URL to download
      const bool url = f.field == "model.path" && (f.value.starts_with("http://") || f.value.starts_with("https://"));
      std::string value = f.value;
      if (f.list) {
        value.clear();
        for (const std::string& v : f.values) value += (value.empty() ? "" : ",") + v;
      }
      config::apply_override(cfg, url ? "model.url" : f.field, value, f.option->get_name());
    } catch (const config::ConfigError& e) {
      problems.insert(problems.end(), e.problems().begin(), e.problems().end());
    }
  }
  if (!problems.empty()) throw config::ConfigError(std::move(problems));
  config::validate(cfg);
  return cfg;
}

}  // namespace autoglm::cli
