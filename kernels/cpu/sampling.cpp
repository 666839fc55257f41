// CPU reference of sampling (see reference.hpp for the exact definition the GPU shares): a full
// sort of the row, then top-k, top-p and the draw on exact integer weights.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

#include "ridgeline/kernels/reference.hpp"

namespace ridgeline::cpu {
namespace {

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Ids in the order (value descending, id ascending).
std::vector<int> order_of(const std::vector<float>& v) {
  std::vector<int> ids(v.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) {
    if (v[a] != v[b]) return v[a] > v[b];
    return a < b;
  });
  return ids;
}

// First index j (in order) whose inclusive prefix sum of w reaches target (>= 1).
std::size_t first_reaching(const std::vector<std::uint64_t>& w_in_order, std::size_t n,
                           std::uint64_t target) {
  std::uint64_t c = 0;
  for (std::size_t j = 0; j < n; ++j) {
    c += w_in_order[j];
    if (c >= target) return j;
  }
  return n - 1;  // unreachable for targets <= the sum
}

int sample_row(const float* logits, int vocab, const sampling_row& row, const std::int32_t* prev,
               int num_prev) {
  if (row.temperature == 0.0f) return order_of(std::vector<float>(logits, logits + vocab))[0];
  std::vector<float> s(logits, logits + vocab);
  if (row.repetition_penalty != 1.0f) {
    std::vector<bool> seen(static_cast<std::size_t>(vocab), false);
    for (int j = 0; j < num_prev; ++j) {
      const int id = prev[j];
      if (id < 0 || id >= vocab || seen[id]) continue;
      seen[id] = true;
      s[id] = s[id] > 0.0f ? s[id] / row.repetition_penalty : s[id] * row.repetition_penalty;
    }
  }
  for (auto& x : s) {
    x = x / row.temperature;
    if (x == 0.0f) x = 0.0f;  // -0 sorts as +0
  }
  const auto order = order_of(s);
  const float s_max = s[order[0]];
  std::vector<std::uint64_t> w(order.size());
  for (std::size_t j = 0; j < order.size(); ++j) w[j] = sampling_weight(s[order[j]], s_max);

  std::size_t kept = order.size();
  if (row.top_k > 0 && row.top_k < vocab) kept = static_cast<std::size_t>(row.top_k);
  std::uint64_t total = std::accumulate(w.begin(), w.begin() + kept, std::uint64_t{0});
  if (row.top_p < 1.0f) {
    const double x = std::ceil(static_cast<double>(row.top_p) * static_cast<double>(total));
    const std::uint64_t target = x < 1.0 ? 1 : std::min(static_cast<std::uint64_t>(x), total);
    kept = first_reaching(w, kept, target) + 1;
    total = std::accumulate(w.begin(), w.begin() + kept, std::uint64_t{0});
  }
  const double u = sampling_uniform(row.seed, row.step);
  const auto scaled = static_cast<std::uint64_t>(std::floor(u * static_cast<double>(total)));
  const std::uint64_t target = std::min(scaled, total - 1);
  return order[first_reaching(w, kept, target + 1)];
}

}  // namespace

double sampling_uniform(std::uint64_t seed, std::uint64_t step) {
  const std::uint64_t h =
      mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^ (step * 0xd1b54a32d192ed03ULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

std::uint64_t sampling_weight(float s, float s_max) {
  if (s == s_max) return std::uint64_t{1} << 42;  // also when the maximum is -inf
  const double p = std::exp(static_cast<double>(s) - static_cast<double>(s_max));
  return static_cast<std::uint64_t>(std::nearbyint(std::ldexp(p, 42)));
}

void sampling(const sampling_params& p) {
  for (int r = 0; r < p.num_rows; ++r) {
    const float* logits = p.logits + static_cast<std::size_t>(r) * p.vocab;
    const std::int32_t* prev = p.prev_tokens ? p.prev_tokens + p.prev_offsets[r] : nullptr;
    const int num_prev = p.prev_tokens ? p.prev_offsets[r + 1] - p.prev_offsets[r] : 0;
    p.out_tokens[r] = sample_row(logits, p.vocab, p.rows[r], prev, num_prev);
    if (p.top_logprobs > 0 && (p.out_logprobs || p.out_top_ids || p.out_sampled_logprobs)) {
      const std::vector<float> raw(logits, logits + p.vocab);
      const auto order = order_of(raw);
      const double max = raw[order[0]];
      double sum = 0;
      for (float x : raw) sum += std::exp(x - max);
      const double lse = max + std::log(sum);
      if (p.out_sampled_logprobs)
        p.out_sampled_logprobs[r] = static_cast<float>(raw[p.out_tokens[r]] - lse);
      const int n = std::min(p.top_logprobs, p.vocab);
      for (int j = 0; j < p.top_logprobs; ++j) {
        // More slots than tokens: id -1, log-probability -inf.
        const int id = j < n ? order[j] : -1;
        const std::size_t at = static_cast<std::size_t>(r) * p.top_logprobs + j;
        if (p.out_top_ids) p.out_top_ids[at] = id;
        if (p.out_logprobs)
          p.out_logprobs[at] = id < 0 ? -INFINITY : static_cast<float>(raw[id] - lse);
      }
    }
  }
}

}  // namespace ridgeline::cpu
