// Paged KV cache bookkeeping (see kv_cache.hpp).
#include "ridgeline/engine/kv_cache.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "ridgeline/perfmodel/memory_model.hpp"

namespace ridgeline {
namespace {

__extension__ typedef unsigned __int128 u128;

inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) {
  const u128 r = static_cast<u128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

constexpr std::uint64_t k0 = 0xa0761d6478bd642fULL;
constexpr std::uint64_t k1 = 0xe7037ed1a0b428dbULL;
constexpr std::uint64_t k2 = 0x8ebc6af09c88c6e3ULL;
constexpr std::uint64_t k3 = 0x589965cc75374cc3ULL;

inline std::uint64_t slot_of(std::uint64_t key) {
  return mum(key, k2);
}

[[noreturn]] void broken(const std::string& what) {
  throw std::logic_error("kv cache invariant violated: " + what);
}

}  // namespace

std::uint64_t block_hash(std::uint64_t parent, std::span<const token_id> tokens) {
  // Four tokens per 64x64->128 multiply; the parent enters every round so the chain cannot
  // cancel. Token ids are reinterpreted as their 32-bit patterns.
  std::uint64_t h = parent ^ mum(tokens.size() ^ k0, parent ^ k1);
  const std::size_t n = tokens.size();
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    std::uint64_t w0, w1;
    std::memcpy(&w0, tokens.data() + i, 8);
    std::memcpy(&w1, tokens.data() + i + 2, 8);
    h = mum(w0 ^ k1, w1 ^ h ^ k3);
  }
  for (; i < n; ++i) h = mum(static_cast<std::uint32_t>(tokens[i]) ^ k2, h ^ k0);
  h = mum(h ^ k3, n ^ k1);
  return h == 0 ? k_root_block_hash : h;
}

namespace detail {

hash_index::hash_index(std::size_t max_entries) {
  const std::size_t want = std::max<std::size_t>(16, std::bit_ceil(2 * max_entries + 1));
  m_keys.assign(want, 0);
  m_values.assign(want, -1);
  m_mask = want - 1;
}

std::int32_t hash_index::find(std::uint64_t key) const {
  for (std::size_t i = slot_of(key) & m_mask;; i = (i + 1) & m_mask) {
    if (m_keys[i] == key) return m_values[i];
    if (m_keys[i] == 0) return -1;
  }
}

bool hash_index::insert(std::uint64_t key, std::int32_t value) {
  if (key == 0) throw std::invalid_argument("hash_index: key 0 is reserved");
  if (2 * (m_size + 1) > m_keys.size()) grow();
  std::size_t i = slot_of(key) & m_mask;
  for (; m_keys[i] != 0; i = (i + 1) & m_mask) {
    if (m_keys[i] == key) return false;
  }
  m_keys[i] = key;
  m_values[i] = value;
  ++m_size;
  return true;
}

bool hash_index::erase(std::uint64_t key) {
  std::size_t i = slot_of(key) & m_mask;
  for (; m_keys[i] != key; i = (i + 1) & m_mask) {
    if (m_keys[i] == 0) return false;
  }
  // Backward-shift deletion: pull later entries of the probe run into the hole when their home
  // slot does not lie cyclically in (hole, j].
  std::size_t hole = i;
  for (std::size_t j = (i + 1) & m_mask; m_keys[j] != 0; j = (j + 1) & m_mask) {
    const std::size_t home = slot_of(m_keys[j]) & m_mask;
    const bool home_in_range = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!home_in_range) {
      m_keys[hole] = m_keys[j];
      m_values[hole] = m_values[j];
      hole = j;
    }
  }
  m_keys[hole] = 0;
  m_values[hole] = -1;
  --m_size;
  return true;
}

void hash_index::grow() {
  std::vector<std::uint64_t> keys(m_keys.size() * 2, 0);
  std::vector<std::int32_t> values(m_keys.size() * 2, -1);
  keys.swap(m_keys);
  values.swap(m_values);
  m_mask = m_keys.size() - 1;
  m_size = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] != 0) insert(keys[i], values[i]);
  }
}

lru_list::lru_list(std::int32_t n) : m_prev(n, -1), m_next(n, -1), m_linked(n, 0) {}

void lru_list::resize(std::int32_t n) {
  m_prev.resize(n, -1);
  m_next.resize(n, -1);
  m_linked.resize(n, 0);
}

void lru_list::push_back(std::int32_t i) {
  m_prev[i] = m_tail;
  m_next[i] = -1;
  if (m_tail >= 0)
    m_next[m_tail] = i;
  else
    m_head = i;
  m_tail = i;
  m_linked[i] = 1;
  ++m_size;
}

void lru_list::remove(std::int32_t i) {
  if (m_prev[i] >= 0)
    m_next[m_prev[i]] = m_next[i];
  else
    m_head = m_next[i];
  if (m_next[i] >= 0)
    m_prev[m_next[i]] = m_prev[i];
  else
    m_tail = m_prev[i];
  m_prev[i] = m_next[i] = -1;
  m_linked[i] = 0;
  --m_size;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
block_pool::block_pool(std::int32_t num_blocks, block_placement placement,
                       std::uint64_t placement_seed)
    : m_total(num_blocks), m_lru(0) {
  if (num_blocks <= 0) {
    throw std::invalid_argument("KV cache needs at least one block, got " +
                                std::to_string(num_blocks));
  }
  if (placement == block_placement::shuffled) {
    // Every block exists from the start, free, in a seeded random order: order[0] is handed out
    // first, so the stack holds the permutation reversed.
    std::vector<block_id> order(static_cast<std::size_t>(num_blocks));
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<block_id>(i);
    std::mt19937_64 rng(placement_seed);
    for (std::size_t i = order.size() - 1; i > 0; --i) {
      const auto j = static_cast<std::size_t>(rng() % (i + 1));
      std::swap(order[i], order[j]);
    }
    m_ref.assign(order.size(), 0);
    m_hash.assign(order.size(), 0);
    m_lru.resize(num_blocks);
    m_free.assign(order.rbegin(), order.rend());
  }
}

std::optional<block_id> block_pool::allocate(std::uint64_t* evicted_hash) {
  if (evicted_hash) *evicted_hash = 0;
  block_id b;
  if (!m_free.empty()) {
    b = m_free.back();
    m_free.pop_back();
  } else if (materialized() < m_total) {
    b = materialized();
    if (m_ref.size() == m_ref.capacity()) {
      // Grow geometrically but never past the pool's size.
      const auto want = std::min<std::size_t>(std::max<std::size_t>(64, 2 * m_ref.size()),
                                              static_cast<std::size_t>(m_total));
      m_ref.reserve(want);
      m_hash.reserve(want);
    }
    m_ref.push_back(0);
    m_hash.push_back(0);
    m_lru.resize(materialized());
  } else if (m_lru.front() >= 0) {
    b = m_lru.front();
    m_lru.remove(b);
    m_index.erase(m_hash[b]);
    if (evicted_hash) *evicted_hash = m_hash[b];
    m_hash[b] = 0;
    ++m_evictions;
  } else {
    return std::nullopt;
  }
  m_ref[b] = 1;
  ++m_used;
  return b;
}

void block_pool::ref(block_id b) {
  if (b < 0 || b >= materialized()) broken("ref on unknown block " + std::to_string(b));
  if (m_ref[b] == 0) {
    if (!m_lru.contains(b)) broken("ref on free block " + std::to_string(b));
    m_lru.remove(b);
    ++m_used;
  }
  ++m_ref[b];
}

void block_pool::unref(block_id b) {
  if (b < 0 || b >= materialized()) broken("unref on unknown block " + std::to_string(b));
  if (m_ref[b] <= 0) broken("double free of block " + std::to_string(b));
  if (--m_ref[b] > 0) return;
  --m_used;
  if (m_hash[b] != 0)
    m_lru.push_back(b);
  else
    m_free.push_back(b);
}

bool block_pool::set_hash(block_id b, std::uint64_t hash) {
  if (b < 0 || b >= materialized() || m_ref[b] <= 0)
    broken("set_hash on unreferenced block " + std::to_string(b));
  if (m_hash[b] != 0) return m_hash[b] == hash;
  const block_id holder = m_index.find(hash);
  if (holder >= 0) {
    if (m_ref[holder] > 0) return false;  // in use: b stays an unhashed duplicate
    // An unreferenced holder would be evicted first anyway: b takes over the content.
    m_lru.remove(holder);
    m_index.erase(hash);
    m_hash[holder] = 0;
    m_free.push_back(holder);
  }
  m_index.insert(hash, b);
  m_hash[b] = hash;
  return true;
}

void block_pool::check_invariants() const {
  const auto n = materialized();
  if (n > m_total) broken("more blocks materialized than the pool holds");
  std::int32_t used = 0, cached = 0, hashed = 0;
  std::vector<std::uint8_t> on_free(n, 0);
  for (block_id b : m_free) {
    if (b < 0 || b >= n) broken("free list holds id " + std::to_string(b));
    if (on_free[b]++) broken("block " + std::to_string(b) + " twice on the free list");
    if (m_ref[b] != 0 || m_hash[b] != 0) broken("free block " + std::to_string(b) + " in use");
  }
  for (block_id b = 0; b < n; ++b) {
    if (m_ref[b] < 0) broken("negative reference count on block " + std::to_string(b));
    if (m_ref[b] > 0) ++used;
    if (m_hash[b] != 0) {
      ++hashed;
      if (m_index.find(m_hash[b]) != b) broken("index lost block " + std::to_string(b));
    }
    const bool should_cache = m_ref[b] == 0 && m_hash[b] != 0;
    if (should_cache != m_lru.contains(b)) broken("LRU membership of block " + std::to_string(b));
    if (should_cache) ++cached;
    if (m_ref[b] == 0 && m_hash[b] == 0 && !on_free[b]) broken("leaked block " + std::to_string(b));
  }
  if (used != m_used)
    broken("used count " + std::to_string(m_used) + " != " + std::to_string(used));
  if (cached != m_lru.size()) broken("cached count");
  if (static_cast<std::size_t>(hashed) != m_index.size()) broken("index size");
  if (used + cached + num_free() != m_total) {
    broken("used " + std::to_string(used) + " + cached " + std::to_string(cached) + " + free " +
           std::to_string(num_free()) + " != total " + std::to_string(m_total));
  }
}

// ---------------------------------------------------------------------------------------------
host_tier::host_tier(std::int32_t capacity_blocks)
    : m_hash(std::max(capacity_blocks, 0), 0),
      m_lru(std::max(capacity_blocks, 0)),
      m_index(m_hash.size()) {
  for (std::int32_t i = capacity() - 1; i >= 0; --i) m_free.push_back(i);
}

std::int32_t host_tier::insert(std::uint64_t hash) {
  if (capacity() == 0) return -1;
  const std::int32_t at = m_index.find(hash);
  if (at >= 0) {
    m_lru.remove(at);
    m_lru.push_back(at);
    return -1;
  }
  if (m_free.empty() && m_lru.size() == 0) return -1;  // every slot held by loads in flight
  if (m_free.empty()) {
    const std::int32_t old = m_lru.front();
    m_lru.remove(old);
    m_index.erase(m_hash[old]);
    m_free.push_back(old);
    ++m_evictions;
  }
  const std::int32_t slot = m_free.back();
  m_free.pop_back();
  m_hash[slot] = hash;
  m_index.insert(hash, slot);
  m_lru.push_back(slot);
  return slot;
}

std::int32_t host_tier::take(std::uint64_t hash, bool hold) {
  const std::int32_t at = m_index.find(hash);
  if (at < 0) return -1;
  m_lru.remove(at);
  m_index.erase(hash);
  m_hash[at] = 0;
  if (!hold) m_free.push_back(at);
  return at;
}

void host_tier::release(std::int32_t slot) { m_free.push_back(slot); }

// ---------------------------------------------------------------------------------------------
std::int32_t blocks_for_budget(const model_preset& m, dtype kv_dtype, std::int32_t block_tokens,
                               std::int64_t budget_bytes) {
  if (block_tokens <= 0) throw std::invalid_argument("block size must be positive");
  const std::int64_t per_block = m.kv_bytes_per_token(kv_dtype) * block_tokens;
  const std::int64_t blocks = budget_bytes / per_block;
  if (blocks < 1) {
    throw std::invalid_argument("a KV budget of " + std::to_string(budget_bytes) +
                                " bytes holds no block of " + std::to_string(per_block) +
                                " bytes (" + m.name + ", " + std::string(name(kv_dtype)) + ", " +
                                std::to_string(block_tokens) + " tokens)");
  }
  if (blocks > k_max_kv_blocks) {
    throw std::invalid_argument("a KV budget of " + std::to_string(budget_bytes) + " bytes is " +
                                std::to_string(blocks) + " blocks: absurd (at most 2^30)");
  }
  return static_cast<std::int32_t>(blocks);
}

kv_cache_config make_kv_cache_config(const model_preset& m, dtype kv_dtype,
                                     std::int32_t block_tokens, std::int32_t num_blocks) {
  kv_cache_config c;
  c.block_tokens = block_tokens;
  c.num_blocks = num_blocks;
  c.bytes_per_block = m.kv_bytes_per_token(kv_dtype) * block_tokens;
  return c;
}

namespace {
kv_cache_config checked(const kv_cache_config& c) {
  if (c.block_tokens <= 0 || c.block_tokens > (1 << 20)) {
    throw std::invalid_argument("block size must be in [1, 2^20] tokens, got " +
                                std::to_string(c.block_tokens));
  }
  if (c.num_blocks <= 0) {
    throw std::invalid_argument("KV cache needs at least one block, got " +
                                std::to_string(c.num_blocks));
  }
  if (c.host_blocks < 0) throw std::invalid_argument("host tier capacity must not be negative");
  if (c.host_blocks > 0 && !(c.pcie_bytes_per_second > 0)) {
    throw std::invalid_argument("host tier needs a positive PCIe bandwidth");
  }
  return c;
}
}  // namespace

kv_cache_manager::kv_cache_manager(const kv_cache_config& config)
    : m_config(checked(config)),
      m_pool(config.num_blocks, config.placement, config.placement_seed),
      m_tier2(config.prefix_caching ? config.host_blocks : 0),
      m_seen(config.track_recompute && config.prefix_caching ? 1024 : 0) {}

prefix_match kv_cache_manager::lookup(std::span<const token_id> tokens,
                                      std::int64_t max_tokens) const {
  prefix_match m;
  if (!m_config.prefix_caching) return m;
  const std::int64_t bs = m_config.block_tokens;
  const std::int64_t limit = std::min<std::int64_t>(max_tokens, std::ssize(tokens));
  const std::int64_t n_blocks = limit / bs;
  m.hashes.reserve(n_blocks);
  std::uint64_t h = k_root_block_hash;
  const bool tier2 = m_tier2.capacity() > 0;
  for (std::int64_t i = 0; i < n_blocks; ++i) {
    h = block_hash(h, tokens.subspan(i * bs, bs));
    if (m_pool.find(h) >= 0)
      ++m.tier1_blocks;
    else if (tier2 && m_tier2.contains(h))
      ++m.tier2_blocks;
    else
      break;
    m.hashes.push_back(h);
  }
  return m;
}

void kv_cache_manager::record_lookup(std::span<const token_id> tokens, const prefix_match& m) {
  const std::int64_t bs = m_config.block_tokens;
  auto& c = m_counters;
  ++c.lookups;
  c.lookup_tokens += std::ssize(tokens);
  c.lookup_blocks += std::ssize(tokens) / bs;
  c.hit_blocks_tier1 += m.tier1_blocks;
  c.hit_blocks_tier2 += m.tier2_blocks;
  c.hit_tokens_tier1 += m.tier1_blocks * bs;
  c.hit_tokens_tier2 += m.tier2_blocks * bs;
  if (!m_config.track_recompute || !m_config.prefix_caching) return;
  // Missed blocks computed before (their hash is in the seen set) are recompute: the chain
  // continues from the last matched block until a block never seen.
  std::uint64_t h = m.hashes.empty() ? k_root_block_hash : m.hashes.back();
  for (std::int64_t i = m.blocks(); i < std::ssize(tokens) / bs; ++i) {
    h = block_hash(h, tokens.subspan(i * bs, bs));
    if (m_seen.find(h) < 0) break;
    c.recomputed_tokens += bs;
  }
}

seq_id kv_cache_manager::create_sequence() {
  seq_id s;
  if (!m_free_seqs.empty()) {
    s = m_free_seqs.back();
    m_free_seqs.pop_back();
  } else {
    s = static_cast<seq_id>(m_seqs.size());
    m_seqs.emplace_back();
  }
  auto& q = m_seqs[s];
  q.blocks.clear();
  q.partial.clear();
  q.parent = k_root_block_hash;
  q.num_tokens = 0;
  q.reserved_tokens = 0;
  q.live = true;
  ++m_live;
  return s;
}

block_id kv_cache_manager::allocate_block() {
  std::uint64_t evicted = 0;
  const auto b = m_pool.allocate(&evicted);
  if (!b) broken("allocation after a successful availability check failed");
  if (evicted != 0) {
    ++m_counters.evictions_tier1;
    if (m_tier2.capacity() > 0) {
      const auto before = m_tier2.evictions();
      const std::int32_t slot = m_tier2.insert(evicted);
      m_counters.evictions_tier2 += m_tier2.evictions() - before;
      if (slot >= 0 && m_config.record_transfers) {
        m_transfers.push_back({block_transfer::direction::to_host, *b, slot});
      }
    }
  }
  return *b;
}

void kv_cache_manager::take_transfers(std::vector<block_transfer>& out) {
  out.clear();
  out.swap(m_transfers);
}

bool kv_cache_manager::acquire_prefix(seq_id s, std::span<const token_id> tokens,
                                      const prefix_match& m, std::int32_t reserve_tokens) {
  auto& q = m_seqs[s];
  if (!q.live || q.num_tokens != 0 || !q.blocks.empty())
    broken("acquire_prefix needs a new, empty sequence");
  const std::int64_t bs = m_config.block_tokens;
  if (std::ssize(m.hashes) != m.blocks() || m.blocks() * bs > std::ssize(tokens)) {
    throw std::invalid_argument("acquire_prefix: match does not belong to these tokens");
  }
  // Blocks leaving the evictable set (cached tier-1 hits), then blocks to allocate.
  std::int32_t cached_hits = 0;
  for (std::uint64_t h : m.hashes) {
    const block_id b = m_pool.find(h);
    if (b >= 0 && m_pool.ref_count(b) == 0)
      ++cached_hits;
    else if (b < 0 && !m_tier2.contains(h))
      broken("prefix match went stale before acquire");
  }
  const std::int64_t prefix_tokens = m.blocks() * bs;
  const std::int64_t reserve_blocks = (prefix_tokens + reserve_tokens + bs - 1) / bs - m.blocks();
  if (m.tier2_blocks + reserve_blocks > m_pool.num_available() - cached_hits) return false;

  // Take tier-2 entries out first: allocating tier-1 blocks may evict into tier 2. Their slots
  // stay held until the loads are recorded, so no eviction overwrites them first.
  std::vector<std::int32_t> slots;
  for (std::uint64_t h : m.hashes) {
    if (m_pool.find(h) < 0) slots.push_back(m_tier2.take(h, /*hold=*/true));
  }
  q.blocks.reserve(m.blocks());
  std::size_t next_slot = 0;
  for (std::uint64_t h : m.hashes) {
    block_id b = m_pool.find(h);
    if (b >= 0) {
      m_pool.ref(b);
    } else {
      b = allocate_block();
      m_pool.set_hash(b, h);
      ++m_counters.tier2_blocks_loaded;
      if (m_config.record_transfers) {
        m_transfers.push_back({block_transfer::direction::to_gpu, b, slots[next_slot]});
      }
      ++next_slot;
    }
    q.blocks.push_back(b);
  }
  for (std::int32_t slot : slots) m_tier2.release(slot);
  q.num_tokens = prefix_tokens;
  q.parent = m.hashes.empty() ? k_root_block_hash : m.hashes.back();
  return true;
}

std::int32_t kv_cache_manager::blocks_needed(seq_id s, std::int64_t n) const {
  const auto& q = m_seqs[s];
  const std::int64_t bs = m_config.block_tokens;
  return static_cast<std::int32_t>(std::max<std::int64_t>(
      0, (q.num_tokens + n + bs - 1) / bs - static_cast<std::int64_t>(q.blocks.size())));
}

void kv_cache_manager::seal_block(sequence& q, block_id b, std::uint64_t hash) {
  q.parent = hash;
  if (!m_config.prefix_caching) return;
  m_pool.set_hash(b, hash);
  if (m_config.track_recompute) m_seen.insert(hash, 0);
}

bool kv_cache_manager::append_pending(seq_id s) {
  auto& q = m_seqs[s];
  if (!q.live) broken("append to a freed sequence");
  if (q.pending) broken("a second pending token before the first was resolved");
  if (!can_append(s, 1)) return false;
  const std::int64_t bs = m_config.block_tokens;
  const auto at = static_cast<std::size_t>(q.num_tokens / bs);
  if (at == q.blocks.size()) q.blocks.push_back(allocate_block());
  q.partial.push_back(0);
  ++q.num_tokens;
  q.pending = true;
  return true;
}

void kv_cache_manager::resolve_pending(seq_id s, token_id t) {
  auto& q = m_seqs[s];
  if (!q.live || !q.pending) broken("resolve_pending without a pending token");
  q.partial.back() = t;
  q.pending = false;
  const std::size_t bs = static_cast<std::size_t>(m_config.block_tokens);
  if (q.partial.size() == bs) {
    const auto at = static_cast<std::size_t>((q.num_tokens - 1) / static_cast<std::int64_t>(bs));
    if (m_config.prefix_caching) seal_block(q, q.blocks[at], block_hash(q.parent, q.partial));
    q.partial.clear();
  }
}

bool kv_cache_manager::append(seq_id s, std::span<const token_id> tokens) {
  auto& q = m_seqs[s];
  if (!q.live) broken("append to a freed sequence");
  if (q.pending) broken("append before the pending token was resolved");
  if (!can_append(s, std::ssize(tokens))) return false;
  const std::size_t bs = static_cast<std::size_t>(m_config.block_tokens);
  std::size_t i = 0;
  while (i < tokens.size()) {
    // The block of the next token: a reserved one, else a new one.
    const auto at = static_cast<std::size_t>(q.num_tokens / static_cast<std::int64_t>(bs));
    if (at == q.blocks.size()) q.blocks.push_back(allocate_block());
    if (q.partial.empty() && tokens.size() - i >= bs) {
      // A whole block straight from the input: hash without copying.
      q.num_tokens += static_cast<std::int64_t>(bs);
      if (m_config.prefix_caching) {
        seal_block(q, q.blocks[at], block_hash(q.parent, tokens.subspan(i, bs)));
      }
      i += bs;
      continue;
    }
    const std::size_t take = std::min(bs - q.partial.size(), tokens.size() - i);
    q.partial.insert(q.partial.end(), tokens.begin() + static_cast<std::ptrdiff_t>(i),
                     tokens.begin() + static_cast<std::ptrdiff_t>(i + take));
    q.num_tokens += static_cast<std::int64_t>(take);
    i += take;
    if (q.partial.size() == bs) {
      if (m_config.prefix_caching) seal_block(q, q.blocks[at], block_hash(q.parent, q.partial));
      q.partial.clear();
    }
  }
  return true;
}

bool kv_cache_manager::reserve(seq_id s, std::int64_t tokens) {
  auto& q = m_seqs[s];
  if (!q.live) broken("reserve on a freed sequence");
  if (tokens < 0) throw std::invalid_argument("reserve: negative token count");
  const std::int64_t bs = m_config.block_tokens;
  const std::int64_t more = (tokens + bs - 1) / bs - std::ssize(q.blocks);
  if (more > m_pool.num_available()) return false;
  for (std::int64_t i = 0; i < more; ++i) q.blocks.push_back(allocate_block());
  q.reserved_tokens = std::max(q.reserved_tokens, tokens);
  return true;
}

bool kv_cache_manager::fork(seq_id from, seq_id to) {
  auto& dst = m_seqs[to];
  if (!dst.live || dst.num_tokens != 0 || !dst.blocks.empty())
    broken("fork needs a new, empty target sequence");
  const auto& src = m_seqs[from];
  if (!src.partial.empty() && m_pool.num_available() < 1) return false;
  // The full blocks (a reserved tail of src stays src's own).
  const auto full = static_cast<std::size_t>(src.num_tokens / m_config.block_tokens);
  for (std::size_t i = 0; i < full; ++i) {
    m_pool.ref(src.blocks[i]);
    dst.blocks.push_back(src.blocks[i]);
  }
  if (!src.partial.empty()) dst.blocks.push_back(allocate_block());
  // m_seqs may not reallocate here (no create in between), so src stays valid.
  dst.partial = src.partial;
  dst.parent = src.parent;
  dst.num_tokens = src.num_tokens;
  return true;
}

void kv_cache_manager::free_sequence(seq_id s) {
  auto& q = m_seqs[s];
  if (!q.live) broken("double free of sequence " + std::to_string(s));
  for (auto it = q.blocks.rbegin(); it != q.blocks.rend(); ++it) m_pool.unref(*it);
  q.blocks.clear();
  q.partial.clear();
  q.num_tokens = 0;
  q.reserved_tokens = 0;
  q.pending = false;
  q.live = false;
  --m_live;
  m_free_seqs.push_back(s);
}

void kv_cache_manager::check_invariants() const {
  m_pool.check_invariants();
  std::vector<std::int32_t> refs(m_pool.materialized(), 0);
  const std::int64_t bs = m_config.block_tokens;
  std::int32_t live = 0;
  for (std::size_t s = 0; s < m_seqs.size(); ++s) {
    const auto& q = m_seqs[s];
    if (!q.live) {
      if (!q.blocks.empty()) broken("freed sequence " + std::to_string(s) + " holds blocks");
      continue;
    }
    ++live;
    const std::int64_t covered = std::max(q.num_tokens, q.reserved_tokens);
    if (std::ssize(q.blocks) != (covered + bs - 1) / bs) {
      broken("sequence " + std::to_string(s) + " has " + std::to_string(q.blocks.size()) +
             " blocks for " + std::to_string(q.num_tokens) + " tokens (" +
             std::to_string(q.reserved_tokens) + " reserved)");
    }
    // A pending token that fills its block keeps the block's tokens until it is resolved.
    const bool full_pending = q.pending && std::ssize(q.partial) == bs && q.num_tokens % bs == 0;
    if (std::ssize(q.partial) != q.num_tokens % bs && !full_pending) broken("partial block size");
    for (block_id b : q.blocks) ++refs[b];
  }
  if (live != m_live) broken("live sequence count");
  for (block_id b = 0; b < m_pool.materialized(); ++b) {
    if (refs[b] != m_pool.ref_count(b)) {
      broken("block " + std::to_string(b) + " has count " + std::to_string(m_pool.ref_count(b)) +
             " but " + std::to_string(refs[b]) + " table references");
    }
  }
}

}  // namespace ridgeline
