// Text helpers every command shares: quoting untrusted input in one-line error messages, the one
// set of number, byte and time formatters that tables and messages print with, and the parsers of
// sizes and durations given on the command line.
//   format_gib(13.5e9);          // "12.6 GiB"  (binary: error messages about device memory)
//   format_gb(13.5e9);           // "13.5 GB"   (decimal: datasheets, the planner)
//   format_seconds(0.0042);      // "4.2 ms"    (auto unit, 4 significant digits)
//   parse_bytes("4GiB");         // 4294967296
//   parse_seconds("50ms");       // 0.05
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ridgeline {

// `text` with control bytes escaped (\xNN) and cut to at most `max` characters ("..." after), so
// an error message stays one readable line whatever a file holds.
std::string printable(std::string_view text, std::size_t max);

// One number through a printf format with a single double conversion ("%.2f", "%8.3f", "%+.1f%%").
std::string format(const char* printf_format, double v);
// Bytes in binary units with `digits` decimals: "12.6 GiB" (always GiB) / auto "512 KiB", "3 GiB".
std::string format_gib(double bytes, int digits = 1);
std::string format_bytes(double bytes, int digits = 0);  // KiB, MiB or GiB, whichever fits
// Bytes in decimal gigabytes with `digits` decimals: "13.5 GB".
std::string format_gb(double bytes, int digits = 1);
// Seconds with the unit that suits them (ns, us, ms or s) and 4 significant digits: "4.2 ms",
// "-12.5 us"; 0 gives "0 s".
std::string format_seconds(double seconds);
// Seconds as milliseconds with `digits` decimals: "12.5 ms".
std::string format_ms(double seconds, int digits = 1);
// A fraction as a percentage with one decimal: "12.5%", or "+12.5%" / "-3.0%" with `sign`.
std::string format_percent(double fraction, bool sign = false);

// A positive size: a number with an optional unit, binary (KiB, MiB, GiB, TiB; K, M, G, T) or
// decimal (kB, MB, GB, TB), case-insensitive: "4GiB", "256KiB", "1e9". Throws
// std::invalid_argument naming the text.
std::uint64_t parse_bytes(std::string_view text);
// A positive, finite duration: a number with an optional unit (ns, us, ms, s; none means seconds):
// "50ms", "0.05", "2s". Throws std::invalid_argument naming the text.
double parse_seconds(std::string_view text);
// Seconds in one `unit`: "ns", "us", "ms" or "s" (as Google Benchmark's time_unit writes them);
// 0 for any other text.
double seconds_per_unit(std::string_view unit);

}  // namespace ridgeline
