// The real binary, as a user runs it: exit codes, help, version, config errors, reports.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

using autoglm::test::run_binary;
using autoglm::test::TempDir;
using autoglm::test::write_file;

namespace {

std::string source_dir() {
  const char* s = std::getenv("AUTOGLM_SOURCE_DIR");
  return s ? s : ".";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST(Cli, VersionSaysWhetherCudaIsCompiledIn) {
  const auto r = run_binary("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "autoglm-deploy 0.1.0")) << r.out;
  EXPECT_TRUE(contains(r.out, "commit ")) << r.out;
  EXPECT_TRUE(contains(r.out, "CUDA compiled in: ")) << r.out;
}

TEST(Cli, HelpListsEverySubcommandWithExamples) {
  const auto r = run_binary("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"deploy", "serve", "check-hardware", "verify", "bench", "Examples:"})
    EXPECT_TRUE(contains(r.out, sub)) << sub;
  for (const char* sub : {"deploy", "serve", "check-hardware", "verify", "bench"}) {
    const auto h = run_binary(std::string(sub) + " --help");
    EXPECT_EQ(h.exit_code, 0) << sub;
    EXPECT_TRUE(contains(h.out, "Examples")) << sub << ": " << h.out;
  }
}

TEST(Cli, UsageErrorsExitWith2) {
  EXPECT_EQ(run_binary("").exit_code, 2);                      // no subcommand
  EXPECT_EQ(run_binary("frobnicate").exit_code, 2);            // unknown subcommand
  EXPECT_EQ(run_binary("check-hardware --no-such-flag").exit_code, 2);
  const auto lvl = run_binary("--log-level loud check-hardware");
  EXPECT_EQ(lvl.exit_code, 2);
  EXPECT_TRUE(contains(lvl.err, "unknown log level 'loud'")) << lvl.err;
  EXPECT_EQ(run_binary("--log-format xml check-hardware").exit_code, 2);
  EXPECT_EQ(run_binary("serve").exit_code, 2);                 // --config is required
}

TEST(Cli, UnfinishedSubcommandsSaySoAndExitWith3) {
  const auto bench = run_binary("bench --model m.gguf");
  EXPECT_EQ(bench.exit_code, 3);
  EXPECT_TRUE(contains(bench.err, "not implemented yet")) << bench.err;
  EXPECT_TRUE(bench.out.empty()) << "no made-up output: " << bench.out;
  const auto deploy = run_binary("deploy --config " + source_dir() + "/configs/default.yaml");
  EXPECT_EQ(deploy.exit_code, 3) << deploy.err;
  EXPECT_TRUE(contains(deploy.err, "not implemented yet")) << deploy.err;
}

TEST(Cli, ServeValidatesTheWholeConfigFirst) {
  TempDir tmp;
  write_file(tmp / "bad.yaml",
             "service:\n"
             "  prot: 8080\n"
             "runtime:\n"
             "  max_batch_size: -3\n");
  const auto r = run_binary("serve --config " + (tmp / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.err, "bad.yaml:2:3")) << r.err;
  EXPECT_TRUE(contains(r.err, "did you mean 'port'")) << r.err;
  EXPECT_TRUE(contains(r.err, "bad.yaml:4:19")) << r.err;  // both problems, not just the first
  EXPECT_FALSE(contains(r.err, "not implemented")) << "config errors come before anything else";

  const auto missing = run_binary("serve --config " + (tmp / "nope.yaml").string());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(contains(missing.err, "nope.yaml")) << missing.err;
}

TEST(Cli, FlagsOverrideTheConfigAndAreValidated) {
  const std::string cfg = source_dir() + "/configs/default.yaml";
  const auto bad_port = run_binary("deploy --config " + cfg + " --port 70000");
  EXPECT_EQ(bad_port.exit_code, 2);
  EXPECT_TRUE(contains(bad_port.err, "--port")) << bad_port.err;
  const auto bad_quant = run_binary("deploy --config " + cfg + " --quantization q3");
  EXPECT_EQ(bad_quant.exit_code, 2);
  EXPECT_TRUE(contains(bad_quant.err, "--quantization")) << bad_quant.err;
}

TEST(Cli, JsonLogsAreOneObjectPerLine) {
  TempDir tmp;
  write_file(tmp / "bad.yaml", "service: [1, 2\n");  // YAML syntax error
  const auto r = run_binary("--log-format json serve --config " + (tmp / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  ASSERT_FALSE(r.err.empty());
  const std::string first_line = r.err.substr(0, r.err.find('\n'));
  const auto j = nlohmann::json::parse(first_line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << first_line;
  EXPECT_EQ(j["level"], "error");
  EXPECT_TRUE(contains(j["msg"].get<std::string>(), "bad.yaml:")) << first_line;
}
