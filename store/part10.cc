#include "store/part10.h"

#include <cstdio>
#include <filesystem>

// clang-format off
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmdata/dcvrae.h"
#include "dcmtk/dcmdata/dcvrobow.h"
#include "dcmtk/dcmdata/dcvrsh.h"
#include "dcmtk/dcmdata/dcvrui.h"
#include "dcmtk/dcmdata/dcvrul.h"
// clang-format on

namespace relais::store {
namespace {

Status FromCondition(const OFCondition& c, const std::string& what) {
  if (c.good()) return Status::OK();
  return Status::IOError(what + ": " + c.text());
}

template <typename Element>
Status InsertString(DcmMetaInfo* info, const DcmTag& tag, const std::string& value) {
  auto* e = new Element(tag);
  OFCondition c = e->putString(value.c_str());
  if (c.bad()) {
    delete e;
    return Status::InvalidArgument(std::string("cannot set ") + DcmTag(tag).getTagName() + ": " + c.text());
  }
  return FromCondition(info->insert(e, /*replaceOld=*/true), "insert file meta element");
}

// Builds the File Meta Information group, PS3.10 7.1 Table 7.1-1.
Status BuildMetaInfo(const ObjectMeta& m, DcmMetaInfo* info) {
  // (0002,0001) File Meta Information Version, OB: 00H 01H.
  auto* version = new DcmOtherByteOtherWord(DcmTag(DCM_FileMetaInformationVersion, EVR_OB));
  const Uint8 kVersion[2] = {0x00, 0x01};
  version->putUint8Array(kVersion, 2);
  RELAIS_RETURN_IF_ERROR(FromCondition(info->insert(version, true), "insert (0002,0001)"));
  RELAIS_RETURN_IF_ERROR(InsertString<DcmUniqueIdentifier>(info, DCM_MediaStorageSOPClassUID, m.sop_class_uid));
  RELAIS_RETURN_IF_ERROR(InsertString<DcmUniqueIdentifier>(info, DCM_MediaStorageSOPInstanceUID, m.sop_instance_uid));
  RELAIS_RETURN_IF_ERROR(InsertString<DcmUniqueIdentifier>(info, DCM_TransferSyntaxUID, m.transfer_syntax_uid));
  RELAIS_RETURN_IF_ERROR(InsertString<DcmUniqueIdentifier>(info, DCM_ImplementationClassUID, kImplementationClassUid));
  RELAIS_RETURN_IF_ERROR(InsertString<DcmShortString>(info, DCM_ImplementationVersionName, kImplementationVersionName));
  if (!m.calling_ae.empty()) {
    RELAIS_RETURN_IF_ERROR(InsertString<DcmApplicationEntity>(info, DCM_SourceApplicationEntityTitle, m.calling_ae));
  }
  // (0002,0000) File Meta Information Group Length, UL: the bytes that follow
  // it up to the end of the group.
  Uint32 length = 0;
  for (unsigned long i = 0; i < info->card(); ++i) {
    length += info->getElement(i)->calcElementLength(EXS_LittleEndianExplicit, EET_ExplicitLength);
  }
  auto* group_length = new DcmUnsignedLong(DCM_FileMetaInformationGroupLength);
  group_length->putUint32(length);
  return FromCondition(info->insert(group_length, true), "insert (0002,0000)");
}

Status WriteFile(const ObjectMeta& meta, const DataSetReader& read, const std::string& path) {
  DcmMetaInfo info;
  RELAIS_RETURN_IF_ERROR(BuildMetaInfo(meta, &info));
  {
    DcmOutputFileStream out(path.c_str());
    RELAIS_RETURN_IF_ERROR(FromCondition(out.status(), "open " + path));
    // DcmMetaInfo writes the 128-byte preamble (zeros) and "DICM" first.
    info.transferInit();
    OFCondition c = info.write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
    info.transferEnd();
    RELAIS_RETURN_IF_ERROR(FromCondition(c, "write file meta information to " + path));
    out.flush();
    RELAIS_RETURN_IF_ERROR(FromCondition(out.status(), "write " + path));
  }
  std::FILE* f = std::fopen(path.c_str(), "ab");
  if (f == nullptr) return Status::IOError("cannot reopen " + path);
  Status s = read([f, &path](std::span<const uint8_t> bytes) {
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
      return Status::IOError("write " + path);
    }
    return Status::OK();
  });
  if (std::fclose(f) != 0 && s.ok()) s = Status::IOError("close " + path);
  return s;
}

}  // namespace

Status WritePart10(const ObjectMeta& meta, const DataSetReader& read, const std::string& out_path) {
  if (meta.sop_class_uid.empty() || meta.sop_instance_uid.empty() || meta.transfer_syntax_uid.empty()) {
    return Status::InvalidArgument("object " + meta.sop_instance_uid +
                                   " lacks the SOP Class, SOP Instance or Transfer Syntax UID");
  }
  std::string tmp = out_path + ".part";
  Status s = WriteFile(meta, read, tmp);
  std::error_code ec;
  if (s.ok()) {
    std::filesystem::rename(tmp, out_path, ec);
    if (ec) s = Status::IOError("rename " + tmp + " to " + out_path + ": " + ec.message());
  }
  if (!s.ok()) std::filesystem::remove(tmp, ec);
  return s;
}

}  // namespace relais::store
