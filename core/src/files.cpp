// Result files (see files.hpp).
#include "ridgeline/core/files.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ridgeline/core/errors.hpp"

namespace ridgeline {
namespace fs = std::filesystem;

namespace {
fs::path temp_beside(const fs::path& path) {
  return path.string() + ".tmp." + std::to_string(::getpid());
}
}  // namespace

void check_writable(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    throw io_error("cannot write " + path.string() + ": it is a directory");
  }
  const fs::path probe = temp_beside(path);
  std::ofstream out(probe, std::ios::binary | std::ios::trunc);
  if (!out) {
    throw io_error("cannot write " + path.string() + ": " + std::strerror(errno));
  }
  out.close();
  fs::remove(probe, ec);
  if (fs::exists(path, ec) && ::access(path.c_str(), W_OK) != 0) {
    // rename() would still replace it when the directory is writable; refuse to be surprising.
    throw io_error("cannot write " + path.string() + ": the existing file is read-only");
  }
}

void write_atomically(const fs::path& path, std::string_view content) {
  const fs::path tmp = temp_beside(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw io_error("cannot write " + path.string() + ": " + std::strerror(errno));
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw io_error("cannot write " + path.string() + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw io_error("cannot replace " + path.string() + ": " + ec.message());
  }
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ridgeline
