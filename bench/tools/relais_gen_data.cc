// relais_gen_data: writes a realistic DICOM data set for the end-to-end
// ingest benchmark (bench/e2e_ingest.sh).
//
//   relais_gen_data --out DIR [--ct N] [--small M] [--large-mb L] [--seed S] [--noise HU]
//
// Writes DIR/ct/CT######.dcm and DIR/small/SC######.dcm, all Part 10 files
// (PS3.10 7.1) in Explicit VR Little Endian (PS3.5 A.2):
//   - N CT images (CT Image Storage, PS3.4 B.5; 512x512, 16 bits allocated,
//     12 stored, rescale -1024 to HU). Pixel content is a smooth thorax
//     phantom (ellipses of typical HU values that change shape along z) plus
//     gaussian-like noise of a few HU, different for every slice: it
//     compresses like real CT (zstd -1 about 2:1), unlike random bytes or a
//     constant image.
//   - M small objects of about 20 KB (Secondary Capture Image Storage,
//     100x100, 16 bits): a smooth pattern with a little noise.
//   - with --large-mb L, one large object DIR/large/LG000001.dcm of about L MB
//     (10^6 bytes; Multi-frame Grayscale Word Secondary Capture Image
//     Storage, PS3.3 A.8.3): ceil(L MB / 0.52 MB) frames of 512x512x16 of the
//     same phantom and noise as the CT images (the phantom at 16 heights,
//     fresh noise in every frame). Its pixel data is streamed to the file
//     frame by frame, so that a 1 GB object needs no 1 GB of memory here.
// DIR/ct.uids, DIR/small.uids (and DIR/large.uids) list the SOP Instance
// UIDs, one a line.
// One study (one patient, one series) per 200 images of each kind. UIDs are
// fresh for every run (dcmGenerateUniqueIdentifier); pixel content depends
// only on --seed.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <sys/stat.h>

#include "base/status.h"

namespace relais::bench {
namespace {

constexpr int kCtSize = 512;
constexpr int kSmallSize = 100;
constexpr int kImagesPerStudy = 200;
constexpr double kPixelSpacingMm = 0.9765625;  // 500 mm field of view
constexpr double kSliceThicknessMm = 1.25;
constexpr int kRescaleIntercept = -1024;

struct Options {
  std::string out;
  int ct = 1000;
  int small = 1000;
  int large_mb = 0;  // 0: no large object
  uint64_t seed = 1;
  double noise_hu = 20.0;  // standard deviation of the noise in soft tissue
};

// xorshift64*: fast and good enough for image noise.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
    if (state_ == 0) state_ = 1;
  }
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  // Irwin-Hall sum of four uniforms, scaled to mean 0 and standard deviation 1.
  double Gaussianish() {
    uint64_t r = Next();
    double sum = 0;
    for (int i = 0; i < 4; ++i) sum += static_cast<double>((r >> (16 * i)) & 0xFFFF) / 65536.0;
    return (sum - 2.0) * 1.7320508075688772;  // sqrt(12 / 4)
  }

 private:
  uint64_t state_;
};

std::string NewUid(const char* root) {
  char buf[100];
  dcmGenerateUniqueIdentifier(buf, root);
  return buf;
}

Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IOError("mkdir " + path + ": " + std::strerror(errno));
  }
  return Status::OK();
}

// True when (x, y) is inside the ellipse centred on (cx, cy) with half axes a, b.
bool InEllipse(double x, double y, double cx, double cy, double a, double b) {
  if (a <= 0 || b <= 0) return false;
  double dx = (x - cx) / a, dy = (y - cy) / b;
  return dx * dx + dy * dy <= 1.0;
}

// Hounsfield value of the thorax/abdomen phantom at pixel (x, y) of a slice
// at relative height z in [0, 1] (0 = top of the lungs, 1 = abdomen).
// Returns NAN outside the circular reconstruction field of view.
double PhantomHu(double x, double y, double z) {
  const double c = kCtSize / 2.0;
  if (InEllipse(x, y, c, c, 250, 250) == false) return NAN;
  // Patient table under the body.
  if (y > 432 && y < 440 && std::fabs(x - c) < 200) return 150;
  const double body_a = 185 * (1.0 + 0.06 * std::sin(2 * M_PI * z));
  const double body_b = 130 * (1.0 + 0.04 * std::cos(3 * M_PI * z));
  const double body_cy = 285;
  if (!InEllipse(x, y, c, body_cy, body_a, body_b)) return -1000;          // air
  if (!InEllipse(x, y, c, body_cy, body_a - 14, body_b - 12)) return -95;  // subcutaneous fat
  // Ribs: small bright ellipses just inside the fat layer.
  for (int i = 0; i < 10; ++i) {
    double t = M_PI * (0.12 + 0.076 * i) + 0.05 * z;
    double rx = c + (body_a - 24) * std::cos(t), ry = body_cy - (body_b - 22) * std::sin(t);
    if (InEllipse(x, y, rx, ry, 7, 5)) return 650;
  }
  // Spine: cortical ring, cancellous core, spinal canal.
  const double sy = body_cy + body_b - 58;
  if (InEllipse(x, y, c, sy + 26, 7, 9)) return 20;
  if (InEllipse(x, y, c, sy, 26, 22)) return InEllipse(x, y, c, sy, 20, 16) ? 260 : 750;
  // Aorta with contrast, beside the spine.
  if (InEllipse(x, y, c + 22, sy - 40, 13, 13)) return 230;
  // Lungs shrink towards the abdomen; the liver grows.
  const double lung = std::max(0.0, 1.0 - 1.4 * z);
  if (InEllipse(x, y, c - 80, body_cy - 15, 68 * lung, 92 * lung) ||
      InEllipse(x, y, c + 80, body_cy - 15, 64 * lung, 88 * lung)) {
    // Vessels inside the lung.
    double v = std::sin(x / 9.0 + 3 * z) * std::sin(y / 11.0 - 2 * z);
    return v > 0.93 ? -100 : -860;
  }
  const double heart = std::max(0.0, std::sin(M_PI * std::min(1.0, z * 1.6)));
  if (InEllipse(x, y, c + 25, body_cy - 10, 62 * heart, 50 * heart)) return 42;
  const double liver = std::max(0.0, (z - 0.35) / 0.65);
  if (InEllipse(x, y, c - 55, body_cy - 5, 110 * liver, 85 * liver)) return 58;
  // Soft tissue with a gentle low-frequency variation.
  return 38 + 6 * std::sin(x / 37.0 + 4 * z) * std::cos(y / 53.0);
}

void PutCommonPatientStudy(DcmDataset* ds, int study_index, const std::string& study_uid, const std::string& series_uid,
                           const char* prefix) {
  char buf[64];
  ds->putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100");
  std::snprintf(buf, sizeof(buf), "BENCH^%s%04d", prefix, study_index);
  ds->putAndInsertString(DCM_PatientName, buf);
  std::snprintf(buf, sizeof(buf), "RLB%s%06d", prefix, study_index);
  ds->putAndInsertString(DCM_PatientID, buf);
  ds->putAndInsertString(DCM_PatientBirthDate, "19580312");
  ds->putAndInsertString(DCM_PatientSex, study_index % 2 ? "F" : "M");
  ds->putAndInsertString(DCM_StudyInstanceUID, study_uid.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
  ds->putAndInsertString(DCM_StudyDate, "20260115");
  ds->putAndInsertString(DCM_StudyTime, "083000");
  ds->putAndInsertString(DCM_SeriesDate, "20260115");
  ds->putAndInsertString(DCM_SeriesTime, "083412");
  ds->putAndInsertString(DCM_ContentDate, "20260115");
  ds->putAndInsertString(DCM_ContentTime, "083415");
  std::snprintf(buf, sizeof(buf), "ACC%s%07d", prefix, study_index);
  ds->putAndInsertString(DCM_AccessionNumber, buf);
  std::snprintf(buf, sizeof(buf), "%d", study_index + 1);
  ds->putAndInsertString(DCM_StudyID, buf);
  ds->putAndInsertString(DCM_ReferringPhysicianName, "REFERRER^JANE");
  ds->putAndInsertString(DCM_InstitutionName, "Relais Bench Hospital");
  ds->putAndInsertString(DCM_Manufacturer, "RelaisBench");
  ds->putAndInsertString(DCM_StationName, "BENCHCT01");
  ds->putAndInsertString(DCM_SeriesNumber, "2");
}

Status SaveFile(DcmFileFormat* ff, const std::string& path) {
  OFCondition cond = ff->saveFile(path.c_str(), EXS_LittleEndianExplicit);
  if (cond.bad()) return Status::IOError("write " + path + ": " + cond.text());
  return Status::OK();
}

// One CT slice. `slice` counts within its series of `series_len` slices.
Status WriteCt(const Options& o, int index, int study_index, int slice, int series_len, const std::string& sop_uid,
               const std::string& study_uid, const std::string& series_uid, const std::string& for_uid,
               std::vector<Uint16>& pixels) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  PutCommonPatientStudy(ds, study_index, study_uid, series_uid, "CT");
  ds->putAndInsertString(DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_StudyDescription, "CT THORAX ABDOMEN WITH CONTRAST");
  ds->putAndInsertString(DCM_SeriesDescription, "Thorax-Abdomen 1.25 mm");
  ds->putAndInsertString(DCM_ManufacturerModelName, "Phantom 512");
  ds->putAndInsertString(DCM_BodyPartExamined, "CHEST");
  ds->putAndInsertString(DCM_SliceThickness, "1.25");
  ds->putAndInsertString(DCM_KVP, "120");
  ds->putAndInsertString(DCM_DataCollectionDiameter, "500");
  ds->putAndInsertString(DCM_ReconstructionDiameter, "500");
  ds->putAndInsertString(DCM_GantryDetectorTilt, "0");
  ds->putAndInsertString(DCM_XRayTubeCurrent, "250");
  ds->putAndInsertString(DCM_ExposureTime, "500");
  ds->putAndInsertString(DCM_ConvolutionKernel, "B30f");
  ds->putAndInsertString(DCM_PatientPosition, "HFS");
  ds->putAndInsertString(DCM_AcquisitionNumber, "1");
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%d", slice + 1);
  ds->putAndInsertString(DCM_InstanceNumber, buf);
  const double zpos = -kSliceThicknessMm * slice;
  std::snprintf(buf, sizeof(buf), "-250\\-250\\%.3f", zpos);
  ds->putAndInsertString(DCM_ImagePositionPatient, buf);
  ds->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
  ds->putAndInsertString(DCM_FrameOfReferenceUID, for_uid.c_str());
  ds->putAndInsertString(DCM_PositionReferenceIndicator, "SN");
  std::snprintf(buf, sizeof(buf), "%.3f", zpos);
  ds->putAndInsertString(DCM_SliceLocation, buf);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, kCtSize);
  ds->putAndInsertUint16(DCM_Columns, kCtSize);
  std::snprintf(buf, sizeof(buf), "%.7f\\%.7f", kPixelSpacingMm, kPixelSpacingMm);
  ds->putAndInsertString(DCM_PixelSpacing, buf);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertString(DCM_WindowCenter, "40\\-600");
  ds->putAndInsertString(DCM_WindowWidth, "400\\1500");
  std::snprintf(buf, sizeof(buf), "%d", kRescaleIntercept);
  ds->putAndInsertString(DCM_RescaleIntercept, buf);
  ds->putAndInsertString(DCM_RescaleSlope, "1");
  ds->putAndInsertString(DCM_RescaleType, "HU");

  // Pixels: phantom + noise; the noise differs per slice (seeded by index).
  Rng rng(o.seed * 1000003u + static_cast<uint64_t>(index));
  const double z = series_len > 1 ? static_cast<double>(slice) / (series_len - 1) : 0.5;
  for (int y = 0; y < kCtSize; ++y) {
    for (int x = 0; x < kCtSize; ++x) {
      double hu = PhantomHu(x, y, z);
      long v = 0;  // outside the field of view: stored 0 (-1024 HU), no noise
      if (!std::isnan(hu)) {
        // Noise is a little lower in air than in tissue, as after a smooth kernel.
        double sigma = hu < -900 ? 0.6 * o.noise_hu : o.noise_hu;
        v = std::lround(hu + sigma * rng.Gaussianish() - kRescaleIntercept);
        v = std::clamp(v, 0L, 4095L);
      }
      pixels[static_cast<size_t>(y) * kCtSize + x] = static_cast<Uint16>(v);
    }
  }
  ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), pixels.size());

  std::snprintf(buf, sizeof(buf), "/ct/CT%06d.dcm", index + 1);
  return SaveFile(&ff, o.out + buf);
}

// One ~20 KB Secondary Capture image (PS3.3 A.8.1): 100x100, 16 bits.
Status WriteSmall(const Options& o, int index, int study_index, int number, const std::string& sop_uid,
                  const std::string& study_uid, const std::string& series_uid, std::vector<Uint16>& pixels) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  PutCommonPatientStudy(ds, study_index, study_uid, series_uid, "SC");
  ds->putAndInsertString(DCM_ImageType, "DERIVED\\SECONDARY");
  ds->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
  ds->putAndInsertString(DCM_Modality, "OT");
  ds->putAndInsertString(DCM_ConversionType, "WSD");
  ds->putAndInsertString(DCM_StudyDescription, "DOSE AND KEY IMAGES");
  ds->putAndInsertString(DCM_SeriesDescription, "Key images");
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%d", number + 1);
  ds->putAndInsertString(DCM_InstanceNumber, buf);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, kSmallSize);
  ds->putAndInsertUint16(DCM_Columns, kSmallSize);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 16);
  ds->putAndInsertUint16(DCM_HighBit, 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);

  Rng rng(o.seed * 7919u + 0x5C0000u + static_cast<uint64_t>(index));
  const double phase = 0.37 * index;
  for (int y = 0; y < kSmallSize; ++y) {
    for (int x = 0; x < kSmallSize; ++x) {
      double v = 2000 + 900 * std::sin(x / 13.0 + phase) * std::cos(y / 17.0 - phase);
      if (InEllipse(x, y, 50, 50, 30, 22)) v += 1500;
      v += 20 * rng.Gaussianish();
      pixels[static_cast<size_t>(y) * kSmallSize + x] = static_cast<Uint16>(std::clamp(std::lround(v), 0L, 65535L));
    }
  }
  ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(kSmallSize) * kSmallSize);

  std::snprintf(buf, sizeof(buf), "/small/SC%06d.dcm", index + 1);
  return SaveFile(&ff, o.out + buf);
}

// One large multi-frame object of about o.large_mb MB (see the file comment).
// The data set without Pixel Data is written by DCMTK; then the Pixel Data
// element (PS3.5 7.1.2, Explicit VR: tag, "OW", 2 reserved bytes, 32-bit
// length) is appended with its value, frame by frame. Pixel Data is the last
// element of this data set, so the file stays valid Part 10.
Status WriteLarge(const Options& o, const std::string& sop_uid) {
  constexpr size_t kFrameBytes = static_cast<size_t>(kCtSize) * kCtSize * 2;
  constexpr int kHeights = 16;
  const long long frames = (static_cast<long long>(o.large_mb) * 1000000 + kFrameBytes - 1) / kFrameBytes;
  const std::string path = o.out + "/large/LG000001.dcm";
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  PutCommonPatientStudy(ds, 0, NewUid(SITE_STUDY_UID_ROOT), NewUid(SITE_SERIES_UID_ROOT), "LG");
  ds->putAndInsertString(DCM_ImageType, "DERIVED\\SECONDARY");
  ds->putAndInsertString(DCM_SOPClassUID, UID_MultiframeGrayscaleWordSecondaryCaptureImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
  ds->putAndInsertString(DCM_Modality, "OT");
  ds->putAndInsertString(DCM_ConversionType, "WSD");
  ds->putAndInsertString(DCM_StudyDescription, "LARGE MULTI-FRAME OBJECT");
  ds->putAndInsertString(DCM_SeriesDescription, "Phantom frames");
  ds->putAndInsertString(DCM_InstanceNumber, "1");
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%lld", frames);
  ds->putAndInsertString(DCM_NumberOfFrames, buf);
  ds->putAndInsertTagKey(DCM_FrameIncrementPointer, DCM_FrameTimeVector);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_Rows, kCtSize);
  ds->putAndInsertUint16(DCM_Columns, kCtSize);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  Status s = SaveFile(&ff, path);
  if (!s.ok()) return s;

  // The phantom's HU at kHeights heights (the costly part), then noise per frame.
  std::vector<std::vector<double>> base(kHeights, std::vector<double>(static_cast<size_t>(kCtSize) * kCtSize));
  for (int h = 0; h < kHeights; ++h) {
    for (int y = 0; y < kCtSize; ++y) {
      for (int x = 0; x < kCtSize; ++x) base[h][static_cast<size_t>(y) * kCtSize + x] = PhantomHu(x, y, h / 15.0);
    }
  }
  FILE* f = std::fopen(path.c_str(), "ab");
  if (f == nullptr) return Status::IOError("append to " + path + ": " + std::strerror(errno));
  const uint32_t len = static_cast<uint32_t>(frames * static_cast<long long>(kFrameBytes));
  unsigned char head[12] = {0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0};                     // (7FE0,0010) OW
  for (int k = 0; k < 4; ++k) head[8 + k] = static_cast<unsigned char>(len >> (8 * k));  // little endian
  bool ok = std::fwrite(head, 1, sizeof(head), f) == sizeof(head);
  std::vector<unsigned char> frame(kFrameBytes);
  for (long long i = 0; ok && i < frames; ++i) {
    Rng rng(o.seed * 104729u + 0x1A0000u + static_cast<uint64_t>(i));
    const std::vector<double>& hu = base[i % kHeights];
    for (size_t p = 0; p < hu.size(); ++p) {
      long v = 0;
      if (!std::isnan(hu[p])) {
        double sigma = hu[p] < -900 ? 0.6 * o.noise_hu : o.noise_hu;
        v = std::clamp(std::lround(hu[p] + sigma * rng.Gaussianish() - kRescaleIntercept), 0L, 4095L);
      }
      frame[2 * p] = static_cast<unsigned char>(v);  // little endian
      frame[2 * p + 1] = static_cast<unsigned char>(v >> 8);
    }
    ok = std::fwrite(frame.data(), 1, frame.size(), f) == frame.size();
  }
  if (std::fclose(f) != 0) ok = false;
  if (!ok) return Status::IOError("write " + path + ": " + std::strerror(errno));
  std::fprintf(stderr, "large: %lld frames, %.1f MB\n", frames, (len + 0.0) / 1e6);
  return Status::OK();
}

// Appends one SOP Instance UID line to a manifest (DIR/ct.uids, DIR/small.uids)
// that the benchmark uses to check that a receiver kept every object.
class UidList {
 public:
  ~UidList() {
    if (f_ != nullptr) std::fclose(f_);
  }
  Status Open(const std::string& path) {
    f_ = std::fopen(path.c_str(), "w");
    if (f_ == nullptr) return Status::IOError("open " + path + ": " + std::strerror(errno));
    return Status::OK();
  }
  void Add(const std::string& uid) { std::fprintf(f_, "%s\n", uid.c_str()); }
  Status Close() {
    int rc = std::fclose(f_);
    f_ = nullptr;
    return rc == 0 ? Status::OK() : Status::IOError("close uid list");
  }

 private:
  FILE* f_ = nullptr;
};

Status Generate(const Options& o) {
  Status s = MakeDir(o.out);
  if (s.ok()) s = MakeDir(o.out + "/ct");
  if (s.ok()) s = MakeDir(o.out + "/small");
  if (s.ok() && o.large_mb > 0) s = MakeDir(o.out + "/large");
  UidList ct_uids, small_uids;
  if (s.ok()) s = ct_uids.Open(o.out + "/ct.uids");
  if (s.ok()) s = small_uids.Open(o.out + "/small.uids");
  if (!s.ok()) return s;

  std::vector<Uint16> pixels(static_cast<size_t>(kCtSize) * kCtSize);
  std::string study_uid, series_uid, for_uid;
  for (int i = 0; i < o.ct; ++i) {
    const int study = i / kImagesPerStudy;
    const int slice = i % kImagesPerStudy;
    const int series_len = std::min(kImagesPerStudy, o.ct - study * kImagesPerStudy);
    if (slice == 0) {
      study_uid = NewUid(SITE_STUDY_UID_ROOT);
      series_uid = NewUid(SITE_SERIES_UID_ROOT);
      for_uid = NewUid(SITE_INSTANCE_UID_ROOT);
    }
    const std::string sop_uid = NewUid(SITE_INSTANCE_UID_ROOT);
    s = WriteCt(o, i, study, slice, series_len, sop_uid, study_uid, series_uid, for_uid, pixels);
    if (!s.ok()) return s;
    ct_uids.Add(sop_uid);
    if ((i + 1) % 100 == 0 || i + 1 == o.ct) std::fprintf(stderr, "ct: %d/%d\n", i + 1, o.ct);
  }
  for (int i = 0; i < o.small; ++i) {
    const int study = i / kImagesPerStudy;
    if (i % kImagesPerStudy == 0) {
      study_uid = NewUid(SITE_STUDY_UID_ROOT);
      series_uid = NewUid(SITE_SERIES_UID_ROOT);
    }
    const std::string sop_uid = NewUid(SITE_INSTANCE_UID_ROOT);
    s = WriteSmall(o, i, study, i % kImagesPerStudy, sop_uid, study_uid, series_uid, pixels);
    if (!s.ok()) return s;
    small_uids.Add(sop_uid);
    if ((i + 1) % 100 == 0 || i + 1 == o.small) std::fprintf(stderr, "small: %d/%d\n", i + 1, o.small);
  }
  s = ct_uids.Close();
  if (s.ok()) s = small_uids.Close();
  if (s.ok() && o.large_mb > 0) {
    UidList large_uids;
    const std::string sop_uid = NewUid(SITE_INSTANCE_UID_ROOT);
    s = large_uids.Open(o.out + "/large.uids");
    if (s.ok()) s = WriteLarge(o, sop_uid);
    if (s.ok()) large_uids.Add(sop_uid);
    if (s.ok()) s = large_uids.Close();
  }
  return s;
}

constexpr char kUsage[] =
    "usage: relais_gen_data --out DIR [--ct N] [--small M] [--large-mb L] [--seed S] [--noise HU]\n"
    "  writes DIR/ct/CT######.dcm (N CT images, 512x512x16, Explicit VR LE),\n"
    "  DIR/small/SC######.dcm (M ~20 KB Secondary Capture images)\n"
    "  and, if L > 0, DIR/large/LG000001.dcm (one multi-frame object of ~L MB, at most 4000).\n"
    "  Defaults: --ct 1000 --small 1000 --large-mb 0 --seed 1 --noise 20\n";

bool ParseInt(const char* s, long long min, long long* out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > 100000000) return false;
  *out = v;
  return true;
}

}  // namespace
}  // namespace relais::bench

int main(int argc, char** argv) {
  using relais::bench::Options;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(relais::bench::kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n%s", a.c_str(), relais::bench::kUsage);
      return 2;
    }
    const char* v = argv[++i];
    long long n = 0;
    bool ok = true;
    if (a == "--out") {
      o.out = v;
    } else if (a == "--ct") {
      ok = relais::bench::ParseInt(v, 0, &n);
      o.ct = static_cast<int>(n);
    } else if (a == "--small") {
      ok = relais::bench::ParseInt(v, 0, &n);
      o.small = static_cast<int>(n);
    } else if (a == "--large-mb") {
      ok = relais::bench::ParseInt(v, 0, &n) && n <= 4000;  // the Pixel Data length is 32 bits
      o.large_mb = static_cast<int>(n);
    } else if (a == "--seed") {
      ok = relais::bench::ParseInt(v, 0, &n);
      o.seed = static_cast<uint64_t>(n);
    } else if (a == "--noise") {
      ok = relais::bench::ParseInt(v, 0, &n);
      o.noise_hu = static_cast<double>(n);
    } else {
      std::fprintf(stderr, "unknown option %s\n%s", a.c_str(), relais::bench::kUsage);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "bad value for %s: %s\n", a.c_str(), v);
      return 2;
    }
  }
  if (o.out.empty()) {
    std::fputs(relais::bench::kUsage, stderr);
    return 2;
  }
  relais::Status s = relais::bench::Generate(o);
  if (!s.ok()) {
    std::fprintf(stderr, "relais_gen_data: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %d CT, %d small and %d large objects to %s\n", o.ct, o.small, o.large_mb > 0 ? 1 : 0,
              o.out.c_str());
  return 0;
}
