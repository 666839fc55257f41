// ridgeline_gguf_tool: the two halves of the GGUF reference check (gguf_reference_test.sh).
//   ridgeline_gguf_tool write OUT.gguf PRESET TYPE [VERSION]   TYPE: f32, f16, q8_0 or q4_0
//     writes a tiny Llama with the independent test writer (tests/support/gguf_writer.hpp);
//   ridgeline_gguf_tool dump FILE
//     prints what engine/gguf.hpp reads, as JSON: version, counts, alignment, data offset, every
//     metadata key {type, value[, element_type]} and the tensor table {name, dims, type, offset}.
//     Integers are decimal strings (64-bit values do not fit a JSON number), floats numbers.
// A malformed file exits 2 with one line, an unreadable one 4, as the ridgeline command does.
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "gguf_writer.hpp"
#include "ridgeline/core/errors.hpp"
#include "ridgeline/engine/gguf.hpp"

namespace {

using nlohmann::json;
using ridgeline::gguf_value;
using ridgeline::gguf_value_type;

json value_json(const gguf_value& v) {
  switch (v.type) {
    case gguf_value_type::uint8:
    case gguf_value_type::uint16:
    case gguf_value_type::uint32:
    case gguf_value_type::uint64:
      return std::to_string(v.u);
    case gguf_value_type::int8:
    case gguf_value_type::int16:
    case gguf_value_type::int32:
    case gguf_value_type::int64:
      return std::to_string(v.i);
    case gguf_value_type::float32:
    case gguf_value_type::float64:
      return v.f;
    case gguf_value_type::boolean:
      return v.b;
    case gguf_value_type::string:
      return v.s;
    case gguf_value_type::array: {
      json a = json::array();
      for (const auto& e : v.elements) a.push_back(value_json(e));
      return a;
    }
  }
  return nullptr;
}

int dump(const std::string& file) {
  const ridgeline::gguf_file f(file);
  json meta = json::object();
  for (const auto& [key, v] : f.metadata()) {
    json e = {{"type", static_cast<std::uint32_t>(v.type)}, {"value", value_json(v)}};
    if (v.type == gguf_value_type::array)
      e["element_type"] = static_cast<std::uint32_t>(v.element_type);
    meta[key] = e;
  }
  json tensors = json::array();
  for (const auto& t : f.tensors()) {
    json dims = json::array();
    for (auto d : t.dims) dims.push_back(std::to_string(d));
    tensors.push_back({{"name", t.name},
                       {"dims", dims},
                       {"type", static_cast<std::uint32_t>(t.type)},
                       {"offset", std::to_string(t.offset)},
                       {"bytes", std::to_string(t.bytes)}});
  }
  const json out = {{"version", f.version()},
                    {"tensor_count", std::to_string(f.tensors().size())},
                    {"kv_count", std::to_string(f.metadata().size())},
                    {"alignment", f.alignment()},
                    {"data_offset", std::to_string(f.data_offset())},
                    {"file_bytes", std::to_string(f.file_bytes())},
                    {"metadata", meta},
                    {"tensors", tensors}};
  std::cout << out.dump(1, ' ', false, json::error_handler_t::strict) << "\n";
  return 0;
}

int write(const std::string& out, const std::string& preset, const std::string& type,
          std::uint32_t version) {
  namespace g = ridgeline::test::ggml;
  const std::uint32_t t = type == "f32"    ? g::f32
                          : type == "f16"  ? g::f16
                          : type == "q8_0" ? g::q8_0
                          : type == "q4_0" ? g::q4_0
                                           : throw std::invalid_argument("unknown type " + type);
  ridgeline::test::make_tiny_llama_gguf(ridgeline::model_preset_by_name(preset), t, 5, version)
      .writer.write(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage =
      "usage: ridgeline_gguf_tool write OUT.gguf PRESET f32|f16|q8_0|q4_0 [VERSION] | dump FILE";
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "dump" && argc == 3) return dump(argv[2]);
    if (cmd == "write" && (argc == 5 || argc == 6)) {
      return write(argv[2], argv[3], argv[4], argc == 6 ? std::stoul(argv[5]) : 3u);
    }
    std::cerr << usage << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "ridgeline_gguf_tool: " << e.what() << "\n";
    return 2;
  } catch (const ridgeline::io_error& e) {
    std::cerr << "ridgeline_gguf_tool: " << e.what() << "\n";
    return 4;  // the ridgeline command's io_failure
  }
}
