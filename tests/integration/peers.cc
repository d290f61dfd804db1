#include "peers.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmf.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace relais::itest {
namespace {

// Transfer syntaxes a restricted storescp accepts for its SOP classes
// (PS3.5 Annex A): uncompressed, deflated and the compressed ones DCMTK
// knows, so that only the SOP class decides acceptance.
constexpr const char* kAcceptedSyntaxes[] = {
    "1.2.840.10008.1.2.1",     // Explicit VR Little Endian
    "1.2.840.10008.1.2",       // Implicit VR Little Endian
    "1.2.840.10008.1.2.2",     // Explicit VR Big Endian (retired)
    "1.2.840.10008.1.2.1.99",  // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  // JPEG Baseline
    "1.2.840.10008.1.2.4.51",  // JPEG Extended
    "1.2.840.10008.1.2.4.57",  // JPEG Lossless
    "1.2.840.10008.1.2.4.70",  // JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  // JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  // JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  // JPEG 2000
    "1.2.840.10008.1.2.5",     // RLE Lossless
};
constexpr char kVerificationSopClass[] = "1.2.840.10008.1.1";

// A DCMTK association profile (dcmnet/docs/asconfig.txt) accepting only
// `sop_classes` and Verification. Returns the profile name.
std::string WriteProfile(const std::vector<std::string>& sop_classes, const std::string& path) {
  std::ostringstream c;
  c << "[[TransferSyntaxes]]\n[All]\n";
  int n = 0;
  for (const char* ts : kAcceptedSyntaxes) c << "TransferSyntax" << ++n << " = " << ts << "\n";
  c << "[[PresentationContexts]]\n[Accepted]\n";
  n = 0;
  c << "PresentationContext" << ++n << " = " << kVerificationSopClass << "\\All\n";
  for (const std::string& sop : sop_classes) c << "PresentationContext" << ++n << " = " << sop << "\\All\n";
  c << "[[Profiles]]\n[Restricted]\nPresentationContexts = Accepted\n";
  WriteFile(path, c.str());
  return "Restricted";
}

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

void RegisterDecoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

}  // namespace

// ---- storescp -------------------------------------------------------------

StorescpPeer::StorescpPeer(const std::string& dir, StorescpOptions options)
    : dir_(dir), received_dir_(dir + "/received"), options_(std::move(options)) {
  if (options_.port == 0) {
    options_.port = FreePort();
    auto_port_ = true;
  }
  mkdir(received_dir_.c_str(), 0755);
}

bool StorescpPeer::Start() {
  // A port picked by FreePort() may be taken by another test before storescp
  // binds it: on a first start nobody knows the port yet, so pick another.
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (StartOnce()) return true;
    if (!auto_port_ || starts_ != 1 || Log().find("Address already in use") == std::string::npos) return false;
    Stop();  // reaps it
    starts_ = 0;
    options_.port = FreePort();
  }
  return false;
}

bool StorescpPeer::StartOnce() {
  ++starts_;
  std::vector<std::string> argv = {"storescp", "-v",   "-aet", options_.ae_title, "-od", received_dir_, "+B", "+uf",
                                   "-fe",      ".dcm", "-dhl"};
  if (options_.only_sop_classes.empty()) {
    argv.push_back("-pm");
    if (options_.prefer.empty()) {
      argv.push_back("+xa");
    } else {
      argv.insert(argv.end(), options_.prefer.begin(), options_.prefer.end());
    }
  } else {
    std::string cfg = dir_ + "/storescp" + std::to_string(starts_) + ".cfg";
    std::string profile = WriteProfile(options_.only_sop_classes, cfg);
    argv.insert(argv.end(), {"-xf", cfg, profile});
  }
  argv.push_back(std::to_string(options_.port));
  if (!child_.Start(argv, dir_ + "/storescp.log")) return false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child_.running()) return false;
    if (WaitForPort(options_.port, 100)) return true;
  }
  return false;
}

bool StorescpPeer::Restart(StorescpOptions options) {
  Stop();
  options.port = options_.port;
  options_ = std::move(options);
  return Start();
}

void StorescpPeer::Stop() {
  if (child_.Stop(SIGTERM, 10) == -1) child_.Stop(SIGKILL, 10);
}

std::map<std::string, std::vector<std::string>> StorescpPeer::Received() const {
  std::map<std::string, std::vector<std::string>> out;
  for (const std::string& path : ListFiles(received_dir_)) out[SopInstanceUidOf(path)].push_back(path);
  return out;
}

// ---- Orthanc --------------------------------------------------------------

OrthancPeer::OrthancPeer(const std::string& dir, std::string ae_title) : dir_(dir), ae_title_(std::move(ae_title)) {
  dicom_port_ = FreePort();
  do {
    http_port_ = FreePort();
  } while (http_port_ == dicom_port_);
}

OrthancPeer::~OrthancPeer() { Stop(); }

bool OrthancPeer::Start() {
  std::ostringstream c;
  c << "{\n"
    << "  \"Name\" : \"relais-delivery-test\",\n"
    << "  \"StorageDirectory\" : \"" << dir_ << "/storage\",\n"
    << "  \"IndexDirectory\" : \"" << dir_ << "/index\",\n"
    << "  \"StorageCompression\" : false,\n"
    << "  \"Plugins\" : [ ],\n"
    << "  \"LuaScripts\" : [ ],\n"
    << "  \"DicomServerEnabled\" : true,\n"
    << "  \"DicomAet\" : \"" << ae_title_ << "\",\n"
    << "  \"DicomPort\" : " << dicom_port_ << ",\n"
    << "  \"DicomCheckCalledAet\" : false,\n"
    << "  \"DicomAlwaysAllowStore\" : true,\n"
    << "  \"DicomAlwaysAllowEcho\" : true,\n"
    << "  \"UnknownSopClassAccepted\" : true,\n"
    << "  \"DicomModalities\" : { },\n"
    << "  \"HttpServerEnabled\" : true,\n"
    << "  \"HttpPort\" : " << http_port_ << ",\n"
    << "  \"RemoteAccessAllowed\" : false,\n"
    << "  \"AuthenticationEnabled\" : false,\n"
    << "  \"SaveJobs\" : false\n"
    << "}\n";
  std::string cfg = dir_ + "/orthanc.json";
  WriteFile(cfg, c.str());
  if (!child_.Start({"/usr/sbin/Orthanc", cfg}, dir_ + "/orthanc.log")) return false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child_.running()) return false;
    RunResult r = RunCommand({"curl", "-sf", "-o", "/dev/null", Url("/system")}, 10);
    if (r.exit_code == 0) return WaitForPort(dicom_port_, 20000);
    SleepMs(200);
  }
  return false;
}

void OrthancPeer::Stop() {
  if (child_.Stop(SIGTERM, 20) == -1) child_.Stop(SIGKILL, 10);
}

std::string OrthancPeer::Url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(http_port_) + path;
}

bool OrthancPeer::InstanceIds(std::vector<std::string>* ids) const {
  RunResult r = RunCommand({"curl", "-sf", Url("/instances")}, 60);
  if (r.exit_code != 0) return false;
  // A JSON array of strings: take every quoted string.
  const std::string& s = r.output;
  if (s.find('[') == std::string::npos) return false;
  for (size_t p = s.find('"'); p != std::string::npos; p = s.find('"', p)) {
    size_t e = s.find('"', p + 1);
    if (e == std::string::npos) return false;
    ids->push_back(s.substr(p + 1, e - p - 1));
    p = e + 1;
  }
  return true;
}

bool OrthancPeer::DownloadFile(const std::string& id, const std::string& out_path) const {
  RunResult r = RunCommand({"curl", "-sf", "-o", out_path, Url("/instances/" + id + "/file")}, 60);
  return r.exit_code == 0;
}

bool OrthancPeer::DownloadAll(const std::string& out_dir, std::map<std::string, std::string>* by_uid) const {
  std::vector<std::string> ids;
  if (!InstanceIds(&ids)) return false;
  for (const std::string& id : ids) {
    std::string path = out_dir + "/" + id + ".dcm";
    if (!DownloadFile(id, path)) return false;
    (*by_uid)[SopInstanceUidOf(path)] = path;
  }
  return true;
}

// ---- DCMTK helpers ----------------------------------------------------------

std::string SopInstanceUidOf(const std::string& path) {
  DcmFileFormat ff;
  // Values longer than 4 KiB stay on disk: only the UID is needed.
  if (ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096).bad()) return "";
  OFString v;
  if (ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, v).bad()) return "";
  return v.c_str();
}

bool CanonicalDataSet(const std::string& path, const std::string& tmp_path, std::string* out) {
  DcmFileFormat ff;
  if (ff.loadFile(path.c_str()).bad()) return false;
  DcmDataset* ds = ff.getDataset();
  E_TransferSyntax xfer = ds->getOriginalXfer();
  if (DcmXfer(xfer).getStreamCompression() != ESC_none) xfer = EXS_LittleEndianExplicit;
  {
    DcmOutputFileStream stream(tmp_path.c_str());
    if (!stream.good()) return false;
    ds->transferInit();
    OFCondition c = ds->write(stream, xfer, EET_ExplicitLength, nullptr, EGL_recalcGL, EPD_withoutPadding);
    ds->transferEnd();
    if (c.bad()) return false;
  }
  *out = ReadFile(tmp_path);
  std::remove(tmp_path.c_str());
  return true;
}

bool DecodedPixelData(const std::string& path, std::string* pixels) {
  RegisterDecoders();
  DcmFileFormat ff;
  if (ff.loadFile(path.c_str()).bad()) return false;
  DcmDataset* ds = ff.getDataset();
  if (ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad()) return false;
  if (!ds->canWriteXfer(EXS_LittleEndianExplicit)) return false;
  const Uint8* data = nullptr;
  unsigned long count = 0;
  if (ds->findAndGetUint8Array(DCM_PixelData, data, &count).bad() || data == nullptr) {
    const Uint16* words = nullptr;
    if (ds->findAndGetUint16Array(DCM_PixelData, words, &count).bad() || words == nullptr) return false;
    pixels->assign(reinterpret_cast<const char*>(words), count * 2);
    return true;
  }
  pixels->assign(reinterpret_cast<const char*>(data), count);
  return true;
}

std::string TagValue(const std::string& path, const std::string& keyword) {
  DcmTag tag;
  if (DcmTag::findTagFromName(keyword.c_str(), tag).bad()) return "";
  DcmFileFormat ff;
  if (ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, 4096).bad()) return "";
  OFString v;
  if (ff.getDataset()->findAndGetOFStringArray(tag, v).bad()) return "";
  return v.c_str();
}

FakeScp::FakeScp(const std::string& dir, FakeScpOptions options) : dir_(dir), options_(std::move(options)) {}

bool FakeScp::Start() {
  port_ = FreePort();
  if (!child_.Start(
          {"python3", std::string(RELAIS_SOURCE_DIR) + "/tests/tools/fake_scp.py", std::to_string(port_),
           options_.status_hex, options_.error_comment_hex, std::to_string(options_.delay_ms), dir_ + "/received.txt"},
          dir_ + "/fake-scp.log")) {
    return false;
  }
  return WaitForPort(port_, 20000);
}

std::vector<std::string> FakeScp::Received() const {
  std::vector<std::string> out;
  std::ifstream in(dir_ + "/received.txt");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace relais::itest
