#include "chain/vnb/lz4_check.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "chain/base/coding.h"

namespace chainfs {
namespace {

XXH32_state_t* Xxh(void* p) { return static_cast<XXH32_state_t*>(p); }

}  // namespace

Lz4FrameChecker::Lz4FrameChecker() : xxh_(XXH32_createState()) {}

Lz4FrameChecker::~Lz4FrameChecker() { XXH32_freeState(Xxh(xxh_)); }

Status Lz4FrameChecker::Fail(const std::string& where, const std::string& what) {
  error_ = Status::Corruption(where + ": damaged lz4 frame (" + what + ", at frame byte " +
                              std::to_string(pos_) + ")");
  return error_;
}

Status Lz4FrameChecker::Feed(const char* p, size_t n, const std::string& where) {
  if (!error_.ok()) return error_;
  if (xxh_ == nullptr) return Status::IoError(where + ": cannot allocate an XXH32 state");
  while (n > 0) {
    if (state_ == State::kEnded) return Fail(where, std::to_string(n) + " bytes after its end");
    if (state_ == State::kBlockData) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, block_left_));
      if (block_checksums() && XXH32_update(Xxh(xxh_), p, take) != XXH_OK)
        return Status::IoError(where + ": XXH32 failed");
      p += take;
      n -= take;
      pos_ += take;
      block_left_ -= take;
      if (block_left_ == 0) {
        small_n_ = 0;
        small_want_ = 4;
        if (block_checksums()) {
          state_ = State::kBlockSum;
        } else {
          state_ = State::kBlockSize;
          verified_ = pos_;
        }
      }
      continue;
    }
    // Gathering a header, a block size or a checksum.
    const size_t take = std::min(n, small_want_ - small_n_);
    std::memcpy(small_ + small_n_, p, take);
    small_n_ += take;
    p += take;
    n -= take;
    pos_ += take;
    if (small_n_ < small_want_) continue;
    const uint32_t v = DecodeFixed32(small_);
    switch (state_) {
      case State::kHeader: {
        if (small_n_ == 7) {
          if (v != kLz4Magic) return Fail(where, "not an lz4 frame: bad magic");
          flg_ = static_cast<uint8_t>(small_[4]);
          if ((flg_ >> 6) != 1 || (flg_ & 0x02) != 0)
            return Fail(where, "unknown version or reserved flag in its header");
          const size_t full = 7 + ((flg_ & 0x08) ? 8 : 0) + ((flg_ & 0x01) ? 4 : 0);
          if (full > small_n_) {
            small_want_ = full;
            continue;
          }
        }
        const uint8_t bd = static_cast<uint8_t>(small_[5]);
        const int max_id = (bd >> 4) & 0x7;
        if ((bd & 0x8F) != 0 || max_id < 4)
          return Fail(where, "bad block size byte in its header");
        max_block_ = size_t{1} << (8 + 2 * max_id);  // 4: 64 KiB ... 7: 4 MiB
        const uint8_t hc = static_cast<uint8_t>((XXH32(small_ + 4, small_n_ - 5, 0) >> 8) & 0xFF);
        if (hc != static_cast<uint8_t>(small_[small_n_ - 1]))
          return Fail(where, "header checksum does not hold");
        state_ = State::kBlockSize;
        verified_ = pos_;
        break;
      }
      case State::kBlockSize: {
        if (v == 0) {
          if (flg_ & kLz4FlagContentChecksum) {
            state_ = State::kContentSum;
          } else {
            state_ = State::kEnded;
            verified_ = pos_;
          }
          break;
        }
        const uint32_t size = v & 0x7FFFFFFFu;
        if (size == 0 || size > max_block_)
          return Fail(where, "block of " + std::to_string(size) + " bytes, above its " +
                                 std::to_string(max_block_) + "-byte blocks");
        block_left_ = size;
        if (block_checksums() && XXH32_reset(Xxh(xxh_), 0) != XXH_OK)
          return Status::IoError(where + ": XXH32 failed");
        state_ = State::kBlockData;
        break;
      }
      case State::kBlockSum:
        if (XXH32_digest(Xxh(xxh_)) != v) return Fail(where, "block checksum does not hold");
        state_ = State::kBlockSize;
        verified_ = pos_;
        break;
      case State::kContentSum:
        content_ = v;
        state_ = State::kEnded;
        verified_ = pos_;
        break;
      default:
        break;
    }
    small_n_ = 0;
    small_want_ = 4;
  }
  return Status::Ok();
}

}  // namespace chainfs
