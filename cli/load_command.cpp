// `ridgeline load`: parses the arguments, runs tools/load (a workload sent to any OpenAI-compatible
// server, measured from the client side, the server's /metrics scraped alongside), draws the
// progress bar and writes the JSON (ridgeline.kv/v1 with executor "http") and the table.
// `ridgeline load merge A.json B.json -o C.json` merges runs from their raw samples;
// `ridgeline load test-server` serves a fixed schedule to check a load setup against.
// docs/load.md.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/load/load.hpp"
#include "ridgeline/load/test_server.hpp"

namespace ridgeline::cli {
namespace {

struct load_args {
  load::load_options o;
  std::string rates, concurrencies, timeout, scrape_interval = "1s";
  bool no_stream = false, insecure = false, no_ignore_eos = false, no_scrape = false;
  std::string output = "ridgeline-load.json";
  bool json = false;
};

struct merge_args {
  std::vector<std::string> inputs;
  std::string output;
  bool json = false;
};

struct server_args {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::string first_token = "50ms", interval = "10ms", fault = "none", duration, send_log;
  std::int32_t tokens_per_chunk = 1, default_output = 16, capacity = 0, fault_every = 1;
  bool no_chunked = false;
};

std::vector<double> double_list(const std::string& s, const char* what) {
  std::vector<double> out;
  for (const auto& item : split_list(s)) {
    std::size_t pos = 0;
    double v = 0;
    try {
      v = std::stod(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos != item.size())
      throw std::invalid_argument(std::string("--") + what + ": '" + item + "' is not a number");
    out.push_back(v);
  }
  return out;
}

void write_and_print(const load::load_run& run, const std::string& output, bool json,
                     context& ctx) {
  const nlohmann::json doc = load::document_of(run);
  // One line: every chunk's arrival is in it (-o FILE.json.gz compresses it).
  const std::string text = doc.dump() + "\n";
  if (!output.empty()) write_atomically(output, text);
  if (json) {
    ctx.out << text;
  } else {
    ctx.out << load::table_of(run);
    if (!output.empty()) ctx.out << "results written to " << output << "\n";
  }
  ctx.out << std::flush;
}

volatile std::sig_atomic_t g_interrupted = 0;
void on_interrupt(int) {
  g_interrupted = 1;
}

void run_load_command(load_args& a, context& ctx) {
  a.o.rates = double_list(a.rates, "rate");
  for (int c : int_list(a.concurrencies, "concurrency")) a.o.concurrencies.push_back(c);
  if (!a.timeout.empty()) a.o.timeout_seconds = a.timeout == "0" ? 0 : parse_seconds(a.timeout);
  a.o.scrape_interval = parse_seconds(a.scrape_interval);
  a.o.stream = !a.no_stream;
  a.o.verify_tls = !a.insecure;
  a.o.ignore_eos = !a.no_ignore_eos;
  a.o.scrape = !a.no_scrape;
  if (!a.output.empty()) check_writable(a.output);
  const load::load_setup setup = load::configure(a.o);
  load::load_hooks hooks;
  bool bar_drawn = false;
  auto end_bar = [&ctx, &bar_drawn] {
    if (bar_drawn) ctx.err << "\n";
    bar_drawn = false;
  };
  hooks.note = [&ctx, &end_bar](const std::string& line) {
    end_bar();
    if (ctx.progress) ctx.err << line << "\n" << std::flush;
  };
  if (progress_bar_wanted(ctx)) {
    hooks.progress = [&ctx, &bar_drawn](const std::string& label, double f) {
      const int width = 30;
      const int filled = static_cast<int>(f * width);
      ctx.err << "\rload: " << label << " [" << std::string(static_cast<std::size_t>(filled), '#')
              << std::string(static_cast<std::size_t>(width - filled), '.') << "] "
              << static_cast<int>(f * 100) << "%   " << std::flush;
      bar_drawn = true;
    };
  }
  // Ctrl-C (or SIGTERM) ends the run early; what was measured is still written.
  g_interrupted = 0;
  auto old_int = std::signal(SIGINT, on_interrupt);
  auto old_term = std::signal(SIGTERM, on_interrupt);
  hooks.interrupted = [] { return g_interrupted != 0; };
  load::load_run run;
  try {
    run = load::run(setup, hooks);
  } catch (...) {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
    throw;
  }
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  end_bar();
  write_and_print(run, a.output, a.json, ctx);
}

void run_merge_command(const merge_args& a, context& ctx) {
  if (a.inputs.size() < 2)
    throw std::invalid_argument("load merge: give at least two result files");
  if (!a.output.empty()) check_writable(a.output);
  load::load_run run = load::read_load_run(a.inputs[0]);
  for (std::size_t i = 1; i < a.inputs.size(); ++i) {
    run = load::merge(run, load::read_load_run(a.inputs[i]), i == 1 ? a.inputs[0] : "merged",
                      a.inputs[i]);
  }
  write_and_print(run, a.output, a.json, ctx);
}

volatile std::sig_atomic_t g_stop_server = 0;
void on_stop_signal(int) {
  g_stop_server = 1;
}

void run_test_server(const server_args& a, context& ctx) {
  load::test_server_options o;
  o.host = a.host;
  o.port = a.port;
  o.first_token_seconds = a.first_token == "0" ? 0 : parse_seconds(a.first_token);
  o.token_interval_seconds = a.interval == "0" ? 0 : parse_seconds(a.interval);
  o.tokens_per_chunk = a.tokens_per_chunk;
  o.default_output_tokens = a.default_output;
  o.capacity = a.capacity;
  o.chunked = !a.no_chunked;
  o.inject = load::parse_fault(a.fault);
  if (a.fault_every < 1) throw std::invalid_argument("--fault-every must be at least 1");
  o.fault_every = a.fault_every;
  o.record_sends = !a.send_log.empty();
  const double duration = a.duration.empty() ? 0 : parse_seconds(a.duration);
  if (!a.send_log.empty()) check_writable(a.send_log);
  load::test_server server(o);
  ctx.out << "test server listening on " << server.url() << " (first token after "
          << format_seconds(o.first_token_seconds) << ", a token every "
          << format_seconds(o.token_interval_seconds) << ", " << o.tokens_per_chunk << " per chunk"
          << (o.capacity > 0 ? ", " + std::to_string(o.capacity) + " streams at most"
                             : std::string())
          << ")\n"
          << std::flush;
  g_stop_server = 0;
  auto old_int = std::signal(SIGINT, on_stop_signal);
  auto old_term = std::signal(SIGTERM, on_stop_signal);
  const auto start = std::chrono::steady_clock::now();
  while (g_stop_server == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (duration > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >= duration)
      break;
  }
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  server.stop();
  const auto st = server.stats();
  ctx.out << "test server: " << st.requests << " requests, " << st.completed << " completed, "
          << st.chunks << " chunks, at most " << st.max_running << " streaming and "
          << st.max_waiting << " waiting\n";
  if (!a.send_log.empty()) {
    nlohmann::json log = nlohmann::json::object();
    for (const auto& [id, l] : server.send_log()) {
      log[id] = {{"received", l.received},
                 {"admitted", l.admitted},
                 {"chunk_writes", l.chunk_writes},
                 {"chunk_due", l.chunk_due}};
    }
    write_atomically(a.send_log, nlohmann::json({{"clock", "steady_clock seconds since its epoch"},
                                                 {"requests", log}})
                                         .dump() +
                                     "\n");
  }
}

}  // namespace

void register_load(CLI::App& app, context& ctx) {
  auto args = std::make_shared<load_args>();
  auto& o = args->o;
  auto* cmd = app.add_subcommand(
      "load", "Send a workload to any OpenAI-compatible server: TTFT, TPOT, ITL, E2E, goodput");
  cmd->footer(
      "Examples:\n"
      "  ridgeline load --url http://127.0.0.1:8000 --model meta-llama/Llama-3.1-8B-Instruct \\\n"
      "      --generator requests=500,rate=4,prompt=fixed:512,output=fixed:128 -o run.json\n"
      "  ridgeline load --url http://127.0.0.1:8000 --model M --trace "
      "data/traces/azure_llm_2023_conv.csv \\\n"
      "      --duration 300 --rate 1,2,4,8\n"
      "  ridgeline load --url http://127.0.0.1:8000 --model M --generator requests=300 \\\n"
      "      --find-max --slo ttft_p99=2s,tpot_p99=50ms\n"
      "  ridgeline load merge a.json b.json -o both.json\n"
      "docs/load.md");
  cmd->require_subcommand(0, 1);
  cmd->add_option("--url", o.url, "Server URL: http(s)://HOST:PORT[/PREFIX]");
  cmd->add_option("--model", o.model, "The model name the server serves (its /v1/models id)");
  cmd->add_option("--endpoint", o.endpoint,
                  "completions (/v1/completions) or chat (/v1/chat/completions)")
      ->capture_default_str();
  auto* trace = cmd->add_option("--trace", o.trace, "Trace file: .jsonl Mooncake, .csv Azure");
  auto* gen =
      cmd->add_option("--generator", o.generator, "Generator spec key=value,... (docs/kv.md)");
  trace->excludes(gen);
  cmd->add_option("--mooncake-block", o.mooncake_block, "Tokens per Mooncake hash id")
      ->capture_default_str();
  cmd->add_option("--rate-scale", o.rate_scale,
                  "The workload's own arrivals at this multiple of its rate")
      ->capture_default_str();
  cmd->add_option("--start", o.start_seconds, "Window start, seconds into the trace")
      ->capture_default_str();
  cmd->add_option("--duration", o.duration_seconds,
                  "Window length in trace seconds (0: to the end)")
      ->capture_default_str();
  cmd->add_option("--requests", o.requests,
                  "At most this many requests (sessions) (0: all in the window)")
      ->capture_default_str();
  cmd->add_option("--rate", args->rates,
                  "Poisson arrivals at R req/s (open loop); a list sweeps: 1,2,4");
  cmd->add_option("--concurrency", args->concurrencies,
                  "N requests in flight (closed loop); a list sweeps: 1,8,64");
  cmd->add_flag("--find-max", o.find_max, "Search the highest Poisson rate that meets --slo");
  cmd->add_option("--slo", o.slo, "ttft_p99=2s,tpot_p99=50ms[,e2e_p90=10s][,goodput=0.9]");
  cmd->add_option("--find-max-start", o.find_max_start, "First rate --find-max tries (req/s)")
      ->capture_default_str();
  cmd->add_option("--find-max-precision", o.find_max_precision,
                  "--find-max stops when (lowest failing - highest met) / highest met <= this")
      ->capture_default_str();
  cmd->add_option("--find-max-levels", o.find_max_levels,
                  "--find-max runs at most this many levels")
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of --rate's Poisson arrivals")->capture_default_str();
  cmd->add_option("--workers", o.workers, "Client threads, one event loop each")
      ->capture_default_str();
  cmd->add_option("--api-key", o.api_key, "Sent as Authorization: Bearer KEY");
  cmd->add_option("--header", o.headers, "Extra header KEY:VALUE on every request (repeat it)");
  cmd->add_option(
      "--timeout", args->timeout,
      "Per attempt: to open the connection, and from the write to the response's end (off)");
  cmd->add_option("--retries", o.retries, "Retries after connect errors, timeouts, 429 and 5xx (0)")
      ->capture_default_str();
  cmd->add_flag("--no-stream", args->no_stream, "Ask for whole responses (TTFT = E2E, no ITL)");
  cmd->add_flag("--insecure", args->insecure, "Do not verify the server's TLS certificate");
  cmd->add_option("--temperature", o.temperature,
                  "Sampling temperature sent with every request (0: greedy, as vLLM's bench serve "
                  "sends; negative: none sent, the server's default)")
      ->capture_default_str();
  cmd->add_flag("--no-ignore-eos", args->no_ignore_eos,
                "Do not send ignore_eos: true (outputs may end before the workload's lengths)");
  cmd->add_flag(
      "--continuous-usage", o.continuous_usage,
      "Ask for usage in every chunk (vLLM's continuous_usage_stats): exact tokens per chunk");
  cmd->add_option("--tokenizer", o.tokenizer,
                  "tokenizer.json: text prompts of exact token counts, tokens per chunk counted");
  cmd->add_option("--vocab", o.vocab,
                  "Token-id prompts: ids modulo this (the server's vocabulary)");
  cmd->add_option("--itl-rule", o.itl_rule, "first | split | chunk: ITL of multi-token chunks")
      ->capture_default_str();
  cmd->add_flag("--no-scrape", args->no_scrape, "Do not scrape the server's /metrics");
  cmd->add_option("--metrics-url", o.metrics_url,
                  "Where the server's metrics are (default: URL's origin/metrics)");
  cmd->add_option("--scrape-interval", args->scrape_interval, "Between /metrics scrapes")
      ->capture_default_str();
  cmd->add_option("-o,--output", args->output, "Result JSON path ('' to skip; .json.gz compresses)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the result JSON on stdout instead of the table");

  auto margs = std::make_shared<merge_args>();
  auto* merge =
      cmd->add_subcommand("merge", "Merge load results from their raw samples (exact percentiles)");
  merge->add_option("inputs", margs->inputs, "Result files of ridgeline load")->required();
  merge->add_option("-o,--output", margs->output, "Merged result JSON ('' to skip)");
  merge->add_flag("--json", margs->json, "Print the merged JSON on stdout instead of the table");
  merge->callback([margs, &ctx] { run_merge_command(*margs, ctx); });

  auto sargs = std::make_shared<server_args>();
  auto* server = cmd->add_subcommand(
      "test-server", "Serve a fixed token schedule (OpenAI API) to check a load setup against");
  server->add_option("--host", sargs->host, "Address to listen on")->capture_default_str();
  server->add_option("--port", sargs->port, "Port (0: any free one)")->capture_default_str();
  server
      ->add_option("--first-token", sargs->first_token, "Delay of the first token after admission")
      ->capture_default_str();
  server->add_option("--interval", sargs->interval, "Between tokens")->capture_default_str();
  server->add_option("--tokens-per-chunk", sargs->tokens_per_chunk, "Tokens in each streamed chunk")
      ->capture_default_str();
  server
      ->add_option("--default-output", sargs->default_output,
                   "Tokens when a request has no max_tokens")
      ->capture_default_str();
  server->add_option("--capacity", sargs->capacity, "Streams at once, the rest wait (0: no limit)")
      ->capture_default_str();
  server
      ->add_option("--fault", sargs->fault,
                   "none, 500, 429, malformed, hang, close, error-event, refuse")
      ->capture_default_str();
  server->add_option("--fault-every", sargs->fault_every, "The fault hits every n-th request")
      ->capture_default_str();
  server->add_flag("--no-chunked", sargs->no_chunked,
                   "Stream without chunked encoding (close at the end)");
  server->add_option("--duration", sargs->duration,
                     "Stop after this long (default: at SIGINT/SIGTERM)");
  server->add_option("--send-log", sargs->send_log,
                     "Write every chunk's write time here (JSON) at the end");
  server->callback([sargs, &ctx] { run_test_server(*sargs, ctx); });

  cmd->callback([cmd, merge, server, args, &ctx] {
    if (merge->parsed() || server->parsed()) return;
    run_load_command(*args, ctx);
  });
}

}  // namespace ridgeline::cli
