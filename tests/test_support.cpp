#include "test_support.h"

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace autoglm::test {
namespace fs = std::filesystem;

namespace {

// An environment variable overrides the default CMake compiled in.
std::string setting(const char* name, const char* built_in) {
  const char* env = std::getenv(name);
  return env && *env ? env : built_in;
}

}  // namespace

fs::path source_dir() { return setting("AUTOGLM_SOURCE_DIR", AUTOGLM_TEST_SOURCE_DIR); }

fs::path fixtures_dir() {
  fs::path p = setting("AUTOGLM_FIXTURES", AUTOGLM_TEST_FIXTURES);
  std::error_code ec;
  if (!fs::is_directory(p / "models", ec)) return {};
  return p;
}

TempDir::TempDir() {
  std::random_device rd;
  for (;;) {
    path_ = fs::temp_directory_path() / ("autoglm-test-" + std::to_string(getpid()) + "-" + std::to_string(rd()));
    if (fs::create_directory(path_)) break;
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& path, const std::string& contents) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string sha256_of(const std::string& path) {
  const std::string cmd = "openssl dgst -sha256 -r '" + path + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + cmd);
  std::array<char, 65> hex{};
  const size_t n = fread(hex.data(), 1, 64, pipe);
  pclose(pipe);
  if (n != 64) throw std::runtime_error(cmd + " printed no hash");
  return std::string(hex.data(), 64);
}

CommandResult run_binary(const std::string& args) {
  const std::string bin = setting("AUTOGLM_BINARY", AUTOGLM_TEST_BINARY);
  TempDir tmp;
  const fs::path out = tmp / "stdout", err = tmp / "stderr";
  const std::string cmd = "'" + bin + "' " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace autoglm::test
