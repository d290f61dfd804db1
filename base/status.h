// Status and Result<T>: how every Relais module reports errors.
//
// Foreign error codes (libuv ints, LMDB codes, OFCondition, zstd) become a
// Status once, in the wrapper that calls them. Nothing throws across module
// boundaries. Modelled on leveldb::Status.
#ifndef RELAIS_BASE_STATUS_H_
#define RELAIS_BASE_STATUS_H_

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace relais {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,    // bad input: config, data set, command line
    kNotFound,           // no such object, key or file
    kCorruption,         // stored or received bytes are inconsistent
    kIOError,            // disk, socket
    kResourceExhausted,  // store full, too many associations
    kAlreadyExists,
    kUnavailable,  // try again later (closed, shutting down)
    kInternal,     // a bug: an invariant did not hold
  };

  Status() = default;  // OK

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status ResourceExhausted(std::string msg) { return Status(Code::kResourceExhausted, std::move(msg)); }
  static Status AlreadyExists(std::string msg) { return Status(Code::kAlreadyExists, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsResourceExhausted() const { return code_ == Code::kResourceExhausted; }
  const std::string& message() const { return message_; }

  // "NotFound: no object with SOP Instance UID 1.2.3" or "OK".
  std::string ToString() const {
    if (ok()) return "OK";
    return std::string(CodeName(code_)) + ": " + message_;
  }

  static const char* CodeName(Code c) {
    switch (c) {
      case Code::kOk: return "OK";
      case Code::kInvalidArgument: return "InvalidArgument";
      case Code::kNotFound: return "NotFound";
      case Code::kCorruption: return "Corruption";
      case Code::kIOError: return "IOError";
      case Code::kResourceExhausted: return "ResourceExhausted";
      case Code::kAlreadyExists: return "AlreadyExists";
      case Code::kUnavailable: return "Unavailable";
      case Code::kInternal: return "Internal";
    }
    return "Unknown";
  }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T>: a T or a non-OK Status (g++ 12 has no std::expected).
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an OK Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: !ok() for a meaningful message; returns OK when ok().
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace relais

// Returns early from the enclosing function when `expr` is not OK.
#define RELAIS_RETURN_IF_ERROR(expr)       \
  do {                                     \
    ::relais::Status _relais_s = (expr);   \
    if (!_relais_s.ok()) return _relais_s; \
  } while (0)

#endif  // RELAIS_BASE_STATUS_H_
