#include "chain/repo/write_intent.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "chain/base/names.h"

namespace chainfs {

using nlohmann::json;

std::string WriteIntent::Encode() const {
  json j = {{"format", "chainfs-intent"}, {"version", kIntentVersion},
            {"group", group},             {"purpose", purpose},
            {"commits", commits},         {"deltas", deltas}};
  return j.dump(2) + "\n";
}

Result<WriteIntent> WriteIntent::Decode(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  // j["format"] compared as json: value("format", "") throws on a non-string.
  if (j.is_discarded() || !j.is_object() || !j.contains("format") ||
      j["format"] != "chainfs-intent")
    return Status::Corruption(where + ": not a chainfs intent record");
  if (!j.contains("version") || !j["version"].is_number_unsigned() ||
      j["version"].get<uint64_t>() != kIntentVersion)
    return Status::NotSupported(where + ": unknown intent record version");
  WriteIntent w;
  for (const char* key : {"group", "purpose", "commits"})
    if (!j.contains(key) || !j[key].is_string())
      return Status::Corruption(where + ": field '" + key + "' missing or not a string");
  w.group = j["group"].get<std::string>();
  w.purpose = j["purpose"].get<std::string>();
  w.commits = j["commits"].get<std::string>();
  if (!j.contains("deltas") || !j["deltas"].is_array())
    return Status::Corruption(where + ": field 'deltas' missing or not a list");
  for (const json& f : j["deltas"]) {
    if (!f.is_string()) return Status::Corruption(where + ": field 'deltas' holds a non-string");
    w.deltas.push_back(f.get<std::string>());
  }
  Status st = ValidateName("group", w.group);
  if (st.ok() && !w.commits.empty()) st = ValidateName("checkpoint", w.commits);
  for (const std::string& f : w.deltas)
    if (st.ok()) st = ValidateName("delta file", f);
  if (!st.ok()) return Status::Corruption(where + ": " + st.message());
  return w;
}

Status RecordIntent(Env* env, const std::string& path, const WriteIntent& intent) {
  return env->WriteFileAtomic(path, intent.Encode());
}

Result<std::optional<WriteIntent>> ReadIntent(Env* env, const std::string& path) {
  auto text = env->ReadWholeFile(path, 16 << 20);
  if (!text.ok()) {
    if (text.status().code() == Status::Code::kNotFound) return std::optional<WriteIntent>();
    return text.status();
  }
  CHAINFS_ASSIGN_OR_RETURN(WriteIntent w, WriteIntent::Decode(text.value(), path));
  return std::optional<WriteIntent>(std::move(w));
}

Status ClearIntent(Env* env, const std::string& path) {
  Status st = env->RemoveFile(path);
  return st.code() == Status::Code::kNotFound ? Status::Ok() : st;
}

}  // namespace chainfs
