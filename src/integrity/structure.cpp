// Header-only structure checks: GGUF, safetensors, JSON, and Hugging Face shard indexes.
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "autoglm/gguf.h"
#include "autoglm/integrity.h"
#include "autoglm/safetensors.h"
#include "internal.h"

namespace autoglm::integrity {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Validates JSON without building it: memory stays flat whatever the file holds.
struct JsonValidator : nlohmann::json_sax<json> {
  std::string error;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = e.what();
    return false;
  }
};

// Collects weight_map (tensor -> shard) from an index file without building the whole document.
struct IndexReader : JsonValidator {
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::string problem;
  bool saw_weight_map = false;
  int depth = 0;
  std::string top_key, tensor;
  bool in_map() const { return depth == 2 && top_key == "weight_map"; }

  bool value(const char* kind) {
    if (depth == 0) return bad(fmt::format("the index must be a JSON object, not {}", kind));
    if (depth == 1 && top_key == "weight_map")
      return bad(fmt::format("\"weight_map\" must be an object, not {}", kind));
    if (in_map()) return bad(fmt::format("weight_map entry '{}' must be a shard file name, not {}", tensor, kind));
    return true;
  }
  bool bad(std::string message) {
    if (problem.empty()) problem = std::move(message);
    return false;
  }
  bool null() override { return value("null"); }
  bool boolean(bool) override { return value("a boolean"); }
  bool number_integer(number_integer_t) override { return value("a number"); }
  bool number_unsigned(number_unsigned_t) override { return value("a number"); }
  bool number_float(number_float_t, const string_t&) override { return value("a number"); }
  bool string(string_t& s) override {
    if (in_map()) {
      weight_map.emplace_back(tensor, s);
      return true;
    }
    return value("a string");
  }
  bool start_object(std::size_t) override {
    if (depth == 1 && top_key == "weight_map")
      saw_weight_map = true;
    else if (depth != 0 && !value("an object"))
      return false;
    ++depth;
    return true;
  }
  bool start_array(std::size_t) override {
    if (!value("an array")) return false;
    ++depth;
    return true;
  }
  bool end_object() override {
    --depth;
    return true;
  }
  bool end_array() override {
    --depth;
    return true;
  }
  bool key(string_t& k) override {
    if (depth == 1)
      top_key = k;
    else if (depth == 2)
      tensor = k;
    return true;
  }
};

std::string check_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("{}: cannot open", path.string());
  JsonValidator sax;
  json::sax_parse(in, &sax);
  if (!sax.error.empty())
    return fmt::format("{}: not valid JSON: {} — the file is damaged; download it again", path.string(), sax.error);
  return "";
}

// Shard names come from the file: keep them inside the index's folder.
bool safe_relative(const fs::path& name) {
  if (name.empty() || name.is_absolute()) return false;
  for (const fs::path& part : name.lexically_normal())
    if (part == "..") return false;
  return true;
}

}  // namespace

Format detect_format(const fs::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".gguf") return Format::gguf;
  if (ext == ".safetensors") return Format::safetensors;
  if (ext == ".json") return Format::json;
  return Format::other;
}

const char* format_name(Format format) {
  switch (format) {
    case Format::gguf:
      return "gguf";
    case Format::safetensors:
      return "safetensors";
    case Format::json:
      return "json";
    case Format::other:
      return "other";
  }
  return "other";
}

std::string check_structure(const fs::path& path, Format format) {
  try {
    switch (format) {
      case Format::gguf:
        gguf::read_file_header(path);
        return "";
      case Format::safetensors:
        safetensors::read_file_header(path);
        return "";
      case Format::json:
        return check_json(path);
      case Format::other:
        return "";
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> check_shard_index(const fs::path& index_path, std::vector<fs::path>* missing_shards,
                                           std::vector<fs::path>* corrupt_shards) {
  const std::string where = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return {where + ": cannot open"};
  IndexReader index;
  json::sax_parse(in, &index);
  if (!index.problem.empty()) return {fmt::format("{}: {}", where, index.problem)};
  if (!index.error.empty()) return {fmt::format("{}: not valid JSON: {}", where, index.error)};
  if (!index.saw_weight_map) return {where + ": no \"weight_map\" object — this is not a safetensors shard index"};

  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto& [tensor, shard] : index.weight_map) by_shard[shard].push_back(tensor);
  std::vector<std::string> problems;
  for (const auto& [shard, tensors] : by_shard) {
    if (!safe_relative(shard)) {
      problems.push_back(fmt::format("{}: weight_map names shard '{}', outside the model folder", where, shard));
      continue;
    }
    const fs::path shard_path = index_path.parent_path() / shard;
    std::error_code ec;
    if (!fs::is_regular_file(shard_path, ec)) {
      problems.push_back(fmt::format("{}: weight_map names shard '{}' ({} tensors, e.g. '{}'), which does not exist",
                                     where, shard, tensors.size(), tensors.front()));
      if (missing_shards) missing_shards->push_back(shard_path);
      continue;
    }
    std::set<std::string_view> present;
    safetensors::File file;
    try {
      file = safetensors::read_file_header(shard_path);
    } catch (const std::exception&) {
      if (corrupt_shards)
        corrupt_shards->push_back(shard_path);
      else
        problems.push_back(
            fmt::format("{}: cannot check the tensors mapped to '{}': its header is corrupt", where, shard));
      continue;
    }
    for (const auto& t : file.tensors) present.insert(t.name);
    for (const std::string& tensor : tensors)
      if (!present.contains(tensor))
        problems.push_back(
            fmt::format("{}: tensor '{}' is mapped to shard '{}', which has no such tensor", where, tensor, shard));
  }
  return problems;
}

bool is_shard_index(const fs::path& path) { return ends_with(path.filename().string(), ".safetensors.index.json"); }

}  // namespace autoglm::integrity
