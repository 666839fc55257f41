// Entry point of the `ridgeline` command; everything else is in cli.cpp and *_command.cpp.
#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return ridgeline::cli::run(args, std::cout, std::cerr);
}
