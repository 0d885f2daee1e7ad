// The layer format registry, through the native format: lookup by name,
// probe by content, opening, writing through LayerWriter, stored blocks as is.
#include "chain/layer/registry.h"

#include <gtest/gtest.h>

#include <random>

#include "chain/repo/delta_binding.h"
#include "chain/repo/repository.h"
#include "tests/chain/test_util.h"

namespace chainfs {
namespace {

using testing::FaultyFile;
using testing::TempDir;
using testing::WriteFile;

constexpr uint32_t kBs = 4096;

std::string Block(char c) { return std::string(kBs, c); }

std::string RandomBlock(uint32_t seed) {
  std::mt19937 rng(seed);
  std::string b(kBs, '\0');
  for (auto& c : b) c = static_cast<char>(rng());
  return b;
}

// Writes blocks {0: 'a', 1: random, 2: 'b'} and a zero run at 5 through the
// write format's LayerWriter.
std::string WriteThroughRegistry(const TempDir& dir, const std::string& name) {
  LayerWriterOptions opts;
  opts.block_size = kBs;
  opts.virtual_size = 8 * kBs;
  std::string path = dir / name;
  auto w = WriteLayerFormat().create_writer(Env::Default(), path, opts);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  std::string buf;
  const std::string blocks[] = {Block('a'), RandomBlock(1), Block('b')};
  for (uint64_t b = 0; b < 3; ++b) {
    const std::string& raw = blocks[b];
    StoredBlock s = (*w)->Encode(b, raw.data(), HashContent(raw.data(), kBs), &buf);
    EXPECT_TRUE((*w)->AddStored(s).ok());
  }
  (*w)->AddZeroRun(5, 1);
  EXPECT_STREQ((*w)->format(), "native");
  EXPECT_TRUE((*w)->Finish().ok());
  return path;
}

TEST(Registry, NativeIsKnownAndTheWriteFormat) {
  ASSERT_NE(FindLayerFormat("native"), nullptr);
  EXPECT_EQ(FindLayerFormat("native"), &WriteLayerFormat());
  EXPECT_NE(FindLayerFormat("qcow2"), nullptr);
  EXPECT_NE(FindLayerFormat("raw"), nullptr);
  EXPECT_EQ(FindLayerFormat("vmdk"), nullptr);
  EXPECT_EQ(FindLayerFormat(""), nullptr);
  EXPECT_NE(LayerFormatNames().find("native"), std::string::npos);
  for (const LayerFormat* f : LayerFormats()) EXPECT_EQ(FindLayerFormat(f->name), f);
}

TEST(Registry, ProbesByContentNotByName) {
  TempDir dir;
  std::string delta = WriteThroughRegistry(dir, "no-extension");
  auto file = OpenRandomAccessFile(delta);
  ASSERT_TRUE(file.ok());
  auto f = ProbeLayerFormat(**file);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_STREQ((*f)->name, "native");

  WriteFile(dir / "fake.delta", "KDMV not a chainfs delta, whatever its name says");
  auto other = OpenRandomAccessFile(dir / "fake.delta");
  ASSERT_TRUE(other.ok());
  auto none = ProbeLayerFormat(**other);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kCorruption);
  EXPECT_NE(none.status().message().find(dir / "fake.delta"), std::string::npos);

  // The qcow2 magic is qcow2's (raw is never probed: any bytes would do).
  WriteFile(dir / "image", "QFI\xfb...");
  auto q = OpenRandomAccessFile(dir / "image");
  ASSERT_TRUE(q.ok());
  auto qf = ProbeLayerFormat(**q);
  ASSERT_TRUE(qf.ok());
  EXPECT_STREQ((*qf)->name, "qcow2");

  WriteFile(dir / "short", "cha");
  auto tiny = OpenRandomAccessFile(dir / "short");
  ASSERT_TRUE(tiny.ok());
  EXPECT_FALSE(ProbeLayerFormat(**tiny).ok());
}

TEST(Registry, OpensWhatItWroteAndKeepsIdsByFingerprint) {
  TempDir dir;
  std::string path = WriteThroughRegistry(dir, "a.delta");
  uint64_t seen = 0;
  auto layer = OpenLayerFile(Env::Default(), path, nullptr, [&](uint64_t fp) {
    seen = fp;
    return uint64_t{777};
  });
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  EXPECT_EQ((*layer)->id(), 777u);
  EXPECT_NE(seen, 0u);
  EXPECT_EQ((*layer)->block_size(), kBs);
  EXPECT_EQ((*layer)->virtual_size(), 8 * kBs);
  std::string out(kBs, '\0');
  ASSERT_TRUE((*layer)->ReadBlock(1, out.data()).ok());
  EXPECT_EQ(out, RandomBlock(1));
  // The same content gives the same fingerprint; a fresh id without id_for.
  uint64_t again = 0;
  auto reopened = OpenLayerFile(Env::Default(), path, FindLayerFormat("native"), [&](uint64_t fp) {
    again = fp;
    return uint64_t{778};
  });
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(again, seen);
  auto fresh = OpenLayerFile(Env::Default(), path, nullptr);
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE((*fresh)->id(), 777u);
}

TEST(Registry, StoredBlocksCopyAsIsIntoANewFile) {
  TempDir dir;
  auto src = OpenLayerFile(Env::Default(), WriteThroughRegistry(dir, "src.delta"), nullptr);
  ASSERT_TRUE(src.ok());
  LayerWriterOptions opts;
  opts.block_size = kBs;
  opts.virtual_size = 8 * kBs;
  opts.mode = WriteMode::kDirect;
  auto w = WriteLayerFormat().create_writer(Env::Default(), dir / "copy.delta", opts);
  ASSERT_TRUE(w.ok());
  std::string scratch;
  std::vector<StoredBlock> seen;
  std::vector<std::string> bytes;
  ASSERT_TRUE((*src)->ReadStored(0, 0, nullptr, nullptr).ok()) << "count 0 asks only";
  Status st = (*src)->ReadStored(0, 3, &scratch, [&](const StoredBlock& s) {
    seen.push_back(s);
    bytes.emplace_back(s.data, s.size);
    return (*w)->AddStored(s);
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].block, 1u);
  EXPECT_EQ(seen[1].size, kBs) << "random: stored raw";
  EXPECT_LT(seen[0].size, kBs) << "compressible: stored compressed";
  uint64_t sum = 0;
  for (const auto& s : seen) sum += s.size;
  EXPECT_EQ((*w)->stored_bytes(), sum);
  ASSERT_TRUE((*w)->Finish().ok());
  auto copy = OpenLayerFile(Env::Default(), dir / "copy.delta", nullptr);
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  std::vector<std::string> copied;
  ASSERT_TRUE((*copy)->ReadStored(0, 3, &scratch, [&](const StoredBlock& s) {
    copied.emplace_back(s.data, s.size);
    return Status::Ok();
  }).ok());
  EXPECT_EQ(copied, bytes);
  std::string out(kBs, '\0');
  ASSERT_TRUE((*copy)->ReadBlock(2, out.data()).ok());
  EXPECT_EQ(out, Block('b'));
  EXPECT_EQ((*src)->ReadStored(2, 2, &scratch, nullptr).code(), Status::Code::kInvalidArgument);
}

TEST(Registry, StoredBlockChecksumMismatchNamesFileAndBlock) {
  TempDir dir;
  std::string path = WriteThroughRegistry(dir, "d.delta");
  auto base = OpenRandomAccessFile(path);
  ASSERT_TRUE(base.ok());
  auto faulty = std::make_unique<FaultyFile>(std::move(base).value());
  faulty->flip_at = 64 + 3;  // inside block 0's stored bytes (after the header)
  auto layer = WriteLayerFormat().open(std::move(faulty), {});
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  std::string scratch;
  int calls = 0;
  Status st = (*layer)->ReadStored(0, 3, &scratch, [&](const StoredBlock&) {
    ++calls;
    return Status::Ok();
  });
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_EQ(calls, 0) << "a damaged block is never handed out";
  EXPECT_NE(st.message().find(path + ": block 0 (offset 64): checksum mismatch"),
            std::string::npos)
      << st.ToString();
}

// A layer that only reads: the default ReadStored refuses, naming it.
class ReadOnlyLayer : public Layer {
 public:
  uint64_t id() const override { return 1; }
  uint32_t block_size() const override { return kBs; }
  uint64_t virtual_size() const override { return kBs; }
  const std::string& location() const override { return location_; }
  void ForEachExtent(const std::function<void(const LayerExtent&)>&) const override {}
  Status ReadBlock(uint64_t, char*) const override { return Status::Ok(); }
  std::optional<ContentHash> BlockHash(uint64_t) const override { return std::nullopt; }
  uint64_t StoredLength(uint64_t) const override { return 0; }

 private:
  std::string location_ = "/images/vm1.qcow2";
};

TEST(Registry, LayerWithoutStoredBlocksRefusesNamingItself) {
  ReadOnlyLayer layer;
  Status st = layer.ReadStored(0, 0, nullptr, nullptr);
  EXPECT_EQ(st.code(), Status::Code::kNotSupported);
  EXPECT_NE(st.message().find("/images/vm1.qcow2"), std::string::npos) << st.ToString();
}

TEST(Registry, RepositoryWritesAndOpensThroughTheRegistry) {
  TempDir dir;
  RepoConfig cfg;
  cfg.block_size = kBs;
  ASSERT_TRUE(Repository::Init(dir / "repo", cfg).ok());
  auto repo = Repository::Open(dir / "repo");
  ASSERT_TRUE(repo.ok());
  ASSERT_TRUE(boost::filesystem::create_directories((*repo)->DeltaDir("g")));
  auto w = (*repo)->CreateDelta("c1.vda.x.delta", {"g", "c1", "vda"}, kBs);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->path(), (*repo)->DeltaPath("g", "c1.vda.x.delta"));
  EXPECT_STREQ((*w)->format(), (*repo)->write_format().name);
  std::string raw = Block('q'), buf;
  ASSERT_TRUE((*w)->AddStored((*w)->Encode(0, raw.data(), HashContent(raw.data(), kBs), &buf)).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  DiskEntry d;
  d.name = "vda";
  d.delta_file = "c1.vda.x.delta";
  ASSERT_NE((*w)->identity(), nullptr);
  BindEntry(*(*w)->identity(), &d);
  auto a = (*repo)->OpenLayer("g", "c1", d);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const uint64_t id = (*a)->id();
  a->reset();
  auto b = (*repo)->OpenLayer("g", "c1", d);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->id(), id) << "an unchanged file keeps its cache id";
  d.format = "qcow9";
  d.delta_file = "c2.vda.y.delta";
  auto unknown = (*repo)->OpenLayer("g", "c2", d);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'qcow9'"), std::string::npos);
}

}  // namespace
}  // namespace chainfs
