// Child processes for the benchmarks that drive `ridgeline` commands over loopback
// (bench/load_client_bench.cpp, bench/serve_http_bench.cpp): fork + exec pinned to a CPU with one
// output stream piped back, and reading that pipe by line or to its end.
#pragma once

#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace ridgeline::bench {

struct child_process {
  pid_t pid = -1;
  int out_fd = -1;  // the child's piped stream (stdout or stderr)
};

// fork + exec `args` (args[0] a path) with the child pinned to `cpu` (-1: not pinned) and its file
// descriptor `fd_to_pipe` (STDOUT_FILENO or STDERR_FILENO) piped back.
inline child_process spawn_child(const std::vector<std::string>& args, int cpu, int fd_to_pipe) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      sched_setaffinity(0, sizeof set, &set);
    }
    dup2(fds[1], fd_to_pipe);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    std::perror("execv");
    _exit(127);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

// One line from `fd`, without its newline ("" at the end of the stream).
inline std::string read_line(int fd) {
  std::string line;
  char c = 0;
  while (read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

// Everything left on `fd`, to the end of the stream.
inline std::string drain(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n = 0;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

}  // namespace ridgeline::bench
