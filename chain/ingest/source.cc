#include "chain/ingest/source.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "chain/ingest/file_source.h"
#include "chain/ingest/nbd_source.h"

namespace chainfs {

Result<std::vector<ByteRange>> Source::ChangedRanges() const {
  return Status::NotSupported("source " + Name() + " does not know which bytes changed");
}

Result<std::vector<ByteRange>> Source::ZeroRanges() const {
  return Status::NotSupported("source " + Name() + " does not know which bytes are zeros");
}

namespace {

// What a path that is not an input file is, for messages.
const char* KindOf(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

}  // namespace

Status CheckInputFile(const std::string& path, const std::string& what, bool block_device_ok) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, what + " " + path);
  if (S_ISREG(st.st_mode) || (block_device_ok && S_ISBLK(st.st_mode))) return Status::Ok();
  return Status::InvalidArgument(what + " " + path + " is " + KindOf(st.st_mode) + "; it must be " +
                                 (block_device_ok ? "a regular file (a raw image) or a block device"
                                                  : "a regular file"));
}

Result<std::unique_ptr<Source>> OpenSource(const SourceSpec& spec) {
  if (!spec.dirty_map.empty() && !spec.bitmap.empty())
    return Status::InvalidArgument("--dirty and --bitmap both given for source " + spec.location +
                                   ": give one of them");
  if (IsNbdUri(spec.location)) return OpenNbdSource(spec);
  CHAINFS_RETURN_IF_ERROR(CheckInputFile(spec.location, "source", /*block_device_ok=*/true));
  auto format = ProbeImageFormat(spec.location);
  if (!format.ok()) return format.status();
  if (!format.value().empty()) return OpenNbdSource(spec, format.value());
  if (!spec.bitmap.empty())
    return Status::InvalidArgument("--bitmap " + spec.bitmap + ": source " + spec.location +
                                   " is a raw image, which has no dirty bitmaps; give an NBD URI "
                                   "or a QEMU image (qcow2) that holds the bitmap, or --dirty "
                                   "with a map file");
  return OpenFileSource(spec);
}

namespace {

// Sorts runs and merges overlapping and adjacent ones.
std::vector<BlockRange> Merge(std::vector<BlockRange> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const BlockRange& a, const BlockRange& b) { return a.first_block < b.first_block; });
  std::vector<BlockRange> merged;
  for (const auto& r : runs) {
    if (!merged.empty() &&
        merged.back().first_block + merged.back().block_count >= r.first_block) {
      uint64_t end = std::max(merged.back().first_block + merged.back().block_count,
                              r.first_block + r.block_count);
      merged.back().block_count = end - merged.back().first_block;
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

}  // namespace

std::vector<BlockRange> BlocksTouched(const std::vector<ByteRange>& ranges, uint32_t block_size,
                                      uint64_t disk_size) {
  std::vector<BlockRange> runs;
  for (const ByteRange& r : ranges) {
    if (r.length == 0 || r.offset >= disk_size) continue;
    const uint64_t end = std::min(r.offset + r.length, disk_size);
    const uint64_t first = r.offset / block_size;
    runs.push_back({first, BlockCount(end, block_size) - first});
  }
  return Merge(std::move(runs));
}

std::vector<BlockRange> BlocksCovered(const std::vector<ByteRange>& ranges, uint32_t block_size,
                                      uint64_t disk_size) {
  // Adjacent byte ranges may cover a block together: merge bytes first.
  std::vector<ByteRange> bytes;
  for (const ByteRange& r : ranges)
    if (r.length > 0 && r.offset < disk_size)
      bytes.push_back({r.offset, std::min(r.offset + r.length, disk_size) - r.offset});
  std::sort(bytes.begin(), bytes.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<BlockRange> runs;
  for (size_t i = 0; i < bytes.size();) {
    const uint64_t begin = bytes[i].offset;
    uint64_t end = begin + bytes[i].length;
    for (++i; i < bytes.size() && bytes[i].offset <= end; ++i)
      end = std::max(end, bytes[i].offset + bytes[i].length);
    const uint64_t first = BlockCount(begin, block_size);  // round up
    const uint64_t last = end == disk_size ? BlockCount(end, block_size) : end / block_size;
    if (last > first) runs.push_back({first, last - first});
  }
  return Merge(std::move(runs));
}

std::vector<BlockRange> SubtractBlocks(const std::vector<BlockRange>& from,
                                       const std::vector<BlockRange>& remove) {
  std::vector<BlockRange> out;
  size_t j = 0;
  for (const BlockRange& r : from) {
    uint64_t at = r.first_block;
    const uint64_t end = r.first_block + r.block_count;
    while (j < remove.size() && remove[j].first_block + remove[j].block_count <= at) ++j;
    for (size_t k = j; k < remove.size() && remove[k].first_block < end; ++k) {
      if (remove[k].first_block > at) out.push_back({at, remove[k].first_block - at});
      at = std::max(at, remove[k].first_block + remove[k].block_count);
    }
    if (at < end) out.push_back({at, end - at});
  }
  return out;
}

}  // namespace chainfs
