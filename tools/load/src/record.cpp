// Names of error kinds and the token counts of a request record (record.hpp).
#include "ridgeline/load/record.hpp"

#include <array>

namespace ridgeline::load {
namespace {
constexpr std::array<const char*, k_error_kinds> k_names = {
    "none", "connect", "http_status", "timeout", "malformed_stream", "stream_error", "cancelled"};
}

const char* name(error_kind e) {
  return k_names[static_cast<std::size_t>(e)];
}

std::optional<error_kind> error_kind_of(std::string_view text) {
  for (std::size_t i = 0; i < k_names.size(); ++i) {
    if (text == k_names[i]) return static_cast<error_kind>(i);
  }
  return std::nullopt;
}

std::int64_t request_record::counted_output_tokens() const {
  std::int64_t n = 0;
  for (std::int32_t k : chunk_tokens) n += k;
  return n;
}

std::int64_t request_record::output_tokens() const {
  return usage_output_tokens >= 0 ? usage_output_tokens : counted_output_tokens();
}

}  // namespace ridgeline::load
