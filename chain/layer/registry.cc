#include "chain/layer/registry.h"

#include <algorithm>

#include "chain/native/native_format.h"
#include "chain/qcow2/qcow2_layer.h"
#include "chain/vnb/vnb_layer.h"

namespace chainfs {

const std::vector<const LayerFormat*>& LayerFormats() {
  // The one list of formats. The first is the write format.
  static const std::vector<const LayerFormat*> formats = {
      &kNativeLayerFormat,  // chain/native: chainfs delta files
      &kVnbLayerFormat,     // chain/vnb: virtnbdbackup sparse streams (read-only)
      &kQcow2LayerFormat,   // chain/qcow2: qcow2 images (read-only)
      &kRawLayerFormat,     // chain/qcow2: raw images, a qcow2 chain's base (read-only, never probed)
  };
  return formats;
}

const LayerFormat* FindLayerFormat(std::string_view name) {
  for (const LayerFormat* f : LayerFormats())
    if (name == f->name) return f;
  return nullptr;
}

std::string LayerFormatNames() {
  std::string out;
  for (const LayerFormat* f : LayerFormats()) out += (out.empty() ? "" : ", ") + std::string(f->name);
  return out;
}

const LayerFormat& WriteLayerFormat() { return *LayerFormats().front(); }

Result<const LayerFormat*> ProbeLayerFormat(const RandomAccessFile& file) {
  size_t want = 0;
  for (const LayerFormat* f : LayerFormats()) want = std::max(want, f->probe_size);
  std::string head(std::min<uint64_t>(want, file.Size()), '\0');
  CHAINFS_RETURN_IF_ERROR(file.ReadAt(0, head.size(), head.data()));
  for (const LayerFormat* f : LayerFormats())
    if (f->probe(head.data(), std::min(head.size(), f->probe_size))) return f;
  return Status::Corruption(file.Path() + ": not a delta of any known format (" +
                            LayerFormatNames() + ")");
}

Result<std::shared_ptr<const Layer>> OpenLayerFile(Env* env, const std::string& path,
                                                   const LayerFormat* format,
                                                   const LayerIdFn& id_for) {
  CHAINFS_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, env->NewRandomAccessFile(path));
  if (format == nullptr) {
    CHAINFS_ASSIGN_OR_RETURN(format, ProbeLayerFormat(*file));
  }
  return format->open(std::move(file), id_for);
}

}  // namespace chainfs
