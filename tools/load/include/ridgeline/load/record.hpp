// What `ridgeline load` keeps of one request sent to an OpenAI-compatible server: its schedule, the
// client-side stamps (write, first response byte, every content chunk), the HTTP status, the error
// kind when it failed, and the token counts the server reported (`usage`) beside those counted.
// All times are seconds on the run's clock (steady_clock, 0 = the run's epoch); -1 = not reached.
//   request_record r;  ...  name(r.error)  // "none", "connect", "http_status", ...
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::load {

// Why a request did not finish. `cancelled`: never sent, or cut off because the run stopped
// (the level was saturated, the run was interrupted, or an earlier turn of its session failed).
enum class error_kind : std::uint8_t {
  none,
  connect,           // no TCP (or TLS) connection, or it broke before any response byte
  http_status,       // a status other than 200
  timeout,           // --timeout passed before the response ended
  malformed_stream,  // not HTTP/1.1, not SSE, not JSON, or the connection closed mid-response
  stream_error,      // the server sent an error object inside the stream
  cancelled,
};
inline constexpr int k_error_kinds = 7;
const char* name(error_kind e);
// The kind of a name written by name(); nullopt for any other text.
std::optional<error_kind> error_kind_of(std::string_view text);

struct request_record {
  std::uint64_t id = 0;       // the workload's request id
  std::int64_t session = -1;  // chat session, or -1
  std::int32_t turn = 0;
  double scheduled = 0;        // when it was due to leave (open loop) or was released (closed)
  double sent = -1;            // the first byte of the (last) attempt written to the socket
  double response_start = -1;  // the first byte of the response read (headers included)
  double end = -1;             // the response complete (or the failure)
  std::int32_t status = 0;     // HTTP status, 0 when none arrived
  error_kind error = error_kind::none;
  std::string error_detail;  // one line: strerror, status and body excerpt, the bad line
  std::int32_t attempts = 0;
  // Content chunks in arrival order: the stamp of the read that brought the chunk's first byte
  // (taken in the read callback before any parsing) and its token count.
  std::vector<double> chunk_seconds;
  std::vector<std::int32_t> chunk_tokens;
  std::int64_t requested_prompt_tokens = 0;  // what the workload asked for
  std::int64_t expected_prompt_tokens = 0;   // what the prompt sent encodes to (chat template...)
  std::int64_t requested_output_tokens = 0;  // max_tokens
  std::int64_t usage_prompt_tokens = -1;     // the server's usage, -1 when it sent none
  std::int64_t usage_output_tokens = -1;
  std::int64_t usage_cached_tokens = -1;  // usage.prompt_tokens_details.cached_tokens
  std::string output_text;                // kept only for multi-turn sessions

  bool finished() const { return error == error_kind::none && end >= 0; }
  std::int64_t counted_output_tokens() const;
  // usage's output tokens when the server sent them, else the counted ones.
  std::int64_t output_tokens() const;
  double first_token() const { return chunk_seconds.empty() ? -1 : chunk_seconds.front(); }
  double last_token() const { return chunk_seconds.empty() ? -1 : chunk_seconds.back(); }
};

}  // namespace ridgeline::load
