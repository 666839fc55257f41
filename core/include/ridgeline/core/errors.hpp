// Error kinds the CLI maps to exit codes (docs/cli.md): std::invalid_argument for bad input (2),
// no_device_error when a command needs a GPU it does not have (3), io_error for files that cannot
// be read or written (4); anything else is a runtime failure (1).
#pragma once

#include <stdexcept>
#include <string>

namespace ridgeline {

struct no_device_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace ridgeline
