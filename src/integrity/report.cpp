// Output of a verify Report: sha256sum lines, the human table, and the JSON object (docs/verify.md).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "autoglm/integrity.h"
#include "autoglm/units.h"

namespace autoglm::integrity {
namespace {

constexpr const char* kIndent = "          ";

std::string hash_column(const FileReport& f) {
  if (f.hash_ok) return *f.hash_ok ? "match" : "MISMATCH";
  return "-";
}

std::string indent_lines(const std::string& text) {
  std::string out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nl = text.find('\n', start);
    const size_t end = nl == std::string::npos ? text.size() : nl;
    out += kIndent + text.substr(start, end - start) + "\n";
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string details(const FileReport& f) {
  std::string out;
  if (!f.exists) return indent_lines(f.error);
  if (f.hash_ok == false)
    out += indent_lines(fmt::format("expected {} ({})\nactual   {}", *f.expected_sha256, f.expected_from, f.sha256));
  if (!f.structure_error.empty()) out += indent_lines(f.structure_error);
  if (!f.error.empty()) out += indent_lines(f.error);
  return out;
}

std::string summary(const Report& r) {
  const double secs = r.seconds;
  const uint64_t bytes = r.total_bytes();
  std::string line = fmt::format("{} file{} ({}) checked in {:.2f} s", r.files.size(), r.files.size() == 1 ? "" : "s",
                                 format_bytes(bytes), secs);
  if (secs > 0.01 && bytes > 0)
    line += fmt::format(" ({}/s, {} thread{})", format_bytes(static_cast<uint64_t>(static_cast<double>(bytes) / secs)),
                        r.threads, r.threads == 1 ? "" : "s");
  line += fmt::format(": {} OK, {} MISMATCH, {} CORRUPT, {} MISSING", r.count(Status::ok), r.count(Status::mismatch),
                      r.count(Status::corrupt), r.count(Status::missing));
  if (!r.errors.empty()) line += fmt::format(", {} error{}", r.errors.size(), r.errors.size() == 1 ? "" : "s");
  if (r.ok()) return "OK: " + line + "\n";
  std::string next;
  if (r.count(Status::ok) != r.files.size()) next = "download the files marked MISMATCH, CORRUPT or MISSING again";
  if (!r.errors.empty()) next += std::string(next.empty() ? "" : ", and ") + "fix the errors listed above";
  return "FAILED: " + line + "\n" + kIndent + "Next: " + next + ".\n";
}

}  // namespace

std::string format_sha256sums(const Report& report) {
  std::string out;
  for (const FileReport& f : report.files)
    if (!f.sha256.empty()) out += sha256sum_line(f.sha256, f.path.string());
  return out;
}

std::string format_table(const Report& report) {
  size_t format_w = 6;
  for (const FileReport& f : report.files)
    format_w = std::max(format_w, std::string_view(format_name(f.format)).size());
  std::string out = fmt::format("{:<9} {:<{}} {:>10}  {:<11} {:<8}  {}\n", "STATUS", "FORMAT", format_w, "SIZE",
                                "STRUCTURE", "SHA-256", "FILE");
  for (const FileReport& f : report.files) {
    const bool seen = f.exists;
    out += fmt::format("{:<9} {:<{}} {:>10}  {:<11} {:<8}  {}\n", status_name(f.status()),
                       seen ? format_name(f.format) : "-", format_w, seen ? format_bytes(f.size) : "-",
                       seen ? structure_name(f.structure) : "-", hash_column(f), f.path.string());
    out += details(f);
  }
  for (const std::string& e : report.errors) out += "error: " + e + "\n";
  if (!report.any_expected)
    out +=
        "note: no expected hashes given, so no hash was compared. Save the hashes as a manifest "
        "(autoglm-deploy verify PATH > SHA256SUMS) and check later with --manifest SHA256SUMS.\n";
  return out + summary(report);
}

std::string format_json(const Report& report) {
  using ojson = nlohmann::ordered_json;
  auto str_or_null = [](const std::string& s) { return s.empty() ? ojson(nullptr) : ojson(s); };
  ojson files = ojson::array();
  for (const FileReport& f : report.files) {
    ojson j;
    j["path"] = f.path.string();
    j["format"] = format_name(f.format);
    j["status"] = status_name(f.status());
    j["size"] = f.exists ? ojson(f.size) : ojson(nullptr);
    j["sha256"] = str_or_null(f.sha256);
    j["expected_sha256"] = f.expected_sha256 ? ojson(*f.expected_sha256) : ojson(nullptr);
    j["expected_from"] = str_or_null(f.expected_from);
    j["hash_ok"] = f.hash_ok ? ojson(*f.hash_ok) : ojson(nullptr);
    j["structure"] = structure_name(f.structure);
    j["structure_error"] = str_or_null(f.structure_error);
    j["error"] = str_or_null(f.error);
    files.push_back(std::move(j));
  }
  ojson out;
  out["version"] = 1;
  out["path"] = report.path.string();
  out["ok"] = report.ok();
  out["files"] = std::move(files);
  out["errors"] = report.errors;
  out["summary"] = {{"files", report.files.size()},
                    {"bytes", report.total_bytes()},
                    {"ok", report.count(Status::ok)},
                    {"mismatch", report.count(Status::mismatch)},
                    {"corrupt", report.count(Status::corrupt)},
                    {"missing", report.count(Status::missing)},
                    {"errors", report.errors.size()},
                    {"hashes_compared", report.any_expected},
                    {"threads", report.threads},
                    {"seconds", report.seconds}};
  // File names and messages may hold bytes that are not UTF-8: replace them, never throw.
  return out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace autoglm::integrity
