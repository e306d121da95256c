// Tokenizer: llama.cpp's vocab test suite and the GLM-4 / Qwen2 cases must match id for id;
// Hugging Face and GGUF loading agree; round trips; special tokens; streaming UTF-8; hostile
// metadata gives errors, not crashes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "autoglm/gguf.h"
#include "autoglm/tokenizer.h"
#include "test_support.h"

namespace autoglm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// The .inp / .out test files: strings separated by "\n__ggml_vocab_test__\n" (the file ends with
// one, so the last split is empty and dropped); one line of space-separated ids per string.

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<std::string> split_inputs(const std::string& data) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t begin = 0;
  while (true) {
    const size_t at = data.find(sep, begin);
    if (at == std::string::npos) break;
    out.push_back(data.substr(begin, at - begin));
    begin = at + sep.size();
  }
  if (begin < data.size()) out.push_back(data.substr(begin));
  return out;
}

std::vector<Case> read_cases(const fs::path& inp) {
  const std::vector<std::string> texts = split_inputs(test::read_file(inp));
  std::istringstream out(test::read_file(fs::path(inp).replace_extension(".out")));
  std::vector<Case> cases;
  std::string line;
  for (const std::string& text : texts) {
    if (!std::getline(out, line)) break;
    Case c{text, {}};
    std::istringstream ids(line);
    int32_t id = 0;
    while (ids >> id) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(cases.size(), texts.size()) << inp << ": fewer .out lines than strings";
  return cases;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

struct Suite {
  const char* model;  // tokenizer source under fixtures/
  const char* cases;  // .inp under fixtures/
};

const Suite kSuites[] = {
    {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-gpt-2.gguf.inp"},
    {"vocab/ggml-vocab-starcoder.gguf", "vocab/ggml-vocab-starcoder.gguf.inp"},
    {"vocab/ggml-vocab-refact.gguf", "vocab/ggml-vocab-refact.gguf.inp"},
    {"vocab/ggml-vocab-mpt.gguf", "vocab/ggml-vocab-mpt.gguf.inp"},
    {"vocab/ggml-vocab-falcon.gguf", "vocab/ggml-vocab-falcon.gguf.inp"},
    {"vocab/ggml-vocab-deepseek-coder.gguf", "vocab/ggml-vocab-deepseek-coder.gguf.inp"},
    {"vocab/ggml-vocab-deepseek-llm.gguf", "vocab/ggml-vocab-deepseek-llm.gguf.inp"},
    {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-llama-spm.gguf.inp"},
    {"vocab/ggml-vocab-phi-3.gguf", "vocab/ggml-vocab-phi-3.gguf.inp"},
    {"models/tiny-glm4-f32.gguf", "tokenize/tiny-glm4-f32.gguf.inp"},
    {"models/tiny-qwen2-f32.gguf", "tokenize/tiny-qwen2-f32.gguf.inp"},
};

class FixtureSuite : public ::testing::TestWithParam<Suite> {};

TEST_P(FixtureSuite, MatchesReferenceIdsExactly) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const Tokenizer tok = Tokenizer::from_gguf_file(dir / GetParam().model);
  const std::vector<Case> cases = read_cases(dir / GetParam().cases);
  ASSERT_FALSE(cases.empty());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(tok.encode(cases[i].text, false, false), cases[i].ids)
        << "case " << i << " \"" << cases[i].text << "\"\n got:     " << show(tok.encode(cases[i].text, false, false))
        << "\n expected:" << show(cases[i].ids);
  }
}

// SentencePiece included: decode() takes off the space encode() put in front.
TEST_P(FixtureSuite, DecodeInvertsEncode) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const Tokenizer tok = Tokenizer::from_gguf_file(dir / GetParam().model);
  for (const Case& c : read_cases(dir / GetParam().cases)) {
    if (!valid_utf8(c.text)) continue;
    EXPECT_EQ(tok.decode(c.ids), c.text);
    EXPECT_EQ(tok.decode(tok.encode(c.text, true, false)), c.text);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureSuite, ::testing::ValuesIn(kSuites),
                         [](const ::testing::TestParamInfo<Suite>& param_info) {
                           std::string name = fs::path(param_info.param.model).stem().string();
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(Tokenizer, HuggingFaceFolderMatchesGguf) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const Tokenizer hf = Tokenizer::from_hf_folder(dir / "hf/tiny-glm4-hf");
  const Tokenizer gguf = Tokenizer::from_gguf_file(dir / "models/tiny-glm4-BF16.gguf");
  EXPECT_EQ(hf.vocab_size(), gguf.vocab_size());
  const std::vector<Case> cases = read_cases(dir / "tokenize/tiny-glm4-f32.gguf.inp");
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(hf.encode(cases[i].text, false, false), gguf.encode(cases[i].text, false, false)) << "case " << i;
    EXPECT_EQ(hf.encode(cases[i].text, false, false), cases[i].ids) << "case " << i;
  }
}

TEST(Tokenizer, DigitGroupsFollowThePreTokenizer) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const Tokenizer glm4 = Tokenizer::from_gguf_file(dir / "models/tiny-glm4-f32.gguf");
  const Tokenizer qwen2 = Tokenizer::from_gguf_file(dir / "models/tiny-qwen2-f32.gguf");
  EXPECT_EQ(glm4.pre_tokenizer(), "glm4");
  // glm4 splits "1234567" into 123 456 7, qwen2 into single digits (the tiny vocabularies then
  // spell each piece with what they have).
  const auto joined = [](const Tokenizer& tok, std::vector<std::string> pieces) {
    std::vector<int32_t> ids;
    for (const std::string& p : pieces) {
      const std::vector<int32_t> part = tok.encode(p, false, false);
      ids.insert(ids.end(), part.begin(), part.end());
    }
    return ids;
  };
  EXPECT_EQ(glm4.encode("1234567", false, false), joined(glm4, {"123", "456", "7"}));
  EXPECT_EQ(qwen2.encode("1234567", false, false), joined(qwen2, {"1", "2", "3", "4", "5", "6", "7"}));
  EXPECT_EQ(qwen2.encode("12", false, false).size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Special tokens

TEST(Tokenizer, ControlTokensMatchOnlyWithParseSpecial) {
  AUTOGLM_REQUIRE_FIXTURES();
  const Tokenizer tok = Tokenizer::from_gguf_file(test::fixtures_dir() / "vocab/ggml-vocab-phi-3.gguf");
  const int32_t user = tok.find_token("<|user|>").value();
  const int32_t end = tok.find_token("<|end|>").value();
  EXPECT_TRUE(tok.is_special(user));
  const std::string text = "<|user|>\nHello<|end|>";

  const std::vector<int32_t> parsed = tok.encode(text, false, true);
  EXPECT_EQ(parsed.front(), user);
  EXPECT_EQ(parsed.back(), end);
  EXPECT_EQ(std::count(parsed.begin(), parsed.end(), user), 1);

  const std::vector<int32_t> plain = tok.encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), user), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), end), 0);
  EXPECT_GT(plain.size(), parsed.size());
  EXPECT_EQ(tok.decode(plain), text);

  EXPECT_EQ(tok.decode(parsed, true), "<|user|> \nHello<|end|>");  // SentencePiece: space after a special token
  // Hidden tokens are left out first; then the leading space goes, as Hugging Face's Strip does.
  EXPECT_EQ(tok.decode(parsed, false), "\nHello");
  EXPECT_EQ(tok.token_piece(user), "<|user|>");
}

TEST(Tokenizer, BosAndEndOfTurn) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const Tokenizer phi3 = Tokenizer::from_gguf_file(dir / "vocab/ggml-vocab-phi-3.gguf");
  EXPECT_EQ(phi3.bos(), 1);
  EXPECT_EQ(phi3.eos(), 32000);
  EXPECT_TRUE(phi3.adds_bos());
  EXPECT_EQ(phi3.encode("Hello", true, false).front(), 1);
  EXPECT_EQ(phi3.eot(), phi3.find_token("<|end|>").value());
  const std::vector<int32_t> ends = phi3.end_of_turn_ids();
  EXPECT_NE(std::find(ends.begin(), ends.end(), 32000), ends.end());
  EXPECT_NE(std::find(ends.begin(), ends.end(), phi3.find_token("<|end|>").value()), ends.end());

  const Tokenizer glm4 = Tokenizer::from_gguf_file(dir / "models/tiny-glm4-f32.gguf");
  EXPECT_FALSE(glm4.adds_bos());
  EXPECT_EQ(glm4.encode("Hello", true, false), glm4.encode("Hello", false, false));
}

// A Hugging Face folder with GLM-4's chat tokens added (special) and one plain added token.
class HfAddedTokens : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::fixtures_dir().empty()) return;
    const fs::path src = test::fixtures_dir() / "hf/tiny-glm4-hf";
    nlohmann::json j = nlohmann::json::parse(test::read_file(src / "tokenizer.json"));
    j["added_tokens"] = nlohmann::json::array({
        {{"id", 2048}, {"content", "<|user|>"}, {"special", true}},
        {{"id", 2049}, {"content", "<|assistant|>"}, {"special", true}},
        {{"id", 2050}, {"content", "<|endoftext|>"}, {"special", true}},
        {{"id", 2051}, {"content", "my_word"}, {"special", false}},
    });
    test::write_file(dir_ / "tokenizer.json", j.dump());
    test::write_file(dir_ / "tokenizer_config.json",
                     R"({"eos_token": "<|endoftext|>", "add_bos_token": false})");
  }
  test::TempDir dir_;
};

TEST_F(HfAddedTokens, SpecialOnlyWithParseSpecialUserDefinedAlways) {
  AUTOGLM_REQUIRE_FIXTURES();
  const Tokenizer tok = Tokenizer::from_hf_folder(dir_.path());
  EXPECT_EQ(tok.vocab_size(), 2052u);
  EXPECT_EQ(tok.eos(), 2050);
  EXPECT_EQ(tok.eot(), 2048);
  const std::string text = "<|user|>\nsay my_word<|assistant|>";
  const std::vector<int32_t> parsed = tok.encode(text, false, true);
  EXPECT_EQ(parsed.front(), 2048);
  EXPECT_EQ(parsed.back(), 2049);
  EXPECT_NE(std::find(parsed.begin(), parsed.end(), 2051), parsed.end());

  const std::vector<int32_t> plain = tok.encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2048), 0);
  EXPECT_NE(std::find(plain.begin(), plain.end(), 2051), plain.end());  // user-defined: always
  EXPECT_EQ(tok.decode(plain), text);
  EXPECT_EQ(tok.decode(parsed, true), text);
  EXPECT_EQ(tok.decode(parsed, false), "\nsay my_word");
}

// ---------------------------------------------------------------------------------------------
// Round trips and bad input text

TEST(Tokenizer, RoundTripsArbitraryUtf8) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const std::vector<std::string> texts = {
      "", " ", "\n\n\t  x", "Grüße, 世界! 🦙🦙 ｆｕｌｌ", "  leading", "trailing  ", "a\r\nb",
      "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 12345 3.14",
      std::string(5000, ' ') + "x" + std::string(3000, '\n')};
  for (const char* model : {"models/tiny-glm4-f32.gguf", "models/tiny-qwen2-f32.gguf",
                            "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-deepseek-llm.gguf",
                            "vocab/ggml-vocab-llama-spm.gguf"}) {
    // (Not tiny-llama: its 1024 pieces lack "▁", so a space goes out as the bytes of "▁" and
    // comes back as "▁", exactly as SentencePiece and Hugging Face do with such a vocabulary.)
    const Tokenizer tok = Tokenizer::from_gguf_file(dir / model);
    for (const std::string& t : texts) EXPECT_EQ(tok.decode(tok.encode(t, false, false)), t) << model;
  }
}

TEST(Tokenizer, InvalidUtf8NeverCrashes) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const std::string bad = std::string("ok \xFF\xFE mid \xE2\x82 \xC0\xAF \xED\xA0\x80 end \xF0\x9F");
  const Tokenizer bpe = Tokenizer::from_gguf_file(dir / "models/tiny-glm4-f32.gguf");
  const std::string decoded = bpe.decode(bpe.encode(bad, false, false));
  EXPECT_THAT(decoded, HasSubstr("ok "));
  EXPECT_THAT(decoded, HasSubstr("\xEF\xBF\xBD"));  // U+FFFD, as llama.cpp reads bad bytes
  EXPECT_TRUE(valid_utf8(decoded));

  // SentencePiece keeps the bytes themselves (byte fallback).
  const Tokenizer spm = Tokenizer::from_gguf_file(dir / "vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm.decode(spm.encode(bad, false, false)), bad);
}

// Random bytes and random code points: no crash, no exception; SentencePiece gives the bytes back.
TEST(Tokenizer, RandomInputNeverCrashes) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path dir = test::fixtures_dir();
  const Tokenizer bpe = Tokenizer::from_gguf_file(dir / "vocab/ggml-vocab-deepseek-llm.gguf");
  const Tokenizer spm = Tokenizer::from_gguf_file(dir / "vocab/ggml-vocab-phi-3.gguf");
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::string text;
    const int n = static_cast<int>(rng() % 64);
    for (int i = 0; i < n; ++i) {
      if (rng() % 2) {
        text += static_cast<char>(rng() % 256);
      } else {
        const char* pieces[] = {" ", "\n", "<|user|>", "<|end|>", "'s", "123", "é", "世", "🦙", "\t"};
        text += pieces[rng() % 10];
      }
    }
    for (bool parse_special : {false, true}) {
      EXPECT_NO_THROW(bpe.encode(text, true, parse_special));
      const std::vector<int32_t> ids = spm.encode(text, false, parse_special);
      if (!parse_special) {
        EXPECT_EQ(spm.decode(ids), text);
      }
    }
  }
}

TEST(Tokenizer, LongInputIsFast) {
  AUTOGLM_REQUIRE_FIXTURES();
  const Tokenizer tok = Tokenizer::from_gguf_file(test::fixtures_dir() / "models/tiny-glm4-f32.gguf");
  std::string text;
  while (text.size() < 200000) text += "The quick brown fox, 12345 jumps\n\n  over 懒狗 🦊! ";
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text, false, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_LT(seconds, 5.0);
}

// ---------------------------------------------------------------------------------------------
// Streaming UTF-8

TEST(Utf8StreamDecoder, NeverSplitsACharacter) {
  Utf8StreamDecoder d;
  const std::string emoji = "\xF0\x9F\xA6\x99";  // U+1F999, four bytes
  std::string out;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(d.push(emoji.substr(i, 1)), "");
    EXPECT_TRUE(d.pending());
  }
  out += d.push(emoji.substr(3, 1));
  EXPECT_EQ(out, emoji);
  EXPECT_FALSE(d.pending());
  EXPECT_EQ(d.push("a\xE4\xB8"), "a");
  EXPECT_EQ(d.push("\x96!"), "\xE4\xB8\x96!");
  EXPECT_EQ(d.flush(), "");
}

TEST(Utf8StreamDecoder, InvalidBytesBecomeReplacementCharacters) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("\xFF" "a"), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(d.push("\xE2\x82" "b"), "\xEF\xBF\xBD" "b");  // broken sequence: one U+FFFD
  EXPECT_EQ(d.push("\xF0\x9F"), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");  // the stream ended inside a character
  EXPECT_FALSE(d.pending());
}

TEST(Utf8StreamDecoder, ReassemblesTokenPieces) {
  AUTOGLM_REQUIRE_FIXTURES();
  const Tokenizer tok = Tokenizer::from_gguf_file(test::fixtures_dir() / "models/tiny-glm4-f32.gguf");
  const std::string text = "emoji 👩‍👩‍👧 und 世界";
  Utf8StreamDecoder d;
  std::string out;
  for (int32_t id : tok.encode(text, false, false)) {
    const std::string part = d.push(tok.token_piece(id));
    EXPECT_TRUE(valid_utf8(part));
    out += part;
  }
  out += d.flush();
  EXPECT_EQ(out, text);
}

// ---------------------------------------------------------------------------------------------
// Hostile metadata

gguf::Value string_array(std::vector<std::string> values) {
  gguf::Value v;
  v.type = gguf::ValueType::array;
  v.array_type = gguf::ValueType::string;
  v.array_size = values.size();
  v.strings = std::move(values);
  return v;
}
gguf::Value int_array(std::vector<int64_t> values) {
  gguf::Value v;
  v.type = gguf::ValueType::array;
  v.array_type = gguf::ValueType::int32;
  v.array_size = values.size();
  v.ints = std::move(values);
  return v;
}
gguf::Value float_array(std::vector<double> values) {
  gguf::Value v;
  v.type = gguf::ValueType::array;
  v.array_type = gguf::ValueType::float32;
  v.array_size = values.size();
  v.floats = std::move(values);
  return v;
}
gguf::Value string_value(std::string s) {
  gguf::Value v;
  v.type = gguf::ValueType::string;
  v.str = std::move(s);
  return v;
}
gguf::Value int_value(int64_t i) {
  gguf::Value v;
  v.type = gguf::ValueType::int32;
  v.i = i;
  return v;
}

// A valid little byte-level BPE: "a", "b", "c", "ab", "abc" and the merges that build them.
gguf::File small_bpe() {
  gguf::File f;
  f.path = "hostile.gguf";
  f.metadata = {
      {"tokenizer.ggml.model", string_value("gpt2")},
      {"tokenizer.ggml.pre", string_value("qwen2")},
      {"tokenizer.ggml.tokens", string_array({"a", "b", "c", "ab", "abc", "<|user|>"})},
      {"tokenizer.ggml.token_type", int_array({1, 1, 1, 1, 1, 3})},
      {"tokenizer.ggml.merges", string_array({"a b", "ab c"})},
      {"tokenizer.ggml.eos_token_id", int_value(5)},
  };
  return f;
}

void set(gguf::File& f, const std::string& key, gguf::Value value) {
  for (auto& [k, v] : f.metadata) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  f.metadata.emplace_back(key, std::move(value));
}

void erase(gguf::File& f, const std::string& key) {
  std::erase_if(f.metadata, [&](const auto& kv) { return kv.first == key; });
}

std::string error_of(const gguf::File& f) {
  try {
    Tokenizer::from_gguf(f);
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerHostile, SmallValidVocabularyWorks) {
  const Tokenizer tok = Tokenizer::from_gguf(small_bpe());
  EXPECT_EQ(tok.encode("abcab", false, false), (std::vector<int32_t>{4, 3}));
  EXPECT_EQ(tok.encode("<|user|>abc", false, true), (std::vector<int32_t>{5, 4}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{4, 3, -1, 99}), "abcab");  // bad ids skipped
  EXPECT_EQ(tok.token_piece(1000), "");
}

TEST(TokenizerHostile, BadMetadataGivesClearErrors) {
  struct Bad {
    const char* key;
    gguf::Value value;
    const char* message;
  };
  const std::vector<Bad> cases = {
      {"tokenizer.ggml.token_type", int_array({1, 1}), "has 2 entries but tokenizer.ggml.tokens has 6"},
      {"tokenizer.ggml.scores", float_array({0.0}), "has 1 entries"},
      {"tokenizer.ggml.token_type", int_array({1, 1, 1, 1, 1, 42}), "is not a token type"},
      {"tokenizer.ggml.merges", string_array({"a b", "abc"}), "merges[1]"},
      {"tokenizer.ggml.merges", string_array({"a "}), "not two tokens"},
      {"tokenizer.ggml.merges", string_array({""}), "not two tokens"},
      {"tokenizer.ggml.merges", int_array({1}), "must be an array of strings"},
      {"tokenizer.ggml.eos_token_id", int_value(6), "out of range"},
      {"tokenizer.ggml.bos_token_id", int_value(-1), "out of range"},
      {"tokenizer.ggml.bos_token_id", string_value("1"), "must be an integer"},
      {"tokenizer.ggml.model", string_value("bert"), "not supported"},
      {"tokenizer.ggml.pre", string_value("klingon"), "unknown pre-tokenizer"},
      {"tokenizer.ggml.tokens", string_array({}), "is empty"},
      {"tokenizer.ggml.tokens", int_array({1, 2, 3, 4, 5, 6}), "must be an array of strings"},
      {"tokenizer.ggml.model", int_value(1), "must be a string"},
  };
  for (const Bad& bad : cases) {
    gguf::File f = small_bpe();
    set(f, bad.key, bad.value);
    EXPECT_THAT(error_of(f), HasSubstr(bad.message)) << bad.key;
    EXPECT_THAT(error_of(f), HasSubstr("hostile.gguf")) << bad.key;
  }
  gguf::File no_tokens = small_bpe();
  erase(no_tokens, "tokenizer.ggml.tokens");
  EXPECT_THAT(error_of(no_tokens), HasSubstr("tokenizer.ggml.tokens is missing"));
  gguf::File no_merges = small_bpe();
  erase(no_merges, "tokenizer.ggml.merges");
  EXPECT_THAT(error_of(no_merges), HasSubstr("merges is missing"));
  EXPECT_THAT(error_of(gguf::File{}), HasSubstr("tokenizer.ggml.model is missing"));
}

// Merges naming tokens the vocabulary lacks cannot apply; they are left out, not fatal.
TEST(TokenizerHostile, MergesOfUnknownTokensAreIgnored) {
  gguf::File f = small_bpe();
  set(f, "tokenizer.ggml.merges", string_array({"x y", "a b", "ab zz", "b c"}));
  const Tokenizer tok = Tokenizer::from_gguf(f);
  EXPECT_EQ(tok.encode("abc", false, false), (std::vector<int32_t>{3, 2}));
}

// SentencePiece without byte tokens: characters it cannot spell become <unk>.
TEST(TokenizerHostile, SentencePieceWithoutByteTokens) {
  gguf::File f;
  f.metadata = {
      {"tokenizer.ggml.model", string_value("llama")},
      {"tokenizer.ggml.tokens", string_array({"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "b"})},
      {"tokenizer.ggml.scores", float_array({0, 0, 0, -1, -2})},
      {"tokenizer.ggml.token_type", int_array({2, 3, 3, 1, 1})},
  };
  const Tokenizer tok = Tokenizer::from_gguf(f);
  EXPECT_EQ(tok.encode("ab\xFF", true, false), (std::vector<int32_t>{1, 3, 4, 0}));
}

class HostileHf : public ::testing::Test {
 protected:
  std::string error_of(const std::string& tokenizer_json) {
    test::write_file(dir_ / "tokenizer.json", tokenizer_json);
    try {
      Tokenizer::from_hf_folder(dir_.path());
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  static std::string with(const std::string& vocab, const std::string& pre, const std::string& added = "[]") {
    return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": ["a b"]}, "added_tokens": )" +
           added + R"(, "pre_tokenizer": )" + pre + "}";
  }
  test::TempDir dir_;
};

TEST_F(HostileHf, BadFilesGiveErrors) {
  const std::string byte_level = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";
  const std::string vocab = R"({"a": 0, "b": 1, "ab": 2})";
  EXPECT_EQ(error_of(with(vocab, byte_level)), "(no error)");
  EXPECT_THAT(error_of("{not json"), HasSubstr("is not valid JSON"));
  EXPECT_THAT(error_of(R"({"model": {"type": "Unigram"}})"), HasSubstr("not supported"));
  EXPECT_THAT(error_of(with(R"({"a": 0, "b": 4000000000})", byte_level)), HasSubstr("token id"));
  EXPECT_THAT(error_of(with(R"({"a": -1})", byte_level)), HasSubstr("token id"));
  EXPECT_THAT(error_of(with(vocab, byte_level, R"([{"id": 99999, "content": "x"}])")), HasSubstr("token id"));
  EXPECT_THAT(error_of(with(vocab, "null")), HasSubstr("no ByteLevel"));
  const auto split = [&](const std::string& regex) {
    return R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": ")" + regex +
           R"("}, "behavior": "Isolated", "invert": false}, )" + byte_level + "]}";
  };
  EXPECT_THAT(error_of(with(vocab, split("(a*)*"))), HasSubstr("empty string"));
  EXPECT_THAT(error_of(with(vocab, split("[a-"))), HasSubstr("missing ']'"));
  EXPECT_THAT(error_of(with(vocab, split("\\\\p{Greek}"))), HasSubstr("unsupported Unicode category"));
  EXPECT_THAT(error_of(with(vocab, split("a{5000}"))), HasSubstr("repetition count"));
  EXPECT_THAT(error_of(with(vocab, split("(a"))), HasSubstr("missing ')'"));
  EXPECT_THAT(error_of(with(vocab, split(std::string(100000, '(')))), HasSubstr("nested too deeply"));
  EXPECT_THAT(error_of(with(vocab, split("(a{999}){999}"))), HasSubstr("too large"));
  const std::string bad_type = R"({"type": "Split", "pattern": {"Regex": "a"}, "behavior": 5})";
  EXPECT_THAT(error_of(with(vocab, bad_type)), HasSubstr("unexpected tokenizer JSON structure"));
}

// A pattern that backtracks exponentially stops with an error instead of hanging.
TEST_F(HostileHf, RunawayBacktrackingStops) {
  const std::string pre = R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(a|a)+b"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})";
  ASSERT_EQ(error_of(with(R"({"a": 0, "b": 1, "ab": 2})", pre)), "(no error)");
  const Tokenizer tok = Tokenizer::from_hf_folder(dir_.path());
  EXPECT_EQ(tok.encode("aab", false, false).size(), 2u);
  try {
    tok.encode(std::string(40, 'a'), false, false);
    FAIL() << "expected an error";
  } catch (const TokenizerError& e) {
    EXPECT_THAT(e.what(), HasSubstr("backtracks too much"));
  }
}

}  // namespace
}  // namespace autoglm
