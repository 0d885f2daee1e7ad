#include "chain/repo/delta_binding.h"

#include <vector>

namespace chainfs {
namespace {

std::string BaseText(const std::string& base) { return base.empty() ? "none (full)" : base; }

// "checkpoint c1 (manifest: c2)" for every field of the file's identity that
// differs from what the manifest entry says.
std::vector<std::string> Differences(const LayerIdentity& file, const std::string& group,
                                     const std::string& checkpoint, const DiskEntry& entry) {
  std::vector<std::string> out;
  auto differ = [&](const char* field, const std::string& in_file, const std::string& in_entry) {
    if (in_file != in_entry)
      out.push_back(std::string(field) + " " + in_file + " (manifest: " + in_entry + ")");
  };
  differ("group", file.group, group);
  differ("checkpoint", file.checkpoint, checkpoint);
  differ("disk", file.disk, entry.name);
  differ("base", BaseText(file.base), BaseText(entry.base));
  if ((file.kind == DeltaKind::kFull) != (entry.kind == DeltaKind::kFull))
    differ("kind", DeltaKindName(file.kind), DeltaKindName(entry.kind));
  differ("delta id", file.id.Hex(), entry.delta_id ? entry.delta_id->Hex() : "none");
  differ("index digest", Hex64(file.index_digest),
         entry.index_digest ? Hex64(*entry.index_digest) : "none");
  return out;
}

}  // namespace

Result<Binding> VerifyBinding(const Layer& layer, const std::string& manifest_path,
                              const std::string& group, const std::string& checkpoint,
                              const DiskEntry& entry) {
  const LayerIdentity* file = layer.identity();
  if (file != nullptr && entry.delta_id == file->id && entry.index_digest == file->index_digest &&
      file->group == group && file->checkpoint == checkpoint && file->disk == entry.name &&
      file->base == entry.base &&
      (file->kind == DeltaKind::kFull) == (entry.kind == DeltaKind::kFull))
    return Binding::kBound;  // the common case, without building a message
  const std::string names = manifest_path + " names disk " + entry.name + "'s delta " +
                            layer.location();
  if (file == nullptr && !entry.delta_id && !entry.index_digest) return Binding::kUnbound;
  if (file == nullptr)
    return Status::Corruption(
        names + " with delta id " + (entry.delta_id ? entry.delta_id->Hex() : "none") +
        ", but that file records no identity (a delta of version 1): it is not the file "
        "this manifest was written with");
  std::vector<std::string> diffs = Differences(*file, group, checkpoint, entry);
  if (diffs.empty()) return Binding::kBound;
  std::string msg = names + ", but that file is another delta (its header says ";
  for (size_t i = 0; i < diffs.size(); ++i) msg += (i ? "; " : "") + diffs[i];
  return Status::Corruption(msg + "): refusing to read it as " + group + "/" + checkpoint + "/" +
                            entry.name);
}

void BindEntry(const LayerIdentity& written, DiskEntry* entry) {
  entry->delta_id = written.id;
  entry->index_digest = written.index_digest;
}

}  // namespace chainfs
