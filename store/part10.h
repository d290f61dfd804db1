// DICOM Part 10 export (PS3.10 7.1): a 128-byte preamble, "DICM", the File
// Meta Information group (0002,eeee) in Explicit VR Little Endian, then the
// data set bytes exactly as stored. Internal to store/.
#ifndef RELAIS_STORE_PART10_H_
#define RELAIS_STORE_PART10_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "base/identity.h"
#include "base/status.h"
#include "store/store.h"

namespace relais::store {

// Implementation Class UID (0002,0012) and Version Name (0002,0013).
using ::relais::kImplementationClassUid;
using ::relais::kImplementationVersionName;

// Streams the data set bytes of one object to a sink (Store::ReadObject).
using DataSetReader = std::function<Status(const std::function<Status(std::span<const uint8_t>)>& sink)>;

// Writes `out_path` (through a temporary file renamed at the end, so a
// failed export leaves no partial file). InvalidArgument when `meta` lacks
// the SOP Class/Instance or Transfer Syntax UID; IOError on write failures;
// errors of `read` are returned as they are.
Status WritePart10(const ObjectMeta& meta, const DataSetReader& read, const std::string& out_path);

}  // namespace relais::store

#endif  // RELAIS_STORE_PART10_H_
