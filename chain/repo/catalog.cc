#include "chain/repo/catalog.h"

#include <cstring>
#include <algorithm>
#include <string_view>
#include <unordered_set>

#include "chain/base/coding.h"
#include "chain/base/hash.h"
#include "chain/base/names.h"
#include "chain/layer/registry.h"

namespace chainfs {

std::optional<ManifestStamp> StampOf(const FileInfo& info) {
  if (info.type != FileType::kRegular || info.is_symlink) return std::nullopt;
  return ManifestStamp{info.id.ino, info.size, info.mtime_ns, info.ctime_ns};
}

namespace {

void PutString(std::string* out, const std::string& s) {
  PutFixed32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

std::string GetString(Decoder* d) {
  const uint32_t n = d->Get32();
  if (!d->ok() || n > d->remaining()) {
    d->Skip(d->remaining() + 1);  // marks the decoder failed
    return {};
  }
  std::string s(n, '\0');
  d->GetBytes(s.data(), n);
  return s;
}

void EncodeCheckpoint(const Checkpoint& c, std::string* out) {
  PutString(out, c.name);
  PutFixed64(out, c.sequence);
  PutFixed64(out, static_cast<uint64_t>(c.created_unix_ns));
  PutString(out, c.parent);
  PutFixed32(out, static_cast<uint32_t>(c.disks.size()));
  for (const DiskEntry& d : c.disks) {
    PutString(out, d.name);
    PutString(out, d.delta_file);
    PutFixed8(out, static_cast<uint8_t>(d.kind));
    PutString(out, d.base);
    PutFixed64(out, d.virtual_size);
    PutFixed64(out, d.stored_bytes);
    PutString(out, d.format);
    PutFixed8(out, d.delta_id ? 1 : 0);
    if (d.delta_id) PutBytes(out, d.delta_id->bytes.data(), d.delta_id->bytes.size());
    PutFixed8(out, d.index_digest ? 1 : 0);
    if (d.index_digest) PutFixed64(out, *d.index_digest);
  }
  PutFixed32(out, static_cast<uint32_t>(c.configs.size()));
  for (const ConfigFile& f : c.configs) {
    PutString(out, f.name);
    PutString(out, f.content);
  }
  PutFixed8(out, c.libvirt ? 1 : 0);
  if (c.libvirt)
    for (const std::string* s : {&c.libvirt->uri, &c.libvirt->domain, &c.libvirt->uuid,
                                 &c.libvirt->checkpoint})
      PutString(out, *s);
}

// True if v[i].*field equals that of an earlier element (a checkpoint has a
// few disks and configs: a scan, no set).
template <typename T>
bool Twice(const std::vector<T>& v, size_t i, std::string T::*field) {
  for (size_t k = 0; k < i; ++k)
    if (v[k].*field == v[i].*field) return true;
  return false;
}

// What Checkpoint::Decode checks of a manifest's values, for an entry that
// was not parsed from JSON: the catalogue's checksum guards against damage,
// this against a catalogue that was written wrong. Messages name where(),
// made only for one (10,000 entries, each with a string and a set of its
// own, were a fifth of a deep group's load).
template <typename Where>
Status CheckEntry(const Checkpoint& c, const Where& where) {
  auto bad = [&](const std::string& what) { return Status::Corruption(where() + ": " + what); };
  if (c.sequence == 0) return bad("sequence 0");
  for (const std::string* n : {&c.group, &c.name})
    if (Status st = ValidateName(n == &c.group ? "group" : "checkpoint", *n); !st.ok())
      return bad(st.message());
  if (!c.parent.empty())
    if (Status st = ValidateName("checkpoint", c.parent); !st.ok()) return bad(st.message());
  for (size_t i = 0; i < c.disks.size(); ++i) {
    const DiskEntry& d = c.disks[i];
    Status st = ValidateName("disk", d.name);
    if (st.ok()) st = ValidateName("delta file", d.delta_file);
    if (!st.ok()) return bad(st.message());
    if (Twice(c.disks, i, &DiskEntry::name)) return bad("disk '" + d.name + "' twice");
    if (static_cast<int>(d.kind) > static_cast<int>(DeltaKind::kDifferential))
      return bad("disk '" + d.name + "': unknown kind");
    if ((d.kind == DeltaKind::kFull) != d.base.empty())
      return bad("disk '" + d.name + "': a full delta has no base, other kinds need one");
    if (!d.base.empty())
      if (Status b = ValidateName("checkpoint", d.base); !b.ok()) return bad(b.message());
    if (FindLayerFormat(d.format) == nullptr)
      return bad("disk '" + d.name + "': unknown delta format '" + d.format + "'");
  }
  for (size_t i = 0; i < c.configs.size(); ++i) {
    const ConfigFile& f = c.configs[i];
    if (Status st = ValidateName("config file", f.name); !st.ok()) return bad(st.message());
    if (Twice(c.configs, i, &ConfigFile::name)) return bad("config '" + f.name + "' twice");
  }
  return Status::Ok();
}

// A presence flag: 0 or 1, anything else fails the decoder.
bool GetFlag(Decoder* d) {
  const uint8_t f = d->Get8();
  if (f > 1) d->Skip(d->remaining() + 1);
  return f == 1;
}

bool DecodeCheckpoint(Decoder* d, const std::string& group, Checkpoint* c) {
  c->group = group;
  c->name = GetString(d);
  c->sequence = d->Get64();
  c->created_unix_ns = static_cast<int64_t>(d->Get64());
  c->parent = GetString(d);
  const uint32_t ndisks = d->Get32();
  for (uint32_t i = 0; d->ok() && i < ndisks; ++i) {
    DiskEntry e;
    e.name = GetString(d);
    e.delta_file = GetString(d);
    e.kind = static_cast<DeltaKind>(d->Get8());
    e.base = GetString(d);
    e.virtual_size = d->Get64();
    e.stored_bytes = d->Get64();
    e.format = GetString(d);
    if (GetFlag(d)) {
      DeltaId id;
      d->GetBytes(id.bytes.data(), id.bytes.size());
      e.delta_id = id;
    }
    if (GetFlag(d)) e.index_digest = d->Get64();
    c->disks.push_back(std::move(e));
  }
  const uint32_t nconfigs = d->Get32();
  for (uint32_t i = 0; d->ok() && i < nconfigs; ++i) {
    ConfigFile f;
    f.name = GetString(d);
    f.content = GetString(d);
    c->configs.push_back(std::move(f));
  }
  if (GetFlag(d)) {
    LibvirtRecord r;
    for (std::string* s : {&r.uri, &r.domain, &r.uuid, &r.checkpoint}) *s = GetString(d);
    c->libvirt = std::move(r);
  }
  return d->ok();
}

}  // namespace

std::string EncodeCatalog(const std::string& group,
                          const std::vector<std::pair<ManifestStamp, const Checkpoint*>>& entries) {
  std::string out(kCatalogMagic, sizeof kCatalogMagic);
  PutFixed32(&out, kCatalogVersion);
  PutFixed32(&out, 0);
  PutString(&out, group);
  PutFixed64(&out, entries.size());
  for (const auto& [stamp, cp] : entries) {
    PutFixed64(&out, stamp.inode);
    PutFixed64(&out, stamp.size);
    PutFixed64(&out, static_cast<uint64_t>(stamp.mtime_ns));
    PutFixed64(&out, static_cast<uint64_t>(stamp.ctime_ns));
    EncodeCheckpoint(*cp, &out);
  }
  PutFixed64(&out, Checksum64(out.data(), out.size()));
  return out;
}

Result<Catalog> DecodeCatalog(std::string_view bytes, const std::string& where,
                              const std::string& group) {
  auto bad = [&](const std::string& what) {
    return Status::Corruption(where + ": " + what + " (a cache: the manifests are read instead)");
  };
  if (bytes.size() < sizeof kCatalogMagic + 8 + 8 ||
      std::memcmp(bytes.data(), kCatalogMagic, sizeof kCatalogMagic) != 0)
    return bad("not a manifest catalogue");
  const size_t body = bytes.size() - 8;
  if (DecodeFixed64(bytes.data() + body) != Checksum64(bytes.data(), body))
    return bad("checksum mismatch");
  Decoder d(bytes.data() + sizeof kCatalogMagic, body - sizeof kCatalogMagic);
  if (const uint32_t v = d.Get32(); v != kCatalogVersion)
    return bad("version " + std::to_string(v) + ", this chainfs writes " +
               std::to_string(kCatalogVersion));
  if (d.Get32() != 0) return bad("reserved field not 0");
  if (GetString(&d) != group) return bad("not the catalogue of group " + group);
  const uint64_t n = d.Get64();
  Catalog out;
  const uint64_t room = std::min<uint64_t>(n, d.remaining() / 64);  // an entry is at least 64 bytes
  out.stamps.reserve(room);
  out.checkpoints.reserve(room + 1);
  for (uint64_t i = 0; d.ok() && i < n; ++i) {
    ManifestStamp stamp;
    stamp.inode = d.Get64();
    stamp.size = d.Get64();
    stamp.mtime_ns = static_cast<int64_t>(d.Get64());
    stamp.ctime_ns = static_cast<int64_t>(d.Get64());
    Checkpoint& c = out.checkpoints.emplace_back();
    if (!DecodeCheckpoint(&d, group, &c)) {
      out.checkpoints.pop_back();
      break;
    }
    CHAINFS_RETURN_IF_ERROR(CheckEntry(c, [&] { return where + ": entry " + std::to_string(i); }));
    out.stamps.push_back(stamp);
  }
  std::unordered_set<std::string_view> names;  // views of strings that no longer move
  names.reserve(out.checkpoints.size());
  for (const Checkpoint& c : out.checkpoints)
    if (!names.insert(c.name).second) return bad("checkpoint " + c.name + " twice");
  if (!d.ok()) return bad("truncated entry " + std::to_string(out.size()));
  if (d.remaining() != 0) return bad(std::to_string(d.remaining()) + " bytes after the entries");
  return out;
}

}  // namespace chainfs
