#include "chain/ingest/file_source.h"

#include "chain/ingest/dirty_map.h"

namespace chainfs {

Status FileSource::ReadAt(uint64_t offset, size_t n, void* buf) const {
  if (offset > Size() || n > Size() - offset)
    return Status::InvalidArgument(Name() + ": read of " + std::to_string(n) +
                                   " bytes at offset " + std::to_string(offset) +
                                   " is past its end (" + std::to_string(Size()) + " bytes)");
  return file_->ReadAt(offset, n, buf);
}

Result<std::vector<ByteRange>> FileSource::ChangedRanges() const {
  if (dirty_map_.empty()) return Source::ChangedRanges();
  return LoadDirtyMap(dirty_map_);
}

Result<std::unique_ptr<Source>> OpenFileSource(const SourceSpec& spec) {
  // Only a regular file or a block device: opening a FIFO blocks until a
  // writer comes, and a character device or a socket has no size to back up.
  CHAINFS_RETURN_IF_ERROR(CheckInputFile(spec.location, "source", /*block_device_ok=*/true));
  if (!spec.dirty_map.empty())
    CHAINFS_RETURN_IF_ERROR(CheckInputFile(spec.dirty_map, "dirty map", false));
  auto file = OpenRandomAccessFile(spec.location);
  if (!file.ok()) return file.status();
  return std::unique_ptr<Source>(
      std::make_unique<FileSource>(std::move(file).value(), spec.dirty_map));
}

}  // namespace chainfs
