// The server's /metrics as `ridgeline load` reads it: a parser of the Prometheus text exposition
// format (0.0.4: comments, `name{label="value",...} value [timestamp]`, +Inf/-Inf/NaN), and the
// series the load report keeps, ridgeline's, vLLM's and SGLang's names, each summed over its
// label sets (several models or engines behind one server add up).
//   std::vector<prom_sample> s = parse_prometheus_text(body);   // std::invalid_argument, line
//   named std::map<std::string, double> v = pick_server_series(s);   // name -> value, present ones
//   only
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ridgeline::load {

struct prom_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
std::vector<prom_sample> parse_prometheus_text(std::string_view text);

// The names kept, as servers expose them. vLLM's counters may carry a _total suffix (newer
// prometheus_client) or not; both spellings are matched and reported under the listed name.
const std::vector<std::string>& server_series_names();
std::map<std::string, double> pick_server_series(const std::vector<prom_sample>& samples);

}  // namespace ridgeline::load
