// Real DICOM peers for the delivery integration tests, started by the tests
// on 127.0.0.1: DCMTK's storescp (the simplest faithful receiver: it writes
// what arrived, bit for bit) and Orthanc (an independent implementation,
// queried over its REST API with curl).
//
// Each peer owns a working directory (which must exist and outlive it) and
// its child process; the destructor SIGKILLs the process if still running.
#ifndef RELAIS_TESTS_INTEGRATION_PEERS_H_
#define RELAIS_TESTS_INTEGRATION_PEERS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness.h"

namespace relais::itest {

// Transfer syntax UIDs used by the tests (PS3.5 Annex A, PS3.6 Table A-1).
inline constexpr char kImplicitLittle[] = "1.2.840.10008.1.2";
inline constexpr char kExplicitLittle[] = "1.2.840.10008.1.2.1";
inline constexpr char kJpegLsLossless[] = "1.2.840.10008.1.2.4.80";
inline constexpr char kCtImageStorage[] = "1.2.840.10008.5.1.4.1.1.2";
inline constexpr char kMrImageStorage[] = "1.2.840.10008.5.1.4.1.1.4";

struct StorescpOptions {
  std::string ae_title = "STORESCP";
  uint16_t port = 0;  // 0: a free port chosen by the constructor
  // Empty: accept every SOP class (-pm) in every transfer syntax DCMTK
  // knows (+xa). Otherwise only these SOP classes (plus Verification), in
  // the uncompressed and usual compressed syntaxes, through an association
  // profile (-xf): other SOP classes' presentation contexts are rejected.
  std::vector<std::string> only_sop_classes;
  // Preferred transfer syntax options, e.g. {"+xt"} (only without
  // only_sop_classes).
  std::vector<std::string> prefer;
};

// One `storescp -v +B +uf` writing every received object to received_dir()
// in the transfer syntax it arrived in (bit-preserving mode: the data set
// bytes on disk are those on the wire). Unique file names: an object that
// arrives twice is two files.
class StorescpPeer {
 public:
  // `dir`: working directory (exists); files go to dir/received.
  StorescpPeer(const std::string& dir, StorescpOptions options = {});
  ~StorescpPeer() = default;

  // Starts storescp and waits until its port accepts connections. False if
  // it could not start (its log says why). May be called again after Stop()
  // with different options (same port, same received_dir()).
  bool Start();
  bool Restart(StorescpOptions options);
  void Stop();
  bool running() { return child_.running(); }

  uint16_t port() const { return options_.port; }
  const std::string& ae_title() const { return options_.ae_title; }
  const std::string& received_dir() const { return received_dir_; }
  std::string Log() const { return child_.ReadLog(); }

  // SOP Instance UID -> the received files carrying it, in name order.
  // Files DCMTK cannot read are listed under "" (there should be none).
  std::map<std::string, std::vector<std::string>> Received() const;
  size_t CountFiles() const { return ListFiles(received_dir_).size(); }

 private:
  bool StartOnce();
  std::string dir_;
  std::string received_dir_;
  StorescpOptions options_;
  Child child_;
  int starts_ = 0;
  bool auto_port_ = false;  // the port was picked here: a first start may pick another
};

// One Orthanc server (/usr/sbin/Orthanc) with its own JSON config, storage
// and index in `dir`, its DICOM and HTTP ports free ports on 127.0.0.1,
// accepting every SOP class and transfer syntax from any calling AE.
class OrthancPeer {
 public:
  OrthancPeer(const std::string& dir, std::string ae_title = "ORTHANC");
  ~OrthancPeer();

  // Starts Orthanc and waits (at most 60 s) until its REST API answers and
  // its DICOM port accepts connections.
  bool Start();
  void Stop();

  uint16_t dicom_port() const { return dicom_port_; }
  uint16_t http_port() const { return http_port_; }
  const std::string& ae_title() const { return ae_title_; }
  std::string Log() const { return child_.ReadLog(); }

  // Orthanc's instance identifiers (GET /instances); false on HTTP error.
  bool InstanceIds(std::vector<std::string>* ids) const;
  // GET /instances/ID/file: the stored DICOM file, written to out_path.
  bool DownloadFile(const std::string& id, const std::string& out_path) const;
  // Downloads every instance into `out_dir` and returns SOP Instance UID ->
  // file path (the UID read from the downloaded file with DCMTK).
  bool DownloadAll(const std::string& out_dir, std::map<std::string, std::string>* by_uid) const;

 private:
  std::string Url(const std::string& path) const;

  std::string dir_;
  std::string ae_title_;
  uint16_t dicom_port_ = 0;
  uint16_t http_port_ = 0;
  Child child_;
};

// tests/tools/fake_scp.py: a deliberately unhelpful destination written from
// PS3.8 and PS3.7 with no DICOM library. It accepts every association and
// presentation context from any calling AE and answers every C-STORE with
// the status (and raw Error Comment bytes) of its options, after a delay;
// it logs the Affected SOP Instance UID of each C-STORE as it answers.
struct FakeScpOptions {
  std::string status_hex = "0000";  // the status of every C-STORE response, e.g. "A700"
  std::string error_comment_hex;    // its Error Comment (0000,0902) bytes in hex; "": none
  int delay_ms = 0;                 // each C-STORE response waits this long (per association)
};

class FakeScp {
 public:
  // `dir`: working directory (exists): fake-scp.log and received.txt.
  FakeScp(const std::string& dir, FakeScpOptions options = {});

  // Starts it on a free port and waits (at most 20 s) until the port
  // accepts connections. False if it did not (Log() says why).
  bool Start();

  uint16_t port() const { return port_; }
  std::string Log() const { return child_.ReadLog(); }
  // The SOP Instance UIDs it answered, in the order it answered them.
  std::vector<std::string> Received() const;

 private:
  std::string dir_;
  FakeScpOptions options_;
  uint16_t port_ = 0;
  Child child_;
};

// The SOP Instance UID of a DICOM file, "" if DCMTK cannot read it.
std::string SopInstanceUidOf(const std::string& path);

// DCMTK's canonical encoding of a file's data set: loaded, then written in
// its own transfer syntax with explicit lengths, recalculated group lengths
// and no padding. Two files whose data sets hold the same elements and
// values give the same bytes, however their lengths were encoded. A
// deflated data set is written inflated (Explicit VR Little Endian). False
// if DCMTK cannot load or write it.
bool CanonicalDataSet(const std::string& path, const std::string& tmp_path, std::string* out);

// The pixel data of a file decompressed to Explicit VR Little Endian
// (DCMTK's codecs: JPEG, JPEG-LS, RLE), as the bytes of (7FE0,0010). False
// if it cannot be decoded.
bool DecodedPixelData(const std::string& path, std::string* pixels);

// The value of `keyword`'s element (a DICOM dictionary keyword such as
// "InstitutionName") in a file's data set; "" if absent.
std::string TagValue(const std::string& path, const std::string& keyword);

}  // namespace relais::itest

#endif  // RELAIS_TESTS_INTEGRATION_PEERS_H_
