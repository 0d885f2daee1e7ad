// virtnbdbackup's "sparse stream": the .data files of a virtnbdbackup output
// directory (Debian virtnbdbackup 1.9; libvirtnbdbackup/sparsestream).
//
//   meta 0000000000000000 00000000000001a3\r\n   40-byte ASCII frame header:
//   {"virtualSize": ..., "checkpointName": ...,   kind, start, length (%016x)
//    "parentCheckpoint": ..., "compressed": ...}\r\n
//   data 0000000000100000 0000000000010000\r\n   <payload>\r\n
//   zero 0000000000110000 00000000000f0000\r\n   (full streams only)
//   ...
//   stop 0000000000000000 0000000000000000\r\n
//   [compressed: <JSON list of compressed sizes>\r\n
//    comp 0000000000000000 <JSON length>\r\n]
//
// An uncompressed data frame's payload is its `length` bytes. A compressed
// one's is lz4 frames (each at most the NBD server's request size, 32 MiB
// from QEMU, decoded): the trailer holds, per data frame in order, either
// the one frame's compressed size or {"<total>": [size, size, ...]}. Ranges
// absent from an incremental stream are unchanged since its parent.
//
// ParseSparseStream reads every header and checks the frame structure
// against the file's size, so that a truncated or malformed stream is
// refused at open naming the file and the offset; an lz4 frame's header
// gives its decoded size (python-lz4 stores it), else the frame is decoded
// once to learn it. It reads a page per header, and over a stream of small
// frames asks the kernel for the next MiB ahead (a cold stream comes from
// disk in large reads; no payload is copied).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chain/base/file.h"
#include "chain/base/status.h"

namespace chainfs {

inline constexpr size_t kVnbFrameHeaderSize = 40;
// A meta frame or trailer larger than this is refused (they are a few KiB).
inline constexpr uint64_t kVnbMaxJsonBytes = 16 << 20;

struct VnbStreamMeta {
  uint64_t virtual_size = 0;
  uint64_t data_size = 0;
  std::string disk_name;
  std::string disk_format;
  std::string checkpoint;  // checkpointName
  std::string parent;      // parentCheckpoint ("" for a full or copy)
  std::string date;
  bool incremental = false;
  int compressed = 0;  // 0: no; else the lz4 level (python True counts as 1)
  int stream_version = 1;
};

// One lz4 frame of a compressed data frame's payload.
struct VnbLz4Frame {
  uint64_t pos = 0;     // in the file
  uint32_t stored = 0;  // compressed bytes
  uint32_t size = 0;    // decoded bytes
  // Each lz4 block carries its own checksum (virtnbdbackup sets it): a
  // prefix of the frame can be trusted as soon as it is decoded. Without
  // one, only the content checksum at the frame's end vouches for it.
  bool block_checksums = false;
};

struct VnbExtent {
  uint64_t offset = 0;  // in the disk
  uint64_t length = 0;
  bool zero = false;
  uint64_t payload_pos = 0;          // data: where its payload starts in the file
  std::vector<VnbLz4Frame> frames;   // data of a compressed stream
};

struct VnbStream {
  VnbStreamMeta meta;
  std::vector<VnbExtent> extents;  // in the file's order: increasing, disjoint
  uint64_t file_size = 0;
};

// Decodes a meta frame's JSON (where names it in messages).
Result<VnbStreamMeta> ParseVnbMeta(const std::string& json, const std::string& where);
// Reads only the meta frame of file: cheap, for listing a directory.
Result<VnbStreamMeta> ReadVnbMeta(const RandomAccessFile& file);
// True if head (the first n bytes of a file) starts like a sparse stream.
bool LooksLikeVnbStream(const char* head, size_t n);
// Parses the whole frame structure (see above); kCorruption naming the file,
// the offset and what is wrong.
Result<VnbStream> ParseSparseStream(const RandomAccessFile& file);

// Decodes one lz4 frame of `stored` bytes into exactly `size` bytes at out;
// a damaged frame (checksum, truncation, other size) is kCorruption with
// `where` in the message. Block checksums are checked with libxxhash
// (chain/vnb/lz4_check.h); the content checksum of a frame that has block
// checksums only when content_checksum is set (`check --deep`: the block
// checksums already vouch for every decoded byte).
Status DecodeLz4Frame(const char* in, size_t stored, char* out, size_t size,
                      const std::string& where, bool content_checksum = true);

}  // namespace chainfs
