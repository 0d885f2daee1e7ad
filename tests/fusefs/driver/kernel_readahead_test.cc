#include "fusefs/driver/kernel_readahead.h"

#include <gtest/gtest.h>

namespace chainfs {

// Lines as proc(5) shows them; the second mount on /mnt/backup is on top.
constexpr char kMountinfo[] =
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 0:39 / /mnt/backup rw,nosuid,nodev - fuse.chainfs chainfs:/r ro,user_id=0\n"
    "41 40 0:40 / /mnt/backup rw,nosuid,nodev - fuse.chainfs chainfs:/s ro,user_id=0\n"
    "42 22 0:41 / /mnt/with\\040space rw - fuse.chainfs chainfs:/t ro,user_id=0\n";

TEST(KernelReadahead, BdiOfTheNewestMountOnThePath) {
  auto bdi = BdiOfMount("/mnt/backup", kMountinfo);
  ASSERT_TRUE(bdi.ok()) << bdi.status().message();
  EXPECT_EQ(bdi.value(), "/sys/class/bdi/0:40");
}

TEST(KernelReadahead, EscapedMountpointAndMissingMount) {
  auto spaced = BdiOfMount("/mnt/with space", kMountinfo);
  ASSERT_TRUE(spaced.ok()) << spaced.status().message();
  EXPECT_EQ(spaced.value(), "/sys/class/bdi/0:41");
  auto none = BdiOfMount("/mnt", kMountinfo);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Status::Code::kNotFound);
  EXPECT_NE(none.status().message().find("/mnt"), std::string::npos);
}

TEST(KernelReadahead, WritesKibibytesAndNamesAMissingFile) {
  const char* tmp = std::getenv("CHAINFS_TEST_TMP");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/bdi-test";
  ASSERT_EQ(0, system(("rm -rf " + dir + " && mkdir -p " + dir + " && : > " + dir +
                       "/read_ahead_kb").c_str()));
  ASSERT_TRUE(SetReadAheadKb(dir, 4u << 20).ok());
  FILE* f = fopen((dir + "/read_ahead_kb").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[32] = {};
  ASSERT_NE(fgets(buf, sizeof buf, f), nullptr);
  fclose(f);
  EXPECT_STREQ(buf, "4096\n");
  Status st = SetReadAheadKb(dir + "/missing", 1u << 20);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir + "/missing/read_ahead_kb"), std::string::npos);
}

}  // namespace chainfs
