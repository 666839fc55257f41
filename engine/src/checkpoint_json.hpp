// JSON helpers shared by the checkpoint readers (engine/src only): parsing with one clear error
// line naming the file, and quoting a value in a message.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ridgeline/core/text.hpp"

namespace ridgeline::detail {

// A JSON value quoted in a message (never throws on odd strings).
inline std::string quoted(const nlohmann::json& v) {
  return printable(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 64);
}

// Parses `text`; std::invalid_argument "<source>: <what> is not valid JSON (...)" otherwise.
inline nlohmann::json parse_json(std::string_view text, const std::string& source,
                                 const char* what) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(source + ": " + what + " is not valid JSON (" +
                                printable(e.what(), 160) + ")");
  }
}

}  // namespace ridgeline::detail
