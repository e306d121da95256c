#pragma once
// Helpers shared by the integrity sources; not part of the public API.
#include <filesystem>

#include "autoglm/integrity.h"

namespace autoglm::integrity {

// "*.safetensors.index.json": a Hugging Face shard index.
bool is_shard_index(const std::filesystem::path& path);

// sha256_file without the throw; `overlap_reads` reads the next chunk on a second thread.
HashResult hash_file(const std::filesystem::path& path, const ProgressFn& progress, size_t buffer_size,
                     bool overlap_reads);

// Overlapped reads pay off only when every worker can have a second core.
bool overlap_reads(unsigned workers);

}  // namespace autoglm::integrity
