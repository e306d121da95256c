#pragma once
// Shared helpers for the test suite: fixture location, temporary folders, running the binary.
#include <gtest/gtest.h>

#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

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

// The binary under test: $AUTOGLM_BINARY, else build/autoglm-deploy beside the tests.
std::filesystem::path binary_path();

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, closed). Another
// process may take it before it is used: callers retry on a start failure.
int free_port();

// The binary running in the background (e.g. `serve`), its stdout and stderr together in a file the
// test can read at any time. The destructor kills it (SIGKILL) when it still runs.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& args, std::filesystem::path log_path);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();  // not exited yet (reaps it when it has)
  // Polls GET http://host:port/ready until it answers 200: true then; false when the process
  // exited or `timeout` passed first.
  bool wait_ready(int port, std::chrono::milliseconds timeout, const std::string& host = "127.0.0.1");
  void signal(int sig);
  // The exit code once it has exited (128 + signal number when a signal killed it), nullopt when
  // it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  std::string output() const;  // stdout + stderr so far
  const std::filesystem::path& log_path() const { return log_; }

 private:
  bool reap(bool block);
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::filesystem::path log_;
};

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
