#include "chain/repo/manifest.h"

#include <algorithm>
#include <ctime>
#include <type_traits>
#include <utility>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <type_traits>

#include "chain/native/delta_format.h"
#include "chain/base/names.h"
#include "chain/layer/registry.h"

namespace chainfs {

using nlohmann::json;

namespace {

// The keys each JSON object of these files may hold. We write these files,
// so any other key is damage or a hand edit gone wrong (a misspelled
// "config" would otherwise be dropped without a word): it is refused,
// naming the key. A new field is one more name here.
constexpr std::string_view kRepoConfigKeys[] = {"format", "version", "block_size",
                                                "compression", "compression_level"};
constexpr std::string_view kCheckpointKeys[] = {"format",   "version", "group",
                                                "name",     "sequence", "created",
                                                "created_unix_ns", "parent", "disks",
                                                "config", "configs", "libvirt"};
constexpr std::string_view kDiskKeys[] = {"name",         "delta",        "kind",  "base",
                                          "virtual_size", "stored_bytes", "format", "id",
                                          "index_digest"};
constexpr std::string_view kConfigKeys[] = {"name", "content"};
constexpr std::string_view kLibvirtKeys[] = {"uri", "domain", "uuid", "checkpoint"};

template <size_t N>
Status OnlyKeys(const json& j, const std::string_view (&allowed)[N], const std::string& where) {
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (std::find(std::begin(allowed), std::end(allowed), key) == std::end(allowed))
      return Status::Corruption(where + ": unknown field '" + key + "'");
  }
  return Status::Ok();
}

// An integer field into T, range-checked: JSON integers only. A float (and
// a number beyond 64 bits, which the parser reads as a float) or a value
// outside T's range is refused, never converted.
template <typename T>
Status IntegerValue(const json& v, const char* key, T* out, const std::string& where) {
  const std::string bad = where + ": field '" + key + "' ";
  if (!v.is_number_integer()) return Status::Corruption(bad + "is not an integer");
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
      return Status::Corruption(bad + "is " + std::to_string(u) + ", out of range (at most " +
                                std::to_string(std::numeric_limits<T>::max()) + ")");
    *out = static_cast<T>(u);
    return Status::Ok();
  }
  const int64_t i = v.get<int64_t>();
  if (std::is_unsigned_v<T> || i < static_cast<int64_t>(std::numeric_limits<T>::min()))
    return Status::Corruption(bad + "is " + std::to_string(i) + ", out of range (at least " +
                              std::to_string(std::numeric_limits<T>::min()) + ")");
  *out = static_cast<T>(i);
  return Status::Ok();
}

// Reads a required field of type T, or fails naming the field and file.
template <typename T>
Status Field(const json& j, const char* key, T* out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Corruption(where + ": missing field '" + key + "'");
  if constexpr (std::is_integral_v<T>) {
    return IntegerValue(*it, key, out, where);
  } else {
    try {
      *out = it->template get<T>();
    } catch (const json::exception&) {
      return Status::Corruption(where + ": field '" + key + "' has the wrong type");
    }
    return Status::Ok();
  }
}

// An optional string field that may also be null: empty when absent or null.
Status OptionalString(const json& j, const char* key, std::string* out,
                      const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  return Field(j, key, out, where);
}

// The deepest nesting of arrays and objects in text (strings skipped). A
// scan before parsing: a deeply nested document costs the parser memory per
// level (62 MB of brackets: 2.3 GiB).
size_t NestingDepth(const std::string& text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

Status CheckVersion(const json& j, const char* format, uint32_t supported,
                    const std::string& where) {
  std::string f;
  uint32_t v = 0;
  CHAINFS_RETURN_IF_ERROR(Field(j, "format", &f, where));
  if (f != format)
    return Status::Corruption(where + ": format is '" + f + "', expected '" + format + "'");
  CHAINFS_RETURN_IF_ERROR(Field(j, "version", &v, where));
  if (v > supported)
    return Status::NotSupported(where + ": format version " + std::to_string(v) +
                                " is newer than this chainfs supports (" +
                                std::to_string(supported) + "); upgrade chainfs");
  if (v == 0) return Status::Corruption(where + ": format version 0");
  return Status::Ok();
}

Result<json> Parse(const std::string& text, const std::string& where) {
  if (text.size() > kMaxManifestBytes)
    return Status::Corruption(where + ": " + std::to_string(text.size()) +
                              " bytes, more than the " + std::to_string(kMaxManifestBytes) +
                              " a manifest may have");
  if (NestingDepth(text) > kMaxJsonDepth)
    return Status::Corruption(where + ": arrays and objects nested deeper than " +
                              std::to_string(kMaxJsonDepth) + " levels");
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Status::Corruption(where + ": not a valid JSON object");
  return j;
}

// The optional "id" (32 hex digits) and "index_digest" (16 hex digits).
Status DecodeIdentityFields(const json& dj, const std::string& w, DiskEntry* d) {
  std::string hex;
  if (dj.contains("id")) {
    CHAINFS_RETURN_IF_ERROR(Field(dj, "id", &hex, w));
    d->delta_id = DeltaId::FromHex(hex);
    if (!d->delta_id) return Status::Corruption(w + ": field 'id' is not 32 hex digits");
  }
  if (dj.contains("index_digest")) {
    CHAINFS_RETURN_IF_ERROR(Field(dj, "index_digest", &hex, w));
    d->index_digest = FromHex64(hex);
    if (!d->index_digest)
      return Status::Corruption(w + ": field 'index_digest' is not 16 hex digits");
  }
  return Status::Ok();
}

}  // namespace

std::string RepoConfig::Encode() const {
  json j = {{"format", "chainfs-repository"}, {"version", version},
            {"block_size", block_size},       {"compression", compression},
            {"compression_level", compression_level}};
  return j.dump(2) + "\n";
}

Result<RepoConfig> RepoConfig::Decode(const std::string& text, const std::string& where) {
  CHAINFS_ASSIGN_OR_RETURN(json j, Parse(text, where));
  CHAINFS_RETURN_IF_ERROR(CheckVersion(j, "chainfs-repository", kRepoVersion, where));
  CHAINFS_RETURN_IF_ERROR(OnlyKeys(j, kRepoConfigKeys, where));
  RepoConfig c;
  CHAINFS_RETURN_IF_ERROR(Field(j, "version", &c.version, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "block_size", &c.block_size, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "compression", &c.compression, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "compression_level", &c.compression_level, where));
  if (!IsValidBlockSize(c.block_size))
    return Status::Corruption(where + ": invalid block_size " + std::to_string(c.block_size));
  if (c.compression != "zstd" && c.compression != "none")
    return Status::Corruption(where + ": unknown compression '" + c.compression + "'");
  if (c.compression_level < kMinCompressionLevel || c.compression_level > kMaxCompressionLevel)
    return Status::Corruption(where + ": field 'compression_level' is " +
                              std::to_string(c.compression_level) + ", not " +
                              std::to_string(kMinCompressionLevel) + " to " +
                              std::to_string(kMaxCompressionLevel));
  return c;
}

const DiskEntry* Checkpoint::FindDisk(const std::string& disk) const {
  for (const auto& d : disks)
    if (d.name == disk) return &d;
  return nullptr;
}

std::string FormatTime(int64_t unix_ns) {
  time_t t = static_cast<time_t>(unix_ns / 1000000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const ConfigFile* Checkpoint::FindConfig(const std::string& name) const {
  for (const auto& c : configs)
    if (c.name == name) return &c;
  return nullptr;
}

std::string Checkpoint::Encode() const {
  json disks_json = json::array();
  for (const auto& d : disks) {
    disks_json.push_back({{"name", d.name},
                          {"delta", d.delta_file},
                          {"kind", DeltaKindName(d.kind)},
                          {"base", d.base.empty() ? json(nullptr) : json(d.base)},
                          {"virtual_size", d.virtual_size},
                          {"stored_bytes", d.stored_bytes},
                          {"format", d.format}});
    if (d.delta_id) disks_json.back()["id"] = d.delta_id->Hex();
    if (d.index_digest) disks_json.back()["index_digest"] = Hex64(*d.index_digest);
  }
  json j = {{"format", "chainfs-checkpoint"},
            {"version", kManifestVersion},
            {"group", group},
            {"name", name},
            {"sequence", sequence},
            {"created", FormatTime(created_unix_ns)},
            {"created_unix_ns", created_unix_ns},
            {"parent", parent.empty() ? json(nullptr) : json(parent)},
            {"disks", disks_json}};
  // One config under "config" (as chainfs wrote it before "configs"),
  // several as an array.
  if (configs.size() == 1) {
    j["config"] = {{"name", configs[0].name}, {"content", configs[0].content}};
  } else if (configs.size() > 1) {
    j["configs"] = json::array();
    for (const auto& c : configs) j["configs"].push_back({{"name", c.name}, {"content", c.content}});
  }
  if (libvirt)
    j["libvirt"] = {{"uri", libvirt->uri},
                    {"domain", libvirt->domain},
                    {"uuid", libvirt->uuid},
                    {"checkpoint", libvirt->checkpoint.empty() ? json(nullptr)
                                                               : json(libvirt->checkpoint)}};
  return j.dump(2) + "\n";
}

Result<Checkpoint> Checkpoint::Decode(const std::string& text, const std::string& where) {
  CHAINFS_ASSIGN_OR_RETURN(json j, Parse(text, where));
  CHAINFS_RETURN_IF_ERROR(CheckVersion(j, "chainfs-checkpoint", kManifestVersion, where));
  CHAINFS_RETURN_IF_ERROR(OnlyKeys(j, kCheckpointKeys, where));
  Checkpoint c;
  CHAINFS_RETURN_IF_ERROR(Field(j, "group", &c.group, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "name", &c.name, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "sequence", &c.sequence, where));
  if (c.sequence == 0) return Status::Corruption(where + ": field 'sequence' is 0 (from 1)");
  CHAINFS_RETURN_IF_ERROR(Field(j, "created_unix_ns", &c.created_unix_ns, where));
  CHAINFS_RETURN_IF_ERROR(OptionalString(j, "parent", &c.parent, where));
  if (!c.parent.empty()) {
    Status st = ValidateName("checkpoint", c.parent);
    if (!st.ok()) return Status::Corruption(where + ": field 'parent': " + st.message());
  }
  for (const char* kind : {"group", "checkpoint"}) {
    const std::string& n = std::string(kind) == "group" ? c.group : c.name;
    Status st = ValidateName(kind, n);
    if (!st.ok()) return Status::Corruption(where + ": " + st.message());
  }
  if (!j.contains("disks") || !j["disks"].is_array())
    return Status::Corruption(where + ": missing field 'disks'");
  for (size_t i = 0; i < j["disks"].size(); ++i) {
    const json& dj = j["disks"][i];
    std::string w = where + ": disks[" + std::to_string(i) + "]";
    if (!dj.is_object()) return Status::Corruption(w + ": not an object");
    CHAINFS_RETURN_IF_ERROR(OnlyKeys(dj, kDiskKeys, w));
    DiskEntry d;
    std::string kind;
    CHAINFS_RETURN_IF_ERROR(Field(dj, "name", &d.name, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "delta", &d.delta_file, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "kind", &kind, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "virtual_size", &d.virtual_size, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "stored_bytes", &d.stored_bytes, w));
    CHAINFS_RETURN_IF_ERROR(OptionalString(dj, "base", &d.base, w));
    if (dj.contains("format")) CHAINFS_RETURN_IF_ERROR(Field(dj, "format", &d.format, w));
    CHAINFS_RETURN_IF_ERROR(DecodeIdentityFields(dj, w, &d));
    if (FindLayerFormat(d.format) == nullptr)
      return Status::NotSupported(w + " (disk '" + d.name + "'): unknown delta format '" +
                                  d.format + "'; this chainfs reads " + LayerFormatNames() +
                                  "; upgrade chainfs");
    if (kind == "full") d.kind = DeltaKind::kFull;
    else if (kind == "incremental") d.kind = DeltaKind::kIncremental;
    else if (kind == "differential") d.kind = DeltaKind::kDifferential;
    else return Status::Corruption(w + ": unknown kind '" + kind + "'");
    if ((d.kind == DeltaKind::kFull) != d.base.empty())
      return Status::Corruption(w + ": a full delta has no base, other kinds need one");
    Status st = ValidateName("disk", d.name);
    if (st.ok()) st = ValidateName("delta file", d.delta_file);
    if (!st.ok()) return Status::Corruption(w + ": " + st.message());
    if (c.FindDisk(d.name)) return Status::Corruption(w + ": disk '" + d.name + "' twice");
    c.disks.push_back(d);
  }
  if (j.contains("config") && j.contains("configs"))
    return Status::Corruption(where + ": both 'config' and 'configs'");
  std::vector<std::pair<const json*, std::string>> configs;
  if (j.contains("config") && !j["config"].is_object())
    return Status::Corruption(where + ": field 'config' is not an object");
  if (j.contains("config")) configs.push_back({&j["config"], where + ": config"});
  if (j.contains("configs")) {
    if (!j["configs"].is_array())
      return Status::Corruption(where + ": field 'configs' is not an array");
    for (size_t i = 0; i < j["configs"].size(); ++i)
      configs.push_back({&j["configs"][i], where + ": configs[" + std::to_string(i) + "]"});
  }
  for (const auto& [cj, w] : configs) {
    if (!cj->is_object()) return Status::Corruption(w + ": not an object");
    CHAINFS_RETURN_IF_ERROR(OnlyKeys(*cj, kConfigKeys, w));
    ConfigFile f;
    CHAINFS_RETURN_IF_ERROR(Field(*cj, "name", &f.name, w));
    CHAINFS_RETURN_IF_ERROR(Field(*cj, "content", &f.content, w));
    Status st = ValidateName("config file", f.name);
    if (!st.ok()) return Status::Corruption(w + ": " + st.message());
    if (c.FindConfig(f.name)) return Status::Corruption(w + ": config '" + f.name + "' twice");
    c.configs.push_back(std::move(f));
  }
  if (j.contains("libvirt")) {
    const std::string w = where + ": libvirt";
    const json& lj = j["libvirt"];
    if (!lj.is_object()) return Status::Corruption(w + ": not an object");
    CHAINFS_RETURN_IF_ERROR(OnlyKeys(lj, kLibvirtKeys, w));
    LibvirtRecord r;
    CHAINFS_RETURN_IF_ERROR(Field(lj, "uri", &r.uri, w));
    CHAINFS_RETURN_IF_ERROR(Field(lj, "domain", &r.domain, w));
    CHAINFS_RETURN_IF_ERROR(Field(lj, "uuid", &r.uuid, w));
    CHAINFS_RETURN_IF_ERROR(OptionalString(lj, "checkpoint", &r.checkpoint, w));
    c.libvirt = std::move(r);
  }
  return c;
}

}  // namespace chainfs
