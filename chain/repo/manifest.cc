#include "chain/repo/manifest.h"

#include <ctime>
#include <type_traits>
#include <utility>
#include <nlohmann/json.hpp>

#include "chain/native/delta_format.h"
#include "chain/base/names.h"
#include "chain/layer/registry.h"

namespace chainfs {

using nlohmann::json;

namespace {

// Reads a required field of type T, or fails naming the field and file.
template <typename T>
Status Field(const json& j, const char* key, T* out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Corruption(where + ": missing field '" + key + "'");
  // An integer field takes only an integer that fits: get<T>() of a float
  // (any number past 2^64 parses as one) is an undefined conversion, and of a
  // negative or too large integer a silent wrap (tests/fuzz/manifest_fuzz.cc).
  if constexpr (std::is_integral_v<T>) {
    const bool fits = it->is_number_unsigned()
                          ? std::in_range<T>(it->template get<uint64_t>())
                          : it->is_number_integer() && std::in_range<T>(it->template get<int64_t>());
    if (!fits)
      return Status::Corruption(where + ": field '" + key + "' is not an integer in range");
  }
  try {
    *out = it->template get<T>();
  } catch (const json::exception&) {
    return Status::Corruption(where + ": field '" + key + "' has the wrong type");
  }
  return Status::Ok();
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
  RepoConfig c;
  CHAINFS_RETURN_IF_ERROR(Field(j, "version", &c.version, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "block_size", &c.block_size, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "compression", &c.compression, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "compression_level", &c.compression_level, where));
  if (!IsValidBlockSize(c.block_size))
    return Status::Corruption(where + ": invalid block_size " + std::to_string(c.block_size));
  if (c.compression != "zstd" && c.compression != "none")
    return Status::Corruption(where + ": unknown compression '" + c.compression + "'");
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
  if (config_name)
    j["config"] = {{"name", *config_name}, {"content", config_content.value_or("")}};
  return j.dump(2) + "\n";
}

Result<Checkpoint> Checkpoint::Decode(const std::string& text, const std::string& where) {
  CHAINFS_ASSIGN_OR_RETURN(json j, Parse(text, where));
  CHAINFS_RETURN_IF_ERROR(CheckVersion(j, "chainfs-checkpoint", kManifestVersion, where));
  Checkpoint c;
  CHAINFS_RETURN_IF_ERROR(Field(j, "group", &c.group, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "name", &c.name, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "sequence", &c.sequence, where));
  CHAINFS_RETURN_IF_ERROR(Field(j, "created_unix_ns", &c.created_unix_ns, where));
  if (j.contains("parent") && !j["parent"].is_null())
    CHAINFS_RETURN_IF_ERROR(Field(j, "parent", &c.parent, where));
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
    DiskEntry d;
    std::string kind;
    CHAINFS_RETURN_IF_ERROR(Field(dj, "name", &d.name, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "delta", &d.delta_file, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "kind", &kind, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "virtual_size", &d.virtual_size, w));
    CHAINFS_RETURN_IF_ERROR(Field(dj, "stored_bytes", &d.stored_bytes, w));
    if (dj.contains("base") && !dj["base"].is_null())
      CHAINFS_RETURN_IF_ERROR(Field(dj, "base", &d.base, w));
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
  if (j.contains("config") && j["config"].is_object()) {
    std::string name, content;
    CHAINFS_RETURN_IF_ERROR(Field(j["config"], "name", &name, where + ": config"));
    CHAINFS_RETURN_IF_ERROR(Field(j["config"], "content", &content, where + ": config"));
    Status st = ValidateName("config file", name);
    if (!st.ok()) return Status::Corruption(where + ": " + st.message());
    c.config_name = name;
    c.config_content = content;
  }
  return c;
}

}  // namespace chainfs
