#include "chain/ingest/source_reader.h"

#include <gtest/gtest.h>

#include <future>
#include <random>

#include "tests/chain/ingest/fake_source.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::FakeSource;
using testing::RandomBytes;

Status ReadAndWait(SourceReader& reader, uint64_t off, size_t n, char* buf) {
  std::promise<Status> p;
  reader.Read(off, n, buf, [&p](Status st) { p.set_value(std::move(st)); });
  return p.get_future().get();
}

// A source with 5 ms of latency per request and room for 8: the requests of
// one read overlap (counted, not timed) and are cut at request_bytes.
TEST(SourceReader, RequestsOfASlowSourceOverlap) {
  const std::string data = RandomBytes(1 << 20, 1);
  FakeSource src(data, {8, 65536});
  src.latency = std::chrono::milliseconds(5);
  SourceReader reader(src, 64);
  EXPECT_EQ(reader.in_flight(), 8u);
  std::string buf(data.size() - 1000, '\0');
  ASSERT_TRUE(ReadAndWait(reader, 1000, buf.size(), buf.data()).ok());
  EXPECT_TRUE(buf == data.substr(1000));
  EXPECT_GT(src.max_in_flight_seen(), 1);
  EXPECT_LE(src.max_in_flight_seen(), 8);
  const auto reads = src.reads();
  EXPECT_EQ(reads.size(), 16u);
  for (const ByteRange& r : reads) {
    EXPECT_LE(r.length, 65536u);
    EXPECT_EQ((r.offset + r.length) % 65536, 0u) << "a request not cut at request_bytes";
  }
}

TEST(SourceReader, KeepsToTheSourcesAndTheCallersLimit) {
  const std::string data = RandomBytes(256 << 10, 2);
  FakeSource one(data, {1, 4096});
  one.latency = std::chrono::milliseconds(1);
  SourceReader r1(one, 64);
  std::string buf(data.size(), '\0');
  ASSERT_TRUE(ReadAndWait(r1, 0, buf.size(), buf.data()).ok());
  EXPECT_EQ(one.max_in_flight_seen(), 1);

  FakeSource many(data, {32, 4096});
  many.latency = std::chrono::milliseconds(1);
  SourceReader r3(many, 3);
  EXPECT_EQ(r3.in_flight(), 3u);
  ASSERT_TRUE(ReadAndWait(r3, 0, buf.size(), buf.data()).ok());
  EXPECT_TRUE(buf == data);
  EXPECT_LE(many.max_in_flight_seen(), 3);
}

TEST(SourceReader, ReportsTheFirstFailedRequestOnce) {
  const std::string data = RandomBytes(100000, 3);
  FakeSource src(data, {4, 16384});
  SourceReader reader(src, 4);
  std::string buf(200000, '\0');
  std::atomic<int> calls{0};
  std::promise<Status> p;
  reader.Read(50000, 150000, buf.data(), [&](Status st) {
    ++calls;
    p.set_value(std::move(st));
  });
  Status st = p.get_future().get();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("fake://disk"), std::string::npos) << st.ToString();
  // 98304 is the first request that crosses the end at 100000.
  EXPECT_NE(st.message().find("98304"), std::string::npos) << st.ToString();
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace chainfs
