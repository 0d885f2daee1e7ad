#include "chain/vnb/sparse_stream.h"

#include <lz4frame.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "chain/base/coding.h"
#include "chain/vnb/lz4_check.h"

namespace chainfs {
namespace {

using nlohmann::json;

struct Header {
  std::string kind;
  uint64_t start = 0;
  uint64_t length = 0;
};

std::string At(const RandomAccessFile& f, uint64_t pos) {
  return f.Path() + " at offset " + std::to_string(pos);
}

bool ParseHex16(const char* p, uint64_t* v) {
  uint64_t r = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = p[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return false;
    r = r << 4 | static_cast<uint64_t>(d);
  }
  *v = r;
  return true;
}

// "kind %016x %016x\r\n", kind four lower-case letters.
bool DecodeHeader(const char* p, Header* h) {
  for (int i = 0; i < 4; ++i)
    if (p[i] < 'a' || p[i] > 'z') return false;
  if (p[4] != ' ' || p[21] != ' ' || p[38] != '\r' || p[39] != '\n') return false;
  h->kind.assign(p, 4);
  return ParseHex16(p + 5, &h->start) && ParseHex16(p + 22, &h->length);
}

Result<Header> ReadHeader(const RandomAccessFile& f, uint64_t pos) {
  if (pos + kVnbFrameHeaderSize > f.Size())
    return Status::Corruption(At(f, pos) + ": truncated stream (a frame header needs " +
                              std::to_string(kVnbFrameHeaderSize) + " bytes, the file ends at " +
                              std::to_string(f.Size()) + ")");
  char buf[kVnbFrameHeaderSize];
  CHAINFS_RETURN_IF_ERROR(f.ReadAt(pos, sizeof buf, buf));
  Header h;
  if (!DecodeHeader(buf, &h))
    return Status::Corruption(At(f, pos) + ": malformed frame header (not 'kind %016x %016x\\r\\n')");
  return h;
}

Status ExpectTerm(const RandomAccessFile& f, uint64_t pos, const char* after) {
  if (pos + 2 > f.Size())
    return Status::Corruption(At(f, pos) + ": truncated stream (the file ends inside " + after + ")");
  char t[2];
  CHAINFS_RETURN_IF_ERROR(f.ReadAt(pos, 2, t));
  if (t[0] != '\r' || t[1] != '\n')
    return Status::Corruption(At(f, pos) + ": no \\r\\n after " + after);
  return Status::Ok();
}

Result<std::string> ReadJson(const RandomAccessFile& f, uint64_t pos, uint64_t n, const char* what) {
  if (n > kVnbMaxJsonBytes)
    return Status::Corruption(At(f, pos) + ": " + what + " of " + std::to_string(n) +
                              " bytes is implausibly large");
  if (pos + n > f.Size())
    return Status::Corruption(At(f, pos) + ": truncated stream (" + what + " of " +
                              std::to_string(n) + " bytes passes the end of the file)");
  std::string s(n, '\0');
  CHAINFS_RETURN_IF_ERROR(f.ReadAt(pos, n, s.data()));
  return s;
}

// The most an lz4 frame of `stored` bytes can decode to (lz4's ratio is at
// most 255:1), and never above 2 GiB.
uint64_t MaxDecoded(uint64_t stored) {
  return std::min<uint64_t>(stored * 256 + (64 << 10), 1ull << 31);
}

// The decoded size an lz4 frame's header records; 0 when it records none.
Result<uint64_t> Lz4ContentSize(const char* p, size_t n, const std::string& where) {
  if (n < 7 || DecodeFixed32(p) != kLz4Magic)
    return Status::Corruption(where + ": not an lz4 frame (bad magic)");
  const uint8_t flg = static_cast<uint8_t>(p[4]);
  if ((flg >> 6) != 1) return Status::Corruption(where + ": lz4 frame of an unknown version");
  if ((flg & 0x08) == 0) return uint64_t{0};
  if (n < 14) return Status::Corruption(where + ": truncated lz4 frame header");
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(p[6 + i]);
  return v;
}

}  // namespace

Result<VnbStreamMeta> ParseVnbMeta(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Status::Corruption(where + ": the meta frame is not a JSON object");
  VnbStreamMeta m;
  auto str = [&](const char* a, const char* b) -> std::string {
    for (const char* k : {a, b}) {
      if (k == nullptr) continue;
      auto it = j.find(k);
      if (it != j.end() && it->is_string()) return it->get<std::string>();
    }
    return "";
  };
  auto num = [&](const char* a, const char* b, uint64_t* out) {
    for (const char* k : {a, b}) {
      auto it = j.find(k);
      if (it != j.end() && it->is_number_unsigned()) {
        *out = it->get<uint64_t>();
        return true;
      }
    }
    return false;
  };
  if (!num("virtualSize", "virtual-size", &m.virtual_size))
    return Status::Corruption(where + ": the meta frame has no virtualSize");
  num("dataSize", "data-size", &m.data_size);
  m.disk_name = str("diskName", nullptr);
  m.disk_format = str("diskFormat", nullptr);
  m.checkpoint = str("checkpointName", nullptr);
  m.parent = str("parentCheckpoint", nullptr);
  m.date = str("date", nullptr);
  if (auto it = j.find("incremental"); it != j.end() && it->is_boolean()) m.incremental = *it;
  uint64_t v = 1;
  num("streamVersion", "stream-version", &v);
  m.stream_version = static_cast<int>(std::min<uint64_t>(v, 1000));
  if (auto it = j.find("compressed"); it != j.end()) {
    if (it->is_boolean()) m.compressed = it->get<bool>() ? 1 : 0;
    else if (it->is_number_integer()) m.compressed = it->get<int64_t>() > 0 ? static_cast<int>(std::min<int64_t>(it->get<int64_t>(), 100)) : 0;
  }
  if (m.stream_version < 2) m.compressed = 0;  // virtnbdbackup's isCompressed
  if (m.compressed) {
    auto it = j.find("compressionMethod");
    if (it != j.end() && !(it->is_string() && it->get<std::string>() == "lz4"))
      return Status::NotSupported(where + ": compression method " + it->dump() +
                                  " (chainfs reads lz4)");
  }
  return m;
}

bool LooksLikeVnbStream(const char* head, size_t n) {
  Header h;
  return n >= kVnbFrameHeaderSize && DecodeHeader(head, &h) && h.kind == "meta";
}

namespace {
// The meta frame; *end gets where its payload ends.
Result<VnbStreamMeta> ReadMetaFrame(const RandomAccessFile& f, uint64_t* end) {
  CHAINFS_ASSIGN_OR_RETURN(Header h, ReadHeader(f, 0));
  if (h.kind != "meta")
    return Status::Corruption(At(f, 0) + ": not a virtnbdbackup stream (first frame '" + h.kind +
                              "', not 'meta')");
  CHAINFS_ASSIGN_OR_RETURN(std::string text, ReadJson(f, kVnbFrameHeaderSize, h.length, "meta frame"));
  *end = kVnbFrameHeaderSize + h.length;
  return ParseVnbMeta(text, At(f, kVnbFrameHeaderSize));
}
}  // namespace

Result<VnbStreamMeta> ReadVnbMeta(const RandomAccessFile& f) {
  uint64_t end = 0;
  return ReadMetaFrame(f, &end);
}

namespace {

// The file a parse reads: each read takes a page (kParsePage bytes) from
// where it starts, so a header, the lz4 header after it and often the next
// frame come in one read. While reads move forward in small steps (a stream
// of small frames, as an incremental's 64 KiB extents), the kernel is asked
// for the next kParseAhead bytes ahead of them (WillNeed), so a cold stream
// comes from disk in large contiguous reads instead of one random 4 KiB
// read per header (ten incrementals of about 330 extents each took 0.24 s to
// parse cold), and a warm one copies no payload. Past a large frame's
// payload nothing is asked ahead.
class ParseReader final : public RandomAccessFile {
 public:
  static constexpr uint64_t kParsePage = 4 << 10;
  static constexpr uint64_t kParseStep = 256 << 10;  // "small": forward, at most this far
  static constexpr uint64_t kParseAhead = 1 << 20;
  explicit ParseReader(const RandomAccessFile& f) : f_(f) {}
  Status ReadAt(uint64_t off, size_t n, void* out) const override {
    if (off >= at_ && off + n <= at_ + buf_.size()) {
      std::memcpy(out, buf_.data() + (off - at_), n);
      return Status::Ok();
    }
    const uint64_t size = f_.Size();
    if (off > size || n > size - off) return f_.ReadAt(off, n, out);  // fails as it would
    if (off >= last_ && off - last_ <= kParseStep && off + kParseAhead / 2 > asked_) {
      const uint64_t from = std::max(asked_, off);
      asked_ = std::min(size, off + kParseAhead);
      if (asked_ > from) f_.WillNeed(from, asked_ - from);
    }
    last_ = off;
    if (n >= kParsePage) return f_.ReadAt(off, n, out);
    buf_.resize(std::min(size - off, kParsePage));
    if (Status st = f_.ReadAt(off, buf_.size(), buf_.data()); !st.ok()) {
      buf_.clear();
      return st;
    }
    at_ = off;
    std::memcpy(out, buf_.data(), n);
    return Status::Ok();
  }
  uint64_t Size() const override { return f_.Size(); }
  const std::string& Path() const override { return f_.Path(); }

 private:
  const RandomAccessFile& f_;
  mutable uint64_t at_ = 0;     // buf_ holds the file's bytes [at_, at_ + size)
  mutable std::string buf_;
  mutable uint64_t last_ = 0;   // where the last read that missed buf_ started
  mutable uint64_t asked_ = 0;  // the kernel was asked for bytes up to here
};

Result<VnbStream> ParseStream(const RandomAccessFile& f);

}  // namespace

Result<VnbStream> ParseSparseStream(const RandomAccessFile& file) {
  ParseReader reader(file);
  return ParseStream(reader);
}

namespace {

Result<VnbStream> ParseStream(const RandomAccessFile& f) {
  VnbStream s;
  s.file_size = f.Size();
  uint64_t pos = 0;
  CHAINFS_ASSIGN_OR_RETURN(s.meta, ReadMetaFrame(f, &pos));
  CHAINFS_RETURN_IF_ERROR(ExpectTerm(f, pos, "the meta frame"));
  pos += 2;
  const uint64_t vsize = s.meta.virtual_size;
  const bool compressed = s.meta.compressed != 0;

  // The compressed sizes, from the trailer at the end.
  std::vector<std::vector<uint64_t>> sizes;
  uint64_t end = f.Size();  // where the frames end (the trailer starts)
  if (compressed) {
    if (end < pos + kVnbFrameHeaderSize + 2)
      return Status::Corruption(At(f, end) + ": truncated stream (no compression trailer)");
    const uint64_t hpos = end - kVnbFrameHeaderSize;
    CHAINFS_ASSIGN_OR_RETURN(Header t, ReadHeader(f, hpos));
    if (t.kind != "comp")
      return Status::Corruption(At(f, hpos) + ": a compressed stream must end with a 'comp' frame, found '" +
                                t.kind + "' (truncated?)");
    if (t.length > hpos - 2 - pos)
      return Status::Corruption(At(f, hpos) + ": compression trailer of " + std::to_string(t.length) +
                                " bytes does not fit in the file");
    const uint64_t jpos = hpos - 2 - t.length;
    CHAINFS_RETURN_IF_ERROR(ExpectTerm(f, hpos - 2, "the compression trailer"));
    CHAINFS_ASSIGN_OR_RETURN(std::string text, ReadJson(f, jpos, t.length, "compression trailer"));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_array())
      return Status::Corruption(At(f, jpos) + ": the compression trailer is not a JSON list");
    for (const json& e : j) {
      std::vector<uint64_t> v;
      if (e.is_number_unsigned()) {
        v.push_back(e.get<uint64_t>());
      } else if (e.is_object() && e.size() == 1 && e.begin().value().is_array()) {
        for (const json& x : e.begin().value()) {
          if (!x.is_number_unsigned()) { v.clear(); break; }
          v.push_back(x.get<uint64_t>());
        }
      }
      if (v.empty())
        return Status::Corruption(At(f, jpos) + ": compression trailer entry " +
                                  std::to_string(sizes.size()) + " is not a size or a list of sizes");
      sizes.push_back(std::move(v));
    }
    end = jpos;
  }

  size_t data_frames = 0;
  uint64_t prev_end = 0;
  std::string lz4head(14, '\0');
  for (;;) {
    CHAINFS_ASSIGN_OR_RETURN(Header h, ReadHeader(f, pos));
    const uint64_t hpos = pos;
    pos += kVnbFrameHeaderSize;
    if (h.kind == "stop") break;
    if (h.kind != "data" && h.kind != "zero")
      return Status::Corruption(At(f, hpos) + ": unexpected frame kind '" + h.kind + "'");
    if (h.length == 0 || h.start > vsize || h.length > vsize - h.start)
      return Status::Corruption(At(f, hpos) + ": " + h.kind + " frame [" + std::to_string(h.start) +
                                ", +" + std::to_string(h.length) + ") outside the disk's " +
                                std::to_string(vsize) + " bytes");
    if (h.start < prev_end)
      return Status::Corruption(At(f, hpos) + ": " + h.kind + " frame at disk offset " +
                                std::to_string(h.start) + " overlaps or precedes the previous one");
    if (h.start % 512 != 0 || (h.length % 512 != 0 && h.start + h.length != vsize))
      return Status::NotSupported(At(f, hpos) + ": " + h.kind + " frame [" + std::to_string(h.start) +
                                  ", +" + std::to_string(h.length) +
                                  ") not aligned to 512 bytes (chainfs reads 512-byte aligned extents)");
    prev_end = h.start + h.length;
    VnbExtent e;
    e.offset = h.start;
    e.length = h.length;
    e.zero = h.kind == "zero";
    if (!e.zero) {
      e.payload_pos = pos;
      uint64_t stored = h.length;
      if (compressed) {
        if (data_frames >= sizes.size())
          return Status::Corruption(At(f, hpos) + ": data frame " + std::to_string(data_frames) +
                                    " has no entry in the compression trailer");
        const std::vector<uint64_t>& cs = sizes[data_frames];
        stored = 0;
        uint64_t decoded = 0;
        for (uint64_t c : cs) {
          const uint64_t fpos = pos + stored;
          const std::string where = At(f, fpos) + " (lz4 frame of the data frame at " +
                                    std::to_string(hpos) + ")";
          if (c < 7 || c > (1ull << 31) || fpos + c > end)
            return Status::Corruption(where + ": compressed size " + std::to_string(c) +
                                      " passes the end of the frames (truncated?)");
          const size_t hn = std::min<uint64_t>(c, lz4head.size());
          CHAINFS_RETURN_IF_ERROR(f.ReadAt(fpos, hn, lz4head.data()));
          CHAINFS_ASSIGN_OR_RETURN(uint64_t size, Lz4ContentSize(lz4head.data(), hn, where));
          if (size == 0) {  // not recorded: decode once to learn it
            std::string in(c, '\0');
            CHAINFS_RETURN_IF_ERROR(f.ReadAt(fpos, c, in.data()));
            // lz4 cannot expand more than 255:1: a bound on what to allocate.
            const uint64_t room = std::min<uint64_t>(h.length - decoded, MaxDecoded(c));
            std::string out(room, '\0');
            LZ4F_dctx* d = nullptr;
            if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
              return Status::IoError(where + ": cannot create an lz4 context");
            size_t in_n = c, out_n = room;
            size_t r = LZ4F_decompress(d, out.data(), &out_n, in.data(), &in_n, nullptr);
            LZ4F_freeDecompressionContext(d);
            if (LZ4F_isError(r) || r != 0 || in_n != c)
              return Status::Corruption(where + ": damaged lz4 frame");
            size = out_n;
          }
          if (size == 0 || size > MaxDecoded(c) || size > h.length - decoded)
            return Status::Corruption(where + ": lz4 frame of " + std::to_string(size) +
                                      " bytes does not fit the data frame's " +
                                      std::to_string(h.length) + " (or its " + std::to_string(c) +
                                      " compressed bytes)");
          const bool block_sums = (static_cast<uint8_t>(lz4head[4]) & kLz4FlagBlockChecksum) != 0;
          e.frames.push_back(
              {fpos, static_cast<uint32_t>(c), static_cast<uint32_t>(size), block_sums});
          stored += c;
          decoded += size;
        }
        if (decoded != h.length)
          return Status::Corruption(At(f, hpos) + ": the lz4 frames of the data frame decode to " +
                                    std::to_string(decoded) + " bytes, not " +
                                    std::to_string(h.length));
      }
      if (stored > end - pos)
        return Status::Corruption(At(f, hpos) + ": truncated stream (the data frame's " +
                                  std::to_string(stored) + " bytes pass the end of the file at " +
                                  std::to_string(end) + ")");
      pos += stored;
      CHAINFS_RETURN_IF_ERROR(ExpectTerm(f, pos, "a data frame's payload"));
      pos += 2;
      ++data_frames;
    }
    s.extents.push_back(std::move(e));
  }
  if (compressed && data_frames != sizes.size())
    return Status::Corruption(f.Path() + ": the compression trailer lists " +
                              std::to_string(sizes.size()) + " data frames, the stream has " +
                              std::to_string(data_frames));
  if (pos != end)
    return Status::Corruption(At(f, pos) + ": " + std::to_string(end > pos ? end - pos : 0) +
                              " bytes after the stop frame" +
                              (pos > end ? " (frames run into the trailer)" : ""));
  return s;
}

}  // namespace

Status DecodeLz4Frame(const char* in, size_t stored, char* out, size_t size,
                      const std::string& where, bool content_checksum) {
  // With block checksums, they are verified here (libxxhash, fast) and
  // liblz4 skips its own, slow copy of XXH32 (chain/vnb/lz4_check.h).
  std::optional<Lz4FrameChecker> checker;  // only for a frame with block checksums
  if (stored >= 5 && (static_cast<uint8_t>(in[4]) & kLz4FlagBlockChecksum) != 0) {
    checker.emplace();
    CHAINFS_RETURN_IF_ERROR(checker->Feed(in, stored, where));
    if (!checker->ended())
      return Status::Corruption(where + ": damaged lz4 frame (truncated: no end mark in its " +
                                std::to_string(stored) + " bytes)");
  }
  LZ4F_dctx* d = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
    return Status::IoError(where + ": cannot create an lz4 context");
  std::unique_ptr<LZ4F_dctx, decltype(&LZ4F_freeDecompressionContext)> hold(
      d, LZ4F_freeDecompressionContext);
  LZ4F_decompressOptions_t opts{};
  opts.skipChecksums = checker ? 1 : 0;
  size_t in_n = stored, out_n = size;
  const size_t r = LZ4F_decompress(d, out, &out_n, in, &in_n, &opts);
  if (LZ4F_isError(r))
    return Status::Corruption(where + ": damaged lz4 frame (" + LZ4F_getErrorName(r) + ")");
  if (r != 0 || in_n != stored || out_n != size)
    return Status::Corruption(where + ": damaged lz4 frame (decodes to " + std::to_string(out_n) +
                              " of " + std::to_string(size) + " bytes)");
  if (checker && content_checksum && checker->content_checksum() &&
      XXH32(out, size, 0) != *checker->content_checksum())
    return Status::Corruption(where + ": damaged lz4 frame (content checksum does not hold)");
  return Status::Ok();
}

}  // namespace chainfs
