// The real binary, as a user runs it: exit codes, help, version, config errors, reports.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>

#include <nlohmann/json.hpp>

#include "autoglm/kernels.h"
#include "autoglm/npy.h"
#include "logits_compare.h"
#include "test_support.h"

using autoglm::test::run_binary;
using autoglm::test::TempDir;
using autoglm::test::write_file;

namespace {

std::string source_dir() { return autoglm::test::source_dir().string(); }

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

namespace {

std::string sysroot(const std::string& machine) { return source_dir() + "/tests/fixtures/sysroot/" + machine; }

// config.json of GLM-4-9B-0414 (as published), in a folder of its own.
std::string write_glm4_9b_config(const TempDir& tmp) {
  write_file(tmp / "glm-4-9b/config.json",
             R"({"architectures": ["Glm4ForCausalLM"], "model_type": "glm4", "hidden_size": 4096,
                 "intermediate_size": 13696, "num_attention_heads": 32, "num_key_value_heads": 2,
                 "head_dim": 128, "num_hidden_layers": 40, "vocab_size": 151552,
                 "max_position_embeddings": 32768, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})");
  return (tmp / "glm-4-9b").string();
}

nlohmann::json parse_json(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << text;
  return j;
}

}  // namespace

TEST(CheckHardware, FixtureModelFitsOnACpuOnlyServer) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string model = (autoglm::test::fixtures_dir() / "hf/tiny-glm4-hf").string();
  const auto r = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --model " + model + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = parse_json(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["gpus"].size(), 0u);
  EXPECT_EQ(j["fit"]["model"]["architecture"], "glm4");
  EXPECT_EQ(j["fit"]["model"]["layers"], 2);
  EXPECT_EQ(j["fit"]["devices"][0]["id"], "cpu");
  EXPECT_EQ(j["fit"]["devices"][0]["verdict"], "fits");
  EXPECT_EQ(j["fit"]["requirement_met"], true);
}

// A vision model: the 1080x2400 screenshot Open-AutoGLM sends, priced from a rate measured here.
TEST(CheckHardware, PricesAScreenshotForAVisionModel) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto fx = autoglm::test::fixtures_dir() / "glm4v";
  const std::string hf = (fx / "tiny-glm4v-hf").string();
  const auto r = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --model " + hf +
                            " --json --target-encode-seconds 3600");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = parse_json(r.out);
  ASSERT_TRUE(j.contains("screenshot")) << r.out;
  const auto& s = j["screenshot"];
  EXPECT_EQ(s["width"], 1080);
  EXPECT_EQ(s["height"], 2400);
  EXPECT_EQ(s["max_pixels"], 150528) << "the folder's preprocessor_config.json";
  EXPECT_EQ(s["resized"]["width"], 168);  // transformers' smart_resize (two temporal frames count)
  EXPECT_EQ(s["resized"]["height"], 392);
  EXPECT_EQ(s["image_tokens"], 84);
  EXPECT_GT(s["encode_seconds"].get<double>(), 0.0);
  // a bf16 tower served from the CPU runs on AMX tiles where the CPU has them, as Q8_0 elsewhere
  EXPECT_EQ(s["weight_type"], autoglm::kernels::amx_detected() ? "BF16 on AMX tiles" : "Q8_0");
  EXPECT_EQ(s["target_max_pixels"], 150528) << "an hour is enough for the largest image";

  // a smaller limit gives fewer tokens, and less time; the text report says it too
  const auto small = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --model " + hf +
                                " --json --max-image-pixels 50000");
  ASSERT_EQ(small.exit_code, 0) << small.err;
  const auto js = parse_json(small.out)["screenshot"];
  EXPECT_LT(js["image_tokens"].get<int>(), 84);
  EXPECT_FALSE(js.contains("target_max_pixels"));
  const auto text = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --model " + hf);
  EXPECT_NE(text.out.find("a 1080x2400 screenshot at max_pixels 150528: resized to 168x392, 84 image tokens"),
            std::string::npos) << text.out;
  // a text model has no such section
  const auto plain = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --model " +
                                (autoglm::test::fixtures_dir() / "hf/tiny-glm4-hf").string() + " --json");
  EXPECT_FALSE(parse_json(plain.out).contains("screenshot"));
}

TEST(CheckHardware, GpuRequiredOnAMachineWithoutOneFailsWithExit1) {
  const auto r = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --gpu");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "no usable GPU")) << r.out;
  EXPECT_TRUE(contains(r.out, "Result: FAIL")) << r.out;
}

TEST(CheckHardware, NineBillionOnSmallRamSuggestsAQuantization) {
  TempDir tmp;
  const std::string model = write_glm4_9b_config(tmp);
  // throttling-cpu has 10.7 GiB available: bf16 (17.5 GiB) does not fit, q8_0 (9.3 GiB) + KV does not
  // either, Q4_K does.
  const auto r = run_binary("check-hardware --sysroot " + sysroot("throttling-cpu") + " --model " + model +
                            " --quantization bf16 --json");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto j = parse_json(r.out);
  const auto& cpu = j["fit"]["devices"][0];
  EXPECT_EQ(cpu["verdict"], "fits_with_quantization");
  EXPECT_EQ(cpu["quantization"], "q4_k");
  EXPECT_NEAR(j["fit"]["model"]["parameters"].get<double>() / 1e9, 9.40, 0.01);
  EXPECT_TRUE(contains(j["fit"]["recommendation"].get<std::string>(), "--quantization q4_k"));

  // Asking for that quantization turns the verdict into a plain fit and exit 0 (warnings aside).
  const auto ok = run_binary("check-hardware --sysroot " + sysroot("throttling-cpu") + " --model " + model +
                             " --quantization q4_k --json");
  EXPECT_EQ(parse_json(ok.out)["fit"]["devices"][0]["verdict"], "fits");
  EXPECT_EQ(parse_json(ok.out)["fit"]["requirement_met"], true);
}

TEST(CheckHardware, DowngradedLinkAndSwapAreWarningsInTheTextReport) {
  const auto r = run_binary("check-hardware --sysroot " + sysroot("workstation-2gpu"));
  EXPECT_EQ(r.exit_code, 0) << "warnings are not failures: " << r.out;
  EXPECT_TRUE(contains(r.out, "0000:b1:00.0: PCIe Gen3 x8, capable of Gen4 x16")) << r.out;
  EXPECT_TRUE(contains(r.out, "swap in use")) << r.out;
  EXPECT_TRUE(contains(r.out, "Overall: WARN")) << r.out;
}

TEST(CheckHardware, ModelAndSettingsComeFromTheConfig) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string model = (autoglm::test::fixtures_dir() / "models/tiny-qwen2-Q8_0.gguf").string();
  write_file(tmp / "svc.yaml", "model:\n  path: " + model + "\n  context_length: 256\nruntime:\n  kv_cache_type: q8_0\n");
  const auto r = run_binary("check-hardware --sysroot " + sysroot("no-gpu") + " --config " +
                            (tmp / "svc.yaml").string() + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = parse_json(r.out);
  EXPECT_EQ(j["fit"]["model"]["architecture"], "qwen2");
  EXPECT_EQ(j["fit"]["request"]["context"], 256);
  EXPECT_EQ(j["fit"]["request"]["kv_cache_type"], "q8_0");
}

TEST(CheckHardware, BadModelsAndFlagsGiveClearErrors) {
  TempDir tmp;
  write_file(tmp / "broken.gguf", "GGUF\x03");
  const auto broken = run_binary("check-hardware --sysroot " + sysroot("empty") + " --model " + (tmp / "broken.gguf").string());
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_TRUE(contains(broken.err, "broken.gguf")) << broken.err;
  const auto missing = run_binary("check-hardware --model " + (tmp / "nope.gguf").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "nope.gguf")) << missing.err;
  const auto quant = run_binary("check-hardware --model " + write_glm4_9b_config(tmp) + " --quantization q3_x");
  EXPECT_EQ(quant.exit_code, 2);
  EXPECT_TRUE(contains(quant.err, "--quantization")) << quant.err;
}

TEST(CheckHardware, EmptySysrootIsAllUnknownNotACrash) {
  const auto r = run_binary("check-hardware --sysroot " + sysroot("empty") + " --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = parse_json(r.out);
  EXPECT_TRUE(j["memory"]["total_bytes"].is_null()) << j["memory"].dump();
}

namespace {

std::string fixture(const std::string& rel) { return (autoglm::test::fixtures_dir() / rel).string(); }

// A writable copy of the HF fixture folder.
std::filesystem::path copy_hf_folder(const TempDir& tmp) {
  const auto dst = tmp / "tiny-glm4-hf";
  std::filesystem::copy(autoglm::test::fixtures_dir() / "hf/tiny-glm4-hf", dst);
  for (const auto& e : std::filesystem::directory_iterator(dst))
    std::filesystem::permissions(e.path(), std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  return dst;
}

}  // namespace

TEST(Verify, FolderWithoutHashesPrintsSha256sumLinesThatSha256sumAccepts) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const auto r = run_binary("verify " + fixture("hf/tiny-glm4-hf"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  size_t lines = 0;
  for (size_t pos = 0; (pos = r.out.find('\n', pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 6u) << r.out;  // config, 2 shards, index, tokenizer, tokenizer_config
  write_file(tmp / "SUMS", r.out);
  EXPECT_EQ(std::system(("sha256sum --quiet -c '" + (tmp / "SUMS").string() + "' >/dev/null").c_str()), 0);

  // ... and the same list checks clean through --manifest.
  const auto again = run_binary("verify " + fixture("hf/tiny-glm4-hf") + " --manifest " + (tmp / "SUMS").string() + " --json");
  EXPECT_EQ(again.exit_code, 0) << again.out;
  const auto j = nlohmann::json::parse(again.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["files"].size(), 6u);
  for (const auto& f : j["files"]) EXPECT_EQ(f["hash_ok"], true) << f.dump();
}

TEST(Verify, SingleFileAgainstAnExpectedHash) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string file = fixture("models/tiny-glm4-f32.gguf");
  const std::string good = autoglm::test::sha256_of(file);
  const auto ok = run_binary("verify " + file + " --sha256 " + good);
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  const auto bad = run_binary("verify " + file + " --sha256 " + std::string(64, 'a'));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.out, "MISMATCH")) << bad.out;
  EXPECT_TRUE(contains(bad.out, good)) << "the actual hash is shown: " << bad.out;
}

TEST(Verify, UsageErrorsExitWith2) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string file = fixture("models/tiny-glm4-f32.gguf");
  const std::string hex(64, 'b');
  const auto missing = run_binary("verify /nonexistent/model.gguf");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(contains(missing.err, "does not exist")) << missing.err;
  const auto folder = run_binary("verify " + fixture("hf/tiny-glm4-hf") + " --sha256 " + hex);
  EXPECT_EQ(folder.exit_code, 2);
  EXPECT_TRUE(contains(folder.err, "--sha256 needs a single file")) << folder.err;
  const auto short_hex = run_binary("verify " + file + " --sha256 abc");
  EXPECT_EQ(short_hex.exit_code, 2);
  EXPECT_TRUE(contains(short_hex.err, "64 hex digits")) << short_hex.err;
  EXPECT_EQ(run_binary("verify " + file + " --sha256 " + hex + " --manifest SUMS").exit_code, 2);
}

TEST(Verify, TruncatedShardIsCorruptAndNamesTheTensor) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const auto dir = copy_hf_folder(tmp);
  const auto shard = dir / "model-00001-of-00002.safetensors";
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) - 1000);
  const auto r = run_binary("verify " + dir.string() + " --json");
  EXPECT_EQ(r.exit_code, 1);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  for (const auto& f : j["files"]) {
    const bool is_shard = f["path"].get<std::string>().find("model-00001") != std::string::npos;
    EXPECT_EQ(f["status"], is_shard ? "CORRUPT" : "OK") << f.dump();
    if (is_shard) {
      EXPECT_TRUE(contains(f["structure_error"].get<std::string>(), "ends past the end of the file")) << f.dump();
    }
  }
}

TEST(Verify, ManifestWithAMissingFileAndAMalformedLine) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const auto dir = copy_hf_folder(tmp);
  write_file(dir / "SUMS", autoglm::test::sha256_of((dir / "config.json").string()) + "  config.json\n" +
                               std::string(64, 'c') + "  gone.gguf\n" + "junk\n");
  const auto r = run_binary("verify " + dir.string() + " --manifest " + (dir / "SUMS").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "MISSING")) << r.out;
  EXPECT_TRUE(contains(r.out + r.err, "SUMS:3:")) << r.out << r.err;
}

TEST(Verify, ExpectedHashesComeFromTheConfig) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const auto dir = copy_hf_folder(tmp);
  const std::string config_hash = autoglm::test::sha256_of((dir / "config.json").string());
  write_file(tmp / "svc.yaml", "model:\n  path: tiny-glm4-hf\n  sha256:\n    config.json: " + config_hash +
                                   "\n    tokenizer.json: " + std::string(64, 'd') + "\n");
  const auto r = run_binary("verify --config " + (tmp / "svc.yaml").string() + " --json");
  EXPECT_EQ(r.exit_code, 1) << r.err;  // tokenizer.json does not match
  const auto j = nlohmann::json::parse(r.out);
  for (const auto& f : j["files"]) {
    const std::string name = std::filesystem::path(f["path"].get<std::string>()).filename().string();
    if (name == "config.json") {
      EXPECT_EQ(f["hash_ok"], true) << f.dump();
    } else if (name == "tokenizer.json") {
      EXPECT_EQ(f["hash_ok"], false) << f.dump();
    } else {
      EXPECT_TRUE(f["hash_ok"].is_null()) << "no expected hash: " << f.dump();
    }
  }
  // A single-file model: model.sha256 is one hex string.
  write_file(tmp / "one.yaml", "model:\n  path: " + fixture("models/tiny-llama-Q4_0.gguf") + "\n  sha256: " +
                                   autoglm::test::sha256_of(fixture("models/tiny-llama-Q4_0.gguf")) + "\n");
  const auto one = run_binary("verify --config " + (tmp / "one.yaml").string());
  EXPECT_EQ(one.exit_code, 0) << one.out << one.err;
  EXPECT_TRUE(contains(one.out, "OK")) << one.out;
}

TEST(Logits, WritesAnNpyOfEveryPositionThatMatchesTheReference) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const auto fx = autoglm::test::fixtures_dir();
  std::string prompt = autoglm::test::read_file(fx / "refs/qwen2.prompts");
  prompt = prompt.substr(0, prompt.find('\n'));
  const auto out = tmp / "logits.npy";
  const auto r = run_binary("logits --model " + fixture("models/tiny-qwen2-Q8_0.gguf") + " --tokens " + prompt +
                            " --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ours = autoglm::npy::read_f32(out);
  const auto ref = autoglm::npy::read_f32(fx / "refs/tiny-qwen2-Q8_0.p0.npy");
  ASSERT_EQ(ours.shape, ref.shape);
  double max_abs = 0;
  for (size_t i = 0; i < ref.data.size(); ++i) max_abs = std::max(max_abs, double{std::abs(ours.data[i] - ref.data[i])});
  EXPECT_LE(max_abs, 0.3);
}

// The whole image path from the command line: the PNG decoded and resized as the processor does,
// the tower, M-RoPE, the decoder; each prompt's one <|image|> id per image expanded. Prompt a and b
// of the glm4v fixture, both model forms, against transformers' logits (float tolerances).
TEST(Logits, ImagesFromFilesMatchTheReference) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const auto fx = autoglm::test::fixtures_dir() / "glm4v";
  const auto index = nlohmann::json::parse(autoglm::test::read_file(fx / "refs/index.json"));
  const int64_t image_token = 2062;
  for (const std::string form : {"hf", "gguf"}) {
    const std::string model = form == "hf" ? (fx / "tiny-glm4v-hf").string()
                                           : (fx / "tiny-glm4v-F16.gguf").string() + " --mmproj " +
                                                 (fx / "mmproj-tiny-glm4v-F16.gguf").string() +
                                                 // the projector carries no pixel limits: the folder's processor's
                                                 " --min-image-pixels 12544 --max-image-pixels 150528";
    for (const std::string name : {"a", "b"}) {
      std::string ids, images;
      int64_t previous = -1;
      for (int64_t id : autoglm::npy::read_i64(fx / "refs" / (name + ".input_ids.npy")).data) {
        if (id != image_token || previous != image_token) ids += (ids.empty() ? "" : ",") + std::to_string(id);
        previous = id;
      }
      for (const auto& image : index["prompts"][name]["images"])
        images += " --image " + (fx / index["images"][image.get<std::string>()]["file"].get<std::string>()).string();
      const auto out = tmp / (form + name + ".npy");
      const auto r = run_binary("logits --model " + model + " --tokens " + ids + images + " --out " + out.string());
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const auto ours = autoglm::npy::read_f32(out);
      const auto ref = autoglm::npy::read_f32(fx / "refs" / (name + ".logits.npy"));
      ASSERT_EQ(ours.shape, ref.shape) << form << " " << name;
      const auto d = autoglm::test::compare_logits(ours.data, ref.data, ref.shape[1]);
      EXPECT_LE(d.rms, 1e-2) << form << " " << name;
      EXPECT_LE(d.max_abs, 5e-2) << form << " " << name;
      EXPECT_LE(d.mean_kl, 1e-4) << form << " " << name;
    }
  }
  // a text model takes no image; an image file that is not one is named
  const auto text = run_binary("logits --model " + fixture("models/tiny-glm4-Q8_0.gguf") + " --tokens 1,2 --image " +
                               (fx / "images/tiny.png").string() + " --out " + (tmp / "x.npy").string());
  EXPECT_EQ(text.exit_code, 2) << text.err;
  EXPECT_TRUE(contains(text.err, "reads text only")) << text.err;
  const auto junk = run_binary("logits --model " + (fx / "tiny-glm4v-hf").string() + " --tokens 2062 --image " +
                               (fx / "README.md").string() + " --out " + (tmp / "x.npy").string());
  EXPECT_EQ(junk.exit_code, 2) << junk.err;
  EXPECT_TRUE(contains(junk.err, "README.md")) << junk.err;
}

// generate --image: the greedy answer to prompt a is the reference engine's 8 ids.
TEST(Generate, ImageAnswerIsTheReferenceGreedyAnswer) {
  AUTOGLM_REQUIRE_FIXTURES();
  const auto fx = autoglm::test::fixtures_dir() / "glm4v";
  const std::string model = (fx / "tiny-glm4v-hf").string();
  const auto r = run_binary("generate --model " + model + " --image " + (fx / "images/screen_tall.png").string() +
                            " --chat 'What is on this screen?' --temperature 0 -n 8");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto expected = run_binary("detokenize --model " + model + " --ids '466 1416 257 1077 944 132 944 132'");
  // streamed text: a token that ends inside a UTF-8 character is shown as U+FFFD
  const std::string shown = nlohmann::json::parse(nlohmann::json(expected.out).dump(-1, ' ', false,
      nlohmann::json::error_handler_t::replace)).get<std::string>();
  EXPECT_EQ(r.out, shown);
  EXPECT_TRUE(contains(r.err, "images: 1 (84 tokens)")) << r.err;
}

TEST(Logits, BadInputIsAUsageErrorNotACrash) {
  AUTOGLM_REQUIRE_FIXTURES();
  TempDir tmp;
  const std::string model = fixture("models/tiny-llama-Q4_0.gguf"), out = (tmp / "l.npy").string();
  const auto bad_id = run_binary("logits --model " + model + " --tokens 1,5000 --out " + out);
  EXPECT_EQ(bad_id.exit_code, 2);
  EXPECT_TRUE(contains(bad_id.err, "outside the vocabulary")) << bad_id.err;
  EXPECT_EQ(run_binary("logits --model " + model + " --tokens 1,,2 --out " + out).exit_code, 2);
  EXPECT_EQ(run_binary("logits --model " + model + " --tokens 1 --out " + out + " --isa neon").exit_code, 2);
  write_file(tmp / "vocab-only.gguf", autoglm::test::read_file(fixture("models/tiny-llama-Q4_0.gguf")).substr(0, 4096));
  EXPECT_EQ(run_binary("logits --model " + (tmp / "vocab-only.gguf").string() + " --tokens 1 --out " + out).exit_code, 1);
}

namespace autoglm {
namespace {

TEST(Tokenize, IdsMatchTheTokenizerSuiteAndDetokenizeRoundTrips) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string gguf = (test::fixtures_dir() / "models/tiny-glm4-f32.gguf").string();
  const std::string hf = (test::fixtures_dir() / "hf/tiny-glm4-hf").string();
  // the first case of fixtures/tokenize/tiny-glm4-f32.gguf.inp|.out
  for (const std::string& model : {gguf, hf}) {
    const auto r = test::run_binary("tokenize --model " + model + " --text 'ied 4 ½ months'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "798 220 19 220 126 121 1933\n") << model;
  }
  const auto json = test::run_binary("tokenize --model " + gguf + " --text 'ied 4' --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(json.out, "[{\"id\":798,\"piece\":\"ied\"},{\"id\":220,\"piece\":\" \"},{\"id\":19,\"piece\":\"4\"}]\n");
  const auto back = test::run_binary("detokenize --model " + gguf + " --ids '798 220 19 220 126 121 1933'");
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(back.out, "ied 4 ½ months\n");
}

TEST(Tokenize, BosOnlyWhenAskedAndBadInputIsAUsageError) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string llama = (test::fixtures_dir() / "models/tiny-llama-f32.gguf").string();
  const auto plain = test::run_binary("tokenize --model " + llama + " --text Hello");
  const auto bos = test::run_binary("tokenize --model " + llama + " --text Hello --bos");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(bos.out, "1 " + plain.out);
  EXPECT_EQ(test::run_binary("detokenize --model " + llama + " --ids 1,999999").exit_code, 2);
  EXPECT_EQ(test::run_binary("detokenize --model " + llama + " --ids 'a b'").exit_code, 2);
  EXPECT_EQ(test::run_binary("tokenize --model /nonexistent.gguf --text x").exit_code, 2);
}

}  // namespace
}  // namespace autoglm

namespace autoglm {
namespace {

std::string fixture_path(const std::string& rel) { return (test::fixtures_dir() / rel).string(); }

TEST(Generate, ChatStreamsTextFromAGgufAndAHfFolder) {
  AUTOGLM_REQUIRE_FIXTURES();
  for (const std::string& model : {fixture_path("models/tiny-glm4-Q4_K_M.gguf"), fixture_path("hf/tiny-glm4-hf")}) {
    const auto r = test::run_binary("generate --model " + model + " --chat 'Hello there' --system 'Be brief.' -n 12 --seed 7");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(r.out.empty());
    EXPECT_THAT(r.err, testing::HasSubstr("tokens/s")) << model;
    EXPECT_THAT(r.err, testing::HasSubstr("seed 7"));
  }
}

TEST(Generate, SameSeedSameTextAndMaxTokensIsHonoured) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string cmd = "generate --model " + fixture_path("models/tiny-qwen2-Q8_0.gguf") + " --prompt 'Once upon a time' -n 24";
  const auto a = test::run_binary(cmd + " --seed 11"), b = test::run_binary(cmd + " --seed 11");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_THAT(a.err, testing::ContainsRegex("generated: ([0-9]|1[0-9]|2[0-4]) tokens"));
  const auto other = test::run_binary(cmd + " --seed 12");
  EXPECT_NE(a.out, other.out) << "random weights give flat logits: another seed picks other tokens";
}

TEST(Generate, StopStringEndsTheTextBeforeIt) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string cmd = "generate --model " + fixture_path("models/tiny-qwen2-Q8_0.gguf") + " --prompt 'Once upon a time' -n 40 --seed 5";
  const auto full = test::run_binary(cmd);
  ASSERT_EQ(full.exit_code, 0) << full.err;
  // a short ASCII piece from the middle of the text becomes the stop string
  size_t at = full.out.size() / 2;
  while (at + 2 < full.out.size() && !(std::isalpha(static_cast<unsigned char>(full.out[at])) &&
                                       std::isalpha(static_cast<unsigned char>(full.out[at + 1]))))
    ++at;
  ASSERT_LT(at + 2, full.out.size()) << "no two letters in a row in: " << full.out;
  const std::string stop = full.out.substr(at, 2);
  const auto cut = test::run_binary(cmd + " --stop " + stop);
  ASSERT_EQ(cut.exit_code, 0) << cut.err;
  EXPECT_EQ(cut.out, full.out.substr(0, full.out.find(stop)) + "\n");
  EXPECT_THAT(cut.err, testing::HasSubstr("stop: stop string"));
}

TEST(Generate, BadFlagsAreUsageErrors) {
  AUTOGLM_REQUIRE_FIXTURES();
  const std::string model = fixture_path("models/tiny-qwen2-Q8_0.gguf");
  EXPECT_EQ(test::run_binary("generate --model " + model).exit_code, 2);
  EXPECT_EQ(test::run_binary("generate --model " + model + " --prompt a --chat b").exit_code, 2);
  EXPECT_EQ(test::run_binary("generate --model " + model + " --prompt a --top-p 1.5").exit_code, 2);
  EXPECT_EQ(test::run_binary("generate --model " + model + " --prompt a -n 0").exit_code, 2);
  EXPECT_EQ(test::run_binary("generate --model " + model + " --chat a --chat-format vicuna").exit_code, 2);
}

}  // namespace
}  // namespace autoglm
