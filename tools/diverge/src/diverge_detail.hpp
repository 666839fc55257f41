// Helpers shared by the files of tools/diverge/src (not installed): FNV-1a hashing as the
// fingerprints write it, and the (prompt, step) index of a validated fingerprint's rows.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ridgeline::bench::detail {

inline constexpr std::uint64_t k_fnv_offset = 0xcbf29ce484222325ULL;

void fnv_bytes(std::uint64_t& h, const void* data, std::size_t n);
void fnv_u32(std::uint64_t& h, std::uint32_t v);  // little-endian bytes
std::string hex64(std::uint64_t h);               // 16 hex digits

// Rows of a validated fingerprint, indexed [prompt * steps + step].
std::vector<const nlohmann::json*> index_rows(const nlohmann::json& doc);
inline const nlohmann::json& row_at(const std::vector<const nlohmann::json*>& index,
                                    std::size_t steps, std::size_t p, std::size_t s) {
  return *index[p * steps + s];
}

}  // namespace ridgeline::bench::detail
