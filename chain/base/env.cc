#include "chain/base/env.h"

#include <cstdio>
#include <random>

namespace chainfs {

std::string UnpredictableSuffix() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(v));
  return hex;
}

Status Env::WriteFileAtomic(const std::string& path, const std::string& contents) {
  return WriteFileAtomicImpl(path, contents, Durability::kFileAndRename);
}

Status Env::WriteFileAtomicNoDirSync(const std::string& path, const std::string& contents) {
  return WriteFileAtomicImpl(path, contents, Durability::kFile);
}

Status Env::WriteFileAtomicNoSync(const std::string& path, const std::string& contents) {
  return WriteFileAtomicImpl(path, contents, Durability::kNone);
}

Status Env::WriteFileAtomicImpl(const std::string& path, const std::string& contents,
                                Durability durability) {
  const std::string tmp = path + ".tmp." + UnpredictableSuffix();
  auto f = NewAppendFile(tmp);
  if (!f.ok()) return f.status();
  Status st = f.value()->Append(contents.data(), contents.size());
  if (st.ok() && durability != Durability::kNone) st = f.value()->Sync();
  if (st.ok()) st = f.value()->Close();
  if (st.ok())
    st = durability == Durability::kFileAndRename ? RenameFile(tmp, path)
                                                  : RenameFileNoDirSync(tmp, path);
  if (!st.ok()) (void)RemoveFile(tmp);
  return st;
}

Result<std::string> Env::ReadSmallFile(const std::string& path, size_t max_bytes) {
  auto f = NewRandomAccessFile(path);
  if (!f.ok()) return f.status();
  uint64_t size = f.value()->Size();
  if (size > max_bytes)
    return Status::Corruption(path + ": " + std::to_string(size) + " bytes, more than the " +
                              std::to_string(max_bytes) + " allowed");
  std::string s(size, '\0');
  CHAINFS_RETURN_IF_ERROR(f.value()->ReadAt(0, size, s.data()));
  return s;
}

namespace {
class StringBytes : public FileBytes {
 public:
  explicit StringBytes(std::string s) : s_(std::move(s)) { bytes_ = s_; }

 private:
  const std::string s_;
};
}  // namespace

Result<std::unique_ptr<const FileBytes>> Env::ReadSmallFileBytes(const std::string& path,
                                                                 size_t max_bytes) {
  CHAINFS_ASSIGN_OR_RETURN(std::string s, ReadSmallFile(path, max_bytes));
  return std::unique_ptr<const FileBytes>(std::make_unique<StringBytes>(std::move(s)));
}

Result<std::vector<DirEntryInfo>> Env::ListDirWithInfo(const std::string& dir) {
  CHAINFS_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
  std::vector<DirEntryInfo> out;
  out.reserve(names.size());
  for (std::string& n : names) {
    DirEntryInfo e{std::move(n), {}};
    auto info = Stat(dir + "/" + e.name);
    if (!info.ok() && info.status().code() == Status::Code::kNotFound) continue;
    if (info.ok()) e.info = info.value();
    else e.info.type = FileType::kOther;
    out.push_back(std::move(e));
  }
  return out;
}

bool Env::FileExists(const std::string& path) {
  auto info = Stat(path);
  return info.ok() || info.status().code() != Status::Code::kNotFound;
}

Result<bool> Env::Exists(const std::string& path) {
  auto info = Stat(path);
  if (info.ok()) return true;
  if (info.status().code() == Status::Code::kNotFound) return false;
  return info.status();
}

Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccessFile(const std::string& path) {
  return Env::Default()->NewRandomAccessFile(path);
}

Result<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  return Env::Default()->ReadWholeFile(path, max_bytes);
}

}  // namespace chainfs
