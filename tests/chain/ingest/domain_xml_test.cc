#include "chain/ingest/domain_xml.h"

#include <gtest/gtest.h>

namespace chainfs {
namespace {

// As libvirt 9.0 prints a running domain (trimmed): a qcow2 disk, a raw
// one, a cdrom, a read-only and a shareable qcow2 disk, a network disk.
constexpr char kDomain[] = R"(<domain type='qemu' id='3'>
  <name>vm1</name>
  <uuid>1f6d1c38-7a0e-4a5e-9d3b-2c1b0e6f5a11</uuid>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/vm1-vda.qcow2' index='2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/images/boot.img'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source dev='/dev/vg/vm1-vdb'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/shared.qcow2'/>
      <target dev='vdc' bus='virtio'/>
      <shareable/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='nbd' name='exp'/>
      <target dev='vdd' bus='virtio'/>
    </disk>
  </devices>
</domain>)";

TEST(DomainXml, DisksAndWhyTheyAreSkipped) {
  auto d = ParseDomainXml(kDomain, "domain vm1");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->name, "vm1");
  EXPECT_EQ(d->uuid, "1f6d1c38-7a0e-4a5e-9d3b-2c1b0e6f5a11");
  ASSERT_EQ(d->disks.size(), 6u);
  EXPECT_EQ(d->disks[0].target, "vda");
  EXPECT_EQ(d->disks[0].source, "/var/lib/libvirt/images/vm1-vda.qcow2");
  EXPECT_EQ(DiskSkipReason(d->disks[0]), "");
  EXPECT_NE(DiskSkipReason(d->disks[1]).find("raw image"), std::string::npos);
  EXPECT_EQ(DiskSkipReason(d->disks[2]), "cdrom device");
  EXPECT_EQ(d->disks[3].source, "/dev/vg/vm1-vdb");
  EXPECT_EQ(DiskSkipReason(d->disks[3]), "read-only disk");
  EXPECT_EQ(DiskSkipReason(d->disks[4]), "shareable disk");
  EXPECT_NE(DiskSkipReason(d->disks[5]).find("network disk"), std::string::npos);
}

TEST(DomainXml, BadDocumentsAreRefusedNamingThem) {
  auto bad = ParseDomainXml("<domain><name>x</nam", "domain vm1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("domain vm1: not well-formed"), std::string::npos);
  auto root = ParseDomainXml("<domainsnapshot/>", "domain vm1");
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.status().message().find("<domain>"), std::string::npos);
  auto notarget = ParseDomainXml("<domain><devices><disk device='disk'/></devices></domain>", "d");
  ASSERT_FALSE(notarget.ok());
  EXPECT_NE(notarget.status().message().find("no <target"), std::string::npos);
  // No entity expansion, no external entities: the XML is input.
  auto xxe = ParseDomainXml(
      "<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain><name>&x;</name></domain>",
      "d");
  ASSERT_TRUE(xxe.ok());
  EXPECT_EQ(xxe->name.find("root:"), std::string::npos);
}

TEST(DomainXml, CheckpointBitmapsAndParent) {
  auto c = ParseCheckpointXml(R"(<domaincheckpoint>
  <name>chainfs.vm1.c2</name>
  <parent><name>chainfs.vm1.c1</name></parent>
  <disks>
    <disk name='vda' checkpoint='bitmap' bitmap='chainfs.vm1.c2'/>
    <disk name='vdb' checkpoint='no'/>
    <disk name='vdc' checkpoint='bitmap'/>
  </disks>
  <domain type='qemu'><name>vm1</name></domain>
</domaincheckpoint>)",
                              "libvirt checkpoint");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->name, "chainfs.vm1.c2");
  EXPECT_EQ(c->parent, "chainfs.vm1.c1");
  ASSERT_EQ(c->bitmaps.size(), 2u);
  EXPECT_EQ(c->bitmaps.at("vda"), "chainfs.vm1.c2");
  EXPECT_EQ(c->bitmaps.at("vdc"), "chainfs.vm1.c2");  // default: the checkpoint's name
}

TEST(DomainXml, JobXmlRoundTripsItsExportNames) {
  std::vector<JobDisk> disks = {
      {"vda", true, "chainfs.vm1.c1", "chainfs.vm1.c2+vda", "chainfs.vm1.c2+vda"},
      {"vdb", true, "", "chainfs.vm1.c2+vdb", ""},
      {"hda", false, "", "", ""}};
  const std::string x = BackupJobXml("/tmp/a'b/nbd.sock", disks);
  EXPECT_NE(x.find("socket='/tmp/a&apos;b/nbd.sock'"), std::string::npos);
  EXPECT_NE(x.find("backupmode='incremental' incremental='chainfs.vm1.c1'"), std::string::npos);
  EXPECT_NE(x.find("<disk name='vdb' backup='yes' type='file' backupmode='full'"),
            std::string::npos);
  EXPECT_NE(x.find("<disk name='hda' backup='no'/>"), std::string::npos);
  auto job = ParseBackupJob(x, "job");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->exports, (std::vector<std::string>{"chainfs.vm1.c2+vda", "chainfs.vm1.c2+vdb"}));
  EXPECT_EQ(job->socket, "/tmp/a'b/nbd.sock");
  const std::string c = CheckpointXml("chainfs.vm1.c2", "chainfs <group>", disks);
  auto parsed = ParseCheckpointXml(c, "cp");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->bitmaps.size(), 2u);
  EXPECT_NE(c.find("chainfs &lt;group&gt;"), std::string::npos);
}

}  // namespace
}  // namespace chainfs
