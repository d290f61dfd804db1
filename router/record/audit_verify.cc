// AuditLog::Verify and `relais audit verify` (router/record/audit.h): reads
// audit files back and checks every record's hash, its link to the record
// before it (in the file, and across rotated files) and its seq.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "router/record/audit.h"
#include "router/record/audit_format.h"

namespace relais::router {

using audit::kZeroHash;
using audit::ParsedRecord;

namespace {

// Where the chain stands between lines and between files.
struct ChainState {
  std::string prev = kZeroHash;
  uint64_t seq = 0;
  bool any = false;       // a record was accepted (in any file)
  std::string last_file;  // the previous file given (its path)
};

// Checks the lines of one file in order, continuing `chain`. Line() and
// Finish() return false, with *report final (bad_line, bad_file, error), at
// the first broken link.
class FileChecker {
 public:
  FileChecker(const std::string& path, bool first_file, ChainState* chain, AuditLog::VerifyReport* report)
      : path_(path), first_file_(first_file), chain_(chain), report_(report) {}

  // One line, without its '\n' (`terminated`: it had one). `too_long`: the
  // line was longer than kAuditMaxRecordBytes and `line` holds its start.
  bool Line(const std::string& line, bool too_long, bool terminated) {
    ++line_no_;
    ParsedRecord p;
    if (too_long) {
      p.error = "line longer than " + std::to_string(kAuditMaxRecordBytes) + " bytes";
    } else {
      p = audit::ParseRecord(line);
    }
    if (malformed_line_ != 0) {
      // Only the torn_tail segment record that Open() writes after a torn
      // line excuses it.
      bool excused =
          p.ok && p.kind == "segment" && p.reason == "torn_tail" && p.torn_bytes == std::to_string(malformed_len_);
      if (!excused) return Fail(malformed_line_, malformed_error_);
      malformed_line_ = 0;
    }
    if (!p.ok) {
      malformed_line_ = line_no_;
      malformed_error_ = p.error;
      malformed_len_ = line.size();
      malformed_unterminated_ = !terminated;
      return true;
    }
    const std::string why = line_no_ == 1 && !first_file_ ? FileLinkError(p) : LinkError(p);
    if (!why.empty()) return Fail(line_no_, why);
    chain_->prev = p.hash;
    chain_->seq = p.seq;
    chain_->any = true;
    ++report_->records;
    return true;
  }

  // After the last line: a malformed line that nothing excused.
  bool Finish() {
    if (malformed_line_ == 0) return true;
    return Fail(malformed_line_, malformed_unterminated_
                                     ? malformed_error_ + " (torn last line: the writer stopped mid-record)"
                                     : malformed_error_);
  }

 private:
  bool Fail(uint64_t line, std::string why) {
    report_->bad_line = line;
    report_->bad_file = path_;
    report_->error = std::move(why);
    return false;
  }

  // The link between files: why `p`, the first record of a file after the
  // first, does not continue the file before it; "" if it does.
  std::string FileLinkError(const ParsedRecord& p) const {
    const std::string& before = chain_->last_file;
    if (p.kind != "segment" || p.reason != "rotated") {
      return "does not continue " + before + ": its first record is not a \"rotated\" segment (" +
             (p.reason.empty() ? "kind " + p.kind : "reason " + p.reason) +
             "), so it starts a new chain or lost its first lines";
    }
    if (p.prev != chain_->prev) {
      if (!p.prev_file.empty() && p.prev_file != audit::BaseName(before)) {
        return "continues '" + p.prev_file + "', not " + before +
               " (a file is missing between them, or the files are out of order)";
      }
      return "\"prev\" does not match the last record of " + before + " (" + before +
             " was cut short, extended or replaced)";
    }
    if (p.seq != chain_->seq + 1) {
      return "\"seq\" is " + std::to_string(p.seq) + ", expected " + std::to_string(chain_->seq + 1) +
             " after the last record of " + before;
    }
    return "";
  }

  // The link within a file: why `p` does not follow the record before it;
  // "" if it does.
  std::string LinkError(const ParsedRecord& p) {
    if (line_no_ == 1 && p.kind == "segment" && p.reason == "rotated" && p.prev != kZeroHash) {
      // The first file given continues one that was not: accept the link
      // unchecked (the record's own hash still is) and say so.
      report_->note = path_ + " continues '" + p.prev_file + "', which was not given: that link was not checked";
      return "";
    }
    if (p.prev != chain_->prev) {
      return line_no_ == 1 ? "\"prev\" of the first record is not zero (lines before it were removed)"
                           : "\"prev\" does not match the previous record (a record was removed, "
                             "inserted or reordered before this line)";
    }
    if (p.seq != chain_->seq + 1) {
      return "\"seq\" is " + std::to_string(p.seq) + ", expected " + std::to_string(chain_->seq + 1);
    }
    return "";
  }

  const std::string& path_;
  const bool first_file_;
  ChainState* chain_;
  AuditLog::VerifyReport* report_;
  uint64_t line_no_ = 0;
  // A malformed line waiting to be excused by a torn_tail segment record.
  uint64_t malformed_line_ = 0;
  std::string malformed_error_;
  uint64_t malformed_len_ = 0;
  bool malformed_unterminated_ = false;
};

// Checks one file, continuing `chain`. Returns false with *report final
// (bad_line, bad_file, error) at the first broken link.
Result<bool> VerifyFile(const std::string& path, bool first_file, ChainState* chain, AuditLog::VerifyReport* report) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::string msg = "cannot open audit file '" + path + "': " + std::strerror(errno);
    return errno == ENOENT ? Status::NotFound(msg) : Status::IOError(msg);
  }
  FileChecker checker(path, first_file, chain, report);
  std::string line;
  bool too_long = false;
  char buf[64 * 1024];
  bool go = true;
  while (go) {
    size_t n = std::fread(buf, 1, sizeof(buf), f);
    if (n == 0) break;
    for (size_t i = 0; i < n && go; ++i) {
      if (buf[i] == '\n') {
        go = checker.Line(line, too_long, /*terminated=*/true);
        line.clear();
        too_long = false;
      } else if (line.size() < kAuditMaxRecordBytes) {
        line.push_back(buf[i]);
      } else {
        too_long = true;
      }
    }
  }
  bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  if (read_error) return Status::IOError("cannot read audit file '" + path + "'");
  if (go && (!line.empty() || too_long)) go = checker.Line(line, too_long, /*terminated=*/false);
  if (go) go = checker.Finish();
  chain->last_file = path;
  return go;
}

}  // namespace

Result<AuditLog::VerifyReport> AuditLog::Verify(const std::string& path) {
  return Verify(std::vector<std::string>{path});
}

Result<AuditLog::VerifyReport> AuditLog::Verify(const std::vector<std::string>& paths) {
  if (paths.empty()) return Status::InvalidArgument("no audit file to verify");
  VerifyReport report;
  ChainState chain;
  for (size_t i = 0; i < paths.size(); ++i) {
    Result<bool> ok = VerifyFile(paths[i], i == 0, &chain, &report);
    if (!ok.ok()) return ok.status();
    ++report.files;
    if (!*ok) break;
  }
  if (report.bad_line != 0) report.records = 0;
  return report;
}

int AuditVerifyCommand(const std::string& path) { return AuditVerifyCommand(std::vector<std::string>{path}); }

int AuditVerifyCommand(const std::vector<std::string>& paths) {
  Result<AuditLog::VerifyReport> r = AuditLog::Verify(paths);
  if (!r.ok()) {
    std::fprintf(stderr, "relais audit verify: %s\n", r.status().message().c_str());
    return 2;
  }
  if (r->bad_line != 0) {
    std::printf("%s:%llu: %s\n", r->bad_file.c_str(), static_cast<unsigned long long>(r->bad_line), r->error.c_str());
    return 1;
  }
  if (paths.size() == 1) {
    std::printf("OK: %llu records\n", static_cast<unsigned long long>(r->records));
  } else {
    std::printf("OK: %llu records in %zu files\n", static_cast<unsigned long long>(r->records), paths.size());
  }
  if (!r->note.empty()) std::printf("note: %s\n", r->note.c_str());
  return 0;
}

}  // namespace relais::router
