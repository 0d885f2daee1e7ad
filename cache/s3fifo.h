// S3Fifo: the eviction policy of one BlockCache shard (S3-FIFO, Yang et al.,
// "FIFO queues are all you need for cache eviction", SOSP 2023).
//
//   insert ──► small FIFO ──(re-used while in small)──► main FIFO ──► evict
//     ▲            │ not re-used                        ▲    │ use count > 0:
//     │            ▼                                    │    │ reinsert, count-1
//     └─ ghost hit ghost FIFO (keys only) ──────────────┘◄───┘
//
// New entries go to the small FIFO, which takes about 10% of the capacity. When
// the cache is over capacity and the small FIFO holds more than its share, its
// oldest entry leaves: promoted to main if it was used (Use()) since insertion,
// otherwise dropped and remembered in the ghost FIFO. A new entry whose key is
// in the ghost FIFO goes directly to main. Otherwise main's oldest entry
// leaves: reinserted at the head with its use count decremented if non-zero,
// evicted if zero. Use counts saturate at 3. A one-pass scan therefore only
// ever churns the small FIFO; entries in main are evicted only by entries
// that proved re-use.
//
// Scan entries (Insert(..., scan) or MarkScan: blocks a sequential reader has
// consumed) are held to the small FIFO's share even while the cache has room:
// the small FIFO keeps them in a FIFO of their own, in the order they were
// consumed, and each insert lets its oldest go while the small FIFO is over
// its share (re-used ones are promoted as usual); under pressure they also
// leave before the small FIFO's entries not consumed yet. A one-pass read of a
// whole disk therefore recycles the memory of about the small share instead
// of growing to the capacity, and leaves ghost keys behind that let a second
// pass prove re-use. Entries read outside a scan fill the room as before.
//
// Not thread-safe: the owner (a BlockCache shard) holds its lock around every
// call. Entry pointers stay valid until the entry is evicted or erased.
//
//   S3Fifo<int> s(/*capacity=*/10, /*small_capacity=*/1);
//   s.Insert({1, 0}, 42, /*charge=*/1, [](auto&&) {});
//   if (auto* e = s.Find({1, 0})) s.Use(e);
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <iterator>
#include <list>
#include <unordered_map>
#include <utility>

namespace chainfs {

struct CacheKey {
  uint64_t layer_id = 0;
  uint64_t entry = 0;
  bool operator==(const CacheKey&) const = default;
};

struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const {
    uint64_t x = k.layer_id * 0x9E3779B97F4A7C15ull ^ k.entry;  // splitmix64 finalizer
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return static_cast<size_t>(x ^ (x >> 31));
  }
};

template <typename V>
class S3Fifo {
 public:
  static constexpr uint8_t kMaxUse = 3;
  struct Entry {
    CacheKey key;
    V value;
    uint64_t charge = 0;
    uint8_t use = 0;
    bool in_main = false;
    bool scan = false;  // consumed by a sequential scan: see the note above
  };

  // REQUIRES: small_capacity <= capacity.
  S3Fifo(uint64_t capacity, uint64_t small_capacity)
      : capacity_(capacity), small_capacity_(small_capacity) {}

  uint64_t capacity() const { return capacity_; }
  uint64_t bytes() const { return small_bytes_ + main_bytes_; }
  size_t size() const { return index_.size(); }
  bool InGhost(const CacheKey& key) const { return ghost_.count(key) != 0; }

  Entry* Find(const CacheKey& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &*it->second;
  }
  // Records a re-use of e (saturating).
  void Use(Entry* e) {
    if (e->use < kMaxUse) ++e->use;
  }

  // Marks e as consumed by a sequential scan. In the small FIFO it joins the
  // scan entries, which leave before the entries not consumed yet.
  void MarkScan(Entry* e) {
    if (e->scan) return;
    e->scan = true;
    if (!e->in_main) scan_.splice(scan_.begin(), small_, index_[e->key]);
  }

  // Inserts key (a scan entry if `scan`), lets scan entries over the small
  // share go, then evicts oldest entries until bytes() <= capacity(),
  // calling on_evict(Entry&&) for each evicted entry. Returns the new entry,
  // or nullptr if it was itself let go or evicted (a scan entry while the
  // small share holds newer ones, or charge > capacity()).
  // REQUIRES: key not present.
  template <typename Fn>
  Entry* Insert(const CacheKey& key, V value, uint64_t charge, Fn&& on_evict, bool scan = false) {
    const bool to_main = ghost_.erase(key) != 0;
    List& q = to_main ? main_ : scan ? scan_ : small_;
    q.push_front(Entry{key, std::move(value), charge, 0, to_main, scan});
    index_[key] = q.begin();
    (to_main ? main_bytes_ : small_bytes_) += charge;
    ghost_limit_ = std::max<size_t>(1, capacity_ / std::max<uint64_t>(1, charge));
    while (small_bytes_ > small_capacity_ && !scan_.empty()) EvictFromSmall(scan_, on_evict);
    while (bytes() > capacity_) EvictOne(on_evict);
    return Find(key);
  }

  // Removes key if present, without counting it as an eviction.
  void Erase(const CacheKey& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    auto pos = it->second;
    (pos->in_main ? main_bytes_ : small_bytes_) -= pos->charge;
    ListOf(*pos).erase(pos);
    index_.erase(it);
  }

  // Keys from oldest to newest, for tests: the small FIFO's entries not
  // consumed by a scan, its scan entries, the main FIFO.
  std::deque<CacheKey> SmallKeys() const { return Keys(small_); }
  std::deque<CacheKey> ScanKeys() const { return Keys(scan_); }
  std::deque<CacheKey> MainKeys() const { return Keys(main_); }

 private:
  using List = std::list<Entry>;

  List& ListOf(const Entry& e) { return e.in_main ? main_ : e.scan ? scan_ : small_; }

  template <typename Fn>
  void EvictOne(Fn& on_evict) {
    if (small_bytes_ > small_capacity_ || main_.empty()) {
      EvictFromSmall(scan_.empty() ? small_ : scan_, on_evict);
    } else {
      EvictFromMain(on_evict);
    }
  }

  // q: small_ or scan_ (not empty).
  template <typename Fn>
  void EvictFromSmall(List& q, Fn& on_evict) {
    auto last = std::prev(q.end());
    if (last->use > 0) {  // re-used while probationary: promote
      last->use = 0;
      last->in_main = true;
      small_bytes_ -= last->charge;
      main_bytes_ += last->charge;
      main_.splice(main_.begin(), q, last);
      return;
    }
    RememberGhost(last->key);
    small_bytes_ -= last->charge;
    Drop(q, last, on_evict);
  }

  template <typename Fn>
  void EvictFromMain(Fn& on_evict) {
    auto last = std::prev(main_.end());
    if (last->use > 0) {  // CLOCK: a second chance per use
      --last->use;
      main_.splice(main_.begin(), main_, last);
      return;
    }
    main_bytes_ -= last->charge;
    Drop(main_, last, on_evict);
  }

  template <typename Fn>
  void Drop(List& q, typename List::iterator it, Fn& on_evict) {
    index_.erase(it->key);
    Entry e = std::move(*it);
    q.erase(it);
    on_evict(std::move(e));
  }

  void RememberGhost(const CacheKey& key) {
    ghost_[key] = ++ghost_seq_;
    ghost_fifo_.emplace_back(key, ghost_seq_);
    while (ghost_fifo_.size() > ghost_limit_) {
      auto [k, seq] = ghost_fifo_.front();
      ghost_fifo_.pop_front();
      auto it = ghost_.find(k);
      if (it != ghost_.end() && it->second == seq) ghost_.erase(it);
    }
  }

  static std::deque<CacheKey> Keys(const List& q) {
    std::deque<CacheKey> out;
    for (const Entry& e : q) out.push_front(e.key);
    return out;
  }

  const uint64_t capacity_;
  const uint64_t small_capacity_;
  uint64_t small_bytes_ = 0;  // small_ and scan_
  uint64_t main_bytes_ = 0;
  List small_;  // front = newest
  List scan_;   // the small FIFO's scan entries, front = consumed last
  List main_;
  std::unordered_map<CacheKey, typename List::iterator, CacheKeyHash> index_;
  // Ghost: key -> sequence of its latest entry in ghost_fifo_ (older duplicates
  // in the FIFO are skipped when they fall out). At most as many keys as the
  // shard can hold entries.
  std::unordered_map<CacheKey, uint64_t, CacheKeyHash> ghost_;
  std::deque<std::pair<CacheKey, uint64_t>> ghost_fifo_;
  size_t ghost_limit_ = 1;
  uint64_t ghost_seq_ = 0;
};

}  // namespace chainfs
