// The ceiling that matches a kind of DRAM traffic and a step's bandwidth floor
// (bandwidth_floor.hpp).
#include "ridgeline/perfmodel/bandwidth_floor.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "ridgeline/core/text.hpp"

namespace ridgeline {

std::string_view name(traffic_kind k) {
  switch (k) {
    case traffic_kind::read: return "read";
    case traffic_kind::write: return "write";
    case traffic_kind::copy: return "copy";
  }
  return "?";
}

std::string bandwidth_ceiling::label() const {
  const std::string tb = format("%.2f", bytes_per_second / 1e12) + " TB/s";
  if (measured) return "measured " + std::string(name(kind)) + " bandwidth " + tb;
  return fallback + " bandwidth " + tb + " (no measured " + std::string(name(kind)) + " ceiling)";
}

bandwidth_ceiling bandwidth_ceiling_of(const gpu_profile& p, traffic_kind k) {
  const double measured = k == traffic_kind::read    ? p.read_bytes_per_second
                          : k == traffic_kind::write ? p.write_bytes_per_second
                                                     : p.copy_bytes_per_second;
  bandwidth_ceiling c;
  c.kind = k;
  c.measured = measured > 0;
  c.bytes_per_second = measured > 0 ? measured : p.datasheet_bytes_per_second;
  if (p.source == "theoretical") c.fallback = "theoretical";
  return c;
}

double bandwidth_floor::bytes_per_second() const {
  return seconds > 0 ? (read_bytes + copy_bytes + write_bytes) / seconds : 0.0;
}

bandwidth_floor bandwidth_floor_of(const gpu_profile& p, double read_bytes, double write_bytes) {
  if (!(read_bytes >= 0) || !(write_bytes >= 0)) {
    throw std::invalid_argument("bandwidth floor: negative bytes (read " +
                                format("%.6g", read_bytes) + ", written " +
                                format("%.6g", write_bytes) + ")");
  }
  const double paired = std::min(read_bytes, write_bytes);
  bandwidth_floor f;
  f.read_bytes = read_bytes - paired;
  f.write_bytes = write_bytes - paired;
  f.copy_bytes = 2 * paired;
  f.dominant = f.copy_bytes > f.read_bytes && f.copy_bytes >= f.write_bytes ? traffic_kind::copy
               : f.write_bytes > f.read_bytes                               ? traffic_kind::write
                                                                            : traffic_kind::read;
  double s = 0;
  const std::pair<double, traffic_kind> parts[] = {
      {f.read_bytes, traffic_kind::read},
      {f.copy_bytes, traffic_kind::copy},
      {f.write_bytes, traffic_kind::write}};
  for (const auto& [bytes, kind] : parts) {
    if (bytes <= 0) continue;
    const double bw = bandwidth_ceiling_of(p, kind).bytes_per_second;
    if (bw <= 0) return f;  // seconds 0: no ceiling to divide by
    s += bytes / bw;
  }
  f.seconds = s;
  return f;
}

}  // namespace ridgeline
