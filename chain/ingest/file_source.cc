#include "chain/ingest/file_source.h"

#include <sys/stat.h>

#include <cerrno>

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

namespace {

// What a path that is not a disk is, for the message.
const char* KindOf(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISDIR(mode)) return "a directory";
  return "not a regular file";
}

}  // namespace

Result<std::unique_ptr<Source>> OpenFileSource(const SourceSpec& spec) {
  // Only a regular file or a block device: opening a FIFO blocks until a
  // writer comes, and a character device or a socket has no size to back up.
  struct stat st;
  if (::stat(spec.location.c_str(), &st) != 0)
    return Status::FromErrno(errno, "source " + spec.location);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return Status::InvalidArgument("source " + spec.location + " is " + KindOf(st.st_mode) +
                                   "; a disk source must be a regular file (a raw image) "
                                   "or a block device");
  auto file = OpenRandomAccessFile(spec.location);
  if (!file.ok()) return file.status();
  return std::unique_ptr<Source>(
      std::make_unique<FileSource>(std::move(file).value(), spec.dirty_map));
}

}  // namespace chainfs
