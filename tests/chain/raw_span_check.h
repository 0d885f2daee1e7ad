// Layer::RawSpan checked against ReadBlock: the bytes a span names in its
// file must be the bytes ReadBlock gives there, since a mount splices them
// to the reader instead (fusefs/driver/splice_reply.h).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "chain/layer/view.h"

namespace chainfs::testing {

struct RawSpanCount {
  uint64_t spans = 0;  // pieces a layer gave as file bytes
  uint64_t reads = 0;  // pieces it left to ReadBlock
};

// For every stored entry of every layer of view: the whole block, its
// second byte on, its second half, its last byte and its first 512 bytes.
inline RawSpanCount ExpectRawSpansMatchReadBlock(const View& view) {
  RawSpanCount count;
  for (const View::LayerRef& ref : view.layers()) {
    const Layer& layer = *ref.layer;
    const uint32_t bs = layer.block_size();
    std::string block(bs, '\0'), got;
    layer.ForEachExtent([&](const LayerExtent& e) {
      if (e.kind != LayerExtent::Kind::kData) return;
      const uint64_t first = e.first_entry, n = (e.length + bs - 1) / bs;
      for (uint64_t entry = first; entry < first + n; ++entry) {
        const Status st = layer.ReadBlock(entry, block.data());
        ASSERT_TRUE(st.ok()) << layer.location() << " entry " << entry << ": " << st.ToString();
        for (auto [off, len] : {std::pair<uint32_t, uint32_t>{0, bs}, {1, bs - 1}, {bs / 2, bs / 2},
                                {bs - 1, 1}, {0, std::min(bs, 512u)}}) {
          auto span = layer.RawSpan(entry, off, len);
          if (!span) {
            ++count.reads;
            continue;
          }
          ++count.spans;
          got.assign(len, '\0');
          const Status r = span->file->ReadAt(span->offset, len, got.data());
          ASSERT_TRUE(r.ok()) << layer.location() << " entry " << entry << ": " << r.ToString();
          ASSERT_TRUE(got == block.substr(off, len))
              << layer.location() << " entry " << entry << " [" << off << ", +" << len
              << "): the span at file offset " << span->offset << " is not ReadBlock's bytes";
        }
      }
    });
  }
  return count;
}

}  // namespace chainfs::testing
