// Which disk a path lives on and what kind it is: mount table and sysfs come from the sysroot,
// free space from statvfs on the real path, so fixture tests stay deterministic.
#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>

#include "internal.h"

namespace autoglm::hardware::detail {
namespace {

struct Mount {
  std::string mount_point, fs_type, source;
  std::string dev;  // "259:2"; empty when unknown (/proc/mounts)
};

// Mount tables escape space, tab, newline and backslash as \ooo octal.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool octal = s[i] == '\\' && i + 3 < s.size() &&
                       std::all_of(&s[i + 1], &s[i + 1] + 3, [](char c) { return c >= '0' && c <= '7'; });
    if (!octal) {
      out += s[i];
      continue;
    }
    out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
    i += 3;
  }
  return out;
}

// mountinfo: "id parent major:minor root mount-point options [optional...] - fstype source superopts".
std::vector<Mount> parse_mountinfo(std::string_view text) {
  std::vector<Mount> mounts;
  for (std::string_view line : split_lines(text)) {
    const auto w = split_ws(line);
    auto dash = std::find(w.begin(), w.end(), std::string_view("-"));
    if (w.size() < 6 || dash == w.end() || w.end() - dash < 3) continue;
    mounts.push_back({unescape(w[4]), std::string(dash[1]), unescape(dash[2]), std::string(w[2])});
  }
  return mounts;
}

// /proc/mounts: "source mount-point fstype options 0 0".
std::vector<Mount> parse_mounts(std::string_view text) {
  std::vector<Mount> mounts;
  for (std::string_view line : split_lines(text)) {
    const auto w = split_ws(line);
    if (w.size() >= 3) mounts.push_back({unescape(w[1]), std::string(w[2]), unescape(w[0]), ""});
  }
  return mounts;
}

std::vector<Mount> read_mounts(const fs::path& root) {
  if (auto text = read_text(under(root, "proc/self/mountinfo")); text && !text->empty()) return parse_mountinfo(*text);
  if (auto text = read_text(under(root, "proc/mounts"))) return parse_mounts(*text);
  return {};
}

bool mount_contains(const std::string& mount_point, const std::string& path) {
  if (mount_point == "/") return true;
  return path.compare(0, mount_point.size(), mount_point) == 0 &&
         (path.size() == mount_point.size() || path[mount_point.size()] == '/');
}

// The deepest mount containing `path`; among equals the last one, which hides earlier ones.
const Mount* containing_mount(const std::vector<Mount>& mounts, const std::string& path) {
  const Mount* best = nullptr;
  for (const Mount& m : mounts)
    if (mount_contains(m.mount_point, path) && (!best || m.mount_point.size() >= best->mount_point.size())) best = &m;
  return best;
}

// Kernel name of the mounted block device ("nvme0n1p2", "dm-0"); empty when not a block device.
std::string kernel_name(const fs::path& root, const Mount& m) {
  if (!m.dev.empty() && m.dev.rfind("0:", 0) != 0) {
    if (auto uevent = read_text(under(root, "sys/dev/block/" + m.dev + "/uevent")))
      for (std::string_view line : split_lines(*uevent))
        if (line.rfind("DEVNAME=", 0) == 0) return std::string(trim(line.substr(8)));
  }
  if (m.source.rfind("/dev/mapper/", 0) == 0) {
    const std::string mapped = m.source.substr(12);
    for (const auto& [n, dir] : numbered_entries(under(root, "sys/block"), "dm-"))
      if (read_line(dir / "dm/name") == mapped) return dir.filename().string();
  }
  if (m.source.rfind("/dev/", 0) == 0) return fs::path(m.source).filename().string();
  return "";
}

// Partition -> its disk ("nvme0n1p2" -> "nvme0n1", "sda1" -> "sda"): sysfs nests partitions in
// their disk's folder; name rules cover trees that lack it.
std::string whole_disk(const fs::path& root, const std::string& name) {
  const fs::path block = under(root, "sys/block");
  if (path_exists(block / name)) return name;
  std::error_code ec;
  for (fs::directory_iterator it(block, ec), end; !ec && it != end; it.increment(ec))
    if (path_exists(it->path() / name)) return it->path().filename().string();
  std::string disk = name;
  while (!disk.empty() && std::isdigit(static_cast<unsigned char>(disk.back()))) disk.pop_back();
  const bool p_suffix = disk.size() > 1 && disk.back() == 'p' && std::isdigit(static_cast<unsigned char>(disk[disk.size() - 2]));
  if (p_suffix) disk.pop_back();  // nvme0n1p2, mmcblk0p1
  return path_exists(block / disk) ? disk : "";
}

bool is_virtual_disk(const std::string& disk) { return disk.rfind("vd", 0) == 0 || disk.rfind("xvd", 0) == 0; }

// Follows device-mapper/md volumes to the first disk under them.
void classify(const fs::path& root, std::string disk, DiskInfo& info, int depth = 0) {
  const fs::path dir = under(root, "sys/block") / disk;
  if ((disk.rfind("dm-", 0) == 0 || disk.rfind("md", 0) == 0) && depth < 4) {
    std::error_code ec;
    fs::directory_iterator it(dir / "slaves", ec);
    if (!ec && it != fs::directory_iterator()) {
      const std::string under_disk = whole_disk(root, it->path().filename().string());
      info.note = (disk.rfind("dm-", 0) == 0 ? "device-mapper volume (LVM/LUKS) " : "software RAID ") + disk +
                  " on " + (under_disk.empty() ? it->path().filename().string() : under_disk);
      if (!under_disk.empty()) classify(root, under_disk, info, depth + 1);
      return;
    }
    info.note = disk + " has no visible slaves: disk type unknown";
    return;
  }
  info.block_device = disk;
  info.virtual_disk = is_virtual_disk(disk);
  const auto rotational = read_line(dir / "queue/rotational");
  if (disk.rfind("nvme", 0) == 0) info.kind = DiskKind::nvme;
  else if (rotational == "0") info.kind = DiskKind::ssd;
  else if (rotational == "1") info.kind = DiskKind::rotational;
}

fs::path absolute_path(const fs::path& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(path, ec);
  if (ec) p = fs::absolute(path, ec);
  return ec ? path : p;
}

}  // namespace

DiskInfo probe_disk(const fs::path& root, const fs::path& path) {
  DiskInfo info;
  info.path = absolute_path(path);
  struct statvfs st {};
  if (statvfs(info.path.c_str(), &st) == 0 && st.f_frsize > 0) {
    info.free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    info.total_bytes = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  }
  const std::vector<Mount> mounts = read_mounts(root);
  const Mount* mount = containing_mount(mounts, info.path.string());
  if (!mount) return info;
  info.mount_point = mount->mount_point;
  info.fs_type = mount->fs_type;
  info.source = mount->source;
  const std::string name = kernel_name(root, *mount);
  if (name.empty()) {
    info.note = "filesystem '" + info.fs_type + "' is not on a block device (container overlay, network or RAM)";
    return info;
  }
  const std::string disk = whole_disk(root, name);
  if (disk.empty()) {
    info.note = "block device " + name + " not found under /sys/block";
    return info;
  }
  classify(root, disk, info);
  return info;
}

}  // namespace autoglm::hardware::detail
