// ridgeline.accuracy/v1 (`ridgeline plan accuracy`: a step-time model's prediction against each
// point of a measured sweep) and ridgeline.peer/v1 (bench/peers/torch_decode.py: PyTorch's decode
// step time per batch and context, the baseline `ridgeline sweep --peer` compares against; its
// environment is the Python script's own, not ridgeline's block). docs/results-formats.md lists
// every field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ridgeline/core/schemas/environment.hpp"

namespace ridgeline::schema {

inline constexpr const char* k_accuracy_schema = "ridgeline.accuracy/v1";
inline constexpr const char* k_peer_schema = "ridgeline.peer/v1";

struct accuracy_point {
  std::string phase;
  std::int64_t batch = 0, context = 0;
};

struct accuracy_row {
  accuracy_point point;
  double measured_seconds = 0, predicted_seconds = 0, error = 0;
};

struct accuracy_document {
  environment env;
  std::string sweep, model, gpu, ceilings, step_time_model;  // config
  std::map<std::string, std::string> definitions;              // config.definitions
  std::int64_t points = 0;                                     // summary
  double mape = 0, worst_abs_error = 0;
  accuracy_point worst_point;
  std::vector<accuracy_row> rows;
};

struct peer_step_seconds {
  double median = 0, p10 = 0, p90 = 0, min = 0, max = 0;
  std::int64_t count = 0;
};

struct peer_row {
  std::int64_t batch = 0, context = 0;
  std::string phase;
  std::optional<std::string> skipped;             // then no timing
  std::optional<peer_step_seconds> step_seconds;  // present exactly when not skipped
  std::optional<double> tokens_per_second;
};

struct peer_document {
  std::string gpu;           // environment.gpu: the device name
  nlohmann::json environment;  // torch, cuda, driver, ... as the script wrote them
  nlohmann::json config;     // model shape, peer, dtype, compile, graphs, ...
  std::vector<peer_row> rows;
};

accuracy_document parse_accuracy(const nlohmann::json& doc, std::string_view source);
accuracy_document read_accuracy(const std::filesystem::path& path);
nlohmann::json to_json(const accuracy_document& doc);
peer_document parse_peer(const nlohmann::json& doc, std::string_view source);
peer_document read_peer(const std::filesystem::path& path);

}  // namespace ridgeline::schema
