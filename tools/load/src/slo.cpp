// SLO evaluation (slo.hpp): core's grammar (schema::parse_load_slo) and verdict
// (schema::judge_load_level) on a level's records, worded one line per term.
#include "ridgeline/load/slo.hpp"

#include <stdexcept>

#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/text.hpp"

namespace ridgeline::load {

slo_spec parse_slo(const std::string& text) {
  try {
    return schema::parse_load_slo(text, "--slo");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) +
                                " (e.g. ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,goodput=0.9)");
  }
}

slo_result evaluate(const slo_spec& slo, const std::vector<request_record>& records, itl_rule rule,
                    double duration_seconds) {
  // The level's requests as core's judge reads them: the kv/v1 columns the row writes, and the
  // finished requests' token gaps under the level's ITL rule. The records are every request the
  // level sent or meant to send: the ones never sent because it stopped early count as failures
  // too (a saturated level does not pass by dropping its tail).
  schema::serving_requests columns;
  std::vector<double> itl;
  for (const auto& r : records) {
    columns.outcome.emplace_back(r.finished() ? "finished" : name(r.error));
    columns.ttft_seconds.push_back(ttft_of(r));
    columns.tpot_seconds.push_back(tpot_of(r));
    columns.e2e_seconds.push_back(e2e_of(r));
    append_itl(r, rule, itl);
  }
  slo_result out{schema::judge_load_level(slo, columns, itl, duration_seconds), {}};
  for (auto& v : out.terms) {
    const auto& t = v.term;
    if (t.metric == "goodput") {
      out.lines.push_back("goodput " + format_percent(v.measured) + " of requests " +
                          (v.met ? ">= " : "< ") + format_percent(t.limit) +
                          (v.met ? ", met" : ", missed"));
      v.term.text = "goodput=" + format("%g", t.limit);  // as load's files name it
      continue;
    }
    out.lines.push_back(
        t.text + ": " +
        (v.failed_requests() ? std::string("failed requests") : format_seconds(v.measured)) +
        (v.met ? " <= " : " > ") + format_seconds(t.limit) + (v.met ? ", met" : ", missed"));
  }
  return out;
}

}  // namespace ridgeline::load
