// Fuzz target: libvirt's XML as backup --domain reads it (chain/ingest/
// domain_xml.h): a domain definition, a checkpoint, a backup job.
//
// Every parse either fails with a message or gives disks with a target; a
// disk that may be backed up is a writable, unshared qcow2 file or block
// disk; and the job XML we write from what was parsed parses back to the
// same export names.
#include "chain/ingest/domain_xml.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace chainfs;
  const std::string xml = fuzz::AsString(data, size);
  if (auto d = ParseDomainXml(xml, "fuzz"); d.ok()) {
    std::vector<JobDisk> job;
    for (const DomainDisk& disk : d->disks) {
      FUZZ_CHECK(!disk.target.empty());
      if (DiskSkipReason(disk).empty()) {
        FUZZ_CHECK(disk.device == "disk" && disk.driver_type == "qcow2");
        FUZZ_CHECK(!disk.readonly && !disk.shareable && !disk.transient);
      }
      job.push_back({disk.target, true, "", "e-" + disk.target, "", "/s/" + disk.target});
    }
    auto again = ParseBackupJob(BackupJobXml("/s/nbd.sock", job), "again");
    FUZZ_CHECK(again.ok() && again->exports.size() == job.size() && again->socket == "/s/nbd.sock");
    for (size_t i = 0; i < job.size(); ++i) FUZZ_CHECK(again->exports[i] == job[i].exportname);
    auto cp = ParseCheckpointXml(CheckpointXml("n", d->name, job), "again");
    FUZZ_CHECK(cp.ok() && cp->description == d->name);
  }
  (void)ParseCheckpointXml(xml, "fuzz");
  (void)ParseBackupJob(xml, "fuzz");
  return 0;
}
