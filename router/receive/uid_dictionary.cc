#include "router/receive/uid_dictionary.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include <string>

namespace relais::router {
namespace {

constexpr char kEncapsulatedPrefix[] = "1.2.840.10008.1.2.4.";

bool IsSupportedTransferSyntax(const std::string& uid) {
  DcmXfer xfer(uid.c_str());
  switch (xfer.getXfer()) {
    case EXS_Unknown:
      // Encapsulated syntaxes newer than DCMTK 3.6.7 (HTJ2K, JPEG XL, ...)
      // keep the Explicit VR Little Endian header: still routable.
      return uid.rfind(kEncapsulatedPrefix, 0) == 0;
    case EXS_BigEndianImplicit:  // DCMTK-internal, not a DICOM transfer syntax
      return false;
    default: return true;
  }
}

bool IsStorageSopClass(const std::string& uid) {
  for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; ++i) {
    if (uid == dcmAllStorageSOPClassUIDs[i]) return true;
  }
  return false;
}

bool IsKnownUid(const std::string& uid) { return dcmFindNameOfUID(uid.c_str(), nullptr) != nullptr; }

constexpr ul::UidDictionary kDcmtk{IsSupportedTransferSyntax, IsStorageSopClass, IsKnownUid};

}  // namespace

const ul::UidDictionary& DcmtkUidDictionary() { return kDcmtk; }

}  // namespace relais::router
