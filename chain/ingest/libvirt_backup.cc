#include "chain/ingest/libvirt_backup.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "chain/base/failpoint.h"
#include "chain/base/names.h"
#include "chain/ingest/domain_xml.h"
#include "chain/ingest/libvirt_api.h"

namespace chainfs {
namespace {

constexpr char kPrefix[] = "chainfs+";  // of export names
constexpr char kWorkDirPrefix[] = "chainfs-backup-";  // a job's socket and scratch files

// libvirt checkpoint names allow only [A-Za-z0-9_.-], as chainfs names do,
// so "chainfs.GROUP.CHECKPOINT" alone could be ambiguous ("a.b"+"c" and
// "a"+"b.c"), and two repositories may hold a group of the same name for
// one domain (a local and an offsite copy): whose it is, the description
// says exactly.
std::string CheckpointDescription(const Repository& repo, const std::string& group,
                                  const std::string& checkpoint) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::weakly_canonical(repo.path(), ec);
  return "chainfs group " + group + " checkpoint " + checkpoint + " in repository " +
         (ec ? repo.path() : p.string());
}

// libvirt prints every error to stderr unless told otherwise; ours carry
// its message in the Status instead.
void QuietLibvirt() {
  static std::once_flag once;
  std::call_once(once, [] {
    lv::virInitialize();
    lv::virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
  });
}

Status LibvirtFailed(const std::string& what) {
  const char* m = lv::virGetLastErrorMessage();
  return Status::IoError(what + ": " + (m ? m : "unknown libvirt error"));
}

std::string TakeString(char* s) {
  std::string out = s ? s : "";
  free(s);
  return out;
}

struct ConnClose {
  void operator()(virConnectPtr c) const { lv::virConnectClose(c); }
};
struct DomFree {
  void operator()(virDomainPtr d) const { lv::virDomainFree(d); }
};
struct CpFree {
  void operator()(virDomainCheckpointPtr c) const { lv::virDomainCheckpointFree(c); }
};
using Conn = std::unique_ptr<virConnect, ConnClose>;
using Dom = std::unique_ptr<virDomain, DomFree>;
using Cp = std::unique_ptr<virDomainCheckpoint, CpFree>;

std::string UriName(const std::string& uri) { return uri.empty() ? "(default)" : uri; }

Result<Conn> Connect(const std::string& uri) {
  CHAINFS_RETURN_IF_ERROR(LoadLibvirt());
  QuietLibvirt();
  Conn c(lv::virConnectOpen(uri.empty() ? nullptr : uri.c_str()));
  if (!c) return LibvirtFailed("connecting to libvirt " + UriName(uri));
  return c;
}

Result<Dom> LookupDomain(virConnectPtr conn, const std::string& name_or_uuid,
                         const std::string& uri) {
  Dom d(lv::virDomainLookupByName(conn, name_or_uuid.c_str()));
  if (!d) d.reset(lv::virDomainLookupByUUIDString(conn, name_or_uuid.c_str()));
  if (!d)
    return Status::NotFound("libvirt " + UriName(uri) + " has no domain '" + name_or_uuid +
                            "' (virsh list --all shows the domains)");
  return d;
}

std::string DomainUuid(virDomainPtr d) {
  char buf[VIR_UUID_STRING_BUFLEN] = {};
  lv::virDomainGetUUIDString(d, buf);
  return buf;
}

// Our job's export names: kPrefix GROUP "+" CHECKPOINT "+" DISK; '+' is in
// no chainfs name, so the split is unambiguous.
bool SplitOurs(const std::string& name, std::string* group, std::string* rest) {
  if (name.rfind(kPrefix, 0) != 0) return false;
  const std::string tail = name.substr(sizeof kPrefix - 1);
  auto plus = tail.find('+');
  if (plus == std::string::npos) return false;
  *group = tail.substr(0, plus);
  *rest = tail.substr(plus + 1);
  return true;
}

std::vector<Cp> ListCheckpoints(virDomainPtr dom, const std::string& what, Status* st) {
  virDomainCheckpointPtr* list = nullptr;
  int n = lv::virDomainListAllCheckpoints(dom, &list, 0);
  std::vector<Cp> out;
  if (n < 0) {
    *st = LibvirtFailed("listing the checkpoints of " + what);
    return out;
  }
  for (int i = 0; i < n; ++i) out.emplace_back(list[i]);
  free(list);
  return out;
}

// Deletes a libvirt checkpoint with its bitmaps (never metadata only):
// libvirt merges its bitmap into its parent's, so no change is lost.
Status DeleteCheckpoint(virDomainPtr dom, const std::string& name, const std::string& domain) {
  Cp cp(lv::virDomainCheckpointLookupByName(dom, name.c_str(), 0));
  if (!cp) return LibvirtFailed("looking up libvirt checkpoint " + name + " of domain " + domain);
  if (lv::virDomainCheckpointDelete(cp.get(), 0) < 0)
    return LibvirtFailed("deleting libvirt checkpoint " + name + " of domain " + domain);
  return Status::Ok();
}

class DomainBackup {
 public:
  DomainBackup(const Repository& repo, const BackupOptions& opts, const DomainBackupOptions& d)
      : repo_(repo), opts_(opts), dopts_(d) {}
  ~DomainBackup() { RemoveSocketDir(); }

  Status Open();
  Status Prepare(const GroupState& g, BackupOptions* o);
  // After Backup returned: ends the job; unless committed, deletes the
  // libvirt checkpoint made for it.
  void Finish(bool committed);

  DomainBackupReport report;

 private:
  Status EndLeftoverJob(const GroupState& g);
  Status DeleteOrphans(const GroupState& g);
  Status PrepareOnline(const GroupState& g, const Checkpoint* base, const CheckpointInfo* base_cp,
                       BackupOptions* o);
  Status PrepareOffline(const GroupState& g, const Checkpoint* base, const CheckpointInfo* base_cp,
                        BackupOptions* o);
  bool JobActive() const;
  void WaitJobGone() const;
  void RemoveSocketDir();
  std::string Where() const { return "domain " + name_; }

  const Repository& repo_;
  const BackupOptions& opts_;
  const DomainBackupOptions& dopts_;
  Conn conn_;
  Dom dom_;
  std::string name_, uuid_;
  DomainInfo info_;                 // the live definition, as the plan saw it
  std::vector<std::string> disks_;  // backed up, in domain order
  std::string socket_dir_;
  bool job_started_ = false;
  std::string new_checkpoint_;  // made with the job
};

Status DomainBackup::Open() {
  CHAINFS_ASSIGN_OR_RETURN(conn_, Connect(dopts_.uri));
  CHAINFS_ASSIGN_OR_RETURN(dom_, LookupDomain(conn_.get(), dopts_.domain, dopts_.uri));
  name_ = lv::virDomainGetName(dom_.get());
  uuid_ = DomainUuid(dom_.get());
  report.domain = name_;
  return Status::Ok();
}

bool DomainBackup::JobActive() const {
  return TakeString(lv::virDomainBackupGetXMLDesc(dom_.get(), 0)).size() > 0;
}

// virDomainAbortJob returns before QEMU's block jobs are gone; a new job
// (or a checkpoint deletion) must wait for them.
void DomainBackup::WaitJobGone() const {
  for (int i = 0; i < 600 && JobActive(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

Status DomainBackup::EndLeftoverJob(const GroupState& g) {
  std::string xml = TakeString(lv::virDomainBackupGetXMLDesc(dom_.get(), 0));
  if (xml.empty()) return Status::Ok();  // no backup job
  CHAINFS_ASSIGN_OR_RETURN(BackupJobInfo job, ParseBackupJob(xml, "the backup job of " + Where()));
  const std::vector<std::string>& exports = job.exports;
  std::string group, rest, checkpoint;
  bool ours = !exports.empty();
  for (const auto& e : exports) {
    // Export names: kPrefix GROUP "+" CHECKPOINT "+" DISK.
    if (!SplitOurs(e, &group, &rest) || group != opts_.group) ours = false;
    else checkpoint = rest.substr(0, rest.find('+'));
  }
  // The job made its checkpoint when it started: its description says
  // whether the job is this repository's.
  if (ours) {
    Cp cp(lv::virDomainCheckpointLookupByName(
        dom_.get(), LibvirtCheckpointName(opts_.group, checkpoint).c_str(), 0));
    auto info = cp ? ParseCheckpointXml(TakeString(lv::virDomainCheckpointGetXMLDesc(cp.get(), 0)),
                                        "libvirt checkpoint")
                   : Result<CheckpointInfo>(Status::NotFound("no checkpoint"));
    ours = info.ok() &&
           info->description == CheckpointDescription(repo_, opts_.group, checkpoint);
  }
  if (!ours)
    return Status::Busy(Where() + " has a backup job running that is not this group's (" +
                        (group.empty() ? "another tool's"
                                       : "chainfs group " + group + "'s, of another repository "
                                                                    "or group") +
                        "); wait for it to end, or end it with virsh domjobabort " + name_);
  if (lv::virDomainAbortJob(dom_.get()) < 0 && JobActive())
    return LibvirtFailed("ending the backup job left by an interrupted backup of checkpoint " +
                         checkpoint + " of " + Where());
  WaitJobGone();
  // Its socket's directory, with the scratch files, if it is one of ours.
  std::filesystem::path dir = std::filesystem::path(job.socket).parent_path();
  if (dir.filename().string().rfind(kWorkDirPrefix, 0) == 0) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  report.notes.push_back("ended the backup job left by an interrupted run (checkpoint " +
                         checkpoint + (g.Find(checkpoint) ? ", committed" : ", not committed") +
                         ")");
  return Status::Ok();
}

Status DomainBackup::DeleteOrphans(const GroupState& g) {
  std::set<std::string> referenced;
  for (const Checkpoint& c : g.checkpoints)
    if (c.libvirt && !c.libvirt->checkpoint.empty()) referenced.insert(c.libvirt->checkpoint);
  Status st;
  std::vector<Cp> cps = ListCheckpoints(dom_.get(), Where(), &st);
  if (!st.ok()) return st;
  // Newest first: deleting a leaf merges its bitmap into its parent, which
  // then goes too, until a referenced one holds all the changes.
  std::reverse(cps.begin(), cps.end());
  for (const Cp& cp : cps) {
    std::string name = lv::virDomainCheckpointGetName(cp.get());
    const std::string prefix = LibvirtCheckpointName(opts_.group, "");
    if (name.rfind(prefix, 0) != 0 || referenced.count(name)) continue;
    auto info = ParseCheckpointXml(TakeString(lv::virDomainCheckpointGetXMLDesc(cp.get(), 0)),
                                   "libvirt checkpoint " + name);
    if (!info.ok() ||
        info->description !=
            CheckpointDescription(repo_, opts_.group, name.substr(prefix.size())))
      continue;  // not ours: another group's or repository's, or another tool's
    if (lv::virDomainCheckpointDelete(cp.get(), 0) < 0)
      return LibvirtFailed("deleting libvirt checkpoint " + name + " of " + Where() +
                           ", which no checkpoint of group " + opts_.group + " records");
    report.notes.push_back("deleted libvirt checkpoint " + name +
                           " (no checkpoint of the group records it: a failed run, or pruned "
                           "while the domain was unreachable)");
  }
  return Status::Ok();
}

Status DomainBackup::Prepare(const GroupState& g, BackupOptions* o) {
  CHAINFS_RETURN_IF_ERROR(g.RequireAllReadable("backup --domain"));
  if (g.Find(opts_.checkpoint))
    return Status::AlreadyExists("checkpoint '" + opts_.checkpoint + "' already exists in group " +
                                 opts_.group + "; choose a new name");
  for (const Checkpoint& c : g.checkpoints)
    if (c.libvirt && c.libvirt->uuid != uuid_)
      return Status::InvalidArgument(
          "group " + opts_.group + " holds backups of domain " + c.libvirt->domain + " (UUID " +
          c.libvirt->uuid + "), not of " + name_ + " (UUID " + uuid_ +
          "); back up each domain into a group of its own");
  int state = 0, reason = 0;
  if (lv::virDomainGetState(dom_.get(), &state, &reason, 0) < 0)
    return LibvirtFailed("reading the state of " + Where());
  report.offline = state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED;
  if (!report.offline) CHAINFS_RETURN_IF_ERROR(EndLeftoverJob(g));
  CHAINFS_RETURN_IF_ERROR(DeleteOrphans(g));

  std::string xml = TakeString(lv::virDomainGetXMLDesc(dom_.get(), 0));
  if (xml.empty()) return LibvirtFailed("reading the definition of " + Where());
  CHAINFS_ASSIGN_OR_RETURN(info_, ParseDomainXml(xml, "the definition of " + Where()));
  for (const std::string& x : dopts_.exclude) {
    bool known = false;
    std::string all;
    for (const DomainDisk& d : info_.disks) {
      known |= d.target == x;
      all += (all.empty() ? "" : ", ") + d.target;
    }
    if (!known)
      return Status::InvalidArgument("--exclude " + x + ": " + Where() + " has no disk " + x +
                                     " (it has " + (all.empty() ? "none" : all) + ")");
  }

  // The base, in chainfs and in libvirt.
  const Checkpoint* base = nullptr;
  if (!opts_.full) base = opts_.since.empty() ? g.Newest() : g.Find(opts_.since);
  if (!opts_.full && !opts_.since.empty() && !base)
    return Status::NotFound("--since " + opts_.since + ": no such checkpoint in group " +
                            opts_.group);
  std::optional<CheckpointInfo> base_cp;
  if (base) {
    const std::string anew = "; back up with --full to start the chain anew";
    if (!base->libvirt || base->libvirt->checkpoint.empty())
      return Status::InvalidArgument("checkpoint " + base->name + " of group " + opts_.group +
                                     " has no libvirt checkpoint whose bitmaps record the "
                                     "changes since it" + anew);
    const std::string& lv = base->libvirt->checkpoint;
    Cp cp(lv::virDomainCheckpointLookupByName(dom_.get(), lv.c_str(), 0));
    if (!cp)
      return Status::NotFound("the base checkpoint " + base->name + " of group " + opts_.group +
                              " needs libvirt checkpoint " + lv + ", which " + Where() +
                              " does not have (deleted outside chainfs?)" + anew);
    std::string cxml = TakeString(lv::virDomainCheckpointGetXMLDesc(cp.get(), 0));
    if (cxml.empty()) return LibvirtFailed("reading libvirt checkpoint " + lv);
    CHAINFS_ASSIGN_OR_RETURN(base_cp, ParseCheckpointXml(cxml, "libvirt checkpoint " + lv));
    // Ours: made by chainfs for this group (the repository's path may have
    // changed since; that does not make it another's).
    const std::string prefix = LibvirtCheckpointName(opts_.group, "");
    const std::string made_by =
        lv.rfind(prefix, 0) == 0 ? CheckpointDescription(repo_, opts_.group, lv.substr(prefix.size()))
                                 : std::string();
    const std::string mine = made_by.substr(0, made_by.find(" in repository "));
    if (made_by.empty() || base_cp->description.rfind(mine + " in repository ", 0) != 0)
      return Status::InvalidArgument("libvirt checkpoint " + lv + " of " + Where() +
                                     ", which checkpoint " + base->name + " of group " +
                                     opts_.group + " is based on, was not made by chainfs for "
                                     "this group (its description: '" +
                                     base_cp->description + "')" + anew);
  }

  for (const DomainDisk& d : info_.disks) {
    std::string why = DiskSkipReason(d);
    if (why.empty() &&
        std::find(dopts_.exclude.begin(), dopts_.exclude.end(), d.target) != dopts_.exclude.end())
      why = "excluded (--exclude)";
    if (!why.empty()) {
      report.skipped.push_back({d.target, why});
      continue;
    }
    if (base && base->FindDisk(d.target) && !base_cp->bitmaps.count(d.target))
      return Status::NotFound("disk " + d.target + " of checkpoint " + base->name +
                              " has no bitmap in libvirt checkpoint " + base_cp->name +
                              "; back up with --full to start the chain anew");
    disks_.push_back(d.target);
  }
  if (disks_.empty()) {
    std::string list;
    for (const auto& [disk, why] : report.skipped)
      list += (list.empty() ? "" : "; ") + disk + ": " + why;
    return Status::InvalidArgument(Where() + " has no disk chainfs can back up" +
                                   (list.empty() ? std::string() : " (" + list + ")"));
  }
  o->configs.push_back({"domain.xml", xml});
  std::string inactive = TakeString(lv::virDomainGetXMLDesc(dom_.get(), VIR_DOMAIN_XML_INACTIVE));
  if (!inactive.empty()) o->configs.push_back({"domain-inactive.xml", inactive});
  o->libvirt = LibvirtRecord{dopts_.uri, name_, uuid_, ""};
  return report.offline ? PrepareOffline(g, base, base_cp ? &*base_cp : nullptr, o)
                        : PrepareOnline(g, base, base_cp ? &*base_cp : nullptr, o);
}

Status DomainBackup::PrepareOnline(const GroupState& g, const Checkpoint* base,
                                   const CheckpointInfo* base_cp, BackupOptions* o) {
  (void)g;
  std::string parent = dopts_.work_parent;
  if (parent.empty()) parent = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
  std::string tmpl = parent + "/" + kWorkDirPrefix + "XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr)
    return Status::FromErrno(errno, "creating a directory for the backup job's socket and "
                                    "scratch files in " + parent);
  socket_dir_ = tmpl;
  chmod(socket_dir_.c_str(), 0711);  // QEMU may run as another user
  const std::string socket = socket_dir_ + "/nbd.sock";

  new_checkpoint_ = LibvirtCheckpointName(opts_.group, opts_.checkpoint);
  std::vector<JobDisk> job;
  for (const DomainDisk& d : info_.disks) {
    JobDisk j;
    j.target = d.target;
    j.backup = std::find(disks_.begin(), disks_.end(), d.target) != disks_.end();
    j.exportname = kPrefix + opts_.group + "+" + opts_.checkpoint + "+" + d.target;
    j.scratch = socket_dir_ + "/" + d.target + ".scratch";
    if (j.backup && base && base->FindDisk(d.target)) {
      j.since = base_cp->name;
      j.exportbitmap = j.exportname;
    }
    job.push_back(j);
  }
  const std::string backup_xml = BackupJobXml(socket, job);
  const std::string cp_xml =
      CheckpointXml(new_checkpoint_, CheckpointDescription(repo_, opts_.group, opts_.checkpoint),
                    job);
  spdlog::debug("backup job of {}:\n{}{}", Where(), backup_xml, cp_xml);
  Failpoint("libvirt.before-job");
  if (lv::virDomainBackupBegin(dom_.get(), backup_xml.c_str(), cp_xml.c_str(), 0) < 0) {
    Status st = LibvirtFailed("starting the backup job of " + Where());
    new_checkpoint_.clear();  // not made: libvirt makes both or neither
    return st;
  }
  job_started_ = true;
  report.libvirt_checkpoint = new_checkpoint_;
  o->libvirt->checkpoint = new_checkpoint_;
  // The definition at the checkpoint, as libvirt now has it.
  if (std::string now = TakeString(lv::virDomainGetXMLDesc(dom_.get(), 0)); !now.empty())
    o->configs[0].content = now;
  for (const JobDisk& j : job) {
    if (!j.backup) continue;
    o->disks.push_back({j.target, "nbd+unix:///" + j.exportname + "?socket=" + socket, "",
                        nullptr, j.exportbitmap});
  }
  return Status::Ok();
}

Status DomainBackup::PrepareOffline(const GroupState& g, const Checkpoint* base,
                                    const CheckpointInfo* base_cp, BackupOptions* o) {
  // libvirt makes no checkpoint of an inactive domain. Incremental is safe
  // through the base's bitmap only while it is the newest, still recording.
  bool incremental = false;
  if (base_cp) {
    Cp cp(lv::virDomainCheckpointLookupByName(dom_.get(), base_cp->name.c_str(), 0));
    int children = cp ? lv::virDomainCheckpointListAllChildren(cp.get(), nullptr, 0) : -1;
    incremental = children == 0;
    if (!incremental) {
      report.notes.push_back("libvirt checkpoint " + base_cp->name +
                             " is not the newest: its bitmap alone does not hold every change "
                             "since; the disks are read full");
      o->full = true;
      o->since.clear();
    }
  }
  // What still records the changes since this point: the base's libvirt
  // checkpoint, or for a full the newest of this group's, if it is a leaf.
  std::string anchor = incremental ? base_cp->name : "";
  if (!incremental) {
    for (auto it = g.checkpoints.rbegin(); it != g.checkpoints.rend() && anchor.empty(); ++it) {
      if (!it->libvirt || it->libvirt->checkpoint.empty()) continue;
      Cp cp(lv::virDomainCheckpointLookupByName(dom_.get(), it->libvirt->checkpoint.c_str(), 0));
      if (cp && lv::virDomainCheckpointListAllChildren(cp.get(), nullptr, 0) == 0)
        anchor = it->libvirt->checkpoint;
      break;
    }
  }
  o->libvirt->checkpoint = anchor;
  report.notes.push_back(std::string("domain is shut off: read from its images, ") +
                         (incremental ? "incremental through the persistent bitmaps of " +
                                            base_cp->name
                                      : std::string("full")) +
                         "; libvirt makes no checkpoint of an inactive domain" +
                         (anchor.empty() ? "" : ", so the next incremental is based on " + anchor));
  for (const DomainDisk& d : info_.disks) {
    if (std::find(disks_.begin(), disks_.end(), d.target) == disks_.end()) continue;
    std::string bitmap;
    if (incremental && base->FindDisk(d.target)) bitmap = base_cp->bitmaps.at(d.target);
    o->disks.push_back({d.target, d.source, "", nullptr, bitmap});
  }
  return Status::Ok();
}

void DomainBackup::Finish(bool committed) {
  if (job_started_) {
    // A pull-mode job ends when aborted; its exports close.
    if (lv::virDomainAbortJob(dom_.get()) < 0 && JobActive())
      spdlog::warn("the backup job of {} did not end: {}; the next backup of group {} ends it",
                   Where(), lv::virGetLastErrorMessage(), opts_.group);
    else
      WaitJobGone();
    job_started_ = false;
  }
  if (!committed && !new_checkpoint_.empty()) {
    Status st = DeleteCheckpoint(dom_.get(), new_checkpoint_, name_);
    if (!st.ok())
      spdlog::warn("{}; the next backup of group {} deletes it", st.message(), opts_.group);
    else
      spdlog::info("deleted libvirt checkpoint {} of the failed backup; the next incremental "
                   "is based on the last good checkpoint",
                   new_checkpoint_);
    report.libvirt_checkpoint.clear();
  }
  RemoveSocketDir();
}

void DomainBackup::RemoveSocketDir() {
  if (socket_dir_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(socket_dir_, ec);
  socket_dir_.clear();
}

}  // namespace

std::string LibvirtCheckpointName(const std::string& group, const std::string& checkpoint) {
  return "chainfs." + group + "." + checkpoint;
}

Result<DomainBackupReport> BackupDomain(const Repository& repo, BackupOptions opts,
                                        const DomainBackupOptions& dopts) {
  if (!opts.disks.empty())
    return Status::InvalidArgument("--domain backs up the domain's disks: give no --disk");
  CHAINFS_RETURN_IF_ERROR(ValidateName("group", opts.group));
  CHAINFS_RETURN_IF_ERROR(ValidateName("checkpoint", opts.checkpoint));
  DomainBackup run(repo, opts, dopts);
  CHAINFS_RETURN_IF_ERROR(run.Open());
  opts.prepare = [&run](const GroupState& g, BackupOptions* o) { return run.Prepare(g, o); };
  Result<BackupReport> r = Backup(repo, opts);
  const bool committed =
      r.ok() || repo.env()->FileExists(repo.CheckpointDir(opts.group) + "/" + opts.checkpoint +
                                       ".json");
  run.Finish(committed);
  if (!r.ok()) return r.status().Context("backup of domain " + run.report.domain);
  run.report.backup = std::move(r).value();
  return std::move(run.report);
}

ForgetReport ForgetLibvirtCheckpoints(const GroupState& before,
                                      const std::vector<std::string>& dropped) {
  ForgetReport rep;
  std::set<std::string> gone(dropped.begin(), dropped.end()), kept_refs;
  // (uri, uuid, domain) -> libvirt checkpoints only dropped ones record
  std::map<std::tuple<std::string, std::string, std::string>, std::set<std::string>> by_domain;
  for (const Checkpoint& c : before.checkpoints)
    if (!gone.count(c.name) && c.libvirt) kept_refs.insert(c.libvirt->checkpoint);
  for (const Checkpoint& c : before.checkpoints) {
    if (!gone.count(c.name) || !c.libvirt || c.libvirt->checkpoint.empty() ||
        kept_refs.count(c.libvirt->checkpoint))
      continue;
    by_domain[{c.libvirt->uri, c.libvirt->uuid, c.libvirt->domain}].insert(c.libvirt->checkpoint);
  }
  for (const auto& entry : by_domain) {
    const std::string& uri = std::get<0>(entry.first);
    const std::string& uuid = std::get<1>(entry.first);
    const std::string& domain = std::get<2>(entry.first);
    auto not_deleted = [&](const std::string& name, const std::string& why) {
      rep.warnings.push_back("libvirt checkpoint " + name + " of domain " + domain +
                             " not deleted (" + why + "); the next backup of group " +
                             before.name + " deletes it");
    };
    auto conn = Connect(uri);
    auto dom = conn.ok() ? LookupDomain(conn->get(), uuid, uri) : Result<Dom>(conn.status());
    for (const auto& n : entry.second) {
      if (!dom.ok()) {
        not_deleted(n, dom.status().message());
        continue;
      }
      Cp cp(lv::virDomainCheckpointLookupByName(dom->get(), n.c_str(), 0));
      if (!cp) continue;  // already gone
      if (lv::virDomainCheckpointDelete(cp.get(), 0) < 0)
        not_deleted(n, lv::virGetLastErrorMessage());
      else
        rep.deleted.push_back(domain + "/" + n);
    }
  }
  return rep;
}

}  // namespace chainfs
