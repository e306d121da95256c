// SHA-256 hashing, manifests and verify(): checked against `openssl dgst` and `sha256sum`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <random>
#include <sys/wait.h>

#include "autoglm/error.h"
#include "../src/integrity/internal.h"  // hash_file: both read strategies
#include "autoglm/integrity.h"
#include "test_support.h"

namespace autoglm {
namespace {

namespace fs = std::filesystem;
namespace ig = integrity;
using test::TempDir;
using test::write_file;
using ::testing::HasSubstr;

struct Shell {
  int status = -1;
  std::string out;
};

Shell shell(const std::string& command) {
  Shell r;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string quote(const fs::path& p) { return fmt::format("'{}'", p.string()); }

// The reference: `openssl dgst -sha256 -r FILE` prints "HEX *FILE".
std::string openssl_sha256(const fs::path& p) {
  const Shell r = shell(fmt::format("openssl dgst -sha256 -r {} 2>/dev/null", quote(p)));
  if (r.status != 0 || r.out.size() < 64) return "";
  return r.out.substr(0, 64);
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// Writable copy of the tiny Hugging Face fixture folder.
fs::path copy_hf_fixture(const TempDir& dir) {
  const fs::path dst = dir / "tiny-glm4-hf";
  fs::copy(test::fixtures_dir() / "hf/tiny-glm4-hf", dst);
  for (const auto& e : fs::directory_iterator(dst))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dst;
}

const ig::FileReport* find_file(const ig::Report& r, const std::string& filename) {
  for (const auto& f : r.files)
    if (f.path.filename() == filename) return &f;
  return nullptr;
}

int usage_code(const std::function<void()>& fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Hashing

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(ig::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ig::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, FilesMatchOpensslAtBufferBoundaries) {
  TempDir dir;
  const size_t buf = ig::kDefaultReadBuffer;
  const std::vector<size_t> sizes = {0, 1, 3, 4095, 4096, 4097, buf - 1, buf, buf + 1, 3 * 1024 * 1024 + 17};
  for (size_t n : sizes) {
    SCOPED_TRACE(n);
    const fs::path p = dir / fmt::format("f{}", n);
    write_file(p, random_bytes(n, static_cast<unsigned>(n)));
    const std::string want = openssl_sha256(p);
    if (want.empty()) GTEST_SKIP() << "openssl command not available";
    EXPECT_EQ(ig::sha256_file(p), want);
    EXPECT_EQ(ig::sha256_file(p, {}, 4096), want);  // many small reads
  }
}

TEST(Sha256, OverlappedAndPlainReadsAgree) {
  TempDir dir;
  write_file(dir / "a", random_bytes(5 * 4096 + 7, 9));
  const ig::HashResult plain = ig::hash_file(dir / "a", {}, 4096, false);
  const ig::HashResult overlapped = ig::hash_file(dir / "a", {}, 4096, true);
  EXPECT_EQ(plain.sha256, ig::sha256_hex(test::read_file(dir / "a")));
  EXPECT_EQ(overlapped.sha256, plain.sha256);
  EXPECT_EQ(overlapped.size, plain.size);
  EXPECT_THAT(ig::hash_file(dir / "none", {}, 4096, true).error, HasSubstr("cannot open"));
}

TEST(Sha256, ProgressCountsEveryByte) {
  TempDir dir;
  write_file(dir / "a", random_bytes(100000, 1));
  std::atomic<uint64_t> seen{0};
  ig::sha256_file(
      dir / "a", [&](uint64_t n) { seen += n; }, 4096);
  EXPECT_EQ(seen.load(), 100000u);
}

TEST(Sha256, UnreadableFilesThrowCheckFailed) {
  TempDir dir;
  std::string msg;
  EXPECT_EQ(usage_code([&] { ig::sha256_file(dir / "nope"); }, &msg), kExitCheckFailed);
  EXPECT_THAT(msg, HasSubstr("nope: cannot open"));
  EXPECT_EQ(usage_code([&] { ig::sha256_file(dir.path()); }, &msg), kExitCheckFailed);
  EXPECT_THAT(msg, HasSubstr("is a folder"));
}

TEST(Sha256, ParallelEqualsSequential) {
  TempDir dir;
  std::vector<fs::path> paths;
  for (unsigned k = 0; k < 7; ++k) {
    paths.push_back(dir / fmt::format("part{}", k));
    write_file(paths.back(), random_bytes(200000 * k + 13, k));
  }
  paths.push_back(dir / "missing");
  std::atomic<uint64_t> progress{0};
  const auto parallel = ig::sha256_files(
      paths, 4, [&](uint64_t n) { progress += n; }, 65536);
  const auto sequential = ig::sha256_files(paths, 1);
  ASSERT_EQ(parallel.size(), paths.size());
  for (size_t k = 0; k + 1 < paths.size(); ++k) {
    EXPECT_EQ(parallel[k].path, paths[k]);  // input order, whatever order they were hashed in
    EXPECT_EQ(parallel[k].sha256, sequential[k].sha256);
    EXPECT_EQ(parallel[k].sha256, ig::sha256_file(paths[k]));
    EXPECT_EQ(parallel[k].size, fs::file_size(paths[k]));
    EXPECT_TRUE(parallel[k].error.empty());
  }
  EXPECT_TRUE(parallel.back().sha256.empty());
  EXPECT_THAT(parallel.back().error, HasSubstr("cannot open"));
  uint64_t total = 0;
  for (size_t k = 0; k + 1 < paths.size(); ++k) total += fs::file_size(paths[k]);
  EXPECT_EQ(progress.load(), total);
  EXPECT_TRUE(ig::sha256_files({}, 0).empty());
}

TEST(Sha256, HexCheck) {
  EXPECT_TRUE(ig::is_sha256_hex(std::string(64, 'a')));
  EXPECT_TRUE(ig::is_sha256_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
  EXPECT_FALSE(ig::is_sha256_hex(std::string(63, 'a')));
  EXPECT_FALSE(ig::is_sha256_hex(std::string(65, 'a')));
  EXPECT_FALSE(ig::is_sha256_hex(std::string(63, 'a') + "g"));
  EXPECT_FALSE(ig::is_sha256_hex(""));
}

// ---------------------------------------------------------------------------------------------
// Manifests

const std::string kHashA = std::string(64, 'a');
const std::string kHashB = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(Manifest, ParsesTheFormsSha256sumWrites) {
  const std::string text =
      "# comment\n"
      "\n" +
      kHashA + "  model.gguf\n" +                    // text mode
      kHashB + " *sub/shard 1.safetensors\r\n" +     // binary mode, CRLF
      "\\" + kHashA + "  odd\\\\name\\nx\n" +        // escaped
      "SHA256 (bsd name.json) = " + kHashB + "\n" +  // BSD tag form
      "   " + "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789  upper\n";
  const ig::Manifest m = ig::parse_manifest(text);
  EXPECT_TRUE(m.errors.empty()) << m.errors.front();
  ASSERT_EQ(m.entries.size(), 5u);
  EXPECT_EQ(m.entries[0].name, "model.gguf");
  EXPECT_EQ(m.entries[0].sha256, kHashA);
  EXPECT_EQ(m.entries[0].line, 3u);
  EXPECT_EQ(m.entries[1].name, "sub/shard 1.safetensors");
  EXPECT_EQ(m.entries[2].name, "odd\\name\nx");
  EXPECT_EQ(m.entries[3].name, "bsd name.json");
  EXPECT_EQ(m.entries[3].sha256, kHashB);
  EXPECT_EQ(m.entries[4].sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_EQ(m.entries[4].line, 7u);
}

TEST(Manifest, MalformedLinesAreReportedWithTheirNumber) {
  const std::string text = kHashA + "  ok\n" + "not a hash line\n" + "d41d8cd98f00b204e9800998ecf8427e  md5.txt\n" +
                           kHashA + "\n" + kHashA + "x name\n" + kHashA + "  \n" + "\\" + kHashA + "  bad\\qescape\n";
  const ig::Manifest m = ig::parse_manifest(text);
  ASSERT_EQ(m.entries.size(), 1u);
  ASSERT_EQ(m.errors.size(), 6u);
  EXPECT_THAT(m.errors[0], HasSubstr("line 2: expected '<64 hex digits>  <file name>'"));
  EXPECT_THAT(m.errors[1], HasSubstr("line 3: the hash has 32 hex digits"));
  EXPECT_THAT(m.errors[2], HasSubstr("line 4:"));
  EXPECT_THAT(m.errors[3], HasSubstr("line 5:"));
  EXPECT_THAT(m.errors[4], HasSubstr("line 6:"));
  EXPECT_THAT(m.errors[5], HasSubstr("line 7: bad backslash escape"));
}

TEST(Manifest, ReadManifestPrefixesErrorsWithThePath) {
  TempDir dir;
  write_file(dir / "SUMS", kHashA + "  a\nbroken\n");
  const ig::Manifest m = ig::read_manifest(dir / "SUMS");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_THAT(m.errors[0], HasSubstr((dir / "SUMS").string() + ":2: expected"));
  EXPECT_EQ(usage_code([&] { ig::read_manifest(dir / "none"); }), kExitUsage);
}

TEST(Manifest, LinesRoundTripThroughTheParser) {
  for (const std::string name : {"plain.gguf", "with space", "back\\slash", "new\nline", "cr\rname"}) {
    const std::string line = ig::sha256sum_line(kHashB, name);
    const ig::Manifest m = ig::parse_manifest(line);
    ASSERT_EQ(m.entries.size(), 1u) << line;
    EXPECT_EQ(m.entries[0].name, name);
    EXPECT_EQ(m.entries[0].sha256, kHashB);
  }
  EXPECT_EQ(ig::sha256sum_line(kHashB, "a b"), kHashB + "  a b\n");
  EXPECT_EQ(ig::sha256sum_line(kHashB, "a\\b"), "\\" + kHashB + "  a\\\\b\n");
}

TEST(Manifest, OurOutputIsWhatSha256sumPrintsAndAccepts) {
  TempDir dir;
  write_file(dir / "m/a.json", "[1, 2]");
  write_file(dir / "m/b c.json", R"({"k": "v"})");
  write_file(dir / "m/x.json", "{}");
  const ig::Report r = ig::verify(dir / "m");
  const std::string ours = ig::format_sha256sums(r);
  const Shell theirs = shell(fmt::format("cd {} && sha256sum {}/* 2>/dev/null", quote(dir.path()), quote(dir / "m")));
  if (theirs.status != 0) GTEST_SKIP() << "sha256sum not available";
  EXPECT_EQ(ours, theirs.out);
  write_file(dir / "SHA256SUMS", ours);
  EXPECT_EQ(shell(fmt::format("sha256sum -c --status {}", quote(dir / "SHA256SUMS"))).status, 0);
  // ... and our --manifest accepts sha256sum's own output.
  write_file(dir / "THEIRS", theirs.out);
  ig::VerifyOptions o;
  o.manifest = dir / "THEIRS";
  EXPECT_TRUE(ig::verify(dir / "m", o).ok());
}

// ---------------------------------------------------------------------------------------------
// verify()

TEST(Verify, SingleFileWithSha256) {
  TempDir dir;
  write_file(dir / "w.bin", "hello");
  ig::VerifyOptions o;
  o.sha256 = "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";  // case does not matter
  ig::Report r = ig::verify(dir / "w.bin", o);
  ASSERT_EQ(r.files.size(), 1u);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.files[0].hash_ok, true);
  EXPECT_EQ(r.files[0].format, ig::Format::other);
  EXPECT_EQ(r.files[0].structure, ig::Structure::not_checked);
  EXPECT_EQ(r.files[0].size, 5u);
  EXPECT_EQ(r.files[0].expected_from, "--sha256");

  o.sha256 = kHashA;
  r = ig::verify(dir / "w.bin", o);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.files[0].status(), ig::Status::mismatch);
  EXPECT_EQ(r.files[0].hash_ok, false);
  const std::string table = ig::format_table(r);
  EXPECT_THAT(table, HasSubstr("MISMATCH"));
  EXPECT_THAT(table, HasSubstr("expected " + kHashA + " (--sha256)"));
  EXPECT_THAT(table, HasSubstr("actual   2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
  EXPECT_THAT(table, HasSubstr("FAILED: 1 file"));
}

TEST(Verify, UsageErrors) {
  TempDir dir;
  write_file(dir / "m/a.gguf", "x");
  write_file(dir / "file.gguf", "x");
  std::string msg;
  ig::VerifyOptions o;
  EXPECT_EQ(usage_code([&] { ig::verify(dir / "nope", o); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("does not exist"));

  o.sha256 = kHashA;
  EXPECT_EQ(usage_code([&] { ig::verify(dir / "m", o); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("--sha256 needs a single file"));
  o.sha256 = "abc";
  EXPECT_EQ(usage_code([&] { ig::verify(dir / "file.gguf", o); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("--sha256 must be 64 hex digits, got 3 characters"));
  o.sha256 = kHashA;
  o.manifest = dir / "SUMS";
  EXPECT_EQ(usage_code([&] { ig::verify(dir / "file.gguf", o); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("cannot be used together"));
  o.sha256.reset();
  EXPECT_EQ(usage_code([&] { ig::verify(dir / "file.gguf", o); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("manifest"));

  fs::create_directories(dir / "empty");
  EXPECT_EQ(usage_code([&] { ig::verify(dir / "empty"); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("no model files"));
  EXPECT_EQ(usage_code([&] { ig::verify_with_hashes(dir / "m", {{"a.gguf", "zz"}}); }, &msg), kExitUsage);
  EXPECT_THAT(msg, HasSubstr("'a.gguf' must be 64 hex digits"));
}

TEST(Verify, FolderAgainstAManifest) {
  TempDir dir;
  const fs::path m = dir / "model";
  write_file(m / "a.gguf", "not really a gguf");
  write_file(m / "config.json", R"({"x": 1})");
  write_file(m / "tokenizer.model", "spm");  // not listed by the folder scan, but by the manifest
  const std::string listed = ig::sha256sum_line(ig::sha256_hex(R"({"x": 1})"), "config.json") +
                             ig::sha256sum_line(ig::sha256_hex("spm"), "tokenizer.model");
  write_file(m / "SHA256SUMS", listed + ig::sha256sum_line(kHashA, "a.gguf"));
  ig::VerifyOptions o;
  o.manifest = m / "SHA256SUMS";
  ig::Report r = ig::verify(m, o);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.files.size(), 3u);
  EXPECT_EQ(find_file(r, "config.json")->status(), ig::Status::ok);
  EXPECT_EQ(find_file(r, "config.json")->expected_from, (m / "SHA256SUMS").string() + ":1");
  EXPECT_EQ(find_file(r, "tokenizer.model")->hash_ok, true);
  const ig::FileReport* a = find_file(r, "a.gguf");
  EXPECT_EQ(a->status(), ig::Status::corrupt);  // bad structure outranks the mismatch
  EXPECT_EQ(a->hash_ok, false);
  EXPECT_THAT(a->structure_error, HasSubstr("not a GGUF file"));

  // A missing listed file, and a malformed line.
  write_file(m / "SHA256SUMS", listed + ig::sha256sum_line(kHashB, "gone.safetensors") + "junk\n");
  r = ig::verify(m, o);
  EXPECT_FALSE(r.ok());
  const ig::FileReport* gone = find_file(r, "gone.safetensors");
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->status(), ig::Status::missing);
  EXPECT_THAT(gone->error, HasSubstr("not found (listed in " + (m / "SHA256SUMS").string() + ":3)"));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr("SHA256SUMS:4: expected"));
  EXPECT_EQ(find_file(r, "a.gguf")->hash_ok, std::nullopt);  // no longer listed
  EXPECT_EQ(r.count(ig::Status::missing), 1u);
}

TEST(Verify, SingleFileAgainstAManifest) {
  TempDir dir;
  write_file(dir / "a.gguf", "A");
  write_file(dir / "b.gguf", "B");
  write_file(dir / "SUMS", ig::sha256sum_line(ig::sha256_hex("A"), "a.gguf") + ig::sha256sum_line(kHashA, "b.gguf") +
                               ig::sha256sum_line(kHashA, "c.gguf"));
  ig::VerifyOptions o;
  o.manifest = dir / "SUMS";
  ig::Report r = ig::verify(dir / "a.gguf", o);  // only a.gguf matters: b is wrong and c is missing
  ASSERT_EQ(r.files.size(), 1u);
  EXPECT_EQ(r.files[0].hash_ok, true);
  EXPECT_TRUE(r.errors.empty());
  write_file(dir / "d.gguf", "D");
  r = ig::verify(dir / "d.gguf", o);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr("d.gguf is not listed in"));
}

TEST(Verify, ExpectedHashesFromTheConfig) {
  TempDir dir;
  write_file(dir / "m/a.safetensors.json", "[]");
  write_file(dir / "m/model.gguf", "G");
  const std::map<std::string, std::string> expected = {{"model.gguf", ig::sha256_hex("G")}, {"other.gguf", kHashA}};
  ig::Report r = ig::verify_with_hashes(dir / "m", expected);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.any_expected);
  EXPECT_EQ(find_file(r, "model.gguf")->hash_ok, true);
  EXPECT_EQ(find_file(r, "model.gguf")->expected_from, "config model.sha256");
  EXPECT_EQ(find_file(r, "other.gguf")->status(), ig::Status::missing);
  // Single file: the map's other entries do not concern it.
  r = ig::verify_with_hashes(dir / "m/model.gguf", expected);
  EXPECT_EQ(r.files.size(), 1u);
  EXPECT_EQ(r.files[0].status(), ig::Status::corrupt);  // "G" is no GGUF, but the hash matches
  EXPECT_EQ(r.files[0].hash_ok, true);
}

TEST(Verify, ConflictingExpectedHashesAreAnError) {
  TempDir dir;
  write_file(dir / "a.gguf", "A");
  write_file(dir / "SUMS", ig::sha256sum_line(kHashA, "a.gguf"));
  ig::VerifyOptions o;
  o.manifest = dir / "SUMS";
  o.expected = {{"a.gguf", kHashB}};
  const ig::Report r = ig::verify(dir / "a.gguf", o);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr("conflicting expected SHA-256"));
}

TEST(Verify, WithoutExpectedHashesNothingIsCompared) {
  TempDir dir;
  write_file(dir / "m/bad.json", "{nope");
  write_file(dir / "m/good.json", "{}");
  const ig::Report r = ig::verify(dir / "m");
  EXPECT_FALSE(r.any_expected);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(find_file(r, "bad.json")->status(), ig::Status::corrupt);
  EXPECT_THAT(find_file(r, "bad.json")->structure_error, HasSubstr("not valid JSON"));
  EXPECT_EQ(find_file(r, "good.json")->hash_ok, std::nullopt);
  EXPECT_EQ(find_file(r, "good.json")->sha256, ig::sha256_hex("{}"));
  EXPECT_THAT(ig::format_table(r), HasSubstr("no expected hashes given"));
}

TEST(Verify, StructureOnly) {
  TempDir dir;
  write_file(dir / "a.json", "{}");
  ig::VerifyOptions o;
  o.hash = false;
  const ig::Report r = ig::verify(dir / "a.json", o);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.files[0].sha256.empty());
  EXPECT_EQ(r.files[0].structure, ig::Structure::ok);
}

TEST(VerifyFixtures, TinyGlm4HfFolderIsIntact) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path hf = test::fixtures_dir() / "hf/tiny-glm4-hf";
  ig::VerifyOptions o;
  o.threads = 2;
  const ig::Report r = ig::verify(hf, o);
  EXPECT_TRUE(r.ok()) << ig::format_table(r);
  ASSERT_EQ(r.files.size(), 6u);
  for (const auto& f : r.files) {
    SCOPED_TRACE(f.path.string());
    EXPECT_EQ(f.structure, ig::Structure::ok) << f.structure_error;
    EXPECT_EQ(f.size, fs::file_size(f.path));
    const std::string want = openssl_sha256(f.path);
    if (!want.empty()) {
      EXPECT_EQ(f.sha256, want);
    }
  }
  EXPECT_EQ(find_file(r, "model-00001-of-00002.safetensors")->format, ig::Format::safetensors);
  EXPECT_EQ(find_file(r, "config.json")->format, ig::Format::json);
  EXPECT_TRUE(ig::check_shard_index(hf / "model.safetensors.index.json").empty());
}

TEST(VerifyFixtures, EveryModelGgufIsStructurallyOk) {
  AUTOGLM_REQUIRE_FIXTURES();
  const ig::Report r = ig::verify(test::fixtures_dir() / "models");
  EXPECT_TRUE(r.ok()) << ig::format_table(r);
  EXPECT_GE(r.files.size(), 16u);
}

TEST(VerifyFixtures, ManifestRoundTripOnTheHfFolder) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir dir;
  const fs::path hf = copy_hf_fixture(dir);
  write_file(dir / "SHA256SUMS", ig::format_sha256sums(ig::verify(hf)));
  ig::VerifyOptions o;
  o.manifest = dir / "SHA256SUMS";
  EXPECT_TRUE(ig::verify(hf, o).ok());
  // One flipped byte in the middle of a shard: same structure, different hash.
  const fs::path shard = hf / "model-00002-of-00002.safetensors";
  std::string bytes = test::read_file(shard);
  bytes[bytes.size() / 2] ^= 1;
  write_file(shard, bytes);
  const ig::Report r = ig::verify(hf, o);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(find_file(r, shard.filename().string())->status(), ig::Status::mismatch);
  EXPECT_EQ(find_file(r, shard.filename().string())->structure, ig::Structure::ok);
  EXPECT_EQ(r.count(ig::Status::ok), 5u);
}

TEST(VerifyFixtures, TruncatedShardIsCorrupt) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir dir;
  const fs::path hf = copy_hf_fixture(dir);
  const fs::path shard = hf / "model-00001-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 1000);
  const ig::Report r = ig::verify(hf);
  EXPECT_FALSE(r.ok());
  const ig::FileReport* f = find_file(r, shard.filename().string());
  EXPECT_EQ(f->status(), ig::Status::corrupt);
  EXPECT_EQ(f->structure, ig::Structure::error);
  EXPECT_THAT(f->structure_error, HasSubstr("tensor 'model.layers.0.self_attn.q_proj.weight'"));
  EXPECT_THAT(f->structure_error, HasSubstr("ends past the end of the file"));
  EXPECT_THAT(ig::format_table(r), HasSubstr("CORRUPT"));
  // The index itself is fine: the broken shard is reported once, on its own row.
  EXPECT_EQ(find_file(r, "model.safetensors.index.json")->status(), ig::Status::ok);
  EXPECT_EQ(r.count(ig::Status::corrupt), 1u);
  // Checked on its own, the index says it cannot vouch for that shard.
  const auto problems = ig::check_shard_index(hf / "model.safetensors.index.json");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("cannot check the tensors mapped to 'model-00001-of-00002.safetensors'"));
}

TEST(VerifyFixtures, IndexNamingAMissingTensorOrShard) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir dir;
  const fs::path hf = copy_hf_fixture(dir);
  const fs::path index_path = hf / "model.safetensors.index.json";
  auto index = nlohmann::json::parse(test::read_file(index_path));
  index["weight_map"]["model.layers.9.mlp.down_proj.weight"] = "model-00001-of-00002.safetensors";
  index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00003-of-00003.safetensors";
  write_file(index_path, index.dump(2));
  const ig::Report r = ig::verify(hf);
  EXPECT_FALSE(r.ok());
  const ig::FileReport* idx = find_file(r, "model.safetensors.index.json");
  EXPECT_EQ(idx->structure, ig::Structure::error);
  EXPECT_THAT(idx->structure_error, HasSubstr("tensor 'model.layers.9.mlp.down_proj.weight' is mapped to shard "
                                              "'model-00001-of-00002.safetensors', which has no such tensor"));
  EXPECT_THAT(idx->structure_error, HasSubstr("names shard 'model-00003-of-00003.safetensors' (1 tensors"));
  const ig::FileReport* missing = find_file(r, "model-00003-of-00003.safetensors");
  ASSERT_NE(missing, nullptr);
  EXPECT_EQ(missing->status(), ig::Status::missing);
  EXPECT_THAT(missing->error, HasSubstr("named by model.safetensors.index.json"));
  EXPECT_EQ(r.count(ig::Status::missing), 1u);
  EXPECT_EQ(r.count(ig::Status::corrupt), 1u);
}

TEST(ShardIndex, HostileIndexes) {
  TempDir dir;
  auto problems = [&](const std::string& text) {
    write_file(dir / "x.safetensors.index.json", text);
    const auto p = ig::check_shard_index(dir / "x.safetensors.index.json");
    return p.empty() ? std::string() : p.front();
  };
  EXPECT_THAT(problems("[]"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(problems(R"({"metadata":{}})"), HasSubstr("no \"weight_map\""));
  EXPECT_THAT(problems(R"({"weight_map":[]})"), HasSubstr("\"weight_map\" must be an object"));
  EXPECT_THAT(problems(R"({"weight_map":{"t":1}})"), HasSubstr("weight_map entry 't' must be a shard file name"));
  EXPECT_THAT(problems(R"({"weight_map":{"t":"../../etc/passwd"}})"), HasSubstr("outside the model folder"));
  EXPECT_THAT(problems(R"({"weight_map":{"t":"/etc/passwd"}})"), HasSubstr("outside the model folder"));
  EXPECT_THAT(problems(R"({"weight_map":{"t":"a.safetensors"})"), HasSubstr("not valid JSON"));
  EXPECT_EQ(problems(R"({"metadata":{"total_size":0,"nested":[{"a":[1]}]},"weight_map":{}})"), "");
}

TEST(VerifyOutput, JsonIsTheDocumentedObject) {
  TempDir dir;
  write_file(dir / "m/a.json", "{}");
  write_file(dir / "m/b.gguf", "GGUF");
  write_file(dir / "SUMS",
             ig::sha256sum_line(ig::sha256_hex("{}"), "m/a.json") + ig::sha256sum_line(kHashA, "m/gone.gguf"));
  ig::VerifyOptions o;
  o.manifest = dir / "SUMS";
  const auto j = nlohmann::json::parse(ig::format_json(ig::verify(dir / "m", o)));
  EXPECT_EQ(j.at("version"), 1);
  EXPECT_EQ(j.at("ok"), false);
  EXPECT_EQ(j.at("path"), (dir / "m").string());
  ASSERT_EQ(j.at("files").size(), 3u);
  const auto& a = j["files"][0];
  EXPECT_EQ(a.at("path"), (dir / "m/a.json").string());
  EXPECT_EQ(a.at("format"), "json");
  EXPECT_EQ(a.at("status"), "OK");
  EXPECT_EQ(a.at("size"), 2);
  EXPECT_EQ(a.at("sha256"), ig::sha256_hex("{}"));
  EXPECT_EQ(a.at("expected_sha256"), ig::sha256_hex("{}"));
  EXPECT_EQ(a.at("hash_ok"), true);
  EXPECT_EQ(a.at("structure"), "ok");
  EXPECT_TRUE(a.at("structure_error").is_null());
  EXPECT_TRUE(a.at("error").is_null());
  const auto& b = j["files"][1];
  EXPECT_EQ(b.at("status"), "CORRUPT");
  EXPECT_EQ(b.at("structure"), "error");
  EXPECT_TRUE(b.at("expected_sha256").is_null());
  EXPECT_TRUE(b.at("hash_ok").is_null());
  const auto& gone = j["files"][2];
  EXPECT_EQ(gone.at("status"), "MISSING");
  EXPECT_TRUE(gone.at("size").is_null());
  EXPECT_TRUE(gone.at("sha256").is_null());
  EXPECT_EQ(gone.at("structure"), "not_checked");
  EXPECT_EQ(j.at("summary").at("files"), 3);
  EXPECT_EQ(j.at("summary").at("missing"), 1);
  EXPECT_EQ(j.at("summary").at("corrupt"), 1);
  EXPECT_EQ(j.at("summary").at("hashes_compared"), true);
  EXPECT_TRUE(j.at("errors").empty());
}

TEST(VerifyOutput, JsonSurvivesNamesThatAreNotUtf8) {
  TempDir dir;
  write_file(dir / "m/\xff\xfe.json", "{}");
  const std::string out = ig::format_json(ig::verify(dir / "m"));
  EXPECT_TRUE(nlohmann::json::accept(out));
}

}  // namespace
}  // namespace autoglm
