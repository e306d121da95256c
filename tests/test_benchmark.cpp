// autoglm::benchmark: the statistics, SSE parsing, the local bench on a tiny random model, the
// HTTP load generator against an in-process fake server, and `bench --url` against a real `serve`.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fmt/format.h>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "autoglm/benchmark.h"
#include "autoglm/error.h"
#include "autoglm/random_model.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
namespace b = autoglm::benchmark;
using autoglm::test::TempDir;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- statistics ----

TEST(BenchmarkStats, MeanAndSampleStddev) {
  const std::vector<double> v{2, 4, 4, 4, 5, 5, 7, 9};
  EXPECT_DOUBLE_EQ(b::mean(v), 5.0);
  EXPECT_NEAR(b::stddev(v), std::sqrt(32.0 / 7.0), 1e-12);  // sum of squares 32, n - 1 = 7
  EXPECT_DOUBLE_EQ(b::stddev(std::vector<double>{3.5}), 0.0);
  EXPECT_DOUBLE_EQ(b::mean(std::vector<double>{-1, 1}), 0.0);
}

TEST(BenchmarkStats, PercentilesInterpolateBetweenClosestRanks) {
  const std::vector<double> even{4, 1, 3, 2};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(b::percentile(even, 50), 2.5);  // mean of the two middle values
  EXPECT_DOUBLE_EQ(b::percentile(even, 0), 1.0);
  EXPECT_DOUBLE_EQ(b::percentile(even, 100), 4.0);
  std::vector<double> ten;
  for (int i = 1; i <= 10; ++i) ten.push_back(i);
  EXPECT_NEAR(b::percentile(ten, 90), 9.1, 1e-12);   // rank 0.9 * 9 = 8.1
  EXPECT_NEAR(b::percentile(ten, 99), 9.91, 1e-12);  // rank 8.91
  EXPECT_DOUBLE_EQ(b::percentile(ten, 50), 5.5);
  EXPECT_DOUBLE_EQ(b::percentile(std::vector<double>{7}, 99), 7.0);
  EXPECT_DOUBLE_EQ(b::percentile(std::vector<double>{7}, 0), 7.0);
  const std::vector<double> odd{5, 1, 3};
  EXPECT_DOUBLE_EQ(b::percentile(odd, 50), 3.0);
}

TEST(BenchmarkStats, EmptyInputIsAnError) {
  const std::vector<double> none;
  EXPECT_THROW(b::mean(none), autoglm::Error);
  EXPECT_THROW(b::stddev(none), autoglm::Error);
  EXPECT_THROW(b::percentile(none, 50), autoglm::Error);
  EXPECT_THROW(b::percentile(std::vector<double>{1}, 101), autoglm::Error);
  EXPECT_THROW(b::percentile(std::vector<double>{1}, -1), autoglm::Error);
  EXPECT_FALSE(b::describe(none).has_value());
  const auto d = b::describe(std::vector<double>{1, 2, 3, 4});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->count, 4u);
  EXPECT_DOUBLE_EQ(d->mean, 2.5);
  EXPECT_DOUBLE_EQ(d->p50, 2.5);
  EXPECT_NEAR(d->p99, 3.97, 1e-12);
}

// ---- server-sent events ----

const std::string kStream =
    ": a comment\r\n"
    "data: {\"a\":1}\r\n\r\n"
    "event: message\n"
    "data: first line\n"
    "data:second line\n"
    "\n"
    "id: 7\n\n"  // no data: no event
    "data: {\"choices\":[{\"delta\":{\"content\":\"héllo\"}}]}\r\r"
    "data: [DONE]\n\n";
const std::vector<std::string> kEvents{"{\"a\":1}", "first line\nsecond line",
                                       "{\"choices\":[{\"delta\":{\"content\":\"héllo\"}}]}", "[DONE]"};

std::vector<std::string> parse_in_pieces(const std::vector<size_t>& cuts) {
  b::SseParser parser;
  std::vector<std::string> events;
  size_t at = 0;
  for (size_t cut : cuts) {
    parser.feed(std::string_view(kStream).substr(at, cut - at), [&](const std::string& d) { events.push_back(d); });
    at = cut;
  }
  parser.feed(std::string_view(kStream).substr(at), [&](const std::string& d) { events.push_back(d); });
  return events;
}

TEST(BenchmarkSse, EventsWhateverTheChunking) {
  EXPECT_EQ(parse_in_pieces({}), kEvents);
  for (size_t cut = 0; cut <= kStream.size(); ++cut) EXPECT_EQ(parse_in_pieces({cut}), kEvents) << "split at " << cut;
  std::vector<size_t> every;  // one byte at a time
  for (size_t i = 1; i < kStream.size(); ++i) every.push_back(i);
  EXPECT_EQ(parse_in_pieces(every), kEvents);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<size_t> cuts;
    for (size_t at = 0;;) {
      at += std::uniform_int_distribution<size_t>(1, 9)(rng);
      if (at >= kStream.size()) break;
      cuts.push_back(at);
    }
    EXPECT_EQ(parse_in_pieces(cuts), kEvents) << "trial " << trial;
  }
}

TEST(BenchmarkSse, AnEndlessLineStopsTheParser) {
  b::SseParser parser;
  std::vector<std::string> events;
  const auto collect = [&](const std::string& d) { events.push_back(d); };
  parser.feed("data: first\n\n", collect);
  const std::string piece(1 << 20, 'x');  // a server that never ends its line
  parser.feed("data: ", collect);
  for (size_t sent = 0; sent <= b::SseParser::kMaxEventBytes; sent += piece.size()) parser.feed(piece, collect);
  EXPECT_TRUE(parser.overflowed());
  parser.feed("\n\ndata: later\n\n", collect);  // ignored: the stream is broken
  EXPECT_EQ(events, std::vector<std::string>{"first"});
}

TEST(BenchmarkSse, EndpointAndPrompt) {
  EXPECT_EQ(b::chat_endpoint("http://127.0.0.1:8080"), "http://127.0.0.1:8080/v1/chat/completions");
  EXPECT_EQ(b::chat_endpoint("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/v1/chat/completions");
  EXPECT_EQ(b::chat_endpoint("https://h/v1/"), "https://h/v1/chat/completions");
  EXPECT_EQ(b::chat_endpoint("http://h:1/v1/chat/completions"), "http://h:1/v1/chat/completions");
  EXPECT_THROW(b::chat_endpoint("127.0.0.1:8080"), autoglm::Error);
  const std::string p = b::load_prompt(3, 10);
  EXPECT_EQ(std::count(p.begin(), p.end(), ' '), 9);  // ten words
  EXPECT_NE(b::load_prompt(4, 10), p);                // each request its own text
}

// ---- local throughput ----

TEST(BenchmarkLocal, GenerationIsComparedWithTheReadBandwidthAroundEachRepetition) {
  b::Measurement r;
  r.samples = {10, 20};  // tokens/s of two repetitions, 1 GB per token
  const std::vector<double> before{10, 30}, after{30, 10};  // each repetition's reference is 20
  b::compare_with_reads(r, 1.0, before, after);
  ASSERT_TRUE(r.reference_gbps && r.bandwidth_share);
  EXPECT_DOUBLE_EQ(*r.reference_gbps, 20);
  EXPECT_DOUBLE_EQ(*r.bandwidth_share, (10.0 / 20 + 20.0 / 20) / 2) << "the mean of each repetition's own share";

  b::Measurement missing;
  missing.samples = {10, 20};
  b::compare_with_reads(missing, 1.0, std::vector<double>{10, 30}, std::vector<double>{30});
  EXPECT_FALSE(missing.reference_gbps || missing.bandwidth_share) << "a reading on each side of every repetition";
  b::compare_with_reads(missing, 1.0, std::vector<double>{0, 0}, std::vector<double>{0, 10});
  EXPECT_FALSE(missing.reference_gbps || missing.bandwidth_share) << "a zero reference";
}

TEST(BenchmarkLocal, TinyModel) {
  TempDir tmp;
  autoglm::model::RandomModelSpec spec;
  spec.arch = "glm4";
  spec.weight_type = autoglm::kernels::DType::q8_0;
  spec.threads = 2;
  const fs::path path = tmp / "tiny-q8_0.gguf";
  autoglm::model::write_random_model(spec, path);
  const auto m = autoglm::model::Model::load(path);

  EXPECT_EQ(b::weight_bytes_per_step(*m, 2) - b::weight_bytes_per_step(*m, 1), m->token_embd.row_bytes());
  EXPECT_GT(b::model_bytes(*m), b::weight_bytes_per_step(*m, 1));

  b::LocalOptions o;
  o.prompt_tokens = 16;
  o.gen_tokens = 8;
  o.batches = {1, 2};
  o.tg_context = 5;
  o.repetitions = 2;
  o.threads = 2;
  o.memory_bytes = size_t{16} << 20;  // enough to exercise the measurement
  const b::LocalReport r = b::run_local(*m, "tiny-q8_0.gguf", o);
  ASSERT_EQ(r.measurements.size(), 4u);
  const std::vector<std::pair<std::string, size_t>> expected{{"pp16", 1}, {"pp16", 2}, {"tg8", 1}, {"tg8", 2}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const b::Measurement& x = r.measurements[i];
    EXPECT_EQ(x.test, expected[i].first);
    EXPECT_EQ(x.batch, expected[i].second);
    EXPECT_EQ(x.samples.size(), 2u);
    EXPECT_GT(x.tokens_per_second, 0);
    EXPECT_GE(x.stddev, 0);
    EXPECT_EQ(x.gbps.has_value(), x.test == "tg8");
    if (x.gbps) {
      EXPECT_GT(*x.gbps, 0);
      ASSERT_TRUE(x.bandwidth_share.has_value());
      EXPECT_GT(*x.bandwidth_share, 0);
      ASSERT_TRUE(x.reference_gbps.has_value()) << "the read bandwidth is measured around each tg repetition";
      EXPECT_GT(*x.reference_gbps, 0);
    } else {
      EXPECT_FALSE(x.reference_gbps.has_value());
    }
  }
  ASSERT_TRUE(r.memory.has_value());
  EXPECT_GT(r.memory->gbps, 0);
  EXPECT_EQ(r.threads, 2);
  EXPECT_EQ(r.type, "Q8_0");

  const json j = json::parse(b::render_local(r, b::Format::json));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 4u);
  for (const json& row : j) {
    for (const char* key : {"test", "batch", "tokens_per_second", "stddev", "gbps", "model", "type", "backend", "threads"})
      EXPECT_TRUE(row.contains(key)) << key << " missing in " << row.dump();
    EXPECT_EQ(row["model"], "tiny-q8_0.gguf");
    EXPECT_EQ(row["backend"], "cpu");
    EXPECT_EQ(row["repacked"], autoglm::kernels::preferred_layout(autoglm::kernels::DType::q8_0, 4096) != autoglm::kernels::Layout::rows)
        << "the model was loaded with the default, repack where the kernels have a layout of their own";
    EXPECT_EQ(row["gbps"].is_null(), row["test"] == "pp16");
    EXPECT_EQ(row["reference_gbps"].is_null(), row["test"] == "pp16");
    EXPECT_EQ(row["tg_context"], 5);
    // batch scaling: each test's tokens/s over its own batch-1 figure
    const double one = row["test"] == "pp16" ? r.measurements[0].tokens_per_second : r.measurements[2].tokens_per_second;
    EXPECT_DOUBLE_EQ(row["times_batch_1"].get<double>(), row["tokens_per_second"].get<double>() / one);
  }
  EXPECT_NE(b::render_local(r, b::Format::table).find("tg8"), std::string::npos);
  EXPECT_NE(b::render_local(r, b::Format::markdown).find("| tiny-q8_0.gguf |"), std::string::npos);

  for (const size_t context : {size_t{0}, size_t{spec.context_length}}) {  // none, or no room left for tg
    b::LocalOptions bad = o;
    bad.tg_context = context;
    try {
      b::run_local(*m, "tiny", bad);
      ADD_FAILURE() << "no error for --tg-context " << context;
    } catch (const autoglm::Error& e) {
      EXPECT_EQ(e.code(), autoglm::kExitUsage);
    }
  }
  // -p 0 / -n 0 skip that test, as in llama-bench; both 0 is a usage error
  b::LocalOptions only = o;
  only.memory_bytes = 0;
  only.repetitions = 1;
  only.prompt_tokens = 0;
  const b::LocalReport tg_only = b::run_local(*m, "tiny", only);
  ASSERT_EQ(tg_only.measurements.size(), 2u);
  for (const b::Measurement& x : tg_only.measurements) EXPECT_EQ(x.test, "tg8");
  only.prompt_tokens = 16;
  only.gen_tokens = 0;
  const b::LocalReport pp_only = b::run_local(*m, "tiny", only);
  ASSERT_EQ(pp_only.measurements.size(), 2u);
  for (const b::Measurement& x : pp_only.measurements) EXPECT_EQ(x.test, "pp16");
  only.prompt_tokens = 0;
  try {
    b::run_local(*m, "tiny", only);
    ADD_FAILURE() << "no error for -p 0 -n 0";
  } catch (const autoglm::Error& e) {
    EXPECT_EQ(e.code(), autoglm::kExitUsage);
    EXPECT_NE(std::string(e.what()).find("nothing to measure"), std::string::npos) << e.what();
  }
  o.prompt_tokens = spec.context_length + 1;  // beyond the model's context: a usage error
  try {
    b::run_local(*m, "tiny", o);
    ADD_FAILURE() << "no error for -p beyond the context";
  } catch (const autoglm::Error& e) {
    EXPECT_EQ(e.code(), autoglm::kExitUsage);
  }
}

// ---- HTTP load against a fake server ----

// Streams `chunks` content deltas `gap` apart for each chat completion (answers 500 to every
// `fail_every`-th request when set), counting what it receives.
class FakeServer {
 public:
  FakeServer(int chunks, std::chrono::milliseconds gap, int fail_every = 0)
      : chunks_(chunks), gap_(gap), fail_every_(fail_every) {
    server_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"fake","object":"model"}]})", "application/json");
    });
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { chat(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~FakeServer() {
    server_.stop();
    thread_.join();
  }
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  int received() const { return received_.load(); }
  int max_in_flight() const { return max_in_flight_.load(); }
  std::set<std::string> prompts() const {
    std::lock_guard lock(mutex_);
    return prompts_;
  }

 private:
  struct Stream {
    FakeServer* server;
    int sent = 0;
  };

  void chat(const httplib::Request& req, httplib::Response& res) {
    const int n = received_.fetch_add(1);
    const json body = json::parse(req.body);
    EXPECT_EQ(body["stream"], true);
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
    {
      std::lock_guard lock(mutex_);
      prompts_.insert(body["messages"][0]["content"].get<std::string>());
    }
    if (fail_every_ > 0 && n % fail_every_ == fail_every_ - 1) {
      res.status = 500;
      res.set_content(R"({"error":{"message":"boom","type":"server_error"}})", "application/json");
      return;
    }
    const int now = ++in_flight_;
    for (int seen = max_in_flight_.load(); now > seen && !max_in_flight_.compare_exchange_weak(seen, now);) {
    }
    auto st = std::make_shared<Stream>(Stream{this});
    res.set_chunked_content_provider("text/event-stream", [st](size_t, httplib::DataSink& sink) {
      return st->server->next_chunk(*st, sink);
    }, [this](bool) { --in_flight_; });
  }

  bool next_chunk(Stream& st, httplib::DataSink& sink) {
    std::string out;
    if (st.sent == 0) out = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n";
    std::this_thread::sleep_for(gap_);
    out += "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    ++st.sent;
    const bool last = st.sent == chunks_;
    if (last)
      out += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],\"usage\":null}\n\n"
             "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":" + std::to_string(chunks_) +
             ",\"total_tokens\":" + std::to_string(12 + chunks_) +
             ",\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
             "data: [DONE]\n\n";
    if (!sink.write(out.data(), out.size())) return false;  // the client went away
    if (last) sink.done();
    return true;
  }

  int chunks_;
  std::chrono::milliseconds gap_;
  int fail_every_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> received_{0}, in_flight_{0}, max_in_flight_{0};
  mutable std::mutex mutex_;
  std::set<std::string> prompts_;
};

TEST(BenchmarkHttp, RequestCountIsNeverExceededAndErrorsAreCountedByStatus) {
  FakeServer server(5, 2ms, /*fail_every=*/3);  // requests 3, 6 (the 3rd and 6th) get a 500
  b::HttpOptions o;
  o.url = server.url();
  o.requests = 7;
  o.prompt_tokens = 12;
  o.max_tokens = 5;
  const b::LoadLevel l = b::run_load_level(o, 3);
  EXPECT_EQ(server.received(), 7);
  EXPECT_LE(server.max_in_flight(), 3);
  EXPECT_EQ(l.launched, 7u);
  EXPECT_EQ(l.succeeded, 5u);
  EXPECT_EQ(l.failed, 2u);
  EXPECT_EQ(l.aborted, 0u);
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors.at("500"), 2u);
  EXPECT_NEAR(l.success_rate, 5.0 / 7.0, 1e-12);
  EXPECT_EQ(l.generated_tokens, 25u);  // usage.completion_tokens of the five
  ASSERT_TRUE(l.latency_s && l.ttft_s && l.itl_s);
  EXPECT_EQ(l.latency_s->count, 5u);
  EXPECT_GT(l.ttft_s->p50, 0.0);
  EXPECT_LE(l.ttft_s->p99, l.latency_s->p99);
  EXPECT_GT(l.itl_s->mean, 0.0);
  ASSERT_TRUE(l.prompt_tokens_mean.has_value());
  EXPECT_DOUBLE_EQ(*l.prompt_tokens_mean, 12.0);
  ASSERT_TRUE(l.cached_prompt_tokens_mean.has_value());
  EXPECT_DOUBLE_EQ(*l.cached_prompt_tokens_mean, 4.0);
  EXPECT_GT(l.tokens_per_second, 0.0);
  EXPECT_GT(l.stream_tokens_per_second, 0.0);
}

TEST(BenchmarkHttp, DurationModeStopsInTime) {
  FakeServer server(100, 20ms);  // 2 s per request: every request is still running at the deadline
  b::HttpOptions o;
  o.url = server.url();
  o.duration = 300ms;
  const auto t0 = Clock::now();
  const b::LoadLevel l = b::run_load_level(o, 2);
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took, 0.8);
  EXPECT_LT(l.wall_s, 0.45);
  EXPECT_GE(l.wall_s, 0.3);
  EXPECT_EQ(l.launched, 2u);
  EXPECT_EQ(l.aborted, 2u);
  EXPECT_EQ(l.succeeded + l.failed, 0u);
  EXPECT_EQ(server.received(), 2);
}

TEST(BenchmarkHttp, ReportAtSeveralConcurrencies) {
  FakeServer server(3, 1ms);
  b::HttpOptions o;
  o.url = server.url() + "/v1";
  o.concurrency = {1, 4};
  o.requests = 4;
  const b::HttpReport r = b::run_http_load(o);
  EXPECT_EQ(r.model, "fake");
  EXPECT_EQ(server.received(), 8);
  EXPECT_EQ(server.prompts().size(), 8u);  // no prompt repeats, not even across runs (prefix caches)
  ASSERT_EQ(r.levels.size(), 2u);
  const json j = json::parse(b::render_http(r, b::Format::json));
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["concurrency"], 4);
  EXPECT_EQ(j[1]["succeeded"], 4);
  for (const char* key : {"requests_per_second", "success_rate", "latency_seconds", "ttft_seconds", "itl_seconds",
                          "tokens_per_second", "errors"})
    EXPECT_TRUE(j[0].contains(key)) << key;
  EXPECT_TRUE(j[0]["latency_seconds"].contains("p95"));
  // a server without autoglm's /metrics counters: no engine rate, and no made-up one
  EXPECT_TRUE(j[0]["engine_decode_steps_per_second"].is_null()) << j[0];
  EXPECT_TRUE(j[0]["stream_over_engine"].is_null()) << j[0];
  EXPECT_NE(b::render_http(r, b::Format::table).find("req/s"), std::string::npos);
  EXPECT_NE(b::render_http(r, b::Format::markdown).find("| concurrency |"), std::string::npos);
}

TEST(BenchmarkHttp, PrometheusValues) {
  const std::string text =
      "# HELP autoglm_decode_steps_total Engine steps.\n"
      "# TYPE autoglm_decode_steps_total counter\n"
      "autoglm_decode_steps_total 1234\n"
      "autoglm_decode_steps_total_more 5\n"
      "autoglm_requests_total{endpoint=\"/health\",status=\"200\"} 3\n"
      "autoglm_decode_step_seconds_total 12.5e-1\n"
      "autoglm_bad nan\n"
      "autoglm_word x\n"
      "autoglm_last 7";  // no final newline
  EXPECT_EQ(b::prometheus_value(text, "autoglm_decode_steps_total"), 1234.0);
  EXPECT_EQ(b::prometheus_value(text, "autoglm_decode_step_seconds_total"), 1.25);
  EXPECT_EQ(b::prometheus_value(text, "autoglm_last"), 7.0);
  EXPECT_FALSE(b::prometheus_value(text, "autoglm_decode_steps"));  // a prefix of a name is not the name
  EXPECT_FALSE(b::prometheus_value(text, "autoglm_requests_total"));  // labelled samples are not read
  EXPECT_FALSE(b::prometheus_value(text, "autoglm_bad"));
  EXPECT_FALSE(b::prometheus_value(text, "autoglm_word"));
  EXPECT_FALSE(b::prometheus_value("", "x"));
}

TEST(BenchmarkHttp, NoServerIsAClearError) {
  b::HttpOptions o;
  o.url = fmt::format("http://127.0.0.1:{}", autoglm::test::free_port());
  o.requests = 1;
  try {
    b::run_http_load(o);
    ADD_FAILURE() << "no error without a server";
  } catch (const autoglm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is the server running"), std::string::npos) << e.what();
  }
}

// ---- the real binary against a real server ----

TEST(BenchmarkCli, BenchUrlAgainstServe) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path model = autoglm::test::fixtures_dir() / "models" / "tiny-glm4-Q8_0.gguf";
  TempDir tmp;
  std::unique_ptr<autoglm::test::ServerProcess> server;
  int port = 0;
  for (int attempt = 0; attempt < 3 && !server; ++attempt) {  // the free port may be taken meanwhile
    port = autoglm::test::free_port();
    autoglm::test::write_file(tmp / "service.yaml",
                              fmt::format("service:\n  name: tiny\n  host: 127.0.0.1\n  port: {}\n"
                                          "model:\n  path: {}\n"
                                          "runtime:\n  backend: cpu\n  threads: 2\n  kv_cache_budget: 64MiB\n",
                                          port, model.string()));
    auto s = std::make_unique<autoglm::test::ServerProcess>(
        std::vector<std::string>{"serve", "--config", (tmp / "service.yaml").string()}, tmp / "serve.log");
    if (s->wait_ready(port, 120s)) server = std::move(s);
  }
  ASSERT_TRUE(server) << autoglm::test::read_file(tmp / "serve.log");

  const auto r = autoglm::test::run_binary(
      fmt::format("bench --url http://127.0.0.1:{} --requests 6 --concurrency 1,2 --prompt-tokens 16 --max-tokens 16 --json", port));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_array() && j.size() == 2) << r.out;
  for (const json& level : j) {
    EXPECT_EQ(level["model"], "tiny");
    EXPECT_EQ(level["requests"], 6);
    EXPECT_EQ(level["succeeded"], 6) << r.out;
    EXPECT_EQ(level["failed"], 0);
    EXPECT_GT(level["generated_tokens"].get<int>(), 0);
  }
  // the server's own decode rate over each run, read from its /metrics (with this tiny model the
  // engine outpaces the HTTP path, deltas arrive merged, and the ratio says nothing: only present)
  const json& one = j[0];
  ASSERT_TRUE(one["engine_decode_steps_per_second"].is_number()) << one;
  EXPECT_GT(one["engine_decode_steps_per_second"].get<double>(), 0) << one;
  EXPECT_DOUBLE_EQ(one["engine_decode_tokens_per_second"].get<double>(), one["engine_decode_steps_per_second"].get<double>())
      << "one sequence: one token per decode step";
  ASSERT_TRUE(one["stream_over_engine"].is_number()) << one;
  EXPECT_DOUBLE_EQ(one["stream_over_engine"].get<double>(),
                   one["stream_tokens_per_second"].get<double>() / one["engine_decode_steps_per_second"].get<double>());

  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(30s), 0) << server->output();
}

// bench --image on the tiny GLM-4.1V: every stage timed, the image's tokens as the processor cuts it.
TEST(BenchmarkCli, BenchImageTimesEachStageAndTheAgentStep) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path glm4v = autoglm::test::fixtures_dir() / "glm4v";
  const auto r = autoglm::test::run_binary(fmt::format("bench --model {} --image {} -r 2 --image-text-tokens 100 --json",
                                                       (glm4v / "tiny-glm4v-hf").string(),
                                                       (glm4v / "images" / "screen_tall.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["width"], 360);
  EXPECT_EQ(j["height"], 780);
  EXPECT_EQ(j["patches"], 336);
  EXPECT_EQ(j["image_tokens"], 84);
  EXPECT_EQ(j["prompt_tokens"], 100 + 84 + 16);
  for (const char* stage : {"decode_ms", "preprocess_ms", "encode_ms", "ttft_ms"}) {
    ASSERT_TRUE(j[stage].is_array() && j[stage].size() == 2) << stage << ": " << r.out;
    for (const json& ms : j[stage]) EXPECT_GT(ms.get<double>(), 0.0) << stage;
  }
  EXPECT_GT(j["gflop"].get<double>(), 0.0);
  // a text model has no tower to time
  const auto text = autoglm::test::run_binary(fmt::format(
      "bench --model {} --image {}", (autoglm::test::fixtures_dir() / "models" / "tiny-glm4-Q8_0.gguf").string(),
      (glm4v / "images" / "screen_tall.png").string()));
  EXPECT_EQ(text.exit_code, 2) << text.err;
  EXPECT_NE(text.err.find("no vision tower"), std::string::npos) << text.err;
}

// bench --agent-steps on the tiny GLM-4.1V: a real `serve` started for it, three agent steps replayed.
TEST(BenchmarkCli, AgentStepsReportEachStepAndReuseThePrefix) {
  AUTOGLM_REQUIRE_FIXTURES();
  const fs::path images = autoglm::test::fixtures_dir() / "glm4v" / "images";
  const auto r = autoglm::test::run_binary(fmt::format(
      "bench --model {} --agent-steps 3 --image {} --image {} --image {} --threads 2 --json",
      (autoglm::test::fixtures_dir() / "glm4v" / "tiny-glm4v-hf").string(), (images / "screen_tall.png").string(),
      (images / "odd_rgb.jpg").string(), (images / "alpha.png").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object() && j["steps"].is_array() && j["steps"].size() == 3) << r.out;
  size_t previous = 0;
  for (const json& step : j["steps"]) {
    EXPECT_EQ(step["ok"], true) << step;
    EXPECT_GT(step["prompt_tokens"].get<size_t>(), previous) << "the conversation grows: " << r.out;
    EXPECT_GT(step["ttft_seconds"].get<double>(), 0.0) << step;
    EXPECT_GE(step["encode_seconds"].get<double>(), 0.0) << "autoglm-deploy's /metrics has the tower's time: " << step;
    EXPECT_GT(step["completion_tokens"].get<size_t>(), 0u) << step;
    previous = step["prompt_tokens"].get<size_t>();
  }
  EXPECT_EQ(j["steps"][0]["cached_tokens"], 0) << r.out;
  // each later step reuses the system prompt and the earlier turns from the prefix cache
  EXPECT_GT(j["steps"][1]["cached_tokens"].get<size_t>(), 600u) << r.out;
  EXPECT_GT(j["steps"][2]["cached_tokens"].get<size_t>(), j["steps"][1]["cached_tokens"].get<size_t>()) << r.out;
  EXPECT_EQ(autoglm::test::run_binary("bench --url http://127.0.0.1:1 --agent-steps 2").exit_code, 2)
      << "--agent-steps needs screenshots";
}

TEST(BenchmarkCli, UsageErrors) {
  EXPECT_EQ(autoglm::test::run_binary("bench").exit_code, 2);  // neither --model nor --url
  EXPECT_EQ(autoglm::test::run_binary("bench --model a.gguf --url http://127.0.0.1:1").exit_code, 2);
  EXPECT_EQ(autoglm::test::run_binary("bench --url http://127.0.0.1:1 -b 4").exit_code, 2);
  EXPECT_EQ(autoglm::test::run_binary("bench --url http://127.0.0.1:1 --duration 5").exit_code, 2);  // no unit
  EXPECT_EQ(autoglm::test::run_binary("bench --model a.gguf --concurrency 8").exit_code, 2);
  EXPECT_EQ(autoglm::test::run_binary("bench --model a.gguf --json --markdown").exit_code, 2);
}

}  // namespace
