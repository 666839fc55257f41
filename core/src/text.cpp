// Quoting, formatting and parsing text (see text.hpp).
#include "ridgeline/core/text.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace ridgeline {

std::string printable(std::string_view text, std::size_t max) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

std::string format(const char* printf_format, double v) {
  char buf[128];
  std::snprintf(buf, sizeof buf, printf_format, v);
  return buf;
}

namespace {
std::string with_unit(double v, int digits, const char* unit) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f %s", digits, v, unit);
  return buf;
}
}  // namespace

std::string format_gib(double bytes, int digits) {
  return with_unit(bytes / double(1ULL << 30), digits, "GiB");
}

std::string format_bytes(double bytes, int digits) {
  if (bytes >= double(1ULL << 30)) return with_unit(bytes / double(1ULL << 30), digits, "GiB");
  if (bytes >= double(1ULL << 20)) return with_unit(bytes / double(1ULL << 20), digits, "MiB");
  return with_unit(bytes / 1024.0, digits, "KiB");
}

std::string format_gb(double bytes, int digits) {
  return with_unit(bytes / 1e9, digits, "GB");
}

std::string format_seconds(double s) {
  const double a = std::abs(s);
  if (a == 0) return "0 s";
  if (a < 1e-6) return format("%.4g ns", s * 1e9);
  if (a < 1e-3) return format("%.4g us", s * 1e6);
  if (a < 1) return format("%.4g ms", s * 1e3);
  return format("%.4g s", s);
}

std::string format_ms(double seconds, int digits) {
  return with_unit(seconds * 1e3, digits, "ms");
}

std::string format_percent(double fraction, bool sign) {
  return format(sign ? "%+.1f%%" : "%.1f%%", fraction * 100);
}

namespace {
// The number at the start of `s` and the rest, lower-cased; throws with `what` on no number.
std::pair<double, std::string> number_and_unit(const std::string& s, const std::string& what) {
  std::size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(s, &pos);
  } catch (const std::exception&) {
    throw std::invalid_argument(what);
  }
  std::string unit = s.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return {value, unit};
}
}  // namespace

std::uint64_t parse_bytes(std::string_view text) {
  const std::string s(text);
  const auto [value, unit] =
      number_and_unit(s, "not a size: '" + printable(s, 64) + "' (examples: 4GiB, 256KiB, 1e9)");
  double scale = 1;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "kib" || unit == "k")
    scale = 1024.0;
  else if (unit == "mib" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib" || unit == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "kb")
    scale = 1e3;
  else if (unit == "mb")
    scale = 1e6;
  else if (unit == "gb")
    scale = 1e9;
  else if (unit == "tb")
    scale = 1e12;
  else
    throw std::invalid_argument("unknown size unit in '" + printable(s, 64) +
                                "' (use KiB, MiB, GiB or TiB)");
  const double bytes = value * scale;
  if (!std::isfinite(bytes) || bytes <= 0 || bytes > 1.8e19) {
    throw std::invalid_argument("size out of range: '" + printable(s, 64) + "'");
  }
  return static_cast<std::uint64_t>(std::llround(bytes));
}

double parse_seconds(std::string_view text) {
  const std::string s(text);
  const auto [value, unit] =
      number_and_unit(s, "not a duration: '" + printable(s, 64) + "' (examples: 2s, 50ms, 0.05)");
  const double scale = unit.empty() ? 1.0 : seconds_per_unit(unit);
  if (scale == 0)
    throw std::invalid_argument("unknown time unit in '" + printable(s, 64) +
                                "' (use s, ms, us or ns)");
  const double seconds = value * scale;
  if (!(seconds > 0) || !std::isfinite(seconds))
    throw std::invalid_argument("duration must be positive: '" + printable(s, 64) + "'");
  return seconds;
}

double seconds_per_unit(std::string_view unit) {
  if (unit == "ns") return 1e-9;
  if (unit == "us") return 1e-6;
  if (unit == "ms") return 1e-3;
  if (unit == "s") return 1.0;
  return 0;
}

}  // namespace ridgeline
