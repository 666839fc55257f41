// Paged KV cache: hash chain, index, block pool states, prefix lookup and sharing, LRU eviction
// order, the host tier, counters, and a randomized property test over long operation sequences
// (run under ASan + UBSan in CI through the build-asan unit tests).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <unordered_set>

#include "ridgeline/engine/kv_cache.hpp"
#include "ridgeline/engine/step_batch.hpp"
#include "ridgeline/sweep/sweep.hpp"

using namespace ridgeline;

namespace {

std::vector<token_id> tokens_from(int seed, int n) {
  std::vector<token_id> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = (seed * 7919 + i * 31) % 32000;
  return t;
}

kv_cache_config config(std::int32_t blocks, std::int32_t block_tokens = 4) {
  kv_cache_config c;
  c.block_tokens = block_tokens;
  c.num_blocks = blocks;
  return c;
}

}  // namespace

TEST(KvHash, ChainDependsOnParentContentAndLength) {
  const auto a = tokens_from(1, 16);
  auto b = a;
  b[15] += 1;
  const auto h = block_hash(k_root_block_hash, a);
  EXPECT_EQ(h, block_hash(k_root_block_hash, a));
  EXPECT_NE(h, block_hash(k_root_block_hash, b));
  EXPECT_NE(h, block_hash(h, a));  // same block under another parent
  EXPECT_NE(block_hash(k_root_block_hash, std::span(a).first(15)),
            block_hash(k_root_block_hash, std::span(a).first(14)));
  // Many distinct blocks: no collisions, never 0.
  std::unordered_set<std::uint64_t> seen;
  for (int i = 0; i < 100000; ++i) {
    auto t = tokens_from(i, 16);
    t[0] = i;  // 100000 distinct contents
    const auto x = block_hash(k_root_block_hash, t);
    EXPECT_NE(x, 0u);
    seen.insert(x);
  }
  EXPECT_EQ(seen.size(), 100000u);
}

TEST(KvHashIndex, InsertFindEraseAgainstStdMap) {
  detail::hash_index idx(8);
  std::map<std::uint64_t, std::int32_t> ref;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200000; ++i) {
    // Small key space so collisions of probe runs and erase-shifts happen constantly.
    const std::uint64_t key = 1 + rng() % 4096;
    const int op = static_cast<int>(rng() % 3);
    if (op == 0) {
      const bool fresh = ref.emplace(key, i).second;
      ASSERT_EQ(idx.insert(key, i), fresh);
    } else if (op == 1) {
      ASSERT_EQ(idx.erase(key), ref.erase(key) == 1);
    } else {
      const auto it = ref.find(key);
      ASSERT_EQ(idx.find(key), it == ref.end() ? -1 : it->second);
    }
    ASSERT_EQ(idx.size(), ref.size());
  }
  EXPECT_THROW(idx.insert(0, 1), std::invalid_argument);
}

TEST(BlockPool, StatesAndDoubleFree) {
  block_pool p(3);
  EXPECT_EQ(p.num_free(), 3);
  const auto a = p.allocate(), b = p.allocate(), c = p.allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, 0);
  EXPECT_FALSE(p.allocate());
  EXPECT_EQ(p.num_used(), 3);
  EXPECT_TRUE(p.set_hash(*a, 42));
  EXPECT_FALSE(p.set_hash(*b, 42));  // another block holds that content already
  p.unref(*a);                       // hashed: cached
  p.unref(*b);                       // unhashed: free
  EXPECT_EQ(p.num_cached(), 1);
  EXPECT_EQ(p.num_free(), 1);
  EXPECT_EQ(p.find(42), *a);
  p.check_invariants();
  EXPECT_THROW(p.unref(*b), std::logic_error);
  // The free block goes first; the cached one only when nothing else is left.
  std::uint64_t evicted = 7;
  EXPECT_EQ(p.allocate(&evicted), *b);
  EXPECT_EQ(evicted, 0u);
  EXPECT_EQ(p.allocate(&evicted), *a);
  EXPECT_EQ(evicted, 42u);
  EXPECT_EQ(p.find(42), -1);
  EXPECT_EQ(p.evictions(), 1);
  p.check_invariants();
  EXPECT_THROW(block_pool(0), std::invalid_argument);
}

TEST(KvCache, PrefixSharingAndLookupStopsAtFirstMiss) {
  kv_cache_manager kv(config(64));
  const auto prompt = tokens_from(5, 18);  // 4 full blocks of 4 + 2 tokens
  const seq_id s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, prompt));
  EXPECT_EQ(kv.block_table(s).size(), 5u);
  // A second prompt sharing the first 9 tokens: 2 full blocks match.
  auto other = prompt;
  other[9] = 31999;
  auto m = kv.lookup(other, std::ssize(other) - 1);
  EXPECT_EQ(m.tier1_blocks, 2);
  EXPECT_EQ(m.tier2_blocks, 0);
  const seq_id t = kv.create_sequence();
  ASSERT_TRUE(kv.acquire_prefix(t, other, m, 10));
  ASSERT_TRUE(kv.append(t, std::span(other).subspan(8)));
  EXPECT_EQ(kv.block_table(t)[0], kv.block_table(s)[0]);
  EXPECT_EQ(kv.block_table(t)[1], kv.block_table(s)[1]);
  EXPECT_NE(kv.block_table(t)[2], kv.block_table(s)[2]);
  EXPECT_EQ(kv.pool().ref_count(kv.block_table(s)[0]), 2);
  kv.check_invariants();
  // max_tokens caps the match: a prompt equal to a cached one keeps its last token to compute.
  m = kv.lookup(std::span(prompt).first(16), 15);
  EXPECT_EQ(m.tier1_blocks, 3);
  kv.free_sequence(s);
  kv.free_sequence(t);
  EXPECT_EQ(kv.pool().num_used(), 0);
  // 4 + 2 distinct full blocks stay cached; the partial blocks went back to the free list.
  EXPECT_EQ(kv.pool().num_cached(), 6);
  kv.check_invariants();
  EXPECT_THROW(kv.free_sequence(t), std::logic_error);
}

TEST(KvCache, LruEvictsLeastRecentlyUsedAndSuffixesFirst) {
  kv_cache_manager kv(config(6));
  const auto a = tokens_from(1, 12), b = tokens_from(2, 12);
  seq_id s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, a));
  kv.free_sequence(s);  // a's 3 blocks cached, last block first in LRU order
  s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, b));
  kv.free_sequence(s);  // 6 cached
  EXPECT_EQ(kv.pool().num_cached(), 6);
  // Touch a again (hit, then release): b is now the least recently used.
  auto m = kv.lookup(a, 12);
  ASSERT_EQ(m.tier1_blocks, 3);
  s = kv.create_sequence();
  ASSERT_TRUE(kv.acquire_prefix(s, a, m, 0));
  kv.free_sequence(s);
  // One new block evicts b's last block: b's lookup keeps 2 blocks, a keeps 3.
  s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, tokens_from(3, 4)));
  EXPECT_EQ(kv.lookup(b, 12).tier1_blocks, 2);
  EXPECT_EQ(kv.lookup(a, 12).tier1_blocks, 3);
  EXPECT_EQ(kv.counters().evictions_tier1, 1);
  kv.check_invariants();
}

TEST(KvCache, OutOfBlocksChangesNothing) {
  kv_cache_manager kv(config(2));
  const seq_id s = kv.create_sequence();
  EXPECT_FALSE(kv.append(s, tokens_from(1, 9)));  // needs 3 blocks
  EXPECT_EQ(kv.num_tokens(s), 0);
  EXPECT_EQ(kv.pool().num_free(), 2);
  ASSERT_TRUE(kv.append(s, tokens_from(1, 8)));
  EXPECT_FALSE(kv.can_append(s, 1));
  kv.check_invariants();
}

TEST(KvCache, HostTierCatchesEvictionsAndLoadsBack) {
  kv_cache_config c = config(4);
  c.host_blocks = 8;
  c.pcie_bytes_per_second = 25e9;
  kv_cache_manager kv(c);
  const auto a = tokens_from(1, 17);  // 4 full blocks + 1
  seq_id s = kv.create_sequence();
  ASSERT_FALSE(kv.append(s, a));  // 5 blocks do not fit in 4
  ASSERT_TRUE(kv.append(s, std::span(a).first(16)));
  kv.free_sequence(s);
  s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, tokens_from(2, 12)));  // evicts 3 of a's blocks to the host tier
  EXPECT_EQ(kv.counters().evictions_tier1, 3);
  EXPECT_EQ(kv.tier2().size(), 3);
  kv.free_sequence(s);
  auto m = kv.lookup(a, 16);
  EXPECT_EQ(m.tier1_blocks, 1);  // the first block was evicted last (suffixes go first)
  EXPECT_EQ(m.tier2_blocks, 3);
  s = kv.create_sequence();
  ASSERT_TRUE(kv.acquire_prefix(s, a, m, 0));
  kv.record_lookup(a, m);
  EXPECT_EQ(kv.counters().tier2_blocks_loaded, 3);
  EXPECT_EQ(kv.counters().hit_tokens_tier1, 4);
  EXPECT_EQ(kv.counters().hit_tokens_tier2, 12);
  EXPECT_EQ(kv.counters().lookup_tokens, 17);
  EXPECT_EQ(kv.counters().lookup_blocks, 4);
  EXPECT_FALSE(kv.tier2().contains(m.hashes[1]));  // promoted: the tiers are exclusive
  kv.check_invariants();
}

TEST(KvCache, RecomputedTokensCountMissesOnBlocksSeenBefore) {
  kv_cache_manager kv(config(4));
  const auto a = tokens_from(1, 16);
  seq_id s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, a));
  kv.free_sequence(s);
  s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, tokens_from(2, 8)));  // evicts a's last two blocks
  auto m = kv.lookup(a, 16);
  EXPECT_EQ(m.tier1_blocks, 2);
  kv.record_lookup(a, m);
  EXPECT_EQ(kv.counters().recomputed_tokens, 8);
  const auto fresh = tokens_from(9, 16);
  kv.record_lookup(fresh, kv.lookup(fresh, 16));
  EXPECT_EQ(kv.counters().recomputed_tokens, 8);  // never computed: a plain miss
}

TEST(KvCache, ForkSharesFullBlocksAndCopiesThePartialOne) {
  kv_cache_manager kv(config(8));
  const seq_id s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, tokens_from(1, 10)));
  const seq_id t = kv.create_sequence();
  ASSERT_TRUE(kv.fork(s, t));
  EXPECT_EQ(kv.block_table(t)[1], kv.block_table(s)[1]);
  EXPECT_NE(kv.block_table(t)[2], kv.block_table(s)[2]);
  EXPECT_EQ(kv.num_tokens(t), 10);
  kv.check_invariants();
  ASSERT_TRUE(kv.append(t, tokens_from(2, 2)));  // fills t's own copy
  kv.free_sequence(s);
  kv.free_sequence(t);
  kv.check_invariants();
}

TEST(KvCache, CapacityFromBudget) {
  const auto& m = model_preset_by_name("llama-2-7b");
  // 2 * 32 layers * 32 heads * 128 * 2 bytes = 512 KiB per token, 8 MiB per 16-token block.
  EXPECT_EQ(m.kv_bytes_per_token(dtype::bf16), 512 * 1024);
  EXPECT_EQ(blocks_for_budget(m, dtype::bf16, 16, 80LL << 30), 10240);
  EXPECT_EQ(blocks_for_budget(m, dtype::fp8_e4m3, 16, 80LL << 30), 20480);
  const auto& g = model_preset_by_name("llama-3-8b");  // GQA: 8 KV heads
  EXPECT_EQ(g.kv_bytes_per_token(dtype::bf16), 128 * 1024);
  EXPECT_THROW(blocks_for_budget(m, dtype::bf16, 16, 1 << 20), std::invalid_argument);
  EXPECT_EQ(make_kv_cache_config(m, dtype::bf16, 16, 10).bytes_per_block, 8 << 20);
}

// Randomized operations against a shadow model, invariants checked after every operation:
// no leak, no double free, no negative count, used + cached + free = total, every block's count
// equals the block tables' references, and shared prefixes really share blocks.
TEST(KvCacheProperty, RandomOperationsKeepInvariants) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(seed);
    kv_cache_config c = config(24 + static_cast<std::int32_t>(seed * 7),
                               1 + static_cast<std::int32_t>(seed % 4) * 3);
    c.host_blocks = seed % 2 == 0 ? 16 : 0;
    kv_cache_manager kv(c);
    // A few base prompts so lookups hit, miss and partially match.
    std::vector<std::vector<token_id>> bases;
    for (int i = 0; i < 5; ++i) bases.push_back(tokens_from(static_cast<int>(seed * 100) + i, 80));
    struct live {
      seq_id s;
      std::vector<token_id> tokens;
    };
    std::vector<live> seqs;
    std::int64_t preemptions = 0;
    for (int op_i = 0; op_i < 4000; ++op_i) {
      const int op = static_cast<int>(rng() % 100);
      if (op < 30 || seqs.empty()) {
        // allocate: a new sequence from a (perturbed) base prompt, through the prefix cache
        auto prompt = bases[rng() % bases.size()];
        prompt.resize(1 + rng() % prompt.size());
        if (rng() % 3 == 0) prompt[rng() % prompt.size()] = static_cast<token_id>(rng() % 32000);
        const auto m = kv.lookup(prompt, std::ssize(prompt) - 1);
        const seq_id s = kv.create_sequence();
        const auto cached = m.tokens(c.block_tokens);
        if (kv.acquire_prefix(s, prompt, m,
                              static_cast<std::int32_t>(std::ssize(prompt) - cached))) {
          kv.record_lookup(prompt, m);
          // The matched blocks are shared, not copied.
          for (std::int32_t i = 0; i < m.blocks(); ++i) {
            ASSERT_EQ(kv.block_table(s)[static_cast<std::size_t>(i)], kv.find_block(m.hashes[i]));
          }
          ASSERT_TRUE(kv.append(s, std::span(prompt).subspan(static_cast<std::size_t>(cached))));
          ASSERT_EQ(kv.num_tokens(s), std::ssize(prompt));
          seqs.push_back({s, prompt});
        } else {
          kv.free_sequence(s);
        }
      } else if (op < 65) {
        // append: decode tokens; out of blocks means preempt the youngest (recompute later)
        auto& q = seqs[rng() % seqs.size()];
        const auto n = 1 + static_cast<int>(rng() % 6);
        const auto more = tokens_from(static_cast<int>(rng() % 1000), n);
        if (kv.append(q.s, more)) {
          q.tokens.insert(q.tokens.end(), more.begin(), more.end());
        } else {
          kv.free_sequence(seqs.back().s);
          seqs.pop_back();
          ++preemptions;
        }
      } else if (op < 75) {
        // share: fork a sequence
        const auto& q = seqs[rng() % seqs.size()];
        const seq_id t = kv.create_sequence();
        if (kv.fork(q.s, t)) {
          seqs.push_back({t, q.tokens});
          const auto& src = seqs[seqs.size() - 1];
          ASSERT_EQ(kv.num_tokens(t), std::ssize(src.tokens));
        } else {
          kv.free_sequence(t);
        }
      } else if (op < 95) {
        // free
        const auto i = rng() % seqs.size();
        kv.free_sequence(seqs[i].s);
        seqs.erase(seqs.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        // evict: allocate through a throwaway sequence until every cached block is gone
        const seq_id s = kv.create_sequence();
        const auto want = kv.pool().num_available();
        ASSERT_TRUE(
            kv.append(s, tokens_from(static_cast<int>(rng() % 5000), want * c.block_tokens)));
        EXPECT_EQ(kv.pool().num_cached(), 0);
        kv.free_sequence(s);
      }
      kv.check_invariants();
      const auto& p = kv.pool();
      ASSERT_EQ(p.num_used() + p.num_cached() + p.num_free(), p.total());
      ASSERT_EQ(kv.live_sequences(), std::ssize(seqs));
    }
    for (const auto& q : seqs) kv.free_sequence(q.s);
    kv.check_invariants();
    EXPECT_EQ(kv.pool().num_used(), 0) << "leak, seed " << seed;
    EXPECT_GT(kv.counters().hit_tokens_tier1, 0);
    EXPECT_GT(kv.counters().evictions_tier1, 0);
    EXPECT_GT(preemptions, 0);
  }
}

TEST(KvCache, AscendingPlacementHandsOutIdsInOrder) {
  kv_cache_manager kv(config(16));
  const seq_id a = kv.create_sequence(), b = kv.create_sequence();
  ASSERT_TRUE(kv.append(a, tokens_from(1, 9)));  // 3 blocks of 4
  ASSERT_TRUE(kv.append(b, tokens_from(2, 5)));  // 2 blocks
  EXPECT_EQ(std::vector<block_id>(kv.block_table(a).begin(), kv.block_table(a).end()),
            (std::vector<block_id>{0, 1, 2}));
  EXPECT_EQ(std::vector<block_id>(kv.block_table(b).begin(), kv.block_table(b).end()),
            (std::vector<block_id>{3, 4}));
}

TEST(KvCache, ShuffledPlacementIsASeededPermutationOfThePool) {
  // The sweep's batches: one sequence after another takes its blocks from a shuffled pool.
  auto tables = [](std::uint64_t seed) {
    kv_cache_config c = config(64);
    c.placement = block_placement::shuffled;
    c.placement_seed = seed;
    c.prefix_caching = false;
    kv_cache_manager kv(c);
    EXPECT_EQ(kv.pool().num_free(), 64);
    std::vector<block_id> all;
    for (int s = 0; s < 8; ++s) {
      const seq_id q = kv.create_sequence();
      EXPECT_TRUE(kv.append(q, tokens_from(s, 32)));  // 8 blocks each: the whole pool
      EXPECT_EQ(kv.block_table(q).size(), 8u);
      all.insert(all.end(), kv.block_table(q).begin(), kv.block_table(q).end());
    }
    EXPECT_EQ(kv.pool().num_free(), 0);
    EXPECT_FALSE(kv.can_append(0, 1));
    kv.check_invariants();
    return all;
  };
  const auto a = tables(11), b = tables(11), c = tables(12);
  EXPECT_EQ(a, b);  // seeded
  EXPECT_NE(a, c);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 64; ++i) ASSERT_EQ(sorted[static_cast<std::size_t>(i)], i);  // a permutation
  // Scattered, not contiguous: few neighbours in a table are consecutive ids.
  int consecutive = 0;
  for (std::size_t i = 0; i + 1 < a.size(); ++i) {
    if (i % 8 != 7 && a[i + 1] == a[i] + 1) ++consecutive;
  }
  EXPECT_LT(consecutive, 8) << "of 56 neighbouring pairs";
  // Freed blocks come back first (most recently freed), as with the ascending placement.
  kv_cache_config cfg = config(8);
  cfg.placement = block_placement::shuffled;
  cfg.placement_seed = 3;
  kv_cache_manager kv(cfg);
  const seq_id s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, tokens_from(1, 3)));
  const block_id first = kv.block_table(s)[0];
  kv.free_sequence(s);
  const seq_id t = kv.create_sequence();
  ASSERT_TRUE(kv.append(t, tokens_from(9, 3)));
  EXPECT_EQ(kv.block_table(t)[0], first);
  kv.check_invariants();
}

TEST(KvCache, ReserveCoversFutureTokensAndAppendFillsTheReservedBlocks) {
  kv_cache_manager kv(config(10));
  const seq_id a = kv.create_sequence(), b = kv.create_sequence();
  ASSERT_TRUE(kv.reserve(a, 9));  // 3 blocks up front: 0, 1, 2
  ASSERT_TRUE(kv.reserve(b, 4));  // 1 block: 3
  EXPECT_EQ(kv.block_table(a).size(), 3u);
  EXPECT_EQ(kv.num_tokens(a), 0);
  EXPECT_EQ(kv.pool().num_used(), 4);
  kv.check_invariants();
  // Appends inside the reservation allocate nothing; the table does not change.
  const auto prompt = tokens_from(5, 9);
  EXPECT_EQ(kv.blocks_needed(a, 9), 0);
  ASSERT_TRUE(kv.append(a, std::span(prompt).first(6)));
  ASSERT_TRUE(kv.append(a, std::span(prompt).subspan(6)));
  EXPECT_EQ(std::vector<block_id>(kv.block_table(a).begin(), kv.block_table(a).end()),
            (std::vector<block_id>{0, 1, 2}));
  EXPECT_EQ(kv.pool().num_used(), 4);
  kv.check_invariants();
  // Full reserved blocks are hashed like any other: a new sequence finds the prefix.
  const auto m = kv.lookup(prompt, 9);
  EXPECT_EQ(m.tier1_blocks, 2);
  // Past the reservation, append allocates again.
  ASSERT_TRUE(kv.append(a, tokens_from(6, 4)));
  EXPECT_EQ(kv.block_table(a).size(), 4u);
  EXPECT_EQ(kv.block_table(a)[3], 4);
  kv.check_invariants();
  // Not enough blocks: false, nothing changes.
  EXPECT_FALSE(kv.reserve(b, 4 * 10));
  EXPECT_EQ(kv.block_table(b).size(), 1u);
  kv.check_invariants();
  // A fork shares the full blocks only, never the reserved tail.
  ASSERT_TRUE(kv.reserve(b, 12));
  ASSERT_TRUE(kv.append(b, tokens_from(7, 5)));
  const seq_id c = kv.create_sequence();
  ASSERT_TRUE(kv.fork(b, c));
  EXPECT_EQ(kv.block_table(c).size(), 2u);
  EXPECT_EQ(kv.block_table(c)[0], kv.block_table(b)[0]);
  EXPECT_NE(kv.block_table(c)[1], kv.block_table(b)[1]);
  kv.check_invariants();
  for (seq_id s : {a, b, c}) kv.free_sequence(s);
  EXPECT_EQ(kv.pool().num_used(), 0);
  kv.check_invariants();
}

TEST(KvCache, SweepStepTakesShuffledBlocksOfAPoolOfExactlyItsSize) {
  // What `ridgeline sweep` and `roofline` time: B sequences whose tables are scattered over a
  // pool of exactly the blocks they need, the same block counts and table width as before the
  // KV manager built them.
  const model_preset m = model_preset_by_name("tiny");
  std::mt19937 rng(11);
  for (const bool prefill : {false, true}) {
    bench::synthetic_step step;
    const int batch = 5, context = 100, block_tokens = 16;
    bench::make_synthetic_step(step, m, block_tokens, batch, context, prefill, rng);
    const auto per_seq = static_cast<std::size_t>(
        bench::synthetic_step_blocks(context, prefill, block_tokens));
    EXPECT_EQ(per_seq, prefill ? 7u : 7u);  // ceil(100 / 16), ceil(101 / 16)
    ASSERT_EQ(step.seqs.size(), 5u);
    std::vector<block_id> all;
    for (const auto& s : step.seqs) {
      EXPECT_EQ(s.blocks.size(), per_seq);
      EXPECT_EQ(s.context_before, prefill ? 0 : context);
      EXPECT_EQ(s.new_tokens, prefill ? context : 1);
      EXPECT_EQ(s.prefill, prefill);
      EXPECT_TRUE(s.samples);
      all.insert(all.end(), s.blocks.begin(), s.blocks.end());
    }
    std::vector<block_id> sorted = all;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], static_cast<block_id>(i));
    EXPECT_NE(all, sorted) << "blocks handed out in order: the placement is not shuffled";
    const host_step h = build_step(step.seqs, block_tokens, m.vocab);
    EXPECT_EQ(h.max_blocks_per_seq, static_cast<int>(per_seq));
    EXPECT_EQ(h.num_tokens, prefill ? batch * context : batch);
    step.kv->check_invariants();
  }
}

TEST(KvCache, PendingTokenHoldsItsSlotAndHashesItsBlockWhenResolved) {
  kv_cache_config c;
  c.block_tokens = 4;
  c.num_blocks = 8;
  kv_cache_manager kv(c);
  const std::vector<token_id> prompt = {1, 2, 3};
  const seq_id s = kv.create_sequence();
  ASSERT_TRUE(kv.append(s, prompt));
  ASSERT_TRUE(kv.append_pending(s));  // fills block 0 with an unknown token
  EXPECT_TRUE(kv.has_pending(s));
  EXPECT_EQ(kv.num_tokens(s), 4);
  EXPECT_NO_THROW(kv.check_invariants());
  // Not a prefix-cache entry yet: a lookup of 1 2 3 9 finds nothing.
  const std::vector<token_id> full = {1, 2, 3, 9, 5};
  EXPECT_EQ(kv.lookup(full, 4).blocks(), 0);
  EXPECT_THROW(kv.append(s, prompt), std::logic_error);  // no append before it is resolved
  kv.resolve_pending(s, 9);
  EXPECT_FALSE(kv.has_pending(s));
  EXPECT_EQ(kv.lookup(full, 4).blocks(), 1);  // now it is
  // The same as appending the known token: a second sequence's full block shares the hash.
  const seq_id t = kv.create_sequence();
  ASSERT_TRUE(kv.append(t, std::vector<token_id>{1, 2, 3, 9}));
  EXPECT_EQ(kv.block_table(t)[0] == kv.block_table(s)[0], false);  // distinct blocks, same content
  EXPECT_NO_THROW(kv.check_invariants());
  // A pending token in the middle of a block, then free: nothing leaks.
  ASSERT_TRUE(kv.append_pending(s));
  EXPECT_THROW(kv.append_pending(s), std::logic_error);
  kv.free_sequence(s);
  kv.free_sequence(t);
  EXPECT_NO_THROW(kv.check_invariants());
  EXPECT_EQ(kv.pool().num_used(), 0);
}
