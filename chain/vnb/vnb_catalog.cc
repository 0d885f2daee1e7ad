#include "chain/vnb/vnb_catalog.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>

#include "chain/base/names.h"
#include "chain/base/worker_pool.h"
#include "chain/vnb/sparse_stream.h"
#include "chain/vnb/vnb_layer.h"

namespace chainfs {
namespace {

using nlohmann::json;

// A .data file of a virtnbdbackup directory, by its name.
struct DataFile {
  std::string file;   // name in the directory
  std::string disk;   // vda
  std::string level;  // full, copy, inc, diff
  std::string ident;  // inc: checkpoint name; diff: time
};

uint32_t Adler32(uint32_t sum, const char* p, size_t n) {
  uint32_t a = sum & 0xffff, b = sum >> 16;
  while (n > 0) {
    const size_t k = std::min<size_t>(n, 5552);  // no overflow before the modulo
    for (size_t i = 0; i < k; ++i) {
      a += static_cast<uint8_t>(p[i]);
      b += a;
    }
    a %= 65521;
    b %= 65521;
    p += k;
    n -= k;
  }
  return b << 16 | a;
}

std::optional<DataFile> ParseDataName(const std::string& f) {
  static const std::regex whole(R"(^([^.]+)\.(full|copy)\.data$)");
  static const std::regex delta(R"(^([^.]+)\.(inc|diff)\.(.+)\.data$)");
  std::smatch m;
  if (std::regex_match(f, m, whole)) return DataFile{f, m[1], m[2], ""};
  if (std::regex_match(f, m, delta)) return DataFile{f, m[1], m[2], m[3]};
  return std::nullopt;
}

struct VnbDirInfo {
  std::string dir;     // relative to the root; "" = the root itself
  std::string domain;  // from the .cpt file, or empty
};

// The .cpt file's domain name if dir (absolute) looks like a virtnbdbackup
// output directory: a .cpt file or a full/copy stream whose head is a meta
// frame.
std::optional<std::string> ProbeDir(Env* env, const std::string& abs) {
  auto names = env->ListDir(abs);
  if (!names.ok()) return std::nullopt;
  std::optional<std::string> domain;
  bool stream = false;
  for (const std::string& n : names.value()) {
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".cpt") == 0) domain = n.substr(0, n.size() - 4);
    if (stream) continue;
    auto d = ParseDataName(n);
    if (!d || (d->level != "full" && d->level != "copy")) continue;
    auto f = env->NewRandomAccessFile(abs + "/" + n);
    if (!f.ok()) continue;
    char head[kVnbFrameHeaderSize];
    if (f.value()->Size() >= sizeof head && f.value()->ReadAt(0, sizeof head, head).ok() &&
        LooksLikeVnbStream(head, sizeof head))
      stream = true;
  }
  if (domain) return domain;
  if (stream) return std::string();
  return std::nullopt;
}

// <name>...</name> of a domain XML (the first, the domain's own).
std::string DomainNameOf(const std::string& xml) {
  static const std::regex name(R"(<name>\s*([^<]+?)\s*</name>)");
  std::smatch m;
  return std::regex_search(xml, m, name) ? m[1].str() : std::string();
}

// Streams parsed at once when a group is loaded.
constexpr unsigned kParseThreads = 8;

// A stream as LoadGroup sees it: its meta frame once its whole structure
// parsed (a file that does not parse refuses its checkpoint), with the size
// and time it was parsed at.
struct Parsed {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  Result<VnbStreamMeta> meta = Status::NotFound("");
};

class VnbCatalog : public ForeignCatalog {
 public:
  VnbCatalog(Env* env, std::string root) : env_(env), root_(std::move(root)) {}

  Status Scan(const std::vector<VnbDirInfo>& dirs) {
    for (const VnbDirInfo& d : dirs) {
      std::string name = d.domain;
      if (name.empty()) {
        // The newest vmconfig's <name>, else the directory's name.
        if (auto files = env_->ListDir(Abs(d.dir)); files.ok()) {
          std::vector<std::string> xml;
          for (const std::string& f : files.value())
            if (f.rfind("vmconfig.", 0) == 0 && f.size() > 4 && f.compare(f.size() - 4, 4, ".xml") == 0)
              xml.push_back(f);
          std::sort(xml.begin(), xml.end());
          if (!xml.empty())
            if (auto text = env_->ReadWholeFile(Abs(d.dir) + "/" + xml.back(), 16 << 20); text.ok())
              name = DomainNameOf(text.value());
        }
      }
      const std::string dirname = d.dir.empty() ? Basename(root_) : Basename(d.dir);
      if (name.empty() || !ValidateName("group", name).ok() || groups_.count(name)) name = dirname;
      if (!ValidateName("group", name).ok() || groups_.count(name))
        return Status::InvalidArgument(Abs(d.dir) + ": no usable group name for this virtnbdbackup "
                                       "directory (domain '" + d.domain + "', directory '" +
                                       dirname + "')");
      groups_[name] = d;
    }
    return Status::Ok();
  }

  const char* kind() const override { return "virtnbdbackup directory"; }
  uint32_t block_size() const override { return kVnbBlockSize; }

  Result<std::vector<std::string>> ListGroups() const override {
    std::vector<std::string> out;
    for (const auto& g : groups_) out.push_back(g.first);
    return out;
  }
  std::string GroupDir(const std::string& group) const override {
    auto it = groups_.find(group);
    return it == groups_.end() ? root_ + "/.no-such-group/" + group : Abs(it->second.dir);
  }
  std::string DeltaPath(const std::string& group, const std::string& file) const override {
    return GroupDir(group) + "/" + file;
  }
  std::string ManifestPath(const std::string& group, const std::string& cp) const override {
    auto it = groups_.find(group);
    if (it == groups_.end() || it->second.domain.empty()) return GroupDir(group) + " (" + cp + ")";
    return GroupDir(group) + "/" + it->second.domain + ".cpt (" + cp + ")";
  }

  // `check --deep` of one stream: every lz4 frame decoded whole with its
  // block and content checksums (reads check the block checksums only:
  // chain/vnb/lz4_check.h), and the .chksum file where there is one.
  Status VerifyFile(const std::string& group, const std::string& file) const override {
    const std::string path = DeltaPath(group, file);
    {
      CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env_->NewRandomAccessFile(path));
      CHAINFS_ASSIGN_OR_RETURN(std::shared_ptr<const Layer> layer,
                               OpenVnbLayer(std::move(f), NextLayerId()));
      CHAINFS_RETURN_IF_ERROR(VerifyVnbLayer(*layer));
    }
    return VerifyChksumFile(path);
  }

  // virtnbdbackup (from 1.9.4x) writes FILE.chksum beside each stream: the
  // zlib adler32 of the whole file, in decimal.
  Status VerifyChksumFile(const std::string& path) const {
    auto text = env_->ReadWholeFile(path + ".chksum", 64);
    if (!text.ok()) {
      return text.status().code() == Status::Code::kNotFound ? Status::Ok() : text.status();
    }
    std::string t = text.value();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    uint64_t want = 0;
    try {
      size_t used = 0;
      want = std::stoull(t, &used, 0);
      if (used != t.size()) throw std::invalid_argument("");
    } catch (...) {
      return Status::Corruption(path + ".chksum: not a checksum ('" + t + "')");
    }
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env_->NewRandomAccessFile(path));
    uint32_t sum = 1;
    std::string buf(1 << 20, '\0');
    for (uint64_t at = 0; at < f->Size(); at += buf.size()) {
      const size_t n = std::min<uint64_t>(buf.size(), f->Size() - at);
      CHAINFS_RETURN_IF_ERROR(f->ReadAt(at, n, buf.data()));
      sum = Adler32(sum, buf.data(), n);
    }
    if (sum != want)
      return Status::Corruption(path + ": adler32 " + std::to_string(sum) + " differs from " +
                                std::to_string(want) + " in " + path + ".chksum");
    return Status::Ok();
  }

  Result<GroupState> LoadGroup(const std::string& group) const override {
    CHAINFS_RETURN_IF_ERROR(ValidateName("group", group));
    auto it = groups_.find(group);
    if (it == groups_.end()) return Status::NotFound("group '" + group + "' not found in " + root_);
    const VnbDirInfo& info = it->second;
    const std::string dir = Abs(info.dir);
    CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> files, env_->ListDir(dir));
    std::sort(files.begin(), files.end());
    std::set<std::string> present(files.begin(), files.end());

    GroupState g;
    g.name = group;
    // Every stream, parsed (or why not).
    std::map<std::string, Parsed> metas;
    std::vector<DataFile> data;
    for (const std::string& f : files) {
      auto d = ParseDataName(f);
      if (!d || !ValidateName("disk", d->disk).ok()) continue;
      data.push_back(*d);
    }
    // In parallel: parsing a cold stream waits on the disk for each frame
    // header, one file at a time left the device idle (a directory of ten
    // incrementals took 0.24 s cold on one thread).
    std::vector<Parsed> parsed(data.size());
    ParallelFor(data.size(), 2, kParseThreads,
                [&](size_t i) { parsed[i] = Parse(dir + "/" + data[i].file); });
    for (size_t i = 0; i < data.size(); ++i) metas.emplace(data[i].file, std::move(parsed[i]));

    // The checkpoint order.
    std::vector<std::string> order;
    std::string cpt_file;
    if (!info.domain.empty()) {
      cpt_file = dir + "/" + info.domain + ".cpt";
      auto text = env_->ReadWholeFile(cpt_file, 16 << 20);
      if (!text.ok()) return text.status();
      json j = json::parse(text.value(), nullptr, false);
      bool ok = j.is_array();
      if (ok)
        for (const json& e : j) {
          if (!e.is_string()) { ok = false; break; }
          order.push_back(e.get<std::string>());
        }
      if (!ok) return Status::Corruption(cpt_file + ": not a JSON list of checkpoint names");
    }
    if (order.empty()) {
      // No checkpoint list (a copy, or the file was lost): the streams' own
      // names, the full's first, then the incrementals by their number.
      std::set<std::string> seen;
      for (const DataFile& d : data)
        if ((d.level == "full" || d.level == "copy") && metas.at(d.file).meta.ok()) {
          std::string n = metas.at(d.file).meta->checkpoint;
          if (n.empty()) n = d.level;
          if (seen.insert(n).second) order.push_back(n);
        }
      std::vector<std::pair<uint64_t, std::string>> incs;
      for (const DataFile& d : data)
        if (d.level == "inc" && !seen.count(d.ident)) {
          seen.insert(d.ident);
          const size_t dot = d.ident.rfind('.');
          uint64_t k = 0;
          try { k = std::stoull(d.ident.substr(dot + 1)); } catch (...) { k = UINT64_MAX; }
          incs.push_back({k, d.ident});
        }
      std::sort(incs.begin(), incs.end());
      for (auto& p : incs) order.push_back(p.second);
    }

    std::map<std::string, std::string> refused;  // name -> reason
    std::vector<std::string> refused_order;
    auto refuse = [&](const std::string& name, const std::string& why) {
      if (refused.emplace(name, why).second) refused_order.push_back(name);
    };
    std::vector<Checkpoint> cps;
    std::set<std::string> prev_disks;
    std::string prev;  // the previous checkpoint of the list, refused or not
    for (size_t i = 0; i < order.size(); ++i) {
      const std::string& name = order[i];
      Checkpoint cp;
      cp.group = group;
      cp.name = name;
      cp.parent = i == 0 ? "" : prev;
      std::string why;
      if (!ValidateName("checkpoint", name).ok()) {
        refuse(name, (cpt_file.empty() ? dir : cpt_file) + ": checkpoint name '" + name +
                         "' is not one chainfs can show");
        prev = name;
        continue;
      }
      for (const DataFile& d : data) {
        const bool mine = i == 0 ? (d.level == "full" || d.level == "copy")
                                 : (d.level == "inc" && d.ident == name);
        if (!mine) continue;
        const std::string path = dir + "/" + d.file;
        const Result<VnbStreamMeta>& m = metas.at(d.file).meta;
        if (!m.ok()) {
          why = m.status().message();
          break;
        }
        const std::string cp_name = m->checkpoint.empty() ? d.level : m->checkpoint;
        if (i == 0 && d.level != "copy" && cp_name != name) {
          why = path + ": its meta frame names checkpoint '" + m->checkpoint + "', not '" + name + "'";
          break;
        }
        if (i > 0 && (m->checkpoint != name || m->parent != prev)) {
          why = path + ": its meta frame names checkpoint '" + m->checkpoint + "' with parent '" +
                m->parent + "', but " + (cpt_file.empty() ? dir : cpt_file) + " puts '" + name +
                "' after '" + prev + "'";
          break;
        }
        if (i > 0 && !prev_disks.count(d.disk)) {
          why = path + ": an incremental of disk " + d.disk + ", which the previous checkpoint " +
                prev + " does not have (its first backup must be full)";
          break;
        }
        AddDisk(d, i == 0 ? DeltaKind::kFull : DeltaKind::kIncremental, i == 0 ? "" : prev,
                metas.at(d.file), &cp);
      }
      if (why.empty() && i > 0)
        for (const std::string& disk : prev_disks)
          if (cp.FindDisk(disk) == nullptr) {
            const std::string want = disk + ".inc." + name + ".data";
            why = dir + "/" + want + ": missing (disk " + disk + " is in checkpoint " + prev +
                  (present.count(want + ".partial") ? "; only a .partial file: that backup did not finish"
                                                    : "") +
                  ")";
            break;
          }
      if (why.empty() && cp.disks.empty())
        why = dir + ": no stream of checkpoint " + name + " (" + (i == 0 ? "*.full.data" : "*.inc." + name + ".data") + ")";
      if (why.empty() && i > 0 && refused.count(prev))
        why = "its chain passes through refused checkpoint " + prev;
      if (!why.empty()) {
        refuse(name, why);
      } else {
        prev_disks.clear();
        for (const DiskEntry& e : cp.disks) prev_disks.insert(e.name);
        AddConfig(dir, name, name, &cp);
        cps.push_back(std::move(cp));
      }
      if (!why.empty() && i == 0) prev_disks.clear();
      if (!why.empty() && i > 0) {
        // Later checkpoints need this one: keep the disk set for messages.
        for (const DataFile& d : data)
          if (d.level == "inc" && d.ident == name) prev_disks.insert(d.disk);
      }
      prev = name;
    }
    // Streams that belong to no listed checkpoint.
    std::set<std::string> listed(order.begin(), order.end());
    for (const DataFile& d : data)
      if (d.level == "inc" && !listed.count(d.ident) && ValidateName("checkpoint", d.ident).ok())
        refuse(d.ident, dir + "/" + d.file + ": checkpoint " + d.ident + " is not in " +
                            (cpt_file.empty() ? std::string("the checkpoint list") : cpt_file));
    AddDifferentials(dir, data, metas, &cps, &refused, &refused_order);

    for (size_t i = 0; i < cps.size(); ++i) cps[i].sequence = i + 1;
    g.checkpoints = std::move(cps);
    for (const std::string& n : refused_order)
      g.refused.push_back({n, cpt_file.empty() ? dir : cpt_file, refused.at(n), "backup"});
    std::sort(g.refused.begin(), g.refused.end(),
              [](const RefusedCheckpoint& a, const RefusedCheckpoint& b) { return a.name < b.name; });
    g.Index();
    return g;
  }

 private:
  std::string Abs(const std::string& rel) const { return rel.empty() ? root_ : root_ + "/" + rel; }
  static std::string Basename(const std::string& p) {
    std::string s = p;
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    const size_t slash = s.rfind('/');
    return slash == std::string::npos ? s : s.substr(slash + 1);
  }

  // vmconfig.<ident>.xml as domain.xml.
  void AddConfig(const std::string& dir, const std::string& ident, const std::string&,
                 Checkpoint* cp) const {
    auto text = env_->ReadWholeFile(dir + "/vmconfig." + ident + ".xml", 16 << 20);
    if (text.ok()) cp->configs.push_back({"domain.xml", text.value()});
  }

  // Differentials: D.diff.TIME.data, the changes since the checkpoint their
  // meta frame names as parent. The streams of one run (one per disk, times
  // within a minute of each other) form checkpoint PARENT.diff.TIME, placed
  // after its parent.
  void AddDifferentials(const std::string& dir, const std::vector<DataFile>& data,
                        const std::map<std::string, Parsed>& metas,
                        std::vector<Checkpoint>* cps, std::map<std::string, std::string>* refused,
                        std::vector<std::string>* refused_order) const {
    std::vector<std::pair<uint64_t, const DataFile*>> diffs;
    for (const DataFile& d : data) {
      if (d.level != "diff") continue;
      uint64_t t = 0;
      try { t = std::stoull(d.ident); } catch (...) { continue; }
      diffs.push_back({t, &d});
    }
    std::sort(diffs.begin(), diffs.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < diffs.size();) {
      size_t j = i;
      std::set<std::string> disks;
      while (j < diffs.size() && diffs[j].first - diffs[i].first <= 60 &&
             disks.insert(diffs[j].second->disk).second)
        ++j;
      const std::string name = "diff." + diffs[i].second->ident;
      Checkpoint cp;
      cp.name = name;
      std::string why;
      std::string parent;
      for (size_t k = i; k < j; ++k) {
        const DataFile& d = *diffs[k].second;
        const Result<VnbStreamMeta>& m = metas.at(d.file).meta;
        if (!m.ok()) { why = m.status().message(); break; }
        if (parent.empty()) parent = m->parent;
        if (m->parent != parent) {
          why = dir + "/" + d.file + ": its parent '" + m->parent + "' differs from '" + parent +
                "' of the other disks' differentials of the same time";
          break;
        }
        AddDisk(d, DeltaKind::kDifferential, parent, metas.at(d.file), &cp);
      }
      i = j;
      auto pos = std::find_if(cps->begin(), cps->end(), [&](const Checkpoint& c) { return c.name == parent; });
      if (why.empty() && pos == cps->end())
        why = "its base checkpoint '" + parent + "' " +
              (refused->count(parent) ? "is refused" : "does not exist");
      if (why.empty()) {
        const Checkpoint& base = *pos;
        for (const DiskEntry& b : base.disks)
          if (cp.FindDisk(b.name) == nullptr) {
            why = dir + ": no differential of disk " + b.name + " for " + name;
            break;
          }
      }
      if (!why.empty()) {
        if (refused->emplace(name, why).second) refused_order->push_back(name);
        continue;
      }
      cp.group = pos->group;
      cp.parent = parent;
      AddConfig(dir, diffs[i - 1].second->ident, name, &cp);
      // After its parent and the differentials already placed there.
      auto at = pos + 1;
      while (at != cps->end() && at->parent == parent && at->name.rfind("diff.", 0) == 0) ++at;
      cps->insert(at, std::move(cp));
    }
  }

  // The stream at path, parsed again only when its size or time changed.
  Parsed Parse(const std::string& path) const {
    auto st = env_->Stat(path);
    if (!st.ok()) return {0, 0, st.status()};
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = parsed_.find(path);
      if (it != parsed_.end() && it->second.size == st.value().size &&
          it->second.mtime_ns == st.value().mtime_ns)
        return it->second;
    }
    Result<VnbStreamMeta> meta = [&]() -> Result<VnbStreamMeta> {
      CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env_->NewRandomAccessFile(path));
      CHAINFS_ASSIGN_OR_RETURN(VnbStream s, ParseSparseStream(*f));
      return s.meta;
    }();
    Parsed p{st.value().size, st.value().mtime_ns, std::move(meta)};
    std::lock_guard<std::mutex> l(mu_);
    parsed_.insert_or_assign(path, p);
    return p;
  }

  // Adds d's stream, parsed as p (its meta valid), to cp as a disk entry.
  static void AddDisk(const DataFile& d, DeltaKind kind, const std::string& base, const Parsed& p,
                      Checkpoint* cp) {
    DiskEntry e;
    e.name = d.disk;
    e.delta_file = d.file;
    e.kind = kind;
    e.base = base;
    e.virtual_size = p.meta->virtual_size;
    e.stored_bytes = p.size;
    e.format = kVnbLayerFormat.name;
    cp->disks.push_back(std::move(e));
    cp->created_unix_ns = std::max(cp->created_unix_ns, p.mtime_ns);
  }

  Env* env_;
  std::string root_;
  std::map<std::string, VnbDirInfo> groups_;
  mutable std::mutex mu_;
  mutable std::map<std::string, Parsed> parsed_;
};

}  // namespace

Result<std::unique_ptr<ForeignCatalog>> OpenVnbCatalog(Env* env, const std::string& path) {
  std::vector<VnbDirInfo> dirs;
  if (auto domain = ProbeDir(env, path)) {
    dirs.push_back({"", *domain});
  } else {
    if (auto st = env->Stat(path); st.ok() && !st.value().is_dir)
      return Status::NotFound(path + " is a file, not a virtnbdbackup output directory");
    auto names = env->ListDir(path);
    if (!names.ok()) return names.status();
    std::sort(names.value().begin(), names.value().end());
    for (const std::string& n : names.value()) {
      if (n.empty() || n[0] == '.') continue;
      auto st = env->Stat(path + "/" + n);
      if (!st.ok() || !st.value().is_dir || st.value().is_symlink) continue;
      if (auto domain = ProbeDir(env, path + "/" + n)) dirs.push_back({n, *domain});
    }
  }
  if (dirs.empty())
    return Status::NotFound(path + " holds no virtnbdbackup output directory");
  auto c = std::make_unique<VnbCatalog>(env, path);
  CHAINFS_RETURN_IF_ERROR(c->Scan(dirs));
  return std::unique_ptr<ForeignCatalog>(std::move(c));
}

}  // namespace chainfs
