// `ridgeline plan`: per GPU model and tensor-parallel degree, the largest batch that fits and the
// largest that meets the TPOT SLO, the highest request rate that meets every SLO term (percentile
// terms at their percentile, a goodput term named as one; simulated with the engine's scheduler
// and KV manager), GPUs needed for a target load and cost per million tokens; one side-by-side
// table and the degrees weighed.
//   ridgeline plan --model llama-3-8b --gpu h100-sxm,l40s,a10g --workload SPEC|TRACE (continued)
//       --slo ttft_p99=2s,tpot_p99=50ms --qps 20 --price 2.5
//   ridgeline plan fit --sweep docs/results/h100-sxm_sweep.json --gpu h100-sxm
//       --kernels docs/results/h100-sxm_decode_kernels.json -o FIT.json
//   ridgeline plan accuracy --sweep MEASURED.json --gpu PROFILE [--fit FIT.json] | --run
//   ridgeline plan fit --serving RUN.json.gz[,RUN2...] [--sweep ...] --gpu h100-sxm -o FIT.json
//   ridgeline plan accuracy --serving RUN.json.gz[,RUN2...] [--find-max LOAD.json.gz]
//       [--gpu PROFILE] [--fit FIT.json [--leave-one-out]] [--bounds tpot_mean=5%,...]
//       [--trace-dir DIR]
//   ridgeline plan gpus
// Works without a GPU from the embedded profiles. The pipeline is tools/plan (plan.hpp); this file
// parses, calls it, and prints or writes. docs/plan.md has the model and its fit.
#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli.hpp"
#include "ridgeline/core/files.hpp"
#include "ridgeline/core/text.hpp"
#include "ridgeline/kv/kv.hpp"
#include "ridgeline/plan/plan.hpp"
#include "ridgeline/plan/serving_accuracy.hpp"
#include "ridgeline/sweep/sweep.hpp"

namespace ridgeline::cli {
namespace {

using nlohmann::json;
using namespace ridgeline::planner;

struct plan_args {
  std::string model;
  std::string gpus;
  std::string workload;
  std::string slo_text;
  double qps = 0;
  std::string price;
  std::string weights = "bf16";
  std::string kv_dtype = "bf16";
  std::string fit;
  std::int64_t requests = 1000;
  std::int32_t max_running = 256;
  std::int64_t max_batched_tokens = 8192;
  std::int32_t block_tokens = 16;
  double headroom = 0.2;
  std::optional<double> goodput_target;
  std::string tensor_parallel = "1,2,4,8";
  std::string output, csv, markdown;
  bool json_out = false;
};

// "2.5" for every GPU, or "h100-sxm=2.5,l40s=1.1".
std::map<std::string, double> parse_prices(const std::string& text) {
  std::map<std::string, double> out;
  for (const auto& item : split_list(text, ',')) {
    const auto eq = item.find('=');
    const std::string key = eq == std::string::npos ? "*" : item.substr(0, eq);
    const std::string v = eq == std::string::npos ? item : item.substr(eq + 1);
    double x = 0;
    try {
      std::size_t pos = 0;
      x = std::stod(v, &pos);
      if (pos != v.size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw std::invalid_argument("--price: '" + item + "' is not $/h (e.g. 2.5 or h100-sxm=2.5)");
    }
    if (!(x > 0)) throw std::invalid_argument("--price: '" + item + "' must be positive");
    out[key] = x;
  }
  return out;
}

// One line per reason the rate search dropped or could not serve requests of the workload, with
// the flag that changes it: the cut to --requests, prompts + outputs beyond the model's context
// (every replay rejects them), and further rejections of a row (its KV cache).
std::vector<std::string> plan_drop_lines(const model_preset& m, const workload& w,
                                         std::int64_t source_requests, const json& doc) {
  std::vector<std::string> out;
  const std::int64_t n = std::ssize(w.requests);
  auto share = [](std::int64_t k, std::int64_t of) {
    return format_percent(static_cast<double>(k) /
                          static_cast<double>(std::max<std::int64_t>(of, 1)));
  };
  if (source_requests > n) {
    out.push_back("plan: " + kv::format_count(source_requests - n) + " of " +
                  kv::format_count(source_requests) + " requests of " + w.source + " (" +
                  share(source_requests - n, source_requests) +
                  ") not replayed: the rate search replays the first " + kv::format_count(n) +
                  " (--requests N; 0: all)");
  }
  std::int64_t beyond = 0;
  for (const auto& r : w.requests)
    if (r.prompt_tokens + r.output_tokens > m.max_context) ++beyond;
  if (beyond > 0) {
    out.push_back("plan: " + kv::format_count(beyond) + " of " + kv::format_count(n) +
                  " requests (" + share(beyond, n) + ") rejected in every replay: prompt + output "
                  "beyond " + m.name + "'s context of " + kv::format_count(m.max_context) +
                  " tokens; the SLO terms count them as never served (no flag lifts a model's "
                  "context: --workload with shorter requests)");
  }
  for (const auto& r : doc.at("rows")) {
    const std::int64_t rejected = r.value("rejected_requests", std::int64_t{0});
    if (rejected <= beyond) continue;
    out.push_back("plan: " + r.at("gpu").get<std::string>() + ": " +
                  kv::format_count(rejected - beyond) + " more of " + kv::format_count(n) +
                  " requests (" + share(rejected - beyond, n) + ") rejected at its max rate: "
                  "prompt + output larger than the KV cache beside the weights; counted as never "
                  "served (--weights, --kv-dtype or --tp leave more memory for KV)");
  }
  return out;
}

void run_plan(const plan_args& a, context& ctx) {
  if (a.model.empty()) throw std::invalid_argument("plan: --model is required");
  if (a.gpus.empty()) throw std::invalid_argument("plan: --gpu is required (e.g. h100-sxm,l40s)");
  if (a.workload.empty()) throw std::invalid_argument("plan: --workload TRACE|SPEC is required");
  if (a.slo_text.empty())
    throw std::invalid_argument("plan: --slo ttft_p99=...,tpot_p99=... is required");
  if (a.qps < 0) throw std::invalid_argument("--qps must not be negative");
  if (!(a.headroom >= 0 && a.headroom < 1))
    throw std::invalid_argument("--headroom must be in [0, 1)");
  const model_preset& m = model_preset_by_name(a.model);
  plan_options o;
  o.s = parse_slo(a.slo_text, a.goodput_target);
  o.tensor_parallel.clear();
  for (const auto& item : split_list(a.tensor_parallel, ',')) {
    std::size_t used = 0;
    int tp = 0;
    try {
      tp = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || tp < 1 || tp > 64)
      throw std::invalid_argument("--tp: '" + item + "' is not a GPU count from 1 to 64");
    o.tensor_parallel.push_back(tp);
  }
  if (o.tensor_parallel.empty()) throw std::invalid_argument("--tp lists no degree");
  o.prices = parse_prices(a.price);
  o.memory.weights = parse_weight_format(a.weights);
  o.memory.kv_dtype = parse_dtype(a.kv_dtype);
  o.memory.block_tokens = a.block_tokens;
  o.memory.max_batched_tokens = a.max_batched_tokens;
  o.memory.max_running = a.max_running;
  o.qps = a.qps;
  o.max_running = a.max_running;
  o.max_batched_tokens = a.max_batched_tokens;
  o.block_tokens = a.block_tokens;
  o.headroom = a.headroom;
  const std::vector<resolved_gpu> gpus = resolve_gpus(split_list(a.gpus, ','));
  if (!a.fit.empty()) o.fit = fitted_parameters_from_json(json::parse(read_text_file(a.fit)));
  for (const auto& p : {a.output, a.csv, a.markdown})
    if (!p.empty()) check_writable(p);

  std::int64_t source_requests = 0;
  const workload w = load_plan_workload(a.workload, a.requests, &source_requests);
  std::function<void(const std::string&)> progress;
  if (ctx.progress)
    progress = [&ctx](const std::string& line) { ctx.err << "plan: " << line << "\n"; };
  const json doc = plan_document(m, gpus, w, o, progress);
  const std::string text = doc.dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (!a.csv.empty()) write_atomically(a.csv, plan_csv(doc["rows"]));
  const std::string md = plan_markdown(doc);
  if (!a.markdown.empty()) write_atomically(a.markdown, md);
  ctx.out << (a.json_out ? text : md);
  // What the rate search left out or could never serve; on stderr under --json.
  std::ostream& notes = a.json_out ? ctx.err : ctx.out;
  bool first = true;
  for (const auto& line : plan_drop_lines(m, w, source_requests, doc)) {
    notes << (first && !a.json_out ? "\n" : "") << line << "\n";
    first = false;
  }
}

// ---------------------------------------------------------------------------- fit, accuracy

struct fit_args {
  std::vector<std::string> sweeps;
  std::vector<std::string> serving;
  std::string kernels;
  std::string gpu;
  std::string output;
  bool json_out = false;
};

void run_fit(const fit_args& a, context& ctx) {
  std::vector<std::string> serving;
  for (const auto& item : a.serving)
    for (const auto& p : split_list(item, ',')) serving.push_back(p);
  if (a.sweeps.empty() && serving.empty())
    throw std::invalid_argument("plan fit: --sweep FILE or --serving RUN[,RUN...] is required");
  if (a.gpu.empty()) throw std::invalid_argument("plan fit: --gpu PROFILE is required");
  if (!a.output.empty()) check_writable(a.output);
  const gpu_profile g = measured_gpu(a.gpu);
  const fitted_parameters f = fit_files(a.sweeps, serving, g, a.kernels);
  const std::string text = to_json(f).dump(2) + "\n";
  if (!a.output.empty()) write_atomically(a.output, text);
  if (a.json_out) {
    ctx.out << text;
    return;
  }
  ctx.out << fit_text(f);
  if (!a.output.empty()) ctx.out << "fit written to " << a.output << "\n";
}

struct accuracy_args {
  std::string sweep;
  bool run = false;
  std::string model = "llama-2-7b";
  std::string gpu;
  std::string fit;
  std::string output, csv, sweep_output;
  bool json_out = false;
  double max_mape = 0, max_worst = 0;  // exit 1 when exceeded (0: no check)
  // --serving: measured serving runs against the simulator (serving_accuracy.hpp).
  std::vector<std::string> serving, find_max;
  std::string trace_dir, bounds, markdown;
  double max_rate_bound = 0.10;
  std::int64_t kv_blocks = 0;
  bool model_given = false;
  bool leave_one_out = false;
};

void run_serving_accuracy(const accuracy_args& a, context& ctx) {
  for (const auto& p : {a.output, a.markdown})
    if (!p.empty()) check_writable(p);
  if (!a.csv.empty() || !a.sweep_output.empty())
    throw std::invalid_argument("plan accuracy --serving: --csv and --sweep-output are for sweeps");
  if (!(a.max_rate_bound >= 0)) throw std::invalid_argument("--max-rate-bound must not be negative");
  if (a.kv_blocks < 0) throw std::invalid_argument("--kv-blocks must not be negative");
  serving_accuracy_options o;
  for (const auto& item : a.serving)
    for (const auto& p : split_list(item, ',')) o.runs.push_back(p);
  for (const auto& item : a.find_max)
    for (const auto& p : split_list(item, ',')) o.find_max.push_back(p);
  o.gpu = a.gpu;
  if (!a.fit.empty()) {
    o.fit = fitted_parameters_from_json(read_json_file(a.fit));
    o.fit_label = a.fit;
  }
  o.leave_one_out = a.leave_one_out;
  o.trace_dir = a.trace_dir;
  if (a.model_given) o.model = a.model;
  o.kv_blocks = a.kv_blocks;
  o.bounds = parse_serving_bounds(a.bounds);
  o.max_rate_bound = a.max_rate_bound;
  if (ctx.progress) o.progress = [&ctx](const std::string& l) { ctx.err << "plan accuracy: " << l << "\n"; };
  const schema::serving_accuracy_document d = serving_accuracy(o);
  const std::string text = schema::to_text(schema::to_json(d));
  if (!a.output.empty()) write_atomically(a.output, text);
  const std::string md = serving_accuracy_table(d);
  if (!a.markdown.empty()) write_atomically(a.markdown, md);
  ctx.out << (a.json_out ? text : md);
  if (!d.passed)
    throw regression_found("plan accuracy: " + std::to_string(d.broken.size()) +
                           (d.broken.size() == 1 ? " bound" : " bounds") + " broken: " +
                           d.broken.front());
}

void run_accuracy(const accuracy_args& a, context& ctx) {
  const bool serving = !a.serving.empty() || !a.find_max.empty();
  if (int(!a.sweep.empty()) + int(a.run) + int(serving) != 1)
    throw std::invalid_argument(
        "plan accuracy: give one of --sweep FILE, --run or --serving RUN[,RUN...] / --find-max FILE");
  if (serving) return run_serving_accuracy(a, ctx);
  if (!a.trace_dir.empty() || !a.bounds.empty() || !a.markdown.empty() || a.kv_blocks > 0 ||
      a.leave_one_out)
    throw std::invalid_argument(
        "plan accuracy: --trace-dir, --bounds, --markdown, --kv-blocks "
        "and --leave-one-out are for --serving");
  if (a.gpu.empty()) throw std::invalid_argument("plan accuracy: --gpu PROFILE is required");
  for (const auto& p : {a.output, a.csv, a.sweep_output})
    if (!p.empty()) check_writable(p);
  const resolved_gpu g = resolve_gpu(a.gpu);
  json sweep;
  if (a.run) {
    bench::sweep_options o;
    o.model = a.model;
    if (g.measured) o.profile = g.profile;
    if (ctx.progress) o.progress = [&](const std::string& s) { ctx.err << "sweep: " << s << "\n"; };
    bench::validate_sweep_options(o);
    sweep = bench::run_sweep(o);
    if (!a.sweep_output.empty()) write_atomically(a.sweep_output, sweep.dump(2) + "\n");
  } else {
    sweep = read_json_file(a.sweep);
  }
  const std::optional<fitted_parameters> fit =
      a.fit.empty()
          ? std::nullopt
          : std::optional<fitted_parameters>(fitted_parameters_from_json(read_json_file(a.fit)));
  const accuracy_result r = plan_accuracy(sweep, a.run ? "run on this GPU" : a.sweep, g, fit);
  const json doc = accuracy_document(r);
  if (!a.output.empty()) write_atomically(a.output, doc.dump(2) + "\n");
  if (!a.csv.empty()) write_atomically(a.csv, accuracy_csv(r));
  ctx.out << (a.json_out ? doc.dump(2) + "\n" : accuracy_table(r));
  check_accuracy_limits(r.report, a.max_mape, a.max_worst);
}

}  // namespace

void register_plan(CLI::App& app, context& ctx) {
  auto a = std::make_shared<plan_args>();
  auto* cmd = app.add_subcommand(
      "plan", "Batch size per GPU model and GPUs needed for a load under a latency SLO");
  cmd->footer(
      "Examples:\n"
      "  ridgeline plan --model llama-3-8b --gpu h100-sxm,h200,l40s,a10g \\\n"
      "      --workload rate=4,requests=500,prompt=lognormal:1024:0.8,output=lognormal:256:0.8 \\\n"
      "      --slo ttft_p99=2s,tpot_p99=50ms --qps 40 --price h100-sxm=2.5,h200=3.5,l40s=1.2\n"
      "  ridgeline plan gpus            # the GPUs it knows and where their figures come from\n"
      "  ridgeline plan fit --sweep docs/results/h100-sxm_sweep.json --gpu h100-sxm \\\n"
      "      --kernels docs/results/h100-sxm_decode_kernels.json -o FIT.json\n"
      "  ridgeline plan accuracy --sweep MEASURED.json --gpu PROFILE [--fit FIT.json]\n"
      "  ridgeline plan accuracy --serving docs/results/serving/run1/azure.json.gz\n"
      "docs/plan.md: the model, its fit, and what datasheet-derated means");
  cmd->add_option("--model", a->model, "Model preset");
  cmd->add_option("--gpu", a->gpus, "GPU keys or profile paths, comma-separated");
  cmd->add_option("--workload", a->workload,
                  "Trace (.jsonl Mooncake, .csv Azure) or generator spec");
  cmd->add_option("--slo", a->slo_text,
                  "Terms that must all hold: ttft_pQ=T,tpot_pQ=T (met at that percentile), "
                  "goodput=F with plain limits ttft=T,tpot=T; T in seconds, or with ms/us");
  cmd->add_option("--qps", a->qps, "Target load, requests/s: GPUs needed");
  cmd->add_option("--price", a->price, "$/GPU-hour: 2.5 or key=2.5,key2=1.1");
  cmd->add_option("--weights", a->weights, "Weight format: bf16, fp16, fp32, fp8, int8, int4")
      ->capture_default_str();
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache dtype")->capture_default_str();
  cmd->add_option("--fit", a->fit, "Efficiencies file (ridgeline.fit/v1) instead of the embedded");
  cmd->add_option("--requests", a->requests, "Requests of the workload to replay")
      ->capture_default_str();
  cmd->add_option("--max-running", a->max_running, "Largest batch considered")
      ->capture_default_str();
  cmd->add_option("--max-batched-tokens", a->max_batched_tokens, "Token budget per step")
      ->capture_default_str();
  cmd->add_option("--block-size", a->block_tokens, "Tokens per KV block")->capture_default_str();
  cmd->add_option("--headroom", a->headroom, "Share of each GPU's max rate left unused")
      ->capture_default_str();
  cmd->add_option("--goodput", a->goodput_target,
                  "A goodput term: this share of requests within both limits (as --slo "
                  "goodput=F; 0.9 when --slo gives only plain limits ttft=T,tpot=T)");
  cmd->add_option("--tp", a->tensor_parallel,
                  "Tensor-parallel degrees (GPUs per replica) to weigh; the cheapest that meets "
                  "the SLO is chosen")
      ->capture_default_str();
  cmd->add_option("-o,--output", a->output, "Write the plan JSON (ridgeline.plan/v1)");
  cmd->add_option("--csv", a->csv, "Write the rows as CSV");
  cmd->add_option("--markdown", a->markdown, "Write the table as Markdown");
  cmd->add_flag("--json", a->json_out, "Print the JSON instead of the table");

  auto f = std::make_shared<fit_args>();
  auto* fit = cmd->add_subcommand(
      "fit", "Fit the step-time model's efficiencies to sweeps and serving runs' step records");
  fit->add_option("--sweep", f->sweeps, "ridgeline.sweep/v1 file (repeat for several models)");
  fit->add_option("--serving", f->serving,
                  "`ridgeline replay` results (ridgeline.kv/v1 with measured steps), "
                  "comma-separated: every recorded step is a fit point, and the loop's gap between "
                  "steps is measured from them");
  fit->add_option("--kernels", f->kernels,
                  "ridgeline.roofline/v1 file with traced decode kernels: the fixed per-step cost "
                  "(default: 30 us, not measured)");
  fit->add_option("--gpu", f->gpu, "Measured profile the sweeps ran on (key or path)");
  fit->add_option("-o,--output", f->output, "Write the fit (ridgeline.fit/v1)");
  fit->add_flag("--json", f->json_out, "Print the fit JSON");
  fit->callback([f, &ctx] { run_fit(*f, ctx); });

  auto c = std::make_shared<accuracy_args>();
  auto* acc = cmd->add_subcommand("accuracy", "Predicted against measured step times, per point");
  acc->add_option("--sweep", c->sweep, "Measured ridgeline.sweep/v1 file");
  acc->add_flag("--run", c->run, "Run the sweep on this GPU first (needs CUDA)");
  auto* model_opt = acc->add_option("--model", c->model,
                                    "Model preset of --run, or of a load over HTTP (--serving)")
                        ->capture_default_str();
  acc->add_option("--sweep-output", c->sweep_output, "Keep the sweep of --run here");
  acc->add_option("--gpu", c->gpu, "Profile of the GPU (key or path) for the ceilings");
  acc->add_option("--fit", c->fit, "Efficiencies (ridgeline.fit/v1); default: the embedded");
  acc->add_option("--max-mape", c->max_mape, "Fail (exit 1) when MAPE exceeds this (0.05 = 5%)");
  acc->add_option("--max-worst", c->max_worst, "Fail (exit 1) when the worst |error| exceeds this");
  acc->add_option("-o,--output", c->output, "Write the report JSON (ridgeline.accuracy/v1)");
  acc->add_option("--csv", c->csv, "Write the points as CSV");
  acc->add_flag("--json", c->json_out, "Print the JSON instead of the table");
  acc->add_option("--serving", c->serving,
                  "Measured serving runs (replay or load, ridgeline.kv/v1), comma-separated: "
                  "serving metrics against the simulator; -o writes ridgeline.serving_accuracy/v1");
  acc->add_option("--find-max", c->find_max,
                  "`ridgeline load --find-max` results: the max rate under their SLO against "
                  "plan's rate search");
  acc->add_option("--trace-dir", c->trace_dir,
                  "Where to look for a run's trace when its path is not found as written");
  acc->add_option("--bounds", c->bounds,
                  "Median-error bounds (exit 1 when broken) replacing the defaults: "
                  "tpot_mean=5%,e2e_p50=5%,e2e_p90=5%,ttft_p50=10%,ttft_p90=10%; METRIC=none drops one");
  acc->add_option("--max-rate-bound", c->max_rate_bound, "Bound on the max-rate error")
      ->capture_default_str();
  acc->add_option("--kv-blocks", c->kv_blocks,
                  "KV pool in blocks of the server a load measured (a load cannot see it)");
  acc->add_option("--markdown", c->markdown, "Write the --serving tables as Markdown");
  acc->add_flag("--leave-one-out", c->leave_one_out,
                "With --serving and a --fit of serving runs: predict each run the fit saw with "
                "the fit of the same inputs without it (held out)");
  acc->callback([c, model_opt, &ctx] {
    c->model_given = model_opt->count() > 0;
    run_accuracy(*c, ctx);
  });

  auto* list = cmd->add_subcommand("gpus", "GPUs the planner knows: measured and datasheet");
  list->callback([&ctx] { ctx.out << gpus_table(); });

  cmd->callback([a, cmd, fit, acc, list, &ctx] {
    if (fit->parsed() || acc->parsed() || list->parsed()) return;
    run_plan(*a, ctx);
  });
}

}  // namespace ridgeline::cli
