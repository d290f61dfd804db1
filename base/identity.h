// Relais's DICOM implementation identity (PS3.7 D.3.3.2, PS3.10 7.1), used
// in A-ASSOCIATE negotiation and in the File Meta Information of exports.
#ifndef RELAIS_BASE_IDENTITY_H_
#define RELAIS_BASE_IDENTITY_H_

namespace relais {

// A UUID-derived UID (PS3.5 B.2, root 2.25): needs no registered root.
inline constexpr char kImplementationClassUid[] = "2.25.255881287763435694301297669848587044480";
// At most 16 characters (SH).
inline constexpr char kImplementationVersionName[] = "RELAIS_0.1";

}  // namespace relais

#endif  // RELAIS_BASE_IDENTITY_H_
