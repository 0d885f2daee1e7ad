#include "chain/repo/retention.h"

#include <ctime>

namespace chainfs {
namespace {

std::string Bucket(int64_t unix_ns, const char* format) {
  time_t t = static_cast<time_t>(unix_ns / 1000000000);
  if (unix_ns < 0 && unix_ns % 1000000000 != 0) --t;  // floor, not toward zero
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, format, &tm);
  return buf;
}

struct Rule {
  const char* name;
  int count;
  const char*
      format;  // strftime of the bucket; nullptr: every checkpoint its own
};

}  // namespace

bool RetentionPolicy::empty() const {
  return keep_last <= 0 && keep_hourly <= 0 && keep_daily <= 0 &&
         keep_weekly <= 0 && keep_monthly <= 0;
}

std::string RetentionPolicy::Describe() const {
  std::string out;
  auto add = [&](const char* name, int n) {
    if (n <= 0) return;
    if (!out.empty()) out += ", ";
    out += std::string(name) + " " + std::to_string(n);
  };
  add("keep-last", keep_last);
  add("keep-hourly", keep_hourly);
  add("keep-daily", keep_daily);
  add("keep-weekly", keep_weekly);
  add("keep-monthly", keep_monthly);
  return out.empty() ? "no rule" : out;
}

std::vector<RetentionDecision> SelectRetained(
    const std::vector<Checkpoint>& checkpoints, const RetentionPolicy& policy) {
  std::vector<RetentionDecision> out(checkpoints.size());
  for (size_t i = 0; i < checkpoints.size(); ++i)
    out[i].checkpoint = checkpoints[i].name;
  if (checkpoints.empty()) return out;
  out.back().keep = true;
  out.back().reasons.push_back("newest");
  Rule rules[] = {{"last", policy.keep_last, nullptr},
                  {"hourly", policy.keep_hourly, "%Y-%m-%dT%H"},
                  {"daily", policy.keep_daily, "%Y-%m-%d"},
                  {"weekly", policy.keep_weekly, "%G-W%V"},
                  {"monthly", policy.keep_monthly, "%Y-%m"}};
  for (const Rule& rule : rules) {
    int left = rule.count;
    std::string last_bucket;
    for (size_t i = checkpoints.size(); i-- > 0 && left > 0;) {
      std::string bucket =
          rule.format ? Bucket(checkpoints[i].created_unix_ns, rule.format)
                      : checkpoints[i].name;
      if (!last_bucket.empty() && bucket == last_bucket) continue;
      last_bucket = bucket;
      --left;
      out[i].keep = true;
      out[i].reasons.push_back(rule.format
                                   ? std::string(rule.name) + " " + bucket
                                   : std::string(rule.name));
    }
  }
  return out;
}

}  // namespace chainfs
