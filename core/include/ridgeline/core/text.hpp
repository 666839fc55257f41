// Quoting untrusted input in one-line error messages.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ridgeline {

// `text` with control bytes escaped (\xNN) and cut to at most `max` characters ("..." after), so
// an error message stays one readable line whatever a file holds.
std::string printable(std::string_view text, std::size_t max);

}  // namespace ridgeline
