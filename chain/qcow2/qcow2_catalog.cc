#include "chain/qcow2/qcow2_catalog.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "chain/base/names.h"
#include "chain/qcow2/qcow2_header.h"
#include "chain/qcow2/qcow2_layer.h"

namespace chainfs {
namespace {

using nlohmann::json;

std::string Basename(const std::string& p) {
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}
std::string Dirname(const std::string& p) {
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}
// s made a valid chainfs name (characters outside A-Z a-z 0-9 . _ - become
// '_').
std::string ValidName(std::string s) {
  for (char& c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      c = '_';
  if (s.empty() || s[0] == '.') s = "_" + s;
  if (s.size() > 120) s.resize(120);
  return s;
}
// The file name without its last extension, as a valid name.
std::string ShownName(const std::string& path) {
  std::string s = Basename(path);
  const size_t dot = s.rfind('.');
  if (dot != std::string::npos && dot > 0) s.resize(dot);
  return ValidName(s);
}

// What qemu-img info --output=json tells of a snapshot.
nlohmann::json SnapshotJson(const Qcow2Snapshot& s) {
  return {{"id", s.id},
          {"name", s.name},
          {"date-sec", s.date_sec},
          {"date-nsec", s.date_nsec},
          {"vm-clock-sec", s.vm_clock_nsec / 1000000000},
          {"vm-clock-nsec", s.vm_clock_nsec % 1000000000},
          {"vm-state-size", s.vm_state_size}};
}

// One image as inspected: what it is, and its header.
struct Image {
  std::string path;
  std::string format;  // "qcow2" or "raw"
  FileId id;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  Result<Qcow2Header> header = Status::NotFound("");
  // Its internal snapshots (qcow2, header read).
  Result<std::vector<Qcow2Snapshot>> snapshots = std::vector<Qcow2Snapshot>{};
};

// One link of a chain, base first once built.
struct Link {
  Image image;
  std::string why;  // non-empty: refused
};

class Qcow2Catalog : public ForeignCatalog {
 public:
  Qcow2Catalog(Env* env, std::string dir, std::string only)
      : env_(env), dir_(std::move(dir)), only_(std::move(only)) {}

  const char* kind() const override { return only_.empty() ? "directory of qcow2 images" : "qcow2 image"; }
  uint32_t block_size() const override { return 64 << 10; }

  Result<std::vector<std::string>> ListGroups() const override {
    CHAINFS_ASSIGN_OR_RETURN(auto tops, Tops());
    std::vector<std::string> out;
    for (const auto& t : tops) out.push_back(t.first);
    return out;
  }
  std::string GroupDir(const std::string&) const override { return dir_; }
  std::string DeltaPath(const std::string&, const std::string& file) const override {
    return !file.empty() && file[0] == '/' ? file : dir_ + "/" + file;
  }
  // `qemu-img snapshot -c/-d` rewrites an image in place.
  bool ChangesInPlace() const override { return true; }
  std::string ManifestPath(const std::string& group, const std::string& cp) const override {
    return dir_ + " (chain " + group + ", image " + cp + ")";
  }

  Status VerifyFile(const std::string& group, const std::string& file) const override {
    const std::string path = DeltaPath(group, file);
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env_->NewRandomAccessFile(path));
    CHAINFS_ASSIGN_OR_RETURN(bool qcow2, IsQcow2File(*f));
    if (!qcow2) return Status::Ok();  // raw: nothing to check
    CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> problems, CheckQcow2Structure(*f));
    if (problems.empty()) return Status::Ok();
    std::string all;
    for (const std::string& p : problems) all += (all.empty() ? "" : "; ") + p;
    return Status::Corruption(all);
  }

  Result<GroupState> LoadGroup(const std::string& group) const override {
    CHAINFS_RETURN_IF_ERROR(ValidateName("group", group));
    CHAINFS_ASSIGN_OR_RETURN(auto tops, Tops());
    auto it = tops.find(group);
    if (it == tops.end()) return Status::NotFound("group '" + group + "' not found in " + dir_);
    const std::vector<Link>& chain = it->second;
    GroupState g;
    g.name = group;
    std::set<std::string> names;
    std::string prev, refused_below;
    for (const Link& l : chain) {
      std::string name = ShownName(l.image.path);
      for (int k = 2; names.count(name); ++k) name = ShownName(l.image.path) + "-" + std::to_string(k);
      names.insert(name);
      std::string why = l.why;
      if (why.empty() && !refused_below.empty())
        why = l.image.path + ": its backing chain passes through refused image " + refused_below;
      if (!why.empty()) {
        g.refused.push_back({name, l.image.path, why, "image"});
        if (refused_below.empty()) refused_below = l.image.path;
        prev = name;
        continue;
      }
      // A checkpoint of the image as of when (its active state, or one of
      // its internal snapshots), on top of its backing image's.
      auto add = [&](const std::string& cp_name, const Qcow2Snapshot* snap) {
        Checkpoint cp;
        cp.group = group;
        cp.name = cp_name;
        cp.parent = prev;
        cp.sequence = g.checkpoints.size() + 1;
        cp.created_unix_ns =
            snap ? int64_t{snap->date_sec} * 1000000000 + snap->date_nsec : l.image.mtime_ns;
        DiskEntry e;
        e.name = "disk";
        // A file of the directory by its name, any other by its absolute path.
        e.delta_file = Dirname(l.image.path) == dir_
                           ? Basename(l.image.path)
                           : std::filesystem::absolute(l.image.path).lexically_normal().string();
        e.kind = prev.empty() ? DeltaKind::kFull : DeltaKind::kIncremental;
        e.base = prev;
        e.virtual_size = snap                        ? snap->disk_size
                         : l.image.format == "raw" ? l.image.size
                                                   : l.image.header->virtual_size;
        e.stored_bytes = l.image.size;
        e.format = l.image.format;
        if (snap) e.part = Qcow2SnapshotPart(*snap);
        cp.disks.push_back(std::move(e));
        cp.configs.push_back({"image.json", InfoJson(l, chain, snap).dump(2) + "\n"});
        g.checkpoints.push_back(std::move(cp));
      };
      // Its internal snapshots first, oldest first (the table's order), each
      // named IMAGE.TAG (IMAGE.ID without a tag); they branch off the
      // backing image's checkpoint as the image itself does: a snapshot
      // reads through the same backing file, and the active image is not
      // composed over its snapshots (a cluster discarded since a snapshot
      // reads from the backing file again).
      if (!l.image.snapshots.ok()) {
        std::string sname = name + ".snapshots";
        for (int k = 2; names.count(sname); ++k) sname = name + ".snapshots-" + std::to_string(k);
        names.insert(sname);
        g.refused.push_back({sname, l.image.path, l.image.snapshots.status().message(), "image"});
      } else {
        for (const Qcow2Snapshot& snap : l.image.snapshots.value()) {
          const std::string base_name =
              ValidName(ShownName(l.image.path) + "." + (snap.name.empty() ? snap.id : snap.name));
          std::string sname = base_name;
          for (int k = 2; names.count(sname); ++k) sname = base_name + "-" + std::to_string(k);
          names.insert(sname);
          add(sname, &snap);
        }
      }
      add(name, nullptr);
      prev = name;
    }
    std::sort(g.refused.begin(), g.refused.end(),
              [](const RefusedCheckpoint& a, const RefusedCheckpoint& b) { return a.name < b.name; });
    g.Index();
    return g;
  }

 private:
  // What qemu-img info --output=json says of the image (the fields that
  // matter to a reader).
  // For a snapshot's checkpoint (snap), the snapshot's size and, as
  // "snapshot", what QEMU lists of it.
  static json InfoJson(const Link& l, const std::vector<Link>& chain, const Qcow2Snapshot* snap) {
    json j;
    j["filename"] = l.image.path;
    j["format"] = l.image.format;
    j["actual-size"] = l.image.size;
    if (l.image.format == "raw") {
      j["virtual-size"] = l.image.size;
      return j;
    }
    const Qcow2Header& h = l.image.header.value();
    j["virtual-size"] = h.virtual_size;
    j["cluster-size"] = h.cluster_size();
    j["dirty-flag"] = h.dirty();
    if (!h.backing_file.empty()) {
      j["backing-filename"] = h.backing_file;
      for (size_t i = 1; i < chain.size(); ++i)
        if (chain[i].image.path == l.image.path) j["full-backing-filename"] = chain[i - 1].image.path;
      if (!h.backing_format.empty()) j["backing-filename-format"] = h.backing_format;
    }
    json data;
    data["compat"] = h.version == 2 ? "0.10" : "1.1";
    data["compression-type"] = h.compression == Qcow2Compression::kZstd ? "zstd" : "zlib";
    if (h.version == 3) {
      data["extended-l2"] = h.extended_l2;
      data["refcount-bits"] = 1u << h.refcount_order;
      data["corrupt"] = false;
    }
    j["format-specific"] = {{"type", "qcow2"}, {"data", data}};
    if (l.image.snapshots.ok() && !l.image.snapshots->empty()) {
      json list = json::array();
      for (const Qcow2Snapshot& s : l.image.snapshots.value()) list.push_back(SnapshotJson(s));
      j["snapshots"] = list;
    }
    if (snap != nullptr) {
      j["virtual-size"] = snap->disk_size;
      j["snapshot"] = SnapshotJson(*snap);
    }
    return j;
  }

  // The image at path (format "" : probed), its header parsed again only
  // when its size, time or inode changed. An unchanged qcow2 image costs a
  // stat: every lookup of a group lists the directory again, and opening
  // and probing each of a deep chain's images was most of a cold first
  // lookup (12 ms at depth 100).
  Result<Image> Inspect(const std::string& path, std::string format) const {
    CHAINFS_ASSIGN_OR_RETURN(FileInfo st, env_->Stat(path));
    if (st.is_dir) return Status::InvalidArgument(path + ": a directory, not an image");
    if (st.id.known() && (format.empty() || format == "qcow2")) {
      std::lock_guard<std::mutex> l(mu_);
      auto it = cache_.find(path);
      if (it != cache_.end() && it->second.size == st.size && it->second.mtime_ns == st.mtime_ns &&
          it->second.id == st.id)
        return it->second;
    }
    CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> f, env_->NewRandomAccessFile(path));
    f->AdviseRandom();  // as OpenQcow2Layer's: no readahead around the header
    Image im;
    im.path = path;
    im.id = f->Id();
    im.size = f->Size();
    im.mtime_ns = st.mtime_ns;
    if (format.empty()) {
      CHAINFS_ASSIGN_OR_RETURN(bool qcow2, IsQcow2File(*f));
      format = qcow2 ? "qcow2" : "raw";
    }
    im.format = format;
    if (format != "qcow2") return im;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = cache_.find(path);
      if (it != cache_.end() && it->second.size == im.size && it->second.mtime_ns == im.mtime_ns &&
          it->second.id == im.id)
        return it->second;
    }
    im.header = ReadQcow2Header(*f);
    if (im.header.ok()) im.snapshots = ReadQcow2Snapshots(*f, im.header.value());
    std::lock_guard<std::mutex> l(mu_);
    cache_.insert_or_assign(path, im);
    return im;
  }

  // Where QEMU looks for image's backing file.
  static std::string BackingPath(const Image& image) {
    const std::string& b = image.header->backing_file;
    const std::string p = !b.empty() && b[0] == '/' ? b : Dirname(image.path) + "/" + b;
    return std::filesystem::path(p).lexically_normal().string();
  }

  // The chain below top (a qcow2 image), base first.
  std::vector<Link> Chain(const std::string& top) const {
    std::vector<Link> rev;
    std::set<std::pair<uint64_t, uint64_t>> seen;
    std::string path = top, format;
    for (;;) {
      auto im = Inspect(path, format);
      if (!im.ok()) {
        if (rev.empty()) {
          rev.push_back({Image{path, "raw"}, im.status().message()});
        } else {
          Link& above = rev.back();
          above.why = above.image.path + ": its backing file '" + above.image.header->backing_file +
                      "' cannot be opened (" + im.status().message() + ")";
        }
        break;
      }
      if (im->id.known() && !seen.insert({im->id.dev, im->id.ino}).second) {
        Link& above = rev.back();
        above.why = above.image.path + ": backing chain loop (its backing file " + path +
                    " is already in the chain above it)";
        break;
      }
      Link l{std::move(im).value(), ""};
      if (l.image.format == "qcow2" && !l.image.header.ok()) {
        l.why = l.image.header.status().message();
        rev.push_back(std::move(l));
        break;
      }
      // A refused image (the corrupt bit, encryption, ...) is shown refused;
      // its header still names the chain below it.
      if (l.image.format == "qcow2") l.why = l.image.header->refused.message();
      if (l.image.format == "raw" || l.image.header->backing_file.empty()) {
        rev.push_back(std::move(l));
        break;
      }
      format = l.image.header->backing_format;
      path = BackingPath(l.image);
      if (!format.empty() && format != "qcow2" && format != "raw") {
        if (l.why.empty())
          l.why = l.image.path + ": backing file " + path + " has format '" + format +
                  "', which chainfs does not read (qcow2, raw)";
        rev.push_back(std::move(l));
        break;
      }
      rev.push_back(std::move(l));
      if (rev.size() > 100000) {
        rev.back().why = top + ": backing chain deeper than 100000 images";
        break;
      }
    }
    std::reverse(rev.begin(), rev.end());
    // A refused link refuses only what is above it: mark nothing below.
    return rev;
  }

  // Group name -> the chain below its top image, base first.
  Result<std::map<std::string, std::vector<Link>>> Tops() const {
    std::vector<Image> images;
    if (!only_.empty()) {
      CHAINFS_ASSIGN_OR_RETURN(Image im, Inspect(only_, "qcow2"));
      images.push_back(std::move(im));
    } else {
      CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> names, env_->ListDir(dir_));
      std::sort(names.begin(), names.end());
      for (const std::string& n : names) {
        if (n.empty() || n[0] == '.') continue;
        auto im = Inspect(dir_ + "/" + n, "");
        if (im.ok() && im->format == "qcow2") images.push_back(std::move(im).value());
      }
    }
    // Images some other image of the directory names as its backing file.
    std::set<std::pair<uint64_t, uint64_t>> backing;
    for (const Image& im : images) {
      if (!im.header.ok() || im.header->backing_file.empty()) continue;
      if (auto b = env_->Stat(BackingPath(im)); b.ok() && b->id.known())
        backing.insert({b->id.dev, b->id.ino});
    }
    std::map<std::string, std::vector<Link>> tops;
    std::set<std::pair<uint64_t, uint64_t>> reached;
    auto add = [&](const Image& im) {
      std::string name = ShownName(im.path);
      for (int k = 2; tops.count(name); ++k) name = ShownName(im.path) + "-" + std::to_string(k);
      std::vector<Link>& chain = tops[name] = Chain(im.path);
      for (const Link& l : chain) reached.insert({l.image.id.dev, l.image.id.ino});
    };
    for (const Image& im : images)
      if (!backing.count({im.id.dev, im.id.ino})) add(im);
    // Images only a loop reaches: each loop shown once, as a refused group.
    for (const Image& im : images)
      if (!reached.count({im.id.dev, im.id.ino})) add(im);
    return tops;
  }

  Env* env_;
  std::string dir_;
  std::string only_;  // a single image: only its chain
  mutable std::mutex mu_;
  mutable std::map<std::string, Image> cache_;
};

}  // namespace

Result<std::unique_ptr<ForeignCatalog>> OpenQcow2Catalog(Env* env, const std::string& path_in) {
  std::string path = path_in;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  CHAINFS_ASSIGN_OR_RETURN(FileInfo st, env->Stat(path));
  auto is_qcow2 = [&](const std::string& p) {
    auto f = env->NewRandomAccessFile(p);
    if (!f.ok()) return false;
    f.value()->AdviseRandom();
    auto q = IsQcow2File(*f.value());
    return q.ok() && q.value();
  };
  if (!st.is_dir) {
    if (!is_qcow2(path)) return Status::NotFound(path + " is not a qcow2 image");
    return std::unique_ptr<ForeignCatalog>(std::make_unique<Qcow2Catalog>(env, Dirname(path), path));
  }
  CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> names, env->ListDir(path));
  for (const std::string& n : names) {
    if (n.empty() || n[0] == '.') continue;
    auto s = env->Stat(path + "/" + n);
    if (s.ok() && !s.value().is_dir && is_qcow2(path + "/" + n))
      return std::unique_ptr<ForeignCatalog>(std::make_unique<Qcow2Catalog>(env, path, ""));
  }
  return Status::NotFound(path + " holds no qcow2 image");
}

}  // namespace chainfs
