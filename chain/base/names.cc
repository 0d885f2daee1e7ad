#include "chain/base/names.h"

namespace chainfs {

Status ValidateName(const std::string& kind, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(kind + " name '" + name + "' " + why +
                                   " (allowed: A-Z a-z 0-9 . _ -, no leading dot, "
                                   "at most 128 characters)");
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 128) return bad("is too long");
  if (name[0] == '.') return bad("starts with a dot");
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return bad("has a character outside the allowed set");
  }
  return Status::Ok();
}

}  // namespace chainfs
