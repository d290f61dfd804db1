// Delivery end to end, against real peers on 127.0.0.1: storescu sends into
// `relais serve`, whose scheduler forwards to DCMTK storescp and Orthanc.
// What is checked: each destination gets exactly the objects its rules name,
// with the data set Relais stored (byte for byte when no edit or conversion
// applies); tag edits and transfer syntax preferences apply per destination;
// a destination that is down is retried with growing backoff and then served
// in priority order; a permanent refusal ends in the dead-letter list with a
// reason, and `relais queue retry --dead` sends it again; kill -9 during
// delivery loses nothing (at-least-once); retention keeps or removes
// delivered objects.
//
// No assertion depends on speed: every wait polls for a state with a
// generous deadline that only bounds a hang.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"
#include "peers.h"

namespace relais::itest {
namespace {

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string Basename(const std::string& path) { return path.substr(path.rfind('/') + 1); }

StorescpOptions ScpOptions(const std::string& ae, uint16_t port = 0, std::vector<std::string> only = {},
                           std::vector<std::string> prefer = {}) {
  StorescpOptions o;
  o.ae_title = ae;
  o.port = port;
  o.only_sop_classes = std::move(only);
  o.prefer = std::move(prefer);
  return o;
}

// ---- Relais configuration and CLI -------------------------------------------

std::string Destination(const std::string& name, const std::string& ae, uint16_t port, const std::string& more = "") {
  return "[[destination]]\nname = \"" + name + "\"\nae_title = \"" + ae +
         "\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) + "\n" + more;
}

// Appliance config text appended after [listener] and [store].
std::string ApplianceExtra(const std::string& rules_path, const std::string& delivery) {
  return "\n[delivery]\n" + delivery + "\n[rules]\npath = \"" + rules_path + "\"\n";
}

std::vector<std::string> JsonLines(const std::string& output) {
  std::vector<std::string> out;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '{') out.push_back(line);
  }
  return out;
}

// `relais queue ls --json [--dead]`: one line per row (queued and dead, or
// dead only). Fails the test if the command fails.
std::vector<std::string> QueueRows(const RelaisProcess& relais, bool dead_only = false) {
  std::vector<std::string> argv = {RelaisBinary(), "queue", "ls", "--config", relais.config_path(), "--json"};
  if (dead_only) argv.push_back("--dead");
  RunResult r = RunCommand(argv, 120);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return JsonLines(r.output);
}

size_t CountState(const std::vector<std::string>& rows, const std::string& state) {
  return std::count_if(rows.begin(), rows.end(), [&](const std::string& r) { return JsonField(r, "state") == state; });
}

// Polls until no row is "queued" (rows may be dead). False on timeout.
bool WaitNoQueuedRows(const RelaisProcess& relais, int timeout_s, std::vector<std::string>* last = nullptr) {
  int64_t deadline = NowMs() + timeout_s * 1000LL;
  while (true) {
    std::vector<std::string> rows = QueueRows(relais);
    if (last != nullptr) *last = rows;
    if (CountState(rows, "queued") == 0) return true;
    if (NowMs() > deadline) return false;
    SleepMs(250);
  }
}

std::string ObjectShow(const RelaisProcess& relais, const std::string& uid) {
  RunResult r = RunCommand({RelaisBinary(), "object", "show", "--config", relais.config_path(), uid, "--json"}, 60);
  std::vector<std::string> lines = JsonLines(r.output);
  return lines.empty() ? r.output : lines[0];
}

// The "attempts" array of `object show --json` as raw JSON objects.
std::vector<std::string> Attempts(const std::string& show_json) { return JsonArrayField(show_json, "attempts"); }

int64_t JsonInt(const std::string& json, const std::string& key) {
  std::string needle = "\"" + key + "\":";
  size_t p = json.find(needle);
  if (p == std::string::npos) return -1;
  return std::strtoll(json.c_str() + p + needle.size(), nullptr, 10);
}

// "event=delivered" lines of the relais log for destination `dest`, as the
// SOP Instance UIDs in log order.
std::vector<std::string> DeliveredInLogOrder(const std::string& log, const std::string& dest) {
  std::vector<std::string> out;
  std::istringstream in(log);
  std::string line;
  const std::string tag = "dest=" + dest + " ";
  while (std::getline(in, line)) {
    if (line.find(tag) == std::string::npos || line.find("event=delivered") == std::string::npos) continue;
    size_t p = line.find(" sop=");
    if (p == std::string::npos) continue;
    p += 5;
    out.push_back(line.substr(p, line.find(' ', p) - p));
  }
  return out;
}

// ---- The corpus -------------------------------------------------------------

struct CorpusFile {
  std::string path;
  std::string uid;
  std::string sop_class;
  std::string ts;
  std::string modality;
  uint16_t bits_allocated = 0;
  uint16_t samples = 0;
  bool has_pixels = false;
  // PatientID, StudyInstanceUID and SeriesInstanceUID have values: Orthanc
  // refuses objects without them (with 0xA700, which Relais retries).
  bool indexable = false;
};

// Well-formed corpus files (MANIFEST.tsv notes do not say MALFORMED) that
// DCMTK loads, whose SOP Instance UID no other such file shares.
std::vector<CorpusFile> WellFormedCorpus() {
  std::set<std::string> malformed;
  std::istringstream manifest(ReadFile(CorpusDir() + "/MANIFEST.tsv"));
  std::string line;
  while (std::getline(manifest, line)) {
    if (line.find("MALFORMED") != std::string::npos) malformed.insert(line.substr(0, line.find('\t')));
  }
  std::vector<CorpusFile> all;
  std::map<std::string, int> uid_count;
  for (const std::string& path : ListFiles(CorpusDir())) {
    std::string name = Basename(path);
    if (name.size() < 5 || name.substr(name.size() - 4) != ".dcm" || malformed.count(name) != 0) continue;
    DcmFileFormat ff;
    if (ff.loadFile(path.c_str()).bad()) continue;
    DcmDataset* ds = ff.getDataset();
    CorpusFile f;
    f.path = path;
    OFString v;
    if (ds->findAndGetOFString(DCM_SOPInstanceUID, v).good()) f.uid = v.c_str();
    if (ds->findAndGetOFString(DCM_SOPClassUID, v).good()) f.sop_class = v.c_str();
    if (ds->findAndGetOFString(DCM_Modality, v).good()) f.modality = v.c_str();
    if (ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, v).good()) f.ts = v.c_str();
    ds->findAndGetUint16(DCM_BitsAllocated, f.bits_allocated);
    ds->findAndGetUint16(DCM_SamplesPerPixel, f.samples);
    // Pixel data a JPEG-LS encoder can take: present and as long as the
    // image it describes (fodicom GH1146 has an empty one: Relais then falls
    // back to Explicit VR Little Endian, which the "jls" peer also accepts).
    {
      DcmElement* px = nullptr;
      Uint16 rows = 0, cols = 0;
      ds->findAndGetUint16(DCM_Rows, rows);
      ds->findAndGetUint16(DCM_Columns, cols);
      f.has_pixels = ds->findAndGetElement(DCM_PixelData, px).good() && px != nullptr &&
                     px->getLength() >= uint64_t{rows} * cols * (f.bits_allocated / 8) && rows > 0;
    }
    f.indexable = true;
    for (const DcmTagKey& key : {DCM_PatientID, DCM_StudyInstanceUID, DCM_SeriesInstanceUID}) {
      OFString value;
      ds->findAndGetOFString(key, value);
      if (value.find_first_not_of(' ') == OFString_npos) f.indexable = false;
    }
    if (f.uid.empty() || f.sop_class.empty() || f.ts.empty()) continue;
    ++uid_count[f.uid];
    all.push_back(std::move(f));
  }
  std::vector<CorpusFile> out;
  for (CorpusFile& f : all) {
    if (uid_count[f.uid] == 1) out.push_back(std::move(f));
  }
  return out;
}

// A storescu association profile proposing each file's SOP class in the
// file's own transfer syntax only (no conversion by storescu).
std::vector<std::string> OwnSyntaxProfile(const std::vector<const CorpusFile*>& files, const std::string& path) {
  std::set<std::string> syntaxes;
  std::set<std::pair<std::string, std::string>> pairs;
  for (const CorpusFile* f : files) {
    syntaxes.insert(f->ts);
    pairs.insert({f->sop_class, f->ts});
  }
  std::map<std::string, std::string> key;
  std::ostringstream c;
  c << "[[TransferSyntaxes]]\n";
  for (const std::string& ts : syntaxes) {
    std::string k = "TS" + std::to_string(key.size() + 1);
    key[ts] = k;
    c << "[" << k << "]\nTransferSyntax1 = " << ts << "\n";
  }
  c << "[[PresentationContexts]]\n[Contexts]\n";
  int n = 0;
  for (const auto& [sop, ts] : pairs) c << "PresentationContext" << ++n << " = " << sop << "\\" << key[ts] << "\n";
  c << "[[Profiles]]\n[OwnSyntax]\nPresentationContexts = Contexts\n";
  WriteFile(path, c.str());
  return {"-xf", path, "OwnSyntax"};
}

bool HasElement(const std::string& path, const DcmTagKey& key) {
  DcmFileFormat ff;
  return ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096).good() && ff.getDataset()->tagExists(key);
}

// Small uncompressed corpus files for the tests that send copies.
std::string SmallCt() { return CorpusDir() + "/pydicom__77654033_CT2_17106.dcm"; }
std::string SmallMr() { return CorpusDir() + "/pydicom__MR_small.dcm"; }

// ---- 1. The corpus to storescp and Orthanc ------------------------------------

constexpr char kInstitution[] = "Relais Delivery Test";

TEST(DeliveryTest, CorpusToStorescpAndOrthanc) {
  std::vector<CorpusFile> corpus = WellFormedCorpus();
  ASSERT_GT(corpus.size(), 50u) << "corpus not found in " << CorpusDir();
  TempDir dir;
  for (const char* d : {"scp", "edit", "jls", "orthanc", "out"}) ASSERT_EQ(mkdir((dir / d).c_str(), 0755), 0);

  StorescpPeer scp(dir / "scp", ScpOptions("SCP"));
  StorescpPeer edit(dir / "edit", ScpOptions("EDIT"));
  StorescpPeer jls(dir / "jls", ScpOptions("JLS", 0, {}, {"+xt"}));
  OrthancPeer orthanc(dir / "orthanc", "ORTHANC");
  ASSERT_TRUE(scp.Start()) << scp.Log();
  ASSERT_TRUE(edit.Start()) << edit.Log();
  ASSERT_TRUE(jls.Start()) << jls.Log();
  ASSERT_TRUE(orthanc.Start()) << orthanc.Log();

  // CT and MR to storescp "scp" and, JPEG-LS preferred, to "jls"; CT also,
  // edited, to "edit"; everything Orthanc can index to Orthanc.
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("scp", "SCP", scp.port()) + Destination("edit", "EDIT", edit.port()) +
                       Destination("jls", "JLS", jls.port(),
                                   "transfer_syntaxes = [\"JPEGLSLossless\", \"ExplicitVRLittleEndian\"]\n") +
                       Destination("orthanc", "ORTHANC", orthanc.dicom_port(), "max_associations = 4\n") +
                       "[[rule]]\nname = \"ct-mr\"\nforward = [\"scp\", \"jls\"]\n"
                       "[rule.match]\nModality = [\"CT\", \"MR\"]\n"
                       "[[rule]]\nname = \"ct-edited\"\n"
                       "forward = [{ to = \"edit\", edits = [{ set = \"InstitutionName\", value = \"" +
                       std::string(kInstitution) +
                       "\" }, { prefix = \"PatientID\", value = \"EXT-\" }] }]\n"
                       "[rule.match]\nModality = \"CT\"\n"
                       "[[rule]]\nname = \"indexable\"\nforward = [\"orthanc\"]\n"
                       "[rule.match]\nPatientID = { regex = \"\\\\S\" }\n"
                       "StudyInstanceUID = { regex = \"\\\\S\" }\nSeriesInstanceUID = { regex = \"\\\\S\" }\n");
  // Retention keeps delivered objects so that their stored bytes can be
  // exported and compared with what each peer received.
  RelaisOptions options;
  options.extra = ApplianceExtra(rules, "retention = \"1h\"\n");
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::map<std::string, const CorpusFile*> sent;  // acknowledged, by UID
  constexpr size_t kPerRun = 40;
  for (size_t begin = 0; begin < corpus.size(); begin += kPerRun) {
    std::vector<const CorpusFile*> chunk;
    std::vector<std::string> paths;
    for (size_t i = begin; i < corpus.size() && i < begin + kPerRun; ++i) {
      chunk.push_back(&corpus[i]);
      paths.push_back(corpus[i].path);
    }
    std::vector<std::string> acked = StorescuAcked(
        relais.port(), paths, OwnSyntaxProfile(chunk, dir / ("profile" + std::to_string(begin) + ".cfg")));
    for (const std::string& p : acked) {
      for (const CorpusFile* f : chunk) {
        if (f->path == p) sent[f->uid] = f;
      }
    }
  }
  ASSERT_GT(sent.size(), corpus.size() * 2 / 3) << relais.Log();

  std::vector<std::string> rows;
  ASSERT_TRUE(WaitNoQueuedRows(relais, 180, &rows)) << rows.size() << " rows left, e.g. " << rows.front();
  std::map<std::string, std::set<std::string>> want;  // destination -> UIDs
  for (const auto& [uid, f] : sent) {
    if (f->indexable) want["orthanc"].insert(uid);
    if (f->modality == "CT" || f->modality == "MR") {
      want["scp"].insert(uid);
      // storescp +xt accepts JPEG-LS Lossless and the uncompressed syntaxes:
      // JPEG 2000 (which Relais cannot decode) is dead-lettered there.
      if (f->ts.rfind("1.2.840.10008.1.2.4.9", 0) == 0) {
        want["jls-dead"].insert(uid);
      } else {
        want["jls"].insert(uid);
      }
    }
    if (f->modality == "CT") want["edit"].insert(uid);
  }
  ASSERT_FALSE(want["scp"].empty());
  ASSERT_FALSE(want["edit"].empty());
  // The only dead letters: JPEG 2000 objects for "jls".
  std::set<std::string> dead_jls;
  for (const std::string& d : QueueRows(relais, /*dead_only=*/true)) {
    if (JsonField(d, "destination") == "jls" && want["jls-dead"].count(JsonField(d, "sop_instance_uid"))) {
      EXPECT_NE(JsonField(d, "last_error").find("cannot be converted"), std::string::npos) << d;
      dead_jls.insert(JsonField(d, "sop_instance_uid"));
      continue;
    }
    ADD_FAILURE() << "dead letter: " << d;
  }
  EXPECT_EQ(dead_jls, want["jls-dead"]);

  // Exports of what Relais stored (retained after delivery).
  std::map<std::string, std::string> exported;
  std::map<std::string, std::string> listed = relais.StoreList();
  for (const auto& [uid, f] : sent) {
    std::string out = dir / ("out/" + uid + ".dcm");
    ASSERT_TRUE(listed.count(uid)) << Basename(f->path) << " not retained after delivery";
    ASSERT_TRUE(relais.Export(uid, out)) << uid;
    exported[uid] = out;
  }

  auto check_set = [&](const std::string& dest, const std::set<std::string>& got) {
    for (const std::string& uid : want[dest]) {
      EXPECT_TRUE(got.count(uid)) << dest << " did not receive " << Basename(sent[uid]->path);
    }
    for (const std::string& uid : got) {
      EXPECT_TRUE(want[dest].count(uid)) << dest << " received " << uid << ", which its rules do not name";
    }
  };

  // storescp "scp": exactly CT and MR, each once, data set byte-equal to
  // the stored one (storescp +B writes the data set as received).
  {
    auto received = scp.Received();
    std::set<std::string> got;
    for (const auto& [uid, files] : received) {
      got.insert(uid);
      EXPECT_EQ(files.size(), 1u) << "scp received " << uid << " " << files.size() << " times";
      if (!exported.count(uid)) continue;
      // Both peers accept every transfer syntax DCMTK knows when proposed,
      // and "scp" states no preference: nothing needs converting.
      const std::string stored_ts = Part10TransferSyntax(ReadFile(exported[uid]));
      const std::string got_ts = Part10TransferSyntax(ReadFile(files[0]));
      if (got_ts != stored_ts) {
        ADD_FAILURE() << Basename(sent[uid]->path) << " reached scp in " << got_ts << " but is stored in " << stored_ts
                      << ", which storescp +xa accepts: converted needlessly";
        continue;
      }
      std::string why;
      EXPECT_TRUE(SameDataSet(exported[uid], files[0], &why)) << Basename(sent[uid]->path) << " at scp: " << why;
      // And the same elements and values as the file storescu sent.
      std::string a, b;
      ASSERT_TRUE(CanonicalDataSet(sent[uid]->path, dir / "c1.bin", &a));
      ASSERT_TRUE(CanonicalDataSet(files[0], dir / "c2.bin", &b));
      EXPECT_TRUE(a == b) << Basename(sent[uid]->path) << ": received data set differs from the sent file";
    }
    check_set("scp", got);
  }

  // storescp "edit": CT only, InstitutionName set, PatientID prefixed; the
  // copy "scp" received is unedited.
  {
    auto received = edit.Received();
    auto at_scp = scp.Received();
    std::set<std::string> got;
    for (const auto& [uid, files] : received) {
      got.insert(uid);
      if (!sent.count(uid)) continue;
      const std::string original_id = TagValue(sent[uid]->path, "PatientID");
      EXPECT_EQ(TagValue(files[0], "InstitutionName"), kInstitution) << Basename(sent[uid]->path);
      // "prefix" is a no-op only when the element is absent (an empty
      // value is present: it becomes the prefix).
      EXPECT_EQ(TagValue(files[0], "PatientID"), HasElement(sent[uid]->path, DCM_PatientID) ? "EXT-" + original_id : "")
          << Basename(sent[uid]->path);
      ASSERT_TRUE(at_scp.count(uid));
      EXPECT_EQ(TagValue(at_scp[uid][0], "PatientID"), original_id);
      EXPECT_EQ(TagValue(at_scp[uid][0], "InstitutionName"), TagValue(sent[uid]->path, "InstitutionName"));
      std::string why;
      EXPECT_FALSE(SameDataSet(exported[uid], files[0], &why)) << "edits did not change " << uid;
    }
    check_set("edit", got);
  }

  // storescp "jls" (prefers JPEG-LS Lossless): uncompressed single-sample
  // 8/16-bit images arrive as JPEG-LS, with the same pixels.
  {
    auto received = jls.Received();
    std::set<std::string> got;
    int converted = 0;
    for (const auto& [uid, files] : received) {
      got.insert(uid);
      if (!sent.count(uid)) continue;
      const CorpusFile& f = *sent[uid];
      std::string ts = Part10TransferSyntax(ReadFile(files[0]));
      DcmXfer in(f.ts.c_str());
      bool plain = !in.isEncapsulated() && in.getStreamCompression() == ESC_none;
      if (plain && f.has_pixels && f.samples == 1 && (f.bits_allocated == 8 || f.bits_allocated == 16)) {
        EXPECT_EQ(ts, kJpegLsLossless) << Basename(f.path) << " (" << f.ts << ")";
      }
      if (ts == kJpegLsLossless && ts != f.ts) {
        ++converted;
        std::string want_px, got_px;
        ASSERT_TRUE(DecodedPixelData(f.path, &want_px)) << Basename(f.path);
        ASSERT_TRUE(DecodedPixelData(files[0], &got_px)) << Basename(f.path) << " received";
        EXPECT_TRUE(want_px == got_px) << Basename(f.path) << ": pixels differ after JPEG-LS decoding";
      } else if (ts == f.ts) {
        std::string why;
        EXPECT_TRUE(SameDataSet(exported[uid], files[0], &why)) << Basename(f.path) << " at jls: " << why;
      }
    }
    EXPECT_GT(converted, 0);
    std::printf("jls: %d of %zu objects converted to JPEG-LS Lossless\n", converted, received.size());
    check_set("jls", got);
  }

  // Orthanc: everything; the stored file's data set equals Relais's (byte
  // for byte, or at least element for element: Orthanc re-encodes some).
  {
    std::map<std::string, std::string> by_uid;
    ASSERT_TRUE(orthanc.DownloadAll(dir / "orthanc", &by_uid)) << orthanc.Log();
    std::set<std::string> got;
    int same_bytes = 0;
    for (const auto& [uid, path] : by_uid) {
      got.insert(uid);
      if (!exported.count(uid)) continue;
      const std::string stored_ts = Part10TransferSyntax(ReadFile(exported[uid]));
      const std::string got_ts = Part10TransferSyntax(ReadFile(path));
      if (got_ts != stored_ts) {
        ADD_FAILURE() << Basename(sent[uid]->path) << " reached Orthanc in " << got_ts << " but is stored in "
                      << stored_ts << ", which Orthanc accepts: converted needlessly";
        continue;
      }
      std::string why;
      if (SameDataSet(exported[uid], path, &why)) {
        ++same_bytes;
        continue;
      }
      std::string a, b;
      ASSERT_TRUE(CanonicalDataSet(exported[uid], dir / "c1.bin", &a));
      ASSERT_TRUE(CanonicalDataSet(path, dir / "c2.bin", &b));
      EXPECT_TRUE(a == b) << Basename(sent[uid]->path) << " at Orthanc differs (" << why << ")";
    }
    std::printf("orthanc: %zu objects, %d byte-identical data sets\n", by_uid.size(), same_bytes);
    check_set("orthanc", got);
  }
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// ---- 2. Down, backoff, up, priority order -------------------------------------

TEST(DeliveryTest, DestinationDownThenUpInPriorityOrder) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "late").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir / "copies").c_str(), 0755), 0);
  const uint16_t port = FreePort();  // nothing listens there yet
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("late", "LATE", port,
                               "max_associations = 1\n"
                               "retry = { initial_backoff = \"1s\", max_backoff = \"4s\" }\n") +
                       "[[rule]]\nname = \"routine\"\nforward = [\"late\"]\n"
                       "[[rule]]\nname = \"stat-ct\"\npriority = 10\nforward = [\"late\"]\n"
                       "[rule.match]\nModality = \"CT\"\n");
  RelaisOptions options;
  options.extra = ApplianceExtra(rules, "down_after_failures = 2\nconnect_timeout_s = 2\nidle_release_s = 1\n");
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // Arrival order: CT0, MR0..MR3, CT1..CT3. Priority order: the CTs (in
  // arrival order), then the MRs.
  std::vector<std::string> ct_uids, mr_uids;
  std::vector<std::string> ct = MakeCopiesWithNewUids(SmallCt(), dir / "copies", 4, &ct_uids);
  ASSERT_EQ(mkdir((dir / "copies/mr").c_str(), 0755), 0);
  std::vector<std::string> mr = MakeCopiesWithNewUids(SmallMr(), dir / "copies/mr", 4, &mr_uids);
  ASSERT_EQ(ct.size(), 4u);
  ASSERT_EQ(mr.size(), 4u);
  // One file per storescu run, so that arrival order is send order.
  std::vector<std::string> order = {ct[0], mr[0], mr[1], mr[2], mr[3], ct[1], ct[2], ct[3]};
  for (const std::string& f : order) ASSERT_EQ(StorescuAcked(relais.port(), {f}).size(), 1u) << f << relais.Log();
  std::vector<std::string> expected = {ct_uids[0], ct_uids[1], ct_uids[2], ct_uids[3],
                                       mr_uids[0], mr_uids[1], mr_uids[2], mr_uids[3]};

  // The head row (CT0) carries the link failures: wait for 3 of them.
  std::vector<int64_t> times;
  std::string show;
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline) {
    show = ObjectShow(relais, ct_uids[0]);
    times.clear();
    for (const std::string& a : Attempts(show)) times.push_back(JsonInt(a, "unix_ms"));
    if (times.size() >= 3) break;
    SleepMs(200);
  }
  ASSERT_GE(times.size(), 3u) << show << "\n" << relais.Log();
  for (const std::string& a : Attempts(show)) {
    EXPECT_EQ(JsonField(a, "result"), "retry") << a;
    EXPECT_EQ(JsonField(a, "destination"), "late") << a;
  }
  // Backoff with +-20% jitter from 1 s, doubling: the gaps grow.
  int64_t first_gap = times[1] - times[0];
  int64_t last_gap = times[times.size() - 1] - times[times.size() - 2];
  EXPECT_GT(last_gap, first_gap) << show;
  std::printf("attempts on the head row while down: %zu, gaps", times.size());
  for (size_t i = 1; i < times.size(); ++i) std::printf(" %lld ms", static_cast<long long>(times[i] - times[i - 1]));
  std::printf("\n");
  EXPECT_NE(relais.Log().find("dest=late"), std::string::npos);
  EXPECT_NE(relais.Log().find("event=destination-down"), std::string::npos) << relais.Log();
  // Nothing was delivered meanwhile, every row is still queued.
  std::vector<std::string> rows = QueueRows(relais);
  EXPECT_EQ(CountState(rows, "queued"), 8u);

  // The destination comes up: everything arrives, CTs first.
  StorescpPeer late(dir / "late", ScpOptions("LATE", port));
  ASSERT_TRUE(late.Start()) << late.Log();
  ASSERT_TRUE(WaitNoQueuedRows(relais, 120, &rows)) << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u);
  auto received = late.Received();
  for (const std::string& uid : expected) EXPECT_EQ(received[uid].size(), 1u) << uid;
  EXPECT_EQ(DeliveredInLogOrder(relais.Log(), "late"), expected) << relais.Log();
  EXPECT_NE(relais.Log().find("event=destination-up"), std::string::npos);
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// ---- 3. Permanent refusal: dead letter, then retry -----------------------------

TEST(DeliveryTest, PermanentRejectionDeadLetterThenRetry) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "scp").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir / "ct").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir / "mr").c_str(), 0755), 0);
  StorescpPeer scp(dir / "scp", ScpOptions("CTONLY", 0, {kCtImageStorage}));
  ASSERT_TRUE(scp.Start()) << scp.Log();
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("ctonly", "CTONLY", scp.port(),
                               "retry = { initial_backoff = \"1s\", max_backoff = \"2s\" }\n") +
                       "[[rule]]\nname = \"all\"\nforward = [\"ctonly\"]\n");
  RelaisOptions options;
  options.extra = ApplianceExtra(rules, "");
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  std::vector<std::string> ct_uids, mr_uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), dir / "ct", 3, &ct_uids);
  std::vector<std::string> mr = MakeCopiesWithNewUids(SmallMr(), dir / "mr", 3, &mr_uids);
  files.insert(files.end(), mr.begin(), mr.end());
  ASSERT_EQ(StorescuAcked(relais.port(), files).size(), 6u) << relais.Log();

  std::vector<std::string> rows;
  ASSERT_TRUE(WaitNoQueuedRows(relais, 120, &rows)) << relais.Log();
  std::vector<std::string> dead = QueueRows(relais, /*dead_only=*/true);
  std::set<std::string> dead_uids;
  for (const std::string& d : dead) {
    dead_uids.insert(JsonField(d, "sop_instance_uid"));
    EXPECT_EQ(JsonField(d, "state"), "dead") << d;
    EXPECT_NE(JsonField(d, "last_error").find(kMrImageStorage), std::string::npos)
        << "the reason does not name the SOP class: " << d;
  }
  EXPECT_EQ(dead_uids, std::set<std::string>(mr_uids.begin(), mr_uids.end()));
  std::string show = ObjectShow(relais, mr_uids[0]);
  EXPECT_NE(show.find("\"state\":\"dead\""), std::string::npos) << show;
  std::vector<std::string> attempts = Attempts(show);
  ASSERT_FALSE(attempts.empty()) << show;
  EXPECT_EQ(JsonField(attempts.back(), "result"), "dead") << show;
  EXPECT_NE(JsonField(attempts.back(), "error").find(kMrImageStorage), std::string::npos) << show;

  auto received = scp.Received();
  for (const std::string& uid : ct_uids) EXPECT_EQ(received.count(uid), 1u) << uid;
  for (const std::string& uid : mr_uids) EXPECT_EQ(received.count(uid), 0u) << uid;

  // The admin fixes the peer and retries the dead letters.
  ASSERT_TRUE(scp.Restart(ScpOptions("CTONLY"))) << scp.Log();
  RunResult r = RunCommand({RelaisBinary(), "queue", "retry", "--config", relais.config_path(), "--dead"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("3 rows"), std::string::npos) << r.output;
  ASSERT_TRUE(WaitNoQueuedRows(relais, 120, &rows)) << relais.Log();
  EXPECT_EQ(QueueRows(relais, /*dead_only=*/true).size(), 0u);
  received = scp.Received();
  for (const std::string& uid : mr_uids) EXPECT_EQ(received.count(uid), 1u) << uid;
  for (const std::string& uid : ct_uids) EXPECT_EQ(received[uid].size(), 1u) << uid;
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// ---- 4. kill -9 while delivering ------------------------------------------------

TEST(DeliveryTest, KillNineWhileSendingLosesNothing) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "scp").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir / "copies").c_str(), 0755), 0);
  StorescpPeer scp(dir / "scp", ScpOptions("SINK"));
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("sink", "SINK", scp.port(),
                               "max_associations = 2\n"
                               "retry = { initial_backoff = \"1s\", max_backoff = \"1s\" }\n") +
                       "[[rule]]\nname = \"all\"\nforward = [\"sink\"]\n");
  RelaisOptions options;
  options.extra = ApplianceExtra(rules, "");
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();

  // Queue everything while the destination is down.
  constexpr int kObjects = 200;
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), dir / "copies", kObjects, &uids);
  ASSERT_EQ(files.size(), static_cast<size_t>(kObjects));
  std::vector<std::string> acked = StorescuAcked(relais.port(), files);
  ASSERT_EQ(acked.size(), files.size()) << relais.Log();
  std::map<std::string, std::string> uid_of;
  for (int i = 0; i < kObjects; ++i) uid_of[files[i]] = uids[i];

  // The destination comes up; kill -9 Relais five times while it delivers:
  // each time after a few more objects arrived, plus a random delay.
  ASSERT_TRUE(scp.Start()) << scp.Log();
  std::mt19937 rng(std::random_device{}());
  int kills_mid_delivery = 0;
  size_t seen = scp.CountFiles();
  for (int k = 0; k < 5; ++k) {
    int64_t deadline = NowMs() + 60000;
    while (scp.CountFiles() < seen + 5 && NowMs() < deadline && scp.CountFiles() < kObjects) SleepMs(5);
    SleepMs(std::uniform_int_distribution<int>(0, 60)(rng));
    if (scp.CountFiles() < kObjects) ++kills_mid_delivery;
    relais.Kill9();
    seen = scp.CountFiles();
    ASSERT_TRUE(relais.Start()) << "restart " << k << " failed:\n" << relais.Log();
  }
  std::vector<std::string> rows;
  ASSERT_TRUE(WaitNoQueuedRows(relais, 180, &rows)) << rows.size() << " rows left\n" << relais.Log();
  EXPECT_EQ(rows.size(), 0u) << "dead letters: " << (rows.empty() ? "" : rows.front());

  auto received = scp.Received();
  size_t duplicates = 0;
  for (const std::string& path : acked) {
    const std::string& uid = uid_of[path];
    EXPECT_GE(received[uid].size(), 1u) << uid << " acknowledged but never delivered";
    if (received[uid].size() > 1) duplicates += received[uid].size() - 1;
  }
  size_t unreadable = received.count("") ? received[""].size() : 0;
  std::printf(
      "kill -9 x5 (%d while objects were still arriving): %zu objects delivered, %zu duplicates, "
      "%zu incomplete files left by aborted associations\n",
      kills_mid_delivery, acked.size(), duplicates, unreadable);
  // Whatever is still stored lists and exports cleanly.
  std::map<std::string, std::string> listed = relais.StoreList();
  for (const auto& [uid, line] : listed) EXPECT_TRUE(relais.Export(uid, dir / "left.dcm")) << uid;
  EXPECT_EQ(listed.size(), 0u) << "delivered objects should be removed (retention 0)";
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

// ---- 5. Retention -----------------------------------------------------------------

void RunRetention(const std::string& retention, bool kept) {
  TempDir dir;
  ASSERT_EQ(mkdir((dir / "scp").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir / "copies").c_str(), 0755), 0);
  StorescpPeer scp(dir / "scp", ScpOptions("ARCHIVE"));
  ASSERT_TRUE(scp.Start()) << scp.Log();
  std::string rules = dir / "rules.toml";
  WriteFile(rules, Destination("archive", "ARCHIVE", scp.port()) + Destination("second", "ARCHIVE", scp.port()) +
                       "[[rule]]\nname = \"all\"\nforward = [\"archive\", \"second\"]\n");
  RelaisOptions options;
  options.extra = ApplianceExtra(rules, retention.empty() ? "" : "retention = \"" + retention + "\"\n");
  RelaisProcess relais(dir.path(), options);
  ASSERT_TRUE(relais.Start()) << relais.Log();
  std::vector<std::string> uids;
  std::vector<std::string> files = MakeCopiesWithNewUids(SmallCt(), dir / "copies", 3, &uids);
  ASSERT_EQ(StorescuAcked(relais.port(), files).size(), 3u) << relais.Log();
  std::vector<std::string> rows;
  ASSERT_TRUE(WaitNoQueuedRows(relais, 60, &rows)) << relais.Log();
  EXPECT_TRUE(QueueRows(relais).empty());
  // Each object reached both destinations (the same storescp).
  auto received = scp.Received();
  for (const std::string& uid : uids) EXPECT_EQ(received[uid].size(), 2u) << uid;
  std::map<std::string, std::string> listed = relais.StoreList();
  if (kept) {
    for (const std::string& uid : uids) {
      EXPECT_EQ(listed.count(uid), 1u) << uid << " not retained";
      EXPECT_TRUE(relais.Export(uid, dir / "kept.dcm")) << uid;
      std::string show = ObjectShow(relais, uid);
      EXPECT_EQ(show.find("\"state\":\"queued\""), std::string::npos) << show;
    }
  } else {
    // Removal follows the last delivery; allow the commit to land.
    int64_t deadline = NowMs() + 30000;
    while (!listed.empty() && NowMs() < deadline) {
      SleepMs(200);
      listed = relais.StoreList();
    }
    EXPECT_TRUE(listed.empty()) << listed.size() << " objects still stored after delivery";
  }
  EXPECT_EQ(relais.Terminate(), 0) << relais.Log();
}

TEST(DeliveryTest, RetentionKeepsDeliveredObjects) { RunRetention("1h", /*kept=*/true); }

TEST(DeliveryTest, WithoutRetentionDeliveredObjectsAreRemoved) { RunRetention("", /*kept=*/false); }

}  // namespace
}  // namespace relais::itest
