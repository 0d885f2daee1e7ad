#include "chain/base/status.h"

#include <cstring>

namespace chainfs {

Status Status::FromErrno(int err, const std::string& what) {
  Code c = (err == ENOSPC || err == EDQUOT) ? Code::kNoSpace
           : err == ENOENT                  ? Code::kNotFound
           : err == EEXIST                  ? Code::kAlreadyExists
                                            : Code::kIoError;
  return Status(c, what + ": " + std::strerror(err), err);
}

int Status::ToErrno() const {
  switch (code_) {
    case Code::kOk: return 0;
    case Code::kNotFound: return ENOENT;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kNotSupported: return EOPNOTSUPP;
    case Code::kAlreadyExists: return EEXIST;
    case Code::kBusy: return EBUSY;
    case Code::kNoSpace: return ENOSPC;
    case Code::kIoError: return errno_ != 0 ? errno_ : EIO;
    case Code::kCorruption: return EIO;
  }
  return EIO;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_;
}

Status Status::Context(const std::string& what) const {
  if (ok()) return *this;
  return Status(code_, what + ": " + message_, errno_);
}

}  // namespace chainfs
