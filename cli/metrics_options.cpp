// Shared live-metrics options and session (see metrics_options.hpp).
#include "metrics_options.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <ostream>
#include <stdexcept>
#include <thread>

namespace ridgeline::cli {

void add_metrics_options(CLI::App* cmd, metrics_options& o, const std::string& default_job,
                         bool simulated) {
  o.job = default_job;
  const char* group = "Live metrics (docs/metrics.md)";
  cmd->add_option("--metrics-address", o.address,
                  "Serve Prometheus metrics at HOST:PORT/metrics while running (e.g. "
                  "127.0.0.1:9464; 0.0.0.0:PORT for all interfaces)")
      ->group(group);
  cmd->add_option("--hold", o.hold_seconds, "Keep serving metrics this many seconds after the run")
      ->group(group);
  if (simulated) {
    cmd->add_option("--pace", o.pace,
                    "Replay at this many simulated seconds per wall second (0: flat out)")
        ->group(group);
  }
  cmd->add_option("--push", o.push_url, "Push the final metrics to this Pushgateway URL")
      ->group(group);
  cmd->add_option("--job", o.job, "Pushgateway job label")->capture_default_str()->group(group);
  cmd->add_option("--instance", o.instance, "Pushgateway instance label (default: host name)")
      ->group(group);
  cmd->add_option("--slo-ttft", o.slo_ttft_seconds, "TTFT objective, seconds (goodput)")
      ->capture_default_str()
      ->group(group);
  cmd->add_option("--slo-tpot", o.slo_tpot_seconds, "TPOT objective, seconds (goodput)")
      ->capture_default_str()
      ->group(group);
}

metrics_session::metrics_session(const metrics_options& o, context& ctx)
    : m_options(o), m_ctx(ctx), m_run_start(std::chrono::steady_clock::now()) {
  if (!(o.hold_seconds >= 0 && o.hold_seconds <= 86400)) {
    throw std::invalid_argument("--hold must be in [0, 86400] seconds");
  }
  if (!(o.pace >= 0) || !std::isfinite(o.pace)) {
    throw std::invalid_argument("--pace must be a non-negative factor");
  }
  if (!(o.slo_ttft_seconds > 0) || !(o.slo_tpot_seconds > 0)) {
    throw std::invalid_argument("--slo-ttft and --slo-tpot must be positive seconds");
  }
  if (!o.enabled()) {
    if (o.hold_seconds > 0 || o.pace > 0) {
      throw std::invalid_argument("--hold and --pace need --metrics-address (or --push)");
    }
    return;
  }
  if (!o.push_url.empty()) {
    metrics::parse_gateway_url(o.push_url);  // fail before the run, not after
    if (m_options.instance.empty()) {
      char host[256] = {};
      m_options.instance = gethostname(host, sizeof host - 1) == 0 ? host : "unknown";
    }
  }
  m_live = std::make_unique<metrics::live_metrics>(
      metrics::slo_targets{o.slo_ttft_seconds, o.slo_tpot_seconds});
  if (!o.address.empty()) {
    const auto address = metrics::parse_listen_address(o.address);
    m_exporter = std::make_unique<metrics::exporter>(m_live->registry(), address);
    if (m_ctx.progress) {
      m_ctx.err << "metrics: serving " << m_exporter->url()
                << (address.all_interfaces() ? " (all interfaces)" : "") << "\n";
    }
  }
}

metrics_session::~metrics_session() = default;

void metrics_session::begin_run() {
  m_run_start = std::chrono::steady_clock::now();
}

void metrics_session::pace(double simulated_seconds) {
  if (!(m_options.pace > 0)) return;
  const auto due =
      m_run_start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(simulated_seconds / m_options.pace));
  if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
}

void metrics_session::finish() {
  if (!m_live) return;
  if (!m_options.push_url.empty()) {
    metrics::push_to_gateway(m_live->registry(), m_options.push_url, m_options.job,
                             m_options.instance);
    if (m_ctx.progress) {
      m_ctx.err << "metrics: pushed to " << m_options.push_url << " (job " << m_options.job
                << ", instance " << m_options.instance << ")\n";
    }
  }
  if (m_exporter && m_options.hold_seconds > 0) {
    if (m_ctx.progress) {
      m_ctx.err << "metrics: holding " << m_exporter->url() << " for " << m_options.hold_seconds
                << " s\n";
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(m_options.hold_seconds));
  }
}

}  // namespace ridgeline::cli
