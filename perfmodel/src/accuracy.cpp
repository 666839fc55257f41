// Accuracy of a step-time model against measured points (see accuracy.hpp).
#include "ridgeline/perfmodel/accuracy.hpp"

#include <cmath>
#include <stdexcept>

namespace ridgeline::planner {

accuracy_report summarize(std::vector<accuracy_row> rows) {
  accuracy_report r;
  r.rows = std::move(rows);
  if (r.rows.empty()) throw std::invalid_argument("accuracy: no points");
  double sum = 0;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    auto& row = r.rows[i];
    if (!(row.point.seconds > 0))
      throw std::invalid_argument("accuracy: measured time must be positive");
    row.error = (row.predicted_seconds - row.point.seconds) / row.point.seconds;
    sum += std::abs(row.error);
    if (std::abs(row.error) > r.worst) {
      r.worst = std::abs(row.error);
      r.worst_index = i;
    }
  }
  r.mape = sum / static_cast<double>(r.rows.size());
  return r;
}

accuracy_report accuracy(const std::vector<sweep_point>& points, const step_time_model& model) {
  std::vector<accuracy_row> rows;
  for (const auto& p : points) {
    rows.push_back({p, model.step_seconds(shape_of(p)), 0});
  }
  return summarize(std::move(rows));
}

}  // namespace ridgeline::planner
