// Status and Result<T>: errors as values at I/O and decode boundaries.
//
// A Status is OK or carries a code and a message that names what failed and
// where ("delta /r/g/x.delta: index checksum mismatch"). Result<T> holds a T
// or a non-OK Status (a small std::expected for C++20). Neither throws.
//
//   Result<Footer> f = Footer::DecodeFrom(bytes);
//   if (!f.ok()) return f.status();
//   Use(f.value());
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>

namespace chainfs {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kCorruption,       // bytes on disk fail a check (magic, checksum, bounds)
    kIoError,          // the OS said no (errno kept)
    kInvalidArgument,  // the user's input is wrong
    kNotSupported,     // e.g. a newer format version
    kAlreadyExists,
    kBusy,             // a lock is held
    kNoSpace,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status InvalidArgument(std::string m) {
    return {Code::kInvalidArgument, std::move(m)};
  }
  static Status NotSupported(std::string m) { return {Code::kNotSupported, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  // A failure reported by another system (libvirt, a server), as it said it.
  static Status IoError(std::string m) { return {Code::kIoError, std::move(m), EIO}; }
  // From an errno value; ENOSPC/EDQUOT become kNoSpace.
  static Status FromErrno(int err, const std::string& what);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }
  // The errno a FUSE reply should carry for this status (EIO for corruption).
  int ToErrno() const;
  std::string ToString() const;
  // Prefixes the message with context: "opening view vm1/c3/vda: <message>".
  Status Context(const std::string& what) const;

 private:
  Status(Code c, std::string m, int e = 0) : code_(c), message_(std::move(m)), errno_(e) {}
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
};

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace chainfs

#define CHAINFS_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::chainfs::Status _st = (expr);          \
    if (!_st.ok()) return _st;               \
  } while (0)

#define CHAINFS_CONCAT_INNER(a, b) a##b
#define CHAINFS_CONCAT(a, b) CHAINFS_CONCAT_INNER(a, b)
#define CHAINFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
#define CHAINFS_ASSIGN_OR_RETURN(lhs, expr) \
  CHAINFS_ASSIGN_OR_RETURN_IMPL(CHAINFS_CONCAT(_res_, __LINE__), lhs, expr)
