#include "fusefs/driver/mount_options.h"

#include <gtest/gtest.h>

namespace chainfs {

TEST(MountOptions, DefaultsLetOnlyTheOwnerRead) {
  auto o = MountOptions::Parse({});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->FileMode(), 0400u);
  EXPECT_EQ(o->DirMode(), 0500u);
  EXPECT_FALSE(o->uid.has_value());
  EXPECT_FALSE(o->allow_other);
  EXPECT_FALSE(o->direct_io);
  EXPECT_EQ(o->FuseOptionString(), "ro,default_permissions,subtype=chainfs");
}

TEST(MountOptions, DirectIoIsOursNotPassedToTheKernel) {
  auto o = MountOptions::Parse({"direct_io,nodev"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_TRUE(o->direct_io);
  EXPECT_EQ(o->FuseOptionString(), "ro,default_permissions,subtype=chainfs,nodev");
  EXPECT_FALSE(MountOptions::Parse({"direct_io=1"}).ok()) << "a flag takes no value";
}

TEST(MountOptions, ParsesOursAcrossSeveralArguments) {
  auto o = MountOptions::Parse({"allow_other,uid=1000", "gid=100,umask=022,log=/tmp/x.log"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_TRUE(o->allow_other);
  EXPECT_EQ(*o->uid, 1000u);
  EXPECT_EQ(*o->gid, 100u);
  EXPECT_EQ(o->FileMode(), 0444u);
  EXPECT_EQ(o->DirMode(), 0555u);
  EXPECT_EQ(o->log_path, "/tmp/x.log");
}

TEST(MountOptions, FstabBookkeepingIsIgnoredAndKernelOptionsPassed) {
  auto o = MountOptions::Parse(
      {"defaults,noauto,nofail,_netdev,user,rw,x-systemd.automount,comment=x,nodev,auto_unmount"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  o->fsname = "chainfs:/r,1";
  EXPECT_EQ(o->FuseOptionString(),
            "ro,default_permissions,fsname=chainfs:/r\\,1,subtype=chainfs,nodev,auto_unmount");
}

TEST(MountOptions, RefusesUnknownAndMalformedNamingThem) {
  for (const char* bad : {"bogus", "uid=abc", "umask=999", "gid=", "log=", "cache=1"}) {
    auto o = MountOptions::Parse({std::string("allow_other,") + bad});
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_EQ(o.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(o.status().message().find(bad), std::string::npos) << o.status().message();
  }
}

TEST(MountOptions, BackslashEscapesAComma) {
  auto o = MountOptions::Parse({"log=/tmp/a\\,b.log"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->log_path, "/tmp/a,b.log");
}

TEST(MountOptions, KernelReadaheadDefaultsTo1MAndZeroLeavesTheKernels) {
  auto d = MountOptions::Parse({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kernel_readahead, 1u << 20);
  auto o = MountOptions::Parse({"kernel_readahead=4M"});
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->kernel_readahead, 4u << 20);
  auto z = MountOptions::Parse({"kernel_readahead=0"});
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->kernel_readahead, 0u);
  auto bad = MountOptions::Parse({"kernel_readahead=lots"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("kernel_readahead=lots"), std::string::npos);
  EXPECT_FALSE(MountOptions::Parse({"kernel_readahead=2G"}).ok());
}

}  // namespace chainfs
