// The engine options `replay` and `serve` share (model, weights, KV pool, scheduler limits,
// executor modes): one set of flags, one meaning (docs/serving.md). add_weights_option is the one
// definition of --weights for the commands that build an engine (replay, sweep, diverge run; each
// registers it beside its other flags): the engine's weight format (engine_options::weights,
// docs/engine.md).
#pragma once

#include <optional>
#include <string>

#include "ridgeline/perfmodel/weights.hpp"

#include "ridgeline/replay/replay.hpp"

namespace CLI {
class App;
}

namespace ridgeline::cli {

// Registers the flags on `cmd`; --host-memory lands in `host_memory` (parse with
// apply_host_memory once parsing is done).
void add_engine_options(CLI::App* cmd, replay::replay_options& o, std::string& host_memory);
void apply_host_memory(replay::replay_options& o, const std::string& host_memory);

// --weights {bf16,fp8,int8,int4} into `weights` (left empty when not given); CLI11 refuses other
// values with the list.
void add_weights_option(CLI::App* cmd, std::string& weights);
// engine_options::weights from the flag's value: unset when empty (the engine then runs bf16, or
// a quantized checkpoint in its own format).
std::optional<planner::weight_format> engine_weights_of(const std::string& weights);

}  // namespace ridgeline::cli
