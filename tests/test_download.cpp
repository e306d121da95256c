// autoglm::download against an in-process HTTP server (cpp-httplib) on 127.0.0.1: caching,
// retries, resume, hashes, errors and the Hugging Face endpoint / token rules.
#include <httplib.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "autoglm/download.h"
#include "autoglm/error.h"
#include "autoglm/integrity.h"
#include "test_support.h"

namespace {
namespace fs = std::filesystem;
using autoglm::download::FetchOptions;
using autoglm::download::cached_path;
using autoglm::download::fetch;

std::string random_bytes(size_t n) {
  std::mt19937 rng(1234);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Serves one body at every path: Range "bytes=N-" (206, or 416 past the end), and switches to
// fail, truncate, 404, ignore Range, require a bearer token or redirect. Records what it saw.
class TestServer {
 public:
  explicit TestServer(std::string body) : body_(std::move(body)) {
    server_.Get(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop runs would be lost, and the destructor would hang in join().
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TestServer() {
    server_.stop();
    thread_.join();
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  int requests() const { return requests_.load(); }
  std::vector<std::string> ranges() const { return seen(ranges_); }
  std::vector<std::string> authorizations() const { return seen(authorizations_); }
  std::vector<std::string> paths() const { return seen(paths_); }

  std::atomic<int> fail_first{0};      // answer the first K requests with 503
  std::atomic<int> truncate_next{0};   // the next K bodies stop half-way and the connection closes
  std::atomic<bool> not_found{false};  // 404 for everything
  std::atomic<bool> ignore_range{false};
  std::string required_token;          // when set, 401 without "Authorization: Bearer <token>"
  std::string redirect_to;             // when set, 302 to this URL

 private:
  std::vector<std::string> seen(const std::vector<std::string>& list) const {
    std::lock_guard lock(mutex_);
    return list;
  }

  void record(const httplib::Request& req) {
    std::lock_guard lock(mutex_);
    ranges_.push_back(req.get_header_value("Range"));
    authorizations_.push_back(req.get_header_value("Authorization"));
    paths_.push_back(req.path);
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    // httplib 0.11 slices the body for a Range request itself (again, after us): we answer ranges
    // here, so its parsed copy goes. The Request object itself is not const.
    const_cast<httplib::Request&>(req).ranges.clear();
    record(req);
    if (++requests_ <= fail_first) {
      res.status = 503;
      res.set_content("busy", "text/plain");
    } else if (not_found) {
      res.status = 404;
      res.set_content("no such file", "text/plain");
    } else if (!required_token.empty() && req.get_header_value("Authorization") != "Bearer " + required_token) {
      res.status = 401;
      res.set_content("unauthorized", "text/plain");
    } else if (!redirect_to.empty()) {
      res.set_redirect(redirect_to);
    } else {
      serve_body(req, res);
    }
  }

  void serve_body(const httplib::Request& req, httplib::Response& res) {
    size_t start = 0;
    const std::string range = req.get_header_value("Range");
    if (!range.empty() && !ignore_range) {
      start = std::stoul(range.substr(range.find('=') + 1));
      if (start >= body_.size()) {
        res.status = 416;
        res.set_header("Content-Range", "bytes */" + std::to_string(body_.size()));
        return;
      }
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(start) + "-" + std::to_string(body_.size() - 1) + "/" +
                                          std::to_string(body_.size()));
    }
    std::string slice = body_.substr(start);
    if (truncate_next <= 0) {  // the client sends one request at a time: no race here
      res.set_content(slice, "application/octet-stream");
      return;
    }
    --truncate_next;
    // Announces the whole length, sends half, then returns false: httplib closes the connection.
    const size_t length = slice.size(), half = slice.size() / 2;
    res.set_content_provider(length, "application/octet-stream",
                             [slice = std::move(slice), half](size_t offset, size_t, httplib::DataSink& sink) {
                               if (offset >= half) return false;
                               sink.write(slice.data() + offset, half - offset);
                               return true;
                             });
  }

  std::string body_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> requests_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> ranges_, authorizations_, paths_;
};

// Sets (or with nullopt unsets) an environment variable, and puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    set(value);
  }
  ~ScopedEnv() { set(old_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const std::optional<std::string>& value) {
    if (value) ::setenv(name_, value->c_str(), 1);
    else ::unsetenv(name_);
  }
  const char* name_;
  std::optional<std::string> old_;
};

// The message of the autoglm::Error that `f` throws ("" and a test failure when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const autoglm::Error& e) {
    EXPECT_EQ(e.code(), autoglm::kExitCheckFailed);
    return e.what();
  }
  ADD_FAILURE() << "expected an autoglm::Error";
  return {};
}

class DownloadTest : public testing::Test {
 protected:
  FetchOptions options() const {
    FetchOptions o;
    o.cache_dir = cache_.path();
    o.initial_backoff_s = 0.01;
    o.progress = false;
    o.connect_timeout_s = 5;
    o.low_speed_timeout_s = 5;
    return o;
  }
  fs::path part_of(const std::string& url) const { return cached_path(url, options()).string() + ".part"; }

  // A user's own Hugging Face settings must not leak into the tests.
  ScopedEnv endpoint_{"HF_ENDPOINT", std::nullopt};
  ScopedEnv token_{"HF_TOKEN", std::nullopt};
  ScopedEnv hub_token_{"HUGGING_FACE_HUB_TOKEN", std::nullopt};
  const std::string body_ = random_bytes(300 * 1024 + 17);
  TestServer server_{body_};
  autoglm::test::TempDir cache_;
};

TEST_F(DownloadTest, DownloadsIntoTheCacheAndLeavesNoPart) {
  const std::string url = server_.url("/files/model.gguf");
  const fs::path path = fetch(url, options());
  EXPECT_EQ(path, cached_path(url, options()));
  EXPECT_EQ(path.parent_path(), cache_.path() / "models");
  EXPECT_EQ(path.filename().string().substr(16), "-model.gguf");
  EXPECT_EQ(autoglm::test::read_file(path), body_);
  EXPECT_FALSE(fs::exists(part_of(url)));
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(DownloadTest, SecondFetchUsesTheCacheWithoutRequests) {
  const std::string url = server_.url("/model.gguf");
  fetch(url, options());
  EXPECT_EQ(fetch(url, options()), cached_path(url, options()));
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(DownloadTest, RetriesAfter503) {
  server_.fail_first = 2;
  const fs::path path = fetch(server_.url("/model.gguf"), options());
  EXPECT_EQ(autoglm::test::read_file(path), body_);
  EXPECT_EQ(server_.requests(), 3);
}

TEST_F(DownloadTest, InterruptedTransferIsResumedWithRange) {
  server_.truncate_next = 1;
  const std::string url = server_.url("/model.gguf");
  const fs::path path = fetch(url, options());
  EXPECT_EQ(autoglm::test::read_file(path), body_);
  const std::vector<std::string> ranges = server_.ranges();
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(body_.size() / 2) + "-");
  EXPECT_FALSE(fs::exists(part_of(url)));
}

TEST_F(DownloadTest, ExistingPartIsResumedByANewFetch) {
  const std::string url = server_.url("/model.gguf");
  autoglm::test::write_file(part_of(url), body_.substr(0, 1000));
  EXPECT_EQ(autoglm::test::read_file(fetch(url, options())), body_);
  EXPECT_EQ(server_.ranges(), std::vector<std::string>{"bytes=1000-"});
}

TEST_F(DownloadTest, ServerIgnoringRangeStartsOver) {
  server_.ignore_range = true;
  const std::string url = server_.url("/model.gguf");
  autoglm::test::write_file(part_of(url), std::string(1000, 'x'));
  EXPECT_EQ(autoglm::test::read_file(fetch(url, options())), body_);
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(DownloadTest, CompletePartAnswered416IsKept) {
  const std::string url = server_.url("/model.gguf");
  autoglm::test::write_file(part_of(url), body_);
  EXPECT_EQ(autoglm::test::read_file(fetch(url, options())), body_);
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(DownloadTest, OverlongPartAnswered416StartsOver) {
  const std::string url = server_.url("/model.gguf");
  autoglm::test::write_file(part_of(url), body_ + "junk");
  EXPECT_EQ(autoglm::test::read_file(fetch(url, options())), body_);
  EXPECT_EQ(server_.ranges(), (std::vector<std::string>{"bytes=" + std::to_string(body_.size() + 4) + "-", ""}));
}

TEST_F(DownloadTest, ExpectedSha256IsChecked) {
  const std::string url = server_.url("/model.gguf");
  const std::string actual = autoglm::integrity::sha256_hex(body_);
  const std::string wrong = autoglm::integrity::sha256_hex("something else");
  FetchOptions o = options();
  o.expected_sha256 = wrong;
  const std::string message = error_of([&] { fetch(url, o); });
  EXPECT_NE(message.find(wrong), std::string::npos) << message;
  EXPECT_NE(message.find(actual), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(cached_path(url, o)));
  EXPECT_FALSE(fs::exists(part_of(url)));

  o.expected_sha256 = actual;
  for (char& c : o.expected_sha256) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(autoglm::test::read_file(fetch(url, o)), body_);
}

TEST_F(DownloadTest, CachedFileWithWrongHashIsDownloadedAgain) {
  const std::string url = server_.url("/model.gguf");
  autoglm::test::write_file(cached_path(url, options()), "stale");
  FetchOptions o = options();
  o.expected_sha256 = autoglm::integrity::sha256_hex(body_);
  EXPECT_EQ(autoglm::test::read_file(fetch(url, o)), body_);
  EXPECT_EQ(server_.requests(), 1);
  EXPECT_EQ(autoglm::test::read_file(fetch(url, o)), body_);  // now a cache hit
  EXPECT_EQ(server_.requests(), 1);
}

TEST_F(DownloadTest, MalformedExpectedHashIsRejected) {
  FetchOptions o = options();
  o.expected_sha256 = "abc";
  EXPECT_NE(error_of([&] { fetch(server_.url("/model.gguf"), o); }).find("64 hex"), std::string::npos);
  EXPECT_EQ(server_.requests(), 0);
}

TEST_F(DownloadTest, NotFoundIsNotRetried) {
  server_.not_found = true;
  const std::string url = server_.url("/missing.gguf");
  const std::string message = error_of([&] { fetch(url, options()); });
  EXPECT_NE(message.find("404"), std::string::npos) << message;
  EXPECT_NE(message.find(url), std::string::npos) << message;
  EXPECT_NE(message.find("check the URL"), std::string::npos) << message;
  EXPECT_EQ(server_.requests(), 1);
  EXPECT_FALSE(fs::exists(part_of(url)));
}

TEST_F(DownloadTest, MessagesHidePasswordsInUrls) {
  server_.not_found = true;
  const std::string url = "http://user:s3cret@127.0.0.1:" + std::to_string(server_.port()) + "/missing.gguf";
  const std::string message = error_of([&] { fetch(url, options()); });
  EXPECT_NE(message.find("404"), std::string::npos) << message;
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << message;
}

TEST_F(DownloadTest, GivesUpAfterMaxAttempts) {
  server_.fail_first = 1000;
  FetchOptions o = options();
  o.max_attempts = 3;
  const std::string message = error_of([&] { fetch(server_.url("/model.gguf"), o); });
  EXPECT_NE(message.find("3 attempts"), std::string::npos) << message;
  EXPECT_NE(message.find("503"), std::string::npos) << message;
  EXPECT_EQ(server_.requests(), 3);
}

TEST_F(DownloadTest, ConnectionRefusedIsRetriedThenReported) {
  int port = 0;
  {
    TestServer gone(body_);  // a port that was just free; nothing listens there once it stops
    port = gone.port();
  }
  FetchOptions o = options();
  o.max_attempts = 2;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/model.gguf";
  const std::string message = error_of([&] { fetch(url, o); });
  EXPECT_NE(message.find("2 attempts"), std::string::npos) << message;
  EXPECT_NE(message.find(url), std::string::npos) << message;
}

TEST_F(DownloadTest, HuggingFaceEndpointAndToken) {
  ScopedEnv endpoint("HF_ENDPOINT", "http://127.0.0.1:" + std::to_string(server_.port()) + "/");
  ScopedEnv token("HF_TOKEN", "hf_secret\n");
  server_.required_token = "hf_secret";
  const std::string url = "https://huggingface.co/org/repo/resolve/main/m.gguf";
  const fs::path path = fetch(url, options());
  EXPECT_EQ(autoglm::test::read_file(path), body_);
  EXPECT_EQ(path.filename().string().substr(16), "-m.gguf");
  // The cache key is the URL actually fetched.
  const std::string rewritten = server_.url("/org/repo/resolve/main/m.gguf");
  EXPECT_EQ(path.filename().string().substr(0, 16), autoglm::integrity::sha256_hex(rewritten).substr(0, 16));
  EXPECT_EQ(server_.paths(), std::vector<std::string>{"/org/repo/resolve/main/m.gguf"});
  EXPECT_EQ(server_.authorizations(), std::vector<std::string>{"Bearer hf_secret"});

  // Another origin (same host, other port) never sees the token.
  TestServer other(body_);
  EXPECT_EQ(autoglm::test::read_file(fetch(other.url("/m.gguf"), options())), body_);
  EXPECT_EQ(other.authorizations(), std::vector<std::string>{""});
}

TEST_F(DownloadTest, TokenIsNotForwardedOnRedirectToAnotherOrigin) {
  TestServer cdn(body_);
  ScopedEnv endpoint("HF_ENDPOINT", "http://127.0.0.1:" + std::to_string(server_.port()));
  ScopedEnv token("HUGGING_FACE_HUB_TOKEN", "hf_secret");
  server_.redirect_to = cdn.url("/blob");
  EXPECT_EQ(autoglm::test::read_file(fetch("https://huggingface.co/org/repo/resolve/main/m.gguf", options())), body_);
  EXPECT_EQ(server_.authorizations(), std::vector<std::string>{"Bearer hf_secret"});
  EXPECT_EQ(cdn.authorizations(), std::vector<std::string>{""});
}

TEST_F(DownloadTest, HuggingFace401SuggestsHfToken) {
  ScopedEnv endpoint("HF_ENDPOINT", "http://127.0.0.1:" + std::to_string(server_.port()));
  server_.required_token = "hf_secret";
  const std::string message = error_of([&] { fetch("https://huggingface.co/org/gated/resolve/main/m.gguf", options()); });
  EXPECT_NE(message.find("401"), std::string::npos) << message;
  EXPECT_NE(message.find("set HF_TOKEN"), std::string::npos) << message;
  EXPECT_EQ(server_.requests(), 1);

  ScopedEnv token("HF_TOKEN", "hf_wrong");
  const std::string refused = error_of([&] { fetch("https://huggingface.co/org/gated/resolve/main/m.gguf", options()); });
  EXPECT_NE(refused.find("refused"), std::string::npos) << refused;
  EXPECT_EQ(refused.find("hf_wrong"), std::string::npos) << refused;  // the token is never printed
}

TEST_F(DownloadTest, RejectsNonHttpUrlsAndUrlsWithoutFileName) {
  for (const std::string url : {"ftp://example.com/model.gguf", "file:///tmp/model.gguf", "/tmp/model.gguf",
                                "model.gguf", "https://huggingface.co/", "http://127.0.0.1:1/dir/", "https://"}) {
    EXPECT_FALSE(error_of([&] { fetch(url, options()); }).empty()) << url;
    EXPECT_FALSE(error_of([&] { cached_path(url, options()); }).empty()) << url;
  }
  EXPECT_NE(error_of([&] { fetch("ftp://example.com/model.gguf", options()); }).find("http"), std::string::npos);
  EXPECT_NE(error_of([&] { fetch("http://example.com/dir/", options()); }).find("file name"), std::string::npos);
}

TEST_F(DownloadTest, DefaultCacheDirFollowsXdgThenHome) {
  {
    ScopedEnv xdg("XDG_CACHE_HOME", "/x/cache");
    EXPECT_EQ(autoglm::download::default_cache_dir(), fs::path("/x/cache/autoglm-deploy"));
  }
  ScopedEnv xdg("XDG_CACHE_HOME", std::nullopt);
  ScopedEnv home("HOME", "/home/someone");
  EXPECT_EQ(autoglm::download::default_cache_dir(), fs::path("/home/someone/.cache/autoglm-deploy"));
}

}  // namespace
