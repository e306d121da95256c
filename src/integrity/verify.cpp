// verify(): which files to check, what hash each should have, and the parallel check itself.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <fmt/format.h>
#include <numeric>

#include "autoglm/error.h"
#include "autoglm/integrity.h"
#include "autoglm/progress.h"
#include "internal.h"
#include "parallel.h"

namespace autoglm::integrity {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxIndexProblemsShown = 5;

[[noreturn]] void usage(const std::string& message) { throw Error(kExitUsage, message); }

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Two spellings of one file ("dir/a", "./dir/a") must meet in one row.
std::string key_of(const fs::path& path) { return fs::absolute(path).lexically_normal().string(); }

struct Plan {
  fs::path path;
  bool is_dir = false;
  std::map<std::string, FileReport> rows;  // by key_of
  Report report;

  FileReport& row(const fs::path& shown) {
    auto [it, inserted] = rows.try_emplace(key_of(shown));
    if (inserted) {
      it->second.path = shown;
      it->second.format = detect_format(shown);
    }
    return it->second;
  }

  // Records an expected hash for `target`; a single-file PATH ignores other files. True if used.
  bool expect(const fs::path& target, const std::string& hex, const std::string& source) {
    if (!is_dir && key_of(target) != key_of(path)) return false;
    FileReport& r = row(target);
    const std::string want = lower(hex);
    if (r.expected_sha256 && *r.expected_sha256 != want) {
      report.errors.push_back(fmt::format("conflicting expected SHA-256 for {}: {} ({}) and {} ({})", r.path.string(),
                                          *r.expected_sha256, r.expected_from, want, source));
      return true;
    }
    r.expected_sha256 = want;
    r.expected_from = source;
    return true;
  }
};

void check_usage(const fs::path& path, const VerifyOptions& options, bool is_dir) {
  if (options.sha256 && options.manifest)
    usage(
        "--sha256 and --manifest cannot be used together: give --sha256 HEX for a single file, or --manifest "
        "SHA256SUMS");
  if (options.sha256) {
    if (is_dir)
      usage(
          fmt::format("--sha256 needs a single file, but '{}' is a folder: use --manifest SHA256SUMS to check a "
                      "folder",
                      path.string()));
    if (!is_sha256_hex(*options.sha256))
      usage(fmt::format("--sha256 must be 64 hex digits, got {} characters ('{}')", options.sha256->size(),
                        options.sha256->substr(0, 80)));
  }
  for (const auto& [name, hex] : options.expected)
    if (!is_sha256_hex(hex))
      usage(fmt::format("model.sha256: the hash for '{}' must be 64 hex digits, got '{}'", name, hex.substr(0, 80)));
}

void list_folder(Plan& plan) {
  std::error_code ec;
  for (fs::directory_iterator it(plan.path, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;  // follows symlinks (Hugging Face cache snapshots)
    if (detect_format(it->path()) != Format::other) plan.row(plan.path / it->path().filename());
  }
  if (ec) usage(fmt::format("cannot list folder '{}': {}", plan.path.string(), ec.message()));
}

void add_manifest(Plan& plan, const fs::path& manifest_path) {
  const Manifest manifest = read_manifest(manifest_path);
  plan.report.errors.insert(plan.report.errors.end(), manifest.errors.begin(), manifest.errors.end());
  if (manifest.entries.empty() && manifest.errors.empty())
    plan.report.errors.push_back(fmt::format("{}: the manifest lists no files", manifest_path.string()));
  bool listed = false;
  for (const ManifestEntry& e : manifest.entries)
    listed |= plan.expect(manifest_path.parent_path() / e.name, e.sha256,
                          fmt::format("{}:{}", manifest_path.string(), e.line));
  if (!plan.is_dir && !listed && !manifest.entries.empty())
    plan.report.errors.push_back(fmt::format("{} is not listed in {}", plan.path.string(), manifest_path.string()));
}

// Marks rows whose file is not there; returns the ones to check.
std::vector<FileReport*> existing_rows(Plan& plan) {
  std::vector<FileReport*> out;
  for (auto& [key, r] : plan.rows) {
    std::error_code ec;
    const auto st = fs::status(r.path, ec);
    if (fs::is_regular_file(st)) {
      r.size = fs::file_size(r.path, ec);
      out.push_back(&r);
      continue;
    }
    r.exists = false;
    r.error = fs::exists(st) ? "not a regular file" : "not found";
    if (!r.expected_from.empty()) r.error += fmt::format(" (listed in {})", r.expected_from);
  }
  return out;
}

void check_one(FileReport& r, bool hash, bool overlap, const ProgressFn& progress) {
  r.structure_error = check_structure(r.path, r.format);
  if (r.format != Format::other) r.structure = r.structure_error.empty() ? Structure::ok : Structure::error;
  if (!hash) return;
  HashResult h = hash_file(r.path, progress, kDefaultReadBuffer, overlap);
  r.sha256 = std::move(h.sha256);
  r.error = std::move(h.error);
}

void check_all(const std::vector<FileReport*>& files, const VerifyOptions& options, Report& report) {
  std::vector<size_t> order(files.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first: the last file to start should be a small one.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return files[a]->size > files[b]->size; });
  uint64_t total = 0;
  for (const FileReport* f : files) total += f->size;
  ProgressBar bar("sha256", total, options.progress && options.hash && ProgressBar::stderr_is_tty());
  const ProgressFn progress = [&bar](uint64_t n) { bar.advance(n); };
  report.threads = detail::worker_count(options.threads, files.size());
  const bool overlap = overlap_reads(report.threads);
  detail::parallel_for_each(order, report.threads,
                            [&](size_t k) { check_one(*files[k], options.hash, overlap, progress); });
  bar.finish();
}

void check_indexes(Plan& plan) {
  std::vector<std::pair<fs::path, std::string>> missing;  // shard, index that names it
  for (auto& [key, r] : plan.rows) {
    if (!r.exists || r.structure != Structure::ok || !is_shard_index(r.path)) continue;
    std::vector<fs::path> missing_shards, corrupt_shards;
    std::vector<std::string> problems = check_shard_index(r.path, &missing_shards, &corrupt_shards);
    for (const fs::path& s : missing_shards) missing.emplace_back(s, r.path.filename().string());
    // A corrupt shard checked in this run is reported on its own row; others make the index fail.
    for (const fs::path& s : corrupt_shards)
      if (auto it = plan.rows.find(key_of(s)); it == plan.rows.end() || it->second.structure != Structure::error)
        problems.push_back(fmt::format("{}: cannot check the tensors mapped to '{}': its header is corrupt",
                                       r.path.string(), s.filename().string()));
    if (problems.empty()) continue;
    r.structure = Structure::error;
    for (size_t k = 0; k < problems.size() && k < kMaxIndexProblemsShown; ++k)
      r.structure_error += (k ? "\n" : "") + problems[k];
    if (problems.size() > kMaxIndexProblemsShown)
      r.structure_error += fmt::format("\n(and {} more problems)", problems.size() - kMaxIndexProblemsShown);
  }
  for (const auto& [shard, index] : missing) {
    FileReport& r = plan.row(shard);
    if (!r.exists || !r.error.empty()) continue;
    r.exists = false;
    r.error = fmt::format("not found (named by {})", index);
  }
}

}  // namespace

const char* structure_name(Structure structure) {
  switch (structure) {
    case Structure::ok:
      return "ok";
    case Structure::error:
      return "error";
    case Structure::not_checked:
      return "not_checked";
  }
  return "not_checked";
}

const char* status_name(Status status) {
  switch (status) {
    case Status::ok:
      return "OK";
    case Status::mismatch:
      return "MISMATCH";
    case Status::corrupt:
      return "CORRUPT";
    case Status::missing:
      return "MISSING";
  }
  return "OK";
}

Status FileReport::status() const {
  if (!exists) return Status::missing;
  if (structure == Structure::error || !error.empty()) return Status::corrupt;
  if (hash_ok == false) return Status::mismatch;
  return Status::ok;
}

bool Report::ok() const {
  return errors.empty() &&
         std::all_of(files.begin(), files.end(), [](const FileReport& f) { return f.status() == Status::ok; });
}

uint64_t Report::total_bytes() const {
  uint64_t n = 0;
  for (const FileReport& f : files) n += f.size;
  return n;
}

size_t Report::count(Status status) const {
  return static_cast<size_t>(
      std::count_if(files.begin(), files.end(), [&](const FileReport& f) { return f.status() == status; }));
}

Report verify(const fs::path& path, const VerifyOptions& options) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st))
    usage(fmt::format("'{}' does not exist: give a model file (.gguf, .safetensors) or a model folder", path.string()));
  if (!fs::is_directory(st) && !fs::is_regular_file(st))
    usage(fmt::format("'{}' is neither a file nor a folder", path.string()));
  Plan plan;
  plan.path = path;
  plan.is_dir = fs::is_directory(st);
  plan.report.path = path;
  check_usage(path, options, plan.is_dir);

  if (plan.is_dir)
    list_folder(plan);
  else
    plan.row(path);
  if (options.sha256) plan.expect(path, *options.sha256, "--sha256");
  if (options.manifest) add_manifest(plan, *options.manifest);
  const fs::path base = plan.is_dir ? path : path.parent_path();
  for (const auto& [name, hex] : options.expected) plan.expect(base / name, hex, "config model.sha256");
  plan.report.any_expected = options.sha256 || options.manifest || !options.expected.empty();
  if (plan.rows.empty())
    usage(
        fmt::format("no model files in '{}' (looked for *.safetensors, *.gguf and *.json): give the model folder "
                    "or one of its files",
                    path.string()));

  const auto start = std::chrono::steady_clock::now();
  check_all(existing_rows(plan), options, plan.report);
  check_indexes(plan);
  plan.report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (auto& [key, r] : plan.rows) {
    if (r.expected_sha256 && !r.sha256.empty()) r.hash_ok = r.sha256 == *r.expected_sha256;
    plan.report.files.push_back(std::move(r));
  }
  std::sort(plan.report.files.begin(), plan.report.files.end(),
            [](const FileReport& a, const FileReport& b) { return a.path < b.path; });
  return std::move(plan.report);
}

Report verify_with_hashes(const fs::path& path, const std::map<std::string, std::string>& expected, bool progress) {
  VerifyOptions options;
  options.expected = expected;
  options.progress = progress;
  return verify(path, options);
}

}  // namespace autoglm::integrity
