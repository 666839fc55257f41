// Live-metrics options shared by the long-running commands (kv and sweep):
//   --metrics-address 127.0.0.1:9464   serve GET /metrics while the command runs (loopback unless
//                                      0.0.0.0 or [::] is written out)
//   --hold SECONDS                     keep serving after the run so Prometheus scrapes the end
//   --pace FACTOR                      simulated commands: run at FACTOR x real time (0: flat out)
//   --push URL --job NAME --instance NAME   push the final values to a Pushgateway
//   --slo-ttft SECONDS --slo-tpot SECONDS   SLO targets for goodput and the SLO panels
// A command creates one metrics_session; live() is nullptr when no option asks for metrics, so a
// run without them pays nothing.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cli.hpp"
#include "ridgeline/telemetry/exporter.hpp"
#include "ridgeline/telemetry/live_metrics.hpp"

namespace ridgeline::cli {

struct metrics_options {
  std::string address;  // empty: no exporter
  double hold_seconds = 0;
  double pace = 0;  // simulated seconds per wall second; 0: as fast as possible
  std::string push_url;
  std::string job;
  std::string instance;  // default: the host name
  double slo_ttft_seconds = 2.0;
  double slo_tpot_seconds = 0.1;
  bool enabled() const { return !address.empty() || !push_url.empty(); }
};

// Adds the options above to `cmd`; `default_job` is the Pushgateway job when --job is not given.
// `simulated` adds --pace (only simulated commands have a clock to pace).
void add_metrics_options(CLI::App* cmd, metrics_options& o, const std::string& default_job,
                         bool simulated);

class metrics_session {
 public:
  // Validates the options and starts the exporter (throws std::invalid_argument, or
  // std::runtime_error when the address cannot be bound).
  metrics_session(const metrics_options& o, context& ctx);
  ~metrics_session();
  metrics::live_metrics* live() { return m_live.get(); }
  // A simulated run starts (its clock restarts at zero): pacing starts again from now.
  void begin_run();
  // Sleeps until wall time since begin_run() catches up with simulated_seconds / pace.
  void pace(double simulated_seconds);
  // Pushes (when --push) and holds the exporter up (when --hold); call once, after the run.
  void finish();

 private:
  metrics_options m_options;
  context& m_ctx;
  std::unique_ptr<metrics::live_metrics> m_live;
  std::unique_ptr<metrics::exporter> m_exporter;
  std::chrono::steady_clock::time_point m_run_start;
};

}  // namespace ridgeline::cli
