#pragma once
// Shared helpers for the test suite: fixture location, temporary folders, running the binary.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace autoglm::test {

// ../shared/fixtures: $AUTOGLM_FIXTURES, else the folder CMake was told. Empty when it is missing.
std::filesystem::path fixtures_dir();

// The repository root: $AUTOGLM_SOURCE_DIR, else the one this test was built from.
std::filesystem::path source_dir();

// A fresh, empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& contents);
std::string read_file(const std::filesystem::path& path);

// SHA-256 of a file as `openssl dgst -sha256` computes it (an implementation that is not ours).
std::string sha256_of(const std::string& path);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs build/autoglm-deploy ($AUTOGLM_BINARY, else the one built beside this test) with `args` (shell words, already quoted as needed).
CommandResult run_binary(const std::string& args);

}  // namespace autoglm::test

// Fixtures are required in CI (CI=true): fail there, skip with a visible message elsewhere.
#define AUTOGLM_REQUIRE_FIXTURES()                                                         \
  do {                                                                                     \
    if (::autoglm::test::fixtures_dir().empty()) {                                         \
      const char* ci = std::getenv("CI");                                                  \
      if (ci && std::string(ci) == "true") FAIL() << "fixtures missing (AUTOGLM_FIXTURES)"; \
      GTEST_SKIP() << "fixtures missing: set AUTOGLM_FIXTURES to ../shared/fixtures";      \
    }                                                                                      \
  } while (0)
