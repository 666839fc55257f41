// serve_http_bench: where `ridgeline serve`'s HTTP layer spends a request's time, hop by hop, on
// the cpu executor over loopback. A plain program printing JSON: for each scenario it starts
// `ridgeline serve --cpu --record`, sends a warm-up and then the measured run with
// `ridgeline load --continuous-usage` (every token its own chunk), stops the server, and joins
// the client's samples with the server's record of the same requests (X-Request-Id; both stamp
// CLOCK_MONOTONIC), as scripts/http_overhead.py does for a GPU run.
//   build-load/bench/ridgeline_serve_http_bench > serve_http.json      # both scenarios, defaults
//   build-load/bench/ridgeline_serve_http_bench --only loaded --concurrency 32
// Scenarios, each on a fresh server (settings below):
//   single: one request at a time on tiny-gpu: every hop on an idle server. Its prompts are 960
//           token ids (a body the size of a real prompt's; the Azure conversation trace's median
//           is 999 tokens) of which all but the last 16 are one shared system prompt, so after
//           the warm-up the engine computes 16 tokens.
//   loaded: --concurrency streams in flight (16) on tiny-mha, outputs of 24 to 72 tokens: every
//           wake-up of the HTTP thread carries a step's worth of tokens of many streams.
// Hops, per finished request (microseconds; p50, p90, p99, mean):
//   uplink      = server arrival (request read, parsed, tokenized) - client's write
//   handoff     = start of the first engine step after the arrival - arrival (the engine thread's
//                 wake-up on an idle server; under load, the step in flight)
//   engine_ttft = first token (end of the step that sampled it) - arrival
//   first_write = server's first content chunk handed to libevent (the socket write follows at
//                 once) - first token
//   downlink    = client's first content read - server's first write
//   http_ttft   = client TTFT - engine TTFT (= uplink + first_write + downlink)
//   http_per_token = client TPOT - engine TPOT; last_write = last write - last token;
//   http_e2e    = client E2E - (last token - arrival): the HTTP layer's share of the last token
// The bench links core only (bench/ may not use tools/: docs/architecture.md); it needs the
// `ridgeline` binary, whose path is compiled in (RIDGELINE_BINARY) or given with --ridgeline.
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ridgeline/bench/child_process.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schemas/serve_record.hpp"
#include "ridgeline/core/statistics.hpp"

namespace {

using nlohmann::json;

// One run against a fresh server. The output is a range: requests end at different times, so a
// closed loop does not move in waves.
struct scenario_spec {
  std::string name, model;
  int vocab = 0, requests = 0, concurrency = 1, prompt = 0, output_min = 0, output_max = 0;
};

struct settings {
  std::string ridgeline = RIDGELINE_BINARY;
  // single: tiny-gpu, whose 1,024-token context holds a prompt the size of a real one (its body
  // is parsed as a GPU server's would be); loaded: tiny-mha, the cpu executor's cheapest model
  // that holds the byte-level tokenizer's ids (a decode step of 16 sequences takes about 15 ms
  // on the cpu executor, the order of a GPU's step period).
  scenario_spec single{"single", "tiny-gpu", 777, 200, 1, 960, 16, 16};
  scenario_spec loaded{"loaded", "tiny-mha", 311, 600, 16, 64, 24, 72};
  int new_tokens = 16;
  int server_cpu = -1, client_cpu = -1;
  bool run_single = true, run_loaded = true;
  std::string workdir;
};

using ridgeline::bench::child_process;
using ridgeline::bench::drain;
using ridgeline::bench::read_line;
using ridgeline::bench::spawn_child;

json summary(std::vector<double> v) {
  if (v.empty()) return {{"count", 0}};
  std::sort(v.begin(), v.end());
  using ridgeline::bench::quantile_sorted;
  double sum = 0;
  for (double x : v) sum += x;
  return {{"count", v.size()},
          {"p50", quantile_sorted(v, 0.5) * 1e6},
          {"p90", quantile_sorted(v, 0.9) * 1e6},
          {"p99", quantile_sorted(v, 0.99) * 1e6},
          {"mean", sum / static_cast<double>(v.size()) * 1e6}};
}

// Runs `ridgeline load` against url; returns the result document's path (throws on failure).
std::string run_load(const settings& s, const scenario_spec& sc, const std::string& url,
                     const std::string& out, int n) {
  const std::string generator =
      "requests=" + std::to_string(n) + ",prompt=fixed:" + std::to_string(s.new_tokens) +
      ",output=uniform:" + std::to_string(sc.output_min) + ":" + std::to_string(sc.output_max) +
      ",system=" + std::to_string(sc.prompt - s.new_tokens) + ",system_prompts=1,seed=1";
  child_process c = spawn_child(
      {s.ridgeline, "load", "--url", url, "--model", sc.model, "--vocab", std::to_string(sc.vocab),
       "--generator", generator, "--concurrency", std::to_string(sc.concurrency),
       "--continuous-usage", "--no-scrape", "--no-progress", "-o", out},
      s.client_cpu, 1);
  const std::string text = drain(c.out_fd);
  close(c.out_fd);
  int status = 0;
  waitpid(c.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("ridgeline load failed:\n" + text);
  }
  return out;
}

// One scenario on a fresh server: warm-up, measured run, the join.
json scenario(const settings& s, const std::filesystem::path& dir, const scenario_spec& sc) {
  const std::string record = (dir / (sc.name + "_record.json")).string();
  child_process server =
      spawn_child({s.ridgeline, "serve", "--cpu", "--model", sc.model, "--ignore-eos", "--address",
                   "127.0.0.1:0", "--record", record},
                  s.server_cpu, 2);
  std::string url;
  for (std::string line; url.empty();) {
    line = read_line(server.out_fd);
    if (line.empty()) {
      kill(server.pid, SIGTERM);
      waitpid(server.pid, nullptr, 0);
      throw std::runtime_error("the server did not start");
    }
    if (const auto at = line.find("listening on http://"); at != std::string::npos) {
      const auto from = at + 13;
      url = line.substr(from, line.find(' ', from) - from);
    }
  }
  // The warm-up (the same seed: the system prompt is the seed's) puts the shared system prompt
  // in the prefix cache and opens the connections; its requests are the run's first ones.
  run_load(s, sc, url, (dir / (sc.name + "_warmup.json")).string(), sc.concurrency);
  const std::string result =
      run_load(s, sc, url, (dir / (sc.name + "_load.json")).string(), sc.requests);
  kill(server.pid, SIGINT);
  const std::string server_log = drain(server.out_fd);
  close(server.out_fd);
  int status = 0;
  waitpid(server.pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("ridgeline serve failed:\n" + server_log);
  }

  const auto rec = ridgeline::schema::read_serve_record(record);
  const json doc = json::parse(ridgeline::read_text_file(result));
  const json& http = doc.at("rows").at(0).at("measured").at("http");
  const json& smp = http.at("samples");
  const double epoch = http.at("epoch_steady_seconds").get<double>();
  const auto ids = smp.at("id").get<std::vector<std::int64_t>>();
  const auto sent = smp.at("sent_seconds").get<std::vector<double>>();
  const auto ends = smp.at("end_seconds").get<std::vector<double>>();
  const auto errors = smp.at("error").get<std::vector<std::string>>();
  const auto offsets = smp.at("chunk_offsets").get<std::vector<std::int64_t>>();
  const auto chunks = smp.at("chunk_seconds").get<std::vector<double>>();

  // The record holds the warm-up's requests too (the same ids): a request is the one whose
  // arrival lies between the sample's write and its end.
  std::multimap<std::string, std::size_t> by_id;
  const auto& q = rec.requests;
  for (std::size_t j = 0; j < q.client_id.size(); ++j) {
    if (q.outcome[j] == "finished") by_id.emplace(q.client_id[j], j);
  }
  const auto& starts = rec.steps.start_seconds;  // in order
  std::map<std::string, std::vector<double>> hops;
  std::int64_t finished = 0, matched = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto a = static_cast<std::size_t>(offsets[i]),
               b = static_cast<std::size_t>(offsets[i + 1]);
    if (errors[i] != "none" || b <= a) continue;
    ++finished;
    const double w = epoch + sent[i], first = epoch + chunks[a], last = epoch + chunks[b - 1];
    std::size_t j = q.client_id.size();
    const auto [lo, hi] = by_id.equal_range(std::to_string(ids[i]));
    for (auto it = lo; it != hi; ++it) {
      const double t = q.arrival_seconds[it->second];
      if (t >= w && t <= epoch + ends[i]) j = it->second;
    }
    if (j == q.client_id.size()) continue;
    ++matched;
    const double arr = q.arrival_seconds[j], ft = q.first_token_seconds[j],
                 lt = q.last_token_seconds[j], fw = q.first_write_seconds[j],
                 lw = q.last_write_seconds[j];
    hops["uplink"].push_back(arr - w);
    const auto next = std::lower_bound(starts.begin(), starts.end(), arr);
    if (next != starts.end() && *next <= ft) hops["handoff"].push_back(*next - arr);
    hops["engine_ttft"].push_back(ft - arr);
    hops["first_write"].push_back(fw - ft);
    hops["downlink"].push_back(first - fw);
    hops["http_ttft"].push_back((first - w) - (ft - arr));
    hops["client_ttft"].push_back(first - w);
    hops["last_write"].push_back(lw - lt);
    hops["http_e2e"].push_back((last - w) - (lt - arr));
    const std::int64_t n = q.output_tokens[j];
    if (n > 1) {
      hops["http_per_token"].push_back(((last - first) - (lt - ft)) / static_cast<double>(n - 1));
    }
  }
  json out = {{"model", sc.model},
              {"requests", sc.requests},
              {"concurrency", sc.concurrency},
              {"prompt_tokens", sc.prompt},
              {"output_tokens", {sc.output_min, sc.output_max}},
              {"finished", finished},
              {"matched", matched},
              {"environment", doc.at("environment")}};
  for (const char* k : {"uplink", "handoff", "engine_ttft", "first_write", "downlink", "http_ttft",
                        "client_ttft", "http_per_token", "last_write", "http_e2e"}) {
    out["hops_us"][k] = summary(hops[k]);
  }
  return out;
}

int run(const settings& s) {
  if (s.new_tokens < 1 || std::min(s.single.prompt, s.loaded.prompt) <= s.new_tokens) {
    throw std::invalid_argument("--prompt and --loaded-prompt must exceed --new-tokens (>= 1)");
  }
  const std::filesystem::path dir = s.workdir.empty()
                                        ? std::filesystem::temp_directory_path() /
                                              ("ridgeline_serve_bench_" + std::to_string(getpid()))
                                        : std::filesystem::path(s.workdir);
  std::filesystem::create_directories(dir);
  json out = {{"benchmark", "serve_http"},
              {"settings",
               {{"new_prompt_tokens", s.new_tokens},
                {"server_cpu", s.server_cpu},
                {"client_cpu", s.client_cpu},
                {"executor", "cpu (tiny-gpu model)"},
                {"client", "ridgeline load --continuous-usage, one worker"}}},
              {"units", "microseconds"}};
  if (s.run_single) out["single"] = scenario(s, dir, s.single);
  if (s.run_loaded) out["loaded"] = scenario(s, dir, s.loaded);
  std::cout << out.dump(2) << "\n";
  if (s.workdir.empty()) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto range = [&](scenario_spec& sc) {
      const std::string v = next();
      const auto colon = v.find(':');
      sc.output_min = std::stoi(v.substr(0, colon));
      sc.output_max = colon == std::string::npos ? sc.output_min : std::stoi(v.substr(colon + 1));
    };
    if (a == "--ridgeline")
      s.ridgeline = next();
    else if (a == "--requests")
      s.single.requests = std::stoi(next());
    else if (a == "--loaded-requests")
      s.loaded.requests = std::stoi(next());
    else if (a == "--concurrency")
      s.loaded.concurrency = std::stoi(next());
    else if (a == "--prompt")
      s.single.prompt = std::stoi(next());
    else if (a == "--loaded-prompt")
      s.loaded.prompt = std::stoi(next());
    else if (a == "--new-tokens")
      s.new_tokens = std::stoi(next());
    else if (a == "--output")
      range(s.single);
    else if (a == "--loaded-output")
      range(s.loaded);
    else if (a == "--server-cpu")
      s.server_cpu = std::stoi(next());
    else if (a == "--client-cpu")
      s.client_cpu = std::stoi(next());
    else if (a == "--only")
      (next() == "single" ? s.run_loaded : s.run_single) = false;
    else if (a == "--workdir")
      s.workdir = next();
    else {
      std::cerr << "usage: ridgeline_serve_http_bench [--requests N] [--loaded-requests N]\n"
                   "  [--concurrency C] [--prompt TOKENS] [--new-tokens N] [--output N[:M]]\n"
                   "  [--loaded-prompt TOKENS] [--loaded-output N[:M]] [--only single|loaded]\n"
                   "  [--server-cpu C] [--client-cpu C] [--ridgeline PATH] [--workdir DIR]\n"
                   "  (CPU -1: not pinned)\n";
      return 2;
    }
  }
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::cerr << "serve_http_bench: " << e.what() << "\n";
    return 1;
  }
}
