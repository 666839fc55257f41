// Result files (see files.hpp).
#include "ridgeline/core/files.hpp"

#include <unistd.h>
#include <zlib.h>

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

namespace {
bool gzip_name(const fs::path& path) { return path.extension() == ".gz"; }

std::string gzip(std::string_view content, const fs::path& path) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer, so `gunzip` and zcat read the file.
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw io_error("cannot write " + path.string() + ": zlib could not start");
  }
  std::string out(deflateBound(&z, static_cast<uLong>(content.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(content.data()));
  z.avail_in = static_cast<uInt>(content.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw io_error("cannot write " + path.string() + ": gzip failed");
  return out;
}
}  // namespace

void write_atomically(const fs::path& path, std::string_view text) {
  const std::string packed = gzip_name(path) ? gzip(text, path) : std::string();
  const std::string_view content = gzip_name(path) ? std::string_view(packed) : text;
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
  std::string raw = ss.str();
  if (raw.size() < 2 || static_cast<unsigned char>(raw[0]) != 0x1f ||
      static_cast<unsigned char>(raw[1]) != 0x8b) {
    return raw;
  }
  // gzip (large results such as a replay's per-step series are kept as FILE.json.gz).
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) throw io_error("cannot read " + path.string() + ": zlib");
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  int rc = Z_OK;
  char chunk[1 << 16];
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof(chunk);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof(chunk) - z.avail_out);
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    throw io_error("cannot read " + path.string() + ": corrupt or truncated gzip data");
  }
  return out;
}

}  // namespace ridgeline
