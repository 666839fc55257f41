// compare's inputs (see compare_inputs.hpp).
#include "ridgeline/regress/compare_inputs.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "ridgeline/core/files.hpp"
#include "ridgeline/regress/compare.hpp"

namespace ridgeline::bench {

double parse_threshold(const std::string& text, const std::string& what) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos == 0) throw std::invalid_argument(what + ": '" + text + "' is not a number");
  if (pos < text.size() && text.substr(pos) == "%")
    v /= 100.0;
  else if (pos != text.size())
    throw std::invalid_argument(what + ": '" + text + "' is not a number");
  if (!(v > 0 && v < 10)) throw std::invalid_argument(what + ": '" + text + "' must be in (0, 10)");
  return v;
}

result_set load_result_list(const std::string& list, time_metric metric) {
  std::vector<result_set> parts;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    const std::string file = list.substr(start, comma == std::string::npos ? comma : comma - start);
    if (!file.empty()) parts.push_back(load_results(file, metric));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (parts.empty()) throw std::invalid_argument("no result file in '" + list + "'");
  for (std::size_t i = 1; i < parts.size(); ++i) {
    for (const auto& d : environment_differences(parts[0].environment, parts[i].environment)) {
      if (d.blocking) {
        throw std::invalid_argument(parts[0].source + " and " + parts[i].source +
                                    " come from different environments (" + d.field + ")");
      }
    }
  }
  return merge_results(std::move(parts));
}

std::map<std::string, double> load_thresholds(const std::string& path) {
  std::map<std::string, double> out;
  const auto j = nlohmann::json::parse(read_text_file(path), nullptr, false);
  if (!j.is_object()) {
    throw std::invalid_argument(path + ": expected a JSON object of name: threshold");
  }
  for (const auto& [name, v] : j.items()) {
    if (!name.empty() && name[0] == '_') continue;
    if (!v.is_number()) throw std::invalid_argument(path + ": '" + name + "' is not a number");
    out[name] = parse_threshold(v.dump(), path + ": " + name);
  }
  return out;
}

}  // namespace ridgeline::bench
