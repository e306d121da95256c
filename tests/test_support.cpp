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

fs::path fixtures_dir() {
  const char* env = std::getenv("AUTOGLM_FIXTURES");
  if (!env || !*env) return {};
  fs::path p(env);
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

CommandResult run_binary(const std::string& args) {
  const char* bin = std::getenv("AUTOGLM_BINARY");
  if (!bin) throw std::runtime_error("AUTOGLM_BINARY is not set (run the tests through ctest)");
  TempDir tmp;
  const fs::path out = tmp / "stdout", err = tmp / "stderr";
  const std::string cmd = std::string("'") + bin + "' " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace autoglm::test
