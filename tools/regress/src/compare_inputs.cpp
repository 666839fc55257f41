// compare's inputs (see compare_inputs.hpp).
#include "ridgeline/regress/compare_inputs.hpp"

#include <cmath>
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

std::map<double, double> parse_percentile_thresholds(const std::string& text) {
  const std::string what = "--percentile-thresholds";
  std::map<double, double> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? comma : comma - start);
    const auto eq = item.find('=');
    if (item.size() < 2 || item[0] != 'p' || eq == std::string::npos) {
      throw std::invalid_argument(what + ": '" + item + "' is not pNN=VALUE (e.g. p99=10%)");
    }
    const std::string number = item.substr(1, eq - 1);
    std::size_t pos = 0;
    double percent = 0;
    try {
      percent = std::stod(number, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == 0 || pos != number.size() || !(percent > 0 && percent < 100)) {
      throw std::invalid_argument(what + ": '" + item.substr(0, eq) +
                                  "' is not a percentile p0 < pNN < p100");
    }
    // Rounded to 12 digits, so that p99.9 is the quantile 0.999 and not 0.9990000000000001.
    const double q = std::round(percent * 1e10) / 1e12;
    if (out.count(q)) throw std::invalid_argument(what + ": '" + item.substr(0, eq) + "' twice");
    out[q] = parse_threshold(item.substr(eq + 1), what + " " + item.substr(0, eq));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
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
