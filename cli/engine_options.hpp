// The engine options `replay` and `serve` share (model, weights, KV pool, scheduler limits,
// executor modes): one set of flags, one meaning (docs/serving.md).
#pragma once

#include <string>

#include "ridgeline/replay/replay.hpp"

namespace CLI {
class App;
}

namespace ridgeline::cli {

// Registers the flags on `cmd`; --host-memory lands in `host_memory` (parse with
// apply_host_memory once parsing is done).
void add_engine_options(CLI::App* cmd, replay::replay_options& o, std::string& host_memory);
void apply_host_memory(replay::replay_options& o, const std::string& host_memory);

}  // namespace ridgeline::cli
