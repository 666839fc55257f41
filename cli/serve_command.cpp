// `ridgeline serve`: parses the arguments and runs tools/serve, an OpenAI-compatible server
// (completions and chat completions, streamed as server-sent events) over the engine's serving
// loop on this GPU, or on the cpu executor with a tiny model without one. Ctrl-C stops it.
// docs/serving.md.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cli.hpp"
#include "engine_options.hpp"
#include "ridgeline/serve/server.hpp"

namespace ridgeline::cli {
namespace {

struct serve_args {
  serve::server_options o;
  std::string host_memory;
  std::string weights;  // --weights: empty when not given
};

void run_serve_command(serve_args& a, context& ctx) {
  apply_host_memory(a.o.engine, a.host_memory);
  a.o.engine.weights = engine_weights_of(a.weights);
  a.o.handle_signals = true;
  serve::server s(a.o, [&ctx](const std::string& line) { ctx.err << line << "\n" << std::flush; });
  const auto colon = a.o.address.rfind(':');
  ctx.err << "serve: listening on http://" << a.o.address.substr(0, colon) << ":" << s.port()
          << " (POST /v1/completions, /v1/chat/completions; GET /v1/models, /health, /metrics)\n"
          << std::flush;
  s.run();
  ctx.err << "serve: stopped\n" << std::flush;
}

}  // namespace

void register_serve(CLI::App& app, context& ctx) {
  auto args = std::make_shared<serve_args>();
  auto& o = args->o;
  auto* cmd = app.add_subcommand(
      "serve", "An OpenAI-compatible server (streaming) over the engine on this GPU");
  cmd->footer(
      "Examples:\n"
      "  ridgeline serve --model llama-3-8b --address 127.0.0.1:8000\n"
      "  ridgeline serve --model llama-3-8b --checkpoint ~/models/Meta-Llama-3-8B-Instruct\n"
      "  ridgeline serve --model llama-2-7b --weights int4   # random weights, int4 group 128\n"
      "  curl -N localhost:8000/v1/completions -d '{\"prompt\":\"Hi\",\"max_tokens\":8,\"stream\":true}'\n"
      "Without a GPU it serves the cpu executor on a tiny model and says so. docs/serving.md");
  add_engine_options(cmd, o.engine, args->host_memory);
  add_weights_option(cmd, args->weights);
  cmd->add_option("--address", o.address,
                  "host:port to listen on (loopback unless told otherwise; port 0: any free one)")
      ->capture_default_str();
  cmd->add_option("--served-model-name", o.served_model_name,
                  "The model name the API shows and expects (default: the preset's)");
  cmd->add_option("--tokenizer", o.tokenizer,
                  "tokenizer.json (default: the checkpoint's; else a byte-level tokenizer)");
  cmd->add_option("--max-waiting", o.max_waiting,
                  "Requests waiting for their first token before new ones get 429")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", o.max_body_bytes, "Largest request body (413 above)")
      ->capture_default_str();
  cmd->add_option("--max-header-bytes", o.max_header_bytes, "Largest request header block")
      ->capture_default_str();
  cmd->add_option("--read-timeout", o.read_timeout_seconds,
                  "Seconds a client has to send a request's headers and body")
      ->capture_default_str();
  cmd->add_option("--record", o.record_path,
                  "On exit, write the server's timing of every request (ridgeline.serve_record/v1; "
                  ".json.gz compresses): engine and socket stamps, keyed by X-Request-Id");
  cmd->add_option("--max-logprobs", o.engine.top_logprobs,
                  "Most log-probability alternatives a request may ask per token (completions "
                  "'logprobs', chat 'top_logprobs'); the executor computes that many for every "
                  "token. 0: off, and requests that ask get a 400")
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", o.ignore_eos_default,
                "End-of-sequence tokens never stop a request (benchmarks with random weights)");
  cmd->callback([args, &ctx] { run_serve_command(*args, ctx); });
}

}  // namespace ridgeline::cli
