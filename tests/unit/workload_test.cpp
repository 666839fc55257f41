// Workloads: trace parsers (good input, and every malformed input gives one line with the line
// number), generators (seeded, reproducible, the shapes asked for), chat sessions and shared
// system prompts. Inputs that once crashed or misparsed under libFuzzer live here too.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "ridgeline/engine/workload.hpp"
#include "ridgeline/core/errors.hpp"

using namespace ridgeline;

namespace {

const std::string k_traces = std::string(RIDGELINE_SOURCE_DIR) + "/data/traces/";

workload mooncake(const std::string& text, std::int32_t block = 4) {
  std::istringstream in(text);
  return parse_mooncake_trace(in, "t.jsonl", block);
}
workload azure(const std::string& text) {
  std::istringstream in(text);
  return parse_azure_trace(in, "t.csv");
}

// The error message of f(), or "" when it did not throw invalid_argument.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::vector<token_id> prompt(const workload_request& r) {
  std::vector<token_id> t;
  materialize_prompt(r, t);
  return t;
}

}  // namespace

TEST(MooncakeTrace, EqualIdsGiveEqualTokensAndPartialBlocksTheirOwn) {
  const auto w = mooncake(
      "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [5, 6, 7]}\n"
      "\n"
      "{\"timestamp\": 1500, \"input_length\": 8, \"output_length\": 1, \"hash_ids\": [5, 6]}\n"
      "{\"timestamp\": 2000, \"input_length\": 6, \"output_length\": 2, \"hash_ids\": [9, 7]}\n");
  ASSERT_EQ(w.requests.size(), 3u);
  EXPECT_DOUBLE_EQ(w.requests[1].arrival_seconds, 1.5);
  EXPECT_EQ(w.requests[0].output_tokens, 3);
  const auto a = prompt(w.requests[0]), b = prompt(w.requests[1]), c = prompt(w.requests[2]);
  ASSERT_EQ(a.size(), 10u);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin()));  // ids 5, 6 shared
  EXPECT_FALSE(std::equal(c.begin(), c.begin() + 4, a.begin()));
  // id 7 is a partial block of 2 in both: its first 2 tokens are the same.
  EXPECT_EQ(a[8], c[4]);
  EXPECT_EQ(a[9], c[5]);
}

TEST(MooncakeTrace, MalformedLinesNameTheLine) {
  const std::string good =
      "{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [1]}\n";
  struct bad {
    std::string line, says;
  };
  const std::vector<bad> cases = {
      {"{\"timestamp\": 0, \"input_length\": 4", "bad JSON"},
      {"[1, 2]", "expected a JSON object"},
      {"{\"input_length\": 4, \"output_length\": 1, \"hash_ids\": [1]}",
       "missing field 'timestamp'"},
      {"{\"timestamp\": 0, \"output_length\": 1, \"hash_ids\": [1]}",
       "missing field 'input_length'"},
      {"{\"timestamp\": 0, \"input_length\": 4, \"hash_ids\": [1]}",
       "missing field 'output_length'"},
      {"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1}", "missing field 'hash_ids'"},
      {"{\"timestamp\": 0, \"input_length\": -4, \"output_length\": 1, \"hash_ids\": []}",
       "at least 1"},
      {"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 0, \"hash_ids\": [1]}",
       "at least 1"},
      {"{\"timestamp\": 0, \"input_length\": 99999999999, \"output_length\": 1, \"hash_ids\": [1]}",
       "absurd"},
      {"{\"timestamp\": 0, \"input_length\": 18446744073709551615, \"output_length\": 1, "
       "\"hash_ids\": [1]}",
       "absurd"},
      {"{\"timestamp\": 0, \"input_length\": 4.5, \"output_length\": 1, \"hash_ids\": [1]}",
       "must be an integer"},
      {"{\"timestamp\": \"x\", \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [1]}",
       "must be a number"},
      {"{\"timestamp\": -1, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [1]}",
       "out of range"},
      {"{\"timestamp\": 0, \"input_length\": 9, \"output_length\": 1, \"hash_ids\": [1]}",
       "needs 3 blocks"},
      {"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [-1]}",
       "non-negative"},
      {"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [\"a\"]}",
       "non-negative"},
      {"{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": 3}",
       "must be an array"},
  };
  for (const auto& c : cases) {
    const auto msg = error_of([&] { mooncake(good + good + c.line + "\n" + good); });
    EXPECT_EQ(msg.rfind("t.jsonl:3: ", 0), 0u) << c.line << " -> " << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << c.line << " -> " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(AzureTrace, ParsesTimestampsRelativeToFirstRow) {
  const auto w = azure(
      "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
      "2023-11-16 18:15:46.6805900,374,44\r\n"
      "2023-11-16 18:15:50.9951690,396,109\r\n"
      "2023-11-17 00:00:00,5,1\r\n");
  ASSERT_EQ(w.requests.size(), 3u);
  EXPECT_DOUBLE_EQ(w.requests[0].arrival_seconds, 0);
  EXPECT_NEAR(w.requests[1].arrival_seconds, 4.314579, 1e-6);
  EXPECT_NEAR(w.requests[2].arrival_seconds, 5 * 3600 + 44 * 60 + 13.31941, 1e-5);
  EXPECT_EQ(w.requests[1].prompt_tokens, 396);
  EXPECT_EQ(w.requests[1].output_tokens, 109);
  // Unique prompts: no shared first tokens.
  EXPECT_NE(prompt(w.requests[0])[0] * 32000 + prompt(w.requests[0])[1],
            prompt(w.requests[1])[0] * 32000 + prompt(w.requests[1])[1]);
}

TEST(AzureTrace, MalformedRowsNameTheLine) {
  const std::string head = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,2\n";
  struct bad {
    std::string line, says;
  };
  const std::vector<bad> cases = {
      {"2023-11-16 18:15:47.0,10", "expected 3 columns"},
      {"2023-11-16 18:15:47.0,10,2,4", "got 4"},
      {"2023-11-16 18:15:47.0,-3,2", "out of range"},
      {"2023-11-16 18:15:47.0,10,0", "out of range"},
      {"2023-11-16 18:15:47.0,10,99999999999", "out of range"},
      {"2023-11-16 18:15:47.0,ten,2", "not an integer"},
      {"2023-11-16 18:15:47.0,10 ,2", "not an integer"},
      {"2023-13-16 18:15:47.0,10,2", "bad TIMESTAMP"},
      {"yesterday,10,2", "bad TIMESTAMP"},
      {"2023-11-16 18:15:47.,10,2", "bad TIMESTAMP"},
      {"2023-11-16 18:15:45.0,10,2", "back before the first"},
  };
  for (const auto& c : cases) {
    const auto msg = error_of([&] { azure(head + c.line + "\n"); });
    EXPECT_EQ(msg.rfind("t.csv:3: ", 0), 0u) << c.line << " -> " << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << c.line << " -> " << msg;
  }
  EXPECT_NE(error_of([] { azure("time,a,b\n"); }).find("t.csv:1: expected the header"),
            std::string::npos);
  EXPECT_NE(error_of([] { azure(""); }).find("empty trace"), std::string::npos);
}

TEST(Traces, ShippedFilesLoad) {
  const auto m = load_trace(k_traces + "mooncake_synthetic_trace.jsonl");
  EXPECT_EQ(m.requests.size(), 3993u);
  const auto a = load_trace(k_traces + "azure_llm_2023_conv.csv");
  EXPECT_EQ(a.requests.size(), 19366u);
  EXPECT_GT(a.requests.back().arrival_seconds, 3400);
  EXPECT_THROW(load_trace(k_traces + "missing.csv"), io_error);
  EXPECT_THROW(load_trace(k_traces + "README.md"), std::invalid_argument);
}

TEST(Generator, SeededReproducibleAndShaped) {
  auto c = parse_generator_spec(
      "arrival=poisson,rate=10,requests=20000,prompt=uniform:100:300,"
      "output=fixed:7,seed=5");
  const auto w = generate_workload(c);
  const auto w2 = generate_workload(c);
  ASSERT_EQ(w.requests.size(), 20000u);
  double sum_prompt = 0;
  for (std::size_t i = 0; i < w.requests.size(); ++i) {
    ASSERT_EQ(w.requests[i].arrival_seconds, w2.requests[i].arrival_seconds);
    ASSERT_EQ(prompt(w.requests[i]), prompt(w2.requests[i]));
    ASSERT_GE(w.requests[i].prompt_tokens, 100);
    ASSERT_LE(w.requests[i].prompt_tokens, 300);
    ASSERT_EQ(w.requests[i].output_tokens, 7);
    sum_prompt += static_cast<double>(w.requests[i].prompt_tokens);
  }
  EXPECT_NEAR(sum_prompt / 20000, 200, 2);
  // Poisson at 10/s: mean gap 0.1 s, cv 1.
  EXPECT_NEAR(w.requests.back().arrival_seconds / 20000, 0.1, 0.004);
  c.seed = 6;
  EXPECT_NE(generate_workload(c).requests[0].arrival_seconds, w.requests[0].arrival_seconds);
}

TEST(Generator, GammaArrivalsHaveTheAskedBurstiness) {
  const auto w =
      generate_workload(parse_generator_spec("arrival=gamma,rate=4,cv=3,requests=40000"));
  std::vector<double> gaps;
  for (std::size_t i = 1; i < w.requests.size(); ++i) {
    gaps.push_back(w.requests[i].arrival_seconds - w.requests[i - 1].arrival_seconds);
  }
  double mean = 0, var = 0;
  for (double g : gaps) mean += g;
  mean /= static_cast<double>(gaps.size());
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= static_cast<double>(gaps.size());
  EXPECT_NEAR(mean, 0.25, 0.015);
  EXPECT_NEAR(std::sqrt(var) / mean, 3.0, 0.25);
}

TEST(Generator, ChatSessionsGrowTheConversation) {
  const auto w = generate_workload(parse_generator_spec(
      "sessions=20,turns=fixed:3,think=fixed:5,message=fixed:10,output=fixed:6,system=32,"
      "system_prompts=2,rate=1"));
  ASSERT_EQ(w.requests.size(), 60u);
  for (std::size_t s = 0; s < 20; ++s) {
    const auto& t0 = w.requests[3 * s];
    const auto& t1 = w.requests[3 * s + 1];
    const auto& t2 = w.requests[3 * s + 2];
    EXPECT_FALSE(t0.follow_up);
    EXPECT_TRUE(t1.follow_up);
    EXPECT_DOUBLE_EQ(t1.think_seconds, 5);
    EXPECT_EQ(t0.next_turn, static_cast<std::int64_t>(3 * s + 1));
    EXPECT_EQ(t2.next_turn, -1);
    EXPECT_EQ(t0.prompt_tokens, 32 + 10);
    EXPECT_EQ(t1.prompt_tokens, 42 + 6 + 10);
    EXPECT_EQ(t2.prompt_tokens, 58 + 6 + 10);
    // Turn 2's prompt starts with turn 1's prompt, then turn 1's answer.
    const auto p1 = prompt(t1), p2 = prompt(t2);
    EXPECT_TRUE(std::equal(p1.begin(), p1.end(), p2.begin()));
    for (int k = 0; k < 6; ++k) {
      EXPECT_EQ(p2[p1.size() + static_cast<std::size_t>(k)], segment_token(t1.output_seed, k));
    }
  }
  // Two system prompts shared by the sessions.
  std::set<token_id> firsts;
  for (std::size_t s = 0; s < 20; ++s) firsts.insert(prompt(w.requests[3 * s])[0]);
  EXPECT_EQ(firsts.size(), 2u);
}

TEST(Generator, BadSpecsSayWhat) {
  EXPECT_NE(error_of([] { parse_generator_spec("rate=-1"); }).find("rate"), std::string::npos);
  EXPECT_NE(error_of([] { parse_generator_spec("bogus=1"); }).find("unknown key 'bogus'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_generator_spec("prompt=zipf:3"); }).find("unknown distribution"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_generator_spec("prompt=uniform:5"); }).find("needs 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_generator_spec("arrival=bursty"); }).find("poisson or gamma"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_generator_spec("requests"); }).find("key=value"),
            std::string::npos);
}

// Inputs libFuzzer found (fuzz/trace_fuzz.cpp); each once escaped the parsers' error reporting.
TEST(TraceFuzzRegressions, NumberOverflowAndControlBytesStayOneLineErrors) {
  // nlohmann throws out_of_range (not parse_error) for a number that overflows a double.
  auto msg =
      error_of([] { mooncake("{\"timestamp\": 9999999e999999999999900000000007, \"x\": 1}\n"); });
  EXPECT_EQ(msg.rfind("t.jsonl:1: bad JSON", 0), 0u) << msg;
  // A newline inside a generator spec was echoed into a two-line message.
  msg = error_of([] { parse_generator_spec(std::string("arr\niv\0al=1", 12)); });
  EXPECT_NE(msg.find("unknown key 'arr"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find("\\x0a"), std::string::npos) << msg;
}
