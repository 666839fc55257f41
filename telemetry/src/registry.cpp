// The owning registry (see registry.hpp).
#include "ridgeline/telemetry/registry.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <stdexcept>

namespace ridgeline::metrics {

const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = [] {
    std::vector<double> b = {50e-6, 70e-6};
    for (int e = -4; e <= 1; ++e) {
      for (double m : {1.0, 1.5, 2.0, 3.0, 5.0, 7.0}) b.push_back(m * std::pow(10.0, e));
    }
    b.push_back(100.0);
    return b;
  }();
  return buckets;
}

void check_metric_name(const std::string& name, bool is_counter) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("metric name '" + name + "': " + why);
  };
  if (name.rfind("ridgeline_", 0) != 0) fail("must start with ridgeline_");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) fail("only [a-z0-9_] (snake_case, no colons: those are for recording rules)");
  }
  const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
  if (is_counter && !total) fail("a counter must end in _total");
  if (!is_counter && total) fail("only counters end in _total");
}

metrics_registry::metrics_registry() : m_registry(std::make_shared<prometheus::Registry>()) {}

// The prometheus::Registry owns the families and they own the children; both go together.
metrics_registry::~metrics_registry() = default;

metrics_registry::family_entry& metrics_registry::entry(const std::string& name,
                                                        const std::string& help, kind k,
                                                        const std::vector<double>* buckets) {
  auto it = m_families.find(name);
  if (it == m_families.end()) {
    check_metric_name(name, k == kind::counter);
    if (help.empty()) throw std::invalid_argument("metric '" + name + "' needs help text");
    family_entry e{k, help, buckets ? *buckets : std::vector<double>{}, nullptr, {}};
    switch (k) {
      case kind::counter:
        e.family = &prometheus::BuildCounter().Name(name).Help(help).Register(*m_registry);
        break;
      case kind::gauge:
        e.family = &prometheus::BuildGauge().Name(name).Help(help).Register(*m_registry);
        break;
      case kind::histogram:
        e.family = &prometheus::BuildHistogram().Name(name).Help(help).Register(*m_registry);
        break;
    }
    it = m_families.emplace(name, std::move(e)).first;
  } else {
    const family_entry& e = it->second;
    if (e.type != k) throw std::invalid_argument("metric '" + name + "' has another kind");
    if (e.help != help) throw std::invalid_argument("metric '" + name + "' has other help text");
    if (buckets && e.buckets != *buckets) {
      throw std::invalid_argument("histogram '" + name + "' has other buckets");
    }
  }
  return it->second;
}

namespace {
prometheus::Labels to_labels(const label_set& labels) {
  prometheus::Labels out;
  for (const auto& [k, v] : labels) {
    if (k.empty() || k == "le" || k == "quantile" || k.rfind("__", 0) == 0) {
      throw std::invalid_argument("reserved or empty label name '" + k + "'");
    }
    if (!out.emplace(k, v).second) throw std::invalid_argument("label '" + k + "' given twice");
  }
  return out;
}
}  // namespace

prometheus::Counter& metrics_registry::counter(const std::string& name, const std::string& help,
                                               const label_set& labels) {
  const prometheus::Labels checked = to_labels(labels);
  std::lock_guard lock(m_mutex);
  family_entry& e = entry(name, help, kind::counter, nullptr);
  void*& child = e.children[labels];
  if (!child) {
    child = &static_cast<prometheus::Family<prometheus::Counter>*>(e.family)->Add(checked);
  }
  return *static_cast<prometheus::Counter*>(child);
}

prometheus::Gauge& metrics_registry::gauge(const std::string& name, const std::string& help,
                                           const label_set& labels) {
  const prometheus::Labels checked = to_labels(labels);
  std::lock_guard lock(m_mutex);
  family_entry& e = entry(name, help, kind::gauge, nullptr);
  void*& child = e.children[labels];
  if (!child) {
    child = &static_cast<prometheus::Family<prometheus::Gauge>*>(e.family)->Add(checked);
  }
  return *static_cast<prometheus::Gauge*>(child);
}

prometheus::Histogram& metrics_registry::histogram(const std::string& name, const std::string& help,
                                                   const std::vector<double>& buckets,
                                                   const label_set& labels) {
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
      throw std::invalid_argument("histogram '" + name + "': buckets must increase and be finite");
    }
  }
  const prometheus::Labels checked = to_labels(labels);
  std::lock_guard lock(m_mutex);
  family_entry& e = entry(name, help, kind::histogram, &buckets);
  void*& child = e.children[labels];
  if (!child) {
    child =
        &static_cast<prometheus::Family<prometheus::Histogram>*>(e.family)->Add(checked, buckets);
  }
  return *static_cast<prometheus::Histogram*>(child);
}

std::string metrics_registry::exposition() const {
  return prometheus::TextSerializer().Serialize(m_registry->Collect());
}

std::size_t metrics_registry::families() const {
  std::lock_guard lock(m_mutex);
  return m_families.size();
}

std::size_t metrics_registry::children() const {
  std::lock_guard lock(m_mutex);
  std::size_t n = 0;
  for (const auto& [name, e] : m_families) n += e.children.size();
  return n;
}

}  // namespace ridgeline::metrics
