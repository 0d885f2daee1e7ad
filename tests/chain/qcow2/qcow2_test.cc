// qcow2 images and backing chains read as a source (chain/qcow2): images
// made by the real qemu-img and qemu-io, every view compared with
// `qemu-img convert -O raw` of its image; refusals and damage by hand.
#include <gtest/gtest.h>

#include <boost/filesystem.hpp>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <unistd.h>
#include <vector>

#include "chain/base/env.h"
#include "chain/ingest/import.h"
#include "chain/qcow2/qcow2_catalog.h"
#include "chain/qcow2/qcow2_header.h"
#include "chain/qcow2/qcow2_layer.h"
#include "chain/repo/check.h"
#include "chain/repo/repository.h"
#include "tests/chain/raw_span_check.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

// Runs a shell command in dir; its output goes to the test log.
void Sh(const std::string& dir, const std::string& cmd) {
  const std::string full = "cd '" + dir + "' && { " + cmd + "; } >/dev/null";
  ASSERT_EQ(std::system(full.c_str()), 0) << full;
}

// tmp's directory "img", made: where a test puts its images.
std::string ImageDir(const TempDir& tmp) {
  const std::string d = tmp / "img";
  boost::filesystem::create_directories(d);
  return d;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// What QEMU reads from image: qemu-img convert -O raw. With snapshot_id: the
// disk as reverting to that internal snapshot makes it (qemu-img snapshot -a
// on a copy beside the image, so that its backing file resolves alike).
std::string QemuRaw(const std::string& image, const std::string& snapshot_id = "") {
  const std::string out = image + ".ref";
  std::string from = image;
  if (!snapshot_id.empty()) {
    const boost::filesystem::path p(image);
    from = (p.parent_path() / ("." + p.filename().string() + ".revert")).string();
    const std::string cmd = "cp '" + image + "' '" + from + "' && qemu-img snapshot -a '" + snapshot_id + "' '" + from + "'";
    if (std::system(cmd.c_str()) != 0) return "qemu-img snapshot -a failed";
  }
  const std::string cmd = "qemu-img convert -O raw '" + from + "' '" + out + "'";
  const bool ok = std::system(cmd.c_str()) == 0;
  if (from != image) boost::filesystem::remove(from);
  if (!ok) return "qemu-img failed";
  std::string s = ReadAll(out);
  boost::filesystem::remove(out);
  return s;
}

std::string ReadView(const Repository& repo, const std::string& g, const std::string& cp, Status* st) {
  auto v = repo.OpenView(g, cp, "disk");
  if (!v.ok()) {
    *st = v.status();
    return "";
  }
  std::string out(v.value()->size(), '\0');
  *st = v.value()->Read(0, out.size(), out.data());
  return out;
}

// Every checkpoint of every group of source equals QEMU's reading of its
// image; returns how many were compared.
size_t ExpectAllViewsMatchQemu(const std::string& source) {
  auto repo = Repository::Open(source);
  EXPECT_TRUE(repo.ok()) << repo.status().ToString();
  if (!repo.ok()) return 0;
  auto groups = repo.value()->ListGroups();
  EXPECT_TRUE(groups.ok());
  size_t n = 0;
  for (const std::string& g : groups.value()) {
    auto state = repo.value()->LoadGroup(g);
    EXPECT_TRUE(state.ok()) << state.status().ToString();
    EXPECT_TRUE(state->refused.empty()) << g << ": " << state->refused[0].reason;
    for (const Checkpoint& cp : state->checkpoints) {
      const std::string image = repo.value()->DeltaPath(g, cp.disks[0].delta_file);
      Status st;
      const std::string got = ReadView(*repo.value(), g, cp.name, &st);
      EXPECT_TRUE(st.ok()) << g << "/" << cp.name << ": " << st.ToString();
      const std::string& part = cp.disks[0].part;  // a snapshot's: "ID@TIME"
      const std::string want = QemuRaw(image, part.substr(0, part.rfind('@')));
      EXPECT_EQ(got.size(), want.size()) << g << "/" << cp.name;
      EXPECT_TRUE(got == want) << g << "/" << cp.name << " (" << image << ") differs from qemu-img convert";
      ++n;
    }
  }
  auto report = Check(*repo.value(), "", "", /*deep=*/true);
  EXPECT_TRUE(report.ok());
  if (report.ok()) {
    EXPECT_TRUE(report->problems.empty()) << report->problems[0].message;
  }
  return n;
}

// A raw file of size bytes: random in the first half, text in the rest.
void MakeRaw(const std::string& dir, const std::string& name, uint64_t size) {
  Sh(dir, "head -c " + std::to_string(size / 2) + " /dev/urandom > " + name + " && yes chainfs | head -c " +
              std::to_string(size / 2) + " >> " + name);
}

TEST(Qcow2Chain, ZeroDiscardAndOverwritesAlongAChain) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 16M");
  Sh(d, "qemu-io -c 'write -P 0x11 0 3M' -c 'write -P 0x12 8M 1M' -c 'write -z 12M 1M' base.qcow2");
  std::string prev = "base";
  for (int i = 1; i <= 4; ++i) {
    const std::string name = "inc" + std::to_string(i);
    Sh(d, "qemu-img create -q -f qcow2 -b " + prev + ".qcow2 -F qcow2 " + name + ".qcow2");
    const std::string off = std::to_string(i * 512 * 1024);
    Sh(d, "qemu-io -c 'write -P 0x" + std::to_string(20 + i) + " " + off + " 100K' -c 'write -z " +
              std::to_string(i * kMiB + 4096) + " 64K' -c 'discard 8M 64K' " + name + ".qcow2");
    prev = name;
  }
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto groups = repo.value()->ListGroups();
  ASSERT_TRUE(groups.ok());
  EXPECT_EQ(groups.value(), std::vector<std::string>{"inc4"});
  auto g = repo.value()->LoadGroup("inc4");
  ASSERT_TRUE(g.ok());
  ASSERT_EQ(g->checkpoints.size(), 5u);
  EXPECT_EQ(g->checkpoints[0].name, "base");
  EXPECT_EQ(g->checkpoints[4].name, "inc4");
  EXPECT_EQ(g->checkpoints[4].parent, "inc3");
  const ConfigFile* info = g->checkpoints[4].FindConfig("image.json");
  ASSERT_NE(info, nullptr);
  EXPECT_NE(info->content.find("\"backing-filename\": \"inc3.qcow2\""), std::string::npos) << info->content;
  EXPECT_NE(info->content.find("\"cluster-size\": 65536"), std::string::npos);
  EXPECT_EQ(ExpectAllViewsMatchQemu(d), 5u);
  // The source is read-only.
  EXPECT_FALSE(repo.value()->Lock("backup").ok());
}

// A view reads an image only where it shows it: the kernel's readahead
// around reads of a mostly shadowed base (read_ahead_kb is 8 MiB on these
// machines) must not fetch the clusters newer images hide. The base's 32 MiB
// are all written; the overlay rewrites all but the first cluster of each
// MiB, so the top view shows 2 MiB of the base.
TEST(Qcow2Chain, ASequentialReadFetchesOnlyTheClustersTheViewShows) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 32M && qemu-io -c 'write -P 0x11 0 32M' base.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
  std::string writes;
  for (uint64_t i = 0; i < 32; ++i)
    writes += " -c 'write -P 0x22 " + std::to_string(i * kMiB + 65536) + " " + std::to_string(kMiB - 65536) + "'";
  Sh(d, "qemu-io" + writes + " top.qcow2");
  for (const char* f : {"base.qcow2", "top.qcow2"})
    ASSERT_TRUE(testing::EvictFromPageCache(d + "/" + f)) << "the page cache of " << f << " cannot be dropped";
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto v = repo.value()->OpenView("top", "top", "disk");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  std::string buf(kMiB, '\0');
  for (uint64_t off = 0; off < 32 * kMiB; off += kMiB) {
    ASSERT_TRUE(v.value()->Read(off, kMiB, buf.data()).ok());
    ASSERT_EQ(buf[0], 0x11) << off;  // the base's cluster
    ASSERT_EQ(buf[65536], 0x22) << off;
  }
  // 2 MiB of clusters, plus the header, L1 and L2 tables (a cluster each).
  const uint64_t base = testing::ResidentBytes(d + "/base.qcow2");
  EXPECT_GE(base, 2 * kMiB);
  EXPECT_LE(base, 2 * kMiB + 4 * 65536) << "bytes of base.qcow2 read from disk";
}

TEST(Qcow2Chain, CompressedSubclustersClusterSizesRawBaseV2AndGrowth) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  MakeRaw(d, "r.raw", 24 * kMiB);
  // zlib and zstd compressed bases, each with an incremental.
  Sh(d, "qemu-img convert -c -O qcow2 -o compression_type=zlib r.raw cz.qcow2");
  Sh(d, "qemu-img convert -c -O qcow2 -o compression_type=zstd r.raw cs.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b cz.qcow2 -F qcow2 czt.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x44 5M 100K' czt.qcow2");
  // Extended L2 over a compressed base: unallocated subclusters from below.
  Sh(d, "qemu-img create -q -f qcow2 -o extended_l2=on -b cs.qcow2 -F qcow2 ext.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x55 4K 4K' -c 'write -P 0x56 9000K 2K' -c 'write -z 12M 8K' ext.qcow2");
  // Clusters of 512 B over a raw base, 2 MiB with subclusters, then v2 grown.
  Sh(d, "qemu-img create -q -f qcow2 -o cluster_size=512 -b r.raw -F raw c512.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x57 1000 3000' -c 'write -z 20M 4K' c512.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -o cluster_size=2M,extended_l2=on -b c512.qcow2 -F qcow2 c2m.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x58 3M 64K' -c 'write -P 0x59 23M 3K' c2m.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -o compat=0.10 -b c2m.qcow2 -F qcow2 v2.qcow2 40M");
  Sh(d, "qemu-io -c 'write -P 0x5a 30M 1M' -c 'write -P 0x5b 1M 4K' v2.qcow2");
  // Shrunk: a top smaller than its base.
  Sh(d, "qemu-img create -q -f qcow2 -b cz.qcow2 -F qcow2 small.qcow2 10M");
  EXPECT_EQ(ExpectAllViewsMatchQemu(d), 2u + 2u + 4u + 2u);

  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("v2");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->checkpoints[0].disks[0].format, "raw");
  EXPECT_EQ(g->checkpoints[2].disks[0].virtual_size, 24 * kMiB);
  EXPECT_EQ(g->checkpoints[3].disks[0].virtual_size, 40 * kMiB);
  EXPECT_NE(g->checkpoints[3].FindConfig("image.json")->content.find("\"compat\": \"0.10\""), std::string::npos);
  auto s = repo.value()->LoadGroup("ext");
  ASSERT_TRUE(s.ok());
  EXPECT_NE(s->checkpoints[0].FindConfig("image.json")->content.find("\"compression-type\": \"zstd\""),
            std::string::npos);
  EXPECT_NE(s->checkpoints[1].FindConfig("image.json")->content.find("\"extended-l2\": true"),
            std::string::npos);
}

TEST(Qcow2Chain, SharedBaseTwoGroupsAndOneImageAsSource) {
  TempDir tmp;
  const std::string d = tmp / "img";
  const std::string other = tmp / "elsewhere";
  boost::filesystem::create_directories(d);
  boost::filesystem::create_directories(other);
  // The base lives outside the directory, named by a relative path.
  Sh(other, "qemu-img create -q -f qcow2 base.qcow2 8M && qemu-io -c 'write -P 0x31 0 8M' base.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b ../elsewhere/base.qcow2 -F qcow2 a.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b ../elsewhere/base.qcow2 -F qcow2 b.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x32 1M 64K' a.qcow2 && qemu-io -c 'write -P 0x33 2M 64K' b.qcow2");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  EXPECT_EQ(repo.value()->ListGroups().value(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ExpectAllViewsMatchQemu(d), 4u);
  // One image as SOURCE: its chain only.
  auto one = Repository::Open(d + "/b.qcow2");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one.value()->ListGroups().value(), std::vector<std::string>{"b"});
  EXPECT_EQ(ExpectAllViewsMatchQemu(d + "/b.qcow2"), 2u);
}

// Every lookup of a group lists the directory again: an unchanged image costs
// a stat, not an open, a probe and a header read (a deep chain's first
// lookup after the page cache was dropped spent ~12 ms on those); a changed
// one is read again.
TEST(Qcow2Chain, AnUnchangedImageIsNotReopenedByTheNextLookup) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 8M && "
        "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 s1.qcow2 && "
        "qemu-img create -q -f qcow2 -b s1.qcow2 -F qcow2 s2.qcow2");
  testing::FaultyEnv env;
  using Op = testing::FaultyEnv::Op;
  auto cat = OpenQcow2Catalog(&env, d);
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto g = cat.value()->LoadGroup("s2");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->checkpoints.size(), 3u);
  const int opens = env.calls(Op::kOpenRead);
  EXPECT_GT(opens, 0);
  g = cat.value()->LoadGroup("s2");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->checkpoints.size(), 3u);
  EXPECT_EQ(env.calls(Op::kOpenRead), opens) << "an unchanged image was opened again";
  // A changed image (grown by qemu-img: new size and time) is read again and
  // shows its new size; the others are still not reopened.
  const int base_opens = env.calls(Op::kOpenRead, d + "/base.qcow2");
  const int top_opens = env.calls(Op::kOpenRead, d + "/s2.qcow2");
  Sh(d, "qemu-img resize -q s2.qcow2 16M");
  g = cat.value()->LoadGroup("s2");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->checkpoints.size(), 3u);
  EXPECT_EQ(g->checkpoints.back().disks.at(0).virtual_size, 16 * kMiB);
  EXPECT_EQ(g->checkpoints.front().disks.at(0).virtual_size, 8 * kMiB);
  EXPECT_GT(env.calls(Op::kOpenRead, d + "/s2.qcow2"), top_opens);
  EXPECT_EQ(env.calls(Op::kOpenRead, d + "/base.qcow2"), base_opens);
}

TEST(Qcow2Chain, ImportsIntoARepositoryReadingOnlyEachImagesClusters) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  MakeRaw(d, "r.raw", 8 * kMiB);
  Sh(d, "qemu-img convert -c -O qcow2 -o compression_type=zstd r.raw base.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mon.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x61 1M 64K' -c 'write -z 3M 64K' mon.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -o extended_l2=on -b mon.qcow2 -F qcow2 tue.qcow2 12M");
  Sh(d, "qemu-io -c 'write -P 0x62 5K 2K' -c 'write -P 0x63 10M 64K' tue.qcow2");
  RepoConfig cfg;
  ASSERT_TRUE(Repository::Init(tmp / "repo", cfg).ok());
  auto dst = Repository::Open(tmp / "repo");
  ASSERT_TRUE(dst.ok());
  auto src = Repository::Open(d);
  ASSERT_TRUE(src.ok());
  auto r = Import(*src.value(), *dst.value(), {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->checkpoints.size(), 3u);
  EXPECT_LE(r->checkpoints[1].bytes_read, 2u << 16);  // mon: its two clusters
  EXPECT_LE(r->checkpoints[2].bytes_read, 2u << 16);
  for (const char* cp : {"base", "mon", "tue"}) {
    Status st;
    const std::string got = ReadView(*dst.value(), "tue", cp, &st);
    ASSERT_TRUE(st.ok()) << cp << ": " << st.ToString();
    EXPECT_TRUE(got == QemuRaw(d + "/" + cp + ".qcow2")) << cp;
  }
  auto again = Import(*src.value(), *dst.value(), {});
  ASSERT_TRUE(again.ok());
  for (const auto& c : again->checkpoints) EXPECT_TRUE(c.skipped) << c.name;
}

// Sets bytes of file at offset.
void Poke(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

uint64_t Be64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<uint8_t>(s[at + i]);
  return v;
}
std::string ToBe64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[i] = static_cast<char>(v & 0xff);
  return s;
}

TEST(Qcow2Refusal, CorruptBitUnknownFeatureLoopAndMissingBackingNameTheFile) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 4M && qemu-io -c 'write -P 0x1 0 1M' base.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2");
  Poke(d + "/mid.qcow2", 79, std::string(1, '\x02'));  // the corrupt bit
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("top");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->checkpoints.size(), 1u);  // base is served
  ASSERT_NE(g->FindRefused("mid"), nullptr);
  EXPECT_NE(g->FindRefused("mid")->reason.find(d + "/mid.qcow2: the corrupt bit is set"), std::string::npos)
      << g->FindRefused("mid")->reason;
  ASSERT_NE(g->FindRefused("top"), nullptr);
  EXPECT_NE(g->FindRefused("top")->reason.find("passes through refused image " + d + "/mid.qcow2"),
            std::string::npos);
  Status st;
  ReadView(*repo.value(), "top", "base", &st);
  EXPECT_TRUE(st.ok()) << st.ToString();

  // An unknown incompatible feature (bit 40).
  Poke(d + "/mid.qcow2", 79, std::string(1, '\x00'));
  Poke(d + "/mid.qcow2", 74, std::string(1, '\x01'));
  g = repo.value()->LoadGroup("top");
  ASSERT_TRUE(g.ok());
  ASSERT_NE(g->FindRefused("mid"), nullptr);
  EXPECT_NE(g->FindRefused("mid")->reason.find("unknown incompatible qcow2 features 0x10000000000"),
            std::string::npos)
      << g->FindRefused("mid")->reason;
  Poke(d + "/mid.qcow2", 74, std::string(1, '\x00'));

  // A missing backing file refuses the image naming it.
  Sh(d, "qemu-img create -q -f qcow2 -b gone.qcow2 -F qcow2 -u orphan.qcow2 4M");
  g = repo.value()->LoadGroup("orphan");
  ASSERT_TRUE(g.ok());
  ASSERT_NE(g->FindRefused("orphan"), nullptr);
  EXPECT_NE(g->FindRefused("orphan")->reason.find("its backing file 'gone.qcow2' cannot be opened"),
            std::string::npos)
      << g->FindRefused("orphan")->reason;

  // A loop: x and y back each other.
  Sh(d, "qemu-img create -q -f qcow2 x.qcow2 4M && qemu-img create -q -f qcow2 -b x.qcow2 -F qcow2 y.qcow2");
  Sh(d, "qemu-img rebase -u -b y.qcow2 -F qcow2 x.qcow2");
  auto groups = repo.value()->ListGroups();
  ASSERT_TRUE(groups.ok());
  bool loop_named = false;
  for (const std::string& name : groups.value()) {
    auto lg = repo.value()->LoadGroup(name);
    ASSERT_TRUE(lg.ok());
    for (const RefusedCheckpoint& r : lg->refused)
      if (r.reason.find("backing chain loop") != std::string::npos) loop_named = true;
  }
  EXPECT_TRUE(loop_named);
  // mid repaired (its feature bits restored): the whole chain is served again.
  EXPECT_TRUE(repo.value()->OpenView("top", "top", "disk").ok());
}

// Header offsets near 2^64 (a damaged or hostile image): the bounds checks
// must not wrap around. A backing file name at offset 2^64 - 1 passed
// "offset + length <= header" and was copied from outside the header buffer
// (found by fuzz_qcow2_image; tests/fuzz/corpus/qcow2_image/regress-*).
TEST(Qcow2Refusal, OffsetsNearTwoToTheSixtyFourAreRefusedNamingTheFile) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 4M && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
  const std::string top = d + "/top.qcow2";
  const std::string good_backing = ReadAll(top).substr(8, 8);
  auto header_error = [&]() -> std::string {
    auto f = OpenRandomAccessFile(top);
    if (!f.ok()) return f.status().ToString();
    auto h = ReadQcow2Header(*f.value());
    return h.ok() ? std::string("opened") : h.status().ToString();
  };
  // backing_file_offset = 2^64 - 1 (its length, the 4 bytes at offset 16,
  // stays 10: "base.qcow2").
  Poke(top, 8, ToBe64(~uint64_t{0}));
  std::string e = header_error();
  EXPECT_NE(e.find(top + ": "), std::string::npos) << e;
  EXPECT_NE(e.find("backing file name at offset 18446744073709551615"), std::string::npos) << e;
  Poke(top, 8, good_backing);
  ASSERT_EQ(header_error(), "opened");

  // l1_table_offset 2^64 - 64 KiB (cluster-aligned) with 8,192 entries
  // (64 KiB): offset + size wrapped to 0, inside the file.
  const std::string good_l1 = ReadAll(top).substr(36, 12);
  Poke(top, 36, std::string("\x00\x00\x20\x00", 4) + ToBe64(~uint64_t{0} - 0xffff));
  e = header_error();
  EXPECT_NE(e.find(top + ": L1 table at offset 18446744073709486080 (8192 entries) runs past the end of the file"),
            std::string::npos) << e;
  Poke(top, 36, good_l1);
  ASSERT_EQ(header_error(), "opened");
}

TEST(Qcow2Refusal, EncryptedImageIsRefused) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  // qemu-img's PBKDF timing sometimes fails ("Unable to get accurate CPU
  // usage") on a loaded machine; sha512 makes it rarer, three tries rarer still.
  Sh(d, "for i in 1 2 3; do qemu-img create -q -f qcow2 --object secret,id=s0,data=abc -o "
        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.hash-alg=sha512 enc.qcow2 4M && break; "
        "[ $i -lt 3 ] || exit 1; done");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("enc");
  ASSERT_TRUE(g.ok());
  ASSERT_NE(g->FindRefused("enc"), nullptr);
  EXPECT_NE(g->FindRefused("enc")->reason.find("encrypted qcow2 image"), std::string::npos)
      << g->FindRefused("enc")->reason;
}

// The host offset of the L2 entry of guest cluster 0 of a 64 KiB-cluster
// image, and its value.
std::pair<uint64_t, uint64_t> FirstL2Entry(const std::string& path) {
  const std::string img = ReadAll(path);
  const uint64_t l1 = Be64(img, 40);
  const uint64_t l2 = Be64(img, l1) & 0x00fffffffffffe00ull;
  return {l2, Be64(img, l2)};
}

TEST(Qcow2Damage, PastTheEndOverlapAndTruncationAreEioAndDeepCheckProblems) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 4M && qemu-io -c 'write -P 0x7 0 4M' base.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x8 0 128K' -c 'write -P 0x9 1M 64K' top.qcow2");
  const std::string good_base = QemuRaw(d + "/base.qcow2");
  // Guest cluster 0 of top now points far past the end of the file.
  auto [at, entry] = FirstL2Entry(d + "/top.qcow2");
  ASSERT_NE(entry & 0x00fffffffffffe00ull, 0u);
  Poke(d + "/top.qcow2", at, ToBe64((entry & ~0x00fffffffffffe00ull) | (uint64_t{1} << 40)));
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto v = repo.value()->OpenView("top", "top", "disk");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  std::string buf(64 << 10, '\0');
  Status st = v.value()->Read(0, buf.size(), buf.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(d + "/top.qcow2 at guest offset 0"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("past the end of the file"), std::string::npos) << st.message();
  // Every other range reads right.
  std::string rest(2 * kMiB, '\0');
  ASSERT_TRUE(v.value()->Read(2 * kMiB, rest.size(), rest.data()).ok());
  EXPECT_TRUE(rest == good_base.substr(2 * kMiB, 2 * kMiB));
  std::string second(64 << 10, '\0');
  ASSERT_TRUE(v.value()->Read(64 << 10, second.size(), second.data()).ok());
  EXPECT_TRUE(second == std::string(64 << 10, '\x08'));
  auto report = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(report.ok());
  ASSERT_FALSE(report->problems.empty());
  bool named = false;
  for (const CheckProblem& p : report->problems)
    if (p.message.find(d + "/top.qcow2") != std::string::npos) named = true;
  EXPECT_TRUE(named);

  // Two guest clusters on one host cluster: the structure check names it.
  Poke(d + "/top.qcow2", at, ToBe64(entry));
  const std::string img = ReadAll(d + "/top.qcow2");
  const uint64_t second_entry = Be64(img, at + 8);
  const uint64_t sixteenth_entry = Be64(img, at + 16 * 8);
  ASSERT_NE(second_entry & 0x00fffffffffffe00ull, 0u);
  Poke(d + "/top.qcow2", at + 16 * 8, ToBe64(second_entry));
  auto f = Env::Default()->NewRandomAccessFile(d + "/top.qcow2");
  ASSERT_TRUE(f.ok());
  auto problems = CheckQcow2Structure(*f.value());
  ASSERT_TRUE(problems.ok());
  ASSERT_FALSE(problems->empty());
  EXPECT_NE((*problems)[0].find("are used twice"), std::string::npos) << (*problems)[0];
  Poke(d + "/top.qcow2", at + 16 * 8, ToBe64(sixteenth_entry));

  // Truncated: the last data cluster cut off.
  boost::filesystem::resize_file(d + "/top.qcow2", boost::filesystem::file_size(d + "/top.qcow2") - 4096);
  auto repo2 = Repository::Open(d);
  ASSERT_TRUE(repo2.ok());
  auto v2 = repo2.value()->OpenView("top", "top", "disk");
  ASSERT_TRUE(v2.ok());
  std::string all(4 * kMiB, '\0');
  st = v2.value()->Read(0, all.size(), all.data());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("truncated or damaged image"), std::string::npos) << st.message();
  report = Check(*repo2.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->problems.empty());
}

TEST(Qcow2Scale, TerabyteSparseChainOpensWithoutAWholeImageMap) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 i0.qcow2 1T");
  for (int i = 1; i <= 10; ++i) {
    Sh(d, "qemu-img create -q -f qcow2 -b i" + std::to_string(i - 1) + ".qcow2 -F qcow2 i" +
              std::to_string(i) + ".qcow2");
    Sh(d, "qemu-io -c 'write -P " + std::to_string(0x40 + i) + " " + std::to_string(i * 97) + "G 64K' i" +
              std::to_string(i) + ".qcow2");
  }
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto v = repo.value()->OpenView("i10", "i10", "disk");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v.value()->size(), uint64_t{1} << 40);
  for (int i = 1; i <= 10; ++i) {
    std::string buf(64 << 10, '\0');
    ASSERT_TRUE(v.value()->Read(static_cast<uint64_t>(i) * 97 * (uint64_t{1} << 30), buf.size(), buf.data()).ok());
    EXPECT_TRUE(buf == std::string(64 << 10, static_cast<char>(0x40 + i))) << i;
  }
  std::string hole(4096, 'x');
  ASSERT_TRUE(v.value()->Read(5 * (uint64_t{1} << 30), hole.size(), hole.data()).ok());
  EXPECT_TRUE(hole == std::string(4096, '\0'));
  // The layer's extents are the clusters written, not a map of the terabyte.
  auto f = Env::Default()->NewRandomAccessFile(d + "/i10.qcow2");
  ASSERT_TRUE(f.ok());
  auto layer = OpenQcow2Layer(std::move(f).value());
  ASSERT_TRUE(layer.ok());
  size_t extents = 0;
  layer.value()->ForEachExtent([&](const LayerExtent& e) {
    ++extents;
    EXPECT_EQ(e.offset, 970 * (uint64_t{1} << 30));
    EXPECT_EQ(e.length, 64u << 10);
  });
  EXPECT_EQ(extents, 1u);
}

// A view over many images asks the disk for all their L2 tables before it
// walks any (Layer::WillNeedExtents), so a depth-100 chain's 200 table reads
// wait on the disk together. The hint fetches the tables and nothing else.
TEST(Qcow2Scale, WillNeedExtentsFetchesTheL2TablesOnly) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  // 64 KiB clusters: an L2 table maps 512 MiB, so four writes far apart
  // make four tables.
  Sh(d, "qemu-img create -q -f qcow2 a.qcow2 2G && qemu-io -c 'write -P 1 0 64K' -c 'write -P 2 600M 64K' "
        "-c 'write -P 3 1300M 64K' -c 'write -P 4 1900M 64K' a.qcow2");
  const std::string path = d + "/a.qcow2";
  auto f = Env::Default()->NewRandomAccessFile(path);
  ASSERT_TRUE(f.ok());
  auto layer = OpenQcow2Layer(std::move(f).value());
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  ASSERT_TRUE(testing::EvictFromPageCache(path)) << "the page cache of " << path << " cannot be dropped";
  layer.value()->WillNeedExtents();
  // The reads run in the background: wait for them (20 s for a loaded machine).
  constexpr uint64_t kTables = 4 * 65536;
  uint64_t resident = 0;
  for (int i = 0; i < 200 && (resident = testing::ResidentBytes(path)) < kTables; ++i) ::usleep(100 * 1000);
  // Readahead is best effort on a busy machine and may skip a page or two;
  // one table left out (a quarter) still fails.
  EXPECT_GE(resident, kTables - kTables / 8);
  EXPECT_LE(resident, kTables + 65536) << "bytes of " << path << " fetched: data clusters too?";
  // And the walk that follows sees the four clusters.
  std::vector<uint64_t> offsets;
  layer.value()->ForEachExtent([&](const LayerExtent& e) {
    if (e.kind == LayerExtent::Kind::kData) offsets.push_back(e.offset);
  });
  EXPECT_EQ(offsets, (std::vector<uint64_t>{0, 600 * kMiB, 1300 * kMiB, 1900 * kMiB}));
}

// A window's disk hints for one image come in one WillNeedRuns call; the
// image asks its file for them in file order, clusters that lie closer than
// 64 KiB in the file merged (a deep chain's overlay holds a window's live
// clusters next to each other in write order, shadowed ones between).
TEST(Qcow2Scale, WillNeedRunsMergesNeighbouringClustersInTheFile) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  // Guest clusters 0, 10, ..., 60 written in that order: their data
  // clusters follow each other in the file.
  std::string writes;
  for (int i = 0; i <= 6; ++i)
    writes += " -c 'write -P " + std::to_string(i + 1) + " " + std::to_string(i * 10 * 64) + "K 64K'";
  Sh(d, "qemu-img create -q -f qcow2 a.qcow2 64M && qemu-io" + writes + " a.qcow2");
  // Records the hints it is given, reads through.
  class HintLog : public RandomAccessFile {
   public:
    explicit HintLog(std::unique_ptr<RandomAccessFile> f) : f_(std::move(f)) {}
    Status ReadAt(uint64_t o, size_t n, void* b) const override { return f_->ReadAt(o, n, b); }
    uint64_t Size() const override { return f_->Size(); }
    const std::string& Path() const override { return f_->Path(); }
    void WillNeed(uint64_t offset, uint64_t n) const override {
      std::lock_guard<std::mutex> lock(mu);
      calls.emplace_back(offset, n);
    }
    mutable std::mutex mu;
    mutable std::vector<std::pair<uint64_t, uint64_t>> calls;

   private:
    std::unique_ptr<RandomAccessFile> f_;
  };
  auto f = Env::Default()->NewRandomAccessFile(d + "/a.qcow2");
  ASSERT_TRUE(f.ok());
  auto log = std::make_unique<HintLog>(std::move(f).value());
  const HintLog* hints = log.get();
  auto layer = OpenQcow2Layer(std::move(log));
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  ASSERT_EQ(layer.value()->block_size(), 64u << 10);
  // Guest clusters 60, 0, 20 and 30 (10, 40 and 50 shadowed by a newer
  // image), and 5, which the image does not hold.
  layer.value()->WillNeedRuns({{60, 1}, {0, 1}, {5, 1}, {30, 1}, {20, 1}});
  ASSERT_EQ(hints->calls.size(), 2u) << "clusters 0, 20, 30 (one cluster apart in the file) as one hint, "
                                        "60 (two clusters past 30) as another";
  const auto [first, first_n] = hints->calls[0];
  EXPECT_EQ(first_n, 4u * 65536) << "clusters 0 to 30, the shadowed 10 between";
  EXPECT_EQ(hints->calls[1], std::make_pair(first + 6 * 65536, uint64_t{65536}));
  // The hinted bytes are the clusters written (cluster k holds pattern k + 1).
  std::string buf(65536, '\0');
  auto file = Env::Default()->NewRandomAccessFile(d + "/a.qcow2");
  ASSERT_TRUE(file.ok());
  for (auto [at, pattern] : {std::pair<uint64_t, char>{first, 1}, {first + 2 * 65536, 3},
                             {first + 3 * 65536, 4}, {first + 6 * 65536, 7}}) {
    ASSERT_TRUE(file.value()->ReadAt(at, buf.size(), buf.data()).ok());
    EXPECT_EQ(buf, std::string(65536, pattern)) << "host offset " << at;
  }
}

// What a mount splices (Layer::RawSpan) is what ReadBlock reads: raw
// clusters of every cluster size, subclusters, a raw backing file and the
// end of a disk whose size is no multiple of the cluster; compressed and zero
// clusters are never spans.
TEST(Qcow2Splice, RawSpansAreReadBlocksBytesAndOnlyOfRawClusters) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  MakeRaw(d, "r.raw", 8 * kMiB + 512);
  Sh(d, "qemu-img convert -c -O qcow2 -o compression_type=zstd r.raw cs.qcow2");  // text compressed,
                                                                                 // random raw
  Sh(d, "qemu-img create -q -f qcow2 -b cs.qcow2 -F qcow2 top.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x44 1M 100K' -c 'write -z 3M 64K' -c 'write -P 0x45 8M 512' top.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -o extended_l2=on -b top.qcow2 -F qcow2 ext.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x55 4K 4K' -c 'write -P 0x56 5000K 2K' -c 'write -z 6M 8K' ext.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -o cluster_size=512 -b ext.qcow2 -F qcow2 c512.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x57 1000 3000' c512.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b r.raw -F raw overraw.qcow2");
  Sh(d, "qemu-io -c 'write -P 0x58 64K 64K' overraw.qcow2");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  testing::RawSpanCount all;
  for (const char* group : {"c512", "overraw"}) {
    auto g = repo.value()->LoadGroup(group);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    auto view = repo.value()->OpenView(group, g->checkpoints.back().name, "disk");
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    const testing::RawSpanCount c = testing::ExpectRawSpansMatchReadBlock(*view.value());
    all.spans += c.spans;
    all.reads += c.reads;
  }
  EXPECT_GT(all.spans, 100u);
  EXPECT_GT(all.reads, 100u) << "compressed clusters and the disk's last, short block are read";
  // A compressed base alone: spans only where qemu stored clusters raw
  // (random data does not compress), never for the text.
  auto cs = Env::Default()->NewRandomAccessFile(d + "/cs.qcow2");
  ASSERT_TRUE(cs.ok());
  auto layer = OpenQcow2Layer(std::move(cs).value());
  ASSERT_TRUE(layer.ok());
  const uint64_t text = 6 * kMiB / layer.value()->block_size();  // in the text half
  EXPECT_FALSE(layer.value()->RawSpan(text, 0, layer.value()->block_size()))
      << "a compressed cluster given as a span";
  const uint64_t random = kMiB / layer.value()->block_size();
  EXPECT_TRUE(layer.value()->RawSpan(random, 0, layer.value()->block_size()))
      << "an incompressible cluster is stored raw";
}

// Internal snapshots (qemu-img snapshot -c) are checkpoints of their image,
// named IMAGE.TAG, branching off the backing image's checkpoint as the
// image itself does (the active image is not composed over its snapshots):
// each reads as reverting to it would make the disk (qemu-img snapshot -a),
// at its own size.
TEST(Qcow2Snapshot, InternalSnapshotsAreCheckpointsOfTheirImage) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 base.qcow2 8M && qemu-io -c 'write -P 0x11 0 6M' base.qcow2");
  // A middle image with extended L2 entries and a snapshot of its own (4K
  // writes: subclusters), then the top.
  Sh(d, "qemu-img create -q -f qcow2 -o extended_l2=on -b base.qcow2 -F qcow2 mid.qcow2 && "
        "qemu-io -c 'write -P 0x21 516K 8K' mid.qcow2 && qemu-img snapshot -c early mid.qcow2 && "
        "qemu-io -c 'write -P 0x22 512K 64K' mid.qcow2");
  Sh(d, "qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 && "
        "qemu-io -c 'write -P 0x31 1M 1M' -c 'write -P 0x32 7M 1M' top.qcow2 && "
        "qemu-img snapshot -c monday top.qcow2");
  // After monday: overwritten, discarded (zeros, where monday has data),
  // zeroed, grown and written past the old end.
  Sh(d, "qemu-io -c 'write -P 0x33 0 512K' -c 'discard 1M 128K' -c 'write -z 1536K 64K' "
        "-c 'discard 7M 64K' top.qcow2 && qemu-img resize -q top.qcow2 12M && "
        "qemu-io -c 'write -P 0x34 10M 1M' top.qcow2 && qemu-img snapshot -c 'tue sday' top.qcow2 && "
        "qemu-io -c 'write -P 0x35 3M 64K' top.qcow2");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok()) << repo.status().ToString();
  auto g = repo.value()->LoadGroup("top");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  std::vector<std::string> names, parents;
  for (const Checkpoint& cp : g->checkpoints) {
    names.push_back(cp.name);
    parents.push_back(cp.parent);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"base", "mid.early", "mid", "top.monday", "top.tue_sday", "top"}));
  EXPECT_EQ(parents, (std::vector<std::string>{"", "base", "base", "mid", "mid", "mid"}));
  EXPECT_EQ(g->checkpoints[3].disks[0].virtual_size, 8 * kMiB);  // monday: before the resize
  EXPECT_EQ(g->checkpoints[4].disks[0].virtual_size, 12 * kMiB);
  EXPECT_EQ(g->checkpoints[3].disks[0].part.substr(0, 2), "1@");
  const ConfigFile* info = g->checkpoints[4].FindConfig("image.json");
  ASSERT_NE(info, nullptr);
  EXPECT_NE(info->content.find("\"name\": \"tue sday\""), std::string::npos) << info->content;
  EXPECT_NE(info->content.find("\"virtual-size\": 12582912"), std::string::npos) << info->content;
  // Every view (the snapshots' against qemu-img snapshot -a) and check --deep.
  EXPECT_EQ(ExpectAllViewsMatchQemu(d), 6u);
  // Where QEMU's own reading of a snapshot (convert -l) shows the monday
  // state at today's size, chainfs shows monday's size.
  Status st;
  const std::string monday = ReadView(*repo.value(), "top", "top.monday", &st);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(monday.size(), 8 * kMiB);
  EXPECT_TRUE(monday.substr(1 * kMiB, 64 << 10) == std::string(64 << 10, '\x31'));
  EXPECT_TRUE(monday.substr(7 * kMiB, 64 << 10) == std::string(64 << 10, '\x32'));
  const std::string now = ReadView(*repo.value(), "top", "top", &st);
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(now.size(), 12 * kMiB);
  EXPECT_TRUE(now.substr(1 * kMiB, 64 << 10) == std::string(64 << 10, '\0'));  // discarded
  EXPECT_TRUE(now.substr(7 * kMiB, 64 << 10) == std::string(64 << 10, '\0'));
  EXPECT_TRUE(now.substr(3 * kMiB, 64 << 10) == std::string(64 << 10, '\x35'));

  // Imported into a repository, every checkpoint (the snapshots as
  // checkpoints on mid) reads the same.
  ASSERT_TRUE(Repository::Init(tmp / "repo", RepoConfig{}).ok());
  auto dst = Repository::Open(tmp / "repo");
  ASSERT_TRUE(dst.ok());
  auto r = Import(*repo.value(), *dst.value(), {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->checkpoints.size(), 6u);
  for (const Checkpoint& cp : g->checkpoints) {
    const std::string want = ReadView(*repo.value(), "top", cp.name, &st);
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE(ReadView(*dst.value(), "top", cp.name, &st) == want) << cp.name;
    EXPECT_TRUE(st.ok()) << cp.name << ": " << st.ToString();
  }
}

// A damaged snapshot table refuses the snapshots (named IMAGE.snapshots,
// with the file and the entry) while the image itself is served; a damaged
// table of one snapshot reads as EIO naming the file and the snapshot, and
// check --deep reports it.
TEST(Qcow2Snapshot, DamagedSnapshotTablesNameTheFileAndTheSnapshot) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 top.qcow2 4M && qemu-io -c 'write -P 0x41 0 1M' top.qcow2 && "
        "qemu-img snapshot -c snap top.qcow2 && qemu-io -c 'write -P 0x42 0 64K' top.qcow2");
  const std::string path = d + "/top.qcow2";
  const std::string top = QemuRaw(path);
  const std::string img = ReadAll(path);
  const uint64_t table = Be64(img, 64);
  const uint64_t snap_l1 = Be64(img, table);
  const uint64_t l1_entry = Be64(img, snap_l1);
  ASSERT_NE(l1_entry & 0x00fffffffffffe00ull, 0u);

  // 1. The snapshot's L1 table (in the table's entry) past the end of the file.
  Poke(path, table, ToBe64(uint64_t{1} << 40));
  {
    auto repo = Repository::Open(d);
    ASSERT_TRUE(repo.ok());
    auto g = repo.value()->LoadGroup("top");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    ASSERT_EQ(g->checkpoints.size(), 1u);
    EXPECT_EQ(g->checkpoints[0].name, "top");
    ASSERT_EQ(g->refused.size(), 1u);
    EXPECT_EQ(g->refused[0].name, "top.snapshots");
    EXPECT_NE(g->refused[0].reason.find(path + ": snapshot 'snap' (id 1): L1 table at offset 1099511627776"),
              std::string::npos)
        << g->refused[0].reason;
    Status st;
    EXPECT_TRUE(ReadView(*repo.value(), "top", "top", &st) == top);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  Poke(path, table, ToBe64(snap_l1));

  // 2. The snapshot's first L1 entry points past the end of the file.
  Poke(path, snap_l1, ToBe64((l1_entry & ~0x00fffffffffffe00ull) | (uint64_t{1} << 40)));
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("top");
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->refused.empty());
  Status st;
  ReadView(*repo.value(), "top", "top.snap", &st);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_NE(st.message().find(path + " (internal snapshot 'snap', id 1): L1 entry 0"), std::string::npos)
      << st.message();
  EXPECT_TRUE(ReadView(*repo.value(), "top", "top", &st) == top);
  EXPECT_TRUE(st.ok());
  auto report = Check(*repo.value(), "", "", /*deep=*/true);
  ASSERT_TRUE(report.ok());
  ASSERT_FALSE(report->problems.empty());
  // The read of the snapshot's view, and the file's structure check.
  bool read = false;
  for (const CheckProblem& p : report->problems) {
    EXPECT_NE(p.message.find(path + " (internal snapshot 'snap', id 1): L1 entry 0"), std::string::npos)
        << p.message;
    if (p.checkpoint == "top.snap" && p.offset == 0) read = true;
  }
  EXPECT_TRUE(read);
}

// QEMU gives a new snapshot the id of a deleted one: a checkpoint listed
// before the delete must not open its successor (another disk under the
// old name), only fail naming it.
TEST(Qcow2Snapshot, ASnapshotReplacedSinceListedIsNotFoundNotAnotherDisk) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  Sh(d, "qemu-img create -q -f qcow2 top.qcow2 4M && qemu-io -c 'write -P 0x51 0 1M' top.qcow2 && "
        "qemu-img snapshot -c snap top.qcow2");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto listed = repo.value()->LoadGroup("top");
  ASSERT_TRUE(listed.ok());
  const Checkpoint* snap = listed->Find("top.snap");
  ASSERT_NE(snap, nullptr);
  // Deleted, the disk changed, and a snapshot of the same name taken again.
  Sh(d, "qemu-img snapshot -d snap top.qcow2 && qemu-io -c 'write -P 0x52 0 1M' top.qcow2 && "
        "sleep 0.01 && qemu-img snapshot -c snap top.qcow2 && qemu-img snapshot -l top.qcow2 | grep -q '^1 '");
  auto stale = repo.value()->OpenView(listed.value(), *snap, "disk");
  ASSERT_FALSE(stale.ok()) << "the old listing opened the new snapshot";
  EXPECT_EQ(stale.status().code(), Status::Code::kNotFound);
  EXPECT_NE(stale.status().message().find("deleted or replaced since it was listed"), std::string::npos)
      << stale.status().message();
  // Listed again, it is the new one.
  auto now = repo.value()->LoadGroup("top");
  ASSERT_TRUE(now.ok());
  auto v = repo.value()->OpenView(now.value(), *now->Find("top.snap"), "disk");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  std::string buf(64 << 10, '\0');
  ASSERT_TRUE(v.value()->Read(0, buf.size(), buf.data()).ok());
  EXPECT_TRUE(buf == std::string(64 << 10, '\x52'));
}

// A snapshot table larger than the first read of it (64 KiB): two snapshots
// with 40,000-character names. Both are found; their names are cut to 120
// characters.
TEST(Qcow2Snapshot, ATableBeyondTheFirstReadIsReadWhole) {
  TempDir tmp;
  const std::string d = ImageDir(tmp);
  const std::string a(40000, 'a'), b(40000, 'b');
  Sh(d, "qemu-img create -q -f qcow2 ln.qcow2 4M && qemu-io -c 'write -P 1 0 64K' ln.qcow2 && "
        "qemu-img snapshot -c " + a + " ln.qcow2 && qemu-io -c 'write -P 2 0 64K' ln.qcow2 && "
        "qemu-img snapshot -c " + b + " ln.qcow2 && qemu-io -c 'write -P 3 0 64K' ln.qcow2");
  auto repo = Repository::Open(d);
  ASSERT_TRUE(repo.ok());
  auto g = repo.value()->LoadGroup("ln");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_TRUE(g->refused.empty()) << g->refused[0].reason;
  ASSERT_EQ(g->checkpoints.size(), 3u);
  EXPECT_EQ(g->checkpoints[0].name, "ln." + a.substr(0, 117));
  EXPECT_EQ(g->checkpoints[1].name, "ln." + b.substr(0, 117));
  EXPECT_EQ(ExpectAllViewsMatchQemu(d), 3u);
}

}  // namespace
}  // namespace chainfs
