// Hot backups and restores of the store (FORMAT.md "Backups"): a restored
// store holds every object byte for byte with its queue rows, dead letters
// and attempt log; a backup taken while objects keep arriving is consistent;
// damaged backups and occupied targets are refused with clear errors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <atomic>
#include <cinttypes>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "store/backup.h"
#include "store/store.h"
#include "tests/store/store_test_util.h"

namespace relais::store {
namespace {

using testing::MakeMeta;
using testing::PutObject;
using testing::RandomBytes;
using testing::ReadAll;
using testing::TempDir;
using testing::TestOptions;
using Kind = QueueUpdate::Kind;

ObjectMeta Routed(const std::string& uid) { return testing::RoutedMeta2(uid); }

QueueUpdate Update(Kind kind, const std::string& dest, uint64_t id) {
  QueueUpdate u;
  u.kind = kind;
  u.destination = dest;
  u.priority = dest == "telerad" ? 10 : 0;
  u.object_id = id;
  u.attempts = 3;
  u.status = 0xA700;
  u.error = "refused: out of resources";
  u.log_attempt = true;
  u.attempt.association = "S1 " + dest + "@10.0.0.5:104";
  u.attempt.result = kind == Kind::kDeadLetter ? "dead" : "retry";
  u.attempt.status = 0xA700;
  u.attempt.error = u.error;
  return u;
}

Status Apply(Store& store, std::vector<QueueUpdate> updates) {
  return testing::ApplyUpdates(store, std::move(updates));
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Everything a store holds, as text, for whole-store comparisons.
std::string Dump(const Store& st) {
  std::string out;
  char buf[256];
  EXPECT_TRUE(st.List([&](const ObjectMeta& m) {
                  std::snprintf(buf, sizeof(buf),
                                "object %" PRIu64 " %s raw=%" PRIu64 " stored=%" PRIu64 " chunks=%u sum=%016" PRIx64
                                " routes=%zu\n",
                                m.id, m.sop_instance_uid.c_str(), m.raw_size, m.stored_size, m.chunk_count, m.checksum,
                                m.routes.size());
                  out += buf;
                  std::vector<uint8_t> bytes;
                  Status s = ReadAll(st, m.id, &bytes);
                  EXPECT_TRUE(s.ok()) << s.ToString();
                  std::snprintf(buf, sizeof(buf), "  bytes %zu xxh3=%016" PRIx64 "\n", bytes.size(),
                                static_cast<uint64_t>(XXH3_64bits(bytes.data(), bytes.size())));
                  out += buf;
                  EXPECT_TRUE(st.ListAttempts(m.id, [&](const Attempt& a) {
                                  out += "  attempt " + a.destination + " " + a.association + " " + a.result + " " +
                                         std::to_string(a.status) + " " + a.error + " " + std::to_string(a.unix_ms) +
                                         "\n";
                                  return true;
                                }).ok());
                  return true;
                }).ok());
  auto row = [&](const char* kind, const QueueRow& r) {
    out += std::string(kind) + " " + r.destination + " " + std::to_string(r.priority) + " " +
           std::to_string(r.object_id) + " " + std::to_string(r.attempts) + " " +
           std::to_string(r.next_attempt_unix_ms) + " " + r.rule + " " + r.edits + " " + std::to_string(r.last_status) +
           " " + r.last_error + " " + std::to_string(r.dead_unix_ms) + "\n";
    return true;
  };
  EXPECT_TRUE(st.ListQueue([&](const QueueRow& r) { return row("queue", r); }).ok());
  EXPECT_TRUE(st.ListDead([&](const QueueRow& r) { return row("dead", r); }).ok());
  Store::Stats stats = st.GetStats();
  out += "stats objects=" + std::to_string(stats.objects) + " raw=" + std::to_string(stats.raw_bytes) +
         " stored=" + std::to_string(stats.stored_bytes) + "\n";
  return out;
}

Result<std::unique_ptr<Store>> OpenReadOnly(const std::string& path) {
  Options o = TestOptions(path);
  o.read_only = true;
  return Store::Open(o);
}

// A store with objects of several sizes (one empty, one of many chunks),
// queue rows, a dead letter, retries and their attempt log.
class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto st = Store::Open(TestOptions(tmp_.Sub("store")));
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    store_ = std::move(*st);
    const size_t sizes[] = {0, 1, 1000, 64 << 10, (64 << 10) + 1, 700000};
    for (size_t i = 0; i < std::size(sizes); ++i) {
      auto r = PutObject(*store_, Routed("1.2.3." + std::to_string(i)), RandomBytes(sizes[i], 100 + i));
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      ids_.push_back(r.meta.id);
    }
    ASSERT_TRUE(
        Apply(*store_, {Update(Kind::kDeadLetter, "telerad", ids_[1]), Update(Kind::kRetryLater, "archive", ids_[2]),
                        Update(Kind::kRetryLater, "telerad", ids_[5])})
            .ok());
  }

  TempDir tmp_;
  std::unique_ptr<Store> store_;
  std::vector<uint64_t> ids_;
};

TEST_F(BackupTest, RestoredStoreHoldsEveryObjectRowAndAttempt) {
  const std::string before = Dump(*store_);
  ASSERT_NE(before.find("dead telerad"), std::string::npos);
  ASSERT_NE(before.find("attempt archive"), std::string::npos);

  uint64_t last_progress = 0;
  Status s = store_->Backup(tmp_.Sub("backup"), [&](uint64_t n) { last_progress = n; });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("backup/data.mdb.partial")));

  auto info = Store::ReadBackupManifest(tmp_.Sub("backup"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->objects, ids_.size());
  EXPECT_EQ(info->format_version, 2u);
  EXPECT_EQ(info->raw_bytes, store_->GetStats().raw_bytes);
  EXPECT_EQ(info->file_bytes, std::filesystem::file_size(tmp_.Sub("backup/data.mdb")));
  EXPECT_EQ(last_progress, info->file_bytes);
  EXPECT_GT(info->created_unix_ms, 0);
  EXPECT_NE(info->source_path.find("store"), std::string::npos);

  s = Store::RestoreBackup(tmp_.Sub("backup"), tmp_.Sub("restored"));
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("restored/data.mdb.partial")));

  // Read-only first (no recovery), then as a serving store would open it.
  {
    auto ro = OpenReadOnly(tmp_.Sub("restored"));
    ASSERT_TRUE(ro.ok()) << ro.status().ToString();
    EXPECT_EQ(Dump(**ro), before);
  }
  auto rw = Store::Open(TestOptions(tmp_.Sub("restored")));
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  EXPECT_EQ(Dump(**rw), before);
  // Every object by UID, with its checksum.
  for (size_t i = 0; i < ids_.size(); ++i) {
    auto m = (*rw)->Find("1.2.3." + std::to_string(i));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    auto orig = store_->Get(ids_[i]);
    ASSERT_TRUE(orig.ok());
    EXPECT_EQ(m->checksum, orig->checksum);
    std::vector<uint8_t> a, b;
    ASSERT_TRUE(ReadAll(**rw, m->id, &a).ok());
    ASSERT_TRUE(ReadAll(*store_, ids_[i], &b).ok());
    EXPECT_EQ(a, b);
  }
  // The restored store keeps working: new ids do not collide.
  auto r = PutObject(**rw, Routed("9.9.9"), RandomBytes(5000, 9));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_GT(r.meta.id, ids_.back());
}

TEST_F(BackupTest, BackupFromAReadOnlyOpenOfTheSameStore) {
  // The CLI opens read-only; here the writer is closed first (one process
  // must not open one LMDB env twice; the integration test covers a
  // serving process).
  const std::string before = Dump(*store_);
  store_.reset();
  auto ro = OpenReadOnly(tmp_.Sub("store"));
  ASSERT_TRUE(ro.ok());
  ASSERT_TRUE((*ro)->Backup(tmp_.Sub("b"), nullptr).ok());
  ASSERT_TRUE(Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r")).ok());
  auto restored = OpenReadOnly(tmp_.Sub("r"));
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(Dump(**restored), before);
}

TEST_F(BackupTest, HotBackupWhileObjectsKeepArrivingIsConsistent) {
  std::atomic<bool> stop{false};
  std::atomic<int> committed{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      auto r = PutObject(*store_, Routed("5.5." + std::to_string(i)), RandomBytes(3000 + (i % 7) * 40000, 500 + i));
      if (!r.status.ok()) break;
      committed.fetch_add(1);
    }
  });
  while (committed.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Status s1 = store_->Backup(tmp_.Sub("hot1"), nullptr);
  while (committed.load() < 20) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Status s2 = store_->Backup(tmp_.Sub("hot2"), nullptr);
  stop = true;
  writer.join();
  ASSERT_TRUE(s1.ok()) << s1.ToString();
  ASSERT_TRUE(s2.ok()) << s2.ToString();

  uint64_t previous = 0;
  for (const char* name : {"hot1", "hot2"}) {
    auto info = Store::ReadBackupManifest(tmp_.Sub(name));
    ASSERT_TRUE(info.ok());
    const std::string target = tmp_.Sub(std::string(name) + "-restored");
    Status s = Store::RestoreBackup(tmp_.Sub(name), target);
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto st = OpenReadOnly(target);
    ASSERT_TRUE(st.ok());
    uint64_t count = 0, raw = 0;
    ASSERT_TRUE((*st)
                    ->List([&](const ObjectMeta& m) {
                      std::vector<uint8_t> bytes;
                      Status r = ReadAll(**st, m.id, &bytes);  // verifies the checksum
                      EXPECT_TRUE(r.ok()) << m.sop_instance_uid << ": " << r.ToString();
                      EXPECT_EQ(bytes.size(), m.raw_size);
                      // Every listed object is also the one its UID maps to.
                      auto f = (*st)->Find(m.sop_instance_uid);
                      EXPECT_TRUE(f.ok() && f->id == m.id);
                      ++count;
                      raw += m.raw_size;
                      return true;
                    })
                    .ok());
    EXPECT_EQ(count, info->objects);
    EXPECT_EQ(raw, info->raw_bytes);  // the totals are those of the same transaction
    EXPECT_EQ((*st)->GetStats().raw_bytes, raw);
    EXPECT_GE(count, ids_.size() + 5);
    EXPECT_GT(count, previous);
    previous = count;
  }
}

TEST_F(BackupTest, RefusesADirectoryThatHoldsABackupOrAStore) {
  ASSERT_TRUE(store_->Backup(tmp_.Sub("b"), nullptr).ok());
  const std::string manifest = ReadText(tmp_.Sub("b/relais-backup.json"));
  Status s = store_->Backup(tmp_.Sub("b"), nullptr);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  EXPECT_NE(s.message().find("already holds a backup"), std::string::npos) << s.message();
  EXPECT_EQ(ReadText(tmp_.Sub("b/relais-backup.json")), manifest);  // untouched

  s = store_->Backup(tmp_.Sub("store"), nullptr);
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  EXPECT_EQ(Dump(*store_).find("object"), 0u);  // the store is untouched

  // A leftover partial file of an interrupted backup is simply overwritten.
  std::filesystem::create_directories(tmp_.Sub("c"));
  WriteText(tmp_.Sub("c/data.mdb.partial"), "interrupted");
  EXPECT_TRUE(store_->Backup(tmp_.Sub("c"), nullptr).ok());
}

// Backups hold patient data (issue 14): 0600, owned like the store
// directory; a restore run as root gives the files to the owner of the
// new store's parent directory.
TEST_F(BackupTest, BackupAndRestoredFilesAreOwnerOnlyAndOwnedLikeTheStore) {
  const bool root = ::geteuid() == 0;
  const uid_t owner = root ? 65534 : ::geteuid();  // nobody, when we can give files away
  const gid_t group = root ? 65534 : ::getegid();
  if (root) {
    ASSERT_EQ(::chown(tmp_.Sub("store").c_str(), owner, group), 0);
  }
  ASSERT_TRUE(store_->Backup(tmp_.Sub("b"), nullptr).ok());
  for (const char* name : {"data.mdb", kBackupManifest}) {
    struct stat st;
    const std::string path = tmp_.Sub("b") + "/" + name;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
    EXPECT_EQ(st.st_uid, owner) << path;
    EXPECT_EQ(st.st_gid, group) << path;
  }
  ASSERT_EQ(::mkdir(tmp_.Sub("parent").c_str(), 0755), 0);
  if (root) {
    ASSERT_EQ(::chown(tmp_.Sub("parent").c_str(), owner, group), 0);
  }
  const std::string restored = tmp_.Sub("parent") + "/store";
  ASSERT_TRUE(Store::RestoreBackup(tmp_.Sub("b"), restored).ok());
  for (const std::string& path : {restored, restored + "/data.mdb"}) {
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_uid, owner) << path;
    EXPECT_EQ(st.st_gid, group) << path;
  }
  struct stat data;
  ASSERT_EQ(::stat((restored + "/data.mdb").c_str(), &data), 0);
  EXPECT_EQ(data.st_mode & 0777, 0600u);
}

TEST_F(BackupTest, RestoreNeverOverwritesAStore) {
  ASSERT_TRUE(store_->Backup(tmp_.Sub("b"), nullptr).ok());
  // Into the live store itself.
  Status s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("store"));
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  EXPECT_NE(s.message().find("move that directory away"), std::string::npos) << s.message();
  // Into another (closed) store.
  {
    auto other = Store::Open(TestOptions(tmp_.Sub("other")));
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(PutObject(**other, MakeMeta("7.7.7"), RandomBytes(100, 1)).status.ok());
  }
  s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("other"));
  EXPECT_EQ(s.code(), Status::Code::kAlreadyExists) << s.ToString();
  auto other = OpenReadOnly(tmp_.Sub("other"));
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE((*other)->Find("7.7.7").ok());
  EXPECT_FALSE((*other)->Find("1.2.3.0").ok());
  // An existing empty directory is fine.
  std::filesystem::create_directories(tmp_.Sub("empty"));
  EXPECT_TRUE(Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("empty")).ok());
}

TEST_F(BackupTest, MissingOrCorruptManifestIsAClearError) {
  Status s = Store::RestoreBackup(tmp_.Sub("nothing-here"), tmp_.Sub("r"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_NE(s.message().find("relais-backup.json is missing"), std::string::npos) << s.message();

  ASSERT_TRUE(store_->Backup(tmp_.Sub("b"), nullptr).ok());
  const std::string manifest = ReadText(tmp_.Sub("b/relais-backup.json"));
  BackupInfo good;
  ASSERT_TRUE(DecodeBackupManifest(manifest, &good).ok());
  EXPECT_EQ(EncodeBackupManifest(good), manifest);  // round trip

  // Every truncation of the manifest is refused (the whole text minus its
  // final newline still parses).
  for (size_t n = 0; n + 1 < manifest.size(); ++n) {
    BackupInfo info;
    Status d = DecodeBackupManifest(manifest.substr(0, n), &info);
    EXPECT_EQ(d.code(), Status::Code::kCorruption) << "prefix " << n << ": " << d.ToString();
  }
  // Through RestoreBackup: a garbage manifest, a missing field, an
  // oversized number, a newer manifest version.
  struct Case {
    std::string text;
    Status::Code code;
    const char* says;
  } const cases[] = {
      {"\x7f"
       "ELF garbage",
       Status::Code::kCorruption, "does not parse"},
      {"{\"relais_backup\": 1}", Status::Code::kCorruption, "no \"format_version\""},
      {std::string(manifest).replace(manifest.find("\"objects\": "), 11, "\"objects\": 99999999999999999999999"),
       Status::Code::kCorruption, "objects"},
      {std::string(manifest).replace(manifest.find("\"relais_backup\": 1"), 18, "\"relais_backup\": 2"),
       Status::Code::kInvalidArgument, "manifest version 2"},
      {std::string(100000, '{'), Status::Code::kCorruption, "too large"},
  };
  for (const Case& c : cases) {
    WriteText(tmp_.Sub("b/relais-backup.json"), c.text);
    s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r"));
    EXPECT_EQ(s.code(), c.code) << s.ToString();
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s.message();
    EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("r/data.mdb")));
  }
  // Manifest present, data.mdb missing.
  WriteText(tmp_.Sub("b/relais-backup.json"), manifest);
  std::filesystem::rename(tmp_.Sub("b/data.mdb"), tmp_.Sub("b/moved"));
  s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r"));
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("no readable data.mdb"), std::string::npos) << s.message();
}

TEST_F(BackupTest, DamagedDataFileIsRefusedNeverCrashes) {
  ASSERT_TRUE(store_->Backup(tmp_.Sub("b"), nullptr).ok());
  const std::string data = ReadText(tmp_.Sub("b/data.mdb"));
  const std::string manifest = ReadText(tmp_.Sub("b/relais-backup.json"));
  BackupInfo good;
  ASSERT_TRUE(DecodeBackupManifest(manifest, &good).ok());
  ASSERT_GT(data.size(), 3 * 4096u);

  std::vector<size_t> cuts = {
      0, 1, 100, 4095, 4096, 8191, 8192, 8193, data.size() / 2, data.size() - 4096, data.size() - 1};
  for (size_t cut : cuts) {
    SCOPED_TRACE("truncated to " + std::to_string(cut));
    WriteText(tmp_.Sub("b/data.mdb"), data.substr(0, cut));
    // As is: the size differs from the manifest's.
    WriteText(tmp_.Sub("b/relais-backup.json"), manifest);
    Status s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r"));
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("truncated or altered"), std::string::npos) << s.message();
    EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("r/data.mdb")));
    // With a manifest rewritten to match the truncated file (size and
    // checksum): LMDB must not be let to map pages past the end.
    BackupInfo forged = good;
    forged.file_bytes = cut;
    forged.file_xxh3 = XXH3_64bits(data.data(), cut);
    WriteText(tmp_.Sub("b/relais-backup.json"), EncodeBackupManifest(forged));
    s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r"));
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
    EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("r/data.mdb")));
    EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("r/data.mdb.partial")));
  }
  // One flipped byte anywhere: the checksum in the manifest catches it.
  for (size_t at : {size_t{0}, size_t{5000}, data.size() - 1}) {
    std::string bad = data;
    bad[at] = static_cast<char>(bad[at] ^ 0x40);
    WriteText(tmp_.Sub("b/data.mdb"), bad);
    WriteText(tmp_.Sub("b/relais-backup.json"), manifest);
    Status s = Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r"));
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("checksum"), std::string::npos) << s.message();
    EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("r/data.mdb")));
  }
  // Restored intact afterwards.
  WriteText(tmp_.Sub("b/data.mdb"), data);
  EXPECT_TRUE(Store::RestoreBackup(tmp_.Sub("b"), tmp_.Sub("r")).ok());
}

}  // namespace
}  // namespace relais::store
