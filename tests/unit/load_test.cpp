// Unit tests of `ridgeline load`'s pieces that need no socket: URL parsing, the HTTP/1.1 response
// parser, the SSE parser, OpenAI chunk interpretation, the response reader (canned responses split
// at every byte), metrics and ITL rules, SLOs, prompts, the Prometheus text parser, results.
//   build-load/tests/ridgeline_unit_tests --gtest_filter='Load*'
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/load_results.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/statistics.hpp"
#include "ridgeline/load/client.hpp"
#include "ridgeline/load/http_response.hpp"
#include "ridgeline/load/load.hpp"
#include "ridgeline/load/metrics.hpp"
#include "ridgeline/load/openai_stream.hpp"
#include "ridgeline/load/prometheus_text.hpp"
#include "ridgeline/load/prompts.hpp"
#include "ridgeline/load/response_reader.hpp"
#include "ridgeline/load/results.hpp"
#include "ridgeline/load/slo.hpp"
#include "ridgeline/load/sse.hpp"
#include "ridgeline/load/url.hpp"

namespace ridgeline::load {
namespace {

// A toy tokenizer: one token per whitespace-separated word; ids decode to words "w<id>" with a
// leading space; optionally a BOS the "server" adds. Counts are exact by construction, so prompt
// building and chunk counting can be checked to the token.
class toy_tokenizer final : public token_codec {
 public:
  explicit toy_tokenizer(bool bos = false) : m_bos(bos) {}
  std::vector<std::int32_t> encode(std::string_view text, bool add_special) const override {
    std::vector<std::int32_t> ids;
    if (add_special && m_bos) ids.push_back(0);
    std::size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && text[i] == ' ') ++i;
      const std::size_t start = i;
      while (i < text.size() && text[i] != ' ') ++i;
      if (i > start) ids.push_back(static_cast<std::int32_t>(1 + (i - start)));
    }
    return ids;
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    std::string s;
    for (auto id : ids) s += " w" + std::to_string(id);
    return s;
  }
  std::int32_t vocab_size() const override { return 1000; }
  std::optional<std::int64_t> chat_prompt_tokens(std::span<const chat_turn> turns) const override {
    std::int64_t n = 0;
    for (const auto& t : turns) n += count(t.content);
    return n;
  }
  std::string source() const override { return "toy"; }

 private:
  bool m_bos = false;
};

// ---------------------------------------------------------------------------------------------
TEST(LoadUrl, ParsesHostPortPathAndTls) {
  const url a = parse_url("http://127.0.0.1:8000");
  EXPECT_FALSE(a.tls);
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8000);
  EXPECT_EQ(a.path, "");
  EXPECT_EQ(a.path_for("/v1/completions"), "/v1/completions");
  EXPECT_EQ(a.host_header(), "127.0.0.1:8000");
  const url b = parse_url("https://api.example.com/v1/");
  EXPECT_TRUE(b.tls);
  EXPECT_EQ(b.port, 443);
  EXPECT_EQ(b.path_for("/v1/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(b.host_header(), "api.example.com");
  const url c = parse_url("http://[::1]:9000/proxy");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.path_for("/v1/completions"), "/proxy/v1/completions");
  EXPECT_EQ(c.host_header(), "[::1]:9000");
  EXPECT_EQ(parse_url("http://h/v1/completions").path_for("/v1/completions"), "/v1/completions");
}

TEST(LoadUrl, RejectsWhatItCannotUse) {
  for (const char* bad : {"127.0.0.1:8000", "ftp://x", "http://", "http://h:0", "http://h:99999",
                          "http://h:8x", "http://h/a?b=c", "http://u:p@h", "http://h:"}) {
    EXPECT_THROW(parse_url(bad), std::invalid_argument) << bad;
  }
}

// ---------------------------------------------------------------------------------------------
struct collect_body : body_sink {
  std::string body;
  void on_body(std::string_view b) override { body.append(b); }
};

// Feeds `text` in pieces of `step` bytes; returns the parser.
http_response_parser parse_in_steps(const std::string& text, std::size_t step, collect_body& sink) {
  http_response_parser p;
  for (std::size_t i = 0; i < text.size() && !p.done() && !p.failed(); i += step) {
    p.feed(std::string_view(text).substr(i, step), sink);
  }
  return p;
}

TEST(LoadHttpResponse, ContentLengthAndChunkedAtEverySplit) {
  const std::string length =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\nhello world";
  const std::string chunked =
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n"
      "0\r\nTrailer: x\r\n\r\n";
  for (std::size_t step = 1; step <= chunked.size(); ++step) {
    collect_body a, b;
    const auto pa = parse_in_steps(length, step, a);
    const auto pb = parse_in_steps(chunked, step, b);
    ASSERT_TRUE(pa.done()) << step << " " << pa.error();
    ASSERT_TRUE(pb.done()) << step << " " << pb.error();
    EXPECT_EQ(a.body, "hello world");
    EXPECT_EQ(b.body, "hello world");
    EXPECT_EQ(pa.status(), 200);
    EXPECT_TRUE(pa.keep_alive());
    EXPECT_TRUE(pb.keep_alive());
    EXPECT_TRUE(pb.chunked());
  }
}

TEST(LoadHttpResponse, ReadUntilCloseAndConnectionClose) {
  collect_body s;
  http_response_parser p;
  p.feed("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc", s);
  EXPECT_FALSE(p.done());
  p.feed("def", s);
  p.finish();
  EXPECT_TRUE(p.done());
  EXPECT_EQ(s.body, "abcdef");
  EXPECT_FALSE(p.keep_alive());
}

TEST(LoadHttpResponse, StopsAtTheEndAndReportsExtraBytes) {
  collect_body s;
  http_response_parser p;
  const std::string two = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n";
  const std::size_t used = p.feed(two, s);
  EXPECT_TRUE(p.done());
  EXPECT_EQ(used, std::string("HTTP/1.1 204 No Content\r\n\r\n").size());
}

TEST(LoadHttpResponse, InterimResponsesAreSkipped) {
  collect_body s;
  http_response_parser p;
  p.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", s);
  EXPECT_TRUE(p.done());
  EXPECT_EQ(p.status(), 404);
  EXPECT_EQ(s.body, "no");
}

TEST(LoadHttpResponse, MalformedInputFails) {
  const std::vector<std::string> bad = {
      "SSH-2.0-OpenSSH\r\n\r\n",
      "HTTP/1.1 2x0 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
      "HTTP/1.1 200 OK\r\nX: " + std::string(9000, 'a') + "\r\n\r\n",
  };
  for (const auto& text : bad) {
    collect_body s;
    http_response_parser p;
    p.feed(text, s);
    EXPECT_TRUE(p.failed()) << text.substr(0, 60);
    EXPECT_FALSE(p.error().empty());
  }
}

TEST(LoadHttpResponse, EarlyCloseFailsWithAReason) {
  collect_body s;
  http_response_parser p;
  p.finish();
  EXPECT_TRUE(p.failed());
  EXPECT_NE(p.error().find("before any response byte"), std::string::npos);
  http_response_parser q;
  q.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", s);
  q.finish();
  EXPECT_TRUE(q.failed());
  EXPECT_NE(q.error().find("before the end"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
struct collect_events : sse_sink {
  std::vector<std::string> data, names;
  std::vector<double> stamps;
  void on_event(const sse_event& e) override {
    data.emplace_back(e.data);
    names.emplace_back(e.event);
    stamps.push_back(e.first_byte_seconds);
  }
};

TEST(LoadSse, EventsLineEndingsCommentsAndStamps) {
  const std::string text =
      ": ping\n\ndata: a\n\ndata:b\r\ndata: c\r\n\r\nevent: error\rdata: {\"x\":1}\r\rdata: "
      "[DONE]\n\n";
  for (std::size_t step = 1; step <= text.size(); ++step) {
    sse_parser p;
    collect_events ev;
    double t = 0;
    for (std::size_t i = 0; i < text.size(); i += step) {
      p.feed(std::string_view(text).substr(i, step), t, ev);
      t += 1;
    }
    ASSERT_EQ(ev.data.size(), 4u) << step;
    EXPECT_EQ(ev.data[0], "a");
    EXPECT_EQ(ev.data[1], "b\nc");
    EXPECT_EQ(ev.data[2], "{\"x\":1}");
    EXPECT_EQ(ev.names[2], "error");
    EXPECT_EQ(ev.data[3], "[DONE]");
    EXPECT_FALSE(p.pending());
    // Each event's stamp is that of the piece holding its first data byte.
    const auto first_a = text.find("data: a");
    EXPECT_EQ(ev.stamps[0], static_cast<double>(first_a / step)) << step;
    EXPECT_EQ(ev.stamps[3], static_cast<double>(text.find("data: [DONE]") / step)) << step;
  }
}

TEST(LoadSse, PendingEventAtTheEnd) {
  sse_parser p;
  collect_events ev;
  p.feed("data: partial", 0, ev);
  EXPECT_TRUE(p.pending());
  EXPECT_TRUE(ev.data.empty());
}

// ---------------------------------------------------------------------------------------------
TEST(LoadOpenAiChunk, KindsOfEvents) {
  EXPECT_EQ(interpret_stream_data("[DONE]").type, stream_chunk::kind::done);
  auto c = interpret_stream_data(R"({"choices":[{"index":0,"text":" Hi"}]})");
  EXPECT_EQ(c.type, stream_chunk::kind::content);
  EXPECT_EQ(c.text, " Hi");
  c = interpret_stream_data(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})");
  EXPECT_EQ(c.type, stream_chunk::kind::empty);
  c = interpret_stream_data(
      R"({"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":5,"completion_tokens":2}})");
  EXPECT_EQ(c.type, stream_chunk::kind::content);
  EXPECT_EQ(c.usage.completion_tokens.value(), 2);
  c = interpret_stream_data(
      R"({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}})");
  EXPECT_EQ(c.type, stream_chunk::kind::usage_only);
  EXPECT_EQ(c.usage.prompt_tokens.value(), 7);
  EXPECT_EQ(c.usage.cached_tokens.value(), 4);
  c = interpret_stream_data(R"({"error":{"message":"boom","code":500}})");
  EXPECT_EQ(c.type, stream_chunk::kind::error);
  EXPECT_EQ(c.error, "boom");
  c = interpret_stream_data(R"({"object":"error","message":"overloaded"})");
  EXPECT_EQ(c.type, stream_chunk::kind::error);
  EXPECT_EQ(interpret_stream_data("{not json").type, stream_chunk::kind::malformed);
  EXPECT_EQ(interpret_stream_data("[1,2]").type, stream_chunk::kind::malformed);
}

TEST(LoadOpenAiChunk, BodiesAndErrorMessages) {
  auto b = interpret_completion_body(
      R"({"choices":[{"message":{"role":"assistant","content":"a b c"}}],"usage":{"prompt_tokens":3,"completion_tokens":3}})");
  EXPECT_TRUE(b.ok);
  EXPECT_EQ(b.text, "a b c");
  EXPECT_EQ(error_message_of(R"({"error":{"message":"model not found"}})"), "model not found");
  EXPECT_EQ(error_message_of(R"({"detail":"Not Found"})"), "Not Found");
  EXPECT_EQ(error_message_of("plain text"), "plain text");
}

// ---------------------------------------------------------------------------------------------
std::string sse_response(const std::vector<std::string>& events, bool chunked = true) {
  std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n";
  std::string body;
  for (const auto& e : events) body += "data: " + e + "\n\n";
  if (!chunked) return head + "Connection: close\r\n\r\n" + body;
  head += "Transfer-Encoding: chunked\r\n\r\n";
  std::string out = head;
  for (const auto& e : events) {
    const std::string piece = "data: " + e + "\n\n";
    char n[16];
    std::snprintf(n, sizeof n, "%zx\r\n", piece.size());
    out += n + piece + "\r\n";
  }
  return out + "0\r\n\r\n";
}

TEST(LoadResponseReader, StreamAtEverySplitStampsChunksBeforeParsing) {
  const std::string text = sse_response(
      {R"({"choices":[{"text":" a"}]})", R"({"choices":[{"text":" b"}]})",
       R"({"choices":[{"text":" c","finish_reason":"length"}]})",
       R"({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}})", "[DONE]"});
  for (std::size_t step = 1; step <= text.size(); step += 7) {
    request_record r;
    response_reader rd(r, {});
    response_reader::result res = response_reader::result::more;
    double t = 10;
    for (std::size_t i = 0; i < text.size() && res == response_reader::result::more; i += step) {
      res = rd.feed(std::string_view(text).substr(i, step), t);
      t += 1;
    }
    ASSERT_EQ(res, response_reader::result::complete) << step << " " << r.error_detail;
    EXPECT_TRUE(rd.reusable());
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.response_start, 10);
    ASSERT_EQ(r.chunk_seconds.size(), 3u);
    EXPECT_EQ(r.chunk_tokens, (std::vector<std::int32_t>{1, 1, 1}));
    EXPECT_EQ(r.usage_prompt_tokens, 4);
    EXPECT_EQ(r.usage_output_tokens, 3);
    // The first chunk's stamp: the read that brought the first byte of its data line.
    const auto at = text.find("data: {\"choices\":[{\"text\":\" a\"");
    EXPECT_EQ(r.chunk_seconds[0], 10 + static_cast<double>(at / step)) << step;
    EXPECT_LE(r.chunk_seconds[0], r.chunk_seconds[1]);
  }
}

TEST(LoadResponseReader, ChunkTokenSources) {
  // Continuous usage: the cumulative completion_tokens grow by the chunk's tokens.
  {
    request_record r;
    response_reader rd(r, {});
    const std::string text = sse_response(
        {R"({"choices":[{"text":" a b c"}],"usage":{"prompt_tokens":2,"completion_tokens":3}})",
         R"({"choices":[{"text":" d"}],"usage":{"prompt_tokens":2,"completion_tokens":4}})",
         "[DONE]"});
    EXPECT_EQ(rd.feed(text, 1), response_reader::result::complete);
    EXPECT_EQ(r.chunk_tokens, (std::vector<std::int32_t>{3, 1}));
    EXPECT_EQ(rd.token_source(), chunk_token_source::continuous_usage);
  }
  // A tokenizer counts the chunk's text.
  {
    toy_tokenizer tok;
    request_record r;
    response_reader rd(r, {true, true, &tok});
    const std::string text = sse_response(
        {R"({"choices":[{"text":" a b"}]})", R"({"choices":[{"text":" c d e"}]})", "[DONE]"});
    EXPECT_EQ(rd.feed(text, 1), response_reader::result::complete);
    EXPECT_EQ(r.chunk_tokens, (std::vector<std::int32_t>{2, 3}));
    EXPECT_EQ(r.output_text, " a b c d e");
    EXPECT_EQ(r.output_tokens(), 5);
    EXPECT_EQ(rd.token_source(), chunk_token_source::tokenizer);
  }
  // Chat: the role-only first delta is no token.
  {
    request_record r;
    response_reader rd(r, {});
    const std::string text =
        sse_response({R"({"choices":[{"delta":{"role":"assistant","content":""}}]})",
                      R"({"choices":[{"delta":{"content":"x"}}]})", "[DONE]"});
    EXPECT_EQ(rd.feed(text, 1), response_reader::result::complete);
    EXPECT_EQ(r.chunk_seconds.size(), 1u);
  }
}

TEST(LoadResponseReader, ErrorsByKind) {
  {
    request_record r;
    response_reader rd(r, {});
    const std::string body = R"({"object":"error","message":"The model does not exist."})";
    const auto res =
        rd.feed("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body,
                1);
    EXPECT_EQ(res, response_reader::result::failed);
    EXPECT_EQ(r.error, error_kind::http_status);
    EXPECT_EQ(r.status, 404);
    EXPECT_NE(r.error_detail.find("does not exist"), std::string::npos);
  }
  {
    request_record r;
    response_reader rd(r, {});
    const auto res = rd.feed(sse_response({R"({"choices":[{"text":"a"}]})", "{bad json"}), 1);
    EXPECT_EQ(res, response_reader::result::failed);
    EXPECT_EQ(r.error, error_kind::malformed_stream);
  }
  {
    request_record r;
    response_reader rd(r, {});
    const auto res = rd.feed(sse_response({R"({"choices":[{"text":"a"}]})",
                                           R"({"error":{"message":"out of memory"}})", "[DONE]"}),
                             1);
    EXPECT_EQ(res, response_reader::result::failed);
    EXPECT_EQ(r.error, error_kind::stream_error);
    EXPECT_NE(r.error_detail.find("out of memory"), std::string::npos);
  }
  {
    // Cut mid-stream: the chunked body never ends.
    request_record r;
    response_reader rd(r, {});
    std::string text =
        sse_response({R"({"choices":[{"text":"a"}]})", R"({"choices":[{"text":"b"}]})"});
    text.resize(text.size() - 20);
    EXPECT_EQ(rd.feed(text, 1), response_reader::result::more);
    EXPECT_EQ(rd.closed(2), response_reader::result::failed);
    EXPECT_EQ(r.error, error_kind::malformed_stream);
  }
  {
    // Closed before any byte: the connection's fault.
    request_record r;
    response_reader rd(r, {});
    EXPECT_EQ(rd.closed(2), response_reader::result::failed);
    EXPECT_EQ(r.error, error_kind::connect);
  }
  {
    // Read-until-close framing ends cleanly at the close.
    request_record r;
    response_reader rd(r, {});
    EXPECT_EQ(rd.feed(sse_response({R"({"choices":[{"text":"a"}]})", "[DONE]"}, false), 1),
              response_reader::result::more);
    EXPECT_EQ(rd.closed(2), response_reader::result::complete);
    EXPECT_FALSE(rd.reusable());
    EXPECT_EQ(r.chunk_seconds.size(), 1u);
  }
}

TEST(LoadResponseReader, NonStreamedBodyIsOneChunk) {
  request_record r;
  response_reader rd(r, {false, false, nullptr});
  const std::string body =
      R"({"choices":[{"text":" a b c"}],"usage":{"prompt_tokens":3,"completion_tokens":3}})";
  const auto res = rd.feed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body,
                           5);
  EXPECT_EQ(res, response_reader::result::complete);
  ASSERT_EQ(r.chunk_seconds.size(), 1u);
  EXPECT_EQ(r.chunk_tokens[0], 3);
  EXPECT_EQ(r.output_tokens(), 3);
}

// ---------------------------------------------------------------------------------------------
request_record finished_record(double sent, std::vector<double> t, std::vector<std::int32_t> k) {
  request_record r;
  r.sent = sent;
  r.scheduled = sent - 0.001;
  r.chunk_seconds = std::move(t);
  r.chunk_tokens = std::move(k);
  r.end = r.chunk_seconds.back() + 0.001;
  r.status = 200;
  return r;
}

TEST(LoadMetrics, DefinitionsAndItlRules) {
  // Chunks at 1.0 (2 tokens), 1.3 (3 tokens), 1.4 (1 token); sent at 0.5.
  const request_record r = finished_record(0.5, {1.0, 1.3, 1.4}, {2, 3, 1});
  EXPECT_DOUBLE_EQ(ttft_of(r), 0.5);
  EXPECT_DOUBLE_EQ(e2e_of(r), 0.9);
  EXPECT_DOUBLE_EQ(tpot_of(r), 0.4 / 5);
  std::vector<double> first, split, chunk;
  append_itl(r, itl_rule::first, first);
  append_itl(r, itl_rule::split, split);
  append_itl(r, itl_rule::chunk, chunk);
  auto near = [](const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (std::abs(a[i] - b[i]) > 1e-12) return false;
    }
    return true;
  };
  EXPECT_TRUE(near(first, {0, 0.3, 0, 0, 0.1}));
  EXPECT_TRUE(near(split, {0, 0.1, 0.1, 0.1, 0.1}));
  EXPECT_TRUE(near(chunk, {0.3, 0.1}));
  // first and split: output_tokens - 1 gaps summing to E2E - TTFT.
  double sum = 0;
  for (double g : split) sum += g;
  EXPECT_NEAR(sum, e2e_of(r) - ttft_of(r), 1e-12);
  EXPECT_EQ(static_cast<std::int64_t>(first.size()), r.output_tokens() - 1);
  EXPECT_EQ(parse_itl_rule("split"), itl_rule::split);
  EXPECT_THROW(parse_itl_rule("even"), std::invalid_argument);
}

TEST(LoadMetrics, UsageWinsAndChecksCountMismatches) {
  request_record r = finished_record(0, {1, 2}, {1, 1});
  r.requested_prompt_tokens = 10;
  r.expected_prompt_tokens = 10;
  r.requested_output_tokens = 8;
  r.usage_prompt_tokens = 11;
  r.usage_output_tokens = 4;
  EXPECT_EQ(r.output_tokens(), 4);
  EXPECT_EQ(r.counted_output_tokens(), 2);
  EXPECT_DOUBLE_EQ(tpot_of(r), 1.0 / 3);
  request_record failed;
  failed.error = error_kind::timeout;
  failed.sent = 0.2;
  failed.end = 1;
  request_record cancelled;
  cancelled.error = error_kind::cancelled;
  const level_metrics m = measure({r, failed, cancelled}, itl_rule::first, 2.0);
  EXPECT_EQ(m.requests, 3);
  EXPECT_EQ(m.finished, 1);
  EXPECT_EQ(m.failed, 1);
  EXPECT_EQ(m.cancelled, 1);
  EXPECT_EQ(m.sent, 2);
  EXPECT_EQ(m.errors.at("timeout"), 1);
  EXPECT_EQ(m.errors.at("cancelled"), 1);
  EXPECT_EQ(m.checks.prompt_usage_mismatches, 1);
  EXPECT_EQ(m.checks.prompt_expected_mismatches, 1);
  EXPECT_EQ(m.checks.output_count_mismatches, 1);
  EXPECT_EQ(m.checks.short_outputs, 1);
  EXPECT_DOUBLE_EQ(m.output_tokens_per_second, 2.0);
  EXPECT_DOUBLE_EQ(m.requests_per_second, 0.5);
}

// ---------------------------------------------------------------------------------------------
TEST(LoadSlo, ParsesTermsAndRejectsBadOnes) {
  const slo_spec s = parse_slo("goodput=0.9,ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,itl_p999=1s");
  ASSERT_EQ(s.terms.size(), 5u);
  EXPECT_EQ(s.terms[0].metric, "ttft");
  EXPECT_DOUBLE_EQ(s.terms[0].quantile, 0.99);
  EXPECT_DOUBLE_EQ(s.terms[1].limit, 0.05);
  EXPECT_DOUBLE_EQ(s.terms[3].quantile, 0.999);
  EXPECT_EQ(s.terms[4].metric, "goodput");  // last, wherever it was written
  EXPECT_DOUBLE_EQ(s.terms[4].limit, 0.9);
  EXPECT_DOUBLE_EQ(*s.ttft_limit_seconds, 2);
  EXPECT_DOUBLE_EQ(*s.tpot_limit_seconds, 0.05);
  EXPECT_DOUBLE_EQ(*s.goodput_fraction, 0.9);
  // A plain limit is goodput's per-request limit, not a term, and wins over a percentile term's.
  const slo_spec p = parse_slo("ttft_p90=2s,ttft=1s,tpot=30ms,goodput=0.8");
  ASSERT_EQ(p.terms.size(), 2u);
  EXPECT_DOUBLE_EQ(*p.ttft_limit_seconds, 1);
  EXPECT_DOUBLE_EQ(*p.tpot_limit_seconds, 0.03);
  EXPECT_DOUBLE_EQ(parse_slo("ttft_p99.9=1s").terms[0].quantile, 0.999);
  EXPECT_DOUBLE_EQ(parse_slo("ttft_p9999=1s").terms[0].quantile, 0.9999);
  EXPECT_DOUBLE_EQ(parse_slo("ttft_p50=1s").terms[0].quantile, 0.5);
  for (const char* bad : {"", " , ", "ttft", "ttft_p99", "ttft_p99=fast", "lat_p99=1s",
                          "ttft_p0=1s", "ttft_p101=1s", "goodput=2", "goodput=0.9", "e2e=3s",
                          "ttft_pxx=1s", "ttft=1s,goodput=0.9,goodput=0.8", "ttft=1s,ttft=2s"}) {
    EXPECT_THROW(parse_slo(bad), std::invalid_argument) << bad;
  }
  // The flag is named, with an example; the grammar and its wording are core's.
  try {
    parse_slo("ttft_p99=soon");
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "--slo term 'ttft_p99=soon': 'soon' is not a duration (2s, 50ms, 800us) (e.g. "
              "ttft_p99=2s,tpot_p99=50ms,e2e_p90=10s,goodput=0.9)");
  }
}

TEST(LoadSlo, PercentilesFailuresAndGoodput) {
  std::vector<request_record> rs;
  for (int i = 0; i < 10; ++i) {
    // TTFT 0.1 .. 1.0 s, TPOT 10 ms.
    const double ttft = 0.1 * (i + 1);
    rs.push_back(finished_record(0, {ttft, ttft + 0.01, ttft + 0.02}, {1, 1, 1}));
  }
  slo_result a = evaluate(parse_slo("ttft_p50=0.65s,tpot_p99=20ms"), rs, itl_rule::first, 10);
  EXPECT_TRUE(a.met);
  EXPECT_NEAR(a.terms[0].measured, 0.55, 1e-9);  // numpy's linear p50 of 0.1..1.0
  EXPECT_EQ(a.good_requests, 6);                 // TTFT <= 0.65 s
  EXPECT_NEAR(*a.goodput_fraction, 0.6, 1e-12);
  EXPECT_NEAR(*a.goodput_requests_per_second, 0.6, 1e-12);
  slo_result b = evaluate(parse_slo("ttft_p50=0.65s,goodput=0.7"), rs, itl_rule::first, 10);
  EXPECT_FALSE(b.met);
  // A failed request is an infinite latency: p99 over 10 with one failure misses any limit.
  request_record failed;
  failed.error = error_kind::http_status;
  rs.push_back(failed);
  slo_result c = evaluate(parse_slo("ttft_p99=100s"), rs, itl_rule::first, 10);
  EXPECT_FALSE(c.met);
  slo_result d = evaluate(parse_slo("ttft_p50=100s"), rs, itl_rule::first, 10);
  EXPECT_TRUE(d.met);
}

// ---------------------------------------------------------------------------------------------
workload_request request_of(std::uint64_t id, std::vector<prompt_segment> segs, std::int32_t out) {
  workload_request r;
  r.id = id;
  r.prompt = std::move(segs);
  for (const auto& s : r.prompt) r.prompt_tokens += s.tokens;
  r.output_tokens = out;
  return r;
}

TEST(LoadPrompts, TokenIdPromptsHaveTheRequestedCount) {
  prompt_builder b({api_endpoint::completions, "m", true, false, true, 1000, nullptr});
  session_history h;
  const auto r = request_of(7, {{11, 30}, {12, 17}}, 9);
  const built_request q = b.build(r, h);
  EXPECT_EQ(q.path, "/v1/completions");
  const auto body = nlohmann::json::parse(q.body);
  EXPECT_EQ(body.at("prompt").size(), 47u);
  for (const auto& id : body.at("prompt")) EXPECT_LT(id.get<int>(), 1000);
  EXPECT_EQ(body.at("max_tokens"), 9);
  EXPECT_EQ(body.at("stream"), true);
  EXPECT_EQ(body.at("stream_options").at("include_usage"), true);
  EXPECT_EQ(body.at("ignore_eos"), true);
  EXPECT_EQ(q.expected_prompt_tokens, 47);
  EXPECT_EQ(q.requested_prompt_tokens, 47);
}

TEST(LoadPrompts, TextPromptsHitTheCountForTheTokenizer) {
  toy_tokenizer tok(/*bos=*/true);
  prompt_builder b({api_endpoint::completions, "m", true, false, true, 0, &tok});
  session_history h;
  const auto r = request_of(1, {{5, 100}, {6, 28}}, 4);
  const built_request q = b.build(r, h);
  const std::string text = nlohmann::json::parse(q.body).at("prompt").get<std::string>();
  EXPECT_EQ(tok.count(text) + 1, 128);  // + BOS the server adds
  EXPECT_EQ(q.expected_prompt_tokens, 128);
}

TEST(LoadPrompts, ChatSessionsCarryTheRealAnswers) {
  toy_tokenizer tok;
  prompt_builder b({api_endpoint::chat, "m", true, false, true, 0, &tok});
  workload_request first = request_of(0, {{1, 8}, {2, 5}}, 3);
  first.session = 0;
  first.next_turn = 1;
  workload_request second = request_of(1, {{1, 8}, {2, 5}, {99, 3}, {3, 4}}, 3);
  second.session = 0;
  second.turn = 1;
  second.follow_up = true;
  session_history h;
  const built_request q1 = b.build(first, h);
  EXPECT_TRUE(q1.text_answers);
  prompt_builder::add_answer(h, " the real answer");
  const built_request q2 = b.build(second, h);
  const auto messages = nlohmann::json::parse(q2.body).at("messages");
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_EQ(messages[0].at("role"), "system");
  EXPECT_EQ(messages[1].at("role"), "user");
  EXPECT_EQ(messages[2].at("role"), "assistant");
  EXPECT_EQ(messages[2].at("content"), " the real answer");
  EXPECT_EQ(messages[3].at("role"), "user");
  EXPECT_EQ(tok.count(messages[3].at("content").get<std::string>()), 4);
  EXPECT_EQ(q2.expected_prompt_tokens, 8 + 5 + 3 + 4);
}

TEST(LoadPrompts, EndpointNames) {
  EXPECT_EQ(parse_endpoint("chat"), api_endpoint::chat);
  EXPECT_EQ(parse_endpoint("/v1/completions"), api_endpoint::completions);
  EXPECT_THROW(parse_endpoint("embeddings"), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
TEST(LoadClientSetup, ReservesDescriptorsUpToTheHardLimit) {
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  const std::int64_t hard =
      lim.rlim_max == RLIM_INFINITY ? 1 << 20 : static_cast<std::int64_t>(lim.rlim_max);
  const std::int64_t want = std::min<std::int64_t>(2048, hard);
  EXPECT_GE(reserve_descriptors(want), want);
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  EXPECT_GE(static_cast<std::int64_t>(lim.rlim_cur), want);
}

TEST(LoadClientSetup, RequestBytesCarryKeyHeadersAndLength) {
  client_options o;
  o.target = parse_url("http://example.test:8080/v1");
  o.api_key = "sk-1";
  o.headers = {{"X-Tenant", "a"}};
  http_job j;
  j.id = 42;
  j.path = o.target.path_for("/v1/completions");
  j.body = R"({"model":"m"})";
  const std::string r = request_bytes(o, j);
  EXPECT_EQ(r.rfind("POST /v1/completions HTTP/1.1\r\nHost: example.test:8080\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("\r\nAuthorization: Bearer sk-1\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nX-Tenant: a\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nX-Request-Id: 42\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nAccept: text/event-stream\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nContent-Length: 13\r\n\r\n{\"model\":\"m\"}"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
TEST(LoadPrometheus, ParsesTheTextFormatAndPicksServingSeries) {
  const std::string text =
      "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
      "# TYPE vllm:num_requests_running gauge\n"
      "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n"
      "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2.0\n"
      "vllm:num_preemptions_total{model_name=\"m\"} 7\n"
      "vllm:prefix_cache_hits_created{model_name=\"m\"} 1.7e9\n"
      "vllm:kv_cache_usage_perc{model_name=\"a \\\"quoted\\\" name\"} 0.25 1700000000000\n"
      "ridgeline_requests_waiting 4\n"
      "some_histogram_bucket{le=\"+Inf\"} +Inf\n"
      "up NaN\n";
  const auto samples = parse_prometheus_text(text);
  ASSERT_EQ(samples.size(), 8u);
  EXPECT_EQ(samples[4].labels.at("model_name"), "a \"quoted\" name");
  EXPECT_TRUE(std::isinf(samples[6].value));
  const auto picked = pick_server_series(samples);
  EXPECT_DOUBLE_EQ(picked.at("vllm:num_requests_running"), 5);  // summed over engines
  EXPECT_DOUBLE_EQ(picked.at("vllm:num_preemptions"), 7);       // the _total spelling
  EXPECT_DOUBLE_EQ(picked.at("vllm:kv_cache_usage_perc"), 0.25);
  EXPECT_DOUBLE_EQ(picked.at("ridgeline_requests_waiting"), 4);
  EXPECT_EQ(picked.count("vllm:prefix_cache_hits"), 0u);  // _created is another series
  for (const char* bad : {"1metric 3", "m{a=b} 1", "m{a=\"b} 1", "m notanumber", "{a=\"b\"} 1"}) {
    EXPECT_THROW(parse_prometheus_text(bad), std::invalid_argument) << bad;
  }
}

// ---------------------------------------------------------------------------------------------
TEST(LoadSaturation, GrowthWithoutBoundVersusARamp) {
  std::vector<std::pair<double, std::int64_t>> growing, steady, ramp;
  for (int i = 0; i <= 100; ++i) {
    const double t = i * 0.1;                                                // 10 s
    growing.emplace_back(t, static_cast<std::int64_t>(3 * t));               // +3/s at 10/s offered
    steady.emplace_back(t, 20 + (i % 7) - 3);                                // noise around 20
    ramp.emplace_back(t, static_cast<std::int64_t>(std::min(t, 8.0) * 10));  // E2E 8 s
  }
  EXPECT_TRUE(saturated(growing, 10, 1.0));
  EXPECT_FALSE(saturated(steady, 10, 1.0));
  // A ramp to rate x E2E is not growth without bound: too early to tell at 2 x E2E.
  EXPECT_FALSE(saturated(ramp, 10, 8.0));
  // Too early in the level.
  std::vector<std::pair<double, std::int64_t>> early(growing.begin(), growing.begin() + 20);
  EXPECT_FALSE(saturated(early, 10, 0.5));
}

// ---------------------------------------------------------------------------------------------
load_run synthetic_run(double epoch_unix, int n, double offset) {
  load_run run;
  run.url = "http://127.0.0.1:8000";
  run.endpoint = "completions";
  run.model = "m";
  run.workload = "generator:requests=" + std::to_string(n);
  run.workload_requests = n;
  run.prompts = "token ids";
  run.slo = parse_slo("ttft_p90=0.5s,tpot_p99=50ms,goodput=0.5");  // goodput's verdict round-trips
  run.environment = {{"host", {{"hostname", "h"}, {"kernel", "k"}, {"cpu_threads", 2}}},
                     {"time_utc", "2026-01-01T00:00:00Z"},
                     {"ridgeline",
                      {{"version", "0"},
                       {"git_sha", "x"},
                       {"git_dirty", false},
                       {"build_type", "Release"},
                       {"cxx_compiler", "g++"},
                       {"cuda_compiler", ""},
                       {"built_with_cuda", false}}},
                     {"gpu", nullptr},
                     {"gpu_unavailable_reason", "none"}};
  level_data l;
  l.label = "rate 2/s";
  l.shape = "rate";
  l.rate_per_second = 2;
  l.epoch_unix_seconds = epoch_unix;
  l.epoch_steady_seconds = 100;
  l.server.url = "http://127.0.0.1:8000/metrics";
  l.server.interval_seconds = 1;
  l.server.t = {0.5, 1.5};
  l.server.values["ridgeline_requests_running"] = {1.0, std::nullopt};
  for (int i = 0; i < n; ++i) {
    const double s = offset + 0.5 * i;
    request_record r =
        finished_record(s, {s + 0.1 + 0.01 * i, s + 0.2 + 0.01 * i, s + 0.25}, {1, 2, 1});
    r.id = static_cast<std::uint64_t>(i);
    r.requested_prompt_tokens = 10;
    r.usage_prompt_tokens = 10;
    r.usage_output_tokens = 4;
    if (i == 3) {
      r.error = error_kind::http_status;
      r.status = 503;
      r.error_detail = "HTTP 503: busy";
      r.chunk_seconds.clear();
      r.chunk_tokens.clear();
    }
    l.records.push_back(r);
  }
  run.levels.push_back(l);
  return run;
}

TEST(LoadResults, DocumentRoundTripsThroughBothReaders) {
  const load_run run = synthetic_run(1.7e9, 8, 0);
  const nlohmann::json doc = document_of(run);
  EXPECT_EQ(doc.at("schema"), "ridgeline.kv/v1");
  EXPECT_EQ(doc.at("config").at("executor"), "http");
  const auto& row = doc.at("rows").at(0);
  EXPECT_EQ(row.at("capacity"), "rate 2/s");
  EXPECT_EQ(row.at("finished"), 7);
  EXPECT_EQ(row.at("rejected_by_reason").at("http_status"), 1);
  EXPECT_EQ(row.at("itl_seconds").at("count"), 7 * 3);
  EXPECT_EQ(row.at("measured").at("http").at("http_statuses").at("503"), 1);
  EXPECT_NE(
      doc.at("config").at("definitions").at("itl_seconds").get<std::string>().find("rule first"),
      std::string::npos);
  const load_run back = parse_load_run(doc, "mem.json");
  EXPECT_EQ(document_of(back), doc);
  ASSERT_TRUE(back.slo);
  EXPECT_EQ(back.slo->terms.back().metric, "goodput");
  // core's reader of the load parts (the report's) reads the same document.
  const schema::load_results core = schema::parse_load_results(doc, "mem.json");
  ASSERT_EQ(core.levels.size(), 1u);
  ASSERT_TRUE(core.levels[0].slo);
  EXPECT_EQ(core.levels[0].slo->terms.back().term.text, "goodput=0.5");
  // A missing or bad field is named with its path, whichever part of the reader reads it: load's
  // own (samples), core's (the level's counts, its SLO verdict, the load object).
  // Sets the value at `pointer`, or erases it (nullopt), and expects the reader to name `named`.
  const auto fails_naming = [&](const char* pointer, const std::optional<nlohmann::json>& value,
                                const std::string& named) {
    nlohmann::json broken = doc;
    const nlohmann::json::json_pointer p(pointer);
    if (value) {
      broken[p] = *value;
    } else {
      broken[p.parent_pointer()].erase(p.back());
    }
    try {
      parse_load_run(broken, "broken.json");
      ADD_FAILURE() << "expected a schema error for " << pointer;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(named), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("broken.json"), std::string::npos) << e.what();
    }
  };
  const std::nullopt_t erase = std::nullopt;
  fails_naming("/rows/0/measured/http/samples/chunk_offsets", erase, "chunk_offsets");
  fails_naming("/rows/0/measured/http/sent", erase, "sent");
  fails_naming("/rows/0/measured/http/slo/terms/0/term", "ttft_p99=soon", "'soon'");
  fails_naming("/load/slo", "ttft_p99=2s,goodput=7", "goodput takes a fraction");
  fails_naming("/load/workers", erase, "workers");
  fails_naming("/config/executor", "simulator", "not a `ridgeline load` result");
}

// The verdicts load writes come from core's judge (schema::judge_load_level): every committed
// load result with an SLO, read back from its raw samples and written again, gives the SLO
// objects it holds exactly (terms, measured values, good requests, goodput, the lines).
TEST(LoadResults, CommittedVerdictsAreWrittenAgainExactly) {
  int levels = 0;
  for (const char* rel :
       {"tests/data/report/findmax_cpu.json.gz", "tests/data/report/confirm_cpu.json.gz",
        "docs/results/serving/http2/findmax_engine_failed.json.gz",
        "docs/results/serving/http2/confirm_0.95.json.gz"}) {
    SCOPED_TRACE(rel);
    const std::string path = std::string(RIDGELINE_SOURCE_DIR) + "/" + rel;
    const load_run run = read_load_run(path);
    ASSERT_TRUE(run.slo);
    const nlohmann::json written = schema::read_json(path, schema::k_serving_results_schema);
    const nlohmann::json again = document_of(run);
    ASSERT_EQ(again.at("rows").size(), written.at("rows").size());
    for (std::size_t i = 0; i < written.at("rows").size(); ++i) {
      const auto& slo = written["rows"][i]["measured"]["http"]["slo"];
      ASSERT_TRUE(slo.is_object());
      EXPECT_EQ(again["rows"][i]["measured"]["http"]["slo"], slo) << "row " << i;
      ++levels;
    }
  }
  EXPECT_EQ(levels, 5 + 2 + 7 + 1) << "the committed files changed: update the count";
}

TEST(LoadResults, MergeIsExact) {
  // Two runs that started 10 s apart by the unix clock: the second's times move by 10 s.
  const load_run a = synthetic_run(1.7e9, 6, 0);
  const load_run b = synthetic_run(1.7e9 + 10, 5, 0);
  const load_run m = merge(a, b, "a.json", "b.json");
  ASSERT_EQ(m.levels.size(), 1u);
  ASSERT_EQ(m.levels[0].records.size(), 11u);
  EXPECT_DOUBLE_EQ(m.levels[0].records[6].sent, 10.0);
  std::vector<double> ttft;
  for (const auto* r : {&a, &b}) {
    for (const auto& q : r->levels[0].records) {
      if (ttft_of(q) >= 0) ttft.push_back(ttft_of(q));
    }
  }
  const level_summary s = summarize(m.levels[0], m.slo);
  EXPECT_EQ(s.metrics.ttft.size(), ttft.size());
  // Exact up to the rounding of the clock shift (a latency is a difference within one request).
  EXPECT_NEAR(bench::quantile(s.metrics.ttft, 0.9), bench::quantile(ttft, 0.9), 1e-12);
  // Duration: first write of a to last end of b.
  EXPECT_NEAR(s.metrics.duration_seconds, 10 + 0.5 * 4 + 0.25 + 0.001, 1e-9);
  EXPECT_EQ(m.levels[0].merged_from, (std::vector<std::string>{"a.json", "b.json"}));
  load_run c = b;
  c.levels[0].rule = itl_rule::split;
  EXPECT_THROW(merge(a, c, "a", "c"), std::invalid_argument);
  load_run d = b;
  d.slo = parse_slo("ttft_p99=1s");
  EXPECT_THROW(merge(a, d, "a", "d"), std::invalid_argument);
}

TEST(LoadResults, TableNamesTheRuleFormulasAndErrors) {
  const std::string t = table_of(synthetic_run(1.7e9, 8, 0));
  EXPECT_NE(t.find("| rate 2/s |"), std::string::npos) << t;
  EXPECT_NE(t.find("ITL rule first"), std::string::npos);
  EXPECT_NE(t.find("http_status 1"), std::string::npos);
  EXPECT_NE(t.find("HTTP 503: busy"), std::string::npos);
  EXPECT_NE(t.find("TPOT = (E2E - TTFT) / (output_tokens - 1)"), std::string::npos);
  EXPECT_NE(t.find("SLO ttft_p90=0.5s"), std::string::npos);
}

}  // namespace
}  // namespace ridgeline::load
