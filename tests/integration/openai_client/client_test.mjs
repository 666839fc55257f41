// The official `openai` npm client against `ridgeline serve` (cpu executor, tiny model):
// models, text and chat completions, streamed and not, usage, log-probabilities (the server runs
// with --max-logprobs 5), and the documented errors.
//   node client_test.mjs BASE_URL MODEL
// Prints one "ok: ..." line per check and exits 1 on the first failure.
import OpenAI from "openai";

const [base, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });

function check(name, cond, detail = "") {
  if (!cond) {
    console.log(`FAIL: ${name} ${detail}`);
    process.exit(1);
  }
  console.log(`ok: ${name}`);
}

async function expectError(name, status, fn, want = {}) {
  try {
    await fn();
  } catch (e) {
    check(`${name}: ${e.constructor.name} ${e.status}`, e instanceof OpenAI.APIError && e.status === status,
          `(got ${e.constructor.name} ${e.status} ${e.message})`);
    for (const [k, v] of Object.entries(want)) {
      check(`${name}: error.${k} = ${v}`, e.error && e.error[k] === v, `(got ${JSON.stringify(e.error)})`);
    }
    return;
  }
  check(name, false, "(no error)");
}

const models = await client.models.list();
check("models.list names the served model", models.data.some((m) => m.id === model),
      JSON.stringify(models.data));

const text = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12,
                                               temperature: 0, ignore_eos: true });
check("completion: text", typeof text.choices[0].text === "string");
check("completion: usage", text.usage.completion_tokens === 12 && text.usage.prompt_tokens > 0,
      JSON.stringify(text.usage));
check("completion: finish_reason length", text.choices[0].finish_reason === "length");

const again = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12,
                                                temperature: 0, ignore_eos: true });
check("completion: greedy is repeatable", again.choices[0].text === text.choices[0].text);

let streamed = "", chunks = 0, usage = null, finish = null;
const stream = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12,
                                                 temperature: 0, ignore_eos: true, stream: true,
                                                 stream_options: { include_usage: true } });
for await (const c of stream) {
  ++chunks;
  if (c.usage) usage = c.usage;
  if (c.choices.length > 0) {
    streamed += c.choices[0].text;
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
}
check("completion stream: same text as non-streamed", streamed === text.choices[0].text,
      JSON.stringify([streamed, text.choices[0].text]));
check("completion stream: chunks", chunks >= 2);
check("completion stream: usage", usage && usage.completion_tokens === 12, JSON.stringify(usage));
check("completion stream: finish_reason", finish === "length");

const chat = await client.chat.completions.create({
  model, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello!" }],
  max_tokens: 8, temperature: 0, ignore_eos: true });
check("chat: assistant message", chat.choices[0].message.role === "assistant" &&
      typeof chat.choices[0].message.content === "string");
check("chat: usage", chat.usage.completion_tokens === 8, JSON.stringify(chat.usage));

let chatText = "", role = null, chatUsage = null;
const chatStream = await client.chat.completions.create({
  model, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello!" }],
  max_tokens: 8, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
for await (const c of chatStream) {
  if (c.usage) chatUsage = c.usage;
  for (const ch of c.choices) {
    if (ch.delta.role) role = ch.delta.role;
    if (ch.delta.content) chatText += ch.delta.content;
  }
}
check("chat stream: role then content", role === "assistant" && chatText === chat.choices[0].message.content,
      JSON.stringify([chatText, chat.choices[0].message.content]));
check("chat stream: usage", chatUsage && chatUsage.completion_tokens === 8);

const withLp = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "Hello!" }], max_tokens: 6, temperature: 0,
  ignore_eos: true, logprobs: true, top_logprobs: 3 });
const content = withLp.choices[0].logprobs?.content ?? [];
check("chat logprobs: one entry per token", content.length === 6, JSON.stringify(withLp.choices[0].logprobs));
check("chat logprobs: 3 sorted alternatives, the greedy token first", content.every((t) =>
  t.logprob <= 0 && Array.isArray(t.bytes) && t.top_logprobs.length === 3 &&
  t.top_logprobs[0].token === t.token && t.top_logprobs[0].logprob === t.logprob &&
  t.top_logprobs.every((a, i) => i === 0 || t.top_logprobs[i - 1].logprob >= a.logprob)),
  JSON.stringify(content));
const textLp = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 5,
                                                 temperature: 0, ignore_eos: true, logprobs: 2 });
const lp = textLp.choices[0].logprobs;
check("completion logprobs: tokens, token_logprobs, top_logprobs, text_offset",
      lp && lp.tokens.length === 5 && lp.token_logprobs.length === 5 && lp.top_logprobs.length === 5 &&
      lp.text_offset.length === 5 && lp.token_logprobs.every((v) => v <= 0), JSON.stringify(lp));
await expectError("top_logprobs beyond --max-logprobs", 400,
                  () => client.chat.completions.create({ model, messages: [{ role: "user", content: "x" }],
                                                         logprobs: true, top_logprobs: 9 }),
                  { param: "top_logprobs" });

const sampled = await client.completions.create({ model, prompt: "x", max_tokens: 16, temperature: 0.8,
                                                  top_p: 0.9, seed: 11, ignore_eos: true });
const sampledAgain = await client.completions.create({ model, prompt: "x", max_tokens: 16, temperature: 0.8,
                                                       top_p: 0.9, seed: 11, ignore_eos: true });
check("sampling with a seed is repeatable", sampled.choices[0].text === sampledAgain.choices[0].text);

const stopped = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12,
                                                  temperature: 0, ignore_eos: true,
                                                  stop: [text.choices[0].text.slice(3, 5)] });
check("stop string: cut before it", stopped.choices[0].finish_reason === "stop" &&
      stopped.choices[0].text === text.choices[0].text.slice(0, 3),
      JSON.stringify([stopped.choices[0].text, text.choices[0].text]));

await expectError("temperature 5", 400, () => client.completions.create({ model, prompt: "x", temperature: 5 }),
                  { type: "invalid_request_error", param: "temperature" });
await expectError("n = 2", 400, () => client.completions.create({ model, prompt: "x", n: 2 }), { param: "n" });
await expectError("unknown model", 404, () => client.completions.create({ model: "nope", prompt: "x" }),
                  { code: "model_not_found" });
await expectError("prompt beyond the context", 400,
                  () => client.completions.create({ model, prompt: "a".repeat(5000), max_tokens: 4 }),
                  { code: "context_length_exceeded" });
await expectError("chat role", 400,
                  () => client.chat.completions.create({ model, messages: [{ role: "wizard", content: "x" }] }),
                  { param: "messages" });
await expectError("empty messages", 400, () => client.chat.completions.create({ model, messages: [] }));

// A client that aborts mid-stream: the server cancels the request and frees its blocks.
const controller = new AbortController();
const long = await client.completions.create({ model, prompt: "go", max_tokens: 800, ignore_eos: true,
                                               stream: true }, { signal: controller.signal });
let got = 0;
try {
  for await (const c of long) {
    if (++got === 3) controller.abort();
  }
} catch (e) {
  check("abort: the stream ends with an abort", e.name === "AbortError" || e instanceof OpenAI.APIUserAbortError,
        e.name);
}
let used = -1;
for (let i = 0; i < 100 && used !== 0; ++i) {
  await new Promise((r) => setTimeout(r, 30));
  const m = await (await fetch(`${base}/metrics`)).text();
  const line = m.split("\n").find((l) => l.startsWith('ridgeline_kv_cache_blocks{state="used"}'));
  used = line ? Number(line.split(" ")[1]) : -1;
}
check("abort: no KV blocks held at idle", used === 0, `(used ${used})`);
console.log("all checks passed");
