#include "chain/repo/manifest.h"

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace chainfs {
namespace {

// A manifest as chainfs wrote it before disk entries recorded their format.
constexpr char kOldManifest[] = R"({
  "format": "chainfs-checkpoint", "version": 1,
  "group": "vm1", "name": "c2", "sequence": 2,
  "created": "2026-11-22T02:12:21Z", "created_unix_ns": 1795313541000000000,
  "parent": "c1",
  "disks": [
    { "name": "vda", "delta": "c2.vda.6686e060fe96460b.delta",
      "kind": "incremental", "base": "c1",
      "virtual_size": 10737418240, "stored_bytes": 12328 } ] })";

TEST(Manifest, DiskEntryWithoutFormatIsNative) {
  auto cp = Checkpoint::Decode(kOldManifest, "/r/groups/vm1/checkpoints/c2.json");
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  ASSERT_EQ(cp->disks.size(), 1u);
  EXPECT_EQ(cp->disks[0].format, "native");
  EXPECT_EQ(cp->disks[0].delta_file, "c2.vda.6686e060fe96460b.delta");
}

TEST(Manifest, FormatIsWrittenAndReadBack) {
  auto cp = Checkpoint::Decode(kOldManifest, "m");
  ASSERT_TRUE(cp.ok());
  const std::string text = cp->Encode();
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["disks"][0]["format"], "native");
  auto again = Checkpoint::Decode(text, "m");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->disks[0].format, "native");
  EXPECT_EQ(again->Encode(), text);
}

TEST(Manifest, UnknownFormatNamesManifestDiskAndFormat) {
  auto j = nlohmann::json::parse(kOldManifest);
  j["disks"][0]["format"] = "qcow9";
  auto cp = Checkpoint::Decode(j.dump(), "/r/groups/vm1/checkpoints/c2.json");
  ASSERT_FALSE(cp.ok());
  EXPECT_EQ(cp.status().code(), Status::Code::kNotSupported);
  const std::string& m = cp.status().message();
  EXPECT_NE(m.find("/r/groups/vm1/checkpoints/c2.json"), std::string::npos) << m;
  EXPECT_NE(m.find("disk 'vda'"), std::string::npos) << m;
  EXPECT_NE(m.find("'qcow9'"), std::string::npos) << m;
  EXPECT_NE(m.find("native"), std::string::npos) << "lists what is known: " << m;
}

TEST(Manifest, FormatOfTheWrongTypeIsCorruption) {
  auto j = nlohmann::json::parse(kOldManifest);
  j["disks"][0]["format"] = 7;
  auto cp = Checkpoint::Decode(j.dump(), "m");
  ASSERT_FALSE(cp.ok());
  EXPECT_EQ(cp.status().code(), Status::Code::kCorruption);
  EXPECT_NE(cp.status().message().find("'format'"), std::string::npos);
}

// Issue 13: a disk entry's delta id and index digest round-trip as hex; an
// entry without them (older chainfs) still reads; malformed ones are refused.
TEST(Manifest, Issue13DeltaIdAndIndexDigestRoundTrip) {
  auto cp = Checkpoint::Decode(kOldManifest, "m");
  ASSERT_TRUE(cp.ok());
  EXPECT_FALSE(cp->disks[0].delta_id.has_value());
  EXPECT_FALSE(cp->disks[0].index_digest.has_value());
  EXPECT_EQ(nlohmann::json::parse(cp->Encode())["disks"][0].count("id"), 0u);
  cp->disks[0].delta_id = DeltaId::FromHex("00112233445566778899aabbccddeeff");
  cp->disks[0].index_digest = 0x0123456789abcdefull;
  const std::string text = cp->Encode();
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["disks"][0]["id"], "00112233445566778899aabbccddeeff");
  EXPECT_EQ(j["disks"][0]["index_digest"], "0123456789abcdef");
  auto again = Checkpoint::Decode(text, "m");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->disks[0].delta_id, cp->disks[0].delta_id);
  EXPECT_EQ(again->disks[0].index_digest, cp->disks[0].index_digest);
  for (const auto& [field, value] : {std::pair{"id", "0011"}, std::pair{"index_digest", "xyz"},
                                     std::pair{"id", "00112233445566778899aabbccddeefg"}}) {
    auto bad = j;
    bad["disks"][0][field] = value;
    auto r = Checkpoint::Decode(bad.dump(), "/r/c2.json");
    ASSERT_FALSE(r.ok()) << field << "=" << value;
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
    EXPECT_NE(r.status().message().find(std::string("'") + field + "'"), std::string::npos)
        << r.status().ToString();
  }
}

// Issue 13 (found by tests/fuzz/manifest_fuzz.cc): an integer field given a
// float (1e30: an undefined float-to-integer conversion before), a negative
// number for an unsigned field or a value past the field's width (a silent
// wrap before) is corruption naming the field.
TEST(Manifest, Issue13IntegerFieldsTakeOnlyIntegersInRange) {
  const std::vector<std::pair<const char*, nlohmann::json>> bad = {
      {"sequence", 1e30}, {"sequence", -1}, {"sequence", 2.5},
      {"created_unix_ns", 1e300}, {"virtual_size", -1}, {"stored_bytes", 1e30}};
  for (const auto& [field, value] : bad) {
    auto j = nlohmann::json::parse(kOldManifest);
    nlohmann::json& where = j.contains(field) ? j : j["disks"][0];
    where[field] = value;
    auto cp = Checkpoint::Decode(j.dump(), "m");
    ASSERT_FALSE(cp.ok()) << field << " = " << value.dump();
    EXPECT_EQ(cp.status().code(), Status::Code::kCorruption);
    EXPECT_NE(cp.status().message().find(std::string("'") + field + "'"), std::string::npos)
        << cp.status().message();
  }
  auto config = nlohmann::json::parse(RepoConfig().Encode());
  config["block_size"] = 4294967296 + 65536;  // wrapped to 65536 before
  EXPECT_FALSE(RepoConfig::Decode(config.dump(), "c").ok());
  config["block_size"] = 1e30;
  EXPECT_FALSE(RepoConfig::Decode(config.dump(), "c").ok());
}

// Decodes kOldManifest with `edit` applied to its JSON text; the error.
Status DecodeEdited(const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(kOldManifest);
  edit(j);
  return Checkpoint::Decode(j.dump(), "/r/c2.json").status();
}

void ExpectRefused(const Status& st, const std::string& part) {
  ASSERT_FALSE(st.ok()) << "accepted; expected an error naming " << part;
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find("/r/c2.json"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find(part), std::string::npos) << st.ToString();
}

// Issue 13: numbers above 2^64 went through an undefined float-to-integer
// conversion; floats and negatives were taken too.
TEST(Manifest, Issue13NumbersMustBeIntegersInRange) {
  auto with = [](const char* key, const char* number) {
    std::string text = kOldManifest;
    const std::string field = std::string("\"") + key + "\": ";
    size_t at = text.find(field) + field.size();
    size_t end = text.find_first_of(",\n}", at);
    text.replace(at, end - at, number);
    return Checkpoint::Decode(text, "/r/c2.json").status();
  };
  ExpectRefused(with("sequence", "100000000000000000000"), "'sequence'");
  ExpectRefused(with("sequence", "-1"), "'sequence'");
  ExpectRefused(with("sequence", "2.5"), "'sequence'");
  ExpectRefused(with("sequence", "0"), "'sequence'");
  ExpectRefused(with("virtual_size", "18446744073709551616"), "'virtual_size'");
  ExpectRefused(with("virtual_size", "1e30"), "'virtual_size'");
  ExpectRefused(with("stored_bytes", "-5"), "'stored_bytes'");
  ExpectRefused(with("created_unix_ns", "9223372036854775808"), "'created_unix_ns'");
  ExpectRefused(with("version", "4294967297"), "'version'");
  EXPECT_TRUE(with("virtual_size", "18446744073709551615").ok());
}

// Issue 13: a misspelled "config" was dropped without a word.
TEST(Manifest, Issue13UnknownKeysAreRefusedNamingTheKey) {
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["confg"] = {{"name", "vm1.xml"}, {"content", "<domain/>"}};
                }),
                "unknown field 'confg'");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) { j["disks"][0]["sise"] = 1; }),
                "disks[0]: unknown field 'sise'");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["config"] = {{"name", "vm1.xml"}, {"content", ""}, {"extra", 1}};
                }),
                "unknown field 'extra'");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) { j["config"] = "vm1.xml"; }),
                "'config'");
  EXPECT_TRUE(DecodeEdited([](nlohmann::json& j) {
                j["config"] = {{"name", "vm1.xml"}, {"content", "<domain/>"}};
              }).ok());
}

// Issue 16: a libvirt backup keeps two configs and where it came from; one
// config is still written as "config", as older chainfs read it.
TEST(Manifest, Issue16ConfigsAndLibvirtRecordRoundTrip) {
  auto cp = Checkpoint::Decode(kOldManifest, "m");
  ASSERT_TRUE(cp.ok());
  cp->configs = {{"domain.xml", "<domain>live</domain>"}};
  auto one = nlohmann::json::parse(cp->Encode());
  EXPECT_EQ(one["config"]["name"], "domain.xml");
  EXPECT_FALSE(one.contains("configs"));
  cp->configs.push_back({"domain-inactive.xml", "<domain>inactive</domain>"});
  cp->libvirt = LibvirtRecord{"qemu:///system", "vm1", "1f6d1c38-7a0e-4a5e-9d3b-2c1b0e6f5a11",
                              "chainfs.vm1.c2"};
  const std::string text = cp->Encode();
  auto back = Checkpoint::Decode(text, "m");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->configs.size(), 2u);
  EXPECT_EQ(back->FindConfig("domain-inactive.xml")->content, "<domain>inactive</domain>");
  ASSERT_TRUE(back->libvirt);
  EXPECT_EQ(back->libvirt->checkpoint, "chainfs.vm1.c2");
  EXPECT_EQ(back->libvirt->uuid, "1f6d1c38-7a0e-4a5e-9d3b-2c1b0e6f5a11");
  EXPECT_EQ(back->Encode(), text);
  // No libvirt checkpoint (a shut-off domain's full) is null, read as empty.
  cp->libvirt->checkpoint.clear();
  auto j = nlohmann::json::parse(cp->Encode());
  EXPECT_TRUE(j["libvirt"]["checkpoint"].is_null());
  EXPECT_EQ(Checkpoint::Decode(j.dump(), "m")->libvirt->checkpoint, "");
}

TEST(Manifest, Issue16BadConfigsAndLibvirtRecordsAreRefused) {
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["configs"] = {{{"name", "a.xml"}, {"content", "1"}},
                                  {{"name", "a.xml"}, {"content", "2"}}};
                }),
                "config 'a.xml' twice");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["config"] = {{"name", "a.xml"}, {"content", ""}};
                  j["configs"] = nlohmann::json::array();
                }),
                "both 'config' and 'configs'");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["configs"] = {{{"name", "../x"}, {"content", ""}}};
                }),
                "configs[0]");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["libvirt"] = {{"uri", ""}, {"domain", "vm1"}, {"uuid", "u"}, {"cp", "x"}};
                }),
                "libvirt: unknown field 'cp'");
  ExpectRefused(DecodeEdited([](nlohmann::json& j) {
                  j["libvirt"] = {{"uri", ""}, {"uuid", "u"}, {"checkpoint", nullptr}};
                }),
                "libvirt");
}

// Issue 13: a 62 MB deeply nested manifest cost 2.3 GiB on every load.
TEST(Manifest, Issue13SizeAndNestingAreBounded) {
  std::string deep = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(DecodeEdited([&](nlohmann::json& j) { j["created"] = deep; }).ok())
      << "brackets inside a string are text";
  std::string nested = kOldManifest;
  nested.insert(nested.size() - 1, ", \"x\": " + std::string(100000, '[') +
                                       std::string(100000, ']'));
  ExpectRefused(Checkpoint::Decode(nested, "/r/c2.json").status(), "nested deeper than 32");
  std::string big = kOldManifest;
  big.insert(big.size() - 1, ", \"x\": \"" + std::string(kMaxManifestBytes, 'a') + "\"");
  ExpectRefused(Checkpoint::Decode(big, "/r/c2.json").status(), "bytes, more than");
}

TEST(RepoConfig, Issue13UnknownKeysAndBadLevelsAreRefused) {
  RepoConfig c;
  auto j = nlohmann::json::parse(c.Encode());
  j["blocksize"] = 4096;
  auto r = RepoConfig::Decode(j.dump(), "/r/chainfs.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/r/chainfs.json: unknown field 'blocksize'"),
            std::string::npos)
      << r.status().ToString();
  j = nlohmann::json::parse(c.Encode());
  j["compression_level"] = 1e12;
  r = RepoConfig::Decode(j.dump(), "/r/chainfs.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'compression_level'"), std::string::npos);
  EXPECT_TRUE(RepoConfig::Decode(c.Encode(), "/r/chainfs.json").ok());
}

}  // namespace
}  // namespace chainfs
