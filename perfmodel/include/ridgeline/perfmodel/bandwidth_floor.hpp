// The DRAM ceiling that matches a kind of traffic, and the bandwidth floor of a step's traffic at
// the ceilings that match it. Every "% of floor" and "% of ... bandwidth" in ridgeline divides by
// one of these and names it (the issue that found a read-mostly step divided by the copy ceiling).
//   bandwidth_ceiling r = bandwidth_ceiling_of(profile, traffic_kind::read);
//   r.label();   // "measured read bandwidth 3.13 TB/s"
//   bandwidth_floor f = bandwidth_floor_of(profile, w.weight_bytes + w.kv_read_bytes,
//                                          w.kv_write_bytes);
//   100 * f.seconds / step_seconds;   // % of the floor; f.dominant names the ceiling
//
// Matching rule: bytes only read move at the read ceiling, bytes only written at the write
// ceiling; each written byte paired with a read byte moves as a copy (the copy ceiling counts
// read + write bytes), so floor = (R - P) / read + 2P / copy + (W - P) / write, P = min(R, W).
// A pure read, write or copy gets exactly its own measured ceiling; a decode step (weights and KV
// read, one KV row per sequence written) is read at more than 99.7% of its bytes.
#pragma once

#include <string>
#include <string_view>

#include "ridgeline/perfmodel/gpu_profile.hpp"

namespace ridgeline {

enum class traffic_kind { read, write, copy };
std::string_view name(traffic_kind k);  // "read" | "write" | "copy"

struct bandwidth_ceiling {
  traffic_kind kind = traffic_kind::read;
  double bytes_per_second = 0;  // 0 when the profile has neither the measurement nor a datasheet
  bool measured = false;        // false: the datasheet figure stands in (labelled so)
  // What stands in when not measured: "datasheet", or "theoretical" for a profile of source
  // "theoretical" (memory clock x bus width, for a GPU the datasheet table lacks).
  std::string fallback = "datasheet";
  // "measured read bandwidth 3.13 TB/s" or "datasheet bandwidth 3.35 TB/s (no measured read
  // ceiling)": what every output prints beside a percentage of it.
  std::string label() const;
};
// The profile's measured plateau of that kind, else its datasheet DRAM figure (measured false).
bandwidth_ceiling bandwidth_ceiling_of(const gpu_profile& p, traffic_kind k);

struct bandwidth_floor {
  double seconds = 0;  // 0 when a needed ceiling is 0
  // Bytes moved at each ceiling (copy_bytes counts both the read and the written byte).
  double read_bytes = 0, copy_bytes = 0, write_bytes = 0;
  traffic_kind dominant = traffic_kind::read;  // the ceiling that carries the most bytes
  // Total bytes / seconds: the one bandwidth the traffic would reach at its ceilings.
  double bytes_per_second() const;
};
// Throws std::invalid_argument on negative bytes.
bandwidth_floor bandwidth_floor_of(const gpu_profile& p, double read_bytes, double write_bytes);

// The rule above in one line, for result files and tables.
inline constexpr const char* k_bandwidth_floor_rule =
    "floor = bytes only read / read ceiling + bytes only written / write ceiling + 2 x written "
    "bytes paired with read bytes / copy ceiling (min(read, written) pairs)";

}  // namespace ridgeline
