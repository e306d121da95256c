#pragma once
// autoglm-deploy bench: the engine's throughput on this machine (prompt processing and generation
// at several batch sizes, and the weight-read bandwidth generation achieves), a load generator for
// a running OpenAI-compatible server, the statistics both report, and their table / JSON /
// Markdown renderings. Does not depend on the server module: the load generator speaks HTTP.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "autoglm/kernels.h"
#include "autoglm/image.h"
#include "autoglm/model.h"
#include "autoglm/vision.h"

namespace autoglm::benchmark {

// ---- statistics (stats.cpp) ----

// Arithmetic mean. Throws Error for an empty input.
double mean(std::span<const double> values);
// Sample standard deviation (divides by n - 1); 0 for a single value. Throws Error for an empty input.
double stddev(std::span<const double> values);
// The p-th percentile, p in [0, 100], by linear interpolation between closest ranks (NumPy's
// default, Excel's PERCENTILE.INC): with the values sorted as x[0] <= ... <= x[n-1], the rank is
// r = p / 100 * (n - 1) and the result x[floor(r)] + (r - floor(r)) * (x[floor(r) + 1] - x[floor(r)]).
// So p50 of an even count is the mean of the two middle values, p0 the minimum, p100 the maximum,
// and every percentile of one value is that value. Throws Error for an empty input or p outside [0, 100].
double percentile(std::span<const double> values, double p);

// count, mean and the percentiles a load report quotes, of a non-empty sample.
struct Distribution {
  size_t count = 0;
  double mean = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0;
};
// nullopt for an empty sample (nothing to describe, e.g. no request succeeded).
std::optional<Distribution> describe(std::span<const double> values);

// ---- memory read bandwidth (memory.cpp) ----

// The streamed sum both benchmark programs and `bench` measure the read ceiling with; it prefetches
// 4 KiB ahead as the kernels do (without that a plain sum reads slower than a prefetching matvec).
uint64_t sum_words(const uint64_t* p, size_t n);

struct MemoryBandwidth {
  double gbps = 0;        // the larger of the two below: what this machine streams
  double plain_gbps = 0;  // sum_words
  double wide_gbps = 0;   // the same sum with 512-bit loads (0 without AVX-512)
  size_t bytes = 0;       // buffer size
  int threads = 0;
};
// Best of `passes` streamed reads of a `bytes` buffer (touched first) on every thread of `pool`.
MemoryBandwidth measure_memory_read(kernels::ThreadPool& pool, size_t bytes = size_t{1} << 30, int passes = 5);

// The same measurement, repeatable on one buffer: `bench` measures again around every generation
// repetition, because a machine's bandwidth drifts (a shared VM's by half, minute to minute) and
// generation is compared with what the machine streamed at that time.
class ReadProbe {
 public:
  ReadProbe(kernels::ThreadPool& pool, size_t bytes);
  MemoryBandwidth measure(int passes);

 private:
  kernels::ThreadPool& pool_;
  std::vector<uint64_t> buffer_;
};

// ---- weight bytes (local.cpp) ----

// Every weight matrix a decode step reads in full, in step order (token_embd excluded: a step
// reads one row of it per token; a fused gate_up counts once).
std::vector<const model::Matrix*> weight_matrices(const model::Model& m);
// Bytes of weights one decode step of `batch` sequences reads: every matrix once for the whole
// batch, plus one token_embd row per sequence.
uint64_t weight_bytes_per_step(const model::Model& m, size_t batch);
// Bytes of all weights (matrices, embeddings, norms and biases) as the engine holds them.
uint64_t model_bytes(const model::Model& m);

// ---- local throughput (local.cpp) ----

struct LocalOptions {
  size_t prompt_tokens = 512;        // -p: pp<N>, N > 0
  size_t gen_tokens = 128;           // -n: tg<N>, N > 0
  size_t tg_context = 16;            // --tg-context: tokens each tg sequence holds before its timed steps
  std::vector<size_t> batches{1};    // -b
  int repetitions = 5;               // -r, after one warm-up run
  int threads = 0;                   // 0: one per hardware thread
  size_t memory_bytes = size_t{1} << 30;  // buffer of the read-bandwidth measurement; 0 skips it
  bool progress = false;             // a progress line on stderr (the caller checks for a TTY)
};

struct Measurement {
  std::string test;                  // "pp512", "tg128"
  size_t batch = 1;
  double tokens_per_second = 0;      // aggregate over the batch's sequences, mean of the repetitions
  double stddev = 0;                 // sample sd of the repetitions
  std::vector<double> samples;       // tokens/s of each repetition
  std::optional<double> gbps;        // generation: weight bytes read per second (10^9)
  // generation: the read bandwidth measured around the repetitions (each repetition's is the mean of
  // the measurements just before and just after it), and the mean over repetitions of each one's
  // weight-read GB/s divided by its own reference
  std::optional<double> reference_gbps;
  std::optional<double> bandwidth_share;
};

struct LocalReport {
  std::string model;                 // file (or folder) name
  std::string type;                  // weight type, "Q4_K_M"
  std::string backend = "cpu";
  std::string isa;                   // kernels' instruction set, "avx512"
  bool repacked = false;             // matrices in the kernels' own layout (model::LoadOptions::repack)
  int threads = 0;
  uint64_t model_bytes = 0;
  uint64_t bytes_per_token = 0;      // weight bytes one decode step of batch 1 reads
  size_t tg_context = 0;             // prompt tokens each tg sequence starts with (untimed)
  std::optional<MemoryBandwidth> memory;  // measured once before the runs
  std::vector<Measurement> measurements;  // every pp<N> by batch, then every tg<N> by batch
};

// Runs pp<N> and tg<N> at each batch size on `m`:
//   pp: B sequences, each with its own KV sequence, prefill N random tokens each, packed into
//       engine steps of up to 512 tokens as the server does; aggregate prompt tokens/s = B*N / time.
//   tg: B sequences start from an untimed prompt of options.tg_context tokens, then N steps that
//       each append one token to every sequence; aggregate tokens/s = B*N / time, GB/s = weight_bytes_per_step * N / time;
//       with options.memory_bytes > 0, the read bandwidth is measured (best of 2, untimed) just
//       before and just after each repetition, for reference_gbps and bandwidth_share.
// First one untimed warm-up of each (test, batch) (pp: one sequence; tg: up to 8 steps), then
// options.repetitions rounds, each running one repetition of every (test, batch) in turn: every
// batch size is measured over the same stretch of time, so a drifting machine skews no ratio.
// Throws Error (exit 2) for options the model cannot take (lengths beyond its context).
LocalReport run_local(const model::Model& m, const std::string& model_name, const LocalOptions& options);

// Sets r.reference_gbps and r.bandwidth_share: repetition i read `gb_per_token` x r.samples[i] GB/s
// against the mean of before[i] and after[i] (the read bandwidth measured just before and just
// after it). Leaves both unset unless there is a reading on each side of every repetition and every
// reference is positive.
void compare_with_reads(Measurement& r, double gb_per_token, std::span<const double> before,
                        std::span<const double> after);

// ---- server-sent events (http_load.cpp) ----

// Splits a byte stream into SSE events, whatever the chunking: calls on_data with each event's
// data (several "data:" lines joined by '\n') when the blank line ending the event arrives.
// Accepts \n, \r\n and \r line ends; ignores comments (":...") and other fields. A line or an event
// longer than kMaxEventBytes is no stream a server meant to send: the parser then stops (overflowed()),
// ignoring the rest, instead of growing without bound.
class SseParser {
 public:
  static constexpr size_t kMaxEventBytes = size_t{16} << 20;
  void feed(std::string_view bytes, const std::function<void(const std::string& data)>& on_data);
  bool overflowed() const { return overflowed_; }

 private:
  void line(std::string_view text, const std::function<void(const std::string&)>& on_data);
  std::string pending_;   // an incomplete line
  std::string data_;      // the data of the event being read
  bool has_data_ = false;
  bool after_cr_ = false; // the last byte was '\r': a '\n' right after it ends nothing
  bool overflowed_ = false;
};

// ---- HTTP load (http_load.cpp) ----

struct HttpOptions {
  std::string url;                           // http://HOST:PORT, optionally ending in /v1
  std::vector<int> concurrency{1};           // requests kept in flight, one run per value
  // At most this many requests per run and/or at most this long per run; with neither,
  // default_requests(concurrency) requests.
  std::optional<size_t> requests;
  std::optional<std::chrono::milliseconds> duration;
  size_t prompt_tokens = 128;                // approximate: the prompt is that many words
  size_t max_tokens = 128;
  std::string api_key;                       // sent as "Authorization: Bearer KEY" when set
  std::chrono::milliseconds connect_timeout{10000};
  bool progress = false;                     // a progress line on stderr (the caller checks for a TTY)
};

// What happened to one request.
struct RequestResult {
  long status = 0;                    // HTTP status, 0 when none arrived
  bool ok = false;                    // 200, the stream ended with [DONE], no error event
  bool aborted = false;               // still running at the deadline: cut off, neither ok nor failed
  std::string error;                  // the error category when !ok (a key of LoadLevel::errors)
  double latency_s = 0;               // request sent -> last byte
  std::optional<double> first_token_s;  // request sent -> first non-empty content delta
  std::optional<double> last_token_s;   // request sent -> last non-empty content delta
  size_t tokens = 0;                  // usage.completion_tokens, else the number of content deltas
  size_t content_chunks = 0;
  std::optional<size_t> prompt_tokens;  // usage.prompt_tokens
  std::optional<size_t> cached_prompt_tokens;  // usage.prompt_tokens_details.cached_tokens
};

// One run at one concurrency.
struct LoadLevel {
  int concurrency = 1;
  size_t launched = 0, succeeded = 0, failed = 0, aborted = 0;
  double wall_s = 0;                  // first request sent -> last one over (or the deadline)
  double requests_per_second = 0;     // succeeded / wall_s
  double success_rate = 0;            // succeeded / (succeeded + failed); aborted ones not counted
  std::optional<Distribution> latency_s, ttft_s;
  // Inter-token latency: per successful request, (last - first content delta) / (tokens - 1).
  std::optional<Distribution> itl_s;
  // Tokens of the successful requests, plus the content deltas aborted ones had received by the
  // deadline (a lower bound of their tokens): what the server delivered within wall_s.
  size_t generated_tokens = 0;
  double tokens_per_second = 0;       // generated_tokens / wall_s, all streams together
  double stream_tokens_per_second = 0;  // one stream's decode rate: sum(tokens - 1) / sum(last - first)
  std::optional<double> prompt_tokens_mean;  // as the server counted them
  std::optional<double> cached_prompt_tokens_mean;  // of those, taken from the server's prefix cache
  std::map<std::string, size_t> errors;      // "500", "stream_error", "curl: ..." -> count
  // The server's own decode rate over the run, from its /metrics before and after it (autoglm-deploy
  // serve; unset for servers without these counters, or when no step only generated): steps/s of
  // its engine steps that only generated (one sequence's decode rate inside the engine, to set
  // against stream_tokens_per_second: the difference is what the HTTP path costs), and their tokens/s.
  std::optional<double> engine_decode_steps_per_second;
  std::optional<double> engine_decode_tokens_per_second;
};

// Aggregates the results of one run that took `wall_s`.
LoadLevel summarize(int concurrency, const std::vector<RequestResult>& results, double wall_s);

struct HttpReport {
  std::string url;                   // the chat completions endpoint
  std::string model;                 // as GET /v1/models names it ("" when it did not answer)
  size_t prompt_tokens = 0, max_tokens = 0;
  std::optional<size_t> requests;
  std::optional<std::chrono::milliseconds> duration;
  std::vector<LoadLevel> levels;
};

// The value of an unlabelled sample `name` in Prometheus text ("name 12.5"); nullopt when absent
// or not a finite number.
std::optional<double> prometheus_value(std::string_view text, std::string_view name);

// Requests per run when neither --requests nor --duration is given: 4 per slot, at least 8.
size_t default_requests(int concurrency);

// The chat completions endpoint for a base URL ("http://h:p", "http://h:p/", "http://h:p/v1").
// Throws Error (exit 2) for a URL that is not http(s)://.
std::string chat_endpoint(const std::string& base_url);
// The prompt text with id `id`: the id, then words up to about `tokens` words (an approximation of
// the token count; the report gives the server's count). Different ids differ in their first words,
// so a server's prefix cache cannot serve one from another.
std::string load_prompt(uint64_t id, size_t tokens);

// Keeps `concurrency` streaming chat completions in flight on libcurl's multi interface until
// options.requests have been sent or options.duration has passed, whichever comes first; requests
// still running at the deadline are aborted and counted as such. Never sends more than `requests`.
LoadLevel run_load_level(const HttpOptions& options, int concurrency);
// run_load_level for each concurrency in turn. Throws Error (exit 2) for invalid options.
HttpReport run_http_load(const HttpOptions& options);

// ---- an agent conversation, step after step (Open-AutoGLM's shape) ----

struct AgentOptions {
  std::string url;                        // http://HOST:PORT, optionally ending in /v1
  std::string api_key;
  std::string model;                      // the name requests use; "" = the first of GET /v1/models
  size_t steps = 3;
  std::vector<std::vector<uint8_t>> screenshots;  // PNG/JPEG files' bytes, one per step (cycled)
  std::vector<std::string> screenshot_types;       // their data: URL media types ("image/png")
  size_t answer_tokens = 80;              // max_tokens of each step
  std::chrono::milliseconds connect_timeout{10000};
};

// One step as the client saw it, and what the server reported.
struct AgentStep {
  size_t step = 0;                        // 1-based
  RequestResult result;
  std::optional<double> encode_s;         // the server's vision tower time in the step (autoglm-deploy's /metrics)
  std::optional<double> decode_tokens_per_second;  // (tokens - 1) / (last - first content delta)
};

struct AgentReport {
  std::string url, model;
  size_t request_bytes = 0;               // of the last step's body
  std::vector<AgentStep> steps;
};

// Replays an agent conversation: a system prompt, then per step the history with earlier
// screenshots removed (their text kept) and earlier answers re-rendered as <think>..</think>
// <answer>..</answer>, and the new turn (screenshot as a base64 data: URL, then text) last; each
// step streamed with Open-AutoGLM's sampling (temperature 0, top_p 0.85, frequency_penalty 0.2).
AgentReport run_agent_steps(const AgentOptions& options);
// Polls GET /ready at `url` until it says 200 (true) or `timeout` passes, or `alive` says the server is gone (false).
bool wait_ready(const std::string& url, std::chrono::milliseconds timeout, const std::function<bool()>& alive);

// ---- reports (report.cpp) ----

// ---- images: the vision tower and the time to first token of an agent step (vision_bench.cpp) ----

struct VisionOptions {
  size_t text_tokens = 2000;   // text before the image (an agent's system prompt and history)
  size_t tail_tokens = 16;     // text after it (the step's instruction)
  int repetitions = 3;         // after one warm-up run
  int threads = 0;
  bool ttft = true;            // also time the whole request: image + text prefill to the first token
};

struct VisionReport {
  std::string model, image;
  std::string weight_type;          // the tower's matrices
  std::string isa;
  int threads = 0;
  uint32_t width = 0, height = 0;   // the image as sent
  image::Size resized;              // as the processor resized it
  size_t patches = 0, image_tokens = 0, prompt_tokens = 0;
  double gflop = 0;                 // the tower's work for this image (matrix products and attention)
  // milliseconds per repetition
  std::vector<double> decode_ms, preprocess_ms, encode_ms, ttft_ms;
};

// Times, per repetition: decoding the image file, the processor (resize, normalize, patches), the
// vision tower, and (options.ttft) a whole agent-shaped prompt — text_tokens of text, the image,
// tail_tokens of text — from the image bytes to the first generated token, prefilled in chunks of
// 512 as the server does. Random text ids; the image is `image_bytes`.
VisionReport run_vision(const model::Model& m, const vision::VisionModel& tower, const image::ProcessorConfig& processor,
                        int32_t image_token, std::span<const uint8_t> image_bytes, const std::string& model_name,
                        const std::string& image_name, const VisionOptions& options);

enum class Format { table, json, markdown };
std::string render_vision(const VisionReport& report, Format format);
std::string render_local(const LocalReport& report, Format format);
std::string render_http(const HttpReport& report, Format format);
std::string render_agent(const AgentReport& report, Format format);

}  // namespace autoglm::benchmark
