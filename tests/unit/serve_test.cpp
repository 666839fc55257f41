// `ridgeline serve` on the cpu executor (tiny model, byte-level tokenizer): the OpenAI request
// parser and response builders, the stop-string text stream, and the server over real loopback
// sockets: routes, streaming, errors with their statuses, the queue limit, and a client that
// disconnects mid-stream freeing its KV blocks at once.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "ridgeline/core/errors.hpp"
#include "ridgeline/core/schemas/serve_record.hpp"
#include "ridgeline/serve/openai.hpp"
#include "ridgeline/serve/server.hpp"

using namespace ridgeline;
using namespace ridgeline::serve;
using json = nlohmann::json;

namespace {

api_request parse_ok(endpoint k, const std::string& body) {
  auto r = parse_api_request(k, body, api_limits{});
  if (auto* e = std::get_if<api_error>(&r)) ADD_FAILURE() << body << ": " << e->message;
  return std::get<api_request>(r);
}

api_error parse_bad(endpoint k, const std::string& body, api_limits limits = {}) {
  auto r = parse_api_request(k, body, limits);
  if (std::holds_alternative<api_request>(r)) {
    ADD_FAILURE() << body << " was accepted";
    return {};
  }
  return std::get<api_error>(r);
}

}  // namespace

TEST(ServeApi, ParsesCompletionAndChatRequests) {
  const auto c = parse_ok(endpoint::completions,
                          R"({"model":"m","prompt":"hi","max_tokens":7,"temperature":0,"top_p":0.5,
                              "top_k":40,"seed":3,"stop":["\n","END"],"stream":true,
                              "stream_options":{"include_usage":true},"ignore_eos":true,
                              "repetition_penalty":1.1,"stop_token_ids":[5]})");
  EXPECT_EQ(c.prompt, "hi");
  EXPECT_EQ(c.max_tokens, 7);
  EXPECT_EQ(c.temperature, 0.0f);
  EXPECT_FLOAT_EQ(c.top_p, 0.5f);
  EXPECT_EQ(c.top_k, 40);
  ASSERT_TRUE(c.seed);
  EXPECT_EQ(*c.seed, 3u);
  EXPECT_EQ(c.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(c.stream && c.include_usage && c.ignore_eos);
  EXPECT_EQ(c.stop_token_ids, std::vector<token_id>{5});
  const auto ids = parse_ok(endpoint::completions, R"({"prompt":[1,2,3]})");
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<token_id>{1, 2, 3}));
  const auto chat = parse_ok(endpoint::chat, R"({"messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "max_completion_tokens":4})");
  ASSERT_EQ(chat.messages.size(), 2u);
  EXPECT_EQ(chat.messages[1].content, "ab");
  EXPECT_EQ(chat.max_tokens, 4);
}

TEST(ServeApi, RejectsBadRequestsWithTheParameterNamed) {
  EXPECT_EQ(parse_bad(endpoint::completions, "{not json").status, 400);
  EXPECT_EQ(parse_bad(endpoint::completions, "[1]").message, "the request body must be a JSON object");
  EXPECT_EQ(parse_bad(endpoint::completions, "{}").param, "prompt");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","n":2})").param, "n");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","temperature":3})").param,
            "temperature");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","max_tokens":0})").param,
            "max_tokens");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","max_tokens":"5"})").param,
            "max_tokens");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":[1,-2]})").param, "prompt");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":["a","b"]})").param, "prompt");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","stop":[""]})").param, "stop");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","stream_options":{}})").param,
            "stream_options");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","logprobs":2})").param, "logprobs");
  EXPECT_EQ(parse_bad(endpoint::chat, R"({"messages":[]})").param, "messages");
  EXPECT_EQ(parse_bad(endpoint::chat, R"({"messages":[{"role":"tool","content":"x"}]})").param,
            "messages");
  EXPECT_EQ(parse_bad(endpoint::chat, R"({"messages":[{"role":"user","content":"x"}],
                                          "top_logprobs":2})")
                .param,
            "top_logprobs");
  const json body = json::parse(error_body(parse_bad(endpoint::completions, "{}")));
  EXPECT_EQ(body.at("error").at("type"), "invalid_request_error");
  EXPECT_TRUE(body.at("error").at("code").is_null());
}

TEST(ServeApi, LogprobsAreServedUpToMaxLogprobs) {
  api_limits on;
  on.max_logprobs = 5;
  auto ok = [&](endpoint k, const std::string& body) {
    auto r = parse_api_request(k, body, on);
    if (auto* e = std::get_if<api_error>(&r)) ADD_FAILURE() << body << ": " << e->message;
    return std::get<api_request>(r).logprobs;
  };
  EXPECT_EQ(ok(endpoint::completions, R"({"prompt":"x","logprobs":3})"), 3);
  EXPECT_EQ(ok(endpoint::completions, R"({"prompt":"x","logprobs":0})"), 0);
  EXPECT_EQ(ok(endpoint::completions, R"({"prompt":"x","logprobs":null})"), -1);
  EXPECT_EQ(ok(endpoint::completions, R"({"prompt":"x"})"), -1);
  const std::string chat = R"({"messages":[{"role":"user","content":"x"}])";
  EXPECT_EQ(ok(endpoint::chat, chat + R"(,"logprobs":true,"top_logprobs":5})"), 5);
  EXPECT_EQ(ok(endpoint::chat, chat + R"(,"logprobs":true})"), 0);
  EXPECT_EQ(ok(endpoint::chat, chat + R"(,"logprobs":false})"), -1);
  // Beyond the limit: 400 naming the parameter and --max-logprobs.
  const api_error many = parse_bad(endpoint::completions, R"({"prompt":"x","logprobs":6})", on);
  EXPECT_EQ(many.status, 400);
  EXPECT_EQ(many.param, "logprobs");
  EXPECT_NE(many.message.find("--max-logprobs"), std::string::npos) << many.message;
  const api_error top = parse_bad(endpoint::chat, chat + R"(,"logprobs":true,"top_logprobs":9})", on);
  EXPECT_EQ(top.param, "top_logprobs");
  EXPECT_NE(top.message.find("at most 5"), std::string::npos) << top.message;
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","logprobs":-1})", on).param,
            "logprobs");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","logprobs":true})", on).param,
            "logprobs");
  EXPECT_EQ(parse_bad(endpoint::chat, chat + R"(,"logprobs":2})", on).param, "logprobs");
  EXPECT_EQ(parse_bad(endpoint::completions, R"({"prompt":"x","logprobs":1,"n":2})", on).param, "n");
  // Off (the default): any ask is a 400 that says how to turn them on.
  const api_error off = parse_bad(endpoint::completions, R"({"prompt":"x","logprobs":0})");
  EXPECT_EQ(off.param, "logprobs");
  EXPECT_NE(off.message.find("--max-logprobs"), std::string::npos) << off.message;
  const api_error chat_off = parse_bad(endpoint::chat, chat + R"(,"logprobs":true})");
  EXPECT_EQ(chat_off.param, "logprobs");
  EXPECT_NE(chat_off.message.find("--max-logprobs"), std::string::npos);
}

TEST(ServeApi, LogprobsHaveTheOpenAiShape) {
  const tokenizer t = tokenizer::byte_level(400);
  // 'h' then the first byte of a 3-byte character (its text escaped, its bytes as they are).
  const std::vector<token_logprobs> toks = {
      {'h', -0.25f, {{'h', -0.25f}, {'i', -1.5f}, {258 + ('i' - 32), -2.0f}}, 0},
      {0xE2, -3.0f, {{'a', -0.5f}, {0xE2, -3.0f}, {'b', -4.0f}}, 1}};
  EXPECT_EQ(logprob_token_text(t, 0xE2), "\\xe2");
  EXPECT_EQ(logprob_token_text(t, 257), "<eos>");
  const json c = logprobs_json(endpoint::completions, t, toks);
  EXPECT_EQ(c.at("tokens"), json({"h", "\\xe2"}));
  EXPECT_EQ(c.at("token_logprobs"), json({-0.25, -3.0}));
  EXPECT_EQ(c.at("text_offset"), json({0, 1}));
  // Alternatives with the same text ('i' and id 258 + 73 both read "i") keep the most likely.
  EXPECT_EQ(c.at("top_logprobs")[0], json({{"h", -0.25}, {"i", -1.5}}));
  EXPECT_EQ(c.at("top_logprobs")[1].size(), 3u);
  const json chat = logprobs_json(endpoint::chat, t, toks);
  ASSERT_EQ(chat.at("content").size(), 2u);
  const json& second = chat.at("content")[1];
  EXPECT_EQ(second.at("token"), "\\xe2");
  EXPECT_EQ(second.at("bytes"), json({0xE2}));
  EXPECT_EQ(second.at("logprob"), -3.0);
  ASSERT_EQ(second.at("top_logprobs").size(), 3u);  // a list: every alternative, in order
  EXPECT_EQ(second.at("top_logprobs")[1].at("token"), "\\xe2");
  EXPECT_EQ(chat.at("content")[0].at("top_logprobs")[2].at("token"), "i");
  EXPECT_TRUE(chat.at("refusal").is_null());
  json r = full_response(endpoint::chat, "chatcmpl-1", "m", 5, "h", "length", {1, 2, 0});
  EXPECT_TRUE(r.at("choices")[0].at("logprobs").is_null());
  set_logprobs(r, chat);
  EXPECT_EQ(r.at("choices")[0].at("logprobs"), chat);
  // -inf (probability 0 in fp32) is written as the lowest float: JSON has no infinity.
  const std::vector<token_logprobs> inf = {{'a', -INFINITY, {}, 0}};
  EXPECT_EQ(logprobs_json(endpoint::completions, t, inf).at("token_logprobs")[0],
            std::numeric_limits<float>::lowest());
}

TEST(ServeApi, ResponsesHaveTheOpenAiShape) {
  const json c = stream_chunk(endpoint::chat, "chatcmpl-1", "m", 5, "hi", true, "");
  EXPECT_EQ(c.at("object"), "chat.completion.chunk");
  EXPECT_EQ(c.at("choices")[0].at("delta").at("role"), "assistant");
  EXPECT_EQ(c.at("choices")[0].at("delta").at("content"), "hi");
  EXPECT_TRUE(c.at("choices")[0].at("finish_reason").is_null());
  const json u = usage_chunk(endpoint::completions, "cmpl-1", "m", 5, {10, 3, 4});
  EXPECT_TRUE(u.at("choices").empty());
  EXPECT_EQ(u.at("usage").at("total_tokens"), 13);
  EXPECT_EQ(u.at("usage").at("prompt_tokens_details").at("cached_tokens"), 4);
  const json f = full_response(endpoint::completions, "cmpl-1", "m", 5, "ok", "length", {1, 2, 0});
  EXPECT_EQ(f.at("choices")[0].at("text"), "ok");
  EXPECT_EQ(f.at("choices")[0].at("finish_reason"), "length");
}

TEST(ServeApi, TextStreamHoldsBackAPossibleStopStringAndCutsAtIt) {
  const tokenizer t = tokenizer::byte_level(300);
  text_stream s(t, {"END"});
  std::string sent;
  for (char c : std::string("abcEN")) sent += s.push(static_cast<token_id>(c));
  EXPECT_EQ(sent, "abc");  // "EN" could begin "END"
  sent += s.push('X');     // it did not
  EXPECT_EQ(sent, "abcENX");
  for (char c : std::string("yEND tail")) sent += s.push(static_cast<token_id>(c));
  EXPECT_TRUE(s.stopped());
  sent += s.finish();
  EXPECT_EQ(sent, "abcENXy");
  // No stop strings: everything goes at once; multi-byte characters stay whole.
  text_stream plain(t, {});
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(plain.push(static_cast<unsigned char>(euro[0])), "");
  EXPECT_EQ(plain.push(static_cast<unsigned char>(euro[1])), "");
  EXPECT_EQ(plain.push(static_cast<unsigned char>(euro[2])), euro);
}

namespace {

// Everything a parse decides, as one string: two parses agree when their strings do.
std::string outcome_of(const std::variant<api_request, api_error>& v) {
  if (const auto* e = std::get_if<api_error>(&v)) {
    return "error " + std::to_string(e->status) + " " + e->type + " " + e->param + " " + e->code +
           ": " + e->message;
  }
  const api_request& r = std::get<api_request>(v);
  json messages = json::array();
  for (const auto& m : r.messages) messages.push_back({m.role, m.content});
  return json{{"model", r.model},
              {"prompt", r.prompt},
              {"ids", r.prompt_ids},
              {"is_ids", r.prompt_is_ids},
              {"messages", messages},
              {"max_tokens", r.max_tokens},
              {"temperature", r.temperature},
              {"top_p", r.top_p},
              {"top_k", r.top_k},
              {"repetition_penalty", r.repetition_penalty},
              {"seed", r.seed ? json(*r.seed) : json(nullptr)},
              {"stop", r.stop},
              {"stop_token_ids", r.stop_token_ids},
              {"ignore_eos", r.ignore_eos},
              {"stream", r.stream},
              {"include_usage", r.include_usage},
              {"continuous_usage", r.continuous_usage},
              {"logprobs", r.logprobs}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

TEST(ServeApi, FastPromptIdsReadAgreesWithTheFullParse) {
  api_limits limits;
  limits.max_logprobs = 3;
  std::vector<std::string> bodies = {
      R"({"prompt":[1,2,3]})",
      R"(  { "model" : "m" , "prompt" : [ 0 , 17 ,2147483647 ] , "stream":true,
          "stream_options":{"include_usage":true,"prompt":[9]}, "max_tokens": 5 }  )",
      R"({"stop":"\"prompt\":[1]","prompt":[4,5],"echo":false,"x":{"a":[1,{"b":"]}"}]}})",
      R"({"prompt":[1],"prompt":[2,3]})",  // JSON objects keep the last
      R"({"prompt":"[1,2]","prompt":[7]})",
      R"({"pr\u006fmpt":[5],"max_tokens":2})",  // an escaped key reads "prompt" too
      R"({"prompt":[2147483648]})",             // beyond token ids
      R"({"prompt":[-1,2]})",
      R"({"prompt":[1.0,2]})",
      R"({"prompt":[1e2]})",
      R"({"prompt":[01]})",
      R"({"prompt":[]})",
      R"({"prompt":[[1,2,3]]})",
      R"({"prompt":[1,2,]})",
      R"({"prompt":[1 2]})",
      R"({"prompt":[1,2]} trailing)",
      R"({"prompt":[1,2]}{})",
      R"({"prompt":[1,2],})",
      R"({"prompt":[1,2],"n":2})",
      R"({"prompt":[1,2],"temperature":9})",
      R"({"prompt":[1,2],"logprobs":4})",
      R"({"prompt":[3],"bad":"\x"})",
      R"({"prompt":[3],"bad":tru})",
      R"({"prompt":[3],"s":"unterminated})",
      "\xEF\xBB\xBF{\"prompt\":[1,2]}",        // a byte-order mark
      "{\"prompt\":[1,2],\"stop\":\"\xFF\"}",  // not UTF-8
      R"([{"prompt":[1]}])",
      R"("prompt")",
      R"({"prompt":null})",
      R"({"prompt":[1,2],"model":"m","seed":-3,"top_k":-1})"};
  // Every prefix and every one-byte change of a realistic body: the fast read must never accept
  // what the full parse rejects, nor read anything otherwise.
  const std::string base =
      R"({"model":"tiny-gpu","prompt":[12, 0,305 ,7],"max_tokens":8,"stream":true,)"
      R"("stream_options":{"continuous_usage_stats":true},"stop":["a\"]"],"ignore_eos":true})";
  for (std::size_t n = 0; n <= base.size(); ++n) bodies.push_back(base.substr(0, n));
  const std::string swaps = "[]{},:\" 0-9e.\\x";
  for (std::size_t i = 0; i < base.size(); ++i) {
    for (char c : swaps) {
      std::string b = base;
      b[i] = c;
      bodies.push_back(b);
    }
    bodies.push_back(base.substr(0, i) + base.substr(i + 1));
  }
  std::size_t fast = 0;
  for (const auto& b : bodies) {
    for (endpoint k : {endpoint::completions, endpoint::chat}) {
      EXPECT_EQ(outcome_of(parse_api_request(k, b, limits)),
                outcome_of(serve::detail::parse_api_request_dom(k, b, limits)))
          << b;
    }
    std::size_t begin = 0, end = 0;
    std::vector<token_id> ids;
    if (serve::detail::find_prompt_ids(b, begin, end, ids)) ++fast;
  }
  // The fast read does take the plain bodies (the agreement above is not only the fallback's).
  EXPECT_GT(fast, 200u);
  std::size_t begin = 0, end = 0;
  std::vector<token_id> ids;
  ASSERT_TRUE(serve::detail::find_prompt_ids(bodies[1], begin, end, ids));
  EXPECT_EQ(ids, (std::vector<token_id>{0, 17, 2147483647}));
  EXPECT_EQ(bodies[1].substr(begin, end - begin), "[ 0 , 17 ,2147483647 ]");
  // Twice, or under an escaped key: the full parse decides.
  EXPECT_FALSE(serve::detail::find_prompt_ids(bodies[3], begin, end, ids));
  EXPECT_FALSE(serve::detail::find_prompt_ids(bodies[5], begin, end, ids));
}

// ---- the server over loopback sockets ---------------------------------------------------------

namespace {

struct http_response {
  int status = 0;
  std::string headers, body;
};

int connect_to(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

std::string dechunk(const std::string& b) {
  std::string out;
  std::size_t p = 0;
  while (p < b.size()) {
    const auto eol = b.find("\r\n", p);
    if (eol == std::string::npos) break;
    const std::size_t n = std::stoul(b.substr(p, eol - p), nullptr, 16);
    if (n == 0) break;
    out += b.substr(eol + 2, n);
    p = eol + 2 + n + 2;
  }
  return out;
}

// Sends one request with Connection: close and reads the whole response.
http_response exchange(int port, const std::string& method, const std::string& path,
                       const std::string& body = {}, const std::string& extra_headers = {}) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  send_all(fd, method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                   "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body);
  std::string raw;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  http_response r;
  const auto head_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || head_end == std::string::npos) return r;
  r.status = std::stoi(raw.substr(9, 3));
  r.headers = raw.substr(0, head_end);
  r.body = raw.substr(head_end + 4);
  if (r.headers.find("Transfer-Encoding: chunked") != std::string::npos) r.body = dechunk(r.body);
  return r;
}

// The `data:` events of a server-sent-event body.
std::vector<std::string> events_of(const std::string& body) {
  std::vector<std::string> out;
  std::size_t p = 0;
  while ((p = body.find("data: ", p)) != std::string::npos) {
    const auto end = body.find("\n\n", p);
    out.push_back(body.substr(p + 6, end - p - 6));
    p = end;
  }
  return out;
}

double metric(int port, const std::string& name_and_labels) {
  const http_response r = exchange(port, "GET", "/metrics");
  const auto p = r.body.find("\n" + name_and_labels + " ");
  if (p == std::string::npos) return -1;
  return std::stod(r.body.substr(p + name_and_labels.size() + 2));
}

server_options tiny_options() {
  server_options o;
  o.engine.serving.model = "tiny-gpu";
  o.engine.cpu = true;
  o.engine.kv_blocks = 192;
  o.address = "127.0.0.1:0";
  return o;
}

struct running_server {
  explicit running_server(const server_options& o) : s(o), thread([this] { s.run(); }) {}
  ~running_server() {
    s.stop();
    thread.join();
  }
  server s;
  std::thread thread;
};

}  // namespace

TEST(Serve, RoutesAnswerWithOpenAiBodiesAndStatuses) {
  running_server rs(tiny_options());
  const int port = rs.s.port();
  ASSERT_GT(port, 0);
  EXPECT_EQ(exchange(port, "GET", "/health").status, 200);
  const http_response models = exchange(port, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body).at("data")[0].at("id"), "tiny-gpu");
  EXPECT_EQ(exchange(port, "GET", "/nope").status, 404);
  const http_response wrong = exchange(port, "GET", "/v1/completions");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_NE(wrong.headers.find("Allow: POST"), std::string::npos);
  const http_response bad = exchange(port, "POST", "/v1/completions", "{oops");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json::parse(bad.body).at("error").at("type"), "invalid_request_error");
  const http_response model = exchange(port, "POST", "/v1/completions",
                                       R"({"model":"gpt-9","prompt":"x"})");
  EXPECT_EQ(model.status, 404);
  EXPECT_EQ(json::parse(model.body).at("error").at("code"), "model_not_found");
  const http_response long_prompt = exchange(
      port, "POST", "/v1/completions",
      json{{"prompt", std::string(1100, 'a')}, {"max_tokens", 4}}.dump());  // context 1,024
  EXPECT_EQ(long_prompt.status, 400);
  EXPECT_EQ(json::parse(long_prompt.body).at("error").at("code"), "context_length_exceeded");
  const http_response oob = exchange(port, "POST", "/v1/completions", R"({"prompt":[1,5000]})");
  EXPECT_EQ(oob.status, 400);
  const std::string metrics = exchange(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("ridgeline_kv_cache_blocks"), std::string::npos);
}

TEST(Serve, CompletesAndStreamsWithUsage) {
  running_server rs(tiny_options());
  const int port = rs.s.port();
  const http_response full = exchange(port, "POST", "/v1/completions",
                                      R"({"prompt":"Hello","max_tokens":9,"ignore_eos":true,
                                          "temperature":0})");
  ASSERT_EQ(full.status, 200) << full.body;
  const json f = json::parse(full.body);
  EXPECT_EQ(f.at("object"), "text_completion");
  EXPECT_EQ(f.at("usage").at("prompt_tokens"), 6);  // BOS + 5 bytes
  EXPECT_EQ(f.at("usage").at("completion_tokens"), 9);
  EXPECT_EQ(f.at("choices")[0].at("finish_reason"), "length");

  const http_response s = exchange(port, "POST", "/v1/chat/completions",
                                   R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":6,
                                       "ignore_eos":true,"temperature":0,"stream":true,
                                       "stream_options":{"include_usage":true}})");
  ASSERT_EQ(s.status, 200);
  EXPECT_NE(s.headers.find("text/event-stream"), std::string::npos);
  const auto ev = events_of(s.body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  const json first = json::parse(ev.front());
  EXPECT_EQ(first.at("choices")[0].at("delta").at("role"), "assistant");
  const json usage = json::parse(ev[ev.size() - 2]);
  EXPECT_EQ(usage.at("usage").at("completion_tokens"), 6);
  EXPECT_EQ(json::parse(ev[ev.size() - 3]).at("choices")[0].at("finish_reason"), "length");

  // Greedy is repeatable, and a streamed answer is the non-streamed one.
  const std::string body = R"({"prompt":"abc","max_tokens":12,"ignore_eos":true,"temperature":0)";
  const json a = json::parse(exchange(port, "POST", "/v1/completions", body + "}").body);
  const http_response streamed =
      exchange(port, "POST", "/v1/completions", body + R"(,"stream":true})");
  std::string text;
  for (const auto& e : events_of(streamed.body)) {
    if (e == "[DONE]") break;
    text += json::parse(e).at("choices")[0].at("text").get<std::string>();
  }
  EXPECT_EQ(text, a.at("choices")[0].at("text").get<std::string>());
}

TEST(Serve, ContinuousUsageSendsEveryTokenWithItsCount) {
  running_server rs(tiny_options());
  const http_response s = exchange(rs.s.port(), "POST", "/v1/completions",
                                   R"({"prompt":"Hi","max_tokens":20,"ignore_eos":true,"stream":true,
                                       "stream_options":{"continuous_usage_stats":true}})");
  ASSERT_EQ(s.status, 200);
  auto ev = events_of(s.body);
  ASSERT_EQ(ev.back(), "[DONE]");
  ev.pop_back();
  // One chunk per token (random weights complete no text for some), then the finish chunk.
  ASSERT_EQ(ev.size(), 21u);
  for (std::size_t i = 0; i < ev.size(); ++i) {
    const json u = json::parse(ev[i]).at("usage");
    EXPECT_EQ(u.at("completion_tokens"), std::min<std::size_t>(i + 1, 20)) << i;
    EXPECT_EQ(u.at("prompt_tokens"), 3);
  }
}

TEST(Serve, ADisconnectedStreamFreesItsBlocksAtOnce) {
  running_server rs(tiny_options());
  const int port = rs.s.port();
  const int fd = connect_to(port);
  ASSERT_GE(fd, 0);
  const std::string body =
      R"({"prompt":"a long answer please","max_tokens":900,"ignore_eos":true,"stream":true})";
  send_all(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
  // Wait for the first streamed token, then go away.
  std::string got;
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  while (got.find("data: ") == std::string::npos && poll(&p, 1, 5000) > 0) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ASSERT_NE(got.find("data: "), std::string::npos);
  EXPECT_GT(metric(port, R"(ridgeline_kv_cache_blocks{state="used"})"), 0);
  close(fd);
  double used = -1;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    used = metric(port, R"(ridgeline_kv_cache_blocks{state="used"})");
    if (used == 0) break;
  }
  EXPECT_EQ(used, 0) << "the disconnected request still holds KV blocks";
  EXPECT_EQ(exchange(port, "GET", "/health").status, 200);  // and the server still serves
}

TEST(Serve, AFullQueueAnswers429WithRetryAfter) {
  server_options o = tiny_options();
  o.max_waiting = 1;
  o.engine.serving.max_running = 1;  // the second request waits, the third finds the queue full
  running_server rs(o);
  const int port = rs.s.port();
  const std::string body = R"({"prompt":"x","max_tokens":400,"ignore_eos":true,"stream":true})";
  const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  const int a = connect_to(port);
  send_all(a, req);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int b = connect_to(port);
  send_all(b, req);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const http_response full = exchange(port, "POST", "/v1/completions", body);
  close(a);
  close(b);
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_NE(full.headers.find("Retry-After: 1"), std::string::npos);
}

namespace {

// Checks one chat logprobs entry list against k alternatives; greedy: the token is the top one.
void expect_chat_logprobs(const json& content, std::size_t k, bool greedy) {
  for (std::size_t i = 0; i < content.size(); ++i) {
    const json& e = content[i];
    const double lp = e.at("logprob").get<double>();
    EXPECT_LE(lp, 0.0) << i;
    EXPECT_TRUE(e.at("bytes").is_array());
    const json& top = e.at("top_logprobs");
    ASSERT_EQ(top.size(), k) << "token " << i;
    for (std::size_t j = 1; j < top.size(); ++j) {
      EXPECT_GE(top[j - 1].at("logprob").get<double>(), top[j].at("logprob").get<double>())
          << "token " << i << " is not sorted";
    }
    if (greedy && k > 0) {
      EXPECT_EQ(top[0].at("token"), e.at("token")) << "token " << i;
      EXPECT_EQ(top[0].at("bytes"), e.at("bytes")) << "token " << i;
      EXPECT_EQ(top[0].at("logprob").get<double>(), lp) << "token " << i;
    }
  }
}

}  // namespace

TEST(Serve, CompletionsReturnLogprobsOfTheRawDistribution) {
  server_options o = tiny_options();
  o.engine.top_logprobs = 5;
  running_server rs(o);
  const int port = rs.s.port();
  const http_response full = exchange(port, "POST", "/v1/completions",
                                      R"({"prompt":"Hello","max_tokens":12,"ignore_eos":true,
                                          "temperature":0,"logprobs":3})");
  ASSERT_EQ(full.status, 200) << full.body;
  const json f = json::parse(full.body);
  const json& lp = f.at("choices")[0].at("logprobs");
  const std::size_t n = f.at("usage").at("completion_tokens").get<std::size_t>();
  ASSERT_EQ(n, 12u);
  ASSERT_EQ(lp.at("tokens").size(), n);
  ASSERT_EQ(lp.at("token_logprobs").size(), n);
  ASSERT_EQ(lp.at("top_logprobs").size(), n);
  ASSERT_EQ(lp.at("text_offset").size(), n);
  EXPECT_EQ(lp.at("text_offset")[0], 0);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = lp.at("token_logprobs")[i].get<double>();
    EXPECT_LE(t, 0.0);
    const json& top = lp.at("top_logprobs")[i];
    // An object by text: 3 entries, fewer only when two alternatives read the same.
    EXPECT_GE(top.size(), 1u);
    EXPECT_LE(top.size(), 3u);
    double best = -1e30;
    for (const auto& [text, v] : top.items()) best = std::max(best, v.get<double>());
    // Greedy: the sampled token is the most likely one, with the same value.
    const std::string text = lp.at("tokens")[i].get<std::string>();
    ASSERT_TRUE(top.contains(text)) << "token " << i << " '" << text << "' not in its top 3";
    EXPECT_EQ(top.at(text).get<double>(), t);
    EXPECT_EQ(best, t);
    if (i > 0) {
      EXPECT_GE(lp.at("text_offset")[i], lp.at("text_offset")[i - 1]);
    }
  }
  // Streamed: the chunks' logprobs together are the whole answer's, the same values.
  const http_response s = exchange(port, "POST", "/v1/completions",
                                   R"({"prompt":"Hello","max_tokens":12,"ignore_eos":true,
                                       "temperature":0,"logprobs":3,"stream":true})");
  ASSERT_EQ(s.status, 200);
  json streamed = json::array();
  for (const auto& e : events_of(s.body)) {
    if (e == "[DONE]") break;
    const json chunk = json::parse(e);
    const json& l = chunk.at("choices")[0].at("logprobs");
    if (l.is_null()) continue;
    for (const auto& v : l.at("token_logprobs")) streamed.push_back(v);
  }
  EXPECT_EQ(streamed, lp.at("token_logprobs"));
  // Beyond --max-logprobs: 400.
  const http_response many = exchange(port, "POST", "/v1/completions",
                                      R"({"prompt":"x","logprobs":6})");
  EXPECT_EQ(many.status, 400);
  EXPECT_NE(json::parse(many.body).at("error").at("message").get<std::string>().find(
                "--max-logprobs"),
            std::string::npos);
  // Without logprobs asked, none come.
  const json plain = json::parse(exchange(port, "POST", "/v1/completions",
                                          R"({"prompt":"Hello","max_tokens":3})")
                                     .body);
  EXPECT_TRUE(plain.at("choices")[0].at("logprobs").is_null());
}

TEST(Serve, ChatReturnsLogprobsContentStreamedAndNot) {
  server_options o = tiny_options();
  o.engine.top_logprobs = 4;
  o.engine.overlap = true;
  running_server rs(o);
  const int port = rs.s.port();
  const std::string body = R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":10,
                               "ignore_eos":true,"temperature":0,"logprobs":true,
                               "top_logprobs":4)";
  const http_response full = exchange(port, "POST", "/v1/chat/completions", body + "}");
  ASSERT_EQ(full.status, 200) << full.body;
  const json f = json::parse(full.body);
  const json& content = f.at("choices")[0].at("logprobs").at("content");
  ASSERT_EQ(content.size(), 10u);
  expect_chat_logprobs(content, 4, true);
  const http_response s = exchange(port, "POST", "/v1/chat/completions",
                                   body + R"(,"stream":true})");
  ASSERT_EQ(s.status, 200);
  json streamed = json::array();
  for (const auto& e : events_of(s.body)) {
    if (e == "[DONE]") break;
    const json chunk = json::parse(e);
    const json& l = chunk.at("choices")[0].at("logprobs");
    if (l.is_null()) continue;
    for (const auto& v : l.at("content")) streamed.push_back(v);
  }
  EXPECT_EQ(streamed, content);
  // Sampled (not greedy): the token need not be in the top list, but its value is its own.
  const http_response sampled = exchange(
      port, "POST", "/v1/chat/completions",
      R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":16,"ignore_eos":true,
          "temperature":1.5,"seed":7,"logprobs":true,"top_logprobs":2})");
  ASSERT_EQ(sampled.status, 200);
  const json sampled_body = json::parse(sampled.body);
  const json& sc = sampled_body.at("choices")[0].at("logprobs").at("content");
  ASSERT_EQ(sc.size(), 16u);
  expect_chat_logprobs(sc, 2, false);
  // logprobs true with no top_logprobs: the tokens' own values and empty lists.
  const json zero = json::parse(
      exchange(port, "POST", "/v1/chat/completions",
               R"({"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"logprobs":true})")
          .body);
  expect_chat_logprobs(zero.at("choices")[0].at("logprobs").at("content"), 0, false);
  EXPECT_EQ(zero.at("choices")[0].at("logprobs").at("content").size(), 3u);
}

TEST(Serve, LogprobsAreRefusedWhenOff) {
  running_server rs(tiny_options());
  const http_response r = exchange(rs.s.port(), "POST", "/v1/chat/completions",
                                   R"({"messages":[{"role":"user","content":"Hi"}],
                                       "logprobs":true,"top_logprobs":1})");
  EXPECT_EQ(r.status, 400);
  const json e = json::parse(r.body).at("error");
  EXPECT_EQ(e.at("param"), "logprobs");
  EXPECT_NE(e.at("message").get<std::string>().find("--max-logprobs"), std::string::npos);
}

TEST(Serve, RecordHasEveryAnsweredRequestsStampsInOrder) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ridgeline_serve_record_" + std::to_string(getpid()) + ".json.gz");
  server_options o = tiny_options();
  o.record_path = path.string();
  {
    running_server rs(o);
    const int port = rs.s.port();
    const std::string body =
        R"({"prompt":"Hello","max_tokens":7,"ignore_eos":true,"temperature":0,"stream":true})";
    ASSERT_EQ(exchange(port, "POST", "/v1/completions", body, "X-Request-Id: 41\r\n").status, 200);
    ASSERT_EQ(exchange(port, "POST", "/v1/completions",
                       R"({"prompt":"Hi","max_tokens":3,"ignore_eos":true})",
                       "X-Request-Id: x-2\r\n")
                  .status,
              200);
    ASSERT_EQ(exchange(port, "POST", "/v1/completions", R"({"prompt":"Hi","max_tokens":2})").status,
              200);
  }  // stopped: the record is written
  const schema::serve_record_document d = schema::read_serve_record(path);
  std::filesystem::remove(path);
  EXPECT_EQ(d.model, "tiny-gpu");
  EXPECT_EQ(d.executor, "cpu");
  const auto& q = d.requests;
  ASSERT_EQ(q.client_id.size(), 3u);
  EXPECT_EQ(q.client_id[0], "41");
  EXPECT_EQ(q.client_id[1], "x-2");
  EXPECT_EQ(q.client_id[2], "");  // no header: no id
  EXPECT_EQ(q.output_tokens[0], 7);
  EXPECT_EQ(q.output_tokens[1], 3);
  EXPECT_EQ(q.prompt_tokens[0], 6);  // BOS + 5 bytes
  for (std::size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(q.outcome[i], "finished");
    EXPECT_LT(q.arrival_seconds[i], q.first_token_seconds[i]);
    EXPECT_LE(q.first_token_seconds[i], q.last_token_seconds[i]);
    EXPECT_LE(q.first_token_seconds[i], q.first_write_seconds[i]);
    EXPECT_LE(q.first_write_seconds[i], q.last_write_seconds[i]);
    EXPECT_LE(q.last_token_seconds[i], q.last_write_seconds[i]);
    if (i > 0) {
      EXPECT_LT(q.last_write_seconds[i - 1], q.arrival_seconds[i]);  // one at a time
    }
  }
  // Streamed: one write per token, the first after the first token; not streamed: one body.
  EXPECT_LT(q.first_write_seconds[0], q.last_write_seconds[0]);
  EXPECT_EQ(q.first_write_seconds[1], q.last_write_seconds[1]);
  // The engine's steps: every prompt token prefilled once (none cached: prompts under a block),
  // every token after a request's first decoded once, in time order between the requests.
  const auto& st = d.steps;
  ASSERT_FALSE(st.start_seconds.empty());
  std::int64_t prefill = 0, decode = 0, want_prefill = 0, want_decode = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    want_prefill += q.prompt_tokens[i] - q.cached_tokens[i];
    want_decode += q.output_tokens[i] - 1;
  }
  for (std::size_t j = 0; j < st.start_seconds.size(); ++j) {
    SCOPED_TRACE(j);
    prefill += st.prefill_tokens[j];
    decode += st.decode_tokens[j];
    EXPECT_LE(st.start_seconds[j], st.end_seconds[j]);
    if (j > 0) {
      EXPECT_LE(st.end_seconds[j - 1], st.end_seconds[j]);
    }
    EXPECT_GE(st.end_seconds[j], q.arrival_seconds[0]);
    EXPECT_LE(st.end_seconds[j], q.last_write_seconds[2]);
    EXPECT_GE(st.sequences[j], 1);
    EXPECT_EQ(st.graph[j], 0);  // the cpu executor has none
  }
  EXPECT_EQ(prefill, want_prefill);
  EXPECT_EQ(decode, want_decode);
}

// Delegates to the real executor and throws from the step that `fail_at` counts to (1-based).
class failing_executor : public executor {
 public:
  failing_executor(std::unique_ptr<executor> inner, int fail_at)
      : m_inner(std::move(inner)), m_fail_at(fail_at) {}
  step_output step(std::span<const step_sequence> seqs) override {
    count();
    return m_inner->step(seqs);
  }
  void launch(std::span<const step_sequence> seqs) override {
    count();
    m_inner->launch(seqs);
  }
  step_output wait() override { return m_inner->wait(); }
  void copy_blocks(std::span<const block_transfer> t) override { m_inner->copy_blocks(t); }
  std::int32_t host_blocks() const override { return m_inner->host_blocks(); }

 private:
  void count() {
    if (++m_steps == m_fail_at) throw std::runtime_error("injected: step " + std::to_string(m_steps));
  }
  std::unique_ptr<executor> m_inner;
  int m_fail_at = 0, m_steps = 0;
};

TEST(Serve, AnEngineThatFailsAnswers503EverywhereAndSaysSoOnce) {
  server_options o = tiny_options();
  o.wrap_executor = [](std::unique_ptr<executor> e) {
    return std::make_unique<failing_executor>(std::move(e), 4);
  };
  std::mutex m;
  std::vector<std::string> notes;
  server s(o, [&](const std::string& line) {
    std::lock_guard lk(m);
    notes.push_back(line);
  });
  std::thread t([&] { s.run(); });
  const int port = s.port();
  EXPECT_EQ(exchange(port, "GET", "/health").status, 200);
  // The stream that meets the failure ends with an error event naming it.
  const http_response r = exchange(
      port, "POST", "/v1/completions",
      R"({"prompt":"Hello","max_tokens":20,"ignore_eos":true,"temperature":0,"stream":true})");
  ASSERT_EQ(r.status, 200);
  const auto ev = events_of(r.body);
  ASSERT_FALSE(ev.empty());
  const json last = json::parse(ev.back());
  ASSERT_TRUE(last.contains("error")) << r.body;
  EXPECT_NE(last.at("error").at("message").get<std::string>().find("injected: step 4"),
            std::string::npos);
  // From then on: /health and every new request answer 503 with the reason.
  const http_response h = exchange(port, "GET", "/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_NE(h.body.find("the engine failed: injected: step 4"), std::string::npos) << h.body;
  for (int i = 0; i < 3; ++i) {
    const http_response x =
        exchange(port, "POST", "/v1/completions", R"({"prompt":"Hi","max_tokens":2})");
    EXPECT_EQ(x.status, 503);
    EXPECT_NE(x.body.find("the engine failed"), std::string::npos) << x.body;
  }
  s.stop();
  t.join();
  std::lock_guard lk(m);
  const auto said = std::count_if(notes.begin(), notes.end(), [](const std::string& l) {
    return l.find("serve: the engine failed, every request now gets 503: injected: step 4") == 0;
  });
  EXPECT_EQ(said, 1);
}

TEST(Serve, ARecordPathThatCannotBeWrittenFailsBeforeServing) {
  server_options o = tiny_options();
  o.record_path = "/nonexistent-ridgeline-dir/record.json";
  try {
    server s(o);
    FAIL() << "the server started with an unwritable --record path";
  } catch (const io_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("/nonexistent-ridgeline-dir/record.json"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

namespace {

// Opens a streamed completion on a new connection (the request written, nothing read yet).
int open_stream(int port, const std::string& body, int receive_buffer_bytes = 0) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer_bytes > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  send_all(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
  return fd;
}

// Reads to the end of the connection; the body, de-chunked.
std::string read_body(int fd) {
  std::string raw;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  const auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return {};
  return dechunk(raw.substr(head_end + 4));
}

// Reads to the end of the connection, after `got` already read; the body, de-chunked.
std::string read_body_after(int fd, std::string raw) {
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  const auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return {};
  return dechunk(raw.substr(head_end + 4));
}

// The server runs in this process: its end of our connection `fd` is the socket bound to the
// server's port whose peer is our port (-1 when there is none).
int server_end_of(int fd, int port) {
  sockaddr_in mine{};
  socklen_t len = sizeof mine;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &len) != 0) return -1;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int other = std::stoi(entry.path().filename().string());
    sockaddr_in local{}, peer{};
    socklen_t a = sizeof local, b = sizeof peer;
    if (getsockname(other, reinterpret_cast<sockaddr*>(&local), &a) != 0 ||
        getpeername(other, reinterpret_cast<sockaddr*>(&peer), &b) != 0 ||
        local.sin_family != AF_INET) {
      continue;
    }
    if (ntohs(local.sin_port) == port && peer.sin_port == mine.sin_port) return other;
  }
  return -1;
}

// A continuous-usage stream's text, checking that its chunks count 1, 2, ... in order and end
// with the finish chunk and [DONE].
std::string stream_text(const std::string& body, int tokens) {
  auto ev = events_of(body);
  EXPECT_FALSE(ev.empty());
  if (ev.empty()) return {};
  EXPECT_EQ(ev.back(), "[DONE]");
  ev.pop_back();
  EXPECT_EQ(std::ssize(ev), tokens + 1);
  std::string text;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    const json c = json::parse(ev[i]);
    EXPECT_EQ(c.at("usage").at("completion_tokens"), std::min<std::size_t>(i + 1, tokens)) << i;
    text += c.at("choices")[0].at("text").get<std::string>();
  }
  return text;
}

}  // namespace

TEST(Serve, ConcurrentStreamsKeepTheirOrderAndText) {
  // Streams that start while others decode: their first tokens and the others' next tokens come
  // back from the same steps, and each stream's chunks still arrive whole, counted in order, with
  // the text its request gets alone.
  running_server rs(tiny_options());
  const int port = rs.s.port();
  auto body = [](int k, bool stream) {
    return R"({"prompt":"stream )" + std::to_string(k) +
           R"(","max_tokens":24,"ignore_eos":true,"temperature":0)" +
           (stream ? R"(,"stream":true,"stream_options":{"continuous_usage_stats":true}})"
                   : std::string("}"));
  };
  constexpr int n = 6;
  std::vector<std::string> alone(n);
  for (int k = 0; k < n; ++k) {
    const http_response r = exchange(port, "POST", "/v1/completions", body(k, false));
    ASSERT_EQ(r.status, 200) << r.body;
    alone[k] = json::parse(r.body).at("choices")[0].at("text").get<std::string>();
  }
  std::vector<int> fds;
  for (int k = 0; k < n; ++k) {
    fds.push_back(open_stream(port, body(k, true)));
    ASSERT_GE(fds.back(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(7));
  }
  std::vector<std::string> bodies(n);
  std::vector<std::thread> readers;
  for (int k = 0; k < n; ++k) readers.emplace_back([&, k] { bodies[k] = read_body(fds[k]); });
  for (auto& t : readers) t.join();
  for (int k = 0; k < n; ++k) {
    SCOPED_TRACE(k);
    EXPECT_EQ(stream_text(bodies[k], 24), alone[k]);
  }
}

TEST(Serve, AStreamToASlowReaderArrivesWholeAndInOrder) {
  // The client reads nothing for a while, and both ends' buffers are small: the server's writes
  // stop part-way, the rest waits in its buffer and goes out as the client reads. The stream
  // arrives whole, in order, with the text of the same request answered at once.
  running_server rs(tiny_options());
  const int port = rs.s.port();
  const std::string body =
      R"({"prompt":"slow","max_tokens":600,"ignore_eos":true,"temperature":0,"stream":true,)"
      R"("stream_options":{"continuous_usage_stats":true}})";
  const int fd = open_stream(port, body, 2048);
  ASSERT_GE(fd, 0);
  char first[1];
  pollfd p{fd, POLLIN, 0};
  ASSERT_GT(poll(&p, 1, 5000), 0);  // the response has begun: the server's socket exists
  ASSERT_EQ(recv(fd, first, 1, 0), 1);
  const int server_side = server_end_of(fd, port);
  ASSERT_GE(server_side, 0);
  const int small = 4096;  // fixed: the kernel no longer grows it
  ASSERT_EQ(setsockopt(server_side, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::string rest = read_body_after(fd, std::string(first, 1));
  const std::string text = stream_text(rest, 600);
  const http_response alone =
      exchange(port, "POST", "/v1/completions",
               R"({"prompt":"slow","max_tokens":600,"ignore_eos":true,"temperature":0})");
  ASSERT_EQ(alone.status, 200);
  EXPECT_EQ(text, json::parse(alone.body).at("choices")[0].at("text").get<std::string>());
}

TEST(Serve, AnHttp10StreamEndsWithTheConnection) {
  // HTTP/1.0 has no chunked encoding: the stream is the raw events, ended by the close.
  running_server rs(tiny_options());
  const int fd = connect_to(rs.s.port());
  ASSERT_GE(fd, 0);
  const std::string body =
      R"({"prompt":"old","max_tokens":5,"ignore_eos":true,"stream":true,)"
      R"("stream_options":{"continuous_usage_stats":true}})";
  send_all(fd, "POST /v1/completions HTTP/1.0\r\nContent-Length: " + std::to_string(body.size()) +
                   "\r\n\r\n" + body);
  std::string raw;
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  while (poll(&p, 1, 5000) > 0) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  const auto head_end = raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << raw;
  EXPECT_EQ(raw.find("Transfer-Encoding: chunked"), std::string::npos);
  stream_text(raw.substr(head_end + 4), 5);
}

TEST(Serve, ConnectionsHaveNoDelay) {
  // Nagle would hold a chunk until the client acknowledged the previous segment, which a delayed
  // ACK keeps back for up to 40 ms.
  running_server rs(tiny_options());
  const int port = rs.s.port();
  const int fd =
      open_stream(port, R"({"prompt":"x","max_tokens":200,"ignore_eos":true,"stream":true})");
  ASSERT_GE(fd, 0);
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  ASSERT_GT(poll(&p, 1, 5000), 0);
  ASSERT_GT(recv(fd, buf, sizeof(buf), 0), 0);  // the request has been handled
  const int server_side = server_end_of(fd, port);
  ASSERT_GE(server_side, 0) << "the server's end of the connection was not found";
  int nodelay = 0;
  socklen_t size = sizeof nodelay;
  ASSERT_EQ(getsockopt(server_side, IPPROTO_TCP, TCP_NODELAY, &nodelay, &size), 0);
  EXPECT_NE(nodelay, 0);
  close(fd);
}

TEST(Serve, ClientsThatCloseMidStreamDoNotStopTheServer) {
  // Each client reads its first chunk and closes with the stream going on: the server's next
  // writes meet a closed socket (EPIPE; SIGPIPE would end this process), and it cancels them.
  running_server rs(tiny_options());
  const int port = rs.s.port();
  for (int k = 0; k < 8; ++k) {
    const int fd = open_stream(
        port, R"({"prompt":"bye","max_tokens":300,"ignore_eos":true,"stream":true,)"
              R"("stream_options":{"continuous_usage_stats":true}})");
    ASSERT_GE(fd, 0);
    char buf[4096];
    pollfd p{fd, POLLIN, 0};
    ASSERT_GT(poll(&p, 1, 5000), 0);
    ASSERT_GT(recv(fd, buf, sizeof(buf), 0), 0);
    if (k % 2 == 1) {
      const linger reset{1, 0};  // an RST instead of a FIN
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  double used = -1;
  for (int i = 0; i < 100 && used != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    used = metric(port, R"(ridgeline_kv_cache_blocks{state="used"})");
  }
  EXPECT_EQ(used, 0);
  EXPECT_EQ(exchange(port, "GET", "/health").status, 200);
}

TEST(Serve, ClientsGoneWhenTheServerStopsDoNotStopTheProcess) {
  // Stopping ends every stream with an error event, written to clients that closed a moment
  // before (sooner than the 100 ms probe notices): writes to closed sockets, whose SIGPIPE would
  // end this process.
  for (int round = 0; round < 3; ++round) {
    server_options o = tiny_options();
    o.engine.serving.max_running = 1;  // the later streams wait, their headers sent
    running_server rs(o);
    std::vector<int> fds;
    for (int k = 0; k < 4; ++k) {
      fds.push_back(open_stream(rs.s.port(), R"({"prompt":"x","max_tokens":400,"ignore_eos":true,)"
                                             R"("stream":true})"));
      ASSERT_GE(fds.back(), 0);
      char buf[4096];
      pollfd p{fds.back(), POLLIN, 0};
      ASSERT_GT(poll(&p, 1, 5000), 0);  // the headers (and perhaps a chunk)
      ASSERT_GT(recv(fds.back(), buf, sizeof(buf), 0), 0);
    }
    for (int fd : fds) close(fd);
  }  // each server stops here
  SUCCEED();
}
