// One owner for every Prometheus metric family and child of a process. prometheus-cpp hands out
// references from Family::Add() that dangle after Remove(); here nothing is ever removed while the
// registry lives, so a reference obtained once stays valid until the registry is destroyed:
//   metrics_registry r;
//   prometheus::Counter& c = r.counter("ridgeline_preemptions_total", "help", {});
//   c.Increment();                           // hot path: no lookup, no allocation
//   std::string text = r.exposition();       // text format 0.0.4, what /metrics serves
// Names must carry the ridgeline_ prefix; counters must end in _total, other kinds must not.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace ridgeline::metrics {

using label_set = std::vector<std::pair<std::string, std::string>>;

// Bucket upper bounds (seconds) for latency histograms: 1, 1.5, 2, 3, 5 and 7 times each power
// of ten (six per decade) from 50 microseconds to 100 seconds, so sub-millisecond decode steps
// and multi-second TTFTs under load both land in distinct buckets.
const std::vector<double>& latency_buckets();

class metrics_registry {
 public:
  metrics_registry();
  ~metrics_registry();
  metrics_registry(const metrics_registry&) = delete;
  metrics_registry& operator=(const metrics_registry&) = delete;

  // The child of family `name` with `labels`, created on first use (same name and labels: the
  // same object). Throws std::invalid_argument on a bad name, a kind or help text that differs
  // from the family's first registration, or histogram buckets that differ.
  prometheus::Counter& counter(const std::string& name, const std::string& help,
                               const label_set& labels = {});
  prometheus::Gauge& gauge(const std::string& name, const std::string& help,
                           const label_set& labels = {});
  prometheus::Histogram& histogram(const std::string& name, const std::string& help,
                                   const std::vector<double>& buckets,
                                   const label_set& labels = {});

  // For an exposer or a push gateway client (they hold a weak_ptr).
  std::shared_ptr<prometheus::Registry> handle() const { return m_registry; }
  // Everything in the Prometheus text exposition format.
  std::string exposition() const;
  std::size_t families() const;
  std::size_t children() const;

 private:
  enum class kind { counter, gauge, histogram };
  struct family_entry {
    kind type;
    std::string help;
    std::vector<double> buckets;
    void* family = nullptr;               // prometheus::Family<T>*, owned by m_registry
    std::map<label_set, void*> children;  // T*, owned by the family
  };
  family_entry& entry(const std::string& name, const std::string& help, kind k,
                      const std::vector<double>* buckets);

  std::shared_ptr<prometheus::Registry> m_registry;
  mutable std::mutex m_mutex;  // guards m_families (registration only; not the hot path)
  std::map<std::string, family_entry> m_families;
};

// Throws std::invalid_argument unless `name` is a valid ridgeline_ metric name for `is_counter`.
void check_metric_name(const std::string& name, bool is_counter);

}  // namespace ridgeline::metrics
