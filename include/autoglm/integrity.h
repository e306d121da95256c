#pragma once
// Model file integrity: SHA-256 of whole files (OpenSSL EVP, which uses the CPU's SHA extensions),
// several files hashed in parallel, sha256sum-format manifests, and header-only structure checks of
// GGUF, safetensors and JSON files and of Hugging Face shard indexes.
// The CLI's `verify` subcommand and the deploy path both go through verify() below.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace autoglm::integrity {

// ---- hashing ----

// Large sequential reads: few syscalls, and the kernel's readahead keeps the disk busy.
inline constexpr size_t kDefaultReadBuffer = size_t{8} << 20;

// Called with the number of bytes just hashed; from worker threads, so it must be thread-safe.
using ProgressFn = std::function<void(uint64_t bytes)>;

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// Lowercase hex SHA-256 of a whole file. Throws autoglm::Error (exit code 1) when the file cannot
// be opened or read.
std::string sha256_file(const std::filesystem::path& path, const ProgressFn& progress = {},
                        size_t buffer_size = kDefaultReadBuffer);

struct HashResult {
  std::filesystem::path path;
  uint64_t size = 0;   // bytes hashed
  std::string sha256;  // lowercase hex; empty when `error` is set
  std::string error;   // why the file could not be hashed
};

// Hashes `paths` with `threads` workers (0: one per core; never more than there are files). Each
// worker takes the next file from a shared list, largest first, so one big shard does not leave
// the other cores idle at the end. Results come back in the order of `paths`.
std::vector<HashResult> sha256_files(const std::vector<std::filesystem::path>& paths, unsigned threads = 0,
                                     const ProgressFn& progress = {}, size_t buffer_size = kDefaultReadBuffer);

// True for exactly 64 hex digits (either case).
bool is_sha256_hex(std::string_view text);

// ---- manifests (the format `sha256sum` writes and `sha256sum -c` reads) ----

struct ManifestEntry {
  std::string sha256;  // lowercase hex
  std::string name;    // as written (unescaped), relative to the manifest's folder unless absolute
  size_t line = 0;     // 1-based
};

struct Manifest {
  std::vector<ManifestEntry> entries;
  // One message per malformed line, "line 3: ..." (read_manifest prefixes "PATH:").
  std::vector<std::string> errors;
};

// Accepts "HEX  name" (text mode), "HEX *name" (binary mode), sha256sum's backslash-escaped form
// for names with '\\' or newlines, and the BSD form "SHA256 (name) = HEX". Blank lines and lines
// starting with '#' are skipped.
Manifest parse_manifest(std::string_view text);

// Reads and parses a manifest file. Throws autoglm::Error (exit code 2) when it cannot be read.
Manifest read_manifest(const std::filesystem::path& path);

// One line (with '\n') exactly as `sha256sum` prints it: "HEX  name", escaped like sha256sum does.
std::string sha256sum_line(std::string_view sha256, std::string_view name);

// ---- structure checks (headers only; never reads tensor data) ----

enum class Format { gguf, safetensors, json, other };
Format detect_format(const std::filesystem::path& path);  // by file extension
const char* format_name(Format format);                   // "gguf", "safetensors", "json", "other"

// Empty when the file is well-formed, else the reason (names the file, item and offset).
// Never throws for bad content. Format::other is not checked and returns "".
std::string check_structure(const std::filesystem::path& path, Format format);

// For "*.safetensors.index.json": every shard its weight_map names exists, and holds the tensor
// mapped to it. Returns one message per problem (empty: all good). `missing_shards` gets the paths
// of named shards that do not exist. A shard whose own header is corrupt is a problem, unless
// `corrupt_shards` is given: then it goes there instead (the caller reports the shard itself).
std::vector<std::string> check_shard_index(const std::filesystem::path& index_path,
                                           std::vector<std::filesystem::path>* missing_shards = nullptr,
                                           std::vector<std::filesystem::path>* corrupt_shards = nullptr);

// ---- verify ----

enum class Structure { ok, error, not_checked };
enum class Status { ok, mismatch, corrupt, missing };
const char* structure_name(Structure structure);  // "ok", "error", "not_checked"
const char* status_name(Status status);           // "OK", "MISMATCH", "CORRUPT", "MISSING"

struct FileReport {
  std::filesystem::path path;  // as shown: PATH/name, or manifest folder/name
  Format format = Format::other;
  bool exists = true;
  uint64_t size = 0;
  std::string sha256;  // empty when not hashed (missing or unreadable)
  std::optional<std::string> expected_sha256;
  std::string expected_from;    // "--sha256", "SHA256SUMS:3", "config model.sha256"
  std::optional<bool> hash_ok;  // nullopt: no expected hash, or not hashed
  Structure structure = Structure::not_checked;
  std::string structure_error;
  std::string error;  // missing or unreadable: what happened

  // Missing beats corrupt (bad structure or unreadable) beats mismatch.
  Status status() const;
};

struct Report {
  std::filesystem::path path;       // PATH as given
  std::vector<FileReport> files;    // sorted by path
  std::vector<std::string> errors;  // not tied to one file: malformed manifest lines, conflicts
  bool any_expected = false;        // some expected hash was given (--sha256, manifest, config)
  unsigned threads = 0;             // workers used
  double seconds = 0;               // wall time of hashing and checks

  bool ok() const;  // no errors and every file OK
  uint64_t total_bytes() const;
  size_t count(Status status) const;
};

struct VerifyOptions {
  std::optional<std::string> sha256;              // --sha256: PATH must be a single file
  std::optional<std::filesystem::path> manifest;  // --manifest: names relative to its folder
  // The config's model.sha256: file name (relative to the model folder, or to a single file's
  // folder) -> hex. Listed files that do not exist are MISSING.
  std::map<std::string, std::string> expected;
  unsigned threads = 0;   // 0: one per core
  bool progress = false;  // draw a progress bar on stderr (only when it is a terminal)
  bool hash = true;       // false: structure checks only; nothing is hashed or compared
};

// PATH is a file, or a folder whose *.safetensors, *.gguf and *.json files (not recursive) are
// checked, plus any file a manifest or `expected` lists. Throws autoglm::Error with exit code 2 for
// usage errors: PATH missing, --sha256 not 64 hex digits or given for a folder, --sha256 together
// with a manifest, an unreadable manifest, a malformed hash in `expected`, nothing to check.
Report verify(const std::filesystem::path& path, const VerifyOptions& options = {});

// The deploy path: check the model against the config's model.sha256 map.
Report verify_with_hashes(const std::filesystem::path& path, const std::map<std::string, std::string>& expected,
                          bool progress = false);

// ---- output ----

// sha256sum lines for every hashed file ("HEX  path"): save as a manifest, check with
// `sha256sum -c` or `verify --manifest`.
std::string format_sha256sums(const Report& report);

// Human table: one row per file (status, format, size, structure, hash), detail lines for
// failures, the report's errors, and a summary line.
std::string format_table(const Report& report);

// Stable JSON object, documented in docs/verify.md.
std::string format_json(const Report& report);

}  // namespace autoglm::integrity
