// The native format's entry in the layer format registry (chain/layer/registry.cc):
// chainfs delta files (delta_format.h) read as NativeLayer and written
// through DeltaWriter with the native block codec.
#pragma once

#include "chain/layer/format.h"

namespace chainfs {

// name "native"; probe: the delta magic "chainfsD" at offset 0.
extern const LayerFormat kNativeLayerFormat;

}  // namespace chainfs
