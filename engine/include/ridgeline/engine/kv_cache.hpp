// Paged KV cache bookkeeping (host side; no KV data lives here): a pool of fixed-size blocks with
// reference counts, per-sequence block tables, prefix caching by a hash chain over full blocks
// (hash of the parent block's hash and the block's token ids), LRU eviction of unreferenced cached
// blocks, and an optional second tier in host memory whose hits cost a PCIe transfer.
//
// The scheduler allocates through it (and so does every batch a benchmark builds: sweep, diverge);
// executors only read its block tables (executor.hpp):
//   kv_cache_manager kv(kv_cache_config{.block_tokens = 16, .num_blocks = 4096});
//   auto match = kv.lookup(prompt, prompt.size() - 1);     // longest cached prefix (pure)
//   seq_id s = kv.create_sequence();
//   kv.acquire_prefix(s, prompt, match, chunk);            // refs cached blocks, reserves room
//   kv.append(s, prompt.subspan(match.tokens(16), chunk)); // allocates, hashes full blocks
//   kv.free_sequence(s);                                   // full blocks stay cached (LRU)
//
// Block states: used (reference count > 0), cached (count 0, holds a prefix hash, evictable in
// LRU order) and free (count 0, no hash). used + cached + free = total at all times.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ridgeline/perfmodel/model.hpp"
#include "ridgeline/core/dtype.hpp"

namespace ridgeline {

using token_id = std::int32_t;
using block_id = std::int32_t;
using seq_id = std::int32_t;

inline constexpr block_id k_no_block = -1;

// Hash of one full block: hash(parent_hash, tokens). 64 bits, never 0 (0 marks an empty slot);
// the root block's parent is k_root_block_hash. Distinct contents collide with probability ~2^-64
// per pair, which the prefix cache accepts, as vLLM does with its default hash.
inline constexpr std::uint64_t k_root_block_hash = 0x9e3779b97f4a7c15ULL;
std::uint64_t block_hash(std::uint64_t parent, std::span<const token_id> tokens);

namespace detail {

// Open-addressing map from a non-zero 64-bit key to a 32-bit value: linear probing, backward-shift
// erase, power-of-two capacity at most half full. The prefix cache's hot path.
class hash_index {
 public:
  explicit hash_index(std::size_t max_entries = 0);
  std::int32_t find(std::uint64_t key) const;          // -1 when absent
  bool insert(std::uint64_t key, std::int32_t value);  // false (unchanged) when present
  bool erase(std::uint64_t key);
  std::size_t size() const { return m_size; }

 private:
  void grow();
  std::vector<std::uint64_t> m_keys;
  std::vector<std::int32_t> m_values;
  std::size_t m_mask = 0;
  std::size_t m_size = 0;
};

// Intrusive doubly linked LRU list over slot indices [0, n): front = least recently used.
class lru_list {
 public:
  explicit lru_list(std::int32_t n);
  void resize(std::int32_t n);
  void push_back(std::int32_t i);
  void remove(std::int32_t i);
  std::int32_t front() const { return m_head; }  // -1 when empty
  bool contains(std::int32_t i) const { return m_linked[i] != 0; }
  std::int32_t size() const { return m_size; }

 private:
  std::vector<std::int32_t> m_prev, m_next;
  std::vector<std::uint8_t> m_linked;
  std::int32_t m_head = -1, m_tail = -1, m_size = 0;
};

}  // namespace detail

// Which free block an allocation gets.
//   ascending: fresh ids 0, 1, 2, ... until blocks come back, then the most recently freed one.
//   shuffled:  the whole pool as a seeded random permutation (every block is materialized up
//              front), then the most recently freed one. Benchmarks use it so that a batch's
//              block tables are scattered over the pool, as after a long time serving, and decode
//              is not flattered by contiguous blocks. The permutation is a Fisher-Yates shuffle
//              driven by std::mt19937_64(seed): the same on every platform.
enum class block_placement { ascending, shuffled };

// Tier 1: the GPU blocks. Allocation takes a free block, else evicts the least recently used
// cached one (calling the eviction hook with its hash, which the manager sends to tier 2).
class block_pool {
 public:
  explicit block_pool(std::int32_t num_blocks,
                      block_placement placement = block_placement::ascending,
                      std::uint64_t placement_seed = 0);

  std::int32_t total() const { return m_total; }
  std::int32_t num_used() const { return m_used; }
  std::int32_t num_cached() const { return m_lru.size(); }
  std::int32_t num_free() const {
    return static_cast<std::int32_t>(m_free.size()) + (m_total - materialized());
  }
  // Blocks whose bookkeeping exists: ids are handed out fresh (0, 1, 2, ...) until the free list
  // has some, so a huge ("unlimited") pool costs memory only for the blocks it really uses.
  std::int32_t materialized() const { return static_cast<std::int32_t>(m_ref.size()); }
  // Blocks an allocation can get: free ones and evictable cached ones.
  std::int32_t num_available() const { return num_free() + num_cached(); }

  // A block with reference count 1 and no hash; nullopt when every block is in use.
  // `evicted_hash` receives the hash of a cached block that had to be evicted (0 when none).
  std::optional<block_id> allocate(std::uint64_t* evicted_hash = nullptr);
  // Another reference (a sequence sharing the block); a cached block leaves the LRU list.
  void ref(block_id b);
  // Drops one reference; at zero the block becomes cached (if hashed) or free.
  // Throws std::logic_error on a block whose count is already zero (double free).
  void unref(block_id b);
  std::int32_t ref_count(block_id b) const { return b < materialized() ? m_ref[b] : 0; }

  // Registers b (in use, full) under `hash` unless a block in use already holds that hash (an
  // unreferenced cached holder gives the hash to b and becomes free); returns whether b holds it.
  bool set_hash(block_id b, std::uint64_t hash);
  std::uint64_t hash_of(block_id b) const { return b < materialized() ? m_hash[b] : 0; }
  block_id find(std::uint64_t hash) const { return m_index.find(hash); }
  std::int64_t evictions() const { return m_evictions; }

  // Checks every invariant (counts, states, index, LRU); throws std::logic_error on a violation.
  void check_invariants() const;

 private:
  std::vector<std::int32_t> m_ref;
  std::vector<std::uint64_t> m_hash;  // 0 = no hash
  std::vector<block_id> m_free;       // stack of freed (unhashed, unreferenced) blocks
  std::int32_t m_total = 0;
  detail::lru_list m_lru;  // cached blocks, least recently used first
  detail::hash_index m_index;
  std::int32_t m_used = 0;
  std::int64_t m_evictions = 0;
};

// Tier 2: block hashes held in host memory (capacity in blocks, each in a slot), LRU. Blocks
// arrive when tier 1 evicts them (write-back assumed to overlap compute) and leave when promoted
// back to tier 1.
class host_tier {
 public:
  explicit host_tier(std::int32_t capacity_blocks);
  std::int32_t capacity() const { return static_cast<std::int32_t>(m_hash.size()); }
  std::int32_t size() const { return m_lru.size(); }
  bool contains(std::uint64_t hash) const { return m_index.find(hash) >= 0; }
  // Most recently used; evicts the LRU entry when full. Returns the slot a new entry takes (its
  // data must be written there), or -1 when the hash was already held (or the tier is off).
  std::int32_t insert(std::uint64_t hash);
  // Removes the entry; returns its slot, or -1 when absent. With `hold`, the slot stays out of
  // use until release(slot), so its data can still be read (a load in flight).
  std::int32_t take(std::uint64_t hash, bool hold = false);
  void release(std::int32_t slot);
  std::int64_t evictions() const { return m_evictions; }

 private:
  std::vector<std::uint64_t> m_hash;
  std::vector<std::int32_t> m_free;
  detail::lru_list m_lru;
  detail::hash_index m_index;
  std::int64_t m_evictions = 0;
};

// A block copy between the GPU pool and the host tier that an executor must make before the next
// step (kv_cache_manager::take_transfers), in order: to_host saves GPU block `gpu` into host slot
// `host_slot` before the block is reused; to_gpu loads a host slot into a newly allocated block.
struct block_transfer {
  enum class direction : std::uint8_t { to_host, to_gpu } dir = direction::to_host;
  block_id gpu = 0;
  std::int32_t host_slot = 0;
};

struct kv_cache_config {
  std::int32_t block_tokens = 16;
  std::int32_t num_blocks = 0;  // tier-1 capacity
  bool prefix_caching = true;
  std::int32_t host_blocks = 0;         // tier-2 capacity; 0 disables the tier
  double pcie_bytes_per_second = 25e9;  // host -> GPU, for tier-2 hits
  std::int64_t bytes_per_block = 0;     // KV bytes of one block (for transfer cost and reports)
  block_placement placement = block_placement::ascending;  // which free block comes next
  std::uint64_t placement_seed = 0;                        // of the shuffled placement
  // Remember every block hash ever computed so a miss on a block seen before counts as
  // recomputed tokens (costs one set insert per full block).
  bool track_recompute = true;
  // Keep the log of block copies for an executor that holds a real host tier (take_transfers);
  // the simulation only counts them.
  bool record_transfers = false;
};

// Capacity in blocks from a model, a KV dtype and a memory budget: floor(budget / block bytes).
// Throws std::invalid_argument when not even one block fits.
std::int32_t blocks_for_budget(const model_preset& m, dtype kv_dtype, std::int32_t block_tokens,
                               std::int64_t budget_bytes);
// Config whose bytes_per_block comes from the model and KV dtype.
kv_cache_config make_kv_cache_config(const model_preset& m, dtype kv_dtype,
                                     std::int32_t block_tokens, std::int32_t num_blocks);

struct prefix_match {
  std::int32_t tier1_blocks = 0;      // matched full blocks found in GPU memory
  std::int32_t tier2_blocks = 0;      // matched full blocks found only in host memory
  std::vector<std::uint64_t> hashes;  // [blocks()] hash chain of the matched blocks
  std::int32_t blocks() const { return tier1_blocks + tier2_blocks; }
  std::int32_t tokens(std::int32_t block_tokens) const { return blocks() * block_tokens; }
};

struct kv_counters {
  std::int64_t lookups = 0;
  std::int64_t lookup_tokens = 0;     // prompt tokens looked up
  std::int64_t lookup_blocks = 0;     // full blocks of those prompts
  std::int64_t hit_tokens_tier1 = 0;  // prompt tokens served from GPU blocks
  std::int64_t hit_tokens_tier2 = 0;  // prompt tokens served from host blocks
  std::int64_t hit_blocks_tier1 = 0;
  std::int64_t hit_blocks_tier2 = 0;
  std::int64_t recomputed_tokens = 0;  // missed tokens whose block had been computed before
  std::int64_t evictions_tier1 = 0;    // cached blocks reused for other content
  std::int64_t evictions_tier2 = 0;
  std::int64_t tier2_blocks_loaded = 0;
};

class kv_cache_manager {
 public:
  explicit kv_cache_manager(const kv_cache_config& config);

  const kv_cache_config& config() const { return m_config; }
  const block_pool& pool() const { return m_pool; }
  const host_tier& tier2() const { return m_tier2; }
  const kv_counters& counters() const { return m_counters; }

  // Longest cached prefix of `tokens` in full blocks, at most `max_tokens` tokens (the scheduler
  // passes prompt length - 1: the last prompt token is always computed to get logits). Tier 1
  // first; where tier 1 misses, the chain continues in tier 2. Changes nothing.
  prefix_match lookup(std::span<const token_id> tokens, std::int64_t max_tokens) const;
  // Adds one lookup to the counters: hits from `m`, misses on blocks seen before as recomputed.
  void record_lookup(std::span<const token_id> tokens, const prefix_match& m);

  seq_id create_sequence();
  // Gives s (empty) the blocks of `m` (references tier-1 blocks, loads tier-2 blocks into new
  // tier-1 blocks) and checks that `reserve_tokens` more tokens fit after them. Returns false and
  // changes nothing when the blocks are not there.
  bool acquire_prefix(seq_id s, std::span<const token_id> tokens, const prefix_match& m,
                      std::int32_t reserve_tokens);
  // New blocks that appending n tokens to s needs.
  std::int32_t blocks_needed(seq_id s, std::int64_t n) const;
  bool can_append(seq_id s, std::int64_t n) const {
    return blocks_needed(s, n) <= m_pool.num_available();
  }
  // Appends tokens to s, allocating blocks and hashing each block that becomes full. Returns
  // false and changes nothing when the blocks are not there.
  bool append(seq_id s, std::span<const token_id> tokens);
  // Appends one token whose id is not known yet (a step planned while the step that samples it
  // runs): its slot is allocated now; a block it fills is hashed (and becomes a prefix-cache
  // entry) only at resolve_pending. At most one pending token per sequence; no other append
  // until it is resolved. False, unchanged, when no block is left.
  bool append_pending(seq_id s);
  // The pending token's id is `t`.
  void resolve_pending(seq_id s, token_id t);
  bool has_pending(seq_id s) const { return m_seqs[s].pending; }
  // Allocates now the blocks that `tokens` tokens of s need in all, so that its block table
  // covers them before they are appended (an executor that keeps a table's width fixed over a
  // run; appends then fill the reserved blocks). Returns false and changes nothing when the
  // blocks are not there. A sequence with reserved blocks cannot take a prefix or be forked into.
  bool reserve(seq_id s, std::int64_t tokens);
  // Makes `to` (empty) share every full block of `from` and copies its partial last block into a
  // new block (the executor copies that block's KV). False, unchanged, when no block is left.
  bool fork(seq_id from, seq_id to);
  // Drops the sequence's references (last block first, so prefixes outlive suffixes in LRU).
  void free_sequence(seq_id s);

  // The sequence's blocks in token order: ceil(max(tokens, reserved) / block_tokens) of them.
  std::span<const block_id> block_table(seq_id s) const { return m_seqs[s].blocks; }
  std::int64_t num_tokens(seq_id s) const { return m_seqs[s].num_tokens; }
  std::int32_t live_sequences() const { return m_live; }
  // Tier-1 block that holds `hash`, for executors that copy blocks; k_no_block when absent.
  block_id find_block(std::uint64_t hash) const { return m_pool.find(hash); }
  // Moves the block copies recorded since the last call (record_transfers) into `out`
  // (replacing its contents), in the order they must happen.
  void take_transfers(std::vector<block_transfer>& out);

  // Invariants of the pool plus: every block's count equals the block-table references to it.
  void check_invariants() const;

 private:
  struct sequence {
    std::vector<block_id> blocks;
    std::vector<token_id> partial;  // tokens of the last, not yet full block
    std::uint64_t parent = k_root_block_hash;
    std::int64_t num_tokens = 0;
    std::int64_t reserved_tokens = 0;  // reserve(): the table covers at least this many
    bool pending = false;              // the last token of `partial` awaits resolve_pending
    bool live = false;
  };
  block_id allocate_block();
  void seal_block(sequence& q, block_id b, std::uint64_t hash);

  kv_cache_config m_config;
  block_pool m_pool;
  host_tier m_tier2;
  detail::hash_index m_seen;  // every full-block hash ever computed (track_recompute)
  std::vector<sequence> m_seqs;
  std::vector<seq_id> m_free_seqs;
  std::int32_t m_live = 0;
  kv_counters m_counters;
  std::vector<block_transfer> m_transfers;
};

}  // namespace ridgeline
