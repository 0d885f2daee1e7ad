// Writes virtnbdbackup sparse streams and output directories as virtnbdbackup
// 1.9 does (libvirtnbdbackup/sparsestream, common.writeChunk): for unit tests
// and fuzz seeds that need hand-made (and hand-damaged) streams. The real
// tool's output is tested in tests/scenario/vnb_mount_test.sh.
#pragma once

#include <lz4frame.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace chainfs::testing {

struct VnbFrameSpec {
  uint64_t offset = 0;
  std::string data;      // data frame bytes; empty with zero_length: a zero frame
  uint64_t zero_length = 0;
};

inline std::string VnbHeader(const char* kind, uint64_t start, uint64_t length) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %016llx %016llx\r\n", kind,
                static_cast<unsigned long long>(start), static_cast<unsigned long long>(length));
  return buf;
}

inline std::string Lz4Frame(const std::string& in, bool store_size = true) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
  if (store_size) prefs.frameInfo.contentSize = in.size();
  std::string out(LZ4F_compressFrameBound(in.size(), &prefs), '\0');
  const size_t n = LZ4F_compressFrame(out.data(), out.size(), in.data(), in.size(), &prefs);
  out.resize(LZ4F_isError(n) ? 0 : n);
  return out;
}

// A whole stream. compress: lz4 frames of at most max_request bytes each,
// with the trailer; parent empty for a full.
inline std::string VnbStreamBytes(uint64_t virtual_size, const std::string& checkpoint,
                                  const std::string& parent, const std::string& disk,
                                  const std::vector<VnbFrameSpec>& frames, bool compress,
                                  uint64_t max_request = 1 << 20, bool store_size = true) {
  std::string meta = "{\n    \"virtualSize\": " + std::to_string(virtual_size) +
                     ",\n    \"dataSize\": 0,\n    \"date\": \"2026-12-03T10:00:00\",\n"
                     "    \"diskName\": \"" + disk + "\",\n    \"diskFormat\": \"qcow2\",\n"
                     "    \"checkpointName\": \"" + checkpoint + "\",\n    \"compressed\": " +
                     (compress ? "2" : "false") +
                     ",\n    \"compressionMethod\": \"lz4\",\n    \"parentCheckpoint\": \"" + parent +
                     "\",\n    \"incremental\": " + (parent.empty() ? "false" : "true") +
                     ",\n    \"streamVersion\": 2\n}";
  std::string s = VnbHeader("meta", 0, meta.size()) + meta + "\r\n";
  std::string trailer = "[";
  for (const VnbFrameSpec& f : frames) {
    if (f.data.empty()) {
      s += VnbHeader("zero", f.offset, f.zero_length);
      continue;
    }
    s += VnbHeader("data", f.offset, f.data.size());
    if (!compress) {
      s += f.data;
    } else if (f.data.size() < max_request) {
      std::string c = Lz4Frame(f.data, store_size);
      s += c;
      trailer += (trailer.size() > 1 ? ", " : "") + std::to_string(c.size());
    } else {
      std::string list;
      uint64_t total = 0;
      for (size_t at = 0; at < f.data.size(); at += max_request) {
        std::string c = Lz4Frame(f.data.substr(at, max_request), store_size);
        s += c;
        total += c.size();
        list += (list.empty() ? "" : ", ") + std::to_string(c.size());
      }
      trailer += (trailer.size() > 1 ? ", " : "") + std::string("{\"") + std::to_string(total) +
                 "\": [" + list + "]}";
    }
    s += "\r\n";
  }
  s += VnbHeader("stop", 0, 0);
  if (compress) {
    trailer += "]";
    s += trailer + "\r\n" + VnbHeader("comp", 0, trailer.size());
  }
  return s;
}

// A disk image in memory and the frames that turn `before` into it.
struct VnbDisk {
  std::string image;
  // Writes bytes at offset (growing the image if needed) and remembers the
  // range as changed.
  void Write(uint64_t offset, const std::string& bytes) {
    if (image.size() < offset + bytes.size()) image.resize(offset + bytes.size(), '\0');
    image.replace(offset, bytes.size(), bytes);
    changed[offset] = std::max<uint64_t>(changed[offset], bytes.size());
  }
  void Resize(uint64_t n) { image.resize(n, '\0'); }
  // Frames of the changes since the last call (merged, in order); full: the
  // whole image as data frames of its non-zero 64 KiB pieces and zero frames.
  std::vector<VnbFrameSpec> Take(bool full) {
    std::vector<VnbFrameSpec> out;
    if (full) {
      const uint64_t step = 64 << 10;
      for (uint64_t at = 0; at < image.size(); at += step) {
        const uint64_t n = std::min<uint64_t>(step, image.size() - at);
        std::string piece = image.substr(at, n);
        const bool zero = piece.find_first_not_of('\0') == std::string::npos;
        if (!out.empty() && zero == out.back().data.empty()) {
          if (zero) out.back().zero_length += n;
          else out.back().data += piece;
        } else {
          out.push_back(zero ? VnbFrameSpec{at, "", n} : VnbFrameSpec{at, piece, 0});
        }
      }
    } else {
      uint64_t start = 0, end = 0;
      for (auto [o, n] : changed) {
        if (end > start && o <= end) { end = std::max(end, o + n); continue; }
        if (end > start) out.push_back({start, image.substr(start, end - start), 0});
        start = o;
        end = o + n;
      }
      if (end > start) out.push_back({start, image.substr(start, end - start), 0});
    }
    changed.clear();
    return out;
  }
  std::map<uint64_t, uint64_t> changed;
};

}  // namespace chainfs::testing
