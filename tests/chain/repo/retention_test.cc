#include "chain/repo/retention.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

namespace chainfs {
namespace {

constexpr int64_t kHour = 3600LL * 1000000000LL;
constexpr int64_t kDay = 24 * kHour;
// 2026-11-02T00:00:00Z, a Monday.
constexpr int64_t kMonday = 1793577600LL * 1000000000LL;

std::vector<Checkpoint> At(const std::vector<int64_t>& times) {
  std::vector<Checkpoint> out;
  for (size_t i = 0; i < times.size(); ++i) {
    Checkpoint c;
    c.name = "c" + std::to_string(i);
    c.sequence = i + 1;
    c.created_unix_ns = times[i];
    out.push_back(c);
  }
  return out;
}

std::set<std::string> Kept(const std::vector<RetentionDecision>& d) {
  std::set<std::string> out;
  for (const auto& x : d)
    if (x.keep) out.insert(x.checkpoint);
  return out;
}

TEST(Retention, NewestIsAlwaysKept) {
  RetentionPolicy p;
  auto d = SelectRetained(At({0, kHour, 2 * kHour}), p);
  EXPECT_EQ(Kept(d), (std::set<std::string>{"c2"}));
  EXPECT_EQ(d[2].reasons, (std::vector<std::string>{"newest"}));
  EXPECT_TRUE(SelectRetained({}, p).empty());
}

TEST(Retention, KeepLast) {
  RetentionPolicy p;
  p.keep_last = 2;
  EXPECT_EQ(Kept(SelectRetained(At({0, 1, 2, 3}), p)),
            (std::set<std::string>{"c2", "c3"}));
}

TEST(Retention, DailyKeepsTheNewestOfEachDay) {
  // Day 0: c0 c1; day 1: c2; day 3: c3 c4 c5.
  auto cps = At({kMonday, kMonday + kHour, kMonday + kDay, kMonday + 3 * kDay,
                 kMonday + 3 * kDay + kHour, kMonday + 3 * kDay + 2 * kHour});
  RetentionPolicy p;
  p.keep_daily = 2;
  EXPECT_EQ(Kept(SelectRetained(cps, p)), (std::set<std::string>{"c2", "c5"}));
  p.keep_daily = 10;
  EXPECT_EQ(Kept(SelectRetained(cps, p)),
            (std::set<std::string>{"c1", "c2", "c5"}));
}

TEST(Retention, WeeklyUsesIsoWeeksAndMonthlyCalendarMonths) {
  // Saturday 2026-10-31 belongs to the ISO week before Monday 2026-11-02.
  auto cps = At({kMonday - 2 * kDay, kMonday + kHour, kMonday + 7 * kDay});
  RetentionPolicy p;
  p.keep_weekly = 3;
  auto d = SelectRetained(cps, p);
  EXPECT_EQ(Kept(d), (std::set<std::string>{"c0", "c1", "c2"}));
  EXPECT_EQ(d[0].reasons, (std::vector<std::string>{"weekly 2026-W44"}));
  RetentionPolicy m;
  m.keep_monthly = 5;
  // c0 is October, c1 and c2 November.
  EXPECT_EQ(Kept(SelectRetained(cps, m)), (std::set<std::string>{"c0", "c2"}));
}

TEST(Retention, HourlyAndRulesCombine) {
  auto cps = At({0, 10 * 60 * 1000000000LL, kHour, kHour + 1, 5 * kHour});
  RetentionPolicy p;
  p.keep_hourly = 2;
  p.keep_last = 1;
  auto d = SelectRetained(cps, p);
  EXPECT_EQ(Kept(d), (std::set<std::string>{"c3", "c4"}));
  EXPECT_EQ(d[4].reasons.size(), 3u);  // newest, last, hourly
}

// Property: every bucket rule keeps exactly min(N, distinct buckets)
// newest-of-bucket checkpoints, the newest is kept, nothing else is kept when
// only that rule is set.
TEST(Retention, DailyPropertyAgainstAModel) {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 200; ++iter) {
    std::vector<int64_t> times;
    int64_t t = kMonday;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 30); i < n; ++i) {
      t += static_cast<int64_t>(rng() % (2 * kDay / 1000000000LL)) *
           1000000000LL;
      times.push_back(t);
    }
    RetentionPolicy p;
    p.keep_daily = 1 + static_cast<int>(rng() % 6);
    auto cps = At(times);
    std::map<int64_t, std::string> newest_of_day;  // day -> name
    for (const auto& c : cps) newest_of_day[c.created_unix_ns / kDay] = c.name;
    std::set<std::string> want;
    int left = p.keep_daily;
    for (auto it = newest_of_day.rbegin();
         it != newest_of_day.rend() && left > 0; ++it, --left)
      want.insert(it->second);
    want.insert(cps.back().name);
    EXPECT_EQ(Kept(SelectRetained(cps, p)), want) << "iteration " << iter;
  }
}

}  // namespace
}  // namespace chainfs
